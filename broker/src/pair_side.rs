//! The reactor's Binary Star side: the peer link's sockets and the pair driver, and what
//! their news means for the dispatcher (its [`Mode`]: active, paused or passive).

use std::time::Instant;

use hearth_proto::peer::{PeerHeartbeat, PeerMessage};
use hearth_proto::status::PeerStatus;
use hearth_proto::ClientMessage;
use tracing::{error, info, warn};

use crate::bstar::{PairRole, State, Verdict};
use crate::dispatch::{Action, Dispatcher, Identity, Mode};
use crate::metrics::Metrics;
use crate::pair::{Gate, Pair};
use crate::peer_link::{LinkEvent, PeerLink};

/// A client request the pair driver holds.
pub struct HeldRequest {
    pub client: Identity,
    pub msg: ClientMessage,
}

/// Everything the reactor needs for a broker of a pair.
pub struct PairSide {
    pub(crate) link: PeerLink,
    pub(crate) pair: Pair<HeldRequest>,
    pub(crate) role: PairRole,
    pub(crate) epoch: u64,
    pub(crate) frontend: String,
    last_state: State,
    last_failovers: u64,
    last_step_downs: u64,
    logged_fault: bool,
}

impl PairSide {
    /// Wraps an opened peer link and a fresh pair driver.
    pub fn new(
        link: PeerLink,
        pair: Pair<HeldRequest>,
        role: PairRole,
        epoch: u64,
        frontend: String,
    ) -> PairSide {
        let last_state = pair.state();
        PairSide {
            link,
            pair,
            role,
            epoch,
            frontend,
            last_state,
            last_failovers: 0,
            last_step_downs: 0,
            logged_fault: false,
        }
    }

    /// Feeds a clock reading to the stall detector; after a stall the dispatcher pauses
    /// before anything else is handled.
    pub fn observe(
        &mut self,
        now: Instant,
        dispatcher: &mut Dispatcher,
        metrics: &Metrics,
        out: &mut Vec<Action>,
    ) {
        if self.pair.observe(now) {
            warn!("this broker was not running for a while (stopped or starved): serving nothing until the peer's news arrives");
            metrics.stalls.inc();
            self.settle(now, dispatcher, metrics, out);
        }
    }

    /// Reads everything waiting on the peer link and its monitor.
    pub fn drain_link(
        &mut self,
        now: Instant,
        dispatcher: &mut Dispatcher,
        metrics: &Metrics,
        out: &mut Vec<Action>,
    ) {
        while let Some(event) = self.link.recv_event() {
            match event {
                LinkEvent::Disconnected => {
                    info!(peer = %self.link.peer_endpoint, "peer link closed; reconnecting")
                }
                LinkEvent::Gone => {
                    info!(peer = %self.link.peer_endpoint, "peer link closed and the peer's port refuses connections: the peer counts as expired unless it speaks again");
                    self.pair.peer_disconnected(now);
                }
                LinkEvent::Connected => {
                    info!(peer = %self.link.peer_endpoint, "peer link connected")
                }
                LinkEvent::Ready => self.pair.peer_link_ready(now),
                LinkEvent::Other => {}
            }
        }
        while let Some(frames) = self.link.recv() {
            match PeerMessage::decode(&frames) {
                Ok(PeerMessage::Heartbeat(hb)) => self.heartbeat(now, hb, metrics),
                Err(e) => {
                    metrics.malformed.with_label_values(&[e.reason()]).inc();
                    warn!(error = %e, "dropping malformed peer message");
                }
            }
        }
        self.settle(now, dispatcher, metrics, out);
    }

    fn heartbeat(&mut self, now: Instant, hb: PeerHeartbeat, metrics: &Metrics) {
        let Some(state) = State::parse(&hb.state) else {
            metrics
                .malformed
                .with_label_values(&["peer_bad_state"])
                .inc();
            return;
        };
        match self
            .pair
            .peer_heartbeat(now, state, hb.term, hb.beat, hb.heard)
        {
            Ok(Verdict::SteppedDown) => {
                error!(
                    peer_term = hb.term,
                    "split brain: the peer is active in a newer term; stepping down to passive"
                );
            }
            Ok(_) => self.logged_fault = false,
            Err(fault) => {
                metrics.dropped.with_label_values(&["peer_fault"]).inc();
                if !std::mem::replace(&mut self.logged_fault, true) {
                    error!(%fault, "Binary Star fault");
                }
            }
        }
    }

    /// Decides about a client request: serve it through the dispatcher, hold it, or drop it.
    pub fn client_request(
        &mut self,
        now: Instant,
        client: Identity,
        msg: ClientMessage,
        dispatcher: &mut Dispatcher,
        metrics: &Metrics,
        out: &mut Vec<Action>,
    ) {
        match self.pair.client_request(now, HeldRequest { client, msg }) {
            Gate::Serve(r) => {
                // A request can make a passive active: settle first, so it is dispatched.
                self.settle(now, dispatcher, metrics, out);
                dispatcher.handle(now, r.client, hearth_proto::Inbound::Client(r.msg), out);
            }
            Gate::Held => {}
            Gate::Refuse(_) => metrics.dropped.with_label_values(&["not_active"]).inc(),
        }
        self.settle(now, dispatcher, metrics, out);
    }

    /// Timers: heartbeat to the peer, held requests whose fate is known.
    pub fn tick(
        &mut self,
        now: Instant,
        dispatcher: &mut Dispatcher,
        metrics: &Metrics,
        out: &mut Vec<Action>,
    ) {
        if let Some(beat) = self.pair.tick(now) {
            self.link.send(PeerHeartbeat {
                role: match self.role {
                    PairRole::Primary => "primary".into(),
                    PairRole::Backup => "backup".into(),
                },
                state: beat.state.as_str().into(),
                term: beat.term,
                state_seq: dispatcher.info.state_seq,
                frontend: self.frontend.clone(),
                epoch: self.epoch,
                beat: beat.beat,
                heard: beat.heard,
            });
        }
        self.settle(now, dispatcher, metrics, out);
    }

    /// Whether replies may go to clients now.
    pub fn serving(&self, now: Instant) -> bool {
        self.pair.serving(now)
    }

    /// The next moment the pair driver has work to do.
    pub fn next_deadline(&self) -> Instant {
        self.pair.next_deadline()
    }

    /// Carries out what the pair driver decided: state changes, released and dropped
    /// requests, and the dispatcher's mode.
    fn settle(
        &mut self,
        now: Instant,
        dispatcher: &mut Dispatcher,
        metrics: &Metrics,
        out: &mut Vec<Action>,
    ) {
        let state = self.pair.state();
        if state != self.last_state {
            info!(
                from = self.last_state.as_str(),
                to = state.as_str(),
                term = self.pair.term(),
                "Binary Star state change"
            );
            metrics.set_bstar_state(state.as_str());
            dispatcher.info.state = state.as_str().into();
            self.last_state = state;
        }
        if self.pair.failovers != self.last_failovers {
            metrics
                .failovers
                .inc_by(self.pair.failovers - self.last_failovers);
            self.last_failovers = self.pair.failovers;
        }
        if self.pair.step_downs != self.last_step_downs {
            metrics
                .split_brain
                .inc_by(self.pair.step_downs - self.last_step_downs);
            self.last_step_downs = self.pair.step_downs;
        }
        let mode = match (state, self.pair.serving(now)) {
            (State::Active, true) => Mode::Active,
            (State::Active, false) => Mode::Paused,
            _ => Mode::Passive,
        };
        dispatcher.set_mode(mode, now, out);
        for r in self.pair.take_released() {
            dispatcher.handle(now, r.client, hearth_proto::Inbound::Client(r.msg), out);
        }
        let dropped = self.pair.take_dropped().len() as u64;
        if dropped > 0 {
            metrics
                .dropped
                .with_label_values(&["peer_serving"])
                .inc_by(dropped);
        }
    }

    /// Refreshes what status and metrics say about the pair.
    pub fn refresh_info(&self, now: Instant, dispatcher: &mut Dispatcher, metrics: &Metrics) {
        let alive = self.pair.peer_alive(now);
        metrics.peer_alive.set(i64::from(alive));
        dispatcher.info.peer_alive = alive;
        dispatcher.info.term = self.pair.term();
        dispatcher.info.held_requests = self.pair.held() as u64;
        dispatcher.info.failovers = self.pair.failovers;
        dispatcher.info.peer = Some(PeerStatus {
            endpoint: self.link.peer_endpoint.clone(),
            state: self
                .pair
                .peer_state()
                .map_or("unknown", State::as_str)
                .into(),
            last_heard_ms: self
                .pair
                .last_heard()
                .map(|t| now.saturating_duration_since(t).as_millis() as u64),
            alive,
        });
    }
}
