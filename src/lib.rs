//! karpctl: set up Karpenter on an existing Amazon EKS cluster, check it, and remove it.
//!
//! The binary is a thin shell around [`run`]: tests call it directly with parsed arguments.

pub mod aws;
pub mod checks;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod context;
pub mod convert;
pub mod desired;
pub mod diff;
pub mod error;
pub mod helm;
pub mod kube;
pub mod migrate;
pub mod names;
pub mod output;
pub mod plan;
pub mod render;
pub mod resources;
pub mod retry;
pub mod settings;
pub mod versions;

use clap::CommandFactory;

pub use context::Hooks;
pub use error::{Error, ErrorKind, Result};
pub use output::Report;

/// Run one parsed command line to a report (or an error), printing nothing on stdout itself.
pub async fn run(cli: &cli::Cli, hooks: &Hooks) -> Result<Report> {
    use cli::Command;
    match &cli.command {
        Command::Doctor(a) => commands::doctor::run(&cli.global, a, hooks).await,
        Command::Teardown(a) => commands::teardown::run(&cli.global, a, hooks).await,
        Command::Render(a) => commands::render::run(&cli.global, a, hooks).await,
        Command::Init(a) => commands::init::run(&cli.global, a, hooks).await,
        Command::Convert(a) => commands::convert::run(&cli.global, a),
        Command::Versions => Ok(commands::versions::run()),
        Command::Upgrade(a) => commands::upgrade::run(&cli.global, a, hooks).await,
        Command::Migrate(a) => commands::migrate::run(&cli.global, a, hooks).await,
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut cli::Cli::command(), "karpctl", &mut buf);
            Ok(Report::raw("completions", String::from_utf8_lossy(&buf).into_owned()))
        }
    }
}

/// The subcommand's name, for reports and error documents.
pub fn command_name(cli: &cli::Cli) -> &'static str {
    match &cli.command {
        cli::Command::Init(_) => "init",
        cli::Command::Doctor(_) => "doctor",
        cli::Command::Teardown(_) => "teardown",
        cli::Command::Render(_) => "render",
        cli::Command::Convert(_) => "convert",
        cli::Command::Versions => "versions",
        cli::Command::Upgrade(_) => "upgrade",
        cli::Command::Migrate(_) => "migrate",
        cli::Command::Completions { .. } => "completions",
    }
}
