//! Services the broker answers itself: MMI (RFC 8), `hearth.status`, and the reserved
//! `state.*` names.

use std::time::Instant;

use hearth_proto::mmi::{self, MmiCode};
use hearth_proto::status::{BrokerStatus, PeerStatus};
use hearth_proto::{ClientMessage, Frame};

use super::Dispatcher;

/// What the broker says about itself beyond its services; the reactor keeps it current.
#[derive(Debug, Clone)]
pub struct BrokerInfo {
    /// `standalone`, `primary` or `backup`.
    pub role: String,
    /// `active`, `passive`, `primary` or `backup`.
    pub state: String,
    /// Whether the peer is heard from.
    pub peer_alive: bool,
    /// The state model's sequence number.
    pub state_seq: u64,
    /// The frontend endpoint, as bound.
    pub frontend: String,
    /// When the broker started.
    pub started: Instant,
    /// The Binary Star term.
    pub term: u64,
    /// The peer, for a broker of a pair.
    pub peer: Option<PeerStatus>,
    /// Client requests held by the pair driver.
    pub held_requests: u64,
    /// Takeovers so far.
    pub failovers: u64,
}

impl BrokerInfo {
    /// What a broker knows of itself at start-up.
    pub fn new(role: &str, state: &str, frontend: &str, started: Instant) -> BrokerInfo {
        BrokerInfo {
            role: role.into(),
            state: state.into(),
            peer_alive: false,
            state_seq: 0,
            frontend: frontend.into(),
            started,
            term: 0,
            peer: None,
            held_requests: 0,
            failovers: 0,
        }
    }
}

impl Dispatcher {
    /// Answers a request for a reserved service name.
    pub(super) fn builtin(&self, now: Instant, request: &ClientMessage) -> Vec<Frame> {
        let body = match request.service.as_str() {
            mmi::MMI_SERVICE => {
                let name = request.body.first().map(Vec::as_slice).unwrap_or_default();
                let found = std::str::from_utf8(name)
                    .ok()
                    .and_then(|name| self.services.get(name))
                    .is_some_and(|s| s.workers > 0);
                let code = if found {
                    MmiCode::Found
                } else {
                    MmiCode::NotFound
                };
                code.as_bytes().to_vec()
            }
            mmi::STATUS_SERVICE => self.status(now).to_bencode(),
            name if name.starts_with(mmi::MMI_PREFIX) => {
                MmiCode::NotImplemented.as_bytes().to_vec()
            }
            name => error_body(&format!("{name}: no such built-in service")),
        };
        vec![body]
    }

    /// The broker's status record.
    pub fn status(&self, now: Instant) -> BrokerStatus {
        BrokerStatus {
            role: self.info.role.clone(),
            state: self.info.state.clone(),
            peer_alive: self.info.peer_alive,
            state_seq: self.info.state_seq,
            frontend: self.info.frontend.clone(),
            uptime_ms: now.saturating_duration_since(self.info.started).as_millis() as u64,
            services: self.service_status(),
            term: self.info.term,
            peer: self.info.peer.clone(),
            held_requests: self.info.held_requests,
            failovers: self.info.failovers,
            publish: None,
        }
    }
}

/// The Bencode `{error: "..."}` body hearth uses for every error a service answers with.
pub fn error_body(text: &str) -> Frame {
    let mut map = std::collections::BTreeMap::new();
    map.insert("error", text);
    bendy::serde::to_bytes(&map).unwrap_or_else(|_| b"d5:error0:e".to_vec())
}
