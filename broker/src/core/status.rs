//! The broker's status record, assembled from the core's parts: what the broker is, its
//! Binary Star side, its services and its state model.

use std::time::Instant;

use hearth_proto::status::{BStarState, BrokerStatus, PeerStatus};

use super::Core;

impl Core {
    /// The broker's status as of `now`.
    pub fn status(&self, now: Instant) -> BrokerStatus {
        let mut status = BrokerStatus {
            role: self.id.role,
            state: BStarState::Active,
            peer_alive: false,
            state_seq: self.state.seq(),
            frontend: self.id.frontend.clone(),
            uptime_ms: now.saturating_duration_since(self.id.started).as_millis() as u64,
            services: self.dispatcher.service_status(),
            term: 0,
            peer: None,
            held_requests: 0,
            failovers: 0,
            publish: self.id.publish.clone(),
            state_keys: self.state.model().len() as u64,
            state_lag: 0,
            waiting_for_peer: self.waiting_reason().map(str::to_owned),
            paired: self.paired(),
        };
        if let Some(pair) = &self.pair {
            let alive = pair.peer_alive(now);
            status.state = pair.state();
            status.peer_alive = alive;
            status.term = pair.term();
            status.held_requests = pair.held();
            status.failovers = pair.failovers();
            status.state_lag = self.state_lag();
            status.peer = Some(PeerStatus {
                endpoint: pair.peer_endpoint().to_owned(),
                state: pair.peer_state(),
                last_heard_ms: pair
                    .last_heard()
                    .map(|t| now.saturating_duration_since(t).as_millis() as u64),
                alive,
            });
        }
        status
    }
}
