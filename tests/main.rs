//! Every integration test in one binary: the harness in `support/` (the emulator, the stand-in
//! API server, fake helm, the fault layer) is compiled and linked once instead of once per file,
//! and one emulator serves every test (each test has an account of its own). `cargo test --test
//! integration resilience::` runs one file's tests.

mod support;

mod cluster_doctor_teardown;
mod cluster_init;
mod cluster_migrate;
mod cluster_preflight;
mod cluster_side;
mod cluster_teardown;
mod cluster_upgrade;
mod conformance;
mod convert;
mod convert_cli;
mod discovery;
mod doctor;
mod init;
mod init_drift;
mod resilience;
mod smoke;
mod strict;
mod teardown;
