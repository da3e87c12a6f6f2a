//! One child process this process started: [`Proc`], a guard that signals the child only by
//! the PID of a child it has not reaped yet (until it is reaped, the PID stays the child's
//! and cannot name another process), and that kills and reaps it when dropped, so a
//! supervisor that fails half-way leaves nothing running.
//!
//! How children start is a [`Launch`]: where their output goes ([`Output`]), what the kernel
//! sends them should this process die first, and how they are stopped on drop. `hearth up`
//! wants a terminal's manners (output on the terminal, quiet logs, a clean SIGTERM stop); a
//! test harness wants files and SIGKILL.

use std::fs::{File, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How long [`Proc::freeze`] waits for every thread of the child to be seen stopped.
const FREEZE_SEEN_WITHIN: Duration = Duration::from_secs(1);
/// How often [`Proc::terminate`] looks whether the child has exited.
const EXIT_POLL: Duration = Duration::from_millis(10);

/// Where a child's stdout and stderr go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// This process's own stdout and stderr.
    Inherit,
    /// Nowhere.
    Null,
    /// Both into one new file in this directory, `<name>-<n>.log` (n counting the children
    /// of that name, so a restarted child gets a file of its own); see [`crate::LogDir`].
    Dir(PathBuf),
}

/// How children are started and stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// Where their output goes.
    pub output: Output,
    /// The signal the kernel sends a child when the thread that started it ends
    /// (`PR_SET_PDEATHSIG`, Linux only), so even a supervisor killed from outside leaves
    /// nothing running.
    pub parent_death: libc::c_int,
    /// On drop: `Some(grace)` stops the child with SIGTERM, then SIGKILL after `grace`
    /// ([`Proc::terminate`]); `None` kills it with SIGKILL at once.
    pub drop_grace: Option<Duration>,
}

impl Launch {
    /// For a command a user runs in a terminal (`hearth up`, `hearth bench`): the children
    /// write to the terminal (at `RUST_LOG=warn` unless `RUST_LOG` is set), get SIGTERM if
    /// the supervisor dies, and are stopped cleanly (SIGTERM, SIGKILL after 2 s) on drop.
    pub fn terminal() -> Launch {
        Launch {
            output: Output::Inherit,
            parent_death: libc::SIGTERM,
            drop_grace: Some(Duration::from_secs(2)),
        }
    }

    /// For a test harness: output as given, SIGKILL if the test dies and on drop.
    pub fn harness(output: Output) -> Launch {
        Launch {
            output,
            parent_death: libc::SIGKILL,
            drop_grace: None,
        }
    }
}

/// A running (or exited, not yet dropped) child process.
pub struct Proc {
    name: String,
    pid: u32,
    child: Child,
    log: Option<PathBuf>,
    exited: Option<ExitStatus>,
    drop_grace: Option<Duration>,
}

impl Proc {
    /// Starts `program` with `args`, named `name` in messages (and in its log file's name).
    ///
    /// The child gets its own process group, so a Ctrl-C in the terminal reaches only the
    /// supervisor, which then stops its children in order; stdin is `/dev/null`. Start
    /// children from a thread that outlives them: on Linux the kernel signals a child when
    /// the *thread* that started it ends.
    pub fn spawn(name: &str, program: &Path, args: &[String], launch: &Launch) -> Result<Proc> {
        let mut command = Command::new(program);
        command.args(args).stdin(Stdio::null()).process_group(0);
        let log = match &launch.output {
            Output::Inherit => {
                if std::env::var_os("RUST_LOG").is_none() {
                    command.env("RUST_LOG", "warn");
                }
                None
            }
            Output::Null => {
                command.stdout(Stdio::null()).stderr(Stdio::null());
                None
            }
            Output::Dir(dir) => {
                let (path, file) = new_log_file(dir, name)?;
                let err = file.try_clone().map_err(|source| Error::Create {
                    path: path.clone(),
                    source,
                })?;
                // Plain text: the logs are read in files, not on a terminal.
                command.env("NO_COLOR", "1").stdout(file).stderr(err);
                Some(path)
            }
        };
        #[cfg(target_os = "linux")]
        {
            let signal = launch.parent_death;
            // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
            unsafe {
                command.pre_exec(move || {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = command.spawn().map_err(|source| Error::Spawn {
            name: name.to_owned(),
            program: program.to_path_buf(),
            source,
        })?;
        Ok(Proc {
            name: name.to_owned(),
            pid: child.id(),
            child,
            log,
            exited: None,
            drop_grace: launch.drop_grace,
        })
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The child's log file, if its output goes to one.
    pub fn log_path(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// How the child ended, if it has (reaping it); `None` while it runs.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Whether the child still runs (a frozen child runs).
    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// Sends `signal` to the child. Refused once the child has been reaped, so a recycled
    /// PID is never hit: a PID is given out again only after its process is reaped, and
    /// this child is reaped only through this guard, which then records it. (A child that
    /// exited but is not reaped yet is a zombie; signalling it does nothing.)
    pub fn signal(&self, signal: libc::c_int) -> Result<()> {
        if let Some(status) = self.exited {
            return Err(self.exited_error(status));
        }
        let Ok(pid) = libc::pid_t::try_from(self.pid) else {
            return Err(self.os_error("signal", std::io::ErrorKind::InvalidInput.into()));
        };
        // SAFETY: kill(2) on the PID of our own child, not reaped yet (`exited` is None).
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(self.os_error("signal", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// SIGKILL now, and reaps the child; its exit status (the earlier one if it had ended).
    pub fn kill9(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.exited {
            return Ok(status);
        }
        self.signal(libc::SIGKILL)?;
        self.reap()
    }

    /// SIGSTOP: the child stops in its tracks, sockets open, as a paused VM would. Returns
    /// once every thread of the child is seen stopped in `/proc` (or after a second):
    /// kill(2) only queues the signal, so "frozen" is read off the process, not the call.
    pub fn freeze(&mut self) -> Result<()> {
        if let Some(status) = self.exit_status() {
            return Err(self.exited_error(status));
        }
        self.signal(libc::SIGSTOP)?;
        let deadline = Instant::now() + FREEZE_SEEN_WITHIN;
        while !crate::procfs::all_threads_stopped(self.pid)
            && self.is_running()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(())
    }

    /// SIGCONT: a frozen child runs on.
    pub fn thaw(&self) -> Result<()> {
        self.signal(libc::SIGCONT)
    }

    /// Sends SIGTERM (and SIGCONT, in case the child is frozen), waits up to `grace` for the
    /// child to exit, then SIGKILLs it; reaps it either way. Its exit status.
    pub fn terminate(&mut self, grace: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.exit_status() {
            return Ok(status);
        }
        // Either may fail only because the child just exited; the wait below sees that.
        let _ = self.signal(libc::SIGTERM);
        let _ = self.signal(libc::SIGCONT);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.exit_status() {
                return Ok(status);
            }
            std::thread::sleep(EXIT_POLL);
        }
        self.kill9()
    }

    fn reap(&mut self) -> Result<ExitStatus> {
        let status = self
            .child
            .wait()
            .map_err(|source| self.os_error("reap", source))?;
        self.exited = Some(status);
        Ok(status)
    }

    fn exited_error(&self, status: ExitStatus) -> Error {
        Error::Exited {
            name: self.name.clone(),
            pid: self.pid,
            status,
        }
    }

    fn os_error(&self, action: &'static str, source: std::io::Error) -> Error {
        Error::Signal {
            action,
            name: self.name.clone(),
            pid: self.pid,
            source,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = match self.drop_grace {
            Some(grace) => self.terminate(grace),
            None => self.kill9(),
        };
    }
}

impl std::fmt::Debug for Proc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (pid {})", self.name, self.pid)
    }
}

/// A child that ended without being stopped on purpose: a crash, for a supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exited {
    /// Its name.
    pub name: String,
    /// Its PID while it ran.
    pub pid: u32,
    /// How it ended.
    pub status: ExitStatus,
}

impl Exited {
    /// The [`Exited`] of `proc`, if it has ended.
    pub fn of(proc: &mut Proc) -> Option<Exited> {
        let status = proc.exit_status()?;
        Some(Exited {
            name: proc.name().to_owned(),
            pid: proc.pid(),
            status,
        })
    }
}

impl std::fmt::Display for Exited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (pid {}) exited: {}",
            self.name, self.pid, self.status
        )
    }
}

impl From<Exited> for Error {
    fn from(e: Exited) -> Error {
        Error::Exited {
            name: e.name,
            pid: e.pid,
            status: e.status,
        }
    }
}

/// A new file `<dir>/<name>-<n>.log` for the first `n` from 1 not taken yet; `name` with
/// anything but letters, digits, `-`, `_` and `.` turned into `-`.
fn new_log_file(dir: &Path, name: &str) -> Result<(PathBuf, File)> {
    let stem: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    for n in 1.. {
        let path = dir.join(format!("{stem}-{n}.log"));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(Error::Create { path, source }),
        }
    }
    unreachable!("some log file name is free")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(launch: &Launch) -> Proc {
        Proc::spawn("sleeper", Path::new("sleep"), &["30".to_owned()], launch).unwrap()
    }

    #[test]
    fn a_child_is_frozen_thawed_and_killed_by_its_pid() {
        let mut child = sleeper(&Launch::harness(Output::Null));
        assert!(child.is_running());
        child.freeze().unwrap();
        assert_eq!(crate::procfs::state(child.pid()), Some('T'));
        child.thaw().unwrap();
        crate::wait_until("the sleeper to run on", Duration::from_secs(5), || {
            match crate::procfs::state(child.pid()) {
                Some('T') | None => Err(format!("{:?}", crate::procfs::state(child.pid()))),
                Some(_) => Ok(()),
            }
        })
        .unwrap();
        let status = child.kill9().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        assert!(!child.is_running());
        assert!(
            matches!(child.thaw(), Err(Error::Exited { .. })),
            "a reaped child is never signalled"
        );
        assert_eq!(
            child.kill9().unwrap(),
            status,
            "a second kill9 just reports"
        );
    }

    #[test]
    fn terminate_stops_a_frozen_child_with_sigterm() {
        let mut child = sleeper(&Launch::terminal());
        child.freeze().unwrap();
        let status = child.terminate(Duration::from_secs(5)).unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGTERM)
        );
    }

    #[test]
    fn drop_kills_and_reaps() {
        let child = sleeper(&Launch::harness(Output::Null));
        let pid = child.pid();
        drop(child);
        assert_eq!(crate::procfs::state(pid), None, "no zombie left");
    }

    #[test]
    fn output_goes_to_a_log_file_of_its_own_per_start() {
        let dir = crate::ScratchDir::new("supervise-proc-test").unwrap();
        let launch = Launch::harness(Output::Dir(dir.path().to_path_buf()));
        let script = ["-c".to_owned(), "echo out; echo err >&2".to_owned()];
        for _ in 0..2 {
            let mut child = Proc::spawn("echo er#1", Path::new("sh"), &script, &launch).unwrap();
            crate::wait_until("sh to exit", Duration::from_secs(5), || {
                child.exit_status().ok_or("running")
            })
            .unwrap();
        }
        for n in [1, 2] {
            let log = dir.path().join(format!("echo-er-1-{n}.log"));
            assert_eq!(std::fs::read_to_string(&log).unwrap(), "out\nerr\n");
        }
        dir.mark_passed();
    }

    #[test]
    fn a_missing_program_names_itself() {
        let err = Proc::spawn(
            "ghost",
            Path::new("/nonexistent/ghost"),
            &[],
            &Launch::harness(Output::Null),
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("cannot start ghost"), "{err}");
    }
}
