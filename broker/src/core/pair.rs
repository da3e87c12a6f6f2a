//! The core's Binary Star side: the [`Pair`] driver and what its decisions mean for the
//! dispatcher (its [`Mode`]: active, paused or passive), the peer's heartbeats in and out,
//! and the requests the driver holds.

use std::time::Instant;

use hearth_proto::peer::{PeerDecodeError, PeerHeartbeat, PeerMessage};
use hearth_proto::status::{BStarState, Role};
use hearth_proto::ClientMessage;
use tracing::{error, info, warn};

use super::Core;
use crate::bstar::{PairRole, Verdict};
use crate::dispatch::Mode;
use crate::effect::{Effect, Identity};
use crate::metrics::DropReason;
use crate::pair::{Activation, Gate, Pair};
use crate::peer_link::LinkEvent;

/// A client request the pair driver holds.
pub struct HeldRequest {
    pub client: Identity,
    pub msg: ClientMessage,
}

/// One broker's side of the pair: the driver and what was last reported of it.
pub struct PairSide {
    pair: Pair<HeldRequest>,
    role: PairRole,
    epoch: u64,
    peer_endpoint: String,
    last_state: BStarState,
    last_failovers: u64,
    last_step_downs: u64,
    logged_fault: bool,
}

impl PairSide {
    /// A fresh side for `role`, with its start-up `epoch`, talking to `peer_endpoint`.
    pub fn new(pair: Pair<HeldRequest>, role: PairRole, epoch: u64, peer_endpoint: &str) -> Self {
        PairSide {
            last_state: pair.state(),
            pair,
            role,
            epoch,
            peer_endpoint: peer_endpoint.to_owned(),
            last_failovers: 0,
            last_step_downs: 0,
            logged_fault: false,
        }
    }

    /// The current Binary Star state.
    pub fn state(&self) -> BStarState {
        self.pair.state()
    }

    /// Until when this broker may claim to be active (see [`Pair::sure_until`]).
    pub fn sure_until(&self, now: Instant) -> Option<Instant> {
        self.pair.sure_until(now)
    }

    /// Whether replies may go out (see [`Pair::serving`]).
    pub fn serving(&self, now: Instant) -> bool {
        self.pair.serving(now)
    }

    /// True if the clock reading reveals a stall.
    pub(super) fn observe(&mut self, now: Instant) -> bool {
        let stalled = self.pair.observe(now);
        if stalled {
            warn!("this broker was not running for a while (stopped or starved): serving nothing until the peer's news arrives");
        }
        stalled
    }

    /// The next moment the driver has work to do.
    pub fn next_deadline(&self) -> Instant {
        self.pair.next_deadline()
    }

    /// Whether the peer is heard from within its expiry.
    pub fn peer_alive(&self, now: Instant) -> bool {
        self.pair.peer_alive(now)
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.pair.term()
    }

    /// Client requests held right now.
    pub fn held(&self) -> u64 {
        self.pair.held() as u64
    }

    /// Times this broker took over.
    pub fn failovers(&self) -> u64 {
        self.pair.failovers
    }

    /// The peer's endpoint, for status.
    pub fn peer_endpoint(&self) -> &str {
        &self.peer_endpoint
    }

    /// Whether the peer is known to be down (its port refuses connections).
    pub fn peer_gone(&self) -> bool {
        self.pair.peer_gone()
    }

    /// When the peer counts (or will count) as expired.
    pub fn peer_expiry(&self) -> Instant {
        self.pair.peer_expiry()
    }

    /// The peer's last announced state.
    pub fn peer_state(&self) -> Option<BStarState> {
        self.pair.peer_state()
    }

    /// When the peer was last heard.
    pub fn last_heard(&self) -> Option<Instant> {
        self.pair.last_heard()
    }

    /// Sends the next heartbeat at the next tick.
    pub fn beat_now(&mut self) {
        self.pair.beat_now();
    }

    /// Starts from the highest term known when the broker last ran.
    pub fn restore_term(&mut self, term: u64) {
        self.pair.restore_term(term);
    }

    /// Whether the peer acknowledged a heartbeat sent after this broker's last stall.
    pub fn heard_since_resume(&self) -> bool {
        self.pair.heard_since_resume()
    }

    /// What the state model allows the driver (see [`Activation`]).
    pub fn set_activation(&mut self, activation: Activation) {
        self.pair.set_activation(activation);
    }
}

impl Core {
    fn side(&mut self) -> Option<&mut PairSide> {
        self.pair.as_mut()
    }

    /// Something the peer link's monitor saw.
    pub fn link_event(&mut self, now: Instant, event: LinkEvent) {
        let Some(side) = self.side() else { return };
        match event {
            LinkEvent::Disconnected => {
                info!(peer = %side.peer_endpoint, "peer link closed; reconnecting")
            }
            LinkEvent::Gone => {
                info!(peer = %side.peer_endpoint, "peer link closed and the peer's port refuses connections: the peer counts as expired unless it speaks again");
                side.pair.peer_disconnected(now);
            }
            LinkEvent::Connected => info!(peer = %side.peer_endpoint, "peer link connected"),
            LinkEvent::Ready => side.pair.peer_link_ready(now),
            LinkEvent::Other => {}
        }
        self.settle(now);
    }

    /// A message from the peer link, or why it could not be read (counted and dropped).
    pub fn peer_message(&mut self, now: Instant, msg: Result<PeerMessage, PeerDecodeError>) {
        match msg {
            Ok(PeerMessage::Heartbeat(hb)) => {
                self.heartbeat_news(now, &hb);
                self.peer_heartbeat(now, hb);
            }
            Ok(msg) => self.replication_message(now, msg),
            Err(e) => {
                self.metrics.peer_malformed(&e);
                warn!(error = %e, "dropping malformed peer message");
            }
        }
        self.settle(now);
    }

    fn peer_heartbeat(&mut self, now: Instant, hb: PeerHeartbeat) {
        let metrics = &self.metrics;
        let Some(side) = self.pair.as_mut() else {
            return;
        };
        match side
            .pair
            .peer_heartbeat(now, hb.state, hb.term, hb.beat, hb.heard)
        {
            Ok(Verdict::SteppedDown) => {
                error!(
                    peer_term = hb.term,
                    "split brain: the peer is active in a newer term; stepping down to passive"
                );
            }
            Ok(_) => side.logged_fault = false,
            Err(fault) => {
                metrics.dropped(DropReason::PeerFault, 1);
                if !std::mem::replace(&mut side.logged_fault, true) {
                    error!(%fault, "Binary Star fault");
                }
            }
        }
    }

    /// A client request to a broker of a pair: served through the dispatcher, held, or
    /// dropped.
    pub(super) fn pair_client_request(
        &mut self,
        now: Instant,
        client: Identity,
        msg: ClientMessage,
    ) {
        let Some(side) = self.side() else { return };
        match side.pair.client_request(now, HeldRequest { client, msg }) {
            Gate::Serve(r) => {
                // A request can make a passive active: settle first, so it is dispatched.
                self.settle(now);
                self.serve(now, r.client, r.msg);
            }
            Gate::Held => {}
            Gate::Refuse(_) => self.metrics.dropped(DropReason::NotActive, 1),
        }
        self.settle(now);
    }

    /// Timers of the pair: the heartbeat to the peer, held requests whose fate is known.
    pub(super) fn pair_tick(&mut self, now: Instant) {
        self.announce_pairing();
        let frontend = self.id.frontend.clone();
        let Some(side) = self.side() else { return };
        if let Some(beat) = side.pair.tick(now) {
            let mut hb = PeerHeartbeat {
                role: match side.role {
                    PairRole::Primary => Role::Primary,
                    PairRole::Backup => Role::Backup,
                },
                state: beat.state,
                term: beat.term,
                state_seq: 0,
                frontend,
                epoch: side.epoch,
                beat: beat.beat,
                heard: beat.heard,
                last_term: 0,
                paired: false,
            };
            self.heartbeat_data(now, &mut hb);
            self.effects
                .push(Effect::ToPeer(PeerMessage::Heartbeat(hb)));
        }
        self.settle(now);
        let alive = self.pair.as_ref().is_some_and(|p| p.peer_alive(now));
        self.metrics.peer_alive.set(i64::from(alive));
    }

    /// Carries out what the pair driver decided: state changes, released and dropped
    /// requests, and the dispatcher's mode.
    pub(super) fn settle(&mut self, now: Instant) {
        // Disjoint fields: the side is changed while the metrics are read.
        let metrics = &self.metrics;
        let Some(side) = self.pair.as_mut() else {
            return;
        };
        // The failover is counted before the state gauge says active: a scrape between
        // the two never shows a new active without its failover.
        if side.pair.failovers != side.last_failovers {
            metrics
                .failovers
                .inc_by(side.pair.failovers - side.last_failovers);
            side.last_failovers = side.pair.failovers;
        }
        let state = side.pair.state();
        let changed = (state != side.last_state).then_some(side.last_state);
        if let Some(from) = changed {
            info!(
                from = %from,
                to = %state,
                term = side.pair.term(),
                "Binary Star state change"
            );
            metrics.set_bstar_state(state);
            side.last_state = state;
        }
        let term = side.pair.term();
        if side.pair.step_downs != side.last_step_downs {
            metrics
                .split_brain
                .inc_by(side.pair.step_downs - side.last_step_downs);
            side.last_step_downs = side.pair.step_downs;
        }
        let mode = match (state, side.pair.serving(now)) {
            (BStarState::Active, true) => Mode::Active,
            (BStarState::Active, false) => Mode::Paused,
            _ => Mode::Passive,
        };
        let released = side.pair.take_released();
        let dropped = side.pair.take_dropped().len() as u64;
        metrics.dropped(DropReason::PeerServing, dropped);
        self.state.write_term(term);
        if let Some(from) = changed {
            self.state_changed(from, state, now);
        }
        self.set_mode(mode, now);
        for r in released {
            self.serve(now, r.client, r.msg);
        }
    }
}
