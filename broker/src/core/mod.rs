//! The broker's core: every rule of the broker in one place, free of sockets, files and
//! clocks.
//!
//! The core owns the [`Dispatcher`] (Majordomo routing), the Binary Star side of a pair
//! (the [`crate::pair::Pair`] driver and what its decisions mean for the dispatcher), the
//! state model with its group commit and deferred replies, and the state model's
//! replication to the peer. The reactor turns what arrives into calls ([`Core::frontend`],
//! [`Core::peer_message`], [`Core::link_event`], [`Core::tick`], ...) with the time of the
//! event, and carries out the [`Effect`]s it takes with [`Core::take_effects`] at the end of
//! each step. Whether replies may go to clients is decided here, once ([`Core::serving`]),
//! so the fake-clock simulations cover it.
//!
//! The reactor ends each poll round with [`Core::end_round`]: the one place where the work
//! of the round is committed as a group (the state model's writes are flushed once per
//! round, never once per request).

mod pair;
mod replication;
#[cfg(test)]
mod sim_tests;
mod snapshot_parts;
mod standing;
mod state_side;
mod status;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use hearth_proto::mmi::{STATE_PREFIX, STATUS_SERVICE};
use hearth_proto::status::{BStarState, Role};
use hearth_proto::{ClientMessage, DecodeError, Inbound};

use crate::dispatch::{Dispatcher, Mode};
pub use crate::effect::{Effect, Identity, Persist};
use crate::metrics::Metrics;
pub use pair::{HeldRequest, PairSide};
pub use replication::{ConflictRecord, Replication};
pub use standing::read_meta;
pub use state_side::{StateSide, StateStart, STATE_SNAPSHOT};

/// What the broker is, fixed at start-up: reported in its status.
#[derive(Debug, Clone)]
pub struct Identification {
    /// Configured role.
    pub role: Role,
    /// The frontend endpoint, as bound.
    pub frontend: String,
    /// The change feed's endpoint, as bound.
    pub publish: Option<String>,
    /// When the broker started.
    pub started: Instant,
}

/// The broker's rules: dispatcher, Binary Star side, state model.
pub struct Core {
    dispatcher: Dispatcher,
    /// The Binary Star side, for a primary or backup.
    pair: Option<PairSide>,
    metrics: Metrics,
    id: Identification,
    /// The state model.
    state: StateSide,
    /// The state model's replication (for a broker of a pair).
    repl: Replication,
    /// The interval of heartbeats to the peer.
    peer_heartbeat: Duration,
    /// Effects not yet taken by the reactor.
    effects: Vec<Effect>,
}

/// How the core is put together.
pub struct CoreParts {
    /// The dispatcher.
    pub dispatcher: Dispatcher,
    /// The Binary Star side, for a primary or backup.
    pub pair: Option<PairSide>,
    /// The metrics.
    pub metrics: Metrics,
    /// What the broker is.
    pub id: Identification,
    /// The state model, restored from the store or empty.
    pub state: StateSide,
    /// The interval of heartbeats to the peer.
    pub peer_heartbeat: Duration,
    /// `--force-active`: become active even if the state model may be behind the peer's.
    pub force_active: bool,
}

impl Core {
    /// A core from its parts.
    pub fn new(parts: CoreParts) -> Core {
        let mut core = Core {
            dispatcher: parts.dispatcher,
            pair: parts.pair,
            metrics: parts.metrics,
            id: parts.id,
            state: parts.state,
            repl: Replication {
                force_active: parts.force_active,
                ..Replication::default()
            },
            peer_heartbeat: parts.peer_heartbeat,
            effects: Vec::with_capacity(64),
        };
        core.metrics.set_bstar_state(core.state());
        core.state_gauges();
        core.update_activation(core.id.started);
        core
    }

    /// The Binary Star state (`Active` for a standalone broker).
    pub fn state(&self) -> BStarState {
        self.pair
            .as_ref()
            .map_or(BStarState::Active, PairSide::state)
    }

    /// Whether replies may go to clients now: a standalone broker always; a broker of a
    /// pair while active and sure its peer has not replaced it. The one place this is
    /// decided.
    pub fn serving(&self, now: Instant) -> bool {
        self.pair.as_ref().is_none_or(|p| p.serving(now))
    }

    /// Until when the broker may claim its Binary Star state `active`: past already when it
    /// is active but unsure that its peer has not replaced it (it serves nothing then, as
    /// right after a freeze until the peer's news arrives); None when there is no limit (a
    /// standalone broker, a broker not active, or one serving on its peer's expiry). The
    /// status board claims no state beyond it.
    pub fn sure_until(&self, now: Instant) -> Option<Instant> {
        self.pair.as_ref().and_then(|p| p.sure_until(now))
    }

    /// Feeds a clock reading to the stall detector; after a stall the dispatcher pauses
    /// before anything else is handled.
    pub fn observe(&mut self, now: Instant) {
        if self.pair.as_mut().is_some_and(|p| p.observe(now)) {
            self.metrics.stalls.inc();
            self.forget_pairing();
            self.update_activation(now);
            self.settle(now);
        }
    }

    /// Re-anchors the wall clock the state model's TTLs and write ids use.
    pub fn set_wall_clock(&mut self, now: Instant, unix_ms: u64) {
        self.state.set_wall_clock(now, unix_ms);
    }

    /// Serves a client request this broker has decided to serve: the state services
    /// here, everything else through the dispatcher.
    fn serve(&mut self, now: Instant, client: Identity, request: ClientMessage) {
        if request.service.starts_with(STATE_PREFIX) {
            self.state_request(now, client, request);
        } else {
            self.dispatcher
                .handle(now, client, Inbound::Client(request), &mut self.effects);
        }
    }

    /// One decoded message from the frontend peer `from`.
    pub fn frontend(&mut self, now: Instant, from: Identity, msg: Inbound) {
        match msg {
            // The status service answers in every state, also from a passive broker.
            Inbound::Client(request) if request.service == STATUS_SERVICE => {
                let body = vec![self.status(now).to_bencode()];
                self.effects.push(Effect::ToClient {
                    client: from,
                    msg: ClientMessage {
                        service: request.service,
                        body,
                    },
                });
            }
            Inbound::Client(request) if self.pair.is_some() => {
                self.observe(now);
                self.pair_client_request(now, from, request);
            }
            Inbound::Client(request) => self.serve(now, from, request),
            // Workers register and heartbeat with both brokers of a pair.
            msg => self.dispatcher.handle(now, from, msg, &mut self.effects),
        }
    }

    /// A message from the frontend that does not decode: counted, logged once per peer.
    pub fn malformed(&mut self, from: &[u8], error: &DecodeError) {
        self.dispatcher.malformed(from, error);
    }

    /// The reactor could not carry out `effect` because its peer is gone from the ROUTER.
    pub fn unreachable(&mut self, effect: Effect) {
        self.dispatcher.unreachable(effect, &mut self.effects);
    }

    /// Timers: heartbeats to workers and the peer, expiries, held requests.
    pub fn tick(&mut self, now: Instant) {
        if self.pair.is_some() {
            self.update_activation(now);
            self.pair_tick(now);
            self.replication_tick(now);
            self.standing_tick(now);
        }
        self.state_timers(now);
        self.dispatcher.tick(now, &mut self.effects);
    }

    /// The end of a poll round: the one place where the round's work is committed as a
    /// group. The round's state changes go to the writer in one batch, the active streams
    /// them to its follower, and replies whose writes are committed go out.
    pub fn end_round(&mut self, now: Instant) {
        self.replication_round(now);
        self.persist_round(now);
        self.release_committed(now);
        self.state_gauges();
    }

    /// The next moment after `now` that [`Core::tick`] has work to do.
    pub fn next_deadline(&self, now: Instant) -> Instant {
        let mut at = self.dispatcher.next_deadline();
        if let Some(pair) = &self.pair {
            at = at.min(pair.next_deadline());
        }
        // Writes waiting to be answered alone wait for the last *paired* to run out.
        if let Some(end) = self.paired_lease_end().filter(|&end| end > now) {
            if self.state.has_pending() {
                at = at.min(end);
            }
        }
        // Only a broker that serves expires entries (a passive keeps them for after a
        // failover).
        if self.state_writable(now) {
            if let Some(expiry) = self.state_deadline(now) {
                at = at.min(expiry);
            }
        }
        at
    }

    /// Moves the pending effects to `out`. A reply to a client that may not go out now
    /// (time alone made this broker unsure of its peer since the dispatcher was last told)
    /// is kept until the peer's news decides; status replies always go.
    pub fn take_effects(&mut self, now: Instant, out: &mut Vec<Effect>) {
        if self.serving(now) {
            out.append(&mut self.effects);
            return;
        }
        for effect in self.effects.drain(..) {
            match effect {
                Effect::ToClient { client, msg } if msg.service != STATUS_SERVICE => {
                    self.dispatcher.hold_reply(now, client, msg)
                }
                effect => out.push(effect),
            }
        }
    }

    /// Says goodbye: DISCONNECT to every worker.
    pub fn shutdown(&mut self) {
        self.dispatcher.shutdown(&mut self.effects);
    }

    /// Number of registered workers.
    pub fn worker_count(&self) -> usize {
        self.dispatcher.worker_count()
    }

    /// Tells the dispatcher what it may do, from the Binary Star side's view.
    fn set_mode(&mut self, mode: Mode, now: Instant) {
        self.dispatcher.set_mode(mode, now, &mut self.effects);
    }
}
