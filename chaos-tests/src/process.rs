//! Child processes the tests start, and where their output goes.
//!
//! A [`Proc`] is a guard: dropping it kills the child with SIGKILL and reaps it, so a test
//! that fails half-way leaves no broker or worker behind. Signals go only to the PID of a
//! child this harness started and has not reaped yet (an unreaped child keeps its PID, so the
//! PID cannot have been reused by another process).
//!
//! Each child writes stdout and stderr to its own file in a [`LogDir`]. The directory is
//! removed once a test has said it passed ([`LogDir::mark_passed`]) unless
//! `HEARTH_CHAOS_KEEP_LOGS` is set; otherwise (a panic, an
//! early return with an error) its path and the tails of the logs are printed.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;

/// Env variable that keeps the logs of passing tests too (set `RUST_LOG=debug` with it to
/// see what the children did).
pub const KEEP_LOGS_ENV: &str = "HEARTH_CHAOS_KEEP_LOGS";

/// A directory for the logs of one test's child processes.
pub struct LogDir {
    path: PathBuf,
    passed: AtomicBool,
}

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

impl LogDir {
    /// A fresh directory under the system temp dir, named after the test.
    pub fn new(test: &str) -> anyhow::Result<LogDir> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "hearth-chaos-{test}-{}-{}-{nanos}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed),
        ));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(LogDir {
            path,
            passed: AtomicBool::new(false),
        })
    }

    /// Says the test passed: the logs are removed instead of printed.
    pub fn mark_passed(&self) {
        self.passed.store(true, Ordering::SeqCst);
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Prints the directory and the tails of the logs that matter most for a diagnosis: the
    /// brokers', and any that mention a panic or an error.
    pub fn print_tails(&self, lines: usize) {
        eprintln!("child process logs kept in {}", self.path.display());
        let Ok(entries) = std::fs::read_dir(&self.path) else {
            return;
        };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for file in files {
            let Ok(f) = File::open(&file) else { continue };
            let all: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            let notable = name.starts_with("broker")
                || all
                    .iter()
                    .any(|l| l.contains("panicked") || l.contains("ERROR"));
            if !notable {
                continue;
            }
            eprintln!("---- {name} (last {lines} of {} lines) ----", all.len());
            for line in &all[all.len().saturating_sub(lines)..] {
                eprintln!("{line}");
            }
        }
    }
}

impl Drop for LogDir {
    fn drop(&mut self) {
        let keep = std::env::var_os(KEEP_LOGS_ENV).is_some();
        if keep {
            eprintln!("child process logs kept in {}", self.path.display());
        } else if self.passed.load(Ordering::SeqCst) && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.path);
        } else {
            self.print_tails(25);
        }
    }
}

/// A child process this harness started. Dropping it kills (SIGKILL) and reaps it.
pub struct Proc {
    name: String,
    pid: libc::pid_t,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Proc {
    /// Starts `program` with `args`, output to `<logs>/<name>.log`.
    ///
    /// On Linux the child also gets SIGKILL if the thread that started it ends first
    /// (`PR_SET_PDEATHSIG`), so even a test process killed from outside leaves nothing
    /// running. Start children from the test's own thread, which outlives them.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        logs: &LogDir,
    ) -> anyhow::Result<Proc> {
        let log = logs.path().join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let mut command = Command::new(program);
        command
            .args(args)
            // Plain text logs: they are read in files, not on a terminal.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
            unsafe {
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let child = command.spawn().with_context(|| {
            format!("starting {name}: {} {}", program.display(), args.join(" "))
        })?;
        Ok(Proc {
            name: name.to_owned(),
            pid: child.id() as libc::pid_t,
            child,
            log,
            exited: None,
        })
    }

    /// The name given at spawn (also the log file's stem).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's PID.
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// The child's log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The exit status if the child has ended (reaping it), None while it runs.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// SIGKILL, then reap. Returns the exit status (the earlier one if it had ended).
    pub fn kill9(&mut self) -> ExitStatus {
        self.signal(libc::SIGKILL);
        self.wait()
    }

    /// SIGTERM, then wait up to `grace` for a clean exit; SIGKILL after that.
    pub fn stop(&mut self, grace: Duration) -> ExitStatus {
        self.thaw();
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.try_status() {
                return status;
            }
            std::thread::sleep(crate::POLL);
        }
        self.kill9()
    }

    /// SIGSTOP: the child stops dead, sockets open but silent. Returns once every thread of
    /// the child is seen stopped (or after a second): kill(2) only queues the signal, and on
    /// a loaded machine the other threads of a process run on for milliseconds until the
    /// group stop reaches them, so "frozen" must be read off the process, not the call.
    pub fn freeze(&mut self) {
        self.signal(libc::SIGSTOP);
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.exited.is_none() && !self.all_threads_stopped() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Whether /proc shows every thread of the child in the stopped state (`T`).
    fn all_threads_stopped(&self) -> bool {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) else {
            return false;
        };
        tasks.flatten().all(|task| {
            std::fs::read_to_string(task.path().join("stat"))
                .ok()
                // The state follows the parenthesised command name, which may hold spaces.
                .and_then(|stat| {
                    stat.rsplit_once(") ")
                        .map(|(_, rest)| rest.starts_with('T'))
                })
                .unwrap_or(false)
        })
    }

    /// SIGCONT: a frozen child runs on.
    pub fn thaw(&mut self) {
        self.signal(libc::SIGCONT);
    }

    /// Sends `signal` to the child unless it has been reaped (then its PID may be reused).
    fn signal(&mut self, signal: libc::c_int) {
        if self.exited.is_none() {
            // SAFETY: kill(2) with the PID of our own unreaped child.
            unsafe {
                libc::kill(self.pid, signal);
            }
        }
    }

    fn wait(&mut self) -> ExitStatus {
        if let Some(status) = self.exited {
            return status;
        }
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("waiting for {} (pid {}): {e}", self.name, self.pid));
        self.exited = Some(status);
        status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited.is_none() {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Fails, naming each, if any of `procs` ended by itself (a crash): a harness's processes
/// end only when the test kills or stops them.
pub fn check_alive<'a>(
    procs: impl IntoIterator<Item = &'a mut Proc>,
    logs: &LogDir,
) -> anyhow::Result<()> {
    let dead: Vec<String> = procs
        .into_iter()
        .filter_map(|proc| {
            let status = proc.try_status()?;
            Some(format!("{proc:?} exited with {status}"))
        })
        .collect();
    if dead.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "processes ended on their own: {}; logs in {}",
            dead.join(", "),
            logs.path().display()
        )
    }
}

impl std::fmt::Debug for Proc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (pid {})", self.name, self.pid)
    }
}
