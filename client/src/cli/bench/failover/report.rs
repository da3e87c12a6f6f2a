//! What `hearth bench failover` measured, as the summary table and as its one JSON line,
//! with the targets of the issue and whether each was met.

use std::time::Duration;

use serde::Serialize;

use super::super::stats::{round2, LoadReport};
use super::gap::GapSummary;
use super::stream::Counts;
use super::Disruption;

/// Pair throughput over standalone throughput the pair should reach.
pub const THROUGHPUT_TARGET: f64 = 0.9;

/// One kill or freeze round, as the progress line prints it.
#[derive(Debug, Clone, Serialize)]
pub struct RoundResult {
    /// `kill -9` or `SIGSTOP`.
    pub kind: &'static str,
    /// 1-based, per kind.
    pub round: u32,
    /// The broker that was killed or frozen.
    pub stopped: &'static str,
    /// The broker active once the pair settled again.
    pub active_after: &'static str,
    /// The longest time without an answer around the disruption.
    #[serde(skip)]
    pub gap: Duration,
    /// The same, ms.
    pub gap_ms: f64,
    /// From the disruption to the first reply of the other broker, ms.
    pub takeover_ms: f64,
    /// Requests lost during the round.
    pub lost: u64,
    /// Duplicate replies during the round.
    pub duplicated: u64,
    /// Replies from the stopped broker after the takeover (to requests sent after it stopped).
    pub dual_active: u64,
    /// Replies from the stopped broker after the takeover to requests sent before it stopped.
    pub stale: u64,
}

impl RoundResult {
    /// The progress line of this round.
    pub fn line(&self, rounds: u32, lost_so_far: u64) -> String {
        format!(
            "{:<7} {}/{}: {} stopped, {} active after; gap {:.1} ms (other broker answered \
             after {:.1} ms); lost {} so far, dual-active {}",
            self.kind,
            self.round,
            rounds,
            self.stopped,
            self.active_after,
            self.gap_ms,
            self.takeover_ms,
            lost_so_far,
            self.dual_active
        )
    }
}

/// The rounds of one kind, summarised against its target.
#[derive(Debug, Clone, Serialize)]
pub struct KindReport {
    /// Rounds run.
    pub rounds: usize,
    /// Gap percentiles.
    #[serde(flatten)]
    pub gaps: GapSummary,
    /// The p99 the gap should stay under, ms.
    pub target_p99_ms: f64,
    /// Whether it did.
    pub pass: bool,
    /// Requests lost during these rounds.
    pub lost: u64,
    /// Duplicate replies during these rounds.
    pub duplicated: u64,
    /// Answers from a replaced broker (must be 0).
    pub dual_active: u64,
    /// Late replies of a replaced broker to requests sent before it stopped.
    pub stale: u64,
}

impl KindReport {
    /// Summarises the rounds of `kind` among `rounds`.
    pub fn new(kind: Disruption, rounds: &[RoundResult], target_p99_ms: f64) -> KindReport {
        let mine: Vec<&RoundResult> = rounds.iter().filter(|r| r.kind == kind.label()).collect();
        let gaps: Vec<Duration> = mine.iter().map(|r| r.gap).collect();
        let gaps = GapSummary::new(&gaps);
        KindReport {
            rounds: mine.len(),
            pass: !mine.is_empty() && gaps.p99_ms <= target_p99_ms,
            gaps,
            target_p99_ms,
            lost: mine.iter().map(|r| r.lost).sum(),
            duplicated: mine.iter().map(|r| r.duplicated).sum(),
            dual_active: mine.iter().map(|r| r.dual_active).sum(),
            stale: mine.iter().map(|r| r.stale).sum(),
        }
    }
}

/// One closed-loop throughput run.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputRun {
    /// `standalone` or `pair`.
    pub target: &'static str,
    /// What it measured.
    #[serde(flatten)]
    pub report: LoadReport,
}

/// Closed-loop throughput of a standalone broker (with the same workers) and of the settled
/// pair's active, from runs taken in alternation in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputReport {
    /// Mean of the standalone runs, req/s.
    pub standalone: f64,
    /// Mean of the pair runs, req/s.
    pub pair: f64,
    /// pair / standalone.
    pub ratio: f64,
    /// [`THROUGHPUT_TARGET`].
    pub target: f64,
    /// Whether the ratio reached it.
    pub pass: bool,
    /// Every run, in the order taken.
    pub runs: Vec<ThroughputRun>,
}

impl ThroughputReport {
    /// Compares the runs of the two targets.
    pub fn new(runs: Vec<ThroughputRun>) -> ThroughputReport {
        let mean = |target: &str| {
            let of: Vec<f64> = runs
                .iter()
                .filter(|r| r.target == target)
                .map(|r| r.report.throughput)
                .collect();
            if of.is_empty() {
                0.0
            } else {
                round2(of.iter().sum::<f64>() / of.len() as f64)
            }
        };
        let (standalone, pair) = (mean("standalone"), mean("pair"));
        let ratio = if standalone > 0.0 {
            (pair / standalone * 1000.0).round() / 1000.0
        } else {
            0.0
        };
        ThroughputReport {
            standalone,
            pair,
            ratio,
            target: THROUGHPUT_TARGET,
            pass: ratio >= THROUGHPUT_TARGET,
            runs,
        }
    }

    /// Whether every run got every reply right.
    pub fn clean(&self) -> bool {
        self.runs.iter().all(|r| r.report.clean())
    }

    /// The throughput of each run of `target`, for the table.
    fn run_figures(&self, target: &str) -> String {
        self.runs
            .iter()
            .filter(|r| r.target == target)
            .map(|r| format!("{:.0}", r.report.throughput))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The settings the figures depend on.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Seed of the random wait before each disruption.
    pub seed: u64,
    /// Rounds of each kind.
    pub rounds: u32,
    /// `--peer-heartbeat`, ms.
    pub peer_heartbeat_ms: u64,
    /// How long a stream client waits before trying the other broker, ms.
    pub retry_ms: u64,
    /// How long the active stays frozen, ms.
    pub freeze_ms: u64,
    /// Stream clients.
    pub clients: u64,
    /// Echo worker processes.
    pub workers: u64,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverReport {
    /// kill -9 rounds.
    pub kill9: KindReport,
    /// SIGSTOP rounds.
    pub sigstop: KindReport,
    /// Totals of the stream over the whole run (the final drain included).
    pub stream: Counts,
    /// Answers from a replaced broker over all rounds.
    pub dual_active: u64,
    /// Throughput, standalone against the pair.
    pub throughput: ThroughputReport,
    /// Every round.
    pub rounds: Vec<RoundResult>,
    /// What the figures were measured with.
    pub settings: Settings,
}

impl FailoverReport {
    /// Nothing lost, nothing mismatched, no answer from a replaced broker: the pass/fail of
    /// the command (time and throughput targets are reported, not enforced).
    pub fn clean(&self) -> bool {
        self.stream.lost == 0
            && self.stream.mismatched == 0
            && self.dual_active == 0
            && self.throughput.clean()
    }

    /// The human-readable summary.
    pub fn print(&self) {
        let s = &self.settings;
        println!(
            "failover of the active, {} rounds each; {} RFC 7 clients retrying on the other \
             broker after {} ms; peer heartbeat {} ms; frozen for {} ms; {} echo workers; \
             seed {}",
            s.rounds, s.clients, s.retry_ms, s.peer_heartbeat_ms, s.freeze_ms, s.workers, s.seed
        );
        println!();
        println!(
            "          rounds   gap p50    gap p99    gap max    target p99          lost  dup  dual-active  stale"
        );
        for (label, k) in [("kill -9", &self.kill9), ("SIGSTOP", &self.sigstop)] {
            println!(
                "{label:<9} {:>6}  {:>7.1} ms {:>7.1} ms {:>7.1} ms  <= {:>6.0} ms  {}  {:>4} {:>4} {:>12} {:>6}",
                k.rounds,
                k.gaps.p50_ms,
                k.gaps.p99_ms,
                k.gaps.max_ms,
                k.target_p99_ms,
                verdict(k.pass),
                k.lost,
                k.duplicated,
                k.dual_active,
                k.stale
            );
        }
        println!();
        let t = &self.throughput;
        println!(
            "throughput   standalone {:.0} req/s, pair {:.0} req/s: ratio {:.3} (target >= {:.2}) {}",
            t.standalone,
            t.pair,
            t.ratio,
            t.target,
            verdict(t.pass)
        );
        println!(
            "             runs in alternation: standalone {}; pair {}",
            t.run_figures("standalone"),
            t.run_figures("pair")
        );
        let c = &self.stream;
        println!(
            "stream       {} answered, {} lost, {} duplicated, {} mismatched; {} dual-active answers",
            c.answered, c.lost, c.duplicated, c.mismatched, self.dual_active
        );
        println!(
            "result       {}",
            if self.clean() {
                "clean (nothing lost, no answer from a replaced broker)"
            } else {
                "FAILED: requests lost, replies mismatched or a replaced broker answered"
            }
        );
    }
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}
