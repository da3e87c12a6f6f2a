//! `hearth-broker`: parses flags and `--config`, starts the broker, and stops it cleanly on
//! SIGINT or SIGTERM (DISCONNECT to every worker, exit 0).

use std::process::ExitCode;

use clap::Parser;
use hearth_broker::{BrokerArgs, BrokerConfig};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = BrokerArgs::parse();
    let config = match BrokerConfig::from_args(args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("hearth-broker: {e}");
            return ExitCode::from(2);
        }
    };
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hearth-broker: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(config: BrokerConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let signals = runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        anyhow::Ok((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        ))
    })?;
    let broker = hearth_broker::spawn(config)?;
    let (mut interrupt, mut terminate) = signals;
    let signal = runtime.block_on(async {
        tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        }
    });
    tracing::info!(signal, "shutting down");
    broker.shutdown()?;
    Ok(())
}
