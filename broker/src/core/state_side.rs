//! The core's state-model side: the `state.*` services, group commit, deferred replies,
//! the change feed and the standing a broker persists for the restart rule.
//!
//! A write is applied to the [`StateModel`] at once (so later requests see it), its changes
//! go into the round's [`Batch`], and its reply waits in `pending` until the write is
//! *committed*: flushed by this broker's writer thread and, while the pair is in sync,
//! acknowledged (flushed) by the passive. Reads wait behind the writes before them, so a
//! client never reads a value that could still be lost. At the end of each poll round the
//! core hands the round's batch to the writer ([`Effect::Persist`]): one fsync for every
//! write of the round, and more rounds share one when the disk is the bottleneck.
//!
//! Changes are published on the change feed when they are committed, so a subscriber
//! never sees a change that a failover could take back.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use hearth_proto::repl::History;
use hearth_proto::state::{Change, FeedUpdate, STATE_DEL, STATE_GET, STATE_SET};
use hearth_proto::ClientMessage;
use tracing::{info, warn};

use super::{Core, Effect, Identity, Persist};
use crate::metrics::DropReason;
use crate::state::model::put_entry;
use crate::state::request::{parse_get, BadRequest, BadRequestReason};
use crate::state::restart::Standing;
use crate::state::store::Batch;
use crate::state::value::put_uint;
use crate::state::{error_reply, StateModel, WriteOutcome};

/// hearth's own state service for change-feed followers: a snapshot with its seq.
pub const STATE_SNAPSHOT: &str = "state.snapshot";

/// Changes kept in memory for followers that catch up without a snapshot.
const TAIL_CHANGES: usize = 20_000;
/// Bytes of values kept in the tail at most.
const TAIL_BYTES: usize = 16 << 20;
/// How often remembered write ids are looked at for forgetting.
const FORGET_EVERY: Duration = Duration::from_secs(10);

/// A reply that waits for its write (or the writes before a read) to be committed.
struct Pending {
    seq: u64,
    client: Identity,
    service: String,
    body: Vec<u8>,
}

/// The state model and everything around it.
pub struct StateSide {
    pub(super) model: StateModel,
    pub(super) history: History,
    /// The history as last written to the store.
    history_written: History,
    /// Recent changes, oldest first.
    pub(super) tail: VecDeque<Change>,
    tail_bytes: usize,
    /// Whether there is a store (a data dir); without one, a change counts as flushed at
    /// once.
    durable: bool,
    /// This round's writes.
    batch: Batch,
    /// Rounds handed to the writer so far.
    round: u64,
    /// (round, seq at its end, when it was handed over) of rounds not flushed yet.
    in_flight: VecDeque<(u64, u64, Instant)>,
    pub(super) flushed_round: u64,
    pub(super) flushed_seq: u64,
    pending: VecDeque<Pending>,
    /// The seq up to which changes have been published on the feed.
    published_seq: u64,
    /// Whether the broker has a change feed.
    feed: bool,
    /// The standing read at start-up (none: a fresh data dir).
    pub(super) standing_at_start: Option<Standing>,
    /// The standing last written, with the round it was written in.
    pub(super) standing_written: Option<(Standing, u64)>,
    /// The highest seq answered without the follower's acknowledgement (while the peer was
    /// gone): the follower must hold it before the pair counts as in sync again.
    pub(super) alone_committed: u64,
    /// The highest Binary Star term persisted.
    pub(super) term_written: u64,
    /// Wall-clock anchor: the Unix time in ms at the given instant.
    wall: (Instant, u64),
    next_forget: Instant,
}

impl StateSide {
    /// A state side over `model` (restored from the store, or empty), at `now` (whose Unix
    /// time in ms is `wall_ms`).
    pub fn new(model: StateModel, history: History, start: StateStart) -> StateSide {
        let seq = model.seq();
        StateSide {
            model,
            history_written: history.clone(),
            history,
            tail: VecDeque::new(),
            tail_bytes: 0,
            durable: start.durable,
            batch: new_batch(),
            round: 0,
            in_flight: VecDeque::new(),
            flushed_round: 0,
            flushed_seq: seq,
            pending: VecDeque::new(),
            published_seq: seq,
            feed: start.feed,
            standing_at_start: start.standing,
            standing_written: start.standing.map(|s| (s, 0)),
            // Restarted from a data dir whose writes may have been answered alone.
            alone_committed: if start.standing == Some(Standing::Paired) {
                0
            } else {
                seq
            },
            term_written: start.term,
            wall: (start.now, start.wall_ms),
            next_forget: start.now + FORGET_EVERY,
        }
    }

    /// Keeps recent changes (read back from the store at start-up) for followers.
    pub fn remember_tail(&mut self, changes: Vec<Change>) {
        for change in changes {
            self.push_tail(change);
        }
    }

    /// The model's seq.
    pub fn seq(&self) -> u64 {
        self.model.seq()
    }

    /// The model.
    pub fn model(&self) -> &StateModel {
        &self.model
    }

    /// The Unix time in ms at `now`.
    pub fn wall_ms(&self, now: Instant) -> u64 {
        let (at, ms) = self.wall;
        match now.checked_duration_since(at) {
            Some(d) => ms.saturating_add(d.as_millis() as u64),
            None => ms.saturating_sub(at.duration_since(now).as_millis() as u64),
        }
    }

    /// Re-anchors the wall clock (the reactor does it every round, so a clock the system
    /// adjusts is followed).
    pub fn set_wall_clock(&mut self, now: Instant, wall_ms: u64) {
        self.wall = (now, wall_ms);
    }

    /// The term of the model's last change.
    pub fn last_term(&self) -> u64 {
        self.history.term_at(self.model.seq())
    }

    /// Whether the standing last written is durable and says `standing`.
    pub fn durably(&self, standing: Standing) -> bool {
        matches!(self.standing_written, Some((s, round)) if s == standing && round <= self.flushed_round)
    }

    /// Records a change made here or received from the peer: batch, tail, history.
    pub(super) fn record(&mut self, change: Change) {
        self.history.record(change.seq, change.term);
        if self.durable {
            self.batch.change(&change);
        }
        self.push_tail(change);
    }

    fn push_tail(&mut self, change: Change) {
        self.tail_bytes += change.value.as_ref().map_or(0, Vec::len) + change.key.len();
        self.tail.push_back(change);
        while self.tail.len() > TAIL_CHANGES || self.tail_bytes > TAIL_BYTES {
            let Some(old) = self.tail.pop_front() else {
                break;
            };
            self.tail_bytes -= old.value.as_ref().map_or(0, Vec::len) + old.key.len();
        }
    }

    /// Writes `standing` (if it is not what was last written) in this round's batch.
    pub(super) fn write_standing(&mut self, standing: Standing) {
        if self.standing_written.map(|(s, _)| s) == Some(standing) {
            return;
        }
        let round = self.round + 1;
        if self.durable {
            self.batch
                .put_meta("standing", standing.as_bytes().to_vec());
        }
        self.standing_written = Some((standing, round));
        info!(?standing, "state model standing recorded");
    }

    /// Writes the Binary Star term, if it rose.
    pub(super) fn write_term(&mut self, term: u64) {
        if term > self.term_written {
            self.term_written = term;
            if self.durable {
                self.batch.put_meta("term", term.to_string().into_bytes());
            }
        }
    }

    /// Starts over from a snapshot: the batch installs it, the tail and the pending replies
    /// go (their writes were never committed here).
    pub(super) fn reset_to(&mut self, model: StateModel, history: History) {
        self.model = model;
        self.history = history;
        self.tail.clear();
        self.tail_bytes = 0;
        self.pending.clear();
        self.published_seq = self.model.seq();
    }

    /// The batch being filled this round.
    pub(super) fn batch_mut(&mut self) -> &mut Batch {
        &mut self.batch
    }

    /// Whether replies wait for their writes to be committed.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Whether the store holds what the writer was given (nothing is in flight or waiting).
    pub fn idle(&self) -> bool {
        self.in_flight.is_empty() && self.batch.is_empty()
    }
}

/// What a state side starts from.
pub struct StateStart {
    /// Whether there is a store.
    pub durable: bool,
    /// Whether there is a change feed.
    pub feed: bool,
    /// The standing read from the store (none: fresh).
    pub standing: Option<Standing>,
    /// The Binary Star term read from the store.
    pub term: u64,
    /// The instant of start-up...
    pub now: Instant,
    /// ...and its Unix time in ms.
    pub wall_ms: u64,
}

impl Core {
    /// A request for a `state.*` service, on a broker that serves.
    pub(super) fn state_request(&mut self, now: Instant, client: Identity, msg: ClientMessage) {
        let ClientMessage { service, mut body } = msg;
        let frame = if body.is_empty() {
            Vec::new()
        } else {
            body.remove(0)
        };
        // The second frame, if any, is the write id; an empty frame means none.
        let write_id = body.first().filter(|id| !id.is_empty()).map(Vec::as_slice);
        let term = self.current_term();
        let state = &mut self.state;
        let now_ms = state.wall_ms(now);
        let seq_now = state.model.seq();
        let result = match service.as_str() {
            STATE_GET => state.model.get(&frame).map(|reply| (seq_now, reply)),
            STATE_SNAPSHOT => snapshot_reply(&state.model, &frame).map(|reply| (seq_now, reply)),
            STATE_SET | STATE_DEL => {
                let outcome = if service == STATE_SET {
                    state.model.set(&frame, write_id, now_ms, term)
                } else {
                    state.model.del(&frame, write_id, now_ms, term)
                };
                outcome.map(|outcome| {
                    let seq = outcome.seq();
                    self.metrics.state_write(outcome.kind());
                    if let WriteOutcome::Applied { changes, .. } = outcome {
                        for change in changes {
                            self.state.record(change);
                        }
                    }
                    (seq, StateModel::write_reply(seq))
                })
            }
            _ => {
                self.metrics
                    .state_bad_request(BadRequestReason::UnknownService);
                let text = format!(
                    "{service}: no such state service (state.get, state.set, state.del, state.snapshot)"
                );
                self.effects.push(Effect::ToClient {
                    client,
                    msg: ClientMessage {
                        service,
                        body: vec![error_reply(&text)],
                    },
                });
                return;
            }
        };
        match result {
            Ok((seq, reply)) => self.state.pending.push_back(Pending {
                seq,
                client,
                service,
                body: reply,
            }),
            Err(bad) => {
                self.metrics.state_bad_request(bad.kind());
                self.effects.push(Effect::ToClient {
                    client,
                    msg: ClientMessage {
                        service,
                        body: vec![error_reply(&bad.to_string())],
                    },
                });
            }
        }
        self.release_committed(now);
    }

    /// The Binary Star term changes are made in (0 for a standalone broker).
    pub(super) fn current_term(&self) -> u64 {
        self.pair.as_ref().map_or(0, |p| p.term())
    }

    /// TTL expiry and write-id forgetting, on the active.
    pub(super) fn state_timers(&mut self, now: Instant) {
        let now_ms = self.state.wall_ms(now);
        if self.state_writable(now) {
            let term = self.current_term();
            for change in self.state.model.expire(now_ms, term) {
                self.state.record(change);
            }
        }
        if now >= self.state.next_forget {
            self.state.next_forget = now + FORGET_EVERY;
            let forgotten = self.state.model.forget_write_ids(now_ms);
            if !forgotten.is_empty() && self.state.durable {
                self.state.batch.forget_write_ids(&forgotten);
            }
        }
    }

    /// Whether this broker makes changes now: it serves (a standalone broker always).
    pub(super) fn state_writable(&self, now: Instant) -> bool {
        self.serving(now)
    }

    /// When the next entry expires, as an instant.
    pub(super) fn state_deadline(&self, now: Instant) -> Option<Instant> {
        let at_ms = self.state.model.next_expiry_ms()?;
        let now_ms = self.state.wall_ms(now);
        Some(now + Duration::from_millis(at_ms.saturating_sub(now_ms)))
    }

    /// Hands the round's batch to the writer (group commit).
    pub(super) fn persist_round(&mut self, now: Instant) {
        let state = &mut self.state;
        if !state.durable {
            state.flushed_seq = state.model.seq();
            state.round += 1;
            state.flushed_round = state.round;
            return;
        }
        if state.history != state.history_written {
            state.history_written = state.history.clone();
            let bytes = bendy::serde::to_bytes(&state.history).unwrap_or_default();
            state.batch.put_meta("history", bytes);
        }
        if state.batch.is_empty() {
            return;
        }
        state.round += 1;
        let batch = std::mem::replace(&mut state.batch, new_batch());
        state
            .in_flight
            .push_back((state.round, state.model.seq(), now));
        self.effects.push(Effect::Persist(Persist {
            round: state.round,
            batch,
        }));
    }

    /// The writer made every round up to `round` durable.
    pub fn flushed(&mut self, now: Instant, round: u64) {
        // The writer reports once per flush.
        self.metrics.state_fsyncs.inc();
        let state = &mut self.state;
        state.flushed_round = state.flushed_round.max(round);
        while let Some(&(r, seq, at)) = state.in_flight.front() {
            if r > round {
                break;
            }
            state.flushed_seq = state.flushed_seq.max(seq);
            self.metrics
                .state_flush
                .observe(now.saturating_duration_since(at).as_secs_f64());
            state.in_flight.pop_front();
        }
        self.after_flush(now);
        self.release_committed(now);
    }

    /// The seq up to which writes are committed: flushed here and, while the peer is alive
    /// (or until this broker's *alone* standing is durable), acknowledged by the follower.
    pub(super) fn committed_seq(&self, now: Instant) -> (u64, bool) {
        let flushed = self.state.flushed_seq;
        if self.pair.is_none() {
            return (flushed, false);
        }
        let alone = !self.peer_alive_now(now)
            && self.state.durably(Standing::Alone)
            && self.paired_lease_end().is_none_or(|end| now >= end);
        if alone {
            (flushed, true)
        } else {
            (flushed.min(self.downstream_acked()), false)
        }
    }

    /// Sends every pending reply whose write is committed, and publishes committed changes.
    pub(super) fn release_committed(&mut self, now: Instant) {
        let (committed, alone) = self.committed_seq(now);
        if alone
            && self
                .state
                .pending
                .front()
                .is_some_and(|p| p.seq <= committed)
        {
            self.state.alone_committed = self.state.alone_committed.max(committed);
        }
        while self
            .state
            .pending
            .front()
            .is_some_and(|p| p.seq <= committed)
        {
            let Some(p) = self.state.pending.pop_front() else {
                break;
            };
            self.effects.push(Effect::ToClient {
                client: p.client,
                msg: ClientMessage {
                    service: p.service,
                    body: vec![p.body],
                },
            });
        }
        self.publish_upto(committed);
    }

    /// Publishes changes up to `seq` on the feed (from the tail; a change that left the
    /// tail already is skipped, and subscribers resync on the gap).
    pub(super) fn publish_upto(&mut self, seq: u64) {
        let state = &mut self.state;
        if state.published_seq >= seq {
            return;
        }
        if state.feed {
            let from = state.published_seq;
            let start = state.tail.partition_point(|c| c.seq <= from);
            for change in state.tail.range(start..) {
                if change.seq > seq {
                    break;
                }
                self.effects.push(Effect::Publish(FeedUpdate {
                    key: change.key.clone(),
                    seq: change.seq,
                    value: change.value.clone(),
                }));
            }
        }
        state.published_seq = seq;
    }

    /// Drops the replies still waiting (the broker steps down: their writes may never be
    /// committed; the clients retry on the new active, with the same write id).
    pub(super) fn drop_pending(&mut self) {
        let dropped = self.state.pending.len();
        if dropped > 0 {
            warn!(
                dropped,
                "stepping down: state replies not yet committed are dropped (clients retry)"
            );
            self.metrics.dropped(DropReason::NotActive, dropped as u64);
            self.state.pending.clear();
        }
    }

    /// Refreshes the state gauges.
    pub(super) fn state_gauges(&self) {
        let model = &self.state.model;
        self.metrics.state_seq.set(model.seq() as i64);
        self.metrics.state_keys.set(model.len() as i64);
        self.metrics.state_bytes.set(model.bytes() as i64);
        if self.pair.is_some() {
            let lag = self.state_lag().min(i64::MAX as u64) as i64;
            self.metrics.state_lag.set(lag);
        }
    }
}

/// An empty batch, encoding changes for the store's change log only if it keeps one.
fn new_batch() -> Batch {
    if crate::state::open::LOG_KEEP != 0 {
        Batch::default()
    } else {
        Batch::without_log()
    }
}

/// The `state.snapshot` reply: `{entries: {key: {seq, value}}, seq}` for the keys under the
/// prefix the body's list holds (none: every key).
fn snapshot_reply(model: &StateModel, body: &[u8]) -> Result<Vec<u8>, BadRequest> {
    let prefixes = parse_get(body, model.limits())?;
    if prefixes.len() > 1 {
        return Err(BadRequest::WrongShape {
            service: STATE_SNAPSHOT,
            expected: "a list of at most one key prefix",
        });
    }
    let prefix = prefixes.first().copied().unwrap_or("");
    let mut reply = Vec::with_capacity(64);
    reply.extend_from_slice(b"d7:entriesd");
    for (key, entry) in model.entries().filter(|(k, _)| k.starts_with(prefix)) {
        put_entry(&mut reply, key, entry);
    }
    reply.extend_from_slice(b"e3:seq");
    put_uint(&mut reply, model.seq());
    reply.push(b'e');
    Ok(reply)
}
