//! What `hearth bench state` measured, as the table it prints and as its one JSON line;
//! the targets, judged met or MISS (figures, not failures); and the one-line hint of what
//! bounds the write throughput, read off the CPU and flush figures.

use serde::Serialize;

use super::super::stats::LoadReport;

/// Writes per second the replicated durable writes aim for.
pub const TARGET_WRITES_PER_S: f64 = 50_000.0;
/// Their p99 latency target, ms.
pub const TARGET_P99_MS: f64 = 5.0;
/// Restart to first answer, ms.
pub const TARGET_RESTART_MS: f64 = 300.0;
/// Broker RSS at 100,000 keys, MB.
pub const TARGET_RSS_MB: f64 = 50.0;

/// The run's parameters.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Client threads, one DEALER each.
    pub writers: u64,
    /// Requests each keeps outstanding.
    pub inflight: u64,
    /// Bytes of each value's Bencode encoding.
    pub size: usize,
    /// Keys the writes cycle over, and the model's size at the restart.
    pub keys: u64,
    /// Measured window of each phase, ms.
    pub duration_ms: u64,
    /// Unmeasured warmup before each window, ms.
    pub warmup_ms: u64,
    /// The pair's peer heartbeat, ms.
    pub peer_heartbeat_ms: u64,
    /// CPUs of this machine.
    pub cpus: usize,
}

/// CPU figures of one phase: per request, and in cores over the window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Cpu {
    /// The active broker's CPU µs per request.
    pub active_us_per_op: Option<f64>,
    /// The passive's (none once it is killed).
    pub passive_us_per_op: Option<f64>,
    /// The load generator's (this process).
    pub clients_us_per_op: Option<f64>,
    /// The active broker's CPU over the window, in cores.
    pub active_cores: Option<f64>,
    /// The passive's.
    pub passive_cores: Option<f64>,
    /// The load generator's.
    pub clients_cores: Option<f64>,
    /// The active broker's threads' time ready to run but waiting for a CPU, in CPUs
    /// (0.5: on average half a thread was kept waiting all the window).
    pub active_wait_cores: Option<f64>,
    /// The passive's.
    pub passive_wait_cores: Option<f64>,
    /// The whole machine's busy CPUs over the window (other processes' too).
    pub machine_cores: Option<f64>,
}

/// A broker's group commit over one window, from its flush histogram: one sample per poll
/// round whose changes reached the writer thread (rounds queued behind a running fsync
/// share the next one, so fsyncs are at most this many).
#[derive(Debug, Clone, Serialize)]
pub struct Flush {
    /// Rounds flushed in the window.
    pub rounds: u64,
    /// Per second.
    pub rounds_per_s: f64,
    /// Requests answered in the window per round.
    pub writes_per_round: f64,
    /// Mean time from a round's hand-over to the writer to its fsync, ms.
    pub round_ms: f64,
    /// Requests answered in the window per fsync (rounds queued behind a running fsync
    /// share the next one).
    pub writes_per_fsync: f64,
}

/// One measured phase.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// Answers, throughput, latency, lost, mismatched.
    #[serde(flatten)]
    pub load: LoadReport,
    /// `{error}` replies in the window.
    pub errors: u64,
    /// CPU figures.
    pub cpu: Cpu,
    /// The active's group commit (writes only).
    pub flush: Option<Flush>,
    /// The passive's (writes with the pair in sync only).
    pub passive_flush: Option<Flush>,
}

/// The active after the load: the model filled to `--keys` keys, its memory, its restart
/// after `kill -9`, and whether every acknowledged write survived it.
#[derive(Debug, Clone, Serialize)]
pub struct AfterLoad {
    /// Keys in the model before the kill (`/status` `state_keys`).
    pub keys: u64,
    /// Keys the fill wrote because the load had not reached them.
    pub filled: u64,
    /// Write ids the broker remembers: every write of the load carried one, and they are
    /// kept at least 10 minutes, in memory and in the store.
    pub write_ids: u64,
    /// The active broker's VmRSS before the kill, MB.
    pub rss_mb: f64,
    /// The restarted primary's VmRSS once it answered and was surveyed, MB.
    pub rss_after_restart_mb: f64,
    /// exec to first `state.get` answer, restarted with its own flags as the pair's
    /// primary (its peer still down).
    pub primary_ms: f64,
    /// The same, restarted as a standalone broker on the same data dir.
    pub standalone_ms: f64,
    /// Keys found after the restart.
    pub found: u64,
    /// Keys missing or older than their last acknowledged write, before or after the
    /// restart.
    pub lost: u64,
}

/// A fresh standalone broker holding only `--keys` keys (written many keys a request,
/// without write ids): the model's own memory and restart time.
#[derive(Debug, Clone, Serialize)]
pub struct ModelOnly {
    /// Keys in the model (`/status` `state_keys`).
    pub keys: u64,
    /// VmRSS with the keys written, MB.
    pub rss_mb: f64,
    /// exec to first `state.get` answer after `kill -9`, restarted on its data dir.
    pub restart_ms: f64,
    /// VmRSS of the restarted broker once it answered and was surveyed, MB.
    pub rss_after_restart_mb: f64,
    /// Keys found after the restart.
    pub found: u64,
    /// Keys missing after the restart.
    pub lost: u64,
}

/// One target and whether it was met.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What is measured.
    pub name: &'static str,
    /// The target, as printed.
    pub target: String,
    /// The measured value.
    pub value: f64,
    /// Met.
    pub pass: bool,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct StateReport {
    /// The parameters.
    pub settings: Settings,
    /// Replicated durable writes, the pair in sync.
    pub writes_paired: Phase,
    /// The same with the passive killed: the active acknowledges after its own flush.
    pub writes_alone: Phase,
    /// One-key reads, no writer running.
    pub reads: Phase,
    /// The active after the load: memory, restart, durability.
    pub after_load: AfterLoad,
    /// A broker holding only the keys: memory and restart.
    pub model_only: ModelOnly,
    /// The targets.
    pub targets: Vec<Target>,
    /// What bounds the replicated writes, in one line.
    pub bound: String,
    /// From `kill -9` of the passive to the first write the active answered alone, ms.
    pub first_write_alone_ms: f64,
    /// The first `{error}` reply's text, if any.
    pub first_error: Option<String>,
}

impl StateReport {
    /// The phases with their labels, in order.
    fn phases(&self) -> [(&'static str, &Phase); 3] {
        [
            ("writes, pair in sync", &self.writes_paired),
            ("writes, passive down", &self.writes_alone),
            ("reads (state.get)", &self.reads),
        ]
    }

    /// Requests lost, in the load or at the restart.
    pub fn lost(&self) -> u64 {
        self.phases().iter().map(|(_, p)| p.load.lost).sum::<u64>()
            + self.after_load.lost
            + self.model_only.lost
    }

    /// `{error}` replies and replies that were not what the request asked for.
    pub fn errors(&self) -> u64 {
        self.phases()
            .iter()
            .map(|(_, p)| p.errors + p.load.mismatched)
            .sum()
    }

    /// Nothing lost, refused or mismatched.
    pub fn clean(&self) -> bool {
        self.lost() == 0 && self.errors() == 0
    }

    /// The table.
    pub fn print(&self) {
        let s = &self.settings;
        println!(
            "hearth bench state: {} clients × {} in flight, {}-byte values, {} keys, {} ms per phase, {} CPUs",
            s.writers, s.inflight, s.size, s.keys, s.duration_ms, s.cpus
        );
        println!();
        println!(
            "{:<21} {:>8} {:>7} {:>7} {:>7} {:>6} {:>5}   {:<33}  CPUs busy hearth/machine",
            "",
            "req/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "errors",
            "lost",
            "CPU µs/req active/passive/clients"
        );
        for (label, phase) in self.phases() {
            let (l, c) = (&phase.load, &phase.cpu);
            let hearth: f64 = [c.active_cores, c.passive_cores, c.clients_cores]
                .iter()
                .flatten()
                .sum();
            println!(
                "{label:<21} {:>8.0} {:>7.2} {:>7.2} {:>7.2} {:>6} {:>5}   {:<33}  {:.2} / {}",
                l.throughput,
                l.p50_ms,
                l.p99_ms,
                l.max_ms,
                phase.errors + l.mismatched,
                l.lost,
                format!(
                    "{} / {} / {}",
                    figure(c.active_us_per_op),
                    figure(c.passive_us_per_op),
                    figure(c.clients_us_per_op)
                ),
                hearth,
                figure2(c.machine_cores),
            );
        }
        println!();
        for (label, phase) in self.phases().iter().take(2) {
            if let Some(f) = &phase.flush {
                let passive = phase.passive_flush.as_ref().map_or(String::new(), |p| {
                    format!(
                        "; passive {:.0} rounds/s × {:.1} writes",
                        p.rounds_per_s, p.writes_per_round
                    )
                });
                println!(
                    "group commit, {label}: active {:.0} rounds/s × {:.1} writes ({:.1} writes per fsync), {:.2} ms from hand-over to fsync{passive}",
                    f.rounds_per_s, f.writes_per_round, f.writes_per_fsync, f.round_ms
                );
            }
        }
        println!(
            "after kill -9 of the passive, the first write was answered alone {:.1} ms later",
            self.first_write_alone_ms
        );
        let a = &self.after_load;
        println!();
        println!(
            "after the load: the active at {} keys and {} write ids (the load's, remembered 10 min){}",
            a.keys,
            a.write_ids,
            if a.filled > 0 {
                format!(", {} keys filled in", a.filled)
            } else {
                String::new()
            }
        );
        println!(
            "  broker RSS                     {:.1} MB; {:.1} MB once restarted",
            a.rss_mb, a.rss_after_restart_mb
        );
        println!(
            "  restart, exec to first answer  {:.1} ms as the pair's primary (peer down); {:.1} ms as a standalone broker",
            a.primary_ms, a.standalone_ms
        );
        println!(
            "  after kill -9 and restart      {} of {} keys, {} acknowledged writes lost",
            a.found, a.keys, a.lost
        );
        let m = &self.model_only;
        println!(
            "a fresh standalone broker holding only the {} keys (no write ids):",
            m.keys
        );
        println!(
            "  broker RSS                     {:.1} MB; {:.1} MB once restarted",
            m.rss_mb, m.rss_after_restart_mb
        );
        println!(
            "  restart, exec to first answer  {:.1} ms ({} of {} keys found, {} lost)",
            m.restart_ms, m.found, m.keys, m.lost
        );
        if let Some(error) = &self.first_error {
            println!("first error: {error}");
        }
        println!();
        for t in &self.targets {
            println!(
                "target {:<46} {:>10.2}  {:<9} {}",
                t.name,
                t.value,
                t.target,
                if t.pass { "met" } else { "MISS" }
            );
        }
        println!();
        println!("what bounds it: {}", self.bound);
    }
}

fn figure(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

fn figure2(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

/// The targets, judged.
pub fn targets(paired: &Phase, after: &AfterLoad, model: &ModelOnly) -> Vec<Target> {
    let at_most = |name, target: f64, value: f64| Target {
        name,
        target: format!("<= {target:.0}"),
        value,
        pass: value <= target,
    };
    vec![
        Target {
            name: "replicated writes/s",
            target: format!(">= {TARGET_WRITES_PER_S:.0}"),
            value: paired.load.throughput,
            pass: paired.load.throughput >= TARGET_WRITES_PER_S,
        },
        at_most(
            "replicated write p99, ms",
            TARGET_P99_MS,
            paired.load.p99_ms,
        ),
        at_most(
            "restart after the load as the primary, ms",
            TARGET_RESTART_MS,
            after.primary_ms,
        ),
        at_most(
            "restart holding only the keys, ms",
            TARGET_RESTART_MS,
            model.restart_ms,
        ),
        at_most(
            "RSS after the load, MB (at 100000 keys)",
            TARGET_RSS_MB,
            after.rss_mb,
        ),
        at_most(
            "RSS holding only the keys, MB (at 100000 keys)",
            TARGET_RSS_MB,
            model.rss_mb,
        ),
    ]
}

/// What bounds the replicated writes, from the paired and the alone phase: the CPUs if
/// the machine's were (nearly) all busy, naming how much of that was hearth's and how much
/// other processes'; else the group commit if a write spends most of its time waiting for
/// its round to be written and flushed; else the passive's acknowledgement if writes go
/// much faster without it; else no one part.
pub fn bound(paired: &Phase, alone: &Phase, cpus: usize) -> String {
    let c = &paired.cpu;
    let hearth: f64 = [c.active_cores, c.passive_cores, c.clients_cores]
        .iter()
        .flatten()
        .sum();
    let per_write = format!(
        "CPU per write: active {} µs, passive {} µs, clients {} µs",
        figure(c.active_us_per_op),
        figure(c.passive_us_per_op),
        figure(c.clients_us_per_op)
    );
    let speedup = if paired.load.throughput > 0.0 {
        alone.load.throughput / paired.load.throughput
    } else {
        0.0
    };
    let cpus = cpus.max(1) as f64;
    let flush = paired.flush.as_ref();
    let verdict = match c.machine_cores {
        Some(machine) if machine >= 0.9 * cpus => {
            let others = machine - hearth;
            let waited: f64 = [c.active_wait_cores, c.passive_wait_cores]
                .iter()
                .flatten()
                .sum();
            let brokers: f64 = [c.active_cores, c.passive_cores].iter().flatten().sum();
            format!(
                "CPU: {machine:.2} of {cpus:.0} CPUs busy, {hearth:.2} of them hearth's{}; \
                 the brokers' threads ran {brokers:.2} CPUs and waited {waited:.2} more for \
                 one ({per_write})",
                if others >= 0.2 {
                    format!(", {others:.2} other processes'")
                } else {
                    String::new()
                }
            )
        }
        _ if flush.is_some_and(|f| f.round_ms >= 0.5 * paired.load.p50_ms) => format!(
            "the group commit: a write waits {:.2} of its {:.2} ms (p50) for its round to be \
             written and flushed by the writer thread ({per_write})",
            flush.map_or(0.0, |f| f.round_ms),
            paired.load.p50_ms
        ),
        _ if speedup >= 1.3 => format!(
            "the passive's acknowledgement: {speedup:.2}× the writes/s without it ({per_write})"
        ),
        _ => format!(
            "no one part: {hearth:.2} of {cpus:.0} CPUs busy with hearth, the latency of the \
             whole path at this many requests in flight ({per_write})"
        ),
    };
    let commit = flush.map_or(String::new(), |f| {
        format!(
            "; {:.0} rounds/s × {:.1} writes, {:.2} ms from hand-over to fsync",
            f.rounds_per_s, f.writes_per_round, f.round_ms
        )
    });
    format!("{verdict}{commit}; {speedup:.2}× the writes/s with the passive down")
}
