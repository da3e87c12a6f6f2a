//! A minimal RFC 7 broker for tests: a raw ROUTER on a free port, and receiving from it
//! with a deadline (waiting on anything else: `hearth_supervise::wait_until`).
//!
//! It knows nothing of hearth, so tests written against it prove the worker speaks plain
//! MDP/0.1 to any broker. Frames are compared byte for byte.

#![allow(dead_code)]

use std::time::{Duration, Instant};

/// Generous bound for any single wait; tests normally finish far sooner.
pub const T: Duration = Duration::from_secs(5);

pub const READY: u8 = 0x01;
pub const REQUEST: u8 = 0x02;
pub const REPLY: u8 = 0x03;
pub const HEARTBEAT: u8 = 0x04;
pub const DISCONNECT: u8 = 0x05;

/// One message received by the broker: the worker's routing id and the MDP frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub id: Vec<u8>,
    pub frames: Vec<Vec<u8>>,
}

impl Msg {
    /// Whether this is a well-formed `MDPW01` message with this command byte.
    pub fn is(&self, command: u8) -> bool {
        self.frames.len() >= 3
            && self.frames[0].is_empty()
            && self.frames[1] == b"MDPW01"
            && self.frames[2] == [command]
    }
}

pub fn frames(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.to_vec()).collect()
}

pub struct TestBroker {
    _ctx: zmq::Context,
    pub router: zmq::Socket,
    pub endpoint: String,
    /// Answer every HEARTBEAT seen while waiting, as a real broker does.
    pub answer_heartbeats: bool,
}

impl TestBroker {
    /// Binds on a free port of 127.0.0.1.
    pub fn bind() -> TestBroker {
        TestBroker::bind_at("tcp://127.0.0.1:*")
    }

    pub fn bind_at(endpoint: &str) -> TestBroker {
        let ctx = zmq::Context::new();
        let router = ctx.socket(zmq::ROUTER).unwrap();
        router.set_linger(0).unwrap();
        router.bind(endpoint).unwrap();
        let endpoint = router.get_last_endpoint().unwrap().unwrap();
        TestBroker {
            _ctx: ctx,
            router,
            endpoint,
            answer_heartbeats: true,
        }
    }

    /// The next message within `timeout`, if any.
    pub fn recv(&self, timeout: Duration) -> Option<Msg> {
        let ms = timeout.as_millis().max(1) as i64;
        if self.router.poll(zmq::POLLIN, ms).unwrap() == 0 {
            return None;
        }
        let mut parts = self.router.recv_multipart(0).unwrap();
        let id = parts.remove(0);
        let msg = Msg { id, frames: parts };
        if self.answer_heartbeats && msg.is(HEARTBEAT) {
            self.send(&msg.id, &[b"", b"MDPW01", &[HEARTBEAT]]);
        }
        Some(msg)
    }

    /// Receives until `pred` holds, within `timeout`; fails naming what was seen instead.
    pub fn recv_until(
        &self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Msg) -> bool,
    ) -> Msg {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.recv(left) {
                Some(msg) if pred(&msg) => return msg,
                Some(msg) => seen.push(msg),
                None => break,
            }
        }
        let tail: Vec<_> = seen.iter().rev().take(5).collect();
        panic!("no {what} within {timeout:?}; last seen: {tail:?}");
    }

    /// Every message until `pred` holds (the matching one last).
    pub fn collect_until(
        &self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Msg) -> bool,
    ) -> Vec<Msg> {
        let mut all = Vec::new();
        self.recv_until(what, timeout, |m| {
            all.push(m.clone());
            pred(m)
        });
        all
    }

    pub fn send(&self, id: &[u8], parts: &[&[u8]]) {
        let mut msg: Vec<&[u8]> = vec![id];
        msg.extend_from_slice(parts);
        self.router.send_multipart(msg, 0).unwrap();
    }

    /// Sends REQUEST `["", "MDPW01", 0x02, client, "", body...]` to worker `id`.
    pub fn request(&self, id: &[u8], client: &[u8], body: &[&[u8]]) {
        let mut parts: Vec<&[u8]> = vec![b"", b"MDPW01", &[REQUEST], client, b""];
        parts.extend_from_slice(body);
        self.send(id, &parts);
    }

    /// Waits for a READY for `service` and checks it byte for byte; returns the worker id.
    pub fn expect_ready(&self, service: &str) -> Vec<u8> {
        let msg = self.recv_until("READY", T, |m| m.is(READY));
        assert_eq!(
            msg.frames,
            frames(&[b"", b"MDPW01", &[READY], service.as_bytes()])
        );
        msg.id
    }
}

/// The REPLY frames a worker must send for `client` with `body`.
pub fn reply_frames(client: &[u8], body: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut parts: Vec<&[u8]> = vec![b"", b"MDPW01", &[REPLY], client, b""];
    parts.extend_from_slice(body);
    frames(&parts)
}
