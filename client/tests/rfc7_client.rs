//! Interop: `hearth_client` speaks exact RFC 7 to any broker — here a raw ROUTER written in
//! the test — and retries, times out and skips bad replies as documented.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{echo_answer, mdp, sample_status, TestBroker};
use hearth_client::{Client, ClientConfig, ClientError};

fn config(brokers: &[&TestBroker], timeout_ms: u64, attempt_ms: u64) -> ClientConfig {
    let mut config = ClientConfig::new(brokers.iter().map(|b| b.endpoint.clone()));
    config.timeout = Duration::from_millis(timeout_ms);
    config.attempt_timeout = Duration::from_millis(attempt_ms);
    config
}

#[test]
fn request_and_reply_frames_are_exact_rfc7() {
    let broker = TestBroker::echo();
    let mut client = Client::new(config(&[&broker], 3000, 3000)).unwrap();
    let reply = client
        .call("echo", vec![b"one".to_vec(), Vec::new(), b"three".to_vec()])
        .unwrap();
    assert_eq!(reply, vec![b"one".to_vec(), Vec::new(), b"three".to_vec()]);
    let seen = broker.next_received(Duration::from_secs(1)).unwrap();
    assert_eq!(seen, mdp("echo", &[b"one", b"", b"three"]));
    assert_eq!(client.call_one("echo", b"hello").unwrap(), b"hello");
}

#[test]
fn call_one_joins_multi_frame_replies() {
    let broker = TestBroker::start(|id, _| vec![(id.clone(), mdp("split", &[b"ab", b"cd"]))]);
    let mut client = Client::new(config(&[&broker], 3000, 3000)).unwrap();
    assert_eq!(client.call_one("split", b"x").unwrap(), b"abcd");
}

#[test]
fn timeout_when_the_broker_never_answers() {
    let broker = TestBroker::silent();
    let mut client = Client::new(config(&[&broker], 700, 250)).unwrap();
    let started = Instant::now();
    let err = client.call("echo", vec![b"x".to_vec()]).unwrap_err();
    let elapsed = started.elapsed();
    match err {
        ClientError::Timeout { service, after } => {
            assert_eq!(service, "echo");
            assert!(after >= Duration::from_millis(700), "{after:?}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(elapsed >= Duration::from_millis(700), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
    // 250 + 250 + 200 ms: three attempts, each on a fresh socket (a new routing id).
    let mut ids: Vec<_> = broker
        .drain_received()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids.len(), 3, "attempts seen by the broker");
    ids.dedup();
    assert_eq!(ids.len(), 3, "each attempt uses a fresh socket");
}

#[test]
fn retry_goes_to_the_next_broker() {
    let silent = TestBroker::silent();
    let answering = TestBroker::echo();
    let mut client = Client::new(config(&[&silent, &answering], 3000, 300)).unwrap();
    assert_eq!(client.current_broker(), silent.endpoint);
    let started = Instant::now();
    assert_eq!(client.call_one("echo", b"failover").unwrap(), b"failover");
    assert_eq!(client.current_broker(), answering.endpoint);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        silent.next_received(Duration::from_secs(1)),
        Some(mdp("echo", &[b"failover"]))
    );
    // The client stays with the broker that answered.
    let started = Instant::now();
    assert_eq!(client.call_one("echo", b"again").unwrap(), b"again");
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[test]
fn a_late_reply_is_never_returned_for_the_next_call() {
    // The broker ignores the first attempt; when the retry comes (on a new socket) it first
    // answers the *first* attempt's socket, late, then answers the retry. The late reply
    // must go nowhere: that socket was closed.
    let first_id: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    let seen = first_id.clone();
    let broker = TestBroker::start(move |id, frames| {
        let mut first = seen.lock().unwrap();
        match first.clone() {
            None => {
                *first = Some(id.clone());
                Vec::new()
            }
            Some(old) if old != *id && frames.get(3).map(Vec::as_slice) == Some(b"one") => {
                vec![
                    (old, mdp("echo", &[b"LATE"])),
                    (id.clone(), frames.to_vec()),
                ]
            }
            Some(_) => vec![(id.clone(), frames.to_vec())],
        }
    });
    let mut client = Client::new(config(&[&broker], 3000, 300)).unwrap();
    assert_eq!(client.call_one("echo", b"one").unwrap(), b"one");
    assert_eq!(client.call_one("echo", b"two").unwrap(), b"two");
    assert_eq!(client.call_one("echo", b"three").unwrap(), b"three");
}

#[test]
fn mmi_service_reports_found_and_not_found() {
    let broker = TestBroker::echo();
    let mut client = Client::new(config(&[&broker], 3000, 3000)).unwrap();
    assert!(client.mmi_service("echo").unwrap());
    assert!(!client.mmi_service("nope").unwrap());
    assert_eq!(
        broker.next_received(Duration::from_secs(1)),
        Some(mdp("mmi.service", &[b"echo"]))
    );
}

#[test]
fn mmi_answer_other_than_200_or_404_is_a_bad_reply() {
    let broker = TestBroker::start(|id, _| vec![(id.clone(), mdp("mmi.service", &[b"501"]))]);
    let mut client = Client::new(config(&[&broker], 3000, 3000)).unwrap();
    assert!(matches!(
        client.mmi_service("echo"),
        Err(ClientError::BadReply(_))
    ));
}

#[test]
fn status_decodes_a_broker_status() {
    let broker = TestBroker::echo();
    let mut client = Client::new(config(&[&broker], 3000, 3000)).unwrap();
    assert_eq!(client.status().unwrap(), sample_status());
}

#[test]
fn garbage_status_is_a_bad_reply() {
    let broker =
        TestBroker::start(|id, _| vec![(id.clone(), mdp("hearth.status", &[b"not bencode"]))]);
    let mut client = Client::new(config(&[&broker], 3000, 3000)).unwrap();
    assert!(matches!(client.status(), Err(ClientError::BadReply(_))));
}

#[test]
fn replies_for_another_service_or_garbage_are_skipped() {
    let broker = TestBroker::start(|id, frames| {
        vec![
            (id.clone(), vec![b"garbage".to_vec()]),
            (id.clone(), vec![Vec::new(), b"MDPW01".to_vec(), vec![4]]),
            (
                id.clone(),
                vec![Vec::new(), b"MDPC01".to_vec(), b"echo".to_vec()],
            ),
            (id.clone(), mdp("other", &[b"wrong"])),
            (id.clone(), echo_answer(frames)),
        ]
    });
    let mut client = Client::new(config(&[&broker], 3000, 3000)).unwrap();
    assert_eq!(client.call_one("echo", b"right").unwrap(), b"right");
}

#[test]
fn invalid_requests_fail_before_sending() {
    let broker = TestBroker::echo();
    let mut client = Client::new(config(&[&broker], 3000, 3000)).unwrap();
    assert!(matches!(
        client.call("", vec![b"x".to_vec()]),
        Err(ClientError::InvalidRequest(_))
    ));
    assert!(matches!(
        client.call("echo", Vec::new()),
        Err(ClientError::InvalidRequest(_))
    ));
    assert!(matches!(
        client.call(&"s".repeat(256), vec![b"x".to_vec()]),
        Err(ClientError::InvalidRequest(_))
    ));
    assert!(broker.next_received(Duration::from_millis(100)).is_none());
}

#[test]
fn bad_configuration_and_endpoints_are_reported() {
    assert!(matches!(
        Client::new(ClientConfig::new(Vec::<String>::new())),
        Err(ClientError::Config(_))
    ));
    let mut client = Client::new(ClientConfig::new(["nonsense://nowhere"])).unwrap();
    assert!(matches!(
        client.call_one("echo", b"x"),
        Err(ClientError::Endpoint { .. })
    ));
}
