//! A worker unit: one thread, one DEALER per broker, one request at a time.
//!
//! The unit's thread owns its sockets and loops on `zmq::poll` with a timeout equal to the
//! nearest heartbeat, expiry or reconnect deadline (the ZeroMQ guide's loop), so an idle
//! unit costs no CPU. The handler runs on the unit's executor thread ([`Runner`]); while it
//! runs, the unit keeps heartbeating on every connection and queues any further REQUEST
//! (FIFO, bounded) instead of running two at once. A handler that says it is inline
//! ([`Handler::is_inline`], such as echo) runs on the unit's own thread instead. A stop command on the control PAIR ends
//! the loop: DISCONNECT goes to every live broker, then the sockets close.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_proto::{Frame, Limits, WorkerMessage};

use crate::connection::Connection;
use crate::handler::run_guarded;
use crate::runner::Runner;
use crate::{Handler, WorkerConfig, WorkerError};

/// Requests a busy unit keeps waiting; beyond that a request is dropped and logged (hearth's
/// broker sends a worker at most 32 requests ahead, and only while it answers in a few
/// milliseconds, so this only fills with a broker that floods its workers).
pub(crate) const MAX_QUEUED: usize = 1024;

/// A request waiting for the unit to be free.
struct Pending {
    conn: usize,
    generation: u64,
    client: Frame,
    body: Vec<Frame>,
}

/// The request the executor is running.
struct InFlight {
    job: u64,
    conn: usize,
    generation: u64,
    client: Frame,
}

/// Where the handler runs.
enum Exec {
    /// On the unit's thread, between polls.
    Inline(Arc<dyn Handler>),
    /// On the unit's executor thread.
    Thread(Runner),
}

/// What the unit thread shares with the [`crate::WorkerHandle`].
pub(crate) struct Shared {
    /// Set by the handle on stop, checked every loop in case the control message is lost.
    pub(crate) stopping: AtomicBool,
    /// Requests whose handler has finished, across all units.
    pub(crate) handled: AtomicU64,
}

/// One unit, built on the caller's thread and then moved to its own.
pub(crate) struct Unit {
    ctx: zmq::Context,
    limits: Limits,
    conns: Vec<Connection>,
    control: zmq::Socket,
    shared: Arc<Shared>,
    exec: Exec,
    busy: Option<InFlight>,
    queue: VecDeque<Pending>,
}

impl Unit {
    /// Connects to every broker (sending READY) and starts the executor thread. Socket
    /// errors such as a malformed endpoint surface here, before any thread loops.
    pub(crate) fn new(
        ctx: &zmq::Context,
        config: &WorkerConfig,
        handler: Arc<dyn Handler>,
        control: zmq::Socket,
        shared: Arc<Shared>,
        name: String,
    ) -> Result<Unit, WorkerError> {
        let now = Instant::now();
        let conns = config
            .brokers
            .iter()
            .map(|endpoint| Connection::open(ctx, endpoint, config, now))
            .collect::<Result<Vec<_>, _>>()?;
        let exec = if handler.is_inline() {
            Exec::Inline(handler)
        } else {
            Exec::Thread(Runner::start(ctx, handler, format!("{name}-exec"))?)
        };
        Ok(Unit {
            ctx: ctx.clone(),
            limits: config.limits,
            conns,
            control,
            shared,
            exec,
            busy: None,
            queue: VecDeque::new(),
        })
    }

    /// The poll loop; returns after a stop command.
    pub(crate) fn run(mut self) {
        loop {
            if self.shared.stopping.load(Ordering::SeqCst) {
                break;
            }
            let now = Instant::now();
            for conn in &mut self.conns {
                conn.on_timer(&self.ctx, now);
            }
            let timeout = self.poll_timeout(now);
            let (stop, result_ready, ready_conns) = match self.poll(timeout) {
                Ok(ready) => ready,
                Err(zmq::Error::EINTR) => continue,
                Err(e) => {
                    // Not expected while we own the context; avoid spinning on it.
                    tracing::error!(error = %e, "poll failed");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            if stop {
                break;
            }
            if result_ready {
                self.finish_jobs();
            }
            for index in ready_conns {
                self.drain(index);
            }
        }
        self.shutdown();
    }

    /// Milliseconds until the nearest deadline, rounded up so we never spin on a
    /// sub-millisecond remainder.
    fn poll_timeout(&self, now: Instant) -> i64 {
        let nearest = self.conns.iter().map(Connection::deadline).min();
        match nearest {
            Some(deadline) => {
                let wait = deadline.saturating_duration_since(now);
                let ms = wait.as_micros().div_ceil(1000);
                i64::try_from(ms).unwrap_or(i64::MAX)
            }
            None => -1,
        }
    }

    /// Polls control, executor and live connections; returns which are readable.
    fn poll(&self, timeout: i64) -> Result<(bool, bool, Vec<usize>), zmq::Error> {
        let mut items = vec![self.control.as_poll_item(zmq::POLLIN)];
        if let Exec::Thread(runner) = &self.exec {
            items.push(runner.socket().as_poll_item(zmq::POLLIN));
        }
        let first_conn = items.len();
        let mut owners = Vec::with_capacity(self.conns.len());
        for (index, conn) in self.conns.iter().enumerate() {
            if let Some(socket) = conn.socket() {
                items.push(socket.as_poll_item(zmq::POLLIN));
                owners.push(index);
            }
        }
        zmq::poll(&mut items, timeout)?;
        let ready = items[first_conn..]
            .iter()
            .zip(owners)
            .filter(|(item, _)| item.is_readable())
            .map(|(_, index)| index)
            .collect();
        let results = first_conn > 1 && items[1].is_readable();
        Ok((items[0].is_readable(), results, ready))
    }

    /// Handles everything waiting on connection `index`.
    fn drain(&mut self, index: usize) {
        while let Some(frames) = self.conns[index].recv(self.limits.max_frames) {
            let now = Instant::now();
            let conn = &mut self.conns[index];
            match WorkerMessage::decode(frames, &self.limits) {
                Ok(WorkerMessage::Request { client, body }) => {
                    conn.heard(now, true);
                    self.accept(index, client, body);
                }
                Ok(WorkerMessage::Heartbeat) => conn.heard(now, true),
                Ok(WorkerMessage::Disconnect) => {
                    tracing::info!(endpoint = %conn.endpoint(), "broker sent DISCONNECT");
                    conn.heard(now, true);
                    conn.reset(now);
                    return;
                }
                Ok(other) => {
                    conn.heard(now, false);
                    let what = format!("unexpected {} from a broker", other.command().name());
                    malformed(conn, &what);
                }
                Err(e) => {
                    conn.heard(now, false);
                    malformed(conn, &e.to_string());
                }
            }
        }
    }

    /// A REQUEST arrived: run it now, or queue it behind the running one.
    fn accept(&mut self, conn: usize, client: Frame, body: Vec<Frame>) {
        let generation = self.conns[conn].generation();
        if self.busy.is_none() {
            self.start(conn, generation, client, body);
        } else if self.queue.len() < MAX_QUEUED {
            self.queue.push_back(Pending {
                conn,
                generation,
                client,
                body,
            });
        } else {
            tracing::warn!(endpoint = %self.conns[conn].endpoint(), limit = MAX_QUEUED,
                "request queue full; request dropped");
        }
    }

    fn start(&mut self, conn: usize, generation: u64, client: Frame, body: Vec<Frame>) {
        let runner = match &mut self.exec {
            Exec::Thread(runner) => runner,
            Exec::Inline(handler) => {
                let body = run_guarded(&**handler, body);
                self.shared.handled.fetch_add(1, Ordering::SeqCst);
                let reply = WorkerMessage::Reply { client, body };
                self.conns[conn].send(&reply, Instant::now());
                return;
            }
        };
        match runner.submit(body) {
            Some(job) => {
                self.busy = Some(InFlight {
                    job,
                    conn,
                    generation,
                    client,
                })
            }
            None => tracing::error!("executor thread is gone; request dropped"),
        }
    }

    /// Sends the replies of finished jobs, then starts the next queued request.
    fn finish_jobs(&mut self) {
        let Exec::Thread(runner) = &self.exec else {
            return;
        };
        while let Some((job, body)) = runner.take_result() {
            let Some(done) = self.busy.take_if(|f| f.job == job) else {
                tracing::error!(job, "result for a job that is not running; dropped");
                continue;
            };
            self.shared.handled.fetch_add(1, Ordering::SeqCst);
            let conn = &mut self.conns[done.conn];
            if conn.generation() == done.generation {
                let reply = WorkerMessage::Reply {
                    client: done.client,
                    body,
                };
                conn.send(&reply, Instant::now());
            } else {
                tracing::info!(endpoint = %conn.endpoint(),
                    "connection reset while the request ran; reply dropped (the broker requeued it)");
            }
        }
        while self.busy.is_none() {
            let Some(next) = self.queue.pop_front() else {
                break;
            };
            if self.conns[next.conn].generation() == next.generation {
                self.start(next.conn, next.generation, next.client, next.body);
            } else {
                tracing::info!(endpoint = %self.conns[next.conn].endpoint(),
                    "queued request from a reset connection dropped (the broker requeued it)");
            }
        }
    }

    /// DISCONNECT to every live broker, then let everything close.
    fn shutdown(mut self) {
        let now = Instant::now();
        if !self.queue.is_empty() {
            tracing::info!(dropped = self.queue.len(), "stopping with queued requests");
        }
        for conn in self.conns.drain(..) {
            conn.disconnect(now);
        }
        if let Exec::Thread(runner) = self.exec {
            runner.shutdown(self.busy.is_some());
        }
    }
}

fn malformed(conn: &mut Connection, what: &str) {
    if conn.first_malformed() {
        tracing::warn!(endpoint = %conn.endpoint(), problem = %what,
            "malformed message from broker dropped (further ones on this connection logged at debug)");
    } else {
        tracing::debug!(endpoint = %conn.endpoint(), problem = %what, "malformed message dropped");
    }
}
