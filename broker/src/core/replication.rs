//! The core's replication of the state model between the two brokers of a pair (the wire
//! is `hearth_proto::repl`), and the activation gate that keeps a broker whose data may be
//! behind from becoming active (`crate::state::restart`).
//!
//! * As **source** (the active, or at start-up whichever broker has the newer data), it
//!   answers each [`Sync`] from the peer: the changes after the follower's seq from the
//!   in-memory tail, or a snapshot when the tail does not reach back that far or the two
//!   histories diverged. While active it streams each round's changes as they are made,
//!   within a window of unacknowledged ones.
//! * As **follower** (not active, while the peer is active or has newer data), it applies
//!   what comes in order, persists it, and acknowledges with a [`Sync`] after every flush;
//!   it asks again (`resend`) after a gap, or when a heartbeat shows it is behind and no
//!   progress came.
//! * The **standing** the active persists follows the pair: *paired* once the follower has
//!   acknowledged everything (writes then wait for its acknowledgement), *alone* the moment
//!   the peer expires (written before any write is answered without it).

use std::time::Instant;

use hearth_proto::peer::{PeerHeartbeat, PeerMessage};
use hearth_proto::repl::{Changes, History, SnapshotChunk, SnapshotEntry, SnapshotWrite, Sync};
use hearth_proto::state::Change;
use hearth_proto::status::BStarState;
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use super::{Core, Effect};
use crate::pair::{Activation, DataOrder};
use crate::state::restart::{self, DataPoint, Gate, GateInput, PeerNews, Standing};
use crate::state::store::StoredEntry;
use crate::state::{Entry, StateModel};

/// Unacknowledged changes the source streams ahead of the follower at most.
const WINDOW: u64 = 50_000;
/// Changes in one replication message at most...
const CHANGES_PER_MESSAGE: usize = 4096;
/// ...and bytes of values.
const BYTES_PER_MESSAGE: usize = 4 << 20;

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

impl Replication {
    /// How long a heartbeat saying *paired* lets the passive take over after it: two
    /// heartbeats and a half. The passive counts the active expired two heartbeats after
    /// its last one, so a dead active's last *paired* is still valid then; and the active
    /// answers no write alone before its last *paired* has run out at the passive, so a
    /// passive that takes over on a valid one cannot miss an acknowledged write (short of
    /// a partition, where both sides go on).
    pub(super) fn lease(heartbeat: std::time::Duration) -> std::time::Duration {
        heartbeat * 5 / 2
    }
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
    fn ours(&self) -> DataPoint {
        DataPoint {
            last_term: self.state.last_term(),
            seq: self.state.seq(),
        }
    }

    fn is_active(&self) -> bool {
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

    /// Whether this broker, active, has durably recorded its peer as in sync.
    fn paired_durably(&self) -> bool {
        self.is_active() && self.state.durably(Standing::Paired)
    }

    /// What this broker's heartbeat, sent at `now`, says of its state model.
    pub(super) fn heartbeat_data(&mut self, now: Instant, hb: &mut PeerHeartbeat) {
        hb.state_seq = self.state.seq();
        hb.last_term = self.state.last_term();
        hb.paired = self.paired_durably();
        self.repl.paired_sent = hb.paired;
        if hb.paired {
            self.repl.paired_sent_at = Some(now);
        }
    }

    /// When the last *paired* this broker sent runs out at the peer (see
    /// [`Replication::lease`]): no write is answered alone before. None when the peer is
    /// known to be down.
    pub(super) fn paired_lease_end(&self) -> Option<Instant> {
        // A peer whose port refuses connections runs no process that could take over.
        if self.pair.as_ref().is_some_and(|p| p.peer_gone()) {
            return None;
        }
        self.repl
            .paired_sent_at
            .map(|at| at + Replication::lease(self.peer_heartbeat))
    }

    /// Tells the peer at once when this broker starts (or stops) counting it in sync, so
    /// that a passive may take over as soon as it is safe rather than a heartbeat later.
    pub(super) fn announce_pairing(&mut self) {
        if self.paired_durably() != self.repl.paired_sent {
            if let Some(side) = &mut self.pair {
                side.beat_now();
            }
        }
    }

    /// Notes what a heartbeat says of the peer's data (before the pair driver sees it, so
    /// the gate it consults is current).
    pub(super) fn heartbeat_news(&mut self, now: Instant, hb: &PeerHeartbeat) {
        self.repl.peer = Some(PeerNews {
            data: DataPoint {
                last_term: hb.last_term,
                seq: hb.state_seq,
            },
            active: hb.state == BStarState::Active,
            paired: hb.paired,
        });
        self.repl.paired_heard_at = hb.paired.then_some(now);
        self.update_activation_hearing(now, true);
    }

    /// After a stall, what the peer said of pairing is stale: it may have gone on alone;
    /// and an active that was paired may have been replaced meanwhile.
    pub(super) fn forget_pairing(&mut self) {
        if let Some(peer) = &mut self.repl.peer {
            peer.paired = false;
        }
        self.repl.paired_heard_at = None;
        if self.is_active() && self.state.durably(Standing::Paired) {
            self.repl.maybe_replaced = true;
        }
    }

    /// Recomputes the activation gate and tells the pair driver.
    pub(super) fn update_activation(&mut self, now: Instant) {
        self.update_activation_hearing(now, false);
    }

    /// The same, `hearing` the peer right now (its heartbeat is being handled).
    fn update_activation_hearing(&mut self, now: Instant, hearing: bool) {
        let Some(side) = &self.pair else { return };
        if self.repl.maybe_replaced && side.heard_since_resume() {
            self.repl.maybe_replaced = false;
        }
        // A *paired* counts only if the peer was lost while it was still valid: a peer
        // lost later may have answered writes alone first.
        let lease = Replication::lease(self.peer_heartbeat);
        let lost_at = side.peer_expiry();
        let lease_ok = self
            .repl
            .paired_heard_at
            .is_some_and(|heard| lost_at < heard + lease);
        let peer = self.repl.peer.map(|p| PeerNews {
            paired: p.paired && lease_ok,
            ..p
        });
        let input = GateInput {
            active: side.state() == BStarState::Active,
            force_active: self.repl.force_active,
            standing_at_start: self.state.standing_at_start,
            peer,
            peer_alive: hearing || side.peer_alive(now),
            maybe_replaced: self.repl.maybe_replaced,
            ours: self.ours(),
        };
        let gate = restart::activation(input);
        let lone_backup =
            matches!(self.state.standing_at_start, Some(Standing::Alone)) || self.repl.force_active;
        if self.repl.gate != Some(gate) {
            match gate.reason() {
                Some(reason) => warn!(reason, "this broker may not become active"),
                None if self.repl.gate.is_some() => {
                    info!("this broker may become active again")
                }
                None => {}
            }
            self.repl.gate = Some(gate);
        }
        let waiting = matches!(
            gate,
            Gate::WaitForPeer | Gate::NotInSync | Gate::MaybeReplaced
        );
        self.metrics.state_waiting.set(i64::from(waiting));
        let ours = self.ours();
        let data = match self.repl.peer.map(|p| p.data.cmp(&ours)) {
            Some(std::cmp::Ordering::Greater) => DataOrder::PeerNewer,
            Some(std::cmp::Ordering::Less) => DataOrder::OursNewer,
            _ => DataOrder::Same,
        };
        if let Some(side) = &mut self.pair {
            side.set_activation(Activation {
                may_activate: gate.is_open(),
                lone_backup_may_serve: lone_backup,
                data,
            });
        }
    }

    /// How far the passive's state model is behind the active's, as this broker sees it.
    pub(super) fn state_lag(&self) -> u64 {
        if self.is_active() {
            if self.repl.down.known {
                self.state.seq().saturating_sub(self.repl.down.acked)
            } else {
                0
            }
        } else {
            self.repl
                .peer
                .map_or(0, |p| p.data.seq.saturating_sub(self.state.seq()))
        }
    }

    /// Why this broker waits for its peer, for `/status` (none when it does not).
    pub(super) fn waiting_reason(&self) -> Option<&'static str> {
        match self.repl.gate {
            Some(Gate::MaybeReplaced) => Gate::MaybeReplaced.reason(),
            Some(gate @ (Gate::WaitForPeer | Gate::NotInSync | Gate::Behind))
                if !self.is_active() =>
            {
                gate.reason()
            }
            _ => None,
        }
    }

    /// Whether this broker follows its peer now: not active, the peer alive and either
    /// active or holding newer data.
    fn following(&self, now: Instant) -> bool {
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
        let period = self.peer_heartbeat_interval();
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
        if self.is_active() {
            let standing = self.state.standing_written.map(|(s, _)| s);
            // Alone only when a write needs it: a peer that merely looked silent for a
            // moment, with no write waiting, stays counted in sync (so it may still take
            // over if this broker dies).
            let waiting = self.state.seq() > self.repl.down.acked;
            if !alive && waiting {
                self.go_alone();
            } else if alive
                && self.repl.down.known
                && self.repl.down.acked >= self.state.alone_committed
                && standing != Some(Standing::Paired)
            {
                // Every write answered alone is on the follower now, and every later one
                // waits for its acknowledgement (the peer is alive): in sync.
                info!(
                    seq = self.state.seq(),
                    "the passive is in sync: writes wait for its acknowledgement"
                );
                self.state.write_standing(Standing::Paired);
            }
        }
    }

    /// The active answers writes alone from now on: the *alone* standing is written first.
    pub(super) fn go_alone(&mut self) {
        if self.state.standing_written.map(|(s, _)| s) != Some(Standing::Alone) {
            self.state.write_standing(Standing::Alone);
            info!("the peer is not in sync: this broker acknowledges writes alone");
        }
    }

    fn peer_heartbeat_interval(&self) -> std::time::Duration {
        self.peer_heartbeat
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
            self.metrics
                .state_catchups
                .with_label_values(&["snapshot"])
                .inc();
            self.send_snapshot(down.sent_upto);
            return;
        }
        if from > self.repl.down.acked + 1 && from - self.repl.down.acked > WINDOW {
            return;
        }
        if !self.is_active() || from + 1 < ours {
            // Not the round's own changes: a catch-up.
            self.metrics
                .state_catchups
                .with_label_values(&["tail"])
                .inc();
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

    /// Sends the whole model in parts; `common` is the last seq the follower shares.
    fn send_snapshot(&mut self, common: u64) {
        let model = &self.state.model;
        let seq = model.seq();
        let history = self.state.history.clone();
        let mut parts: Vec<Vec<SnapshotEntry>> = vec![Vec::new()];
        let mut bytes = 0;
        for (key, entry) in model.entries() {
            bytes += key.len() + entry.value.len();
            if let Some(part) = parts.last_mut() {
                part.push(SnapshotEntry {
                    key: key.to_owned(),
                    seq: entry.seq,
                    value: entry.value.clone(),
                    expires_at_ms: entry.expires_at_ms,
                });
            }
            if bytes >= BYTES_PER_MESSAGE {
                parts.push(Vec::new());
                bytes = 0;
            }
        }
        let writes: Vec<SnapshotWrite> = model
            .write_tags()
            .map(|(seq, tag)| SnapshotWrite { seq, tag })
            .collect();
        let last = parts.len() - 1;
        let mut writes = Some(writes);
        for (i, entries) in parts.into_iter().enumerate() {
            let msg = SnapshotChunk {
                seq,
                history: history.clone(),
                common,
                part: i as u32,
                last: i == last,
                entries,
                writes: if i == last {
                    writes.take().unwrap_or_default()
                } else {
                    Vec::new()
                },
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
            self.metrics
                .dropped
                .with_label_values(&["replication_not_following"])
                .inc();
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

    /// Called when the Binary Star state changes.
    pub(super) fn state_changed(&mut self, from: BStarState, to: BStarState, now: Instant) {
        if from == BStarState::Active && to != BStarState::Active {
            self.drop_pending();
            self.repl.down = Downstream::default();
        }
        if to == BStarState::Active {
            let term = self.current_term();
            self.state.write_term(term);
            if !self.peer_alive_now(now) {
                self.go_alone();
            }
            self.repl.up = Upstream::default();
        }
    }

    /// Replication work at the end of a round: the active streams the round's changes.
    pub(super) fn replication_round(&mut self, now: Instant) {
        if self.pair.is_some() && self.repl.down.known {
            self.stream(now);
        }
    }
}

/// The standing and term stored in the metadata, as read at start-up.
pub fn read_meta(
    meta: &std::collections::BTreeMap<String, Vec<u8>>,
) -> Result<(Option<Standing>, u64, History), String> {
    let standing = match meta.get("standing") {
        None => None,
        Some(bytes) => Some(
            Standing::parse(bytes)
                .ok_or_else(|| format!("unknown standing {:?}", String::from_utf8_lossy(bytes)))?,
        ),
    };
    let term = match meta.get("term") {
        None => 0,
        Some(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| "unreadable term".to_owned())?,
    };
    let history = match meta.get("history") {
        None => History::default(),
        Some(bytes) => bendy::serde::from_bytes(bytes).map_err(|e| format!("history: {e}"))?,
    };
    Ok((standing, term, history))
}
