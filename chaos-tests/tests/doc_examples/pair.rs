//! A Binary Star pair with data dirs, driven the way the operator's docs drive one: started
//! one broker at a time, stopped with SIGTERM (what `systemctl stop` sends), killed, and
//! asked with the `hearth` command line. It is `hearth_supervise::Pair` with no workers, no
//! `/metrics` and no change feed: each broker keeps its ports and its data dir across
//! restarts; the data dirs live in the test's log directory, removed when the test passed.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::time::Duration;

use anyhow::{bail, Context};
use hearth_chaos_tests::{bin_path, wait_for, LogDir};
use hearth_proto::status::{BStarState, BrokerStatus};
use hearth_supervise::{Launch, Pair, PairSpec, Programs, Side};

/// The primary.
pub const PRIMARY: Side = Side::Primary;
/// The backup.
pub const BACKUP: Side = Side::Backup;

/// How long a broker may take to answer `hearth.status` after it was started.
const STARTS_WITHIN: Duration = Duration::from_secs(10);
/// How long one `hearth.status` question may take.
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);
/// How long `systemctl stop` waits for a clean exit before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Two brokers, `--role primary` and `--role backup`, on loopback ports.
pub struct DocPair {
    // Fields drop in order: the processes first, then the logs (and data dirs).
    pair: Pair,
    logs: LogDir,
}

impl DocPair {
    /// Ports and data dirs for a pair (a 300 ms peer heartbeat, 500 ms to workers);
    /// nothing is started.
    pub fn new(test: &str) -> anyhow::Result<DocPair> {
        let logs = LogDir::new(test)?;
        let mut spec = PairSpec {
            data_root: Some(logs.path().to_path_buf()),
            ..PairSpec::loopback(Duration::from_millis(300), Duration::from_millis(500), 3)?
        };
        for side in Side::BOTH {
            let endpoints = spec.endpoints_mut(side);
            endpoints.metrics = None;
            endpoints.publish = None;
        }
        let pair = Pair::new(spec, &Programs::built()?, Launch::harness(logs.output()));
        Ok(DocPair { pair, logs })
    }

    /// Both frontends, primary first.
    pub fn endpoints(&self) -> Vec<String> {
        self.pair.endpoints()
    }

    /// The frontend of `side`.
    pub fn frontend(&self, side: Side) -> String {
        self.pair.frontend(side)
    }

    /// The data dir of `side`.
    pub fn data_dir(&self, side: Side) -> PathBuf {
        self.pair
            .data_dir(side)
            .expect("DocPair::new gives each broker a data dir")
    }

    /// Where the logs (and data dirs) are.
    pub fn dir(&self) -> &Path {
        self.logs.path()
    }

    /// Says the test passed: logs and data dirs are removed on drop.
    pub fn passed(&self) {
        self.logs.mark_passed();
    }

    /// Starts `side` with `extra` flags and waits until it answers `hearth.status`.
    pub fn start(&mut self, side: Side, extra: &[&str]) -> anyhow::Result<()> {
        let ctx = self.pair.context().clone();
        let broker = self.pair.broker_mut(side);
        if broker.is_up() {
            bail!("the {side} is running");
        }
        broker.args_mut().extra = extra.iter().map(|s| s.to_string()).collect();
        broker.start()?;
        let up = broker.wait_ready(&format!("the {side} to answer"), STARTS_WITHIN, |b| {
            b.status(&ctx, STATUS_TIMEOUT).map_err(|e| e.to_string())
        });
        if let Err(e) = up {
            self.kill(side);
            return Err(e).with_context(|| format!("logs in {}", self.logs.path().display()));
        }
        Ok(())
    }

    /// Stops `side` as `systemctl stop` does (SIGTERM; SIGKILL after 10 s).
    pub fn stop(&mut self, side: Side) -> ExitStatus {
        let stopped = self.pair.broker_mut(side).terminate(STOP_GRACE);
        stopped
            .unwrap_or_else(|e| panic!("stopping the {side}: {e}"))
            .expect("stop a running broker")
    }

    /// SIGKILLs `side`.
    pub fn kill(&mut self, side: Side) {
        if let Err(e) = self.pair.kill_broker(side) {
            panic!("kill -9 of the {side}: {e}");
        }
    }

    /// `side`'s `hearth.status`.
    pub fn status(&self, side: Side) -> anyhow::Result<BrokerStatus> {
        Ok(self
            .pair
            .broker(side)
            .status(self.pair.context(), STATUS_TIMEOUT)?)
    }

    /// Waits until one broker is active and the other passive, both hearing each other,
    /// with no replication lag and the same seq; returns the active side.
    pub fn wait_settled(&self, timeout: Duration) -> anyhow::Result<Side> {
        wait_for("the pair to settle in sync", timeout, || {
            let a = self
                .status(PRIMARY)
                .map_err(|e| format!("primary: {e:#}"))?;
            let b = self.status(BACKUP).map_err(|e| format!("backup: {e:#}"))?;
            let seen = format!(
                "primary {:?} seq {} lag {} peer {}, backup {:?} seq {} lag {} peer {}",
                a.state,
                a.state_seq,
                a.state_lag,
                a.peer_alive,
                b.state,
                b.state_seq,
                b.state_lag,
                b.peer_alive
            );
            let in_sync = a.peer_alive
                && b.peer_alive
                && a.state_lag == 0
                && b.state_lag == 0
                && a.state_seq == b.state_seq;
            match (a.state, b.state) {
                (BStarState::Active, BStarState::Passive) if in_sync => Ok(PRIMARY),
                (BStarState::Passive, BStarState::Active) if in_sync => Ok(BACKUP),
                _ => Err(seen),
            }
        })
    }

    /// Runs `hearth --broker PRIMARY --broker BACKUP --timeout 10s ARGS...`.
    pub fn hearth(&self, args: &[&str]) -> anyhow::Result<Output> {
        hearth(&self.endpoints(), "10s", args)
    }
}

/// Runs the `hearth` command line against `brokers`; it ends by itself within `timeout`.
pub fn hearth(brokers: &[String], timeout: &str, args: &[&str]) -> anyhow::Result<Output> {
    let mut command = Command::new(bin_path("hearth"));
    for broker in brokers {
        command.args(["--broker", broker]);
    }
    command.args(["--timeout", timeout]).args(args);
    command.output().context("running hearth")
}

/// The stdout of a `hearth` run that must succeed.
pub fn ok(output: Output) -> anyhow::Result<String> {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "hearth failed ({}): {stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(stdout)
}

/// Runs a shell command line (the docs' `cp -a`, `mv`); fails unless it succeeds.
pub fn sh(command: &str) -> anyhow::Result<()> {
    let output = Command::new("sh").args(["-c", command]).output()?;
    if !output.status.success() {
        bail!(
            "`{command}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
