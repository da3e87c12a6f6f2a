//! The restart rule and the activation gate: when a broker's state model may serve.
//!
//! Binary Star alone knows nothing of data. A broker of a pair may only become active if
//! its state model cannot be behind an acknowledged write. What it durably knows is its
//! [`Standing`], written whenever it changes:
//!
//! * **alone**: it was the active and its peer was gone, so it acknowledged (or was about
//!   to acknowledge) writes by itself. It holds every acknowledged write: its peer could
//!   only have gone on alone after syncing from it first.
//! * **paired**: its peer was in sync with it (the active waits for the passive's
//!   acknowledgement of every write), or it was the passive. Its peer may have gone on
//!   acknowledging writes alone after this broker stopped.
//!
//! The rule, as [`activation`] applies it:
//!
//! | situation | may become active |
//! |---|---|
//! | active, then stopped or starved while its peer counted itself in sync, and the peer not heard since | no: the peer may have taken over meanwhile and acknowledged writes alone before dying; wait for it |
//! | already active | yes |
//! | `--force-active` | yes (the operator takes the risk of serving stale data) |
//! | the peer is heard | if this broker's data is not older than the peer's (higher term of the last change wins, then higher seq); else it catches up first |
//! | the peer fell silent after being heard this run, and it was the active | only if its last heartbeat said it counted this broker in sync (durably *paired*) and this broker has not stalled since |
//! | the peer fell silent after being heard this run, and it was not active | if this broker's data is not older than the peer's |
//! | the peer was never heard this run (restart alone), standing *alone* | yes: serve at once from the snapshot |
//! | never heard, standing *paired* | no: wait for the peer, and say so |
//! | never heard, fresh data dir (no standing yet) | yes (a new pair; see the README on replacing a disk) |
//!
//! The three death orders of the issue, each ending with one broker restarted alone:
//! * the active dies, then the passive (which took over and acknowledged alone): the
//!   passive restarts *alone* and serves; the old active restarts *paired* and waits;
//! * both die at once (a power cut, both *paired*): each waits for the other; together the
//!   newer data wins;
//! * the passive dies, the active acknowledges alone and dies, the old passive restarts
//!   first: it is *paired*, so it waits until the old active returns.

use std::cmp::Ordering;

/// What a broker durably knows of its peer (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// It acknowledged writes alone: it holds every acknowledged write.
    Alone,
    /// Its peer was in sync with it and may have gone on alone.
    Paired,
}

impl Standing {
    /// The stored form (`m/standing`).
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Standing::Alone => b"alone",
            Standing::Paired => b"paired",
        }
    }

    /// Reads the stored form.
    pub fn parse(bytes: &[u8]) -> Option<Standing> {
        match bytes {
            b"alone" => Some(Standing::Alone),
            b"paired" => Some(Standing::Paired),
            _ => None,
        }
    }
}

/// How new a broker's data is: the term of its last change, then its seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataPoint {
    /// The term of the last change.
    pub last_term: u64,
    /// The seq of the last change.
    pub seq: u64,
}

impl PartialOrd for DataPoint {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for DataPoint {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.last_term, self.seq).cmp(&(other.last_term, other.seq))
    }
}

/// What the peer last said, for the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerNews {
    /// Its data.
    pub data: DataPoint,
    /// Whether it was active.
    pub active: bool,
    /// Whether it counted this broker durably in sync (and this broker has not stalled
    /// since it said so).
    pub paired: bool,
}

/// Everything the gate looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateInput {
    /// Already active.
    pub active: bool,
    /// `--force-active` was given.
    pub force_active: bool,
    /// The standing read from the data dir at start-up (none: a fresh data dir).
    pub standing_at_start: Option<Standing>,
    /// The peer's last news this run, if it was ever heard.
    pub peer: Option<PeerNews>,
    /// Whether the peer is heard from within its expiry now.
    pub peer_alive: bool,
    /// This broker stalled (SIGSTOP, a VM pause) while its peer was in sync with it, and
    /// has not heard the peer since: the peer may have taken over meanwhile.
    pub maybe_replaced: bool,
    /// This broker's data.
    pub ours: DataPoint,
}

/// The gate's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// May become active.
    Open,
    /// The peer's data is newer: catch up from it first.
    Behind,
    /// Restarted alone and may be behind: wait for the peer (or `--force-active`).
    WaitForPeer,
    /// The active peer fell silent but had not counted this broker in sync.
    NotInSync,
    /// This broker was stopped while its in-sync peer could take over, and the peer has
    /// not been heard since.
    MaybeReplaced,
}

impl Gate {
    /// Whether the broker may become active.
    pub fn is_open(self) -> bool {
        self == Gate::Open
    }

    /// Why not, for logs and `/status`.
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Gate::Open => None,
            Gate::Behind => Some("the peer's state model is newer: catching up from it first"),
            Gate::WaitForPeer => Some(
                "restarted while its peer may have gone on acknowledging writes alone: waiting for the peer (hearth-broker --force-active overrides, at the risk of serving stale state)",
            ),
            Gate::NotInSync => Some(
                "the active peer fell silent before this broker was in sync with it: waiting for the peer (hearth-broker --force-active overrides, at the risk of losing its writes)",
            ),
            Gate::MaybeReplaced => Some(
                "this broker was stopped long enough for its peer to take over, and has not heard the peer since: waiting for the peer (hearth-broker --force-active overrides, at the risk of losing its writes)",
            ),
        }
    }
}

/// The activation gate (see the module documentation's table).
pub fn activation(input: GateInput) -> Gate {
    if input.force_active {
        return Gate::Open;
    }
    if input.maybe_replaced && !input.peer_alive {
        return Gate::MaybeReplaced;
    }
    if input.active {
        return Gate::Open;
    }
    match input.peer {
        Some(peer) if input.peer_alive || !peer.active => {
            if input.ours >= peer.data {
                Gate::Open
            } else {
                Gate::Behind
            }
        }
        Some(peer) => {
            if peer.paired {
                Gate::Open
            } else {
                Gate::NotInSync
            }
        }
        None => match input.standing_at_start {
            Some(Standing::Paired) => Gate::WaitForPeer,
            Some(Standing::Alone) | None => Gate::Open,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: DataPoint = DataPoint {
        last_term: 1,
        seq: 40,
    };
    const NEW: DataPoint = DataPoint {
        last_term: 2,
        seq: 30,
    };

    fn input() -> GateInput {
        GateInput {
            active: false,
            force_active: false,
            standing_at_start: Some(Standing::Paired),
            peer: None,
            peer_alive: false,
            maybe_replaced: false,
            ours: OLD,
        }
    }

    fn peer(data: DataPoint, active: bool, paired: bool) -> Option<PeerNews> {
        Some(PeerNews {
            data,
            active,
            paired,
        })
    }

    #[test]
    fn a_higher_term_wins_over_a_higher_seq() {
        assert!(NEW > OLD);
        assert!(
            DataPoint {
                last_term: 2,
                seq: 31
            } > NEW
        );
        assert_eq!(OLD.cmp(&OLD), Ordering::Equal);
    }

    #[test]
    fn the_table_row_by_row() {
        let rows: Vec<(&str, GateInput, Gate)> = vec![
            (
                "already active",
                GateInput {
                    active: true,
                    ..input()
                },
                Gate::Open,
            ),
            (
                "forced",
                GateInput {
                    force_active: true,
                    ..input()
                },
                Gate::Open,
            ),
            (
                "peer heard, ours newer",
                GateInput {
                    peer: peer(OLD, false, false),
                    peer_alive: true,
                    ours: NEW,
                    ..input()
                },
                Gate::Open,
            ),
            (
                "peer heard, same data",
                GateInput {
                    peer: peer(OLD, true, true),
                    peer_alive: true,
                    ..input()
                },
                Gate::Open,
            ),
            (
                "peer heard, theirs newer",
                GateInput {
                    peer: peer(NEW, false, false),
                    peer_alive: true,
                    ..input()
                },
                Gate::Behind,
            ),
            (
                "active peer fell silent, had us in sync",
                GateInput {
                    peer: peer(NEW, true, true),
                    ..input()
                },
                Gate::Open,
            ),
            (
                "active peer fell silent, had not us in sync",
                GateInput {
                    peer: peer(OLD, true, false),
                    ..input()
                },
                Gate::NotInSync,
            ),
            (
                "waiting peer fell silent, ours as new",
                GateInput {
                    peer: peer(OLD, false, false),
                    ..input()
                },
                Gate::Open,
            ),
            (
                "waiting peer fell silent, theirs newer",
                GateInput {
                    peer: peer(NEW, false, false),
                    ..input()
                },
                Gate::Behind,
            ),
            ("restart alone, paired", input(), Gate::WaitForPeer),
            (
                "restart alone, alone",
                GateInput {
                    standing_at_start: Some(Standing::Alone),
                    ..input()
                },
                Gate::Open,
            ),
            (
                "restart alone, fresh",
                GateInput {
                    standing_at_start: None,
                    ..input()
                },
                Gate::Open,
            ),
        ];
        for (name, input, want) in rows {
            assert_eq!(activation(input), want, "{name}: {input:?}");
            assert_eq!(want.is_open(), want.reason().is_none(), "{name}");
        }
    }

    #[test]
    fn standing_round_trips_and_garbage_is_none() {
        for s in [Standing::Alone, Standing::Paired] {
            assert_eq!(Standing::parse(s.as_bytes()), Some(s));
        }
        assert_eq!(Standing::parse(b"lonely"), None);
    }
}
