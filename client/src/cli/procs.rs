//! Child-process supervision for `hearth up` and `hearth bench`: find the sibling binaries,
//! spawn them, watch them, signal them (kill -9, SIGSTOP, SIGCONT) by the PID this process
//! started, and stop them (SIGTERM, then SIGKILL) even when the command fails halfway,
//! through a guard whose `Drop` does it. Also the `/proc` readings the benchmark needs (CPU
//! time, memory), free local ports, and polling a condition with a deadline.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use hearth_client::{Client, ClientConfig};

/// How long children get to come up (broker bound, workers registered).
pub const STARTUP: Duration = Duration::from_secs(10);
/// How long a child gets between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(2);

/// A running child process that is stopped when this guard is dropped.
pub struct Supervised {
    name: String,
    child: std::process::Child,
    exited: Option<ExitStatus>,
}

impl Supervised {
    /// Starts `program` with `args`, named `name` in messages. The child gets its own process
    /// group, so a Ctrl-C in the terminal reaches only `hearth`, which then stops its
    /// children in order; on Linux it also gets SIGTERM should `hearth` die first.
    pub fn spawn(name: &str, program: &Path, args: &[String]) -> anyhow::Result<Supervised> {
        let mut command = Command::new(program);
        command.args(args).stdin(Stdio::null()).process_group(0);
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "warn");
        }
        #[cfg(target_os = "linux")]
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {name} ({})", program.display()))?;
        tracing::debug!(name, pid = child.id(), "started");
        Ok(Supervised {
            name: name.to_owned(),
            child,
            exited: None,
        })
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How the child ended, if it has (reaping it).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Whether the child still runs.
    pub fn is_alive(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// Sends `signal` to the child. Refused once the child has been reaped, so a recycled
    /// PID can never be hit: until this process reaps it, the PID stays the child's.
    pub fn signal(&mut self, signal: libc::c_int) -> anyhow::Result<()> {
        if let Some(status) = self.exit_status() {
            bail!(
                "{} (pid {}) already exited: {status}",
                self.name,
                self.pid()
            );
        }
        let pid = libc::pid_t::try_from(self.pid()).context("pid out of range")?;
        // SAFETY: plain syscall on our own, not yet reaped, child.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot signal {} (pid {pid})", self.name));
        }
        Ok(())
    }

    /// `kill -9` now, and reaps the child.
    pub fn kill_now(&mut self) -> anyhow::Result<ExitStatus> {
        self.signal(libc::SIGKILL)?;
        let status = self
            .child
            .wait()
            .with_context(|| format!("cannot reap {}", self.name))?;
        self.exited = Some(status);
        Ok(status)
    }

    /// Sends SIGTERM (and SIGCONT, in case the child is frozen), waits up to `grace` for the
    /// child to exit, then SIGKILLs and reaps it.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        if !self.is_alive() {
            return self.exited;
        }
        let _ = self.signal(libc::SIGTERM);
        let _ = self.signal(libc::SIGCONT);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.is_alive() {
                return self.exited;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        tracing::warn!(name = %self.name, pid = self.pid(), "did not stop on SIGTERM; killing");
        let _ = self.child.kill();
        self.exited = self.child.wait().ok();
        self.exited
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.terminate(GRACE);
    }
}

/// Path of a sibling binary (`hearth-broker`, `hearth-worker`): `$HEARTH_BIN_DIR/NAME`, or
/// beside the running `hearth`.
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("HEARTH_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_exe()
            .context("cannot locate the hearth binary")?
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| anyhow!("the hearth binary has no parent directory"))?,
    };
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} not found; build them first: cargo build --release --workspace --bins \
             (or point HEARTH_BIN_DIR at their directory)",
            path.display()
        );
    }
    Ok(path)
}

/// This `hearth` binary, to start its hidden helpers as children.
pub fn this_binary() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("cannot locate the hearth binary")
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// User plus system CPU time a process has used so far, from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    parse_cpu_ticks(&stat)
        .map(ticks_to_duration)
        .ok_or_else(|| anyhow!("unexpected /proc/{pid}/stat format"))
}

/// utime + stime in clock ticks; fields 14 and 15, counted after the `(comm)` field, which
/// may itself hold spaces or parentheses.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so field N is at index N - 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn ticks_to_duration(ticks: u64) -> Duration {
    // SAFETY: sysconf only reads a system constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second)
        .ok()
        .filter(|&t| t > 0)
        .unwrap_or(100);
    Duration::from_micros(ticks * 1_000_000 / per_second)
}

/// Resident memory of a process now and at its peak, in KiB, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// VmRSS.
    pub rss_kib: u64,
    /// VmHWM: the peak resident set.
    pub hwm_kib: u64,
}

/// Reads a process's [`Memory`].
pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    Ok(parse_memory(&status))
}

fn parse_memory(status: &str) -> Memory {
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Memory {
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
    }
}

/// Set by SIGINT or SIGTERM once [`install_stop_signals`] ran.
static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP_REQUESTED.store(true, Ordering::SeqCst);
}

/// Turns SIGINT and SIGTERM into a flag [`stop_requested`] reads, so a supervisor can stop
/// its children in order instead of dying at once.
pub fn install_stop_signals() {
    let handler = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Whether SIGINT or SIGTERM arrived since [`install_stop_signals`].
pub fn stop_requested() -> bool {
    STOP_REQUESTED.load(Ordering::SeqCst)
}

/// Waits until `hearth.status` shows `service` with `count` workers, or the broker exits.
pub fn wait_for_workers(
    broker: &mut Supervised,
    frontend: &str,
    service: &str,
    count: u64,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + STARTUP;
    let mut config = ClientConfig::new([frontend]);
    config.timeout = Duration::from_millis(500);
    let mut client = Client::new(config).context("status client")?;
    loop {
        if let Some(status) = broker.exit_status() {
            bail!("{} exited during startup: {status}", broker.name());
        }
        let last = match client.status() {
            Ok(status) => {
                let workers = status
                    .services
                    .iter()
                    .find(|s| s.name == service)
                    .map_or(0, |s| s.workers);
                if workers >= count {
                    return Ok(());
                }
                format!("{service} has {workers} of {count} workers")
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            bail!("{service} not ready within {STARTUP:?}: {last}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `probe` every `every` until it returns `Ok`, or fails after `timeout` with `what`
/// and the last thing `probe` saw.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(value) => return Ok(value),
            Err(last) if Instant::now() >= deadline => {
                bail!(
                    "{what}: not within {}; last seen: {last}",
                    humantime::format_duration(timeout)
                )
            }
            Err(_) => std::thread::sleep(every),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_skip_a_command_name_with_spaces_and_parens() {
        let stat = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0 9 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(12));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn memory_reads_rss_and_hwm() {
        let status = "Name:\tx\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\n";
        let m = parse_memory(status);
        assert_eq!((m.rss_kib, m.hwm_kib), (1024, 2048));
    }

    #[test]
    fn own_process_readings_work() {
        let pid = std::process::id();
        cpu_time(pid).unwrap();
        assert!(memory(pid).unwrap().rss_kib > 0);
    }

    #[test]
    fn a_supervised_child_is_terminated() {
        let mut child =
            Supervised::spawn("sleeper", Path::new("/bin/sleep"), &["30".to_owned()]).unwrap();
        assert!(child.is_alive());
        let status = child.terminate(GRACE).unwrap();
        assert!(!status.success());
        assert!(!child.is_alive());
        assert!(
            child.signal(libc::SIGCONT).is_err(),
            "a reaped child is never signalled"
        );
    }

    #[test]
    fn a_frozen_child_is_killed_and_reaped() {
        let mut child =
            Supervised::spawn("sleeper", Path::new("/bin/sleep"), &["30".to_owned()]).unwrap();
        child.signal(libc::SIGSTOP).unwrap();
        let status = child.kill_now().unwrap();
        assert!(!status.success());
        assert!(!child.is_alive());
    }

    #[test]
    fn wait_until_reports_the_last_value_seen() {
        let mut n = 0;
        let got = wait_until(
            "three",
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                n += 1;
                if n >= 3 {
                    Ok(n)
                } else {
                    Err(format!("n = {n}"))
                }
            },
        );
        assert_eq!(got.unwrap(), 3);
        let err = wait_until::<()>("never", Duration::ZERO, Duration::ZERO, || {
            Err("still no".into())
        })
        .unwrap_err();
        assert!(err.to_string().contains("still no"), "{err}");
    }
}
