//! The RFC 7 client: one DEALER socket at a time, Lazy Pirate retries across brokers.
//!
//! A request is `["", "MDPC01", service, body...]` and its reply has the same shape. RFC 7
//! carries no request id, so the only way to be sure a reply belongs to the current call is
//! to never reuse a socket that may still receive an older reply: when an attempt times out
//! the socket is closed with linger 0 and a fresh one is opened to the next broker.

use std::time::Instant;

use hearth_proto::mdp::MAX_SERVICE_NAME;
use hearth_proto::mmi::{MmiCode, MMI_SERVICE, STATUS_SERVICE};
use hearth_proto::status::BrokerStatus;
use hearth_proto::ClientMessage;
use tracing::debug;

use crate::{ClientConfig, ClientError, Frame};

/// A connection to one or more brokers that calls services synchronously.
///
/// Owns one ZeroMQ DEALER socket at a time, so it is `Send` but not `Sync`: use one client
/// per thread. After a successful call the socket stays connected to the broker that
/// answered, so the next call goes there first.
pub struct Client {
    context: zmq::Context,
    config: ClientConfig,
    socket: Option<zmq::Socket>,
    /// Index in `config.brokers` of the broker the current (or next) socket talks to.
    current: usize,
}

/// What one attempt came to.
enum Attempt {
    Reply(Vec<Frame>),
    TimedOut,
}

impl Client {
    /// A client for the brokers of `config`. Connects lazily, on the first call; fails only
    /// when the configuration cannot work (no broker, or a zero timeout).
    pub fn new(config: ClientConfig) -> Result<Client, ClientError> {
        if config.brokers.is_empty() {
            return Err(ClientError::Config("no broker endpoint given".into()));
        }
        if config.timeout.is_zero() || config.attempt_timeout.is_zero() {
            return Err(ClientError::Config("timeouts must be above zero".into()));
        }
        Ok(Client {
            context: zmq::Context::new(),
            config,
            socket: None,
            current: 0,
        })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The broker the next call goes to first: after a successful call, the one that
    /// answered it. Lets a caller show which broker of a pair is serving it.
    pub fn current_broker(&self) -> &str {
        &self.config.brokers[self.current]
    }

    /// Sends an RFC 7 request for `service` and returns the reply's body frames.
    ///
    /// Waits at most [`ClientConfig::attempt_timeout`] per broker, then closes the socket and
    /// resends to the next broker, until [`ClientConfig::timeout`] has passed
    /// ([`ClientError::Timeout`]). Replies that do not decode or name another service are
    /// skipped. Delivery is at least once: a retried request may run twice.
    pub fn call(&mut self, service: &str, body: Vec<Frame>) -> Result<Vec<Frame>, ClientError> {
        let request = self.request(service, body)?;
        let started = Instant::now();
        let deadline = started + self.config.timeout;
        let mut first = true;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(ClientError::Timeout {
                    service: service.to_owned(),
                    after: now - started,
                });
            }
            if !first {
                self.next_broker();
            }
            first = false;
            let attempt_deadline = deadline.min(now + self.config.attempt_timeout);
            match self.attempt(&request, attempt_deadline)? {
                Attempt::Reply(body) => return Ok(body),
                Attempt::TimedOut => debug!(
                    service,
                    broker = %self.config.brokers[self.current],
                    "attempt timed out; closing the socket and trying the next broker"
                ),
            }
        }
    }

    /// Sends a one-frame request and returns the reply's frames concatenated; for services
    /// that speak one frame each way, like `echo`.
    pub fn call_one(&mut self, service: &str, body: &[u8]) -> Result<Vec<u8>, ClientError> {
        Ok(self.call(service, vec![body.to_vec()])?.concat())
    }

    /// Asks the broker (RFC 8, `mmi.service`) whether `name` has at least one worker.
    pub fn mmi_service(&mut self, name: &str) -> Result<bool, ClientError> {
        let reply = self.call_one(MMI_SERVICE, name.as_bytes())?;
        match MmiCode::parse(&reply) {
            Some(MmiCode::Found) => Ok(true),
            Some(MmiCode::NotFound) => Ok(false),
            _ => Err(ClientError::BadReply(format!(
                "mmi.service answered {:?}",
                String::from_utf8_lossy(&reply)
            ))),
        }
    }

    /// Reads the broker's status record from its built-in `hearth.status` service.
    pub fn status(&mut self) -> Result<BrokerStatus, ClientError> {
        let reply = self.call_one(STATUS_SERVICE, b"")?;
        BrokerStatus::from_bencode(&reply)
            .map_err(|e| ClientError::BadReply(format!("hearth.status: {e}")))
    }

    /// Checks a request against RFC 7 and the limits before anything is sent, so a request
    /// the broker would drop fails at once instead of timing out.
    fn request(&self, service: &str, body: Vec<Frame>) -> Result<ClientMessage, ClientError> {
        if service.is_empty() || service.len() > MAX_SERVICE_NAME {
            return Err(ClientError::InvalidRequest(format!(
                "service name must be 1 to {MAX_SERVICE_NAME} bytes"
            )));
        }
        if body.is_empty() {
            return Err(ClientError::InvalidRequest(
                "RFC 7 needs at least one body frame".into(),
            ));
        }
        let limits = &self.config.limits;
        if body.len() + 3 > limits.max_frames {
            return Err(ClientError::InvalidRequest(format!(
                "{} body frames (limit {})",
                body.len(),
                limits.max_frames.saturating_sub(3)
            )));
        }
        if let Some(big) = body.iter().find(|f| f.len() > limits.max_frame_size) {
            return Err(ClientError::InvalidRequest(format!(
                "a body frame of {} bytes (limit {})",
                big.len(),
                limits.max_frame_size
            )));
        }
        Ok(ClientMessage {
            service: service.to_owned(),
            body,
        })
    }

    /// Sends `request` on the current socket (opening it if needed) and waits until
    /// `deadline` for its reply.
    fn attempt(
        &mut self,
        request: &ClientMessage,
        deadline: Instant,
    ) -> Result<Attempt, ClientError> {
        let limits = self.config.limits;
        let socket = self.socket()?;
        drain_stale(socket);
        // A DEALER queues while it connects; the send blocks only at the high-water mark,
        // and then no longer than the attempt.
        socket.set_sndtimeo(millis_until(deadline))?;
        match socket.send_multipart(request.frames(), 0) {
            Ok(()) => {}
            Err(zmq::Error::EAGAIN) => return Ok(Attempt::TimedOut),
            Err(e) => return Err(e.into()),
        }
        loop {
            let wait = millis_until(deadline);
            if wait == 0 {
                return Ok(Attempt::TimedOut);
            }
            let mut items = [socket.as_poll_item(zmq::POLLIN)];
            if zmq::poll(&mut items, i64::from(wait))? == 0 {
                continue; // the loop head sees the deadline
            }
            let frames = socket.recv_multipart(zmq::DONTWAIT)?;
            match ClientMessage::decode(frames, &limits) {
                Ok(reply) if reply.service == request.service => {
                    return Ok(Attempt::Reply(reply.body))
                }
                Ok(reply) => debug!(
                    expected = %request.service,
                    got = %reply.service,
                    "skipping a reply for another service"
                ),
                Err(e) => debug!(error = %e, "skipping a reply that is not MDP/0.1"),
            }
        }
    }

    /// The current socket, opened and connected to the current broker if there is none.
    fn socket(&mut self) -> Result<&zmq::Socket, ClientError> {
        let socket = match self.socket.take() {
            Some(socket) => socket,
            None => self.open()?,
        };
        Ok(self.socket.insert(socket))
    }

    /// A fresh DEALER connected to the current broker.
    fn open(&self) -> Result<zmq::Socket, ClientError> {
        let endpoint = &self.config.brokers[self.current];
        let socket = self.context.socket(zmq::DEALER)?;
        socket.set_linger(0)?;
        socket
            .connect(endpoint)
            .map_err(|source| ClientError::Endpoint {
                endpoint: endpoint.clone(),
                source,
            })?;
        debug!(broker = %endpoint, "connected");
        Ok(socket)
    }

    /// Drops the current socket (linger 0, so nothing queued leaves and no late reply can
    /// reach the next call) and moves on to the next broker, round-robin.
    fn next_broker(&mut self) {
        self.socket = None;
        self.current = (self.current + 1) % self.config.brokers.len();
    }
}

/// Discards replies already waiting on a kept socket: a duplicate of an earlier, already
/// answered request (possible under at-least-once delivery) must not answer this one.
fn drain_stale(socket: &zmq::Socket) {
    while let Ok(frames) = socket.recv_multipart(zmq::DONTWAIT) {
        debug!(frames = frames.len(), "discarding a stale reply");
    }
}

/// Milliseconds from now until `deadline`, rounded up so a poll never wakes just early,
/// and capped to what ZeroMQ's `i32` option takes.
fn millis_until(deadline: Instant) -> i32 {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return 0;
    }
    let ms = left.as_micros().div_ceil(1000);
    i32::try_from(ms).unwrap_or(i32::MAX)
}
