//! What `hearth bench state` reads around each measured window besides the load itself:
//! CPU time (utime + stime from `/proc/PID/stat`) of the active broker, of the passive
//! while it lives, of this process (the load generator) and of the whole machine (from
//! `/proc/stat`: on a shared machine, other processes take CPUs too); how long the
//! brokers' threads were ready to run but waited for a CPU (the run-queue wait of
//! `/proc/PID/task/*/schedstat`), which tells a CPU-starved broker from an idle one; and
//! each broker's flush counter from `/metrics`, from which rounds per second and writes per
//! round follow.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::super::load::InOrderReport;
use super::super::stats::{cores, cpu_per_request as per_request, round2};
use super::cluster::{self, FlushCounter};
use super::report::{Cpu, Flush, Phase};
use crate::cli::procs;

/// One broker watched by a [`Meter`].
#[derive(Debug, Clone, Copy)]
pub struct Watched {
    /// Its process id.
    pub pid: u32,
    /// Where its `/metrics` are.
    pub metrics: SocketAddr,
}

/// The counters at one edge of the window.
#[derive(Debug, Default, Clone, Copy)]
struct Reading {
    at: Option<Instant>,
    active_cpu: Option<Duration>,
    passive_cpu: Option<Duration>,
    clients_cpu: Option<Duration>,
    machine: Option<MachineTicks>,
    active_wait: Option<Duration>,
    passive_wait: Option<Duration>,
    active_flush: Option<FlushCounter>,
    passive_flush: Option<FlushCounter>,
}

/// Reads the counters as a window opens and closes (pass [`Meter::mark`] to the load).
#[derive(Debug)]
pub struct Meter {
    active: Watched,
    passive: Option<Watched>,
    open: Reading,
    close: Reading,
}

impl Meter {
    /// A meter of the active broker and, if it runs, the passive.
    pub fn new(active: Watched, passive: Option<Watched>) -> Meter {
        Meter {
            active,
            passive,
            open: Reading::default(),
            close: Reading::default(),
        }
    }

    /// Reads the counters as the window opens (`true`) or closes (`false`). CPU first, on
    /// the edge; the HTTP questions after.
    pub fn mark(&mut self, open: bool) {
        let at = Instant::now();
        let cpu = |pid: u32| procs::cpu_time(pid).ok();
        let mut reading = Reading {
            at: Some(at),
            active_cpu: cpu(self.active.pid),
            passive_cpu: self.passive.and_then(|p| cpu(p.pid)),
            clients_cpu: cpu(std::process::id()),
            machine: machine_ticks(),
            active_wait: cpu_wait(self.active.pid),
            passive_wait: self.passive.and_then(|p| cpu_wait(p.pid)),
            ..Reading::default()
        };
        reading.active_flush = cluster::flush_counter(self.active.metrics).ok();
        reading.passive_flush = self
            .passive
            .and_then(|p| cluster::flush_counter(p.metrics).ok());
        if open {
            self.open = reading;
        } else {
            self.close = reading;
        }
    }

    /// The phase's figures: the load's, and per request the CPU and the flushes.
    pub fn phase(&self, load: InOrderReport) -> Phase {
        let window = match (self.open.at, self.close.at) {
            (Some(open), Some(close)) => close.saturating_duration_since(open),
            _ => Duration::ZERO,
        };
        let requests = load.load.requests;
        let used =
            |open: Option<Duration>, close: Option<Duration>| Some(close?.saturating_sub(open?));
        let active = used(self.open.active_cpu, self.close.active_cpu);
        let passive = used(self.open.passive_cpu, self.close.passive_cpu);
        let clients = used(self.open.clients_cpu, self.close.clients_cpu);
        let cpu = Cpu {
            active_us_per_op: per_request(active, requests),
            passive_us_per_op: per_request(passive, requests),
            clients_us_per_op: per_request(clients, requests),
            active_cores: cores(active, window),
            passive_cores: cores(passive, window),
            clients_cores: cores(clients, window),
            active_wait_cores: cores(used(self.open.active_wait, self.close.active_wait), window),
            passive_wait_cores: cores(
                used(self.open.passive_wait, self.close.passive_wait),
                window,
            ),
            machine_cores: match (self.open.machine, self.close.machine) {
                (Some(open), Some(close)) => close.busy_cores_since(open),
                _ => None,
            },
        };
        let flush = |open: Option<FlushCounter>, close: Option<FlushCounter>| {
            let (open, close) = (open?, close?);
            let rounds = (close.rounds - open.rounds).max(0.0);
            let seconds = window.as_secs_f64();
            Some(Flush {
                rounds: rounds as u64,
                rounds_per_s: if seconds > 0.0 {
                    round2(rounds / seconds)
                } else {
                    0.0
                },
                writes_per_round: if rounds > 0.0 {
                    round2(requests as f64 / rounds)
                } else {
                    0.0
                },
                round_ms: if rounds > 0.0 {
                    round2((close.seconds - open.seconds) * 1000.0 / rounds)
                } else {
                    0.0
                },
                writes_per_fsync: {
                    let fsyncs = (close.fsyncs - open.fsyncs).max(0.0);
                    if fsyncs > 0.0 {
                        round2(requests as f64 / fsyncs)
                    } else {
                        0.0
                    }
                },
            })
        };
        Phase {
            errors: load.refused,
            cpu,
            flush: flush(self.open.active_flush, self.close.active_flush),
            passive_flush: flush(self.open.passive_flush, self.close.passive_flush),
            load: load.load,
        }
    }
}

/// How long the threads of `pid` have waited, ready to run, for a CPU: the second field
/// of each `/proc/PID/task/TID/schedstat` (ns), summed. None where the kernel keeps no
/// such figures.
fn cpu_wait(pid: u32) -> Option<Duration> {
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

/// The machine's CPU time from the first line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MachineTicks {
    busy: u64,
    idle: u64,
}

impl MachineTicks {
    /// Busy CPUs on average since `earlier` (2 decimals).
    fn busy_cores_since(self, earlier: MachineTicks) -> Option<f64> {
        let busy = self.busy.checked_sub(earlier.busy)?;
        let idle = self.idle.checked_sub(earlier.idle)?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        (busy + idle > 0).then(|| round2(busy as f64 / (busy + idle) as f64 * cpus as f64))
    }
}

fn machine_ticks() -> Option<MachineTicks> {
    parse_machine_ticks(&std::fs::read_to_string("/proc/stat").ok()?)
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(machine_ticks().is_some(), "this machine's /proc/stat");
    }

    #[test]
    fn own_cpu_wait_reads() {
        // Kernels without schedstats give none; where there are figures, they add up.
        if let Some(wait) = cpu_wait(std::process::id()) {
            assert!(wait < Duration::from_secs(24 * 3600));
        }
    }
}
