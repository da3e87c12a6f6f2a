//! `hearth bench state`: the state model's price, measured in one run on a Binary Star pair
//! it starts itself (each broker with its own data dir under the system temp dir, removed
//! at the end), so that the figures compare with each other:
//!
//! 1. replicated durable writes: `--writers` clients each keep `--inflight` `state.set`
//!    requests of one key outstanding, each with a fresh write id; a write is answered
//!    once the active flushed it and the passive acknowledged it;
//! 2. the same with the passive killed (`kill -9` by its PID; the active then answers after
//!    its own flush alone), once a first write was answered alone (how long after the kill
//!    is reported: writes wait meanwhile);
//! 3. one-key `state.get` reads at the same concurrency, no writer running (a read waits
//!    behind uncommitted writes);
//! 4. the model filled to `--keys` keys, the active's RSS, then `kill -9` of it and a restart
//!    on its data dir: the time from exec to its first `state.get` answer, as the pair's
//!    primary (its peer still down) and again as a standalone broker; then every key is
//!    read back and must hold its last acknowledged write;
//! 5. the same memory and restart figures for a fresh standalone broker holding only the
//!    `--keys` keys: every write of the load left a write id the broker remembers for 10
//!    minutes, which the figures after the load include.
//!
//! Beside each throughput, the CPU time per request of the active, the passive and the
//! load generator, and the brokers' group commit (rounds per second, writes per round).
//! Exit 1 on any lost write, `{error}` reply or mismatched reply; targets are printed as
//! met or MISS, never failed.

mod calls;
mod cluster;
mod exchange;
mod meter;
mod report;
mod wire;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use hearth_supervise::{
    install_stop_signals, memory, sibling_binary, stop_requested, Broker, Memory,
};

use super::load::{self, InOrder, InOrderSpec};
use crate::cli::{Outcome, UsageError};
use cluster::Cluster;
use exchange::{Book, Reads, Writes};
use meter::{Meter, Watched};
use report::{AfterLoad, ModelOnly, Settings, StateReport};

/// The largest value the broker takes by default: 64 KiB of Bencode.
const MAX_SIZE: usize = 64 << 10;
/// The most keys the broker's model holds by default.
const MAX_KEYS: u64 = 1_000_000;

/// Flags of `hearth bench state`.
///
/// Exit 0 when no write was lost and no reply was an error or mismatched, 1 otherwise.
/// Throughput, latency, restart time and memory over their targets are printed as MISS but
/// do not fail the command.
#[derive(Debug, Args)]
pub struct StateArgs {
    /// Client threads, one DEALER socket each (writers, then readers)
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    writers: u64,
    /// Requests each client keeps outstanding
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    inflight: u64,
    /// Bytes of each value's Bencode encoding (a byte string)
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Measured duration of each phase
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Unmeasured warmup before each phase
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Keys the writes cycle over (bench/0, bench/1, ...); the model holds this many at the
    /// restart
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=MAX_KEYS))]
    keys: u64,
    /// Heartbeat interval on the pair's peer link
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = humantime::parse_duration)]
    peer_heartbeat: Duration,
    /// Print exactly one JSON line instead of the table (progress still goes to stderr)
    #[arg(long)]
    json: bool,
}

impl StateArgs {
    /// Checks the flags; the length of each value's byte string.
    fn validate(&self) -> Result<usize, UsageError> {
        if self.duration.is_zero() {
            return Err(UsageError("--duration must be above zero".into()));
        }
        if self.peer_heartbeat.is_zero() {
            return Err(UsageError("--peer-heartbeat must be above zero".into()));
        }
        if !(2..=MAX_SIZE).contains(&self.size) {
            return Err(UsageError(format!("--size must be 2 to {MAX_SIZE}")));
        }
        wire::string_len_for(self.size).ok_or_else(|| {
            UsageError(format!(
                "--size {}: no byte string encodes to exactly that many bytes; use {} or {}",
                self.size,
                self.size - 1,
                self.size + 1
            ))
        })
    }

    fn spec(&self, endpoint: &str) -> InOrderSpec {
        InOrderSpec {
            endpoint: endpoint.to_owned(),
            inflight: self.inflight as usize,
            warmup: self.warmup,
            duration: self.duration,
        }
    }

    fn settings(&self) -> Settings {
        Settings {
            writers: self.writers,
            inflight: self.inflight,
            size: self.size,
            keys: self.keys,
            duration_ms: self.duration.as_millis() as u64,
            warmup_ms: self.warmup.as_millis() as u64,
            peer_heartbeat_ms: self.peer_heartbeat.as_millis() as u64,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// Runs the whole benchmark; exit 1 if a write was lost or a reply was an error or
/// mismatched.
pub fn run(args: &StateArgs) -> anyhow::Result<Outcome> {
    let value_len = args.validate()?;
    let broker_bin = sibling_binary("hearth-broker")?;
    install_stop_signals();
    let mut cluster = Cluster::start(&broker_bin, args.peer_heartbeat)?;
    let book = Arc::new(Book::new(args.keys, value_len, rand::random()));
    cluster.write_once(&book)?;
    let spec = args.spec(cluster.primary.frontend());
    let clients = args.writers as usize;
    let writers = || (0..clients).map(|_| Writes::new(book.clone())).collect();

    let passive = cluster.backup.as_ref().map(watched).transpose()?;
    let writes_paired = phase(
        &spec,
        writers(),
        "writes, pair in sync",
        Meter::new(watched(&cluster.primary)?, passive),
    )?;
    interrupted()?;

    let killed = Instant::now();
    cluster.kill_backup()?;
    cluster.write_once(&book)?;
    let alone_after = killed.elapsed();
    let writes_alone = phase(
        &spec,
        writers(),
        "writes, passive down",
        Meter::new(watched(&cluster.primary)?, None),
    )?;
    interrupted()?;

    let before = calls::survey(cluster.primary.frontend(), &book, true)?;
    let readers = (0..clients).map(|_| Reads::new(book.clone())).collect();
    let reads = phase(
        &spec,
        readers,
        "reads",
        Meter::new(watched(&cluster.primary)?, None),
    )?;
    interrupted()?;

    let rss = memory_of(&cluster.primary)?;
    let primary_ms = ms(cluster.restart_primary(false)?);
    let after = calls::survey(cluster.primary.frontend(), &book, false)?;
    let rss_after = memory_of(&cluster.primary)?;
    interrupted()?;
    let standalone_ms = ms(cluster.restart_primary(true)?);
    drop(cluster);
    let after_load = AfterLoad {
        keys: before.present + before.filled,
        filled: before.filled,
        write_ids: book.writes_acked(),
        rss_mb: mb(rss.rss_kib),
        rss_after_restart_mb: mb(rss_after.rss_kib),
        primary_ms,
        standalone_ms,
        found: after.present,
        lost: before.lost + after.lost,
    };
    interrupted()?;
    let model_only = model_only(&broker_bin, args.keys, value_len)?;

    let settings = args.settings();
    let report = StateReport {
        targets: report::targets(&writes_paired, &after_load, &model_only),
        bound: report::bound(&writes_paired, &writes_alone, settings.cpus),
        first_write_alone_ms: ms(alone_after),
        first_error: book.first_error(),
        settings,
        writes_paired,
        writes_alone,
        reads,
        after_load,
        model_only,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        report.print();
    }
    Ok(super::outcome(report.clean()))
}

/// One measured phase of `exchanges` against the active, metered.
fn phase<E: InOrder>(
    spec: &InOrderSpec,
    exchanges: Vec<E>,
    label: &str,
    mut meter: Meter,
) -> anyhow::Result<report::Phase> {
    let (load, _) = load::run_in_order(spec, exchanges, label, &mut |open| meter.mark(open))?;
    Ok(meter.phase(load))
}

/// A fresh standalone broker filled with `keys` keys (a thousand a request, no write
/// ids): its RSS, then its restart after `kill -9`, and every key found again.
fn model_only(broker_bin: &Path, keys: u64, value_len: usize) -> anyhow::Result<ModelOnly> {
    let mut lone = Cluster::start_standalone(broker_bin)?;
    let book = Book::new(keys, value_len, rand::random());
    let filled = calls::survey(lone.primary.frontend(), &book, true)?;
    let rss = memory_of(&lone.primary)?;
    let restart = lone.restart_primary(true)?;
    let found = calls::survey(lone.primary.frontend(), &book, false)?;
    let rss_after = memory_of(&lone.primary)?;
    Ok(ModelOnly {
        keys: filled.present + filled.filled,
        rss_mb: mb(rss.rss_kib),
        restart_ms: ms(restart),
        rss_after_restart_mb: mb(rss_after.rss_kib),
        found: found.present,
        lost: found.lost,
    })
}

fn watched(broker: &Broker) -> anyhow::Result<Watched> {
    Ok(Watched {
        pid: pid_of(broker)?,
        metrics: cluster::metrics_of(broker)?,
    })
}

fn pid_of(broker: &Broker) -> anyhow::Result<u32> {
    broker
        .pid()
        .with_context(|| format!("{} is not running", broker.name()))
}

/// A running broker's resident memory.
fn memory_of(broker: &Broker) -> anyhow::Result<Memory> {
    Ok(memory(pid_of(broker)?)?)
}

/// Fails if Ctrl-C (or SIGTERM) came: the brokers are stopped and the data dirs removed
/// on the way out.
fn interrupted() -> anyhow::Result<()> {
    if stop_requested() {
        bail!("interrupted");
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 100_000.0).round() / 100.0
}

fn mb(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::BenchMode;
    use super::StateArgs;
    use crate::cli::{Cli, Command};

    fn state(args: &[&str]) -> StateArgs {
        let cli = Cli::try_parse_from(args).unwrap();
        match cli.command {
            Command::Bench(bench) => match bench.mode {
                Some(BenchMode::State(state)) => state,
                other => panic!("not bench state: {other:?}"),
            },
            other => panic!("not bench: {other:?}"),
        }
    }

    #[test]
    fn defaults_and_flags_parse() {
        let s = state(&["hearth", "bench", "state"]);
        assert_eq!(
            (s.writers, s.inflight, s.size, s.keys),
            (8, 16, 64, 100_000)
        );
        assert_eq!(s.duration.as_secs(), 5);
        assert_eq!(s.validate().unwrap(), 61);
        let s = state(&[
            "hearth",
            "bench",
            "state",
            "--writers",
            "2",
            "--keys",
            "10",
            "--size",
            "13",
            "--json",
        ]);
        assert_eq!((s.writers, s.keys, s.json), (2, 10, true));
        assert_eq!(s.validate().unwrap(), 10);
        assert!(Cli::try_parse_from(["hearth", "bench", "state", "--keys", "0"]).is_err());
    }

    #[test]
    fn sizes_and_durations_that_cannot_work_are_bad_usage() {
        for args in [
            &["hearth", "bench", "state", "--size", "12"][..],
            &["hearth", "bench", "state", "--size", "1"],
            &["hearth", "bench", "state", "--size", "70000"],
            &["hearth", "bench", "state", "--duration", "0s"],
        ] {
            assert!(state(args).validate().is_err(), "{args:?}");
        }
    }
}
