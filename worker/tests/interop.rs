//! hearth's worker library against a minimal RFC 7 broker written here: exact frames,
//! heartbeats (also while busy), one request at a time, stop, malformed input, handler
//! panics, concurrency, a broker pair. Reconnects are in `reconnect.rs`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hearth_worker::{Frame, WorkerConfig};

const HB: Duration = Duration::from_millis(100);

fn config(broker: &TestBroker, service: &str) -> WorkerConfig {
    let mut config = WorkerConfig::new([broker.endpoint.as_str()], service);
    config.heartbeat = HB;
    config.liveness = 3;
    config
}

/// A handler that sleeps `pause`, recording how many run at once (peak in `peak`).
fn tracking(
    pause: Duration,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
) -> impl Fn(Vec<Frame>) -> Vec<Frame> + Send + Sync {
    move |body| {
        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(pause);
        running.fetch_sub(1, Ordering::SeqCst);
        body
    }
}

#[test]
fn ready_frames_are_exact() {
    let broker = TestBroker::bind();
    let worker = hearth_worker::spawn(config(&broker, "echo"), hearth_worker::echo()).unwrap();
    let msg = broker.recv_until("first message", T, |_| true);
    assert_eq!(
        msg.frames,
        vec![
            b"".to_vec(),
            b"MDPW01".to_vec(),
            vec![0x01],
            b"echo".to_vec()
        ]
    );
    worker.stop().unwrap();
}

#[test]
fn request_reply_frames_are_exact_with_multi_frame_bodies() {
    let broker = TestBroker::bind();
    let worker = hearth_worker::spawn(config(&broker, "echo"), hearth_worker::echo()).unwrap();
    let id = broker.expect_ready("echo");
    broker.request(&id, b"client-1", &[b"a", b"", b"c"]);
    let reply = broker.recv_until("REPLY", T, |m| m.is(REPLY));
    assert_eq!(reply.id, id);
    assert_eq!(reply.frames, reply_frames(b"client-1", &[b"a", b"", b"c"]));
    broker.request(&id, b"\x00\xffbinary-client", &[b"one"]);
    let reply = broker.recv_until("REPLY", T, |m| m.is(REPLY));
    assert_eq!(
        reply.frames,
        reply_frames(b"\x00\xffbinary-client", &[b"one"])
    );
    assert_eq!(worker.requests_handled(), 2);
    worker.stop().unwrap();
}

#[test]
fn heartbeats_arrive_exact() {
    let broker = TestBroker::bind();
    let worker = hearth_worker::spawn(config(&broker, "echo"), hearth_worker::echo()).unwrap();
    let id = broker.expect_ready("echo");
    for _ in 0..3 {
        let hb = broker.recv_until("HEARTBEAT", T, |m| m.is(HEARTBEAT));
        assert_eq!(hb.id, id);
        assert_eq!(hb.frames, frames(&[b"", b"MDPW01", &[HEARTBEAT]]));
    }
    worker.stop().unwrap();
}

#[test]
fn busy_worker_keeps_heartbeating() {
    let broker = TestBroker::bind();
    let slow = |body: Vec<Frame>| {
        std::thread::sleep(Duration::from_millis(700));
        body
    };
    let worker = hearth_worker::spawn(config(&broker, "slow"), slow).unwrap();
    let id = broker.expect_ready("slow");
    broker.request(&id, b"c", &[b"patience"]);
    let seen = broker.collect_until("REPLY", T, |m| m.is(REPLY));
    let beats = seen
        .iter()
        .filter(|m| m.is(HEARTBEAT) && m.id == id)
        .count();
    assert!(
        beats >= 3,
        "only {beats} heartbeats in 700 ms of work: {seen:?}"
    );
    assert!(
        !seen.iter().any(|m| m.is(READY)),
        "worker reconnected while busy: {seen:?}"
    );
    assert_eq!(
        seen.last().unwrap().frames,
        reply_frames(b"c", &[b"patience"])
    );
    worker.stop().unwrap();
}

#[test]
fn back_to_back_requests_run_one_at_a_time() {
    let broker = TestBroker::bind();
    let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let handler = tracking(Duration::from_millis(150), running, peak.clone());
    let worker = hearth_worker::spawn(config(&broker, "one"), handler).unwrap();
    let id = broker.expect_ready("one");
    broker.request(&id, b"c1", &[b"first"]);
    broker.request(&id, b"c2", &[b"second"]);
    let r1 = broker.recv_until("first REPLY", T, |m| m.is(REPLY));
    let r2 = broker.recv_until("second REPLY", T, |m| m.is(REPLY));
    assert_eq!(r1.frames, reply_frames(b"c1", &[b"first"]));
    assert_eq!(r2.frames, reply_frames(b"c2", &[b"second"]));
    assert_eq!(peak.load(Ordering::SeqCst), 1, "two requests ran at once");
    assert_eq!(worker.requests_handled(), 2);
    worker.stop().unwrap();
}

#[test]
fn stop_sends_disconnect_promptly() {
    let broker = TestBroker::bind();
    let worker = hearth_worker::spawn(config(&broker, "echo"), hearth_worker::echo()).unwrap();
    let id = broker.expect_ready("echo");
    let started = Instant::now();
    worker.stop().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "stop took {:?}",
        started.elapsed()
    );
    let bye = broker.recv_until("DISCONNECT", T, |m| m.is(DISCONNECT));
    assert_eq!(
        (bye.id, bye.frames),
        (id, frames(&[b"", b"MDPW01", &[DISCONNECT]]))
    );
}

#[test]
fn dropping_the_handle_stops_the_worker() {
    let broker = TestBroker::bind();
    let worker = hearth_worker::spawn(config(&broker, "echo"), hearth_worker::echo()).unwrap();
    let id = broker.expect_ready("echo");
    drop(worker);
    let bye = broker.recv_until("DISCONNECT", T, |m| m.is(DISCONNECT));
    assert_eq!(bye.id, id);
}

#[test]
fn stop_does_not_wait_for_a_slow_handler() {
    let broker = TestBroker::bind();
    let slow = |body: Vec<Frame>| {
        std::thread::sleep(Duration::from_secs(3));
        body
    };
    let worker = hearth_worker::spawn(config(&broker, "slow"), slow).unwrap();
    let id = broker.expect_ready("slow");
    broker.request(&id, b"c", &[b"x"]);
    broker.recv_until("a HEARTBEAT after the request", T, |m| m.is(HEARTBEAT));
    let started = Instant::now();
    worker.stop().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "stop took {:?}",
        started.elapsed()
    );
    broker.recv_until("DISCONNECT", T, |m| m.is(DISCONNECT));
}

#[test]
fn malformed_messages_from_the_broker_are_survived() {
    let broker = TestBroker::bind();
    let worker = hearth_worker::spawn(config(&broker, "echo"), hearth_worker::echo()).unwrap();
    let id = broker.expect_ready("echo");
    let junk: Vec<Vec<&[u8]>> = vec![
        vec![b"junk"],
        vec![b""],
        vec![b"", b"MDPW01"],
        vec![b"", b"MDPW02", &[REQUEST], b"c", b"", b"x"],
        vec![b"", b"MDPW01", &[0x09]],
        vec![b"", b"MDPW01", &[REQUEST, REQUEST]],
        vec![b"", b"MDPW01", &[READY], b"echo"],
        vec![b"", b"MDPW01", &[REPLY], b"c", b"", b"x"],
        vec![b"", b"MDPW01", &[REQUEST], b"c", b""],
        vec![b"", b"MDPW01", &[REQUEST], b"c", b"not-empty", b"x"],
        vec![b"", b"MDPW01", &[REQUEST], b""],
        vec![b"", b"MDPW01", &[HEARTBEAT], b"extra"],
        vec![b"", b"MDPC01", b"echo", b"x"],
    ];
    for parts in &junk {
        broker.send(&id, parts);
    }
    let too_many: Vec<&[u8]> = std::iter::repeat_n(&b"f"[..], 100).collect();
    broker.request(&id, b"c", &too_many);
    broker.request(&id, b"c", &[b"still here"]);
    let seen = broker.collect_until("REPLY", T, |m| m.is(REPLY));
    assert_eq!(
        seen.last().unwrap().frames,
        reply_frames(b"c", &[b"still here"])
    );
    assert!(
        seen.iter().all(|m| m.id == id && !m.is(READY)),
        "worker reconnected: {seen:?}"
    );
    assert_eq!(worker.requests_handled(), 1);
    worker.stop().unwrap();
}

#[test]
fn handler_panic_answers_an_error_and_the_unit_lives_on() {
    let broker = TestBroker::bind();
    let handler = |body: Vec<Frame>| {
        if body[0] == b"boom" {
            panic!("handler blew up (expected by this test)");
        }
        body
    };
    let worker = hearth_worker::spawn(config(&broker, "fragile"), handler).unwrap();
    let id = broker.expect_ready("fragile");
    broker.request(&id, b"c1", &[b"boom"]);
    let reply = broker.recv_until("error REPLY", T, |m| m.is(REPLY));
    assert_eq!(
        reply.frames,
        reply_frames(b"c1", &[b"d5:error16:handler panickede"])
    );
    broker.request(&id, b"c2", &[b"fine"]);
    let reply = broker.recv_until("REPLY", T, |m| m.is(REPLY));
    assert_eq!(reply.frames, reply_frames(b"c2", &[b"fine"]));
    worker.stop().unwrap();
}

#[test]
fn concurrency_two_registers_twice_and_runs_in_parallel() {
    let broker = TestBroker::bind();
    let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (r, p) = (running.clone(), peak.clone());
    // Each run waits (bounded) until the other is running too.
    let handler = move |body: Vec<Frame>| {
        let now = r.fetch_add(1, Ordering::SeqCst) + 1;
        p.fetch_max(now, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(2);
        while p.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        r.fetch_sub(1, Ordering::SeqCst);
        body
    };
    let mut cfg = config(&broker, "par");
    cfg.concurrency = 2;
    let worker = hearth_worker::spawn(cfg, handler).unwrap();
    let a = broker.expect_ready("par");
    let b = broker.expect_ready("par");
    assert_ne!(a, b);
    broker.request(&a, b"ca", &[b"1"]);
    broker.request(&b, b"cb", &[b"2"]);
    let mut replies = [
        broker.recv_until("REPLY", T, |m| m.is(REPLY)),
        broker.recv_until("REPLY", T, |m| m.is(REPLY)),
    ];
    replies.sort_by(|x, y| x.frames.cmp(&y.frames));
    assert_eq!(replies[0].frames, reply_frames(b"ca", &[b"1"]));
    assert_eq!(replies[1].frames, reply_frames(b"cb", &[b"2"]));
    assert_eq!(
        peak.load(Ordering::SeqCst),
        2,
        "the two units did not overlap"
    );
    worker.stop().unwrap();
}

#[test]
fn serve_fn_answers_with_one_frame() {
    let broker = TestBroker::bind();
    let worker =
        hearth_worker::serve_fn(config(&broker, "upper"), |b| b.to_ascii_uppercase()).unwrap();
    let id = broker.expect_ready("upper");
    broker.request(&id, b"c", &[b"shout", b"ignored"]);
    let reply = broker.recv_until("REPLY", T, |m| m.is(REPLY));
    assert_eq!(reply.frames, reply_frames(b"c", &[b"SHOUT"]));
    worker.stop().unwrap();
}

#[test]
fn worker_registers_with_every_broker_of_a_pair() {
    let (a, b) = (TestBroker::bind(), TestBroker::bind());
    let mut cfg = config(&a, "pair");
    cfg.brokers.push(b.endpoint.clone());
    let worker = hearth_worker::spawn(cfg, hearth_worker::echo()).unwrap();
    let ida = a.expect_ready("pair");
    let idb = b.expect_ready("pair");
    b.request(&idb, b"c", &[b"via b"]);
    let reply = b.recv_until("REPLY", T, |m| m.is(REPLY));
    assert_eq!(reply.frames, reply_frames(b"c", &[b"via b"]));
    a.request(&ida, b"c", &[b"via a"]);
    let reply = a.recv_until("REPLY", T, |m| m.is(REPLY));
    assert_eq!(reply.frames, reply_frames(b"c", &[b"via a"]));
    worker.stop().unwrap();
    a.recv_until("DISCONNECT on a", T, |m| m.is(DISCONNECT));
    b.recv_until("DISCONNECT on b", T, |m| m.is(DISCONNECT));
}

#[test]
fn bad_configs_and_endpoints_fail_spawn() {
    let mut cfg = WorkerConfig::new(["tcp://127.0.0.1:1"], "mmi.service");
    assert!(hearth_worker::spawn(cfg.clone(), hearth_worker::echo()).is_err());
    cfg.service = "ok".into();
    cfg.brokers = vec!["not an endpoint".into()];
    assert!(hearth_worker::spawn(cfg, hearth_worker::echo()).is_err());
}
