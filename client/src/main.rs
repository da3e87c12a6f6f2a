//! `hearth`, the command-line client: parses flags, sets up logging, runs one command and
//! turns its outcome into the exit code the design fixes (0 success, 1 the request failed,
//! 2 bad usage).

mod cli;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(outcome) => outcome.exit_code(),
        Err(error) => {
            eprintln!("hearth: {error:#}");
            ExitCode::from(cli::exit_code_of(&error))
        }
    }
}
