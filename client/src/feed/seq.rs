//! The follower's sequence logic, free of sockets and clocks (the caller passes `now`): which
//! feed update to accept, which to drop as a duplicate, and when a gap calls for a new
//! snapshot.
//!
//! Both brokers of a pair publish every change with the same global seq, so a follower
//! sees most changes twice, from two sockets whose messages interleave in any order. An
//! update is accepted iff its seq is the last accepted plus one; one at or below the last
//! is a duplicate, unless it contradicts the change accepted under that seq (another key
//! or value: the feeds diverged, as after a failover that lost an unacknowledged write),
//! which calls for a resync. An update beyond the next seq is *held*: the other feed may
//! still deliver the missing ones (it lags, or it just reconnected and started mid-stream).
//! Only when a gap stays open for [`SeqTracker::new`]'s grace does the follower resync.

use std::collections::{BTreeMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use hearth_proto::state::FeedUpdate;

/// How many accepted changes the tracker remembers to check duplicates against.
pub const RECENT_WINDOW: usize = 1024;
/// Most updates held while a gap is open; one more forces a resync.
pub const MAX_HELD: usize = 10_000;

/// What to do with one feed update, given the last accepted seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The next seq: accept it.
    Next,
    /// Already accepted (or covered by the snapshot): drop it.
    Duplicate,
    /// A seq already accepted, but with other content: the feeds diverged; resync.
    Conflict,
    /// Beyond the next seq: some change is missing so far; hold it.
    Ahead,
}

/// The verdict on an update of `seq` whose content digest is `digest`, when `last` is the
/// last accepted seq and `seen` gives the digest accepted under a recent seq (if still
/// remembered).
pub fn judge(last: u64, seq: u64, digest: u64, seen: impl Fn(u64) -> Option<u64>) -> Verdict {
    if last.checked_add(1) == Some(seq) {
        Verdict::Next
    } else if seq > last {
        Verdict::Ahead
    } else if seen(seq).is_some_and(|d| d != digest) {
        Verdict::Conflict
    } else {
        Verdict::Duplicate
    }
}

/// A digest of an update's key and value bytes, to tell a true duplicate from a
/// contradicting update under the same seq.
pub fn digest(update: &FeedUpdate) -> u64 {
    let mut hasher = DefaultHasher::new();
    update.key.hash(&mut hasher);
    update.value.hash(&mut hasher);
    hasher.finish()
}

/// Why the follower must take a new snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncReason {
    /// No snapshot yet.
    Start,
    /// A gap in the seqs stayed open for the grace period.
    Gap {
        /// The last seq accepted.
        last: u64,
        /// The highest seq known to exist.
        known: u64,
    },
    /// Two updates under one seq disagree.
    Conflict {
        /// The seq.
        seq: u64,
    },
    /// More updates were held than [`MAX_HELD`].
    Overflow,
}

/// The follower's position in the change sequence.
#[derive(Debug)]
pub struct SeqTracker {
    grace: Duration,
    /// The last accepted seq; `None` until a snapshot, and again when a resync is due.
    last: Option<u64>,
    resync: Option<ResyncReason>,
    /// Digests of recently accepted changes, oldest first.
    recent: VecDeque<(u64, u64)>,
    held: BTreeMap<u64, FeedUpdate>,
    /// The highest seq known to exist, from a held update or a broker's status.
    known: u64,
    /// Since when `known` is ahead of `last`.
    behind_since: Option<Instant>,
}

impl SeqTracker {
    /// A tracker that needs a first snapshot, and that resyncs when a gap stays open for
    /// `grace`.
    pub fn new(grace: Duration) -> SeqTracker {
        SeqTracker {
            grace,
            last: None,
            resync: Some(ResyncReason::Start),
            recent: VecDeque::new(),
            held: BTreeMap::new(),
            known: 0,
            behind_since: None,
        }
    }

    /// Why a snapshot is due, if one is.
    pub fn resync_due(&self) -> Option<ResyncReason> {
        self.resync
    }

    /// The last accepted seq (the snapshot's, or a later change's).
    pub fn last(&self) -> Option<u64> {
        self.last
    }

    /// Starts over from a snapshot at `seq`. Held updates are dropped: the snapshot was
    /// taken after they were published, so it covers them, unless they came from a broker
    /// that is no longer the truth.
    pub fn reset(&mut self, seq: u64) {
        self.last = Some(seq);
        self.resync = None;
        self.recent.clear();
        self.held.clear();
        self.known = seq;
        self.behind_since = None;
    }

    /// Takes one update from a feed; returns the updates now accepted, in seq order (the
    /// update itself and any held ones it lets through), or none.
    pub fn offer(&mut self, update: FeedUpdate, now: Instant) -> Vec<FeedUpdate> {
        let Some(last) = self.last else {
            return Vec::new(); // a snapshot is due; the feed is read again after it
        };
        let d = digest(&update);
        match judge(last, update.seq, d, |seq| self.seen(seq)) {
            Verdict::Duplicate => Vec::new(),
            Verdict::Conflict => {
                self.need_resync(ResyncReason::Conflict { seq: update.seq });
                Vec::new()
            }
            Verdict::Ahead => {
                self.learn(update.seq, now);
                self.held.insert(update.seq, update);
                if self.held.len() > MAX_HELD {
                    self.need_resync(ResyncReason::Overflow);
                }
                Vec::new()
            }
            Verdict::Next => {
                self.accept(d, update.seq);
                let mut accepted = vec![update];
                while let Some((seq, held)) = self.held.pop_first() {
                    let Some(last) = self.last else { break };
                    let d = digest(&held);
                    match judge(last, seq, d, |s| self.seen(s)) {
                        Verdict::Next => {
                            self.accept(d, seq);
                            accepted.push(held);
                        }
                        Verdict::Duplicate => {}
                        Verdict::Conflict => self.need_resync(ResyncReason::Conflict { seq }),
                        Verdict::Ahead => {
                            self.held.insert(seq, held);
                            break;
                        }
                    }
                }
                accepted
            }
        }
    }

    /// Notes that a broker's model is at `seq` (from its status): if that is ahead of the
    /// last accepted change, the missing ones have the grace period to arrive.
    pub fn learn(&mut self, seq: u64, now: Instant) {
        let Some(last) = self.last else { return };
        if seq > last {
            self.known = self.known.max(seq);
            self.behind_since.get_or_insert(now);
        }
    }

    /// When the open gap's grace runs out, if a gap is open.
    pub fn deadline(&self) -> Option<Instant> {
        self.behind_since.map(|since| since + self.grace)
    }

    /// Calls for a resync if a gap has stayed open past its grace.
    pub fn tick(&mut self, now: Instant) {
        if let (Some(deadline), Some(last)) = (self.deadline(), self.last) {
            if now >= deadline {
                self.need_resync(ResyncReason::Gap {
                    last,
                    known: self.known,
                });
            }
        }
    }

    fn accept(&mut self, digest: u64, seq: u64) {
        self.last = Some(seq);
        self.recent.push_back((seq, digest));
        if self.recent.len() > RECENT_WINDOW {
            self.recent.pop_front();
        }
        if seq >= self.known {
            self.behind_since = None;
        }
    }

    fn seen(&self, seq: u64) -> Option<u64> {
        let first = self.recent.front()?.0;
        let index = usize::try_from(seq.checked_sub(first)?).ok()?;
        self.recent.get(index).map(|&(_, d)| d)
    }

    fn need_resync(&mut self, reason: ResyncReason) {
        self.last = None;
        self.resync.get_or_insert(reason);
        self.held.clear();
        self.behind_since = None;
    }
}

#[cfg(test)]
mod tests;
