//! A Binary Star pair with data dirs, driven the way the operator's docs drive one: started,
//! stopped with SIGTERM (what `systemctl stop` sends), killed, and asked with the `hearth`
//! command line. Each broker keeps its ports and its data dir across restarts; the data
//! dirs live in the test's log directory, removed when the test passed.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use hearth_chaos_tests::{bin_path, free_port, wait_for, LogDir, Proc};
use hearth_proto::status::{BStarState, BrokerStatus};

use super::status_of;

/// The primary's index.
pub const PRIMARY: usize = 0;
/// The backup's index.
pub const BACKUP: usize = 1;

/// How long a broker may take to answer `hearth.status` after it was started.
const STARTS_WITHIN: Duration = Duration::from_secs(10);

struct Member {
    role: &'static str,
    frontend_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    proc: Option<Proc>,
    starts: usize,
}

/// Two brokers, `--role primary` and `--role backup`, on loopback ports.
pub struct DocPair {
    // Fields drop in order: the processes first, then the logs (and data dirs).
    members: [Member; 2],
    logs: LogDir,
}

impl DocPair {
    /// Ports and data dirs for a pair; nothing is started.
    pub fn new(test: &str) -> anyhow::Result<DocPair> {
        let logs = LogDir::new(test)?;
        let member = |role: &'static str| Member {
            role,
            frontend_port: free_port(),
            peer_port: free_port(),
            data_dir: logs.path().join(format!("{role}-data")),
            proc: None,
            starts: 0,
        };
        Ok(DocPair {
            members: [member("primary"), member("backup")],
            logs,
        })
    }

    /// Both frontends, primary first.
    pub fn endpoints(&self) -> Vec<String> {
        (0..2).map(|i| self.frontend(i)).collect()
    }

    fn frontend(&self, side: usize) -> String {
        format!("tcp://127.0.0.1:{}", self.members[side].frontend_port)
    }

    /// The data dir of `side`.
    pub fn data_dir(&self, side: usize) -> &Path {
        &self.members[side].data_dir
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
    pub fn start(&mut self, side: usize, extra: &[&str]) -> anyhow::Result<()> {
        let peer = self.members[1 - side].peer_port;
        let me = &self.members[side];
        if me.proc.is_some() {
            bail!("the {} is running", me.role);
        }
        let mut args: Vec<String> = [
            "--role",
            me.role,
            "--frontend",
            &self.frontend(side),
            "--peer-bind",
            &format!("tcp://127.0.0.1:{}", me.peer_port),
            "--peer-connect",
            &format!("tcp://127.0.0.1:{peer}"),
            "--peer-heartbeat",
            "300ms",
            "--heartbeat",
            "500ms",
            "--data-dir",
            &me.data_dir.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let name = format!("broker-{}-{}", me.role, me.starts + 1);
        let mut proc = Proc::spawn(&name, &bin_path("hearth-broker"), &args, &self.logs)?;
        let frontend = self.frontend(side);
        let up = wait_for(&format!("{name} to answer"), STARTS_WITHIN, || {
            if let Some(status) = proc.try_status() {
                return Ok(Err(anyhow!("{name} exited with {status}")));
            }
            status_of(&frontend).map(Ok).map_err(|e| format!("{e:#}"))
        })?;
        up.with_context(|| format!("logs in {}", self.logs.path().display()))?;
        let me = &mut self.members[side];
        me.proc = Some(proc);
        me.starts += 1;
        Ok(())
    }

    /// Stops `side` as `systemctl stop` does (SIGTERM; SIGKILL after 10 s).
    pub fn stop(&mut self, side: usize) -> ExitStatus {
        let proc = self.members[side].proc.take();
        proc.map(|mut p| p.stop(Duration::from_secs(10)))
            .expect("stop a running broker")
    }

    /// SIGKILLs `side`.
    pub fn kill(&mut self, side: usize) {
        if let Some(mut proc) = self.members[side].proc.take() {
            proc.kill9();
        }
    }

    /// `side`'s `hearth.status`.
    pub fn status(&self, side: usize) -> anyhow::Result<BrokerStatus> {
        status_of(&self.frontend(side))
    }

    /// Waits until one broker is active and the other passive, both hearing each other,
    /// with no replication lag and the same seq; returns the active's index.
    pub fn wait_settled(&self, timeout: Duration) -> anyhow::Result<usize> {
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
