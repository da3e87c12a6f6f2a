//! One worker unit's link to one broker: a DEALER socket and its heartbeat, liveness and
//! reconnect timers.
//!
//! A connection is either *live* (a socket, READY sent, waiting for the broker) or *waiting*
//! (socket closed after the broker went silent or said DISCONNECT, reconnecting after a
//! backoff). Every new socket gets a new `generation`, so a reply can tell whether the
//! connection its request came on still exists: if not, the broker has already requeued
//! the request and the reply must be dropped.

use std::time::{Duration, Instant};

use hearth_proto::{Frame, WorkerMessage};
use rand::Rng;

use crate::backoff::Backoff;
use crate::WorkerConfig;

/// How long a DISCONNECT may take to leave when a worker stops.
const DISCONNECT_LINGER_MS: i32 = 500;

enum Link {
    Live {
        socket: zmq::Socket,
        /// The broker counts as gone if silent until then.
        expiry: Instant,
        /// Send a heartbeat then unless something else was sent before.
        next_heartbeat: Instant,
    },
    Waiting {
        until: Instant,
    },
}

/// A unit's connection to one broker endpoint.
pub(crate) struct Connection {
    endpoint: String,
    link: Link,
    generation: u64,
    backoff: Backoff,
    heartbeat: Duration,
    expiry: Duration,
    ready: WorkerMessage,
    /// Whether a malformed message was already logged at warn level on this socket.
    warned: bool,
}

impl Connection {
    /// Opens the first socket at once, so that a bad endpoint fails the caller's `spawn`.
    pub(crate) fn open(
        ctx: &zmq::Context,
        endpoint: &str,
        config: &WorkerConfig,
        now: Instant,
    ) -> Result<Connection, zmq::Error> {
        let mut conn = Connection {
            endpoint: endpoint.to_owned(),
            link: Link::Waiting { until: now },
            generation: 0,
            backoff: Backoff::new(config.reconnect_initial, config.reconnect_max),
            heartbeat: config.heartbeat,
            expiry: config.expiry(),
            ready: WorkerMessage::Ready {
                service: config.service.clone(),
            },
            warned: false,
        };
        conn.connect(ctx, now)?;
        Ok(conn)
    }

    fn connect(&mut self, ctx: &zmq::Context, now: Instant) -> Result<(), zmq::Error> {
        let socket = ctx.socket(zmq::DEALER)?;
        socket.set_linger(0)?;
        socket.connect(&self.endpoint)?;
        self.generation += 1;
        self.warned = false;
        self.link = Link::Live {
            socket,
            expiry: now + self.expiry,
            next_heartbeat: now,
        };
        let ready = self.ready.clone();
        self.send(&ready, now);
        tracing::debug!(endpoint = %self.endpoint, generation = self.generation, "READY sent");
        Ok(())
    }

    /// The endpoint, for logs.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Identifies the current socket; changes whenever a socket closes or opens.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The socket to poll, if live.
    pub(crate) fn socket(&self) -> Option<&zmq::Socket> {
        match &self.link {
            Link::Live { socket, .. } => Some(socket),
            Link::Waiting { .. } => None,
        }
    }

    /// When [`Connection::on_timer`] has something to do.
    pub(crate) fn deadline(&self) -> Instant {
        match &self.link {
            Link::Live {
                expiry,
                next_heartbeat,
                ..
            } => (*expiry).min(*next_heartbeat),
            Link::Waiting { until } => *until,
        }
    }

    /// Sends without blocking; a message the socket cannot take now is dropped and logged
    /// (the broker will notice through liveness). Counts as a heartbeat.
    pub(crate) fn send(&mut self, msg: &WorkerMessage, now: Instant) -> bool {
        let Link::Live {
            socket,
            next_heartbeat,
            ..
        } = &mut self.link
        else {
            return false;
        };
        match socket.send_multipart(msg.frames(), zmq::DONTWAIT) {
            Ok(()) => {
                *next_heartbeat = now + self.heartbeat;
                true
            }
            Err(e) => {
                tracing::warn!(endpoint = %self.endpoint, command = msg.command().name(), error = %e,
                    "cannot send to broker; message dropped");
                false
            }
        }
    }

    /// Receives one message without blocking, keeping at most `max_frames + 1` frames so a
    /// hostile message cannot make us hold an unbounded list (the decoder then reports
    /// too many frames).
    pub(crate) fn recv(&self, max_frames: usize) -> Option<Vec<Frame>> {
        let socket = self.socket()?;
        let first = match socket.recv_bytes(zmq::DONTWAIT) {
            Ok(frame) => frame,
            Err(zmq::Error::EAGAIN) => return None,
            Err(e) => {
                tracing::warn!(endpoint = %self.endpoint, error = %e, "receive failed");
                return None;
            }
        };
        let mut frames = vec![first];
        while socket.get_rcvmore().unwrap_or(false) {
            match socket.recv_bytes(zmq::DONTWAIT) {
                Ok(frame) if frames.len() <= max_frames => frames.push(frame),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        Some(frames)
    }

    /// The broker spoke: it is alive. `valid` also resets the reconnect schedule.
    pub(crate) fn heard(&mut self, now: Instant, valid: bool) {
        if let Link::Live { expiry, .. } = &mut self.link {
            *expiry = now + self.expiry;
        }
        if valid {
            self.backoff.reset();
        }
    }

    /// True the first time on this socket, so a misbehaving broker is logged once.
    pub(crate) fn first_malformed(&mut self) -> bool {
        !std::mem::replace(&mut self.warned, true)
    }

    /// Closes the socket at once (linger 0) and schedules the reconnect.
    pub(crate) fn reset(&mut self, now: Instant) {
        let delay = self
            .backoff
            .next_delay(rand::thread_rng().gen_range(0.0..=1.0));
        tracing::info!(endpoint = %self.endpoint, delay = ?delay, "connection reset; reconnecting");
        self.link = Link::Waiting { until: now + delay };
        // Requests that came on the closed socket are the broker's again.
        self.generation += 1;
    }

    /// Heartbeats, expiry and reconnects that are due at `now`.
    pub(crate) fn on_timer(&mut self, ctx: &zmq::Context, now: Instant) {
        match &self.link {
            Link::Live { expiry, .. } if now >= *expiry => {
                tracing::warn!(endpoint = %self.endpoint, "broker silent for liveness × heartbeat");
                self.reset(now);
            }
            Link::Live { next_heartbeat, .. } if now >= *next_heartbeat => {
                self.send(&WorkerMessage::Heartbeat, now);
            }
            Link::Waiting { until } if now >= *until => {
                if let Err(e) = self.connect(ctx, now) {
                    tracing::error!(endpoint = %self.endpoint, error = %e, "cannot reconnect");
                    self.reset(now);
                }
            }
            _ => {}
        }
    }

    /// Says DISCONNECT if live, giving it a short linger to leave; then the socket closes.
    pub(crate) fn disconnect(mut self, now: Instant) {
        if self.send(&WorkerMessage::Disconnect, now) {
            if let Some(socket) = self.socket() {
                let _ = socket.set_linger(DISCONNECT_LINGER_MS);
            }
        }
    }
}
