//! The subcommands: each a thin walk over the desired state and its resources.

pub mod convert;
pub mod doctor;
pub mod init;
pub mod render;
pub mod teardown;
