//! `hearth-worker`: serves one service for hearth brokers, as an echo worker or by running
//! a shell command per request. Flags, an optional TOML file, logging and signals live
//! here; everything else is the `hearth_worker` library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use hearth_worker::{ConfigFile, ExecHandler, WorkerConfig, WorkerError, WorkerHandle};

const AFTER_HELP: &str = "\
--exec CMD runs `sh -c CMD` once per request: the request body frames, concatenated, are its
stdin; its stdout (cut at --max-frame-size bytes) is the one-frame reply. On failure (non-zero
exit, killed by a signal, --timeout exceeded, cannot start) the reply is one frame holding the
Bencode dict {\"error\": \"<text>\"}, e.g. `exec: exited with status 3: <stderr>` or
`exec: timed out after 30s`. A panicking handler answers {\"error\": \"handler panicked\"}.

--config FILE is TOML with the flags' names in snake_case (brokers = [..], service, echo,
exec, timeout, concurrency, heartbeat, liveness, max_frame_size, reconnect_initial,
reconnect_max); flags override the file. Durations are humantime: 2500ms, 30s.

SIGINT/SIGTERM send DISCONNECT to every broker and exit 0. Logs go to stderr (RUST_LOG,
default info). Exit codes: 0 stopped by a signal, 1 runtime failure, 2 bad usage.";

/// Command-line flags; each overrides the same key of `--config`.
#[derive(Debug, Parser)]
#[command(name = "hearth-worker", version, after_help = AFTER_HELP)]
#[command(
    about = "A hearth worker: serves one Majordomo (MDP/0.1) service by echo or by a shell command"
)]
struct Cli {
    /// Broker frontend endpoint; repeat for each broker of a pair [default: tcp://127.0.0.1:5555]
    #[arg(long = "broker", value_name = "URL")]
    brokers: Vec<String>,
    /// Service name to offer (required, here or in the config file)
    #[arg(long, value_name = "NAME")]
    service: Option<String>,
    /// Reply with the request body unchanged
    #[arg(long, conflicts_with = "exec")]
    echo: bool,
    /// Run `sh -c CMD` per request: body on stdin, reply = stdout
    #[arg(long, value_name = "CMD")]
    exec: Option<String>,
    /// Per-request time limit of --exec [default: 30s]
    #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Independent worker units (requests run at once) [default: 1]
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    concurrency: Option<usize>,
    /// Heartbeat interval [default: 2500ms]
    #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration)]
    heartbeat: Option<Duration>,
    /// Missed heartbeats before reconnecting [default: 3]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    liveness: Option<u32>,
    /// Largest frame accepted, and largest --exec reply [default: 8388608]
    #[arg(long, value_name = "BYTES", value_parser = at_least_one)]
    max_frame_size: Option<usize>,
    /// TOML file with the same keys in snake_case
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("expected a whole number >= 1, got {s:?}")),
    }
}

/// What the worker answers with.
#[derive(Debug)]
enum Mode {
    Echo,
    Exec(String),
}

/// Flags and file merged and checked.
struct Settings {
    config: WorkerConfig,
    mode: Mode,
    timeout: Duration,
}

/// A usage error: reported and answered with exit code 2.
struct Usage(String);

impl Settings {
    fn resolve(cli: Cli) -> Result<Settings, Usage> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Usage(format!("cannot read {}: {e}", path.display())))?;
                ConfigFile::parse(&text)
                    .map_err(|e| Usage(format!("bad config file {}: {e}", path.display())))?
            }
            None => ConfigFile::default(),
        };
        let mode = match (cli.echo, cli.exec, file.echo.unwrap_or(false), file.exec) {
            (true, _, _, _) => Mode::Echo,
            (false, Some(cmd), _, _) => Mode::Exec(cmd),
            (false, None, true, Some(_)) => {
                return Err(Usage("config file sets both echo and exec".into()))
            }
            (false, None, true, None) => Mode::Echo,
            (false, None, false, Some(cmd)) => Mode::Exec(cmd),
            (false, None, false, None) => {
                return Err(Usage("one of --echo or --exec CMD is required".into()))
            }
        };
        if matches!(&mode, Mode::Exec(cmd) if cmd.trim().is_empty()) {
            return Err(Usage("--exec needs a command".into()));
        }
        let brokers = match (cli.brokers, file.brokers) {
            (flags, _) if !flags.is_empty() => flags,
            (_, Some(listed)) => listed,
            _ => vec![hearth_worker::DEFAULT_BROKER.to_owned()],
        };
        let service = cli
            .service
            .or(file.service)
            .ok_or_else(|| Usage("--service NAME is required".into()))?;
        let mut config = WorkerConfig::new(brokers, service);
        config.heartbeat = cli.heartbeat.or(file.heartbeat).unwrap_or(config.heartbeat);
        config.liveness = cli.liveness.or(file.liveness).unwrap_or(config.liveness);
        config.concurrency = cli.concurrency.or(file.concurrency).unwrap_or(1);
        config.reconnect_initial = file.reconnect_initial.unwrap_or(config.reconnect_initial);
        config.reconnect_max = file.reconnect_max.unwrap_or(config.reconnect_max);
        if let Some(size) = cli.max_frame_size.or(file.max_frame_size) {
            config.limits.max_frame_size = size;
        }
        config.validate().map_err(|e| Usage(e.to_string()))?;
        let timeout = cli
            .timeout
            .or(file.timeout)
            .unwrap_or(hearth_worker::DEFAULT_EXEC_TIMEOUT);
        if timeout.is_zero() {
            return Err(Usage("--timeout must be greater than zero".into()));
        }
        Ok(Settings {
            config,
            mode,
            timeout,
        })
    }
}

fn main() -> ExitCode {
    let settings = match Settings::resolve(Cli::parse()) {
        Ok(settings) => settings,
        Err(Usage(msg)) => {
            eprintln!("hearth-worker: error: {msg}\n\nFor more information, try '--help'.");
            return ExitCode::from(2);
        }
    };
    init_logging();
    match run(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            let usage = matches!(
                e.downcast_ref::<WorkerError>(),
                Some(WorkerError::Config(_) | WorkerError::Zmq(zmq::Error::EINVAL))
                    | Some(WorkerError::Zmq(zmq::Error::EPROTONOSUPPORT))
            );
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn run(settings: Settings) -> anyhow::Result<()> {
    // Blocked before any thread starts, so every thread inherits the mask and the signals
    // wait for `sigwait` below. (Commands run by --exec get a clean mask from std.)
    let signals = block_stop_signals().context("cannot block SIGINT/SIGTERM")?;
    let config = settings.config;
    let max_output = config.limits.max_frame_size;
    let mode = match &settings.mode {
        Mode::Echo => "echo".to_owned(),
        Mode::Exec(cmd) => format!(
            "exec {cmd:?} (timeout {})",
            humantime::format_duration(settings.timeout)
        ),
    };
    tracing::info!(service = %config.service, brokers = ?config.brokers, mode = %mode,
        concurrency = config.concurrency, heartbeat = ?config.heartbeat, "hearth-worker starting");
    let worker: WorkerHandle = match settings.mode {
        Mode::Echo => hearth_worker::spawn(config, hearth_worker::echo())?,
        Mode::Exec(cmd) => {
            hearth_worker::spawn(config, ExecHandler::new(cmd, settings.timeout, max_output))?
        }
    };
    let signal = wait_for(&signals).context("sigwait failed")?;
    tracing::info!(signal, "stopping: DISCONNECT to every broker");
    worker.stop()?;
    tracing::info!("stopped");
    Ok(())
}

/// Blocks SIGINT and SIGTERM in this thread (and every thread started after).
fn block_stop_signals() -> std::io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data initialised by sigemptyset before use; the calls only
    // read and write the set we own and this thread's signal mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        Ok(set)
    }
}

/// Waits until one of the blocked signals arrives; returns its number.
fn wait_for(set: &libc::sigset_t) -> std::io::Result<i32> {
    let mut signal = 0;
    // SAFETY: `set` is a valid, initialised sigset_t and `signal` a valid out-pointer.
    let rc = unsafe { libc::sigwait(set, &mut signal) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    Ok(signal)
}
