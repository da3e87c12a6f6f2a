//! The `hearth` command line: global flags, the `--config` file, the subcommands, and how
//! their results become exit codes.

mod bench;
mod call;
mod internal;
mod state;
mod status;
mod up;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use hearth_client::{Client, ClientConfig, ClientError};
use serde::Deserialize;

/// Broker endpoint used when neither a flag nor the config file names one.
pub const DEFAULT_BROKER: &str = "tcp://127.0.0.1:5555";
/// Overall deadline of a request when neither a flag nor the config file sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// `hearth`: call services through a hearth broker, read its status, load-test it, or run a
/// whole local cluster.
#[derive(Debug, Parser)]
#[command(name = "hearth", version, about = "hearth command-line client")]
pub struct Cli {
    /// Broker frontend endpoint; repeat for each broker of a pair [default: tcp://127.0.0.1:5555]
    #[arg(long = "broker", value_name = "URL", global = true)]
    brokers: Vec<String>,
    /// Overall deadline of each request, retries included [default: 5s]
    #[arg(long, value_name = "DUR", global = true, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// TOML file with `brokers = [...]` and `timeout = "5s"`; flags override it
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Call a service and print its reply body (frames joined by newlines; a trailing
    /// newline only when stdout is a terminal, so piped output is the exact body)
    Call(call::CallArgs),
    /// List services from hearth.status, or ask mmi.service about each NAME (exit 1 if any
    /// has no worker)
    Services(call::ServicesArgs),
    /// Read, write and watch the home's state model: `state get|set|del|watch`
    #[command(after_long_help = state::VALUE_HELP)]
    State(state::StateArgs),
    /// Show each broker's status: several --broker side by side in a table, one as a block;
    /// --json prints one line per broker (exit 1 if any does not answer)
    Status(status::StatusArgs),
    /// Closed-loop load generator; with --baseline, compare hearth with a bare libzmq relay;
    /// `bench failover` measures a pair's failover gaps
    Bench(bench::BenchArgs),
    /// Run a local cluster from the embedded configuration until Ctrl-C: a Binary Star pair
    /// and two echo workers on both (or one standalone broker), with a failover demo
    Up(up::UpArgs),
    /// Helpers the benchmark starts as child processes
    #[command(hide = true, subcommand)]
    Internal(internal::InternalCommand),
}

/// What a command came to when it ran to the end: success, or a request that failed after
/// the command already said why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1: the request failed (timeout, unknown service, lost replies).
    Failed,
}

impl Outcome {
    /// The process exit code of this outcome.
    pub fn exit_code(self) -> ExitCode {
        match self {
            Outcome::Success => ExitCode::SUCCESS,
            Outcome::Failed => ExitCode::from(1),
        }
    }
}

/// An error that is the user's to fix (bad flag value, unreadable config): exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Exit code for an error that ended a command: 2 for [`UsageError`], 1 otherwise.
pub fn exit_code_of(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<UsageError>().is_some() {
        2
    } else {
        1
    }
}

/// Turns a client error into the command's error: a request or endpoint the user got
/// wrong is bad usage (exit 2), anything else a failed request (exit 1).
pub fn client_failure(error: ClientError, doing: &str) -> anyhow::Error {
    match error {
        ClientError::InvalidRequest(_) | ClientError::Endpoint { .. } | ClientError::Config(_) => {
            UsageError(error.to_string()).into()
        }
        other => anyhow::Error::new(other).context(doing.to_owned()),
    }
}

/// The connection settings every command shares, after merging flags over the config file.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Broker endpoints, in order.
    pub brokers: Vec<String>,
    /// Overall deadline per request.
    pub timeout: Duration,
}

impl Connection {
    /// A client configuration for these brokers.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new(self.brokers.iter().cloned());
        config.timeout = self.timeout;
        config.attempt_timeout = config.attempt_timeout.min(self.timeout);
        config
    }

    /// A client for these brokers.
    pub fn client(&self) -> anyhow::Result<Client> {
        Client::new(self.client_config()).map_err(|e| client_failure(e, "creating the client"))
    }
}

/// The keys `--config` may set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    brokers: Vec<String>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
}

fn read_config(path: &Path) -> Result<ConfigFile, UsageError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| UsageError(format!("{}: {e}", path.display())))
}

/// Flags first, then the config file, then the defaults.
fn connection(cli: &Cli) -> Result<Connection, UsageError> {
    let file = match &cli.config {
        Some(path) => read_config(path)?,
        None => ConfigFile::default(),
    };
    let brokers = [cli.brokers.clone(), file.brokers]
        .into_iter()
        .find(|b| !b.is_empty())
        .unwrap_or_else(|| vec![DEFAULT_BROKER.to_owned()]);
    let timeout = cli.timeout.or(file.timeout).unwrap_or(DEFAULT_TIMEOUT);
    if timeout.is_zero() {
        return Err(UsageError("--timeout must be above zero".into()));
    }
    Ok(Connection { brokers, timeout })
}

/// Runs the command `cli` names.
pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let connection = connection(&cli)?;
    match cli.command {
        Command::Call(args) => call::call(&connection, args),
        Command::Services(args) => call::services(&connection, args),
        Command::State(args) => state::run(&connection, args),
        Command::Status(args) => status::status(&connection, args),
        Command::Bench(args) => bench::run(&connection, args),
        Command::Up(args) => up::run(&connection, args),
        Command::Internal(command) => internal::run(command),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_config_file() {
        let dir = std::env::temp_dir().join(format!("hearth-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "brokers = [\"tcp://a:1\", \"tcp://b:1\"]\ntimeout = \"2s\"\n",
        )
        .unwrap();
        let file = path.to_str().unwrap();
        let cli = Cli::parse_from(["hearth", "--config", file, "status"]);
        let c = connection(&cli).unwrap();
        assert_eq!(c.brokers, ["tcp://a:1", "tcp://b:1"]);
        assert_eq!(c.timeout, Duration::from_secs(2));
        let cli = Cli::parse_from([
            "hearth",
            "--config",
            file,
            "--broker",
            "tcp://c:1",
            "status",
        ]);
        assert_eq!(connection(&cli).unwrap().brokers, ["tcp://c:1"]);
        let cli = Cli::parse_from(["hearth", "status"]);
        let c = connection(&cli).unwrap();
        assert_eq!(
            (c.brokers[0].as_str(), c.timeout),
            (DEFAULT_BROKER, DEFAULT_TIMEOUT)
        );
        std::fs::write(&path, "brokerz = 1\n").unwrap();
        let cli = Cli::parse_from(["hearth", "--config", file, "status"]);
        assert!(connection(&cli).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
