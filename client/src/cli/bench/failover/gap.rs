//! The arithmetic of `hearth bench failover`, kept free of sockets and clocks: the longest
//! silence the stream clients saw around a kill or a freeze, which replies came from the
//! broker that had been replaced, and the percentiles of a series of gaps. Times are offsets
//! from the start of the run, so every function here is tested on plain numbers.

use std::time::Duration;

use hearth_supervise::Side;
use serde::Serialize;

use super::super::stats::{percentile, round2};

/// One reply a stream client received, on any of its sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// When it arrived.
    pub at: Duration,
    /// When the attempt it answers was sent.
    pub sent: Duration,
    /// The broker whose frontend it came from.
    pub from: Side,
    /// Whether the client took it as its answer: it came on the socket the client was
    /// waiting on. A reply on a socket the client had already given up is kept only as
    /// evidence (a plain lazy-pirate client would have closed that socket).
    pub answer: bool,
    /// Which stream client received it.
    pub client: u16,
}

/// The longest stretch without an answer: from the answer at `from` to the next at `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Silence {
    /// The answer that opened it (the last one before the disruption, or the disruption
    /// itself when no answer came before it).
    pub from: Duration,
    /// The answer that closed it.
    pub to: Duration,
}

impl Silence {
    /// How long it lasted.
    pub fn length(&self) -> Duration {
        self.to.saturating_sub(self.from)
    }
}

/// The longest interval between consecutive answers (`answers` sorted, any client) around a
/// disruption at `stop`: starting from the last answer at or before `stop`, through every
/// answer up to `end`. `None` when no answer came after `stop` up to `end`: the service never
/// came back inside the window.
pub fn longest_silence(answers: &[Duration], stop: Duration, end: Duration) -> Option<Silence> {
    let first_after = answers.partition_point(|&a| a <= stop);
    let mut previous = first_after
        .checked_sub(1)
        .map_or(stop, |last_before| answers[last_before]);
    let mut longest: Option<Silence> = None;
    for &at in answers[first_after..].iter().take_while(|&&a| a <= end) {
        let gap = Silence {
            from: previous,
            to: at,
        };
        longest = match longest {
            Some(l) if l.length() >= gap.length() => Some(l),
            _ => Some(gap),
        };
        previous = at;
    }
    longest
}

/// What one kill or freeze round came to, as the clients saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundVerdict {
    /// The longest silence around the disruption.
    pub silence: Silence,
    /// The first reply from the other broker after the disruption.
    pub takeover: Duration,
    /// Replies from the stopped broker after the takeover to requests sent after it had
    /// certainly stopped: two brokers answering clients. Must be zero.
    pub dual_active: u64,
    /// Replies from the stopped broker after the takeover to requests sent before it
    /// stopped: a reply its reactor sent just before SIGSTOP may reach the wire only after
    /// SIGCONT. Reported, not a fault.
    pub stale: u64,
}

/// Judges one round from every reply of the run: `stopped` was killed or frozen at `stop`,
/// could answer nothing sent after `quiet_from` (a little after the signal returned), and
/// the pair had settled again by `end`. `None` when the other broker never answered in the
/// window, or no answer came after `stop`.
pub fn judge_round(
    replies: &[Reply],
    stopped: Side,
    stop: Duration,
    quiet_from: Duration,
    end: Duration,
) -> Option<RoundVerdict> {
    let in_window = |r: &&Reply| r.at > stop && r.at <= end;
    let takeover = replies
        .iter()
        .filter(in_window)
        .filter(|r| r.from == stopped.other())
        .map(|r| r.at)
        .min()?;
    let mut answers: Vec<Duration> = replies
        .iter()
        .filter(|r| r.answer && r.at <= end)
        .map(|r| r.at)
        .collect();
    answers.sort_unstable();
    let silence = longest_silence(&answers, stop, end)?;
    let (mut dual_active, mut stale) = (0, 0);
    for r in replies
        .iter()
        .filter(in_window)
        .filter(|r| r.from == stopped && r.at > takeover)
    {
        if r.sent >= quiet_from {
            dual_active += 1;
        } else {
            stale += 1;
        }
    }
    Some(RoundVerdict {
        silence,
        takeover,
        dual_active,
        stale,
    })
}

/// Percentiles of the gaps of one kind of round, in milliseconds (2 decimals).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GapSummary {
    /// Every round's gap, in order.
    pub gaps_ms: Vec<f64>,
    /// Median (nearest rank).
    pub p50_ms: f64,
    /// 99th percentile (nearest rank: the largest gap below 100 rounds).
    pub p99_ms: f64,
    /// Longest gap.
    pub max_ms: f64,
}

impl GapSummary {
    /// Summarises `gaps` (any order); all zero when there are none.
    pub fn new(gaps: &[Duration]) -> GapSummary {
        let micros = |d: &Duration| u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        let mut sorted: Vec<u32> = gaps.iter().map(micros).collect();
        sorted.sort_unstable();
        let ms = |us: u32| round2(f64::from(us) / 1000.0);
        GapSummary {
            gaps_ms: gaps.iter().map(|g| ms(micros(g))).collect(),
            p50_ms: ms(percentile(&sorted, 50.0)),
            p99_ms: ms(percentile(&sorted, 99.0)),
            max_ms: ms(sorted.last().copied().unwrap_or(0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn times(v: &[u64]) -> Vec<Duration> {
        v.iter().copied().map(ms).collect()
    }

    fn reply(at: u64, sent: u64, from: Side, answer: bool) -> Reply {
        Reply {
            at: ms(at),
            sent: ms(sent),
            from,
            answer,
            client: 0,
        }
    }

    #[test]
    fn the_silence_starts_at_the_last_answer_before_the_stop() {
        let answers = times(&[100, 198, 1250, 1251, 1300]);
        let s = longest_silence(&answers, ms(200), ms(2000)).unwrap();
        assert_eq!((s.from, s.to, s.length()), (ms(198), ms(1250), ms(1052)));
    }

    #[test]
    fn a_later_longer_silence_inside_the_window_wins() {
        // Recovery at 1100, then a second hiccup of 1500 ms before the window ends.
        let answers = times(&[90, 1100, 1110, 2610, 2620]);
        let s = longest_silence(&answers, ms(100), ms(3000)).unwrap();
        assert_eq!((s.from, s.to), (ms(1110), ms(2610)));
        // Answers after the end of the window do not count.
        let s = longest_silence(&answers, ms(100), ms(2000)).unwrap();
        assert_eq!((s.from, s.to), (ms(90), ms(1100)));
    }

    #[test]
    fn no_answer_before_the_stop_counts_from_the_stop() {
        let s = longest_silence(&times(&[700, 710]), ms(200), ms(1000)).unwrap();
        assert_eq!((s.from, s.to), (ms(200), ms(700)));
    }

    #[test]
    fn no_answer_after_the_stop_is_no_verdict() {
        assert_eq!(longest_silence(&times(&[50, 100]), ms(200), ms(5000)), None);
        assert_eq!(
            longest_silence(&times(&[50, 6000]), ms(200), ms(5000)),
            None
        );
        assert_eq!(longest_silence(&[], ms(200), ms(5000)), None);
    }

    #[test]
    fn an_answer_exactly_at_the_stop_opens_the_silence() {
        let s = longest_silence(&times(&[200, 900]), ms(200), ms(1000)).unwrap();
        assert_eq!(s.length(), ms(700));
    }

    #[test]
    fn a_round_finds_the_takeover_and_counts_answers_of_the_replaced_broker() {
        use Side::{Backup, Primary};
        let replies = [
            reply(90, 89, Primary, true),
            // Primary frozen at 100 (signal returned at 101, quiet from 111).
            reply(2100, 1100, Backup, true), // held by the passive, served at takeover
            reply(2101, 2100, Backup, true),
            reply(3000, 2999, Backup, true),
            reply(4200, 95, Primary, false), // left the reactor before SIGSTOP: stale
            reply(4300, 1000, Primary, false), // sent while frozen: two actives
            reply(4400, 4390, Backup, true),
            reply(3900, 3899, Backup, true),
            reply(9000, 8990, Primary, true), // after the window: a later round's business
        ];
        let v = judge_round(&replies, Primary, ms(100), ms(111), ms(5000)).unwrap();
        assert_eq!(v.takeover, ms(2100));
        assert_eq!((v.silence.from, v.silence.to), (ms(90), ms(2100)));
        assert_eq!((v.dual_active, v.stale), (1, 1));
    }

    #[test]
    fn replies_on_given_up_sockets_do_not_close_a_silence() {
        use Side::{Backup, Primary};
        let replies = [
            reply(90, 89, Primary, true),
            reply(600, 500, Backup, false),
            reply(1200, 1100, Backup, true),
        ];
        let v = judge_round(&replies, Primary, ms(100), ms(110), ms(2000)).unwrap();
        assert_eq!(v.takeover, ms(600));
        assert_eq!(v.silence.length(), ms(1110));
        assert_eq!((v.dual_active, v.stale), (0, 0));
    }

    #[test]
    fn a_round_without_the_other_broker_answering_has_no_verdict() {
        let replies = [
            reply(90, 89, Side::Primary, true),
            reply(1500, 1400, Side::Primary, true),
        ];
        assert_eq!(
            judge_round(&replies, Side::Primary, ms(100), ms(110), ms(2000)),
            None
        );
    }

    #[test]
    fn gap_summary_uses_nearest_rank_percentiles() {
        let gaps = times(&[1040, 1010, 1500, 1020, 1030]);
        let s = GapSummary::new(&gaps);
        assert_eq!(s.gaps_ms, [1040.0, 1010.0, 1500.0, 1020.0, 1030.0]);
        assert_eq!((s.p50_ms, s.p99_ms, s.max_ms), (1030.0, 1500.0, 1500.0));
        let one = GapSummary::new(&[Duration::from_micros(1_234_567)]);
        assert_eq!(
            (one.p50_ms, one.p99_ms, one.max_ms),
            (1234.57, 1234.57, 1234.57)
        );
        let hundred: Vec<Duration> = (1..=100).map(ms).collect();
        let s = GapSummary::new(&hundred);
        assert_eq!((s.p50_ms, s.p99_ms, s.max_ms), (50.0, 99.0, 100.0));
        let none = GapSummary::new(&[]);
        assert_eq!((none.p50_ms, none.p99_ms, none.max_ms), (0.0, 0.0, 0.0));
    }
}
