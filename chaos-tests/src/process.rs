//! Child processes the tests start, and where their output goes: `hearth_supervise`'s
//! process guard and [`LogDir`] with a test's manners, and the check every harness makes
//! that none of its children ended by itself.
//!
//! A [`Proc`] writes stdout and stderr to a file of its own in a [`LogDir`] and is killed
//! with SIGKILL and reaped when dropped; signals go only to the PID of a child not reaped
//! yet. The directory is removed once a test has said it passed ([`LogDir::mark_passed`])
//! unless `HEARTH_CHAOS_KEEP_LOGS` is set; otherwise (a panic, an early return with an
//! error) its path and the tails of the logs are printed.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use hearth_supervise::{Exited, Launch};

pub use hearth_supervise::{LogDir, KEEP_LOGS_ENV};

/// A child process a test started by itself (a pair's and a cluster's own children are
/// `hearth_supervise::Proc`s), logging to a [`LogDir`]. A failed kill or reap, which cannot
/// happen to a child of ours not yet reaped, fails the test. Everything else of
/// `hearth_supervise::Proc` (its PID, `signal`, `is_running`) is reached through it.
#[derive(Debug)]
pub struct Proc {
    proc: hearth_supervise::Proc,
    log: PathBuf,
}

impl Proc {
    /// Starts `program` with `args`, output to a file of its own named after `name` in
    /// `logs`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        logs: &LogDir,
    ) -> anyhow::Result<Proc> {
        let proc =
            hearth_supervise::Proc::spawn(name, program, args, &Launch::harness(logs.output()))?;
        let log = proc.log_path().map(Path::to_path_buf).unwrap_or_default();
        Ok(Proc { proc, log })
    }

    /// The child's log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The exit status if the child has ended (reaping it), None while it runs.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.proc.exit_status()
    }

    /// SIGKILL, then reap. Returns the exit status (the earlier one if it had ended).
    pub fn kill9(&mut self) -> ExitStatus {
        self.proc
            .kill9()
            .unwrap_or_else(|e| panic!("kill -9 {}: {e}", self.proc.name()))
    }

    /// SIGTERM (and SIGCONT), then wait up to `grace` for a clean exit; SIGKILL after that.
    pub fn stop(&mut self, grace: Duration) -> ExitStatus {
        self.proc
            .terminate(grace)
            .unwrap_or_else(|e| panic!("stopping {}: {e}", self.proc.name()))
    }

    /// SIGSTOP, returning once every thread of the child is seen stopped; nothing if the
    /// child has ended.
    pub fn freeze(&mut self) {
        let _ = self.proc.freeze();
    }

    /// SIGCONT; nothing if the child has ended.
    pub fn thaw(&mut self) {
        let _ = self.proc.thaw();
    }
}

impl Deref for Proc {
    type Target = hearth_supervise::Proc;

    fn deref(&self) -> &hearth_supervise::Proc {
        &self.proc
    }
}

impl DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut hearth_supervise::Proc {
        &mut self.proc
    }
}

/// Fails, naming each, if any process in `exited` ended by itself (a crash): a harness's
/// processes end only when the test kills or stops them.
pub fn check_alive(exited: Vec<Exited>, logs: &LogDir) -> anyhow::Result<()> {
    if exited.is_empty() {
        return Ok(());
    }
    let dead: Vec<String> = exited.iter().map(Exited::to_string).collect();
    anyhow::bail!(
        "processes ended on their own: {}; logs in {}",
        dead.join(", "),
        logs.path().display()
    )
}
