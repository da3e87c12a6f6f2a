//! The Binary Star state machine, as a pure function.
//!
//! Two brokers, a primary and a backup, each in one of four [`State`]s, react to what they
//! hear from their peer and to client requests ([`Event`]s), after the table of the ZeroMQ
//! guide's Binary Star pattern:
//!
//! | state | event | next state | note |
//! |---|---|---|---|
//! | PRIMARY | PEER_BACKUP | ACTIVE | the backup is up: the primary serves |
//! | PRIMARY | PEER_ACTIVE | PASSIVE | the backup took over while we were away |
//! | PRIMARY | CLIENT_REQUEST | ACTIVE if the peer has expired, else refused | a primary alone serves once it has waited out the peer |
//! | BACKUP | PEER_ACTIVE | PASSIVE | |
//! | BACKUP | CLIENT_REQUEST | refused | a backup never serves alone at start-up |
//! | ACTIVE | CLIENT_REQUEST | ACTIVE, served | |
//! | ACTIVE | PEER_ACTIVE | see below | the guide aborts here |
//! | PASSIVE | PEER_PRIMARY / PEER_BACKUP | ACTIVE | the peer restarted, so it is not serving |
//! | PASSIVE | CLIENT_REQUEST | ACTIVE if the peer has expired (failover), else refused | |
//! | PASSIVE | PEER_PASSIVE | ACTIVE for the primary, PASSIVE for the backup | the guide aborts here |
//!
//! Other combinations leave the state as it is, except two brokers configured with the same
//! role, which is a [`Fault`].
//!
//! **Two actives.** Each broker counts *terms*: becoming active starts a term one above the
//! highest either broker has announced, and every heartbeat carries the sender's term. An
//! active broker that hears of an active peer with a *higher* term steps down to passive
//! (it is the stale one: typically it was frozen while its peer took over); with a lower
//! term it stays (the peer will step down); with an equal term, which needs two takeovers at
//! once on both sides of a partition, the primary stays. So two brokers that hear each other
//! settle on one active within one heartbeat, and none of this needs the process to exit.

use std::time::Instant;

/// A broker's Binary Star state: the wire type of `hearth_proto`, so heartbeats, status and
/// the state machine speak of one enum.
pub use hearth_proto::status::BStarState as State;

/// What happened: the peer's announced state (with its term), or a client request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The peer says it is a primary waiting for us.
    PeerPrimary { term: u64 },
    /// The peer says it is a backup waiting for us.
    PeerBackup { term: u64 },
    /// The peer says it is active.
    PeerActive { term: u64 },
    /// The peer says it is passive.
    PeerPassive { term: u64 },
    /// A client request arrived.
    ClientRequest,
}

impl Event {
    /// The event for a peer announcing `state` with `term`.
    pub fn from_peer(state: State, term: u64) -> Event {
        match state {
            State::Primary => Event::PeerPrimary { term },
            State::Backup => Event::PeerBackup { term },
            State::Active => Event::PeerActive { term },
            State::Passive => Event::PeerPassive { term },
        }
    }

    fn peer_term(self) -> Option<u64> {
        match self {
            Event::PeerPrimary { term }
            | Event::PeerBackup { term }
            | Event::PeerActive { term }
            | Event::PeerPassive { term } => Some(term),
            Event::ClientRequest => None,
        }
    }
}

/// Which broker of the pair this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairRole {
    /// Active by default.
    Primary,
    /// Passive by default.
    Backup,
}

/// One broker's view: its role, state, and the highest term it knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// Fixed by configuration.
    pub role: PairRole,
    /// Current state.
    pub state: State,
    /// The term of the current active period if active, else the highest term heard of.
    pub term: u64,
}

impl Node {
    /// A broker at start-up: PRIMARY or BACKUP by role, term 0.
    pub fn new(role: PairRole) -> Node {
        let state = match role {
            PairRole::Primary => State::Primary,
            PairRole::Backup => State::Backup,
        };
        Node {
            role,
            state,
            term: 0,
        }
    }
}

/// What the transition means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to do.
    Unchanged,
    /// The broker became active; on a client request, the request is served.
    Activated,
    /// The broker became passive after being primary or backup at start-up.
    BecamePassive,
    /// An active broker found a newer active peer and stepped down to passive.
    SteppedDown,
    /// A client request to serve (the broker was already active).
    Serve,
}

/// Events the broker must not act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// A client request this broker may not serve now: it is a backup that has not seen its
    /// primary, or a primary or passive whose peer has not expired.
    #[error("client request refused in state {0:?}")]
    NotServing(State),
    /// The peer has the same role: both configured as primary, or both as backup.
    #[error("peer claims the same role ({0:?}): check --role on both brokers")]
    SameRole(State),
}

/// The Binary Star transition: from `node` on `event` at `now`, with the peer considered
/// alive until `peer_expiry`.
pub fn transition(
    node: Node,
    event: Event,
    now: Instant,
    peer_expiry: Instant,
) -> Result<(Node, Verdict), Fault> {
    let peer_expired = now >= peer_expiry;
    let known = event.peer_term().map_or(node.term, |t| t.max(node.term));
    let to = |state: State, term: u64, verdict: Verdict| {
        Ok((
            Node {
                state,
                term,
                ..node
            },
            verdict,
        ))
    };
    let activate = |verdict| to(State::Active, known + 1, verdict);
    match (node.state, event) {
        (State::Primary, Event::PeerBackup { .. }) => activate(Verdict::Activated),
        (State::Primary, Event::PeerActive { term }) => {
            to(State::Passive, term.max(node.term), Verdict::BecamePassive)
        }
        (State::Primary, Event::PeerPrimary { .. }) => Err(Fault::SameRole(State::Primary)),
        (State::Primary | State::Passive, Event::ClientRequest) if peer_expired => {
            activate(Verdict::Activated)
        }
        (State::Primary | State::Passive | State::Backup, Event::ClientRequest) => {
            Err(Fault::NotServing(node.state))
        }

        (State::Backup, Event::PeerActive { term }) => {
            to(State::Passive, term.max(node.term), Verdict::BecamePassive)
        }
        (State::Backup, Event::PeerBackup { .. }) => Err(Fault::SameRole(State::Backup)),

        (State::Active, Event::ClientRequest) => to(State::Active, node.term, Verdict::Serve),
        (State::Active, Event::PeerActive { term }) => {
            let peer_wins =
                term > node.term || (term == node.term && node.role == PairRole::Backup);
            if peer_wins {
                to(State::Passive, term, Verdict::SteppedDown)
            } else {
                to(State::Active, node.term, Verdict::Unchanged)
            }
        }
        (State::Active, _) => to(State::Active, node.term, Verdict::Unchanged),

        (State::Passive, Event::PeerPrimary { .. } | Event::PeerBackup { .. }) => {
            activate(Verdict::Activated)
        }
        (State::Passive, Event::PeerPassive { .. }) if node.role == PairRole::Primary => {
            activate(Verdict::Activated)
        }

        // Everything else: stay, but remember the highest term heard of.
        (state, _) => to(state, known, Verdict::Unchanged),
    }
}

#[cfg(test)]
#[path = "bstar_tests.rs"]
mod tests;
