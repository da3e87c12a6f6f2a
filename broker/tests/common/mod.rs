//! Helpers shared by the broker's integration tests: start a broker on free ports, raw
//! RFC 7 sockets, and, from `hearth_supervise` with a test's manners (a failure panics),
//! HTTP GET, free ports and waiting on a condition with a deadline.

#![allow(dead_code)]

pub mod load;
pub mod pair_state;
pub mod procs;
pub mod proxy;
pub mod writes;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hearth_broker::{BrokerConfig, BrokerHandle};
use hearth_supervise::{http, wait_until};

/// Frames as byte vectors.
pub type Frames = Vec<Vec<u8>>;

/// A broker on a free loopback port with fast heartbeats and its HTTP server on a free port.
pub fn start_broker(tweak: impl FnOnce(&mut BrokerConfig)) -> BrokerHandle {
    let mut config = BrokerConfig {
        frontend: "tcp://127.0.0.1:*".into(),
        metrics: Some("127.0.0.1:0".parse().expect("address")),
        heartbeat: Duration::from_millis(100),
        liveness: 3,
        ..BrokerConfig::default()
    };
    tweak(&mut config);
    hearth_broker::spawn(config).expect("broker starts")
}

/// [`wait_until`] that panics with the last value seen (in its `Debug` form).
pub fn wait_for<T, L: std::fmt::Debug>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, L>,
) -> T {
    wait_until(what, timeout, || {
        check().map_err(|last| format!("{last:?}"))
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// A raw socket of `kind` connected to `endpoint`.
pub fn raw(ctx: &zmq::Context, kind: zmq::SocketType, endpoint: &str) -> zmq::Socket {
    let s = ctx.socket(kind).expect("socket");
    s.set_linger(0).expect("linger");
    s.connect(endpoint).expect("connect");
    s
}

/// Sends frames given as byte strings.
pub fn send(s: &zmq::Socket, frames: &[&[u8]]) {
    s.send_multipart(frames.iter().copied(), 0).expect("send");
}

/// Receives one message within `timeout`, or None.
pub fn recv(s: &zmq::Socket, timeout: Duration) -> Option<Frames> {
    let mut items = [s.as_poll_item(zmq::POLLIN)];
    zmq::poll(&mut items, timeout.as_millis() as i64).expect("poll");
    if items[0].is_readable() {
        Some(s.recv_multipart(0).expect("recv"))
    } else {
        None
    }
}

/// Receives messages until one satisfies `pred` (skipping e.g. heartbeats), within `timeout`.
pub fn recv_until(s: &zmq::Socket, timeout: Duration, pred: impl Fn(&Frames) -> bool) -> Frames {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Some(frames) = recv(s, deadline.saturating_duration_since(Instant::now())) {
            if pred(&frames) {
                return frames;
            }
            seen.push(frames);
        }
    }
    panic!("no matching message within {timeout:?}; saw {seen:?}");
}

/// Whether a worker-side message is the given command.
pub fn is_command(frames: &Frames, command: u8) -> bool {
    frames.len() >= 3 && frames[1] == b"MDPW01" && frames[2] == [command]
}

/// An HTTP/1.0 GET; returns the status code and body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    try_http_get(addr, path).expect("HTTP GET")
}

/// An HTTP/1.0 GET, or None if the server does not answer within a second.
pub fn try_http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let answer = http::get(addr, path, Duration::from_secs(1)).ok()?;
    Some((answer.status, answer.body))
}

/// The value of one sample line of `/metrics`, e.g. `hearth_malformed_messages_total{reason="empty"}`.
pub fn metric(addr: SocketAddr, series: &str) -> f64 {
    let (_, body) = http_get(addr, "/metrics");
    body.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    hearth_supervise::free_port().expect("free port")
}
