//! The reactor: the one thread that owns the broker's sockets.
//!
//! It polls the frontend ROUTER, the control socket and, for a broker of a pair, the peer
//! link, with a timeout equal to the nearest deadline (so an idle broker wakes only for
//! heartbeats). Each round it reads the clock once for the stall detector, then the peer's
//! news *before* any client request (so a broker that was frozen learns it was replaced
//! before it could answer), then drains the frontend, turning each message into a
//! dispatcher call and carrying out the [`Action`]s that come back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hearth_proto::mmi::STATUS_SERVICE;
use hearth_proto::status::BrokerStatus;
use hearth_proto::{Inbound, Limits};
use tracing::{debug, info, warn};

use crate::dispatch::{Action, Dispatcher};
use crate::metrics::Metrics;
use crate::pair_side::PairSide;

/// Messages handled per poll before timers are looked at again, so a flood cannot starve
/// heartbeats.
const MAX_BATCH: usize = 1024;
/// How often, at most, the status board is refreshed while messages flow.
const STATUS_REFRESH: Duration = Duration::from_millis(100);

/// What the HTTP side reads: the latest status and when the reactor last went round its loop.
#[derive(Clone, Default)]
pub struct StatusBoard {
    /// The status as of the last refresh.
    pub status: Arc<Mutex<BrokerStatus>>,
    /// Milliseconds since `started` at the reactor's last loop.
    pub last_loop_ms: Arc<AtomicU64>,
}

/// The reactor's sockets and state.
pub struct Reactor {
    pub(crate) frontend: zmq::Socket,
    pub(crate) control: zmq::Socket,
    pub(crate) dispatcher: Dispatcher,
    pub(crate) limits: Limits,
    pub(crate) metrics: Metrics,
    pub(crate) board: StatusBoard,
    pub(crate) started: Instant,
    /// The Binary Star side, for a primary or backup.
    pub(crate) pair: Option<PairSide>,
}

impl Reactor {
    /// Runs until a message arrives on the control socket, then sends DISCONNECT to every
    /// worker and returns.
    pub fn run(mut self) -> Result<(), zmq::Error> {
        let mut out = Vec::with_capacity(64);
        let mut retry = Vec::new();
        let mut last_publish = self.started;
        let mut dirty = true;
        loop {
            let now = Instant::now();
            let mut deadline = self.dispatcher.next_deadline();
            if let Some(pair) = &self.pair {
                deadline = deadline.min(pair.next_deadline());
            }
            if dirty {
                deadline = deadline.min(last_publish + STATUS_REFRESH);
            }
            let timeout = deadline.saturating_duration_since(now);
            // Round up so the loop never spins on a deadline a fraction of a millisecond away.
            let timeout_ms = timeout.as_micros().div_ceil(1000).min(i64::MAX as u128) as i64;
            let (frontend_ready, control_ready, peer_ready) = self.poll(timeout_ms)?;
            if control_ready {
                break;
            }
            let now = Instant::now();
            if let Some(pair) = &mut self.pair {
                pair.observe(now, &mut self.dispatcher, &self.metrics, &mut out);
                if peer_ready {
                    pair.drain_link(now, &mut self.dispatcher, &self.metrics, &mut out);
                    dirty = true;
                }
            }
            if frontend_ready {
                dirty |= self.drain_frontend(&mut out, &mut retry);
            }
            let now = Instant::now();
            if let Some(pair) = &mut self.pair {
                pair.tick(now, &mut self.dispatcher, &self.metrics, &mut out);
                pair.refresh_info(now, &mut self.dispatcher, &self.metrics);
            }
            self.dispatcher.tick(now, &mut out);
            // Ticks expire workers and requests, which the status board must show too.
            dirty |= !out.is_empty();
            self.send_all(&mut out, &mut retry);
            if dirty && now >= last_publish + STATUS_REFRESH {
                self.publish_status(now);
                last_publish = now;
                dirty = false;
            }
            let loop_ms = now.saturating_duration_since(self.started).as_millis() as u64;
            self.board.last_loop_ms.store(loop_ms, Ordering::Relaxed);
        }
        info!(
            "broker stopping: sending DISCONNECT to {} workers",
            self.dispatcher.worker_count()
        );
        self.dispatcher.shutdown(&mut out);
        self.send_all(&mut out, &mut retry);
        self.publish_status(Instant::now());
        Ok(())
    }

    /// Polls every socket; says which are readable (frontend, control, peer link).
    fn poll(&self, timeout_ms: i64) -> Result<(bool, bool, bool), zmq::Error> {
        let mut items = vec![
            self.frontend.as_poll_item(zmq::POLLIN),
            self.control.as_poll_item(zmq::POLLIN),
        ];
        if let Some(pair) = &self.pair {
            items.push(pair.link.inbound.as_poll_item(zmq::POLLIN));
            items.push(pair.link.monitor.as_poll_item(zmq::POLLIN));
        }
        match zmq::poll(&mut items, timeout_ms) {
            Ok(_) => {}
            Err(zmq::Error::EINTR) => return Ok((false, false, false)),
            Err(e) => return Err(e),
        }
        let peer = items.iter().skip(2).any(|i| i.is_readable());
        Ok((items[0].is_readable(), items[1].is_readable(), peer))
    }

    /// Handles every message ready on the frontend, up to [`MAX_BATCH`]; true if any came.
    fn drain_frontend(&mut self, out: &mut Vec<Action>, retry: &mut Vec<Action>) -> bool {
        let mut any = false;
        for _ in 0..MAX_BATCH {
            let mut frames = match self.frontend.recv_multipart(zmq::DONTWAIT) {
                Ok(frames) => frames,
                Err(zmq::Error::EAGAIN) => break,
                Err(zmq::Error::EINTR) => continue,
                Err(e) => {
                    warn!(error = %e, "frontend receive failed");
                    break;
                }
            };
            any = true;
            if frames.is_empty() {
                continue;
            }
            let identity = frames.remove(0);
            let now = Instant::now();
            match Inbound::decode(frames, &self.limits) {
                Ok(Inbound::Client(msg)) if msg.service != STATUS_SERVICE => match &mut self.pair {
                    Some(pair) => {
                        pair.observe(now, &mut self.dispatcher, &self.metrics, out);
                        pair.client_request(
                            now,
                            identity,
                            msg,
                            &mut self.dispatcher,
                            &self.metrics,
                            out,
                        );
                    }
                    None => self
                        .dispatcher
                        .handle(now, identity, Inbound::Client(msg), out),
                },
                // Workers register and heartbeat with both brokers of a pair; the status
                // service answers in every state.
                Ok(msg) => self.dispatcher.handle(now, identity, msg, out),
                Err(error) => self.dispatcher.malformed(&identity, &error),
            }
            self.send_all(out, retry);
        }
        any
    }

    /// Sends every pending action; a peer the ROUTER cannot reach is reported back to the
    /// dispatcher, which may produce more actions (a requeued request to another worker).
    /// Replies to clients go out only while this broker serves.
    fn send_all(&mut self, out: &mut Vec<Action>, retry: &mut Vec<Action>) {
        let serving = self.pair.as_ref().is_none_or(|p| p.serving(Instant::now()));
        while !out.is_empty() {
            for action in out.drain(..) {
                let result = match &action {
                    Action::ToWorker { worker, msg } => send(&self.frontend, worker, &msg.frames()),
                    Action::ToClient { msg, .. } if !serving && !is_status(msg) => {
                        // Time alone made us unsure of the peer since the dispatcher was
                        // last told: keep the reply until the peer's news decides.
                        if let Action::ToClient { client, msg } = action {
                            self.dispatcher.hold_reply(Instant::now(), client, msg);
                        }
                        continue;
                    }
                    Action::ToClient { client, msg } => send(&self.frontend, client, &msg.frames()),
                };
                match result {
                    Ok(()) => {}
                    Err(zmq::Error::EHOSTUNREACH) => self.dispatcher.unreachable(action, retry),
                    Err(zmq::Error::EAGAIN) => {
                        debug!("peer's queue is full; message dropped");
                        self.metrics
                            .dropped
                            .with_label_values(&["peer_queue_full"])
                            .inc();
                    }
                    Err(e) => {
                        warn!(error = %e, "frontend send failed");
                        self.metrics
                            .dropped
                            .with_label_values(&["send_failed"])
                            .inc();
                    }
                }
            }
            std::mem::swap(out, retry);
        }
    }

    fn publish_status(&self, now: Instant) {
        let status = self.dispatcher.status(now);
        if let Ok(mut board) = self.board.status.lock() {
            *board = status;
        }
    }
}

fn is_status(msg: &hearth_proto::ClientMessage) -> bool {
    msg.service == STATUS_SERVICE
}

/// Sends one message to `to` through the ROUTER, without blocking.
fn send(socket: &zmq::Socket, to: &[u8], frames: &[&[u8]]) -> Result<(), zmq::Error> {
    socket.send(to, zmq::SNDMORE | zmq::DONTWAIT)?;
    let last = frames.len().saturating_sub(1);
    for (i, frame) in frames.iter().enumerate() {
        let flags = if i == last {
            zmq::DONTWAIT
        } else {
            zmq::SNDMORE | zmq::DONTWAIT
        };
        socket.send(*frame, flags)?;
    }
    Ok(())
}
