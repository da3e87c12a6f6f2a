//! hearth's own worker and client libraries against the broker: round trips under load,
//! lost and slow workers, expiry, start orders and broker restarts.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hearth_client::{Client, ClientConfig};
use hearth_worker::{WorkerConfig, WorkerHandle};

const T: Duration = Duration::from_secs(10);
const HB: Duration = Duration::from_millis(100);

fn worker_config(endpoint: &str, service: &str) -> WorkerConfig {
    let mut config = WorkerConfig::new([endpoint], service);
    config.heartbeat = HB;
    config.liveness = 3;
    config
}

fn echo_worker(endpoint: &str) -> WorkerHandle {
    hearth_worker::spawn(worker_config(endpoint, "echo"), hearth_worker::echo())
        .expect("worker starts")
}

fn client(endpoint: &str, timeout: Duration) -> Client {
    let mut config = ClientConfig::new([endpoint]);
    config.timeout = timeout;
    config.attempt_timeout = timeout;
    Client::new(config).expect("client")
}

fn wait_workers(broker: &hearth_broker::BrokerHandle, service: &str, n: u64) {
    wait_for(&format!("{n} workers for {service}"), T, || {
        let services = broker.status().services;
        match services.iter().find(|s| s.name == service) {
            Some(s) if s.workers == n => Ok(()),
            _ => Err(services),
        }
    });
}

#[test]
fn echo_round_trip() {
    let broker = start_broker(|_| {});
    let worker = echo_worker(broker.frontend());
    let mut c = client(broker.frontend(), T);
    assert_eq!(
        c.call_one("echo", b"hello hearth").unwrap(),
        b"hello hearth"
    );
    let frames = c
        .call("echo", vec![b"a".to_vec(), b"".to_vec(), b"c".to_vec()])
        .unwrap();
    assert_eq!(frames, vec![b"a".to_vec(), b"".to_vec(), b"c".to_vec()]);
    worker.stop().unwrap();
}

#[test]
fn many_clients_and_workers_every_reply_checked() {
    let broker = start_broker(|_| {});
    let workers: Vec<_> = (0..4).map(|_| echo_worker(broker.frontend())).collect();
    wait_workers(&broker, "echo", 4);
    let endpoint = broker.frontend().to_owned();
    let threads: Vec<_> = (0..8)
        .map(|c| {
            let endpoint = endpoint.clone();
            std::thread::spawn(move || {
                let mut client = client(&endpoint, T);
                for i in 0..200 {
                    let body = format!("client {c} request {i} {}", "x".repeat(i % 50));
                    let reply = client.call_one("echo", body.as_bytes()).expect("reply");
                    assert_eq!(reply, body.as_bytes());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let handled: u64 = workers.iter().map(|w| w.requests_handled()).sum();
    assert_eq!(handled, 8 * 200);
    assert!(
        workers.iter().all(|w| w.requests_handled() > 0),
        "every worker took a share"
    );
    assert_eq!(
        metric(
            broker.metrics_addr().unwrap(),
            "hearth_replies_total{service=\"echo\"}"
        ),
        1600.0
    );
}

#[test]
fn request_of_a_vanished_worker_is_answered_by_another() {
    let broker = start_broker(|_| {});
    let ctx = zmq::Context::new();
    // A worker that takes a request and dies: its socket closes without a word.
    let doomed = raw(&ctx, zmq::DEALER, broker.frontend());
    send(&doomed, &[b"", b"MDPW01", b"\x01", b"echo"]);
    wait_workers(&broker, "echo", 1);
    let endpoint = broker.frontend().to_owned();
    let caller = std::thread::spawn(move || client(&endpoint, T).call_one("echo", b"survives"));
    let request = recv_until(&doomed, T, |f| is_command(f, 0x02));
    assert_eq!(request[5], b"survives");
    drop(doomed);
    let healthy = echo_worker(broker.frontend());
    assert_eq!(caller.join().unwrap().unwrap(), b"survives");
    assert_eq!(
        metric(
            broker.metrics_addr().unwrap(),
            "hearth_requeued_total{service=\"echo\"}"
        ),
        1.0
    );
    healthy.stop().unwrap();
}

#[test]
fn busy_worker_heartbeats_keep_a_slow_worker_alive() {
    let broker = start_broker(|_| {});
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    // Runs for ten times the broker's liveness window (3 × 100 ms).
    let slow = hearth_worker::spawn(
        worker_config(broker.frontend(), "slow"),
        move |body: Vec<Vec<u8>>| {
            seen.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_secs(3));
            body
        },
    )
    .unwrap();
    wait_workers(&broker, "slow", 1);
    let mut c = client(broker.frontend(), T);
    assert_eq!(c.call_one("slow", b"patience").unwrap(), b"patience");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "ran once: never dropped and requeued"
    );
    assert_eq!(
        metric(
            broker.metrics_addr().unwrap(),
            "hearth_requeued_total{service=\"slow\"}"
        ),
        0.0
    );
    slow.stop().unwrap();
}

#[test]
fn silent_worker_expires() {
    let broker = start_broker(|_| {});
    let ctx = zmq::Context::new();
    let silent = raw(&ctx, zmq::DEALER, broker.frontend());
    send(&silent, &[b"", b"MDPW01", b"\x01", b"quiet"]);
    wait_workers(&broker, "quiet", 1);
    // It never heartbeats: dropped after liveness × heartbeat, with a DISCONNECT.
    let started = Instant::now();
    recv_until(&silent, T, |f| is_command(f, 0x05));
    wait_workers(&broker, "quiet", 0);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn request_for_a_service_with_no_worker_expires() {
    let broker = start_broker(|c| c.request_expiry = Duration::from_millis(300));
    let mut c = client(broker.frontend(), Duration::from_millis(800));
    assert!(c.call_one("nobody", b"hello?").is_err());
    let series = "hearth_expired_requests_total{service=\"nobody\"}";
    wait_for(series, T, || {
        let v = metric(broker.metrics_addr().unwrap(), series);
        if v == 1.0 {
            Ok(())
        } else {
            Err(v)
        }
    });
    assert!(!c.mmi_service("nobody").unwrap());
}

#[test]
fn worker_and_client_started_before_the_broker_are_served_once_it_is_up() {
    let endpoint = format!("tcp://127.0.0.1:{}", free_port());
    let worker = echo_worker(&endpoint);
    let e = endpoint.clone();
    let caller = std::thread::spawn(move || client(&e, T).call_one("echo", b"early bird"));
    std::thread::sleep(Duration::from_millis(300)); // the scenario: the broker comes up late
    let broker = start_broker(|c| c.frontend = endpoint.clone());
    assert_eq!(caller.join().unwrap().unwrap(), b"early bird");
    worker.stop().unwrap();
    drop(broker);
}

#[test]
fn workers_re_register_after_a_broker_restart() {
    let endpoint = format!("tcp://127.0.0.1:{}", free_port());
    let broker = start_broker(|c| c.frontend = endpoint.clone());
    let worker = echo_worker(&endpoint);
    wait_workers(&broker, "echo", 1);
    broker.shutdown().unwrap();
    let broker = start_broker(|c| c.frontend = endpoint.clone());
    wait_workers(&broker, "echo", 1);
    assert_eq!(
        client(&endpoint, T).call_one("echo", b"again").unwrap(),
        b"again"
    );
    worker.stop().unwrap();
}

#[test]
fn worker_stop_sends_disconnect() {
    let broker = start_broker(|_| {});
    let worker = echo_worker(broker.frontend());
    wait_workers(&broker, "echo", 1);
    worker.stop().unwrap();
    wait_workers(&broker, "echo", 0);
}
