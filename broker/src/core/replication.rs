//! The core's replication of the state model between the two brokers of a pair (the wire
//! is `hearth_proto::repl`). What each broker knows of the other's data, the activation
//! gate and the standing are in `standing.rs`.
//!
//! * As **source** (the active, or at start-up whichever broker has the newer data), it
//!   answers each [`Sync`] from the peer: the changes after the follower's seq from the
//!   in-memory tail, or a snapshot when the tail does not reach back that far or the two
//!   histories diverged. While active it streams each round's changes as they are made,
//!   within a window of unacknowledged ones.
//! * As **follower** (not active, while the peer is active or has newer data), it applies
//!   what comes in order, persists it, and acknowledges with a [`Sync`] after every flush;
//!   it asks again (`resend`) after a gap, or when a heartbeat shows it is behind and no
//!   progress came. A follower whose history parted from its source's takes the source's
//!   snapshot and keeps its own changes since in the conflict record ([`ConflictRecord`]).

use std::time::Instant;

use hearth_proto::peer::PeerMessage;
use hearth_proto::repl::{Changes, SnapshotChunk, SnapshotEntry, SnapshotWrite, Sync};
use hearth_proto::state::Change;
use hearth_proto::status::BStarState;
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use super::{snapshot_parts, Core, Effect};
use crate::metrics::{CatchupKind, DropReason};
use crate::state::restart::{DataPoint, Gate, PeerNews, Standing};
use crate::state::store::StoredEntry;
use crate::state::{Entry, StateModel};

/// Unacknowledged changes the source streams ahead of the follower at most.
const WINDOW: u64 = 50_000;
/// Changes in one replication message at most...
const CHANGES_PER_MESSAGE: usize = 4096;
/// ...and bytes of values.
pub(super) const BYTES_PER_MESSAGE: usize = 4 << 20;

/// What the source knows of its follower.
#[derive(Debug, Default)]
pub(super) struct Downstream {
    /// The follower's flushed seq, as last acknowledged (its history a prefix of ours).
    pub(super) acked: u64,
    /// Changes up to this seq have been sent.
    sent_upto: u64,
    /// Whether the follower has synced with us since it was last heard alive.
    pub(super) known: bool,
    /// No sending before this (after a send the socket refused).
    retry_at: Option<Instant>,
    /// (the follower's seq, ours) of the last snapshot sent to a diverged follower.
    snapshot_for: Option<(u64, u64)>,
}

/// What the follower side keeps.
#[derive(Debug, Default)]
pub(super) struct Upstream {
    /// Snapshot parts received so far.
    parts: Vec<SnapshotChunk>,
    /// When the next periodic sync is due.
    next_sync: Option<Instant>,
    /// The seq at the last periodic sync, to see progress.
    last_sync_seq: u64,
}

/// The replication state of a broker of a pair.
#[derive(Debug, Default)]
pub struct Replication {
    pub(super) down: Downstream,
    pub(super) up: Upstream,
    /// What the peer last said of its data this run.
    pub(super) peer: Option<PeerNews>,
    /// The gate as last computed.
    pub(super) gate: Option<Gate>,
    /// `--force-active`.
    pub(super) force_active: bool,
    /// What the last heartbeat said of pairing.
    pub(super) paired_sent: bool,
    /// Stalled while active and paired, the peer not heard since (see the gate).
    pub(super) maybe_replaced: bool,
    /// Active: when the last heartbeat saying *paired* went out.
    pub(super) paired_sent_at: Option<Instant>,
    /// Follower: when the last heartbeat saying *paired* came in.
    pub(super) paired_heard_at: Option<Instant>,
}

/// A change given up after a divergence, as kept in the conflict record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConflictRecord {
    /// When it was given up, in Unix ms.
    pub at_ms: u64,
    /// The last seq this broker shared with the peer whose state it took.
    pub common: u64,
    /// The change given up.
    pub change: Change,
    /// True when only the key's final value survived (its changes had left the log).
    #[serde(default)]
    pub value_only: bool,
}

impl ConflictRecord {
    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        bendy::serde::to_bytes(self).unwrap_or_default()
    }

    /// Reads the stored form.
    pub fn decode(bytes: &[u8]) -> Result<ConflictRecord, String> {
        bendy::serde::from_bytes(bytes).map_err(|e| e.to_string())
    }
}

impl Core {
    pub(super) fn ours(&self) -> DataPoint {
        DataPoint {
            last_term: self.state.last_term(),
            seq: self.state.seq(),
        }
    }

    pub(super) fn is_active(&self) -> bool {
        self.state() == BStarState::Active
    }

    pub(super) fn peer_alive_now(&self, now: Instant) -> bool {
        self.pair.as_ref().is_some_and(|p| p.peer_alive(now))
    }

    /// The acknowledged seq that counts for committing writes.
    pub(super) fn downstream_acked(&self) -> u64 {
        if self.repl.down.known {
            self.repl.down.acked
        } else {
            0
        }
    }

    /// Whether this broker follows its peer now: not active, the peer alive and either
    /// active or holding newer data.
    pub(super) fn following(&self, now: Instant) -> bool {
        if self.is_active() || !self.peer_alive_now(now) {
            return false;
        }
        let ours = self.ours();
        self.repl.peer.is_some_and(|p| p.active || p.data > ours)
    }

    fn send_to_peer(&mut self, msg: PeerMessage) {
        self.effects.push(Effect::ToPeer(msg));
    }

    fn sync_message(&self, resend: bool) -> PeerMessage {
        PeerMessage::Sync(Sync {
            seq: self.state.seq(),
            history: self.state.history.clone(),
            flushed: self.state.flushed_seq.min(self.state.seq()),
            resend,
        })
    }

    /// After a flush: a follower acknowledges what it now holds.
    pub(super) fn after_flush(&mut self, now: Instant) {
        if self.pair.is_some() && self.following(now) {
            let msg = self.sync_message(false);
            self.send_to_peer(msg);
        }
    }

    /// Periodic replication work: the follower's sync, the source's view of a vanished
    /// follower, and the active's standing.
    pub(super) fn replication_tick(&mut self, now: Instant) {
        if self.pair.is_none() {
            return;
        }
        let alive = self.peer_alive_now(now);
        if !alive && self.repl.down.known {
            info!("the peer is gone: no follower to replicate to");
            // What it last acknowledged is kept: writes after it are what would need the
            // *alone* standing.
            self.repl.down = Downstream {
                acked: self.repl.down.acked,
                ..Downstream::default()
            };
        }
        let period = self.peer_heartbeat;
        if self.following(now) {
            // A broker that follows its peer may be behind it: paired from now on.
            self.state.write_standing(Standing::Paired);
            if self.repl.up.next_sync.is_none_or(|at| now >= at) {
                let behind = self
                    .repl
                    .peer
                    .is_some_and(|p| p.data.seq > self.state.seq());
                let stuck = behind && self.state.seq() == self.repl.up.last_sync_seq;
                self.repl.up.last_sync_seq = self.state.seq();
                self.repl.up.next_sync = Some(now + period);
                let msg = self.sync_message(stuck);
                self.send_to_peer(msg);
            }
        } else {
            self.repl.up.next_sync = None;
        }
    }

    /// A replication message from the peer.
    pub(super) fn replication_message(&mut self, now: Instant, msg: PeerMessage) {
        match msg {
            PeerMessage::Sync(sync) => self.on_sync(now, sync),
            PeerMessage::Changes(changes) => self.on_changes(now, changes),
            PeerMessage::Snapshot(chunk) => self.on_snapshot(now, chunk),
            PeerMessage::Heartbeat(_) => {}
        }
    }

    fn on_sync(&mut self, now: Instant, sync: Sync) {
        if !self.peer_alive_now(now) {
            // Its replication connection came back before its first heartbeat: the next
            // periodic sync will do, once the peer is known alive.
            return;
        }
        let theirs = DataPoint {
            last_term: sync.history.term_at(sync.seq),
            seq: sync.seq,
        };
        if theirs > self.ours() {
            // The peer is newer: it is the source, not us.
            return;
        }
        let ours = self.state.seq();
        let common = self.state.history.common(ours, &sync.history, sync.seq);
        let down = &mut self.repl.down;
        if common < sync.seq {
            // A snapshot already on its way for this very state of the follower is not sent
            // again (the follower syncs after each flush and on a timer).
            let fresh = down.snapshot_for != Some((sync.seq, ours));
            if fresh || sync.resend {
                info!(
                    peer_seq = sync.seq,
                    common, "the peer's state model diverged from ours: sending a snapshot"
                );
                down.known = true;
                down.acked = 0;
                down.snapshot_for = Some((sync.seq, ours));
                self.send_snapshot(common);
            }
            return;
        }
        down.snapshot_for = None;
        if !down.known || sync.resend || down.sent_upto < sync.seq {
            down.sent_upto = sync.seq;
            down.retry_at = None;
        }
        down.known = true;
        down.acked = sync.flushed.min(sync.seq);
        self.stream(now);
        self.release_committed(now);
    }

    /// Sends the follower what it lacks: from the tail, or a snapshot.
    pub(super) fn stream(&mut self, now: Instant) {
        let down = &self.repl.down;
        let ours = self.state.seq();
        if !down.known || down.sent_upto >= ours || down.retry_at.is_some_and(|at| now < at) {
            return;
        }
        let from = down.sent_upto + 1;
        let tail_start = self.state.tail.front().map(|c| c.seq);
        if tail_start.is_none_or(|first| first > from) {
            self.metrics.state_catchup(CatchupKind::Snapshot);
            self.send_snapshot(down.sent_upto);
            return;
        }
        if from > self.repl.down.acked + 1 && from - self.repl.down.acked > WINDOW {
            return;
        }
        if !self.is_active() || from + 1 < ours {
            // Not the round's own changes: a catch-up.
            self.metrics.state_catchup(CatchupKind::Tail);
        }
        let start = self.state.tail.partition_point(|c| c.seq < from);
        let mut batch = Vec::new();
        let mut bytes = 0;
        let mut messages = Vec::new();
        for change in self.state.tail.range(start..) {
            bytes += change.value.as_ref().map_or(0, Vec::len) + change.key.len();
            batch.push(change.clone());
            if batch.len() >= CHANGES_PER_MESSAGE || bytes >= BYTES_PER_MESSAGE {
                messages.push(std::mem::take(&mut batch));
                bytes = 0;
            }
        }
        if !batch.is_empty() {
            messages.push(batch);
        }
        for changes in messages {
            self.send_to_peer(PeerMessage::Changes(Changes { changes }));
        }
        self.repl.down.sent_upto = ours;
    }

    /// Sends the whole model in parts (entries and write ids both within the part budget,
    /// see [`snapshot_parts`]); `common` is the last seq the follower shares.
    fn send_snapshot(&mut self, common: u64) {
        let model = &self.state.model;
        let seq = model.seq();
        let history = self.state.history.clone();
        let entries = model.entries().map(|(key, entry)| SnapshotEntry {
            key: key.to_owned(),
            seq: entry.seq,
            value: entry.value.clone(),
            expires_at_ms: entry.expires_at_ms,
        });
        let writes = model
            .write_tags()
            .map(|(seq, tag)| SnapshotWrite { seq, tag });
        let parts = snapshot_parts::cut(entries, writes, BYTES_PER_MESSAGE);
        let last = parts.len() - 1;
        for (i, part) in parts.into_iter().enumerate() {
            let msg = SnapshotChunk {
                seq,
                history: history.clone(),
                common,
                part: i as u32,
                last: i == last,
                entries: part.entries,
                writes: part.writes,
            };
            self.send_to_peer(PeerMessage::Snapshot(msg));
        }
        self.repl.down.sent_upto = seq;
    }

    /// The peer's replication socket refused a message: resend from what it acknowledged,
    /// a little later.
    pub fn replication_send_failed(&mut self, now: Instant) {
        let down = &mut self.repl.down;
        down.sent_upto = down.acked;
        down.retry_at = Some(now + self.peer_heartbeat / 4);
    }

    /// Whether replicated data may be taken now: this broker follows its peer. Counted and
    /// dropped otherwise.
    fn taking_replication(&self, now: Instant) -> bool {
        let taking = !self.is_active() && self.following(now);
        if !taking {
            self.metrics.dropped(DropReason::ReplicationNotFollowing, 1);
        }
        taking
    }

    fn on_changes(&mut self, now: Instant, msg: Changes) {
        if !self.taking_replication(now) {
            return;
        }
        for change in msg.changes {
            let at = self.state.seq();
            if change.seq <= at {
                // Held already, from this very source: the same term at that seq. A change
                // of another term there means the histories parted: ask again, and the
                // source will see the divergence in the history sent along.
                if self.state.history.term_at(change.seq) != change.term {
                    self.ask_resend("a replicated change of another term at a seq held");
                    return;
                }
                continue;
            }
            if change.seq != at + 1 {
                self.ask_resend("a gap in the replicated changes");
                return;
            }
            if let Err(e) = self.state.model.apply(&change) {
                error!(error = %e, "a replicated change does not fit the state model");
                self.ask_resend("a replicated change did not fit");
                return;
            }
            self.state.record(change);
        }
    }

    fn ask_resend(&mut self, why: &str) {
        info!(why, seq = self.state.seq(), "asking the peer to resend");
        let msg = self.sync_message(true);
        self.send_to_peer(msg);
    }

    fn on_snapshot(&mut self, now: Instant, chunk: SnapshotChunk) {
        if !self.taking_replication(now) {
            return;
        }
        let parts = &mut self.repl.up.parts;
        let fits = parts.last().map_or(chunk.part == 0, |p| {
            p.seq == chunk.seq && chunk.part == p.part + 1
        });
        if !fits {
            parts.clear();
            if chunk.part != 0 {
                self.ask_resend("a snapshot part out of order");
                return;
            }
        }
        let last = chunk.last;
        self.repl.up.parts.push(chunk);
        if last {
            let parts = std::mem::take(&mut self.repl.up.parts);
            self.install_snapshot(now, parts);
        }
    }

    fn install_snapshot(&mut self, now: Instant, parts: Vec<SnapshotChunk>) {
        let Some(head) = parts.last() else { return };
        let (seq, history) = (head.seq, head.history.clone());
        // Where the two histories part, worked out here from what this broker holds now:
        // the source's `common` may be stale (a second snapshot for an earlier sync).
        let common = history.common(seq, &self.state.history, self.state.seq());
        if common == seq && self.state.seq() == seq {
            // Already holds exactly this (a second snapshot for an earlier sync).
            return;
        }
        let now_ms = self.state.wall_ms(now);
        let conflicts = self.divergent_changes(common);
        let limits = self.state.model.limits().clone();
        let mut entries = Vec::new();
        let mut writes = Vec::new();
        for part in parts {
            entries.extend(part.entries);
            writes.extend(part.writes);
        }
        let model = StateModel::restore(
            limits,
            seq,
            entries.iter().map(|e| {
                (
                    e.key.clone(),
                    Entry {
                        seq: e.seq,
                        value: e.value.clone(),
                        expires_at_ms: e.expires_at_ms,
                    },
                )
            }),
            writes.iter().map(|w| (w.seq, w.tag.clone())),
        );
        if !conflicts.is_empty() {
            warn!(
                given_up = conflicts.len(),
                common,
                "this broker's state model diverged from its peer's: its changes after the common seq are kept in the conflict record"
            );
            self.metrics.state_conflicts.inc_by(conflicts.len() as u64);
        }
        info!(
            seq,
            keys = entries.len(),
            "installed a snapshot of the peer's state model"
        );
        self.metrics.state_snapshots_installed.inc();
        let batch = self.state.batch_mut();
        for (change, value_only) in conflicts {
            let record = ConflictRecord {
                at_ms: now_ms,
                common,
                change,
                value_only,
            };
            batch.add_conflict(record.encode());
        }
        batch.replace_all(
            seq,
            entries.into_iter().map(|e| {
                (
                    e.key,
                    StoredEntry {
                        seq: e.seq,
                        value: e.value,
                        expires_at_ms: e.expires_at_ms,
                    },
                )
            }),
            writes.into_iter().map(|w| (w.seq, w.tag)),
        );
        self.state.flushed_seq = self.state.flushed_seq.min(common);
        self.state.reset_to(model, history);
    }

    /// This broker's changes after `common`, which it gives up for the peer's state: from
    /// the tail where it reaches, else the final values of the keys changed since.
    fn divergent_changes(&self, common: u64) -> Vec<(Change, bool)> {
        let state = &self.state;
        if state.seq() <= common {
            return Vec::new();
        }
        let covered = state
            .tail
            .front()
            .is_some_and(|first| first.seq <= common + 1);
        if covered {
            return state
                .tail
                .iter()
                .filter(|c| c.seq > common)
                .map(|c| (c.clone(), false))
                .collect();
        }
        let term = state.last_term();
        state
            .model
            .entries()
            .filter(|(_, e)| e.seq > common)
            .map(|(key, e)| {
                let change = Change {
                    seq: e.seq,
                    term,
                    key: key.to_owned(),
                    cause: hearth_proto::state::Cause::Set,
                    value: Some(e.value.clone()),
                    expires_at_ms: e.expires_at_ms,
                    write: None,
                };
                (change, true)
            })
            .collect()
    }

    /// Replication work at the end of a round: the active streams the round's changes.
    pub(super) fn replication_round(&mut self, now: Instant) {
        if self.pair.is_some() && self.repl.down.known {
            self.stream(now);
        }
    }
}
