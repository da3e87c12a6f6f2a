//! The reactor: the one thread that owns the broker's sockets.
//!
//! It polls the frontend ROUTER, the control socket and, for a broker of a pair, the peer
//! link, with a timeout equal to the core's nearest deadline (so an idle broker wakes only
//! for heartbeats). Each round it reads the clock once for the stall detector, then the
//! peer's news *before* any client request (so a broker that was frozen learns it was
//! replaced before it could answer), then drains the frontend, handing each message to the
//! [`Core`] and carrying out the [`Effect`]s that come back, and ends the round with
//! [`Core::end_round`].
//!
//! The status board the HTTP side reads is published at once when the Binary Star state
//! (or whether the broker is sure of it) changes, else at most every `STATUS_REFRESH`
//! while anything changes; each time round the loop the reactor confirms it, saying when it
//! will look again at the latest (see [`StatusBoard`]).

use std::time::{Duration, Instant};

use hearth_proto::peer::PeerMessage;
use hearth_proto::status::BStarState;
use hearth_proto::{Inbound, Limits};
use tracing::{debug, info, warn};

use crate::board::StatusBoard;
use crate::core::{Core, Effect};
use crate::metrics::{DropReason, Metrics};
use crate::peer_link::PeerLink;
use crate::state::open::unix_ms;
use crate::state::store::Store;
use crate::state::writer::{spawn_writer, Writer, WriterReport};
use crate::{zmq_err, BrokerError};

/// Messages handled per poll before timers are looked at again, so a flood cannot starve
/// heartbeats.
const MAX_BATCH: usize = 1024;
/// How often, at most, the status board is refreshed while messages flow.
const STATUS_REFRESH: Duration = Duration::from_millis(100);

/// The reactor's sockets and the core they feed.
pub struct Reactor {
    pub(crate) frontend: zmq::Socket,
    pub(crate) control: zmq::Socket,
    pub(crate) core: Core,
    pub(crate) limits: Limits,
    pub(crate) metrics: Metrics,
    pub(crate) board: StatusBoard,
    pub(crate) started: Instant,
    /// The Binary Star peer link, for a primary or backup.
    pub(crate) link: Option<PeerLink>,
    /// The change feed's PUB socket.
    pub(crate) feed: Option<zmq::Socket>,
    /// The state store's writer thread, if there is a data dir...
    pub(crate) writer: Option<Writer>,
    /// ...and the socket its reports arrive on.
    pub(crate) flushed: Option<zmq::Socket>,
}

/// Starts the writer thread for `store`; its reports wake the reactor through an inproc
/// PUSH/PULL pair (returned: the PULL end, for the reactor's poll).
pub(crate) fn start_writer(
    context: &zmq::Context,
    store: std::sync::Arc<Store>,
    id: usize,
) -> Result<(Writer, zmq::Socket), BrokerError> {
    let endpoint = format!("inproc://hearth-state-writer-{id}");
    let pull = context
        .socket(zmq::PULL)
        .map_err(zmq_err("writer socket"))?;
    pull.bind(&endpoint)
        .map_err(zmq_err("bind writer socket"))?;
    let push = context
        .socket(zmq::PUSH)
        .map_err(zmq_err("writer socket"))?;
    push.connect(&endpoint)
        .map_err(zmq_err("connect writer socket"))?;
    let notify = Box::new(move |report: WriterReport| {
        let frame = match report {
            WriterReport::Flushed { round } => {
                let mut frame = b"F".to_vec();
                frame.extend_from_slice(&round.to_be_bytes());
                frame
            }
            WriterReport::Failed(message) => {
                let mut frame = b"E".to_vec();
                frame.extend_from_slice(message.as_bytes());
                frame
            }
        };
        // The reactor is gone only when the broker stops: nothing to tell then.
        let _ = push.send(frame, 0);
    });
    let writer = spawn_writer(store, notify)
        .map_err(|e| BrokerError::Thread(format!("state writer: {e}")))?;
    Ok((writer, pull))
}

impl Reactor {
    /// Runs until a message arrives on the control socket, then sends DISCONNECT to every
    /// worker and returns.
    pub fn run(mut self) -> Result<(), BrokerError> {
        let mut out = Vec::with_capacity(64);
        let mut last_publish = self.started;
        let mut published = Published::default();
        let mut dirty = true;
        loop {
            let now = Instant::now();
            let mut deadline = self.core.next_deadline(now);
            if dirty {
                deadline = deadline.min(last_publish + STATUS_REFRESH);
            }
            self.board.confirm(now, deadline, self.core.sure_until(now));
            let timeout = deadline.saturating_duration_since(now);
            // Round up so the loop never spins on a deadline a fraction of a millisecond away.
            let timeout_ms = timeout.as_micros().div_ceil(1000).min(i64::MAX as u128) as i64;
            let ready = self.poll(timeout_ms).map_err(zmq_err("reactor poll"))?;
            if ready.control {
                break;
            }
            let now = Instant::now();
            self.core.set_wall_clock(now, unix_ms());
            self.core.observe(now);
            if ready.flushed {
                dirty |= self.drain_flushed(now)?;
            }
            let (frontend_ready, peer_ready) = (ready.frontend, ready.peer);
            if peer_ready {
                self.drain_link(now);
                dirty = true;
            }
            if frontend_ready {
                dirty |= self.drain_frontend(&mut out);
            }
            let now = Instant::now();
            self.core.tick(now);
            self.core.end_round(now);
            // Ticks expire workers and requests, which the status board must show too.
            dirty |= self.send_all(now, &mut out);
            let current = Published {
                state: Some(self.core.state()),
                unsure: self.core.sure_until(now).is_some_and(|until| until <= now),
            };
            if current != published || (dirty && now >= last_publish + STATUS_REFRESH) {
                self.publish_status(now);
                last_publish = now;
                published = current;
                dirty = false;
            }
        }
        info!(
            "broker stopping: sending DISCONNECT to {} workers",
            self.core.worker_count()
        );
        self.core.shutdown();
        self.send_all(Instant::now(), &mut out);
        self.publish_status(Instant::now());
        // What was handed to the writer is written and flushed before the broker exits.
        if let Some(writer) = self.writer.take() {
            writer
                .shutdown()
                .map_err(|e| BrokerError::Store(e.to_string()))?;
        }
        Ok(())
    }

    /// Reads the writer's reports: flushed rounds go to the core; a failure stops the
    /// broker (nothing after it would be durable).
    fn drain_flushed(&mut self, now: Instant) -> Result<bool, BrokerError> {
        let Some(socket) = &self.flushed else {
            return Ok(false);
        };
        let mut any = false;
        while let Ok(frame) = socket.recv_bytes(zmq::DONTWAIT) {
            match frame.split_first() {
                Some((b'F', round)) => {
                    let round = <[u8; 8]>::try_from(round)
                        .map(u64::from_be_bytes)
                        .unwrap_or(0);
                    self.core.flushed(now, round);
                    any = true;
                }
                Some((b'E', message)) => {
                    return Err(BrokerError::Store(
                        String::from_utf8_lossy(message).into_owned(),
                    ));
                }
                _ => {}
            }
        }
        Ok(any)
    }

    /// Polls every socket; says which are readable.
    fn poll(&self, timeout_ms: i64) -> Result<Ready, zmq::Error> {
        let mut items = vec![
            self.frontend.as_poll_item(zmq::POLLIN),
            self.control.as_poll_item(zmq::POLLIN),
        ];
        if let Some(flushed) = &self.flushed {
            items.push(flushed.as_poll_item(zmq::POLLIN));
        }
        let peer_from = items.len();
        if let Some(link) = &self.link {
            items.push(link.inbound.as_poll_item(zmq::POLLIN));
            items.push(link.monitor.as_poll_item(zmq::POLLIN));
        }
        match zmq::poll(&mut items, timeout_ms) {
            Ok(_) => {}
            Err(zmq::Error::EINTR) => return Ok(Ready::default()),
            Err(e) => return Err(e),
        }
        Ok(Ready {
            frontend: items[0].is_readable(),
            control: items[1].is_readable(),
            flushed: self.flushed.is_some() && items[2].is_readable(),
            peer: items[peer_from..].iter().any(|i| i.is_readable()),
        })
    }

    /// Reads everything waiting on the peer link and its monitor.
    fn drain_link(&mut self, now: Instant) {
        let Some(link) = &mut self.link else { return };
        while let Some(event) = link.recv_event() {
            self.core.link_event(now, event);
        }
        while let Some(frames) = link.recv() {
            self.core.peer_message(now, PeerMessage::decode(&frames));
        }
    }

    /// Handles every message ready on the frontend, up to [`MAX_BATCH`]; true if any came.
    fn drain_frontend(&mut self, out: &mut Vec<Effect>) -> bool {
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
                Ok(msg) => self.core.frontend(now, identity, msg),
                Err(error) => self.core.malformed(&identity, &error),
            }
            self.send_all(now, out);
        }
        any
    }

    /// Carries out every pending effect; a peer the ROUTER cannot reach is reported back
    /// to the core, which may produce more effects (a requeued request to another worker).
    /// True if there were any.
    fn send_all(&mut self, now: Instant, out: &mut Vec<Effect>) -> bool {
        let mut any = false;
        loop {
            self.core.take_effects(now, out);
            if out.is_empty() {
                return any;
            }
            any = true;
            for effect in out.drain(..) {
                let (to, frames) = match &effect {
                    Effect::ToWorker { worker, msg } => (worker, msg.frames()),
                    Effect::ToClient { client, msg } => (client, msg.frames()),
                    Effect::ToPeer(msg) => {
                        let sent = self.link.as_ref().is_some_and(|link| link.send(msg));
                        if !sent && msg.is_replication() {
                            self.core.replication_send_failed(now);
                        }
                        continue;
                    }
                    Effect::Persist(_) => {
                        let Effect::Persist(persist) = effect else {
                            continue;
                        };
                        let submitted = self
                            .writer
                            .as_ref()
                            .is_some_and(|w| w.submit(persist.round, persist.batch).is_ok());
                        if !submitted {
                            warn!("the state writer has stopped; writes are not answered");
                        }
                        continue;
                    }
                    Effect::ReleaseMemory => {
                        release_memory();
                        continue;
                    }
                    Effect::Publish(update) => {
                        if let Some(feed) = &self.feed {
                            // PUB never blocks; a subscriber over its queue misses this one
                            // and resyncs on the gap.
                            let _ = feed.send_multipart(update.encode(), zmq::DONTWAIT);
                        }
                        continue;
                    }
                };
                match send(&self.frontend, to, &frames) {
                    Ok(()) => {}
                    Err(zmq::Error::EHOSTUNREACH) => self.core.unreachable(effect),
                    Err(zmq::Error::EAGAIN) => {
                        debug!("peer's queue is full; message dropped");
                        self.metrics.dropped(DropReason::PeerQueueFull, 1);
                    }
                    Err(e) => {
                        warn!(error = %e, "frontend send failed");
                        self.metrics.dropped(DropReason::SendFailed, 1);
                    }
                }
            }
        }
    }

    fn publish_status(&self, now: Instant) {
        self.board.publish(self.core.status(now));
    }
}

/// What the status board showed of the Binary Star side when last published: a change of
/// either is published at once.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Published {
    state: Option<BStarState>,
    unsure: bool,
}

/// Which sockets a poll found readable.
#[derive(Debug, Default)]
struct Ready {
    frontend: bool,
    control: bool,
    flushed: bool,
    peer: bool,
}

/// Asks the allocator to give free memory back to the system (glibc keeps what was freed
/// in its arenas, the reactor's and libzmq's I/O thread's, until asked).
fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim(3) only returns free heap pages to the system.
    unsafe {
        libc::malloc_trim(0);
    }
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
