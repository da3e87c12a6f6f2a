//! The Binary Star peer link between the two brokers of a pair.
//!
//! Each broker binds a PULL socket on its `--peer-bind` endpoint and connects a PUSH socket
//! to its peer's. A message is three frames:
//!
//! | frame | content |
//! |---|---|
//! | 0 | `"HEARTH-PEER01"` (protocol and version) |
//! | 1 | kind: `"HEARTBEAT"` |
//! | 2 | Bencode dict: the [`PeerHeartbeat`] fields |
//!
//! Heartbeats carry the sender's Binary Star state and term, and the state model's sequence
//! number so the peer can tell how far behind it is. Unknown dict keys are ignored, so a
//! newer broker can add fields without breaking an older peer.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::status::{BStarState, Role};
use crate::Frame;

/// Header frame of the peer link.
pub const PEER_HEADER: &[u8] = b"HEARTH-PEER01";
/// Kind frame of a heartbeat.
pub const HEARTBEAT_KIND: &[u8] = b"HEARTBEAT";
/// Largest peer message body accepted.
pub const MAX_PEER_BODY: usize = 64 * 1024;

/// What one broker tells the other every peer-heartbeat interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerHeartbeat {
    /// The sender's configured role (`primary` or `backup`).
    pub role: Role,
    /// The sender's Binary Star state.
    pub state: BStarState,
    /// The sender's Binary Star term (see the broker's `bstar` module).
    pub term: u64,
    /// The sender's state-model sequence number.
    pub state_seq: u64,
    /// The sender's frontend endpoint, for operators.
    pub frontend: String,
    /// A number the sender picked at start-up, so a restart is visible.
    pub epoch: u64,
    /// The sender's heartbeat counter: one more with every heartbeat it sends.
    #[serde(default)]
    pub beat: u64,
    /// The last `beat` the sender received from the receiver (0 for none), so a broker that
    /// was frozen can tell news sent after it resumed from news queued while it was away.
    #[serde(default)]
    pub heard: u64,
}

/// A message on the peer link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerMessage {
    /// The sender's state.
    Heartbeat(PeerHeartbeat),
}

/// A peer-link message that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PeerDecodeError {
    /// The header frame is missing or not `HEARTH-PEER01`.
    #[error("wrong peer-link header")]
    WrongHeader,
    /// The kind frame is missing or unknown.
    #[error("unknown peer message kind")]
    UnknownKind,
    /// The body frame is missing, too large, or not the expected Bencode dict.
    #[error("bad peer message body: {0}")]
    BadBody(String),
    /// Frames after the body.
    #[error("unexpected frames after the peer message body")]
    TrailingFrames,
    /// A heartbeat whose role or state is not one hearth knows.
    #[error("peer heartbeat with an unknown role or state: {0}")]
    UnknownState(String),
}

impl PeerDecodeError {
    /// A short, stable label for `hearth_malformed_messages_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            PeerDecodeError::WrongHeader => "peer_wrong_header",
            PeerDecodeError::UnknownKind => "peer_unknown_kind",
            PeerDecodeError::BadBody(_) => "peer_bad_body",
            PeerDecodeError::TrailingFrames => "peer_trailing_frames",
            PeerDecodeError::UnknownState(_) => "peer_bad_state",
        }
    }
}

impl PeerMessage {
    /// The frames of this message.
    pub fn encode(&self) -> Vec<Frame> {
        match self {
            PeerMessage::Heartbeat(hb) => {
                // Strings and integers always serialise; an empty body would be refused by
                // the peer as malformed, never misread.
                let body = bendy::serde::to_bytes(hb).unwrap_or_default();
                vec![PEER_HEADER.to_vec(), HEARTBEAT_KIND.to_vec(), body]
            }
        }
    }

    /// Decodes a peer-link message.
    pub fn decode(frames: &[Frame]) -> Result<PeerMessage, PeerDecodeError> {
        match frames.first() {
            Some(h) if h == PEER_HEADER => {}
            _ => return Err(PeerDecodeError::WrongHeader),
        }
        match frames.get(1) {
            Some(k) if k == HEARTBEAT_KIND => {}
            _ => return Err(PeerDecodeError::UnknownKind),
        }
        let body = frames
            .get(2)
            .ok_or_else(|| PeerDecodeError::BadBody("missing".into()))?;
        if body.len() > MAX_PEER_BODY {
            return Err(PeerDecodeError::BadBody(format!("{} bytes", body.len())));
        }
        if frames.len() > 3 {
            return Err(PeerDecodeError::TrailingFrames);
        }
        let raw = bendy::serde::from_bytes::<RawHeartbeat>(body)
            .map_err(|e| PeerDecodeError::BadBody(e.to_string()))?;
        Ok(PeerMessage::Heartbeat(raw.typed()?))
    }
}

/// A heartbeat as read, before its names are checked, so an unknown state is told apart
/// from a body that is not a heartbeat at all.
#[derive(Deserialize)]
struct RawHeartbeat {
    role: String,
    state: String,
    term: u64,
    state_seq: u64,
    frontend: String,
    epoch: u64,
    #[serde(default)]
    beat: u64,
    #[serde(default)]
    heard: u64,
}

impl RawHeartbeat {
    fn typed(self) -> Result<PeerHeartbeat, PeerDecodeError> {
        let unknown = |e: crate::status::UnknownName| PeerDecodeError::UnknownState(e.to_string());
        Ok(PeerHeartbeat {
            role: self.role.parse().map_err(unknown)?,
            state: self.state.parse().map_err(unknown)?,
            term: self.term,
            state_seq: self.state_seq,
            frontend: self.frontend,
            epoch: self.epoch,
            beat: self.beat,
            heard: self.heard,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hb() -> PeerHeartbeat {
        PeerHeartbeat {
            role: Role::Primary,
            state: BStarState::Active,
            term: 3,
            state_seq: 42,
            frontend: "tcp://127.0.0.1:5555".into(),
            epoch: 7,
            beat: 11,
            heard: 10,
        }
    }

    #[test]
    fn heartbeat_round_trips() {
        let msg = PeerMessage::Heartbeat(hb());
        let frames = msg.encode();
        assert_eq!(frames[0], b"HEARTH-PEER01");
        assert_eq!(frames[1], b"HEARTBEAT");
        assert_eq!(PeerMessage::decode(&frames), Ok(msg));
    }

    #[test]
    fn malformed_shapes() {
        let good = PeerMessage::Heartbeat(hb()).encode();
        assert_eq!(PeerMessage::decode(&[]), Err(PeerDecodeError::WrongHeader));
        assert_eq!(
            PeerMessage::decode(&[b"HEARTH-PEER02".to_vec()]),
            Err(PeerDecodeError::WrongHeader)
        );
        assert_eq!(
            PeerMessage::decode(&good[..1]),
            Err(PeerDecodeError::UnknownKind)
        );
        assert_eq!(
            PeerMessage::decode(&[good[0].clone(), b"HELLO".to_vec()]),
            Err(PeerDecodeError::UnknownKind)
        );
        assert!(matches!(
            PeerMessage::decode(&good[..2]),
            Err(PeerDecodeError::BadBody(_))
        ));
        let garbage = vec![good[0].clone(), good[1].clone(), b"i3e".to_vec()];
        assert!(matches!(
            PeerMessage::decode(&garbage),
            Err(PeerDecodeError::BadBody(_))
        ));
        let mut trailing = good.clone();
        trailing.push(b"x".to_vec());
        assert_eq!(
            PeerMessage::decode(&trailing),
            Err(PeerDecodeError::TrailingFrames)
        );
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let body = b"d5:epochi1e8:frontend0:4:role6:backup5:state7:passive9:state_seqi0e4:termi0e5:zzzzzi9ee";
        let frames = vec![PEER_HEADER.to_vec(), HEARTBEAT_KIND.to_vec(), body.to_vec()];
        let PeerMessage::Heartbeat(hb) = PeerMessage::decode(&frames).unwrap();
        assert_eq!(hb.state, BStarState::Passive);
    }

    #[test]
    fn an_unknown_state_is_its_own_error() {
        let body = b"d5:epochi1e8:frontend0:4:role6:backup5:state7:emperor9:state_seqi0e4:termi0ee";
        let frames = vec![PEER_HEADER.to_vec(), HEARTBEAT_KIND.to_vec(), body.to_vec()];
        let err = PeerMessage::decode(&frames).unwrap_err();
        assert_eq!(err.reason(), "peer_bad_state");
        assert!(err.to_string().contains("emperor"), "{err}");
    }

    proptest! {
        #[test]
        fn decode_never_panics(frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..5)) {
            let _ = PeerMessage::decode(&frames);
        }
    }
}
