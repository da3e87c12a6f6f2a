//! A primary and a backup in one process, on free ports: roles settle, only the active
//! serves, the passive takes over when the active goes away.

mod common;

use std::time::Duration;

use common::*;
use hearth_broker::{BrokerConfig, BrokerHandle, Role};
use hearth_proto::status::BStarState;

const T: Duration = Duration::from_secs(10);

fn pair_config(role: Role, own_peer: u16, other_peer: u16) -> impl FnOnce(&mut BrokerConfig) {
    move |c| {
        c.role = role;
        c.peer_bind = Some(format!("tcp://127.0.0.1:{own_peer}"));
        c.peer_connect = Some(format!("tcp://127.0.0.1:{other_peer}"));
        c.peer_heartbeat = Duration::from_millis(100);
    }
}

fn wait_state(broker: &BrokerHandle, state: &str) {
    wait_for(&format!("state {state}"), T, || {
        let status = broker.status();
        if status.state.as_str() == state {
            Ok(())
        } else {
            Err(status.state)
        }
    });
}

/// Waits until `broker` shows one registered worker.
fn wait_worker(broker: &BrokerHandle) {
    wait_for("worker registered", T, || {
        let s = broker.status();
        if s.services.first().is_some_and(|s| s.workers == 1) {
            Ok(())
        } else {
            Err(s.services)
        }
    });
}

/// Sends one request on a fresh REQ socket; the reply body, or None within `timeout`.
fn call(ctx: &zmq::Context, endpoint: &str, body: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let client = raw(ctx, zmq::REQ, endpoint);
    send(&client, &[b"MDPC01", b"echo", body]);
    recv(&client, timeout).map(|mut f| f.remove(2))
}

/// A raw echo worker registered with `endpoint`, answering on its own thread until `stop`.
fn echo_worker(
    endpoint: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let ctx = zmq::Context::new();
        let w = raw(&ctx, zmq::DEALER, &endpoint);
        send(&w, &[b"", b"MDPW01", b"\x01", b"echo"]);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Some(f) = recv(&w, Duration::from_millis(50)) {
                if is_command(&f, 0x02) {
                    send(&w, &[b"", b"MDPW01", b"\x03", &f[3], b"", &f[5]]);
                } else if is_command(&f, 0x04) {
                    send(&w, &[b"", b"MDPW01", b"\x04"]);
                }
            }
        }
    })
}

#[test]
fn pair_settles_serves_from_the_active_and_fails_over() {
    let (pp, bp) = (free_port(), free_port());
    let primary = start_broker(pair_config(Role::Primary, pp, bp));
    let backup = start_broker(pair_config(Role::Backup, bp, pp));
    wait_state(&primary, "active");
    wait_state(&backup, "passive");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers = [
        echo_worker(primary.frontend().to_owned(), stop.clone()),
        echo_worker(backup.frontend().to_owned(), stop.clone()),
    ];
    for b in [&primary, &backup] {
        wait_worker(b);
    }
    let ctx = zmq::Context::new();
    assert_eq!(
        call(&ctx, primary.frontend(), b"one", T).as_deref(),
        Some(&b"one"[..])
    );
    // The passive holds the request until the peer's next heartbeat proves it alive, then
    // drops it: no answer.
    assert_eq!(
        call(&ctx, backup.frontend(), b"two", Duration::from_millis(600)),
        None
    );
    let status = backup.status();
    assert!(status.peer_alive);
    assert_eq!(
        status.peer.as_ref().and_then(|p| p.state),
        Some(BStarState::Active)
    );

    let backup_frontend = backup.frontend().to_owned();
    primary.shutdown().unwrap();
    // The next request to the backup makes it take over and is answered.
    let reply = call(&ctx, &backup_frontend, b"three", T);
    assert_eq!(reply.as_deref(), Some(&b"three"[..]));
    wait_state(&backup, "active");
    assert_eq!(backup.status().failovers, 1);

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
}

#[test]
fn lone_backup_never_serves_and_lone_primary_serves_after_expiry() {
    let (pp, bp) = (free_port(), free_port());
    let backup = start_broker(pair_config(Role::Backup, bp, pp));
    let ctx = zmq::Context::new();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let worker = echo_worker(backup.frontend().to_owned(), stop.clone());
    assert_eq!(
        call(&ctx, backup.frontend(), b"x", Duration::from_millis(800)),
        None
    );
    assert_eq!(backup.status().state, BStarState::Backup);
    drop(backup);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    worker.join().unwrap();

    let primary = start_broker(pair_config(Role::Primary, pp, bp));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let worker = echo_worker(primary.frontend().to_owned(), stop.clone());
    // Held until the (absent) peer expires, two peer heartbeats, then served.
    assert_eq!(
        call(&ctx, primary.frontend(), b"y", T).as_deref(),
        Some(&b"y"[..])
    );
    // The status board is published at most every 100 ms: it says so shortly after.
    wait_state(&primary, "active");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    worker.join().unwrap();
}

#[test]
fn garbage_on_the_peer_link_is_counted_and_dropped_and_the_pair_carries_on() {
    use hearth_proto::peer::{PeerHeartbeat, PeerMessage};

    let (pp, bp) = (free_port(), free_port());
    let primary = start_broker(pair_config(Role::Primary, pp, bp));
    let backup = start_broker(pair_config(Role::Backup, bp, pp));
    wait_state(&primary, "active");
    wait_state(&backup, "passive");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let worker = echo_worker(primary.frontend().to_owned(), stop.clone());
    let http = primary.metrics_addr().expect("metrics address");

    // A stranger's PUSH on the primary's peer port: every malformed shape, and a well-formed
    // heartbeat that claims a state no broker has.
    let ctx = zmq::Context::new();
    let stranger = ctx.socket(zmq::PUSH).expect("socket");
    stranger.set_linger(0).expect("linger");
    stranger
        .connect(&format!("tcp://127.0.0.1:{pp}"))
        .expect("connect");
    let good = PeerMessage::Heartbeat(PeerHeartbeat {
        role: Role::Backup,
        state: BStarState::Active,
        term: 99,
        state_seq: 0,
        frontend: "tcp://127.0.0.1:1".into(),
        epoch: 1,
        beat: 1,
        heard: 0,
        last_term: 0,
        paired: false,
    })
    .encode();
    // A well-formed heartbeat from a broker that claims a state hearth does not know.
    let bogus = vec![
        good[0].clone(),
        good[1].clone(),
        b"d4:beati1e5:epochi1e8:frontend17:tcp://127.0.0.1:15:heardi0e4:role6:backup5:state7:emperor9:state_seqi0e4:termi99ee".to_vec(),
    ];
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("peer_wrong_header", vec![b"HTTP/1.1".to_vec()]),
        (
            "peer_unknown_kind",
            vec![good[0].clone(), b"HELLO".to_vec(), good[2].clone()],
        ),
        (
            "peer_bad_body",
            vec![good[0].clone(), good[1].clone(), b"d3:foo".to_vec()],
        ),
        (
            "peer_trailing_frames",
            [&good[..], &[b"extra".to_vec()][..]].concat(),
        ),
        ("peer_bad_state", bogus),
    ];
    for (reason, frames) in &cases {
        stranger
            .send_multipart(frames.iter(), 0)
            .expect("send garbage");
        let series = format!("hearth_malformed_messages_total{{reason=\"{reason}\"}}");
        wait_for(&series, T, || {
            let v = metric(http, &series);
            if v >= 1.0 {
                Ok(())
            } else {
                Err(v)
            }
        });
    }
    // Nothing of it moved either broker: the primary still serves, the backup stays passive.
    wait_worker(&primary);
    assert_eq!(
        call(&ctx, primary.frontend(), b"still here", T).as_deref(),
        Some(&b"still here"[..])
    );
    assert_eq!(primary.status().state, BStarState::Active);
    assert_eq!(primary.status().term, 1);
    assert_eq!(backup.status().state, BStarState::Passive);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    worker.join().unwrap();
}
