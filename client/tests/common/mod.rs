//! A minimal RFC 7 broker for tests: a raw ZeroMQ ROUTER on a free port whose answers a test
//! scripts, and which records every message it receives. Its thread is stopped on drop.
//! Also the one way the tests run the built `hearth` binary ([`hearth_at`]) and read its
//! output ([`text`]).
#![allow(dead_code)] // each test file uses a different part

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hearth_proto::status::{BStarState, BrokerStatus, Role, ServiceStatus};

pub type Frame = Vec<u8>;
/// A message to send from the ROUTER: the peer's routing id and the frames after it.
pub type Outgoing = (Frame, Vec<Frame>);

/// A scripted RFC 7 broker.
pub struct TestBroker {
    pub endpoint: String,
    received: Receiver<(Frame, Vec<Frame>)>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestBroker {
    /// Starts a broker whose `handler` sees each message (routing id, frames) and returns
    /// what to send back.
    pub fn start<F>(mut handler: F) -> TestBroker
    where
        F: FnMut(&Frame, &[Frame]) -> Vec<Outgoing> + Send + 'static,
    {
        let context = zmq::Context::new();
        let router = context.socket(zmq::ROUTER).expect("router");
        router.set_linger(0).expect("linger");
        router.bind("tcp://127.0.0.1:*").expect("bind");
        let endpoint = router
            .get_last_endpoint()
            .expect("endpoint")
            .expect("utf-8 endpoint");
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, received) = mpsc::channel();
        let thread_stop = stop.clone();
        let thread = std::thread::spawn(move || {
            let _context = context;
            while !thread_stop.load(Ordering::Relaxed) {
                let mut items = [router.as_poll_item(zmq::POLLIN)];
                if zmq::poll(&mut items, 20).unwrap_or(0) == 0 {
                    continue;
                }
                let Ok(mut frames) = router.recv_multipart(zmq::DONTWAIT) else {
                    continue;
                };
                let identity = frames.remove(0);
                for (to, reply) in handler(&identity, &frames) {
                    let mut out = vec![to];
                    out.extend(reply);
                    let _ = router.send_multipart(out, 0);
                }
                let _ = tx.send((identity, frames));
            }
        });
        TestBroker {
            endpoint,
            received,
            stop,
            thread: Some(thread),
        }
    }

    /// A broker that never answers.
    pub fn silent() -> TestBroker {
        TestBroker::start(|_, _| Vec::new())
    }

    /// A broker that echoes any request (same service, same body), answers `mmi.service`
    /// with 200 for `echo` and 404 otherwise, and `hearth.status` with [`sample_status`].
    pub fn echo() -> TestBroker {
        TestBroker::start(|id, frames| vec![(id.clone(), echo_answer(frames))])
    }

    /// The next message the broker received (frames after the routing id), if one comes
    /// within `timeout`.
    pub fn next_received(&self, timeout: Duration) -> Option<Vec<Frame>> {
        self.received.recv_timeout(timeout).ok().map(|(_, f)| f)
    }

    /// Every message received so far, with its routing id.
    pub fn drain_received(&self) -> Vec<(Frame, Vec<Frame>)> {
        self.received.try_iter().collect()
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `["", "MDPC01", service, body...]`.
pub fn mdp(service: &str, body: &[&[u8]]) -> Vec<Frame> {
    let mut out = vec![Vec::new(), b"MDPC01".to_vec(), service.as_bytes().to_vec()];
    out.extend(body.iter().map(|b| b.to_vec()));
    out
}

/// What [`TestBroker::echo`] answers to `frames`.
pub fn echo_answer(frames: &[Frame]) -> Vec<Frame> {
    let service = frames.get(2).cloned().unwrap_or_default();
    match service.as_slice() {
        b"mmi.service" => {
            let code: &[u8] = if frames.get(3).map(Vec::as_slice) == Some(b"echo") {
                b"200"
            } else {
                b"404"
            };
            mdp("mmi.service", &[code])
        }
        b"hearth.status" => mdp("hearth.status", &[&sample_status().to_bencode()]),
        _ => frames.to_vec(),
    }
}

/// The status record [`TestBroker::echo`] serves.
pub fn sample_status() -> BrokerStatus {
    BrokerStatus {
        role: Role::Standalone,
        state: BStarState::Active,
        frontend: "tcp://127.0.0.1:5555".into(),
        uptime_ms: 61_000,
        services: vec![ServiceStatus {
            name: "echo".into(),
            workers: 2,
            idle_workers: 1,
            queue_depth: 0,
        }],
        ..BrokerStatus::default()
    }
}

/// Runs the `hearth` binary of this package with `args` and no stdin, to its end.
pub fn hearth_at(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run hearth")
}

/// A process's output bytes as text (invalid UTF-8 replaced).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
