//! The state model's replication between the two brokers of a pair, on the peer link.
//!
//! Replication runs on its own connection (a second PUSH to the peer's PULL, beside the
//! heartbeat one), so a burst of changes never delays a heartbeat, and it is made reliable
//! by sequence numbers, not by the socket: the *follower* (the passive, or a broker behind
//! its peer at start-up) says what it holds with [`Sync`] — its seq and its term
//! [`History`], and how far it has flushed — and the *source* answers with the [`Changes`] that follow, or, when its
//! change log no longer reaches back that far or the two histories diverged, with a
//! [`SnapshotChunk`] series. The follower sends [`Sync`] again after every flush: that is
//! the acknowledgement the active waits for before answering a write. A follower that
//! sees a gap, or no progress while its peer's heartbeat says there is more, asks again
//! with `resend` set.
//!
//! Histories: every change carries the term of the broker that made it, and a broker's
//! [`History`] lists where each term's changes begin. Two brokers hold the same change at
//! seq `s` exactly when their histories give `s` the same term (a term has one active),
//! which is how divergence after a partition or a frozen active is found without
//! comparing data.

use serde::{Deserialize, Serialize};

use crate::state::{Change, WriteTag};

/// Where one term's changes begin: `first_seq` is the seq of the term's first change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermStart {
    /// The term.
    pub term: u64,
    /// The seq of its first change.
    pub first_seq: u64,
}

/// A broker's history: the start of each term that made changes, oldest first, seqs
/// strictly increasing. Changes before the first start have term 0 (standalone).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct History(pub Vec<TermStart>);

/// Term starts kept; older ones are merged into the oldest kept (which only makes a
/// divergence found a little earlier, so a snapshot is sent where a tail would do).
pub const HISTORY_KEPT: usize = 256;

impl History {
    /// The term of the change at `seq` (0 before any recorded start).
    pub fn term_at(&self, seq: u64) -> u64 {
        self.0
            .iter()
            .rev()
            .find(|t| t.first_seq <= seq)
            .map_or(0, |t| t.term)
    }

    /// Records that the change at `seq` was made in `term`.
    pub fn record(&mut self, seq: u64, term: u64) {
        if self.0.last().map_or(0, |t| t.term) != term {
            self.0.push(TermStart {
                term,
                first_seq: seq,
            });
            if self.0.len() > HISTORY_KEPT {
                self.0.remove(0);
            }
        }
    }

    /// Forgets everything after `seq` (changes given up after a divergence).
    pub fn truncate(&mut self, seq: u64) {
        self.0.retain(|t| t.first_seq <= seq);
    }

    /// The last seq at or below `min(ours, theirs)` that both histories give the same
    /// term: the end of the changes the two brokers share. (A follower only ever appends
    /// what its source sent in order, so two brokers that hold the same change at `p` hold
    /// the same changes up to `p`: the largest such `p` is the answer.) Both histories are
    /// step functions, so only `min(ours, theirs)` and the seqs just before each step need
    /// looking at.
    pub fn common(&self, ours: u64, other: &History, theirs: u64) -> u64 {
        let top = ours.min(theirs);
        let steps = self.0.iter().chain(other.0.iter());
        std::iter::once(top)
            .chain(
                steps
                    .map(|t| t.first_seq.saturating_sub(1))
                    .filter(|&s| s < top),
            )
            .filter(|&s| self.term_at(s) == other.term_at(s))
            .max()
            .unwrap_or(0)
    }

    /// The term of the last change up to `seq`.
    pub fn last_term(&self, seq: u64) -> u64 {
        self.term_at(seq)
    }
}

/// Follower to source: "I durably hold everything up to `seq`, with this history; go on
/// from there". Doubles as the acknowledgement of replicated changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sync {
    /// The follower's seq: the last change its model holds (flushed or not).
    pub seq: u64,
    /// The follower's history, up to `seq`.
    pub history: History,
    /// The seq up to which the follower has flushed what it holds: its acknowledgement.
    #[serde(default)]
    pub flushed: u64,
    /// Send everything after `seq` again (a gap, or no progress for a while).
    pub resend: bool,
}

/// Source to follower: consecutive changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// The changes, seqs consecutive.
    pub changes: Vec<Change>,
}

/// One entry of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotEntry {
    /// The key.
    pub key: String,
    /// The seq of the entry's last change.
    pub seq: u64,
    /// The value's canonical Bencode.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// When it expires (wall-clock ms since the Unix epoch), if it has a TTL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
}

/// A remembered write id in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotWrite {
    /// The seq the write's reply carried.
    pub seq: u64,
    /// The id, digest and time.
    pub tag: WriteTag,
}

/// Source to follower: one part of a snapshot of the whole model. Parts come in order;
/// the follower installs the snapshot atomically when the `last` part arrives, then the
/// source goes on with [`Changes`] from `seq + 1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotChunk {
    /// The model's seq the snapshot was taken at.
    pub seq: u64,
    /// The source's history at that seq.
    pub history: History,
    /// The last seq the follower's history shares with the source's: the follower's
    /// changes after it are given up (kept in its conflict record).
    pub common: u64,
    /// 0, 1, 2...
    pub part: u32,
    /// Whether this is the last part.
    pub last: bool,
    /// Entries of this part.
    pub entries: Vec<SnapshotEntry>,
    /// Remembered write ids (in the last part).
    #[serde(default)]
    pub writes: Vec<SnapshotWrite>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(starts: &[(u64, u64)]) -> History {
        History(
            starts
                .iter()
                .map(|&(term, first_seq)| TermStart { term, first_seq })
                .collect(),
        )
    }

    #[test]
    fn term_at_follows_the_starts() {
        let h = history(&[(1, 1), (3, 10), (4, 20)]);
        assert_eq!(h.term_at(0), 0);
        assert_eq!(h.term_at(1), 1);
        assert_eq!(h.term_at(9), 1);
        assert_eq!(h.term_at(10), 3);
        assert_eq!(h.term_at(25), 4);
    }

    #[test]
    fn record_adds_a_start_only_for_a_new_term() {
        let mut h = History::default();
        h.record(1, 1);
        h.record(2, 1);
        h.record(3, 2);
        assert_eq!(h, history(&[(1, 1), (2, 3)]));
        h.truncate(2);
        assert_eq!(h, history(&[(1, 1)]));
    }

    #[test]
    fn common_prefix_of_two_histories() {
        let a = history(&[(1, 1), (2, 11)]);
        // Same history, one behind the other: they share all of the shorter.
        assert_eq!(a.common(20, &a, 15), 15);
        assert_eq!(a.common(15, &a, 20), 15);
        // b went on in term 3 from 16 while a went on in term 2: they share up to 15.
        let b = history(&[(1, 1), (2, 11), (3, 16)]);
        assert_eq!(a.common(20, &b, 18), 15);
        assert_eq!(b.common(18, &a, 20), 15);
        // c was frozen in term 1 with changes 11..=12 nobody else has; a's term 2 began at 11.
        let c = history(&[(1, 1)]);
        assert_eq!(a.common(20, &c, 12), 10);
        // Nothing shared at all.
        let d = history(&[(5, 1)]);
        assert_eq!(a.common(20, &d, 3), 0);
        // Empty histories share seq 0 only... and standalone changes (term 0) when both have them.
        assert_eq!(History::default().common(4, &History::default(), 7), 4);
    }
}
