//! A Binary Star pair of `hearth-broker` processes and their workers on free loopback
//! ports, as the tests run it: `hearth_supervise::Pair` (the two command lines, start, kill
//! -9, freeze, thaw by side, workers that reach one or both brokers, `/metrics` samples)
//! with a test's timings ([`PairOptions`]), its logs in a [`LogDir`], and its data dirs kept
//! as evidence when the test fails. Everything of `hearth_supervise::Pair` is reached
//! through this one (it derefs to it); what is a test's own is here.
//!
//! The primary runs as `hearth-broker --role primary --frontend tcp://127.0.0.1:F1 --metrics
//! 127.0.0.1:M1 --peer-bind tcp://127.0.0.1:P1 --peer-connect tcp://127.0.0.1:P2
//! --peer-heartbeat … --heartbeat … --liveness … --request-expiry …`, the backup the same way
//! round. Each broker keeps its ports for the whole test, so a broker killed and started
//! again is the same broker to its peer, its workers and its clients. A pair asked for
//! durable state ([`PairOptions::durable_state`]) also gives each broker `--data-dir` (its
//! own directory under one temp dir per test run, kept across that broker's restarts,
//! removed once the test passed) and `--publish tcp://127.0.0.1:PORT` (its change feed, on
//! a port kept across restarts too).
//!
//! Where a broker stands is read from its `/metrics` with short timeouts
//! ([`hearth_supervise::Pair::sample`]): a frozen broker's kernel still accepts the
//! connection but nobody answers, so a frozen broker is never asked at all.

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use hearth_supervise::{Launch, PairSpec, Programs, ScratchDir};

use crate::process::{self, LogDir};

/// How long a `/metrics` GET may take before the broker counts as not answering.
pub use hearth_supervise::pair::SAMPLE_TIMEOUT;
/// One broker of the pair; which brokers a worker reaches; what a worker serves and where.
pub use hearth_supervise::{Reach, Side, WorkerSpec};

/// One running worker process of the pair.
pub type PairWorker = hearth_supervise::Worker;

/// How long a started broker may take to serve `/metrics`.
const BROKER_UP: Duration = Duration::from_secs(10);
/// How long a new pair may take to be primary active, backup passive.
const PAIR_UP: Duration = Duration::from_secs(15);

/// Timings of the pair and its workers.
#[derive(Debug, Clone)]
pub struct PairOptions {
    /// `--peer-heartbeat`: the brokers' heartbeat to each other.
    pub peer_heartbeat: Duration,
    /// `--heartbeat` of brokers and workers.
    pub heartbeat: Duration,
    /// `--liveness` of brokers and workers.
    pub liveness: u32,
    /// `--request-expiry`: how long a request waits while its service has no worker.
    pub request_expiry: Duration,
    /// Whether each broker keeps the state model on disk (`--data-dir`, a directory per
    /// broker kept across its restarts) and publishes its change feed (`--publish`).
    pub durable_state: bool,
}

impl Default for PairOptions {
    /// A 300 ms peer heartbeat (a silent peer expires after 600 ms: long enough that a
    /// loaded 2-core machine does not starve a broker that long, short enough for tests),
    /// 200 ms worker heartbeats, liveness 3, a request expiry longer than any test, and the
    /// state model in memory only (no data dir, no change feed).
    fn default() -> Self {
        PairOptions {
            peer_heartbeat: Duration::from_millis(300),
            heartbeat: Duration::from_millis(200),
            liveness: 3,
            request_expiry: Duration::from_secs(120),
            durable_state: false,
        }
    }
}

impl PairOptions {
    /// The same timings, with data dirs and change feeds ([`PairOptions::durable_state`]).
    pub fn with_durable_state(self) -> PairOptions {
        PairOptions {
            durable_state: true,
            ..self
        }
    }
}

/// The pair and its workers. Dropping it kills them all (workers first), then removes the
/// data dirs and the logs of a passed test, or keeps and shows them.
pub struct Pair {
    // Fields drop in this order: the processes first, the log directory (which prints the
    // logs of a failed test) last.
    pair: hearth_supervise::Pair,
    data: Option<ScratchDir>,
    options: PairOptions,
    logs: LogDir,
}

impl Deref for Pair {
    type Target = hearth_supervise::Pair;

    fn deref(&self) -> &hearth_supervise::Pair {
        &self.pair
    }
}

impl DerefMut for Pair {
    fn deref_mut(&mut self) -> &mut hearth_supervise::Pair {
        &mut self.pair
    }
}

impl Pair {
    /// Starts the primary and the backup on free ports and waits until the primary is
    /// active and the backup passive.
    pub fn start(test: &str, options: PairOptions) -> anyhow::Result<Pair> {
        let logs = LogDir::new(test)?;
        let data = match options.durable_state {
            true => {
                Some(ScratchDir::new(&format!("hearth-chaos-{test}-data"))?.keep_unless_passed())
            }
            false => None,
        };
        let mut spec = PairSpec {
            request_expiry: Some(options.request_expiry),
            data_root: data.as_ref().map(|d| d.path().to_path_buf()),
            ..PairSpec::loopback(options.peer_heartbeat, options.heartbeat, options.liveness)?
        };
        if !options.durable_state {
            spec.primary.publish = None;
            spec.backup.publish = None;
        }
        let programs = Programs::built()?;
        let pair = hearth_supervise::Pair::spawn(spec, &programs, Launch::harness(logs.output()))?;
        let mut pair = Pair {
            pair,
            data,
            options,
            logs,
        };
        for side in Side::BOTH {
            pair.wait_serving(side)?;
        }
        pair.wait_state(Side::Primary, "active", PAIR_UP)?;
        pair.wait_state(Side::Backup, "passive", PAIR_UP)?;
        Ok(pair)
    }

    /// Where both brokers' data dirs live, if the pair has durable state.
    pub fn data_root(&self) -> Option<&Path> {
        self.data.as_ref().map(ScratchDir::path)
    }

    /// The HTTP address of `side` (`/metrics`, `/status`); every broker here serves one.
    pub fn metrics_addr(&self, side: Side) -> SocketAddr {
        self.spec()
            .endpoints(side)
            .metrics
            .as_deref()
            .and_then(|m| m.parse().ok())
            .unwrap_or_else(|| unreachable!("Pair::start gives every broker a metrics address"))
    }

    /// The timings.
    pub fn options(&self) -> &PairOptions {
        &self.options
    }

    /// Where the children's logs go.
    pub fn logs(&self) -> &LogDir {
        &self.logs
    }

    /// Says the test passed, so the logs (and data dirs) are removed rather than kept on
    /// drop.
    pub fn passed(&self) {
        self.logs.mark_passed();
        if let Some(data) = &self.data {
            data.mark_passed();
        }
    }

    /// Starts `side` on its ports (again, after a kill) and waits until it serves
    /// `/metrics`; whatever state it then reports is the caller's to check.
    pub fn start_broker(&mut self, side: Side) -> anyhow::Result<()> {
        self.pair.spawn_broker(side)?;
        self.wait_serving(side)
    }

    /// SIGKILLs `side` (thawed or not) and reaps it. Returns whether it was running.
    /// (kill(2) and waitpid(2) on a child of ours not yet reaped cannot fail; were they to,
    /// the process guard, dropped, kills it again.)
    pub fn kill_broker(&mut self, side: Side) -> bool {
        self.pair.kill_broker(side).unwrap_or(true)
    }

    /// Waits until the just started `side` serves `/metrics`; kills it if it does not.
    fn wait_serving(&mut self, side: Side) -> anyhow::Result<()> {
        let what = format!("the {side} to serve /metrics");
        let served = self
            .pair
            .broker_mut(side)
            .wait_ready(&what, BROKER_UP, |b| {
                b.sample(SAMPLE_TIMEOUT).map_err(|e| e.to_string())
            });
        if let Err(e) = served {
            self.kill_broker(side);
            return Err(e).with_context(|| format!("see {}", self.logs.path().display()));
        }
        Ok(())
    }

    /// Fails if a broker or worker process ended by itself (a crash), naming it.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        process::check_alive(self.pair.exited(), &self.logs)
    }
}
