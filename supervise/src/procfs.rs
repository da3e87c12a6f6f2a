//! Readings from Linux's `/proc`: of a process, the CPU time it used (benchmarks charge it
//! per request), how long its threads waited for a CPU, its resident memory now and at its
//! peak (VmHWM, which a soak reports per broker), and its run state (whether a SIGSTOP has
//! reached every thread), and whether it has a child process (an `--exec` worker runs one
//! per request); of the machine, its busy and idle CPU time. The parsers are apart from the
//! reads so they are tested on fixed text.

use std::time::Duration;

use crate::error::{Error, Result};

/// User plus system CPU time process `pid` has used so far, from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = read(&path)?;
    parse_cpu_ticks(&stat)
        .map(ticks_to_duration)
        .ok_or_else(|| Error::Proc {
            path,
            why: "unexpected format".into(),
        })
}

/// Resident memory of a process now and at its peak, in KiB, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// VmRSS: resident now.
    pub rss_kib: u64,
    /// VmHWM: the peak resident set since the process started.
    pub hwm_kib: u64,
}

/// Reads process `pid`'s [`Memory`].
pub fn memory(pid: u32) -> Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let status = read(&path)?;
    parse_memory(&status).ok_or_else(|| Error::Proc {
        path,
        why: "no VmRSS line (a zombie, or not Linux)".into(),
    })
}

/// The run state letter of process `pid` (`R`, `S`, `T` stopped, `Z` zombie, ...), or
/// `None` if there is no such process.
pub fn state(pid: u32) -> Option<char> {
    parse_state(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Whether every thread of process `pid` is stopped (`T`): kill(2) only queues SIGSTOP, and
/// on a loaded machine the other threads of a process run on for milliseconds until the
/// group stop reaches them. False if the process is gone.
pub fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat"))
            .ok()
            .and_then(|stat| parse_state(&stat))
            == Some('T')
    })
}

/// How long the threads of `pid` have waited, ready to run, for a CPU: the second field
/// of each `/proc/PID/task/TID/schedstat` (ns), summed; tells a CPU-starved process from an
/// idle one. `None` where the kernel keeps no such figures.
pub fn cpu_wait(pid: u32) -> Option<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        let Ok(text) = std::fs::read_to_string(path) else {
            continue; // a thread that just ended
        };
        total += text.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

/// The whole machine's CPU time from the first line of `/proc/stat`, in clock ticks: on a
/// shared machine, other processes take CPUs too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineTicks {
    /// user, nice, system, irq, softirq and steal.
    pub busy: u64,
    /// idle and iowait.
    pub idle: u64,
}

impl MachineTicks {
    /// Reads them now.
    pub fn now() -> Option<MachineTicks> {
        parse_machine_ticks(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// Busy CPUs on average since `earlier`.
    pub fn busy_cores_since(self, earlier: MachineTicks) -> Option<f64> {
        let busy = self.busy.checked_sub(earlier.busy)?;
        let idle = self.idle.checked_sub(earlier.idle)?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        (busy + idle > 0).then(|| busy as f64 / (busy + idle) as f64 * cpus as f64)
    }
}

/// `cpu  user nice system idle iowait irq softirq steal ...`: idle and iowait are idle.
fn parse_machine_ticks(stat: &str) -> Option<MachineTicks> {
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let [user, nice, system, idle, iowait, irq, softirq, steal] = fields[..] else {
        return None;
    };
    Some(MachineTicks {
        busy: user + nice + system + irq + softirq + steal,
        idle: idle + iowait,
    })
}

/// Whether process `pid` has a child: some process in `/proc` names it as its parent.
/// False if `/proc` cannot be read.
pub fn has_child(pid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let is_pid = name
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        is_pid
            && std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|stat| parse_parent(&stat))
                == Some(pid)
    })
}

fn read(path: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Proc {
        path: path.to_owned(),
        why: e.to_string(),
    })
}

/// The fields after `(comm)` in a `stat` line; the command name may itself hold spaces
/// and parentheses, so the last `)` ends it.
fn after_comm(stat: &str) -> Option<&str> {
    Some(&stat[stat.rfind(')')? + 1..])
}

/// Field 3 of a `stat` line: the state.
fn parse_state(stat: &str) -> Option<char> {
    after_comm(stat)?.split_whitespace().next()?.chars().next()
}

/// Field 4 of a `stat` line: the parent's PID.
fn parse_parent(stat: &str) -> Option<u32> {
    after_comm(stat)?.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime (fields 14 and 15) in clock ticks.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let fields: Vec<&str> = after_comm(stat)?.split_whitespace().collect();
    // The fields after the command name start at field 3, so field N is at index N - 3.
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
    Duration::from_micros(ticks.saturating_mul(1_000_000) / per_second)
}

fn parse_memory(status: &str) -> Option<Memory> {
    let kib = |key: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let rss_kib = kib("VmRSS:")?;
    Some(Memory {
        rss_kib,
        hwm_kib: kib("VmHWM:").unwrap_or(rss_kib),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "42 (my (odd) name) T 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0 9 0 0";

    #[test]
    fn stat_fields_skip_a_command_name_with_spaces_and_parens() {
        assert_eq!(parse_cpu_ticks(STAT), Some(12));
        assert_eq!(parse_state(STAT), Some('T'));
        assert_eq!(parse_cpu_ticks("garbage"), None);
        assert_eq!(parse_state("1 (x)"), None);
    }

    #[test]
    fn stat_gives_the_parent() {
        assert_eq!(parse_parent(STAT), Some(1));
        assert_eq!(parse_parent("123 (sh) S 77 123 77 0 -1"), Some(77));
        assert_eq!(parse_parent("9 (a (b) c) R 1 9 9"), Some(1));
        assert_eq!(parse_parent("garbage"), None);
    }

    #[test]
    fn sees_a_child_of_this_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep");
        let seen = has_child(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(seen);
    }

    #[test]
    fn memory_reads_rss_and_the_peak() {
        let status = "Name:\tx\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\n";
        assert_eq!(
            parse_memory(status),
            Some(Memory {
                rss_kib: 1024,
                hwm_kib: 2048
            })
        );
        assert_eq!(parse_memory("Name:\tzombie\nState:\tZ\n"), None);
    }

    #[test]
    fn machine_ticks_count_iowait_as_idle() {
        let stat = "cpu  10 1 5 100 20 2 2 0 0 0\ncpu0 5 0 2 50 10 1 1 0 0 0\n";
        assert_eq!(
            parse_machine_ticks(stat),
            Some(MachineTicks {
                busy: 20,
                idle: 120
            })
        );
        assert_eq!(parse_machine_ticks("intr 1 2 3"), None);
        assert!(MachineTicks::now().is_some(), "this machine's /proc/stat");
    }

    #[test]
    fn own_process_readings_work() {
        // Kernels without schedstats give no wait; where there are figures, they add up.
        if let Some(wait) = cpu_wait(std::process::id()) {
            assert!(wait < Duration::from_secs(24 * 3600));
        }
        let pid = std::process::id();
        cpu_time(pid).unwrap();
        let m = memory(pid).unwrap();
        assert!(m.rss_kib > 0 && m.hwm_kib >= m.rss_kib, "{m:?}");
        assert!(matches!(state(pid), Some('R' | 'S')), "{:?}", state(pid));
        assert!(!all_threads_stopped(pid));
        assert!(memory(u32::MAX).is_err());
        assert_eq!(state(u32::MAX), None);
    }
}
