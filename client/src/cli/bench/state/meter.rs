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

use hearth_supervise::procfs::{cpu_time, cpu_wait, MachineTicks};

use super::super::load::InOrderReport;
use super::super::stats::{cores, cpu_per_request as per_request, round2};
use super::cluster::{self, FlushCounter};
use super::report::{Cpu, Flush, Phase};

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
        let cpu = |pid: u32| cpu_time(pid).ok();
        let mut reading = Reading {
            at: Some(at),
            active_cpu: cpu(self.active.pid),
            passive_cpu: self.passive.and_then(|p| cpu(p.pid)),
            clients_cpu: cpu(std::process::id()),
            machine: MachineTicks::now(),
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
                (Some(open), Some(close)) => close.busy_cores_since(open).map(round2),
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
