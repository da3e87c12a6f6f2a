//! The broker's status record.
//!
//! One type, two encodings: Bencode as the reply of the built-in `hearth.status` service (so a
//! client that only knows the broker's ZeroMQ endpoint can read it), and JSON at the HTTP
//! `/status` endpoint. Fields added later carry `#[serde(default)]` so that old and new
//! brokers and clients keep understanding each other.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A broker's configured role.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A single broker with no peer: always active.
    #[default]
    Standalone,
    /// The pair's primary: active by default.
    Primary,
    /// The pair's backup: passive until the primary fails.
    Backup,
}

/// A broker's Binary Star state (a standalone broker is always `Active`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BStarState {
    /// Primary at start-up, waiting to hear its peer.
    Primary,
    /// Backup at start-up, waiting to hear its peer.
    Backup,
    /// Serving clients.
    #[default]
    Active,
    /// Standing by: keeps its workers, serves no client request.
    Passive,
}

/// A name that is not one of an enum's lower-case names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {name:?} (expected one of: {expected})")]
pub struct UnknownName {
    what: &'static str,
    name: String,
    expected: &'static str,
}

macro_rules! lower_case_names {
    ($ty:ident, $what:literal, $($variant:ident => $name:literal),+) => {
        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The lower-case name used on the wire, in status and in metrics.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = UnknownName;

            fn from_str(name: &str) -> Result<$ty, UnknownName> {
                match name {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(UnknownName {
                        what: $what,
                        name: name.to_owned(),
                        expected: concat!($($name, " "),+),
                    }),
                }
            }
        }
    };
}

lower_case_names!(Role, "role", Standalone => "standalone", Primary => "primary", Backup => "backup");
lower_case_names!(BStarState, "Binary Star state", Primary => "primary", Backup => "backup", Active => "active", Passive => "passive");

/// What a broker says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerStatus {
    /// Configured role.
    pub role: Role,
    /// Current state: `active` for a standalone broker; `primary`, `backup`, `active` or
    /// `passive` for one of a pair.
    pub state: BStarState,
    /// Whether the pair's peer has been heard from within its expiry (false when standalone).
    pub peer_alive: bool,
    /// The state model's sequence number (0 until the state model exists).
    pub state_seq: u64,
    /// The frontend endpoint the broker bound, as configured.
    pub frontend: String,
    /// Milliseconds since the broker started.
    pub uptime_ms: u64,
    /// Every service with a worker or a waiting request, by name.
    pub services: Vec<ServiceStatus>,
    /// The Binary Star term (0 when standalone).
    #[serde(default)]
    pub term: u64,
    /// The pair's peer as this broker sees it (absent when standalone).
    #[serde(default)]
    pub peer: Option<PeerStatus>,
    /// Client requests held until the peer's news decides (see the broker's pair driver).
    #[serde(default)]
    pub held_requests: u64,
    /// Times this broker took over from its peer.
    #[serde(default)]
    pub failovers: u64,
    /// The change feed's PUB endpoint as bound (a wildcard host such as `0.0.0.0` means
    /// "the host you reached this broker on"), if the broker publishes one.
    #[serde(default)]
    pub publish: Option<String>,
    /// Keys in the state model.
    #[serde(default)]
    pub state_keys: u64,
    /// How many changes the passive's state model is behind the active's, as this broker
    /// last saw it (0 when standalone or in sync).
    #[serde(default)]
    pub state_lag: u64,
    /// Why this broker may not become active now, if it may not: its state model may be
    /// behind its peer's (the restart rule). Absent when it may.
    #[serde(default)]
    pub waiting_for_peer: Option<String>,
    /// Whether the pair counts the two state models in sync (*paired*): the active counts
    /// its passive in sync, or the passive heard so in the active's last heartbeat. A
    /// passive takes over from a silent active only then (the restart rule). False when
    /// standalone.
    #[serde(default)]
    pub paired: bool,
}

/// The Binary Star peer as one broker sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The endpoint this broker connects to (`--peer-connect`).
    pub endpoint: String,
    /// The state the peer last announced (absent if never heard).
    pub state: Option<BStarState>,
    /// Milliseconds since the peer was last heard (absent if never).
    pub last_heard_ms: Option<u64>,
    /// Whether the peer counts as alive.
    pub alive: bool,
}

/// One service as the broker sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// The service name.
    pub name: String,
    /// Registered workers (idle and busy).
    pub workers: u64,
    /// Workers waiting for a request.
    pub idle_workers: u64,
    /// Requests waiting for a worker.
    pub queue_depth: u64,
}

impl BrokerStatus {
    /// The Bencode form, as the `hearth.status` service replies.
    pub fn to_bencode(&self) -> Vec<u8> {
        // Serialising plain strings, integers and lists cannot fail; an empty body would be
        // answered as an invalid status by the reader, never silently misread.
        bendy::serde::to_bytes(self).unwrap_or_default()
    }

    /// Reads the Bencode form.
    pub fn from_bencode(bytes: &[u8]) -> Result<BrokerStatus, bendy::serde::Error> {
        bendy::serde::from_bytes(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bencode_round_trip() {
        let status = BrokerStatus {
            role: Role::Standalone,
            state: BStarState::Active,
            peer_alive: false,
            state_seq: 7,
            frontend: "tcp://127.0.0.1:5555".into(),
            uptime_ms: 1234,
            services: vec![ServiceStatus {
                name: "echo".into(),
                workers: 2,
                idle_workers: 1,
                queue_depth: 3,
            }],
            term: 2,
            peer: Some(PeerStatus {
                endpoint: "tcp://127.0.0.1:5556".into(),
                state: Some(BStarState::Passive),
                last_heard_ms: Some(300),
                alive: true,
            }),
            held_requests: 1,
            failovers: 1,
            publish: Some("tcp://0.0.0.0:5557".into()),
            state_keys: 4,
            state_lag: 2,
            waiting_for_peer: Some("restarted while its peer may have gone on".into()),
            paired: true,
        };
        let bytes = status.to_bencode();
        assert!(bytes.starts_with(b"d"));
        assert_eq!(BrokerStatus::from_bencode(&bytes).unwrap(), status);
    }

    #[test]
    fn older_records_without_pair_fields_still_decode() {
        let old = b"d8:frontend3:tcp10:peer_alivei0e4:role10:standalone8:servicesle5:state6:active9:state_seqi0e9:uptime_msi5ee";
        let status = BrokerStatus::from_bencode(old).unwrap();
        assert_eq!(status.role, Role::Standalone);
        assert_eq!(status.peer, None);
    }

    #[test]
    fn names_round_trip_and_unknown_ones_are_refused() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(*role));
        }
        for state in BStarState::ALL {
            assert_eq!(state.to_string().parse::<BStarState>(), Ok(*state));
        }
        let err = "leader".parse::<BStarState>().unwrap_err();
        assert!(err.to_string().contains("leader"), "{err}");
        assert!("Primary".parse::<Role>().is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(BrokerStatus::from_bencode(b"not bencode").is_err());
        assert!(BrokerStatus::from_bencode(b"").is_err());
    }
}
