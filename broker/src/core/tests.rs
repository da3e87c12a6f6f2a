//! The core on a fake clock: status assembled from its parts, the status service answered
//! in every state, and the one serving decision gating replies.

use std::time::{Duration, Instant};

use hearth_proto::peer::{PeerHeartbeat, PeerMessage};
use hearth_proto::status::{BStarState, BrokerStatus, Role};
use hearth_proto::{ClientMessage, Inbound, WorkerMessage};
use prometheus::Registry;

use super::*;
use crate::bstar::PairRole;
use crate::dispatch::DispatchConfig;
use crate::pair::Pair;

const HB: Duration = Duration::from_millis(1000);

fn core(role: Role, t0: Instant) -> Core {
    let metrics = Metrics::new(&Registry::new(), hearth_proto::status::Role::Standalone).unwrap();
    let dispatcher = Dispatcher::new(DispatchConfig::default(), metrics.clone(), t0);
    let pair = match role {
        Role::Standalone => None,
        Role::Primary => Some(PairSide::new(
            Pair::new(PairRole::Primary, HB, t0, 0),
            PairRole::Primary,
            0,
            "tcp://peer:1",
        )),
        Role::Backup => Some(PairSide::new(
            Pair::new(PairRole::Backup, HB, t0, 1000),
            PairRole::Backup,
            1000,
            "tcp://peer:1",
        )),
    };
    let id = Identification {
        role,
        frontend: "tcp://test:5555".into(),
        publish: Some("tcp://0.0.0.0:5557".into()),
        started: t0,
    };
    let state = StateSide::new(
        crate::state::StateModel::new(Default::default()),
        Default::default(),
        StateStart {
            durable: false,
            feed: false,
            standing: None,
            term: 0,
            now: t0,
            wall_ms: 1_800_000_000_000,
        },
    );
    Core::new(CoreParts {
        dispatcher,
        pair,
        metrics,
        id,
        state,
        peer_heartbeat: HB,
        force_active: false,
    })
}

fn request(core: &mut Core, now: Instant, client: &str, service: &str, body: &[u8]) {
    core.frontend(
        now,
        client.as_bytes().to_vec(),
        Inbound::Client(ClientMessage {
            service: service.into(),
            body: vec![body.to_vec()],
        }),
    );
}

fn ready(core: &mut Core, now: Instant, worker: &str, service: &str) {
    core.frontend(
        now,
        worker.as_bytes().to_vec(),
        Inbound::Worker(WorkerMessage::Ready {
            service: service.into(),
        }),
    );
}

/// The beat number of the heartbeat among `out`, if one went to the peer.
fn sent_beat(out: Vec<Effect>) -> Option<u64> {
    out.into_iter().find_map(|e| match e {
        Effect::ToPeer(PeerMessage::Heartbeat(hb)) => Some(hb.beat),
        _ => None,
    })
}

fn effects(core: &mut Core, now: Instant) -> Vec<Effect> {
    let mut out = Vec::new();
    core.take_effects(now, &mut out);
    out
}

fn heartbeat(state: BStarState, term: u64, beat: u64, heard: u64) -> PeerMessage {
    PeerMessage::Heartbeat(PeerHeartbeat {
        role: Role::Backup,
        state,
        term,
        state_seq: 0,
        frontend: "tcp://peer:5555".into(),
        epoch: 9,
        beat,
        heard,
        last_term: 0,
        paired: false,
    })
}

fn status_reply(out: &[Effect]) -> BrokerStatus {
    let [Effect::ToClient { msg, .. }] = out else {
        panic!("one reply expected: {out:?}")
    };
    BrokerStatus::from_bencode(&msg.body[0]).unwrap()
}

#[test]
fn status_is_assembled_from_the_parts() {
    let t0 = Instant::now();
    let mut c = core(Role::Standalone, t0);
    ready(&mut c, t0, "W1", "echo");
    request(&mut c, t0, "C1", "queued", b"x");
    effects(&mut c, t0);
    request(&mut c, t0 + HB, "C2", "hearth.status", b"");
    let status = status_reply(&effects(&mut c, t0 + HB));
    assert_eq!(status.role, Role::Standalone);
    assert_eq!(status.state, BStarState::Active);
    assert_eq!(status.frontend, "tcp://test:5555");
    assert_eq!(status.publish.as_deref(), Some("tcp://0.0.0.0:5557"));
    assert_eq!(status.uptime_ms, 1000);
    assert_eq!(status.services.len(), 2);
    assert_eq!(status.services[0].name, "echo");
    assert_eq!(status.services[0].workers, 1);
    assert_eq!(status.services[1].queue_depth, 1);
    assert!(status.peer.is_none());
}

#[test]
fn a_waiting_primary_answers_status_but_holds_requests() {
    let t0 = Instant::now();
    let mut c = core(Role::Primary, t0);
    request(&mut c, t0, "C1", "echo", b"x");
    assert!(effects(&mut c, t0).is_empty(), "held, not answered");
    request(&mut c, t0, "C2", "hearth.status", b"");
    let status = status_reply(&effects(&mut c, t0));
    assert_eq!(status.role, Role::Primary);
    assert_eq!(status.state, BStarState::Primary);
    assert_eq!(status.held_requests, 1);
    assert_eq!(status.peer.as_ref().map(|p| p.state), Some(None));
}

#[test]
fn replies_wait_while_the_active_is_unsure_of_its_peer() {
    let t0 = Instant::now();
    let mut c = core(Role::Primary, t0);
    c.peer_message(t0, Ok(heartbeat(BStarState::Backup, 0, 1, 0)));
    assert_eq!(c.state(), BStarState::Active);
    // Our first beat goes out; once the backup acknowledges it, we serve.
    c.tick(t0);
    let beat = sent_beat(effects(&mut c, t0)).expect("a heartbeat to the peer");
    c.peer_message(t0, Ok(heartbeat(BStarState::Passive, 1, 2, beat)));
    assert!(c.serving(t0));
    ready(&mut c, t0, "W1", "echo");
    request(&mut c, t0, "C1", "echo", b"x");
    let out = effects(&mut c, t0);
    assert!(
        matches!(&out[..], [Effect::ToWorker { .. }]),
        "dispatched: {out:?}"
    );
    // The worker answers after the acknowledgement aged out: the reply is kept...
    let late = t0 + Duration::from_millis(1950);
    assert!(!c.serving(late));
    c.frontend(
        late,
        b"W1".to_vec(),
        Inbound::Worker(WorkerMessage::Reply {
            client: b"C1".to_vec(),
            body: vec![b"x".to_vec()],
        }),
    );
    assert!(effects(&mut c, late).is_empty(), "held while unsure");
    // ...until the peer's news makes us sure again.
    c.peer_message(late, Ok(heartbeat(BStarState::Passive, 1, 3, beat)));
    c.tick(late);
    let beat = sent_beat(effects(&mut c, late)).expect("a heartbeat is due");
    c.peer_message(late, Ok(heartbeat(BStarState::Passive, 1, 4, beat)));
    let out = effects(&mut c, late);
    assert!(
        out.iter()
            .any(|e| matches!(e, Effect::ToClient { client, .. } if client == b"C1")),
        "the held reply goes out: {out:?}"
    );
}

#[test]
fn an_unknown_peer_state_is_counted_and_changes_nothing() {
    let t0 = Instant::now();
    let mut c = core(Role::Backup, t0);
    let err = hearth_proto::peer::PeerDecodeError::UnknownState("emperor".into());
    c.peer_message(t0, Err(err));
    assert_eq!(c.state(), BStarState::Backup);
    assert_eq!(
        c.metrics
            .malformed
            .with_label_values(&["peer_bad_state"])
            .get(),
        1
    );
}
