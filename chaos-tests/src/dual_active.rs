//! The dual-active check of the pair tests: no broker decides a reply while its peer is the
//! active one.
//!
//! Two independent proofs, both kept by [`DualActiveWatch`]:
//!
//! 1. **From the clients** (traced replies, see [`crate::load::ClientPlan::traced`]). When
//!    the harness kills or freezes broker X while its peer Y serves or takes over, X is
//!    *deposed*: from that moment until it legitimately becomes active again, X must decide
//!    no reply. X can only become active again by a passive-to-active failover, which
//!    raises its `hearth_failovers_total` *before* it dispatches anything, so the deposition
//!    ends, at the latest, at the last metrics sample that still showed X's failover count
//!    unchanged (the sample's request time: the count was read after it). A reply that came
//!    via X for a request *sent to X after the deposition began* and *received before the
//!    deposition ended* was decided by X while deposed: a dual-active answer. Replies X
//!    decided before it was frozen (flushed from its buffers after SIGCONT) answer requests
//!    sent earlier, so they never count.
//!
//!    The tests make sure the peer has been seen active before they thaw or restart X, so a
//!    deposed X could never be the only active one.
//! 2. **From the brokers' counters.** While the pair is settled, the passive's
//!    `hearth_replies_total` must not move: the harness records it when it sees the pair
//!    settled and compares just before its next broker event ([`DualActiveWatch::quiet_end`]),
//!    unless the passive's failover count rose meanwhile (read in a *later* sample than the
//!    reply count, so a failover that came first would have shown).
//!
//! A failover the harness did not cause (the peer starved on a loaded machine) is counted
//! as *unexplained* and reported; it ends a deposition like any failover.

use std::time::Instant;

use crate::load::TracedReply;
use crate::metrics::BrokerSample;
use crate::pair::Side;

/// A span of time during which a broker must decide no reply.
#[derive(Debug, Clone)]
pub struct Deposition {
    /// When the harness killed or froze it.
    pub from: Instant,
    /// The last moment it is known not to have failed over yet.
    pub until: Instant,
    /// What the harness did, for messages.
    pub cause: String,
}

#[derive(Debug, Clone)]
struct Open {
    from: Instant,
    cause: String,
    /// The failover count of the current process that means "has not taken over".
    baseline: u64,
    /// When the last sample that still showed `baseline` was asked for.
    last_quiet: Option<Instant>,
    /// Whether the harness killed or froze the peer since: a failover is then explained.
    peer_event: bool,
}

#[derive(Debug, Clone, Copy)]
struct Quiet {
    replies: u64,
    failovers: u64,
}

#[derive(Debug, Default)]
struct Timeline {
    closed: Vec<Deposition>,
    open: Option<Open>,
    /// `hearth_failovers_total` of the current process, last seen.
    failovers_now: u64,
    /// The last-seen counts of earlier processes, summed.
    failovers_before: u64,
    /// Whether the current process was started by the harness while its peer served.
    restarted: bool,
    /// One sample showed it active with no failover: a violation if the next one says the
    /// same (one `/metrics` read is not atomic: the state gauge and the failover counter
    /// can straddle the takeover).
    suspect: bool,
    quiet: Option<Quiet>,
}

/// The bookkeeping of both proofs; see the module documentation.
#[derive(Debug, Default)]
pub struct DualActiveWatch {
    brokers: [Timeline; 2],
    violations: Vec<String>,
    unexplained: u64,
}

impl DualActiveWatch {
    /// A watch with nothing deposed.
    pub fn new() -> DualActiveWatch {
        DualActiveWatch::default()
    }

    fn timeline(&mut self, side: Side) -> &mut Timeline {
        &mut self.brokers[side.index()]
    }

    /// The harness is about to kill or freeze `side`: a failover of its peer from now on
    /// is one the harness caused.
    pub fn peer_event(&mut self, side: Side) {
        if let Some(open) = self.timeline(side.other()).open.as_mut() {
            open.peer_event = true;
        }
    }

    /// The harness SIGKILLed `side` at `at` while its peer serves (or is about to take
    /// over); the next process on its ports starts with no failovers.
    pub fn killed(&mut self, side: Side, at: Instant, cause: String) {
        let t = self.timeline(side);
        t.new_process();
        t.restarted = true;
        t.quiet = None;
        depose(t, at, 0, cause);
    }

    /// The harness is about to start the killed `side` again while its peer is not active
    /// (the restart rule held the peer back, or the harness is bringing the pair back after
    /// a stop): no broker served in `side`'s stead, so its deposition ends (its process is
    /// dead: nothing it could have answered falls in it), and the next process may become
    /// active without a failover.
    pub fn no_peer_served(&mut self, side: Side) {
        let t = self.timeline(side);
        t.end_deposition();
        t.restarted = false;
        t.suspect = false;
    }

    /// The harness SIGSTOPped `side` at `at`; `before` is its last sample, taken just before.
    pub fn frozen(&mut self, side: Side, at: Instant, before: &BrokerSample, cause: String) {
        let t = self.timeline(side);
        t.quiet = None;
        t.failovers_now = t.failovers_now.max(before.failovers);
        depose(t, at, before.failovers, cause);
    }

    /// A sample of `side` whose GET was sent at `asked`.
    pub fn observe(&mut self, side: Side, asked: Instant, sample: &BrokerSample) {
        let t = &mut self.brokers[side.index()];
        t.failovers_now = t.failovers_now.max(sample.failovers);
        let unexplained_active = t.restarted && sample.failovers == 0 && sample.is("active");
        if unexplained_active && t.suspect {
            self.violations.push(format!(
                "the restarted {} reported active without a failover, twice in a row (its peer was serving)",
                side.role()
            ));
            // Once is enough to fail the test; do not repeat it on every sample.
            t.restarted = false;
        }
        t.suspect = unexplained_active;
        let Some(open) = t.open.as_mut() else { return };
        if sample.failovers <= open.baseline {
            open.last_quiet = Some(asked);
            return;
        }
        if !open.peer_event {
            self.unexplained += 1;
        }
        t.restarted = false;
        t.end_deposition();
    }

    /// Closes every deposition still open at its last sample; call after a last sample of
    /// each running broker.
    pub fn close(&mut self) {
        for t in &mut self.brokers {
            t.end_deposition();
        }
    }

    /// The harness SIGKILLed both brokers at once (a power cut). Their depositions end at
    /// their last quiet samples (no process is left to answer), and the processes started
    /// next count their failovers from 0 and are not *restarted while the peer served*:
    /// after a power cut one of them becomes active by starting up, not by a failover.
    pub fn power_cut(&mut self) {
        for t in &mut self.brokers {
            t.end_deposition();
            t.new_process();
            t.restarted = false;
            t.suspect = false;
            t.quiet = None;
        }
    }

    /// The pair was seen settled with `passive` passive: its reply count must stay at
    /// `sample.replies` until [`DualActiveWatch::quiet_end`].
    pub fn quiet_begin(&mut self, passive: Side, sample: &BrokerSample) {
        self.timeline(passive).quiet = Some(Quiet {
            replies: sample.replies,
            failovers: sample.failovers,
        });
    }

    /// Ends `side`'s quiet period (if any) with two samples, `first` then `later`: a reply
    /// count that moved while the failover count (read later) did not is a violation.
    pub fn quiet_end(&mut self, side: Side, first: &BrokerSample, later: &BrokerSample) {
        let Some(quiet) = self.timeline(side).quiet.take() else {
            return;
        };
        if later.failovers == quiet.failovers && first.replies != quiet.replies {
            self.violations.push(format!(
                "the passive {} sent {} replies to clients while its peer was active \
                 (hearth_replies_total {} -> {}, no failover)",
                side.role(),
                first.replies.saturating_sub(quiet.replies),
                quiet.replies,
                first.replies
            ));
        }
    }

    /// Checks traced replies against the depositions; call after [`DualActiveWatch::close`].
    pub fn check_replies(&mut self, replies: &[TracedReply]) {
        let mut found = Vec::new();
        for side in Side::BOTH {
            for d in &self.brokers[side.index()].closed {
                let bad: Vec<&TracedReply> = replies
                    .iter()
                    .filter(|r| r.via == side.index() && r.sent >= d.from && r.received < d.until)
                    .collect();
                if let Some(first) = bad.first() {
                    found.push(format!(
                        "{} replies came from the {} while it was deposed ({}, for {:?} until \
                         its last sample before any failover); first: client {} request {} \
                         sent {:?} and received {:?} after the deposition began ({:?})",
                        bad.len(),
                        side.role(),
                        d.cause,
                        d.until.saturating_duration_since(d.from),
                        first.client,
                        first.seq,
                        first.sent.saturating_duration_since(d.from),
                        first.received.saturating_duration_since(d.from),
                        first.kind,
                    ));
                }
            }
        }
        self.violations.extend(found);
    }

    /// Every violation found so far.
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    /// Failovers seen: the last-seen `hearth_failovers_total` of every broker process.
    pub fn failovers(&self) -> u64 {
        self.brokers
            .iter()
            .map(|t| t.failovers_before + t.failovers_now)
            .sum()
    }

    /// Failovers that ended a deposition without the harness having touched the peer.
    pub fn unexplained_failovers(&self) -> u64 {
        self.unexplained
    }

    /// The closed depositions of `side`.
    pub fn depositions(&self, side: Side) -> &[Deposition] {
        &self.brokers[side.index()].closed
    }
}

impl Timeline {
    /// Closes the open deposition, if any, at its last quiet sample.
    fn end_deposition(&mut self) {
        if let Some(open) = self.open.take() {
            self.closed.push(Deposition {
                from: open.from,
                until: open.last_quiet.unwrap_or(open.from),
                cause: open.cause,
            });
        }
    }

    /// A new process now runs on this broker's ports: its failover count starts at 0.
    fn new_process(&mut self) {
        self.failovers_before += self.failovers_now;
        self.failovers_now = 0;
    }
}

fn depose(t: &mut Timeline, at: Instant, baseline: u64, cause: String) {
    match t.open.as_mut() {
        // Still deposed (e.g. the passive killed again): the window goes on from its start.
        Some(open) => {
            open.baseline = baseline;
            open.cause = format!("{}, then {cause}", open.cause);
        }
        None => {
            t.open = Some(Open {
                from: at,
                cause,
                baseline,
                last_quiet: None,
                peer_event: false,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::load::ReplyKind;

    fn sample(state: &str, failovers: u64, replies: u64) -> BrokerSample {
        BrokerSample {
            state: Some(state.to_owned()),
            peer_alive: true,
            replies,
            failovers,
            split_brain: 0,
            stalls: 0,
            workers: Vec::new(),
        }
    }

    fn reply(via: Side, sent: Instant, received: Instant) -> TracedReply {
        TracedReply {
            client: 0,
            seq: 1,
            via: via.index(),
            sent,
            received,
            kind: ReplyKind::First,
        }
    }

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn a_frozen_active_answering_after_the_freeze_is_caught() {
        let t0 = Instant::now();
        let mut w = DualActiveWatch::new();
        w.frozen(
            Side::Primary,
            at(t0, 100),
            &sample("active", 0, 50),
            "freeze".into(),
        );
        w.observe(Side::Primary, at(t0, 3000), &sample("passive", 0, 51));
        w.close();
        w.check_replies(&[
            // Sent before the freeze, flushed after it: allowed.
            reply(Side::Primary, at(t0, 90), at(t0, 2500)),
            // The backup answers during the freeze: fine.
            reply(Side::Backup, at(t0, 1500), at(t0, 1600)),
        ]);
        assert!(w.violations().is_empty(), "{:?}", w.violations());
        // Sent during the freeze, answered by the primary after it: dual active.
        w.check_replies(&[reply(Side::Primary, at(t0, 500), at(t0, 2600))]);
        assert_eq!(w.violations().len(), 1);
    }

    #[test]
    fn a_failover_ends_the_deposition_at_the_last_quiet_sample() {
        let t0 = Instant::now();
        let mut w = DualActiveWatch::new();
        w.killed(Side::Primary, at(t0, 100), "kill".into());
        w.observe(Side::Primary, at(t0, 1000), &sample("passive", 0, 0));
        w.peer_event(Side::Backup);
        w.observe(Side::Primary, at(t0, 2000), &sample("active", 1, 7));
        w.close();
        w.check_replies(&[reply(Side::Primary, at(t0, 1500), at(t0, 1700))]);
        assert!(w.violations().is_empty(), "{:?}", w.violations());
        assert_eq!((w.failovers(), w.unexplained_failovers()), (1, 0));
        w.check_replies(&[reply(Side::Primary, at(t0, 500), at(t0, 900))]);
        assert_eq!(w.violations().len(), 1);
    }

    #[test]
    fn a_restarted_broker_that_comes_back_active_is_caught() {
        let t0 = Instant::now();
        let mut w = DualActiveWatch::new();
        w.killed(Side::Backup, at(t0, 100), "kill".into());
        w.observe(Side::Backup, at(t0, 900), &sample("active", 0, 0));
        w.observe(Side::Backup, at(t0, 1000), &sample("active", 0, 0));
        assert_eq!(w.violations().len(), 1);
    }

    #[test]
    fn one_torn_metrics_read_during_a_real_takeover_is_not_a_violation() {
        let t0 = Instant::now();
        let mut w = DualActiveWatch::new();
        w.killed(Side::Backup, at(t0, 100), "kill".into());
        // The state gauge already says active, the failover counter not yet.
        w.observe(Side::Backup, at(t0, 900), &sample("active", 0, 0));
        w.observe(Side::Backup, at(t0, 1000), &sample("active", 1, 0));
        assert!(w.violations().is_empty(), "{:?}", w.violations());
    }

    #[test]
    fn a_passive_whose_reply_count_moves_is_caught_unless_it_failed_over() {
        let mut w = DualActiveWatch::new();
        w.quiet_begin(Side::Backup, &sample("passive", 2, 10));
        w.quiet_end(
            Side::Backup,
            &sample("active", 3, 12),
            &sample("active", 3, 12),
        );
        assert!(w.violations().is_empty());
        w.quiet_begin(Side::Backup, &sample("passive", 2, 10));
        w.quiet_end(
            Side::Backup,
            &sample("passive", 2, 11),
            &sample("passive", 2, 11),
        );
        assert_eq!(w.violations().len(), 1);
    }

    #[test]
    fn a_power_cut_ends_depositions_and_lets_a_restarted_broker_start_active() {
        let t0 = Instant::now();
        let mut w = DualActiveWatch::new();
        w.killed(Side::Backup, at(t0, 100), "kill".into());
        w.observe(Side::Backup, at(t0, 500), &sample("passive", 0, 0));
        w.power_cut();
        // Both restarted: the backup comes back active by starting up, with no failover.
        w.observe(Side::Backup, at(t0, 900), &sample("active", 0, 0));
        w.observe(Side::Backup, at(t0, 1000), &sample("active", 0, 3));
        w.close();
        w.check_replies(&[reply(Side::Backup, at(t0, 950), at(t0, 990))]);
        assert!(w.violations().is_empty(), "{:?}", w.violations());
        // A reply decided while it was deposed, before the cut, still counts.
        w.check_replies(&[reply(Side::Backup, at(t0, 200), at(t0, 400))]);
        assert_eq!(w.violations().len(), 1);
    }
}
