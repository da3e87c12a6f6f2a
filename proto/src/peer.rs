//! The Binary Star peer link between the two brokers of a pair.
//!
//! Each broker binds a PULL socket on its `--peer-bind` endpoint and connects two PUSH
//! sockets to its peer's: one for heartbeats (dropped rather than queued when the peer is
//! away) and one for the state model's replication (see [`crate::repl`]). A message is
//! three frames:
//!
//! | frame | content |
//! |---|---|
//! | 0 | `"HEARTH-PEER01"` (protocol and version) |
//! | 1 | kind: `"HEARTBEAT"`, `"SYNC"`, `"CHANGES"` or `"SNAPSHOT"` |
//! | 2 | Bencode dict: the fields of [`PeerHeartbeat`], [`Sync`], [`Changes`] or [`SnapshotChunk`] |
//!
//! Heartbeats carry the sender's Binary Star state and term, and where its state model
//! stands (seq, the term of its last change, whether it counts the receiver as in sync),
//! so the peer can tell how far behind it is. Unknown dict keys are ignored, so a newer
//! broker can add fields without breaking an older peer.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::repl::{Changes, SnapshotChunk, Sync};
use crate::status::{BStarState, Role};
use crate::Frame;

/// Header frame of the peer link.
pub const PEER_HEADER: &[u8] = b"HEARTH-PEER01";
/// Kind frame of a heartbeat.
pub const HEARTBEAT_KIND: &[u8] = b"HEARTBEAT";
/// Kind frame of a replication [`Sync`].
pub const SYNC_KIND: &[u8] = b"SYNC";
/// Kind frame of replicated [`Changes`].
pub const CHANGES_KIND: &[u8] = b"CHANGES";
/// Kind frame of a [`SnapshotChunk`].
pub const SNAPSHOT_KIND: &[u8] = b"SNAPSHOT";
/// Largest heartbeat body accepted.
pub const MAX_PEER_BODY: usize = 64 * 1024;
/// Largest replication body accepted (a change batch or snapshot part is cut below it).
pub const MAX_REPL_BODY: usize = 16 << 20;

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
    /// The term of the sender's last state-model change (with `state_seq`, how new its
    /// data is: a higher term wins, then a higher seq).
    #[serde(default)]
    pub last_term: u64,
    /// Whether the sender has durably recorded that the receiver is in sync with it (so,
    /// restarted alone, the sender would wait for the receiver): only then may a passive
    /// receiver take over when the sender falls silent.
    #[serde(default)]
    pub paired: bool,
}

/// A message on the peer link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerMessage {
    /// The sender's state.
    Heartbeat(PeerHeartbeat),
    /// Replication: what the follower holds (and acknowledges).
    Sync(Sync),
    /// Replication: changes from the source.
    Changes(Changes),
    /// Replication: a part of a snapshot from the source.
    Snapshot(SnapshotChunk),
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

crate::label_enum! {
    /// Why a peer-link message was dropped as malformed: the `reason` label of
    /// `hearth_malformed_messages_total` (prefixed `peer_`), one value per
    /// [`PeerDecodeError`] variant.
    pub enum PeerMalformedReason {
        /// [`PeerDecodeError::WrongHeader`].
        WrongHeader => "peer_wrong_header",
        /// [`PeerDecodeError::UnknownKind`].
        UnknownKind => "peer_unknown_kind",
        /// [`PeerDecodeError::BadBody`].
        BadBody => "peer_bad_body",
        /// [`PeerDecodeError::TrailingFrames`].
        TrailingFrames => "peer_trailing_frames",
        /// [`PeerDecodeError::UnknownState`].
        UnknownState => "peer_bad_state",
    }
}

impl PeerDecodeError {
    /// Which kind of unusable message this is, for `hearth_malformed_messages_total{reason}`.
    pub fn kind(&self) -> PeerMalformedReason {
        match self {
            PeerDecodeError::WrongHeader => PeerMalformedReason::WrongHeader,
            PeerDecodeError::UnknownKind => PeerMalformedReason::UnknownKind,
            PeerDecodeError::BadBody(_) => PeerMalformedReason::BadBody,
            PeerDecodeError::TrailingFrames => PeerMalformedReason::TrailingFrames,
            PeerDecodeError::UnknownState(_) => PeerMalformedReason::UnknownState,
        }
    }

    /// A short, stable label for `hearth_malformed_messages_total{reason}`.
    pub fn reason(&self) -> &'static str {
        self.kind().as_str()
    }
}

impl PeerMessage {
    /// The frames of this message.
    pub fn encode(&self) -> Vec<Frame> {
        // Strings, integers and byte strings always serialise; an empty body would be
        // refused by the peer as malformed, never misread.
        let (kind, body) = match self {
            PeerMessage::Heartbeat(hb) => (HEARTBEAT_KIND, bendy::serde::to_bytes(hb)),
            PeerMessage::Sync(m) => (SYNC_KIND, bendy::serde::to_bytes(m)),
            // The hot path: each change's record written by hand (see `Change::encode`).
            PeerMessage::Changes(m) => {
                let mut body = b"d7:changesl".to_vec();
                for change in &m.changes {
                    change.encode_into(&mut body);
                }
                body.extend_from_slice(b"ee");
                (CHANGES_KIND, Ok(body))
            }
            PeerMessage::Snapshot(m) => (SNAPSHOT_KIND, bendy::serde::to_bytes(m)),
        };
        vec![
            PEER_HEADER.to_vec(),
            kind.to_vec(),
            body.unwrap_or_default(),
        ]
    }

    /// Whether this message belongs on the replication connection.
    pub fn is_replication(&self) -> bool {
        !matches!(self, PeerMessage::Heartbeat(_))
    }

    /// Decodes a peer-link message.
    pub fn decode(frames: &[Frame]) -> Result<PeerMessage, PeerDecodeError> {
        match frames.first() {
            Some(h) if h == PEER_HEADER => {}
            _ => return Err(PeerDecodeError::WrongHeader),
        }
        let kind = frames.get(1).ok_or(PeerDecodeError::UnknownKind)?;
        let limit = match kind.as_slice() {
            HEARTBEAT_KIND => MAX_PEER_BODY,
            SYNC_KIND | CHANGES_KIND | SNAPSHOT_KIND => MAX_REPL_BODY,
            _ => return Err(PeerDecodeError::UnknownKind),
        };
        let body = frames
            .get(2)
            .ok_or_else(|| PeerDecodeError::BadBody("missing".into()))?;
        if body.len() > limit {
            return Err(PeerDecodeError::BadBody(format!("{} bytes", body.len())));
        }
        if frames.len() > 3 {
            return Err(PeerDecodeError::TrailingFrames);
        }
        fn body_of<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, PeerDecodeError> {
            bendy::serde::from_bytes::<T>(body).map_err(|e| PeerDecodeError::BadBody(e.to_string()))
        }
        Ok(match kind.as_slice() {
            HEARTBEAT_KIND => PeerMessage::Heartbeat(body_of::<RawHeartbeat>(body)?.typed()?),
            SYNC_KIND => PeerMessage::Sync(body_of(body)?),
            CHANGES_KIND => PeerMessage::Changes(body_of(body)?),
            _ => PeerMessage::Snapshot(body_of(body)?),
        })
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
    #[serde(default)]
    last_term: u64,
    #[serde(default)]
    paired: bool,
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
            last_term: self.last_term,
            paired: self.paired,
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
            last_term: 2,
            paired: true,
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
    fn replication_messages_round_trip() {
        use crate::repl::{History, SnapshotEntry, SnapshotWrite, TermStart};
        use crate::state::{Cause, Change, WriteTag};
        let history = History(vec![TermStart {
            term: 2,
            first_seq: 1,
        }]);
        let change = Change {
            seq: 5,
            term: 2,
            key: "hall/light".into(),
            cause: Cause::Set,
            value: Some(b"i1e".to_vec()),
            expires_at_ms: None,
            write: Some(WriteTag {
                id: vec![0, 255, 7],
                digest: 1,
                at_ms: 2,
            }),
        };
        let messages = [
            PeerMessage::Sync(Sync {
                seq: 4,
                history: history.clone(),
                flushed: 3,
                resend: true,
            }),
            PeerMessage::Changes(Changes {
                changes: vec![
                    change.clone(),
                    Change {
                        seq: 6,
                        ..change.clone()
                    },
                ],
            }),
            PeerMessage::Snapshot(SnapshotChunk {
                seq: 6,
                history,
                common: 3,
                part: 0,
                last: true,
                entries: vec![SnapshotEntry {
                    key: "hall/light".into(),
                    seq: 6,
                    value: b"i1e".to_vec(),
                    expires_at_ms: Some(9),
                }],
                writes: vec![SnapshotWrite {
                    seq: 6,
                    tag: WriteTag {
                        id: b"w".to_vec(),
                        digest: 3,
                        at_ms: 4,
                    },
                }],
            }),
        ];
        for msg in messages {
            assert!(msg.is_replication());
            assert_eq!(PeerMessage::decode(&msg.encode()), Ok(msg));
        }
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
        let Ok(PeerMessage::Heartbeat(hb)) = PeerMessage::decode(&frames) else {
            panic!("a heartbeat")
        };
        assert_eq!(hb.state, BStarState::Passive);
        assert!(!hb.paired, "an older peer's heartbeat claims no pairing");
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
