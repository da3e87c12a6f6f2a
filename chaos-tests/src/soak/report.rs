//! The soak's verdict: the table printed at the end of a run, and the failures that make
//! `hearth-soak` exit non-zero.
//!
//! The table has one row per figure and a verdict column: `FAIL` on a figure that must be
//! zero and is not, `ok` on one that is. What the figures mean is documented on
//! [`SoakReport`]'s fields and in the README's "The chaos soak".

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::load::Tally;
use crate::pair::Side;

use super::epochs::StateTotals;
use super::rss::BrokerMemory;
use super::runner::{EventCounts, HeldBack, Span};
use super::schedule::EventKind;

/// The longest time during which no caller received any answer.
#[derive(Debug, Clone)]
pub struct Silence {
    /// How long.
    pub length: Duration,
    /// When it began, from the start of the load.
    pub at: Duration,
    /// The events it overlapped, if any.
    pub during: Vec<String>,
}

/// Everything a soak counted.
#[derive(Debug, Clone)]
pub struct SoakReport {
    /// The seed of the schedule.
    pub seed: u64,
    /// The command that replays the run's schedule.
    pub replay: String,
    /// The whole run, start-up and final account included.
    pub elapsed: Duration,
    /// The chaos phase.
    pub chaos: Duration,
    /// Events in the schedule, and how many of them the chaos phase reached.
    pub planned: usize,
    /// Events reached (carried out or skipped).
    pub reached: usize,
    /// What the events did.
    pub events: EventCounts,
    /// Replacement workers started.
    pub worker_restarts: u64,
    /// The request load's counts, callers and probes together (its replies left out);
    /// `answered_via` is primary first. Lost requests were never answered up to the
    /// drain time; mismatched replies match no request sent: always a bug.
    pub calls: Tally,
    /// The longest a call of a regular caller (1 s per try, then the other broker) took
    /// from its first send to its answer: the longest wait a client saw.
    pub longest_call: Duration,
    /// The longest time no regular caller got any answer.
    pub silence: Option<Silence>,
    /// The state load's account, over all epochs.
    pub state: StateTotals,
    /// `hearth_failovers_total`: the last value seen of every broker process, summed.
    pub failovers: u64,
    /// Failovers the harness did not cause (a broker starved on a loaded machine).
    pub unexplained_failovers: u64,
    /// How often the active side differed from the one of the settle before.
    pub active_changes: u64,
    /// Dual answers: a reply from a broker while its peer was the active.
    pub dual_answers: Vec<String>,
    /// Each broker's peak memory, primary first.
    pub memory: [BrokerMemory; 2],
    /// How many processes each broker had, primary first.
    pub broker_starts: [usize; 2],
    /// Why the run stopped early, if it did.
    pub error: Option<String>,
}

impl SoakReport {
    /// What is wrong, one line each; empty if the run passed.
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        if let Some(error) = &self.error {
            failures.push(format!("the run stopped: {error}"));
        }
        let c = &self.calls;
        if c.lost > 0 || c.mismatched > 0 || c.answered < c.sent {
            failures.push(format!(
                "calls: {} sent, {} answered, {} lost, {} mismatched; examples: {:?}",
                c.sent, c.answered, c.lost, c.mismatched, c.examples
            ));
        }
        for answer in &self.dual_answers {
            failures.push(format!("dual answer: {answer}"));
        }
        let s = &self.state;
        for (count, what) in [
            (s.missing, "acknowledged writes missing after recovery"),
            (
                s.reapplied,
                "acknowledged writes applied twice or lost and rewritten",
            ),
            (s.refused_or_errors, "writes refused or failed"),
            (s.out_of_order, "watcher changes out of order (missed)"),
            (s.duplicates, "watcher changes taken twice"),
            (
                s.view_diffs,
                "keys where the watcher's view and state.get differ",
            ),
            (s.not_caught_up, "epochs whose watcher did not catch up"),
            (
                s.unchecked,
                "acknowledged writes never checked (no model read back)",
            ),
        ] {
            if count > 0 {
                failures.push(format!("{count} {what}"));
            }
        }
        if s.acknowledged == 0 {
            failures.push("no write was acknowledged".to_owned());
        }
        failures.extend(s.failures.iter().cloned());
        failures
    }

    /// Whether nothing is wrong.
    pub fn passed(&self) -> bool {
        self.failures().is_empty()
    }

    /// The table.
    pub fn table(&self) -> String {
        let mut rows: Vec<(String, String, &str)> = Vec::new();
        let mut row = |what: &str, value: String, verdict: &'static str| {
            rows.push((what.to_owned(), value, verdict));
        };
        let zero = |n: u64| if n == 0 { "ok" } else { "FAIL" };
        row(
            "seed",
            format!("{} (replay: {})", self.seed, self.replay),
            "",
        );
        row(
            "elapsed",
            format!(
                "{:.1} s, chaos {:.1} s",
                self.elapsed.as_secs_f64(),
                self.chaos.as_secs_f64()
            ),
            "",
        );
        row(
            "events",
            format!(
                "{} carried out, {} skipped, of {} planned ({} reached)",
                self.events.done.values().sum::<u64>(),
                self.events.skipped.values().sum::<u64>(),
                self.planned,
                self.reached
            ),
            "",
        );
        for kind in EventKind::ALL {
            row(&format!("  {}", kind.label()), self.event_line(kind), "");
        }
        row("  of which", broker_event_line(&self.events), "");
        row(
            "takeovers held back by the restart rule",
            held_back_line(&self.events.held_back),
            "",
        );
        let c = &self.calls;
        row(
            "calls sent / answered",
            format!(
                "{} / {} (primary {}, backup {}; {} resent)",
                c.sent,
                c.answered,
                c.answered_via(0),
                c.answered_via(1),
                c.resent
            ),
            if c.answered == c.sent { "ok" } else { "FAIL" },
        );
        row("calls lost", c.lost.to_string(), zero(c.lost));
        row("calls duplicated", c.duplicated.to_string(), "");
        row(
            "calls mismatched",
            c.mismatched.to_string(),
            zero(c.mismatched),
        );
        let s = &self.state;
        row(
            "writes sent / acknowledged",
            format!(
                "{} / {} ({} epochs; {} calls timed out, {} given up, {} of those applied)",
                s.sent, s.acknowledged, s.epochs, s.timed_out, s.unacked, s.unacked_applied
            ),
            if s.acknowledged > 0 { "ok" } else { "FAIL" },
        );
        row(
            "writes missing after recovery",
            if s.unchecked == 0 {
                s.missing.to_string()
            } else {
                format!(
                    "{} ({} acknowledged writes unchecked)",
                    s.missing, s.unchecked
                )
            },
            zero(s.missing + s.unchecked),
        );
        row(
            "writes applied twice",
            s.reapplied.to_string(),
            zero(s.reapplied),
        );
        row(
            "writes refused or failed",
            s.refused_or_errors.to_string(),
            zero(s.refused_or_errors),
        );
        row(
            "watcher changes seen",
            format!("{} ({} resyncs)", s.changes, s.resyncs),
            "",
        );
        row(
            "watcher changes missed / out of order",
            s.out_of_order.to_string(),
            zero(s.out_of_order),
        );
        row(
            "watcher changes taken twice",
            s.duplicates.to_string(),
            zero(s.duplicates),
        );
        row(
            "watcher view = state.get",
            if s.view_diffs == 0 && s.not_caught_up == 0 {
                "yes".to_owned()
            } else {
                format!(
                    "no: {} keys differ, {} epochs not caught up",
                    s.view_diffs, s.not_caught_up
                )
            },
            zero(s.view_diffs + s.not_caught_up),
        );
        row(
            "failovers",
            format!(
                "{} (hearth_failovers_total, last seen per broker process, summed; {} \
                 unexplained); active changed {} times between settles",
                self.failovers, self.unexplained_failovers, self.active_changes
            ),
            "",
        );
        row(
            "moments with two brokers answering",
            self.dual_answers.len().to_string(),
            zero(self.dual_answers.len() as u64),
        );
        row(
            "longest call (first send to answer)",
            format!("{} ms", self.longest_call.as_millis()),
            "",
        );
        row(
            "longest silence (no caller answered)",
            match &self.silence {
                Some(s) => format!(
                    "{} ms, from {:.1} s{}",
                    s.length.as_millis(),
                    s.at.as_secs_f64(),
                    if s.during.is_empty() {
                        String::new()
                    } else {
                        format!(", during {}", s.during.join(", "))
                    }
                ),
                None => "-".to_owned(),
            },
            "",
        );
        for side in Side::BOTH {
            let m = &self.memory[side.index()];
            row(
                &format!("peak RSS of the {}", side.role()),
                format!(
                    "{} (VmHWM, max over {} processes; the last one now {}, peak {})",
                    mib(m.peak.hwm_kib),
                    self.broker_starts[side.index()],
                    m.current
                        .map_or("-".to_owned(), |(_, now)| mib(now.rss_kib)),
                    m.current
                        .map_or("-".to_owned(), |(_, now)| mib(now.hwm_kib)),
                ),
                "",
            );
        }
        row("workers restarted", self.worker_restarts.to_string(), "");
        let width = rows.iter().map(|(w, _, _)| w.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (what, value, verdict) in rows {
            let verdict = if verdict.is_empty() {
                String::new()
            } else {
                format!("[{verdict}] ")
            };
            let _ = writeln!(out, "{what:<width$}  {verdict}{value}");
        }
        out
    }

    fn event_line(&self, kind: EventKind) -> String {
        let e = &self.events;
        let done = e.done.get(&kind).copied().unwrap_or(0);
        let mut line = done.to_string();
        let mut parts = Vec::new();
        match kind {
            EventKind::PowerCut => parts.push(format!(
                "the broker started first served at once {} times, waited for its peer {} \
                 times",
                e.cut_first_served, e.cut_first_waited
            )),
            EventKind::HangWorker => parts.push(format!(
                "{} mid-request, {} longer than the brokers' liveness",
                e.hangs_mid_request, e.hangs_past_liveness
            )),
            _ => {}
        }
        if let Some(skipped) = e.skipped.get(&kind) {
            parts.push(format!("{skipped} skipped"));
        }
        if let Some(longest) = e.longest.get(&kind) {
            parts.push(format!("longest {:.1} s to settle", longest.as_secs_f64()));
        }
        if !parts.is_empty() {
            let _ = write!(line, " ({})", parts.join("; "));
        }
        line
    }
}

/// Totals of the broker events over both kinds of kills and both kinds of freezes.
pub fn broker_event_line(e: &EventCounts) -> String {
    let count = |k: EventKind| e.done.get(&k).copied().unwrap_or(0);
    let kills = count(EventKind::KillPrimary) + count(EventKind::KillBackup);
    let freezes = count(EventKind::FreezeShort) + count(EventKind::FreezeLong);
    format!(
        "broker kills: {kills} ({} of the active); freezes: {freezes} ({} of the active, {} \
         with a takeover)",
        e.kills_of_the_active, e.freezes_of_the_active, e.freeze_takeovers
    )
}

/// The takeovers the restart rule held back: how many, in which events, and each reason
/// with its count.
pub fn held_back_line(held: &[HeldBack]) -> String {
    if held.is_empty() {
        return "0".to_owned();
    }
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for h in held {
        *reasons.entry(h.reason.as_str()).or_default() += 1;
    }
    let events: Vec<String> = held
        .iter()
        .map(|h| format!("{} ({})", h.number, h.event))
        .collect();
    let reasons: Vec<String> = reasons
        .into_iter()
        .map(|(reason, n)| format!("{n}x \"{reason}\""))
        .collect();
    format!(
        "{} (events {}; reasons: {})",
        held.len(),
        events.join(", "),
        reasons.join(", ")
    )
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The longest stretch of `[from, to]` with no instant of `received` in it: its length and
/// its start.
pub fn longest_silence(
    mut received: Vec<Instant>,
    from: Instant,
    to: Instant,
) -> (Duration, Instant) {
    received.retain(|t| *t >= from && *t <= to);
    received.sort();
    let mut best = (Duration::ZERO, from);
    let mut last = from;
    for t in received.into_iter().chain(std::iter::once(to)) {
        let gap = t.saturating_duration_since(last);
        if gap > best.0 {
            best = (gap, last);
        }
        last = t;
    }
    best
}

/// The events of `spans` that overlap `[at, at + length]`, named.
pub fn overlapping(spans: &[Span], at: Instant, length: Duration) -> Vec<String> {
    spans
        .iter()
        .filter(|s| s.from <= at + length && s.until >= at)
        .map(|s| format!("event {} ({})", s.number, s.kind.label()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn the_longest_silence_counts_the_edges_too() {
        let t0 = Instant::now();
        let got = longest_silence(
            vec![ms(t0, 300), ms(t0, 100), ms(t0, 1_500), ms(t0, 1_600)],
            t0,
            ms(t0, 2_000),
        );
        assert_eq!(got, (Duration::from_millis(1_200), ms(t0, 300)));
        let got = longest_silence(vec![ms(t0, 100)], t0, ms(t0, 5_000));
        assert_eq!(got, (Duration::from_millis(4_900), ms(t0, 100)));
        assert_eq!(
            longest_silence(Vec::new(), t0, ms(t0, 10)),
            (Duration::from_millis(10), t0)
        );
    }

    #[test]
    fn a_silence_names_the_events_it_overlaps() {
        let t0 = Instant::now();
        let span = |number, from, until| Span {
            kind: EventKind::PowerCut,
            number,
            from: ms(t0, from),
            until: ms(t0, until),
        };
        let spans = [span(0, 0, 100), span(1, 200, 900), span(2, 1_000, 1_100)];
        let during = overlapping(&spans, ms(t0, 150), Duration::from_millis(800));
        assert_eq!(during.len(), 1);
        assert!(during[0].starts_with("event 1 "));
    }

    fn report() -> SoakReport {
        SoakReport {
            seed: 7,
            replay: "hearth-soak --seed 7".to_owned(),
            elapsed: Duration::from_secs(100),
            chaos: Duration::from_secs(90),
            planned: 40,
            reached: 30,
            events: EventCounts::default(),
            worker_restarts: 3,
            calls: Tally {
                sent: 10,
                answered: 10,
                ..Tally::default()
            },
            longest_call: Duration::from_millis(1_234),
            silence: None,
            state: StateTotals {
                acknowledged: 5,
                ..StateTotals::default()
            },
            failovers: 4,
            unexplained_failovers: 0,
            active_changes: 4,
            dual_answers: Vec::new(),
            memory: Default::default(),
            broker_starts: [3, 2],
            error: None,
        }
    }

    #[test]
    fn a_clean_run_passes_and_each_loss_fails_it() {
        let clean = report();
        assert!(clean.passed(), "{:?}", clean.failures());
        assert!(clean.table().contains("calls lost"));
        assert!(!clean.table().contains("FAIL"));

        let mut lost = report();
        lost.calls.lost = 1;
        lost.calls.answered = 9;
        assert!(!lost.passed());
        assert!(lost.table().contains("[FAIL]"));

        let mut dual = report();
        dual.dual_answers.push("the backup answered".to_owned());
        assert_eq!(dual.failures().len(), 1);

        let mut missing = report();
        missing.state.missing = 2;
        missing.state.out_of_order = 1;
        assert_eq!(missing.failures().len(), 2);

        let mut held = report();
        for number in [3, 9] {
            held.events.held_back.push(HeldBack {
                number,
                event: "kill -9 of the active; the backup held back".to_owned(),
                reason: "not in sync".to_owned(),
            });
        }
        assert!(held.passed(), "{:?}", held.failures());
        let table = held.table();
        let line = table
            .lines()
            .find(|l| l.starts_with("takeovers held back by the restart rule"))
            .unwrap_or_default();
        assert!(
            line.ends_with(
                "2 (events 3 (kill -9 of the active; the backup held back), 9 \
                 (kill -9 of the active; the backup held back); reasons: 2x \"not in sync\")"
            ),
            "{line}"
        );
        assert!(clean
            .table()
            .contains("takeovers held back by the restart rule  0"));

        let mut stopped = report();
        stopped.error = Some("the pair did not settle".to_owned());
        assert!(!stopped.passed());
    }
}
