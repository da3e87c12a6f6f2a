//! The Binary Star table, row by row.

use std::time::{Duration, Instant};

use super::*;

fn node(role: PairRole, state: State, term: u64) -> Node {
    Node { role, state, term }
}

/// (now, peer_expiry) with the peer alive, and with the peer expired.
fn clocks() -> ((Instant, Instant), (Instant, Instant)) {
    let t0 = Instant::now();
    (
        (t0, t0 + Duration::from_secs(2)),
        (t0 + Duration::from_secs(3), t0 + Duration::from_secs(2)),
    )
}

use PairRole::{Backup as B, Primary as P};

#[test]
fn table() {
    let ((now, alive), (later, expired)) = clocks();
    type Row = (Node, Event, bool, Result<(State, u64, Verdict), Fault>);
    let rows: Vec<Row> = vec![
        // PRIMARY
        (
            node(P, State::Primary, 0),
            Event::PeerBackup { term: 0 },
            false,
            Ok((State::Active, 1, Verdict::Activated)),
        ),
        (
            node(P, State::Primary, 0),
            Event::PeerActive { term: 4 },
            false,
            Ok((State::Passive, 4, Verdict::BecamePassive)),
        ),
        (
            node(P, State::Primary, 0),
            Event::PeerPassive { term: 2 },
            false,
            Ok((State::Primary, 2, Verdict::Unchanged)),
        ),
        (
            node(P, State::Primary, 0),
            Event::PeerPrimary { term: 0 },
            false,
            Err(Fault::SameRole(State::Primary)),
        ),
        (
            node(P, State::Primary, 0),
            Event::ClientRequest,
            false,
            Err(Fault::NotServing(State::Primary)),
        ),
        (
            node(P, State::Primary, 0),
            Event::ClientRequest,
            true,
            Ok((State::Active, 1, Verdict::Activated)),
        ),
        // BACKUP
        (
            node(B, State::Backup, 0),
            Event::PeerActive { term: 1 },
            false,
            Ok((State::Passive, 1, Verdict::BecamePassive)),
        ),
        (
            node(B, State::Backup, 0),
            Event::PeerPrimary { term: 0 },
            false,
            Ok((State::Backup, 0, Verdict::Unchanged)),
        ),
        (
            node(B, State::Backup, 0),
            Event::PeerPassive { term: 3 },
            false,
            Ok((State::Backup, 3, Verdict::Unchanged)),
        ),
        (
            node(B, State::Backup, 0),
            Event::PeerBackup { term: 0 },
            false,
            Err(Fault::SameRole(State::Backup)),
        ),
        (
            node(B, State::Backup, 0),
            Event::ClientRequest,
            false,
            Err(Fault::NotServing(State::Backup)),
        ),
        (
            node(B, State::Backup, 0),
            Event::ClientRequest,
            true,
            Err(Fault::NotServing(State::Backup)),
        ),
        // ACTIVE
        (
            node(P, State::Active, 1),
            Event::ClientRequest,
            false,
            Ok((State::Active, 1, Verdict::Serve)),
        ),
        (
            node(P, State::Active, 1),
            Event::ClientRequest,
            true,
            Ok((State::Active, 1, Verdict::Serve)),
        ),
        (
            node(P, State::Active, 1),
            Event::PeerPassive { term: 1 },
            false,
            Ok((State::Active, 1, Verdict::Unchanged)),
        ),
        (
            node(P, State::Active, 1),
            Event::PeerBackup { term: 0 },
            false,
            Ok((State::Active, 1, Verdict::Unchanged)),
        ),
        (
            node(B, State::Active, 2),
            Event::PeerPrimary { term: 0 },
            false,
            Ok((State::Active, 2, Verdict::Unchanged)),
        ),
        // ACTIVE meets ACTIVE: the newer term wins; on a tie the primary stays.
        (
            node(P, State::Active, 1),
            Event::PeerActive { term: 2 },
            false,
            Ok((State::Passive, 2, Verdict::SteppedDown)),
        ),
        (
            node(B, State::Active, 2),
            Event::PeerActive { term: 1 },
            false,
            Ok((State::Active, 2, Verdict::Unchanged)),
        ),
        (
            node(P, State::Active, 3),
            Event::PeerActive { term: 3 },
            false,
            Ok((State::Active, 3, Verdict::Unchanged)),
        ),
        (
            node(B, State::Active, 3),
            Event::PeerActive { term: 3 },
            false,
            Ok((State::Passive, 3, Verdict::SteppedDown)),
        ),
        // PASSIVE
        (
            node(B, State::Passive, 1),
            Event::PeerPrimary { term: 0 },
            false,
            Ok((State::Active, 2, Verdict::Activated)),
        ),
        (
            node(P, State::Passive, 2),
            Event::PeerBackup { term: 0 },
            false,
            Ok((State::Active, 3, Verdict::Activated)),
        ),
        (
            node(B, State::Passive, 1),
            Event::PeerActive { term: 1 },
            false,
            Ok((State::Passive, 1, Verdict::Unchanged)),
        ),
        (
            node(B, State::Passive, 1),
            Event::ClientRequest,
            false,
            Err(Fault::NotServing(State::Passive)),
        ),
        (
            node(B, State::Passive, 1),
            Event::ClientRequest,
            true,
            Ok((State::Active, 2, Verdict::Activated)),
        ),
        (
            node(P, State::Passive, 2),
            Event::PeerPassive { term: 2 },
            false,
            Ok((State::Active, 3, Verdict::Activated)),
        ),
        (
            node(B, State::Passive, 2),
            Event::PeerPassive { term: 2 },
            false,
            Ok((State::Passive, 2, Verdict::Unchanged)),
        ),
    ];
    for (from, event, peer_expired, expected) in rows {
        let (t, expiry) = if peer_expired {
            (later, expired)
        } else {
            (now, alive)
        };
        let got = transition(from, event, t, expiry).map(|(n, v)| (n.state, n.term, v));
        assert_eq!(
            got, expected,
            "{from:?} on {event:?} (peer expired: {peer_expired})"
        );
        if let Ok((n, _)) = transition(from, event, t, expiry) {
            assert_eq!(n.role, from.role, "the role never changes");
        }
    }
}

#[test]
fn new_nodes_start_by_role() {
    assert_eq!(Node::new(P).state, State::Primary);
    assert_eq!(Node::new(B).state, State::Backup);
}
