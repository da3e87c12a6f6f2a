//! The sockets of the Binary Star peer link, owned by the reactor thread.
//!
//! * `inbound`: a PULL bound on `--peer-bind`; the peer's heartbeats arrive here.
//! * `outbound`: a PUSH connected to `--peer-connect`, with `ZMQ_IMMEDIATE` so that nothing
//!   queues while the peer is away (a stale heartbeat delivered late would only mislead).
//!   It retries a refused connection every [`reconnect_interval`]s, never backing off beyond
//!   a quarter heartbeat, and the pair driver sends a heartbeat the moment the ZMTP handshake
//!   succeeds ([`LinkEvent::Ready`]): a broker (re)started next to a running peer hears the
//!   peer's state within a fraction of a heartbeat, long before its own start-up expiry of
//!   two heartbeats could let it act alone. (With libzmq's default backoff the peer's first
//!   heartbeat could come a second after the restart, too late at short heartbeats.)
//! * `replication`: a second PUSH to the same endpoint, for the state model's replication
//!   (see `hearth_proto::repl`). Its own connection, so a burst of changes never delays a
//!   heartbeat; also `ZMQ_IMMEDIATE`, with a deep queue. What it cannot send is not lost:
//!   the follower asks again from its seq.
//! * `monitor`: the heartbeat PUSH's socket monitor. When the peer process dies, its kernel closes the
//!   TCP connection at once (DISCONNECTED) and its port refuses the reconnect that follows
//!   (a second CONNECT_RETRIED with no CONNECTED between): only then does the link report
//!   [`LinkEvent::Gone`], which the pair driver treats, with no heartbeat after it, as peer
//!   expiry. The same holds from start-up: a peer whose port refuses the first two
//!   connection attempts is not running. A connection reset while the peer lives (a
//!   middlebox, a NAT timeout) reconnects
//!   and reports nothing more. A frozen process, a power cut or a cut cable close nothing,
//!   so for those heartbeat silence stays the only path.

use std::time::Duration;

use hearth_proto::peer::PeerMessage;
use hearth_proto::Frame;

use crate::zmq_err;
use crate::BrokerError;

/// What the monitor reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    /// The connection to the peer is up.
    Connected,
    /// The ZMTP handshake with the peer succeeded: the peer process is running now and a
    /// heartbeat sent now reaches it.
    Ready,
    /// The connection to the peer closed; a reconnect is under way.
    Disconnected,
    /// The connection closed and the reconnect was refused: no process listens on the
    /// peer's endpoint any more.
    Gone,
    /// Something else (retries, handshakes): ignored.
    Other,
}

/// The outbound socket's reconnect interval and its backoff ceiling, in milliseconds, for
/// a peer heartbeat of `heartbeat`: a tenth and a quarter of a heartbeat, within 10 ms to
/// 100 ms and 1 s. A refused connect to a loopback or LAN peer costs microseconds, so the
/// few retries a second while the peer is down are cheap, and the returning peer is found
/// at once.
pub fn reconnect_interval(heartbeat: Duration) -> (i32, i32) {
    let ms = |d: Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
    let first = ms(heartbeat / 10).clamp(10, 100);
    let max = ms(heartbeat / 4).clamp(first, 1000);
    (first, max)
}

/// Replication messages queued for the peer at most (each at most a few MiB; usually a
/// round's changes).
const REPLICATION_QUEUE: i32 = 1000;

/// The peer link's sockets.
pub struct PeerLink {
    pub(crate) inbound: zmq::Socket,
    pub(crate) outbound: zmq::Socket,
    pub(crate) replication: zmq::Socket,
    pub(crate) monitor: zmq::Socket,
    /// Reconnect attempts scheduled since the connection closed (None: connected, or never
    /// connected). The first is scheduled at the close; a second means one failed.
    retries_since_close: Option<u32>,
}

impl PeerLink {
    /// Binds and connects the peer link's sockets in `context`.
    pub fn open(
        context: &zmq::Context,
        bind: &str,
        connect: &str,
        id: usize,
        heartbeat: Duration,
    ) -> Result<PeerLink, BrokerError> {
        let inbound = context.socket(zmq::PULL).map_err(zmq_err("peer socket"))?;
        inbound.set_linger(0).map_err(zmq_err("ZMQ_LINGER"))?;
        inbound
            .set_maxmsgsize(hearth_proto::peer::MAX_REPL_BODY as i64 + (1 << 20))
            .map_err(zmq_err("ZMQ_MAXMSGSIZE"))?;
        inbound
            .bind(bind)
            .map_err(zmq_err(format!("bind peer endpoint {bind}")))?;
        let outbound = context.socket(zmq::PUSH).map_err(zmq_err("peer socket"))?;
        outbound.set_linger(0).map_err(zmq_err("ZMQ_LINGER"))?;
        outbound
            .set_immediate(true)
            .map_err(zmq_err("ZMQ_IMMEDIATE"))?;
        outbound.set_sndhwm(16).map_err(zmq_err("ZMQ_SNDHWM"))?;
        let (first, max) = reconnect_interval(heartbeat);
        outbound
            .set_reconnect_ivl(first)
            .map_err(zmq_err("ZMQ_RECONNECT_IVL"))?;
        outbound
            .set_reconnect_ivl_max(max)
            .map_err(zmq_err("ZMQ_RECONNECT_IVL_MAX"))?;
        let replication = context.socket(zmq::PUSH).map_err(zmq_err("peer socket"))?;
        replication.set_linger(0).map_err(zmq_err("ZMQ_LINGER"))?;
        replication
            .set_immediate(true)
            .map_err(zmq_err("ZMQ_IMMEDIATE"))?;
        replication
            .set_sndhwm(REPLICATION_QUEUE)
            .map_err(zmq_err("ZMQ_SNDHWM"))?;
        replication
            .set_reconnect_ivl(first)
            .map_err(zmq_err("ZMQ_RECONNECT_IVL"))?;
        replication
            .set_reconnect_ivl_max(max)
            .map_err(zmq_err("ZMQ_RECONNECT_IVL_MAX"))?;
        let monitor_endpoint = format!("inproc://hearth-peer-monitor-{id}");
        let events = zmq::SocketEvent::CONNECTED.to_raw()
            | zmq::SocketEvent::DISCONNECTED.to_raw()
            | zmq::SocketEvent::CONNECT_RETRIED.to_raw()
            | zmq::SocketEvent::HANDSHAKE_SUCCEEDED.to_raw();
        outbound
            .monitor(&monitor_endpoint, i32::from(events))
            .map_err(zmq_err("peer monitor"))?;
        let monitor = context
            .socket(zmq::PAIR)
            .map_err(zmq_err("peer monitor socket"))?;
        monitor
            .connect(&monitor_endpoint)
            .map_err(zmq_err("connect peer monitor"))?;
        outbound
            .connect(connect)
            .map_err(zmq_err(format!("connect peer endpoint {connect}")))?;
        replication
            .connect(connect)
            .map_err(zmq_err(format!("connect peer endpoint {connect}")))?;
        Ok(PeerLink {
            inbound,
            outbound,
            replication,
            monitor,
            // As if just closed: a peer whose port refuses the very first connections is not
            // running either (see `track`), so a broker started alone need not wait out the
            // heartbeat expiry to learn it.
            retries_since_close: Some(0),
        })
    }

    /// Sends a message to the peer, on the replication connection or the heartbeat one;
    /// false if it could not go (no connection to the peer, or its queue is full). A
    /// heartbeat that cannot go is simply skipped: the next one says the same, newer.
    pub fn send(&self, msg: &PeerMessage) -> bool {
        let socket = if msg.is_replication() {
            &self.replication
        } else {
            &self.outbound
        };
        socket.send_multipart(msg.encode(), zmq::DONTWAIT).is_ok()
    }

    /// The next message waiting on the inbound socket, if any.
    pub fn recv(&self) -> Option<Vec<Frame>> {
        self.inbound.recv_multipart(zmq::DONTWAIT).ok()
    }

    /// The next monitor event waiting, if any.
    pub fn recv_event(&mut self) -> Option<LinkEvent> {
        let frames = self.monitor.recv_multipart(zmq::DONTWAIT).ok()?;
        let raw = frames
            .first()
            .filter(|f| f.len() >= 2)
            .map(|f| u16::from_le_bytes([f[0], f[1]]))?;
        Some(self.track(raw))
    }

    /// Folds one raw monitor event into the link's view of the connection.
    fn track(&mut self, raw: u16) -> LinkEvent {
        if raw == zmq::SocketEvent::DISCONNECTED.to_raw() {
            self.retries_since_close = Some(0);
            LinkEvent::Disconnected
        } else if raw == zmq::SocketEvent::CONNECTED.to_raw() {
            self.retries_since_close = None;
            LinkEvent::Connected
        } else if raw == zmq::SocketEvent::HANDSHAKE_SUCCEEDED.to_raw() {
            self.retries_since_close = None;
            LinkEvent::Ready
        } else if raw == zmq::SocketEvent::CONNECT_RETRIED.to_raw() {
            match self.retries_since_close.as_mut() {
                Some(n) => {
                    *n += 1;
                    if *n == 2 {
                        return LinkEvent::Gone;
                    }
                    LinkEvent::Other
                }
                None => LinkEvent::Other,
            }
        } else {
            LinkEvent::Other
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    const HB: Duration = Duration::from_secs(1);

    fn free_endpoint() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("its address").port();
        format!("tcp://127.0.0.1:{port}")
    }

    /// Events on `link` until `want` shows up or `within` passes.
    fn events_until(link: &mut PeerLink, want: LinkEvent, within: Duration) -> Vec<LinkEvent> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        while Instant::now() < deadline && !seen.contains(&want) {
            let mut items = [link.monitor.as_poll_item(zmq::POLLIN)];
            let _ = zmq::poll(&mut items, 50);
            while let Some(event) = link.recv_event() {
                seen.push(event);
            }
        }
        seen
    }

    #[test]
    fn a_dead_peer_is_gone_and_a_returning_one_reconnects() {
        let context = zmq::Context::new();
        let (a, b) = (free_endpoint(), free_endpoint());
        let mut here = PeerLink::open(&context, &a, &b, 1, HB).expect("link here");
        let peer = PeerLink::open(&context, &b, &a, 2, HB).expect("link there");
        let seen = events_until(&mut here, LinkEvent::Ready, Duration::from_secs(5));
        assert!(seen.contains(&LinkEvent::Connected), "{seen:?}");
        assert!(seen.contains(&LinkEvent::Ready), "{seen:?}");

        // The peer's sockets close: its port refuses the reconnect.
        drop(peer);
        let seen = events_until(&mut here, LinkEvent::Gone, Duration::from_secs(5));
        assert_eq!(
            seen.iter()
                .filter(|e| **e != LinkEvent::Other)
                .collect::<Vec<_>>(),
            [&LinkEvent::Disconnected, &LinkEvent::Gone],
            "{seen:?}"
        );

        // Let the reconnects go on being refused for a while (libzmq's backoff would grow
        // to a second by now), then a new peer on the same endpoint: found within the
        // quarter-heartbeat ceiling, and nothing says gone.
        let quiet = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < quiet {
            let _ = events_until(&mut here, LinkEvent::Connected, Duration::from_millis(100));
        }
        let started = Instant::now();
        let _back = PeerLink::open(&context, &b, &a, 3, HB).expect("link there again");
        let seen = events_until(&mut here, LinkEvent::Ready, Duration::from_secs(5));
        assert!(seen.contains(&LinkEvent::Connected), "{seen:?}");
        assert!(seen.contains(&LinkEvent::Ready), "{seen:?}");
        assert!(!seen.contains(&LinkEvent::Gone), "{seen:?}");
        let (_, max) = reconnect_interval(HB);
        // The ceiling plus generous slack for a loaded machine; libzmq's default backoff
        // (up to the 1 s it used to be given) would miss this.
        assert!(
            started.elapsed() < Duration::from_millis(max as u64 + 500),
            "the returning peer was found only after {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn reconnects_are_quick_and_never_back_off_beyond_a_quarter_heartbeat() {
        assert_eq!(reconnect_interval(Duration::from_secs(1)), (100, 250));
        assert_eq!(reconnect_interval(Duration::from_millis(300)), (30, 75));
        assert_eq!(reconnect_interval(Duration::from_millis(10)), (10, 10));
        assert_eq!(reconnect_interval(Duration::from_secs(60)), (100, 1000));
    }

    #[test]
    fn a_reset_connection_to_a_live_peer_is_not_gone() {
        let context = zmq::Context::new();
        let (a, b) = (free_endpoint(), free_endpoint());
        let mut here = PeerLink::open(&context, &a, &b, 4, HB).expect("link here");
        let peer = PeerLink::open(&context, &b, &a, 5, HB).expect("link there");
        let seen = events_until(&mut here, LinkEvent::Connected, Duration::from_secs(5));
        assert!(seen.contains(&LinkEvent::Connected), "{seen:?}");
        // The peer's inbound socket is closed and at once bound anew, as after a reset
        // connection: the reconnect succeeds and the peer never counts as gone.
        let PeerLink { inbound, .. } = peer;
        drop(inbound);
        let rebound = context.socket(zmq::PULL).expect("socket");
        // The old socket closes in libzmq's background thread: bind as soon as the port is
        // free (well within the 100 ms before the reconnect).
        let deadline = Instant::now() + Duration::from_secs(1);
        while let Err(e) = rebound.bind(&b) {
            assert!(Instant::now() < deadline, "cannot bind {b} again: {e}");
            std::thread::sleep(Duration::from_millis(2));
        }
        let seen = events_until(&mut here, LinkEvent::Connected, Duration::from_secs(5));
        assert!(seen.contains(&LinkEvent::Disconnected), "{seen:?}");
        assert!(seen.contains(&LinkEvent::Connected), "{seen:?}");
        assert!(!seen.contains(&LinkEvent::Gone), "{seen:?}");
    }
}
