//! The sockets of the Binary Star peer link, owned by the reactor thread.
//!
//! * `inbound`: a PULL bound on `--peer-bind`; the peer's heartbeats arrive here.
//! * `outbound`: a PUSH connected to `--peer-connect`, with `ZMQ_IMMEDIATE` so that nothing
//!   queues while the peer is away (a stale heartbeat delivered late would only mislead).
//! * `monitor`: the PUSH's socket monitor. When the peer process dies, its kernel closes the
//!   TCP connection at once and the monitor says DISCONNECTED: the pair driver treats that,
//!   with no heartbeat after it, as peer expiry. A frozen process, a power cut or a cut cable
//!   close nothing, so for those heartbeat silence stays the only path.

use hearth_proto::peer::{PeerHeartbeat, PeerMessage};
use hearth_proto::Frame;

use crate::zmq_err;
use crate::BrokerError;

/// What the monitor reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    /// The connection to the peer is up.
    Connected,
    /// The connection to the peer closed.
    Disconnected,
    /// Something else (retries, handshakes): ignored.
    Other,
}

/// The peer link's three sockets.
pub struct PeerLink {
    pub(crate) inbound: zmq::Socket,
    pub(crate) outbound: zmq::Socket,
    pub(crate) monitor: zmq::Socket,
    /// The peer's endpoint, for status and logs.
    pub(crate) peer_endpoint: String,
}

impl PeerLink {
    /// Binds and connects the peer link's sockets in `context`.
    pub fn open(
        context: &zmq::Context,
        bind: &str,
        connect: &str,
        id: usize,
    ) -> Result<PeerLink, BrokerError> {
        let inbound = context.socket(zmq::PULL).map_err(zmq_err("peer socket"))?;
        inbound.set_linger(0).map_err(zmq_err("ZMQ_LINGER"))?;
        inbound
            .set_maxmsgsize(1 << 20)
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
        outbound
            .set_reconnect_ivl(100)
            .map_err(zmq_err("ZMQ_RECONNECT_IVL"))?;
        outbound
            .set_reconnect_ivl_max(1000)
            .map_err(zmq_err("ZMQ_RECONNECT_IVL_MAX"))?;
        let monitor_endpoint = format!("inproc://hearth-peer-monitor-{id}");
        let events = zmq::SocketEvent::CONNECTED.to_raw() | zmq::SocketEvent::DISCONNECTED.to_raw();
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
        Ok(PeerLink {
            inbound,
            outbound,
            monitor,
            peer_endpoint: connect.to_owned(),
        })
    }

    /// Sends a heartbeat if the peer is connected; silently skipped otherwise.
    pub fn send(&self, heartbeat: PeerHeartbeat) {
        let frames = PeerMessage::Heartbeat(heartbeat).encode();
        // EAGAIN: no connection to the peer (ZMQ_IMMEDIATE) or its queue is full; the next
        // heartbeat will say the same, newer.
        let _ = self.outbound.send_multipart(frames, zmq::DONTWAIT);
    }

    /// The next message waiting on the inbound socket, if any.
    pub fn recv(&self) -> Option<Vec<Frame>> {
        self.inbound.recv_multipart(zmq::DONTWAIT).ok()
    }

    /// The next monitor event waiting, if any.
    pub fn recv_event(&self) -> Option<LinkEvent> {
        let frames = self.monitor.recv_multipart(zmq::DONTWAIT).ok()?;
        let raw = frames
            .first()
            .filter(|f| f.len() >= 2)
            .map(|f| u16::from_le_bytes([f[0], f[1]]))?;
        Some(if raw == zmq::SocketEvent::DISCONNECTED.to_raw() {
            LinkEvent::Disconnected
        } else if raw == zmq::SocketEvent::CONNECTED.to_raw() {
            LinkEvent::Connected
        } else {
            LinkEvent::Other
        })
    }
}
