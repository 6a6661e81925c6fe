//! The `karpctl` binary: parse, set up output, run, exit with the contract's code.

use std::io::IsTerminal;

use clap::Parser;
use karpctl::cli::Cli;
use karpctl::output::{self, Output};

fn main() {
    // clap prints usage errors itself and exits 2, as the contract says.
    let cli = Cli::parse();
    output::init_colors(cli.global.color);
    let verbosity = cli.global.verbose as i8 - cli.global.quiet as i8;
    output::set_verbosity(verbosity);
    init_logging(verbosity);
    let out = Output { format: cli.global.output, verbosity };
    let hooks = karpctl::Hooks {
        interceptors: Vec::new(),
        interactive: std::io::stdin().is_terminal() && std::io::stderr().is_terminal(),
        http_client: None,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match runtime.block_on(karpctl::run(&cli, &hooks)) {
        Ok(report) => match out.print(&report) {
            Ok(()) => report.exit_code,
            // A closed pipe (`karpctl render | head`) is not a failure worth a message.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => report.exit_code,
            Err(e) => {
                eprintln!("error: failed to write output: {e}");
                1
            }
        },
        Err(e) => {
            out.print_error(karpctl::command_name(&cli), &e);
            e.exit_code()
        }
    };
    std::process::exit(code);
}

/// Logs and warnings go to stderr; `-v`/`-q` move the level, `RUST_LOG` overrides it.
fn init_logging(verbosity: i8) {
    let level = match verbosity {
        i8::MIN..=0 => "error",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("karpctl={level}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(console::colors_enabled_stderr())
        .without_time()
        .init();
}
