//! Reconnects against the minimal RFC 7 broker: DISCONNECT from the broker, broker
//! silence, a broker that appears after the worker, and replies for a reset connection.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hearth_supervise::wait_until;
use hearth_worker::{Frame, WorkerConfig};

const HB: Duration = Duration::from_millis(100);

fn config(broker: &TestBroker, service: &str) -> WorkerConfig {
    let mut config = WorkerConfig::new([broker.endpoint.as_str()], service);
    config.heartbeat = HB;
    config.liveness = 3;
    config
}

#[test]
fn disconnect_from_broker_brings_a_new_ready_on_a_new_connection() {
    let broker = TestBroker::bind();
    let worker = hearth_worker::spawn(config(&broker, "echo"), hearth_worker::echo()).unwrap();
    let first = broker.expect_ready("echo");
    broker.send(&first, &[b"", b"MDPW01", &[DISCONNECT]]);
    let second = broker.expect_ready("echo");
    assert_ne!(first, second, "READY must come from a new socket");
    broker.request(&second, b"c", &[b"again"]);
    let reply = broker.recv_until("REPLY", T, |m| m.is(REPLY));
    assert_eq!(
        (reply.id, reply.frames),
        (second, reply_frames(b"c", &[b"again"]))
    );
    worker.stop().unwrap();
}

#[test]
fn silent_broker_leads_to_reconnect() {
    let mut broker = TestBroker::bind();
    broker.answer_heartbeats = false;
    let worker = hearth_worker::spawn(config(&broker, "echo"), hearth_worker::echo()).unwrap();
    let first = broker.expect_ready("echo");
    let started = Instant::now();
    let second = broker.expect_ready("echo");
    assert_ne!(first, second);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "reconnected before liveness ran out"
    );
    worker.stop().unwrap();
}

#[test]
fn worker_started_before_the_broker_registers_when_it_appears() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let mut config = WorkerConfig::new([endpoint.as_str()], "early");
    config.heartbeat = HB;
    let worker = hearth_worker::spawn(config, hearth_worker::echo()).unwrap();
    // Nothing listens for longer than the worker's liveness (300 ms), so the worker fails to
    // connect and resets its connection at least once before the broker binds.
    let absent_until = Instant::now() + Duration::from_millis(400);
    while Instant::now() < absent_until {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} taken"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let broker = TestBroker::bind_at(&endpoint);
    let id = broker.expect_ready("early");
    broker.request(&id, b"c", &[b"late"]);
    let reply = broker.recv_until("REPLY", T, |m| m.is(REPLY));
    assert_eq!(reply.frames, reply_frames(b"c", &[b"late"]));
    worker.stop().unwrap();
}

#[test]
fn reply_for_a_reset_connection_is_dropped() {
    let broker = TestBroker::bind();
    let slow = |body: Vec<Frame>| {
        std::thread::sleep(Duration::from_millis(300));
        body
    };
    let worker = hearth_worker::spawn(config(&broker, "slow"), slow).unwrap();
    let first = broker.expect_ready("slow");
    broker.request(&first, b"old", &[b"x"]);
    broker.send(&first, &[b"", b"MDPW01", &[DISCONNECT]]);
    let second = broker.expect_ready("slow");
    wait_until("the old request to finish", T, || {
        match worker.requests_handled() {
            1 => Ok(()),
            n => Err(n),
        }
    })
    .unwrap();
    broker.request(&second, b"new", &[b"y"]);
    let seen = broker.collect_until("REPLY", T, |m| m.is(REPLY));
    assert_eq!(seen.last().unwrap().frames, reply_frames(b"new", &[b"y"]));
    assert_eq!(
        seen.iter().filter(|m| m.is(REPLY)).count(),
        1,
        "stale reply sent: {seen:?}"
    );
    worker.stop().unwrap();
}
