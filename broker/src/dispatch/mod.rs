//! The dispatcher: the Majordomo broker's logic, free of sockets and clocks.
//!
//! The reactor decodes what arrives on the frontend and calls [`Dispatcher::handle`] with the
//! sender's routing id, the message and the current time; it calls [`Dispatcher::tick`] when
//! [`Dispatcher::next_deadline`] passes. The dispatcher answers with [`Effect`]s (messages to
//! send) pushed onto a caller-owned vector, which the reactor carries out. Nothing in here
//! blocks, reads a clock or touches a socket, so every rule is unit-tested on a fake clock.
//!
//! Rules (RFC 7, RFC 8, DESIGN.md):
//! * requests queue per service and go to the longest-idle worker of that service;
//! * heartbeats go to every worker, idle or busy, every interval; a worker not heard from
//!   for `liveness` intervals is dropped and the request it held goes back to the head of
//!   its service's queue;
//! * a request waits as long as a worker of its service lives; once the service has no
//!   worker, a request older than `request_expiry` is dropped and counted;
//! * what waits is capped, per service and in all for services with no worker; beyond
//!   the caps requests are dropped and counted, a service nobody ever served is forgotten
//!   soon after it empties, and drops and expiries are logged as one summary per interval
//!   (see `waiting`);
//! * READY for a reserved name or a second READY, and REPLY or HEARTBEAT from an unknown
//!   worker, are answered with DISCONNECT; `mmi.service` answers "200"/"404", other `mmi.*`
//!   "501"; `hearth.status` answers the broker's status in Bencode.

mod builtin;
#[cfg(test)]
mod harness;
mod service;
#[cfg(test)]
mod tests;
mod waiting;
#[cfg(test)]
mod waiting_tests;
mod workers;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use hearth_proto::status::ServiceStatus;
use hearth_proto::{ClientMessage, DecodeError, Frame, Inbound, WorkerMessage};
use tracing::{debug, warn};

use service::Service;
use waiting::FloodLog;
use workers::Worker;

use crate::metrics::{DropReason, Metrics};

pub use crate::effect::{Effect, Identity};

/// The dispatcher's tunables.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Interval between heartbeats to each worker.
    pub heartbeat: Duration,
    /// Heartbeat intervals a worker may stay silent before it is dropped.
    pub liveness: u32,
    /// How long a request may wait once its service has no worker.
    pub request_expiry: Duration,
    /// Most requests one service may hold waiting; more are dropped and counted
    /// (`service_queue_full`).
    pub max_waiting_per_service: usize,
    /// Most requests waiting, in all, for services with no worker (names nobody serves,
    /// or services whose workers are all gone); more are dropped and counted
    /// (`queue_full`). Services with workers are bounded by the per-service cap alone,
    /// so a flood of invented names never crowds out a service that is served.
    pub max_waiting: usize,
    /// Most services the broker keeps track of; requests for more are dropped and counted.
    pub max_services: usize,
    /// How often, at most, dropped and expired requests are logged (one summary line).
    pub flood_log_interval: Duration,
    /// Most requests one worker holds at once. 1 is RFC 7's classic one-at-a-time; more
    /// lets a worker of a quick service find its next request waiting when it replies,
    /// instead of idling for a round trip through the broker (a worker runs them in order;
    /// any RFC 7 worker does, since it reads its socket one message at a time).
    pub prefetch: usize,
    /// How long a request may wait at a worker behind the ones given to it ahead: a
    /// service's depth is this budget over its smoothed request time (see
    /// `Service::prefetch_depth`), so slow services get one request per worker.
    pub prefetch_budget: Duration,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            heartbeat: Duration::from_millis(2500),
            liveness: 3,
            request_expiry: Duration::from_secs(30),
            max_waiting_per_service: 1000,
            max_waiting: 1000,
            max_services: 10_000,
            flood_log_interval: Duration::from_secs(10),
            prefetch: 32,
            prefetch_budget: Duration::from_millis(2),
        }
    }
}

/// What the dispatcher may do, set by the Binary Star side of the reactor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Dispatch requests, forward replies (standalone, or the pair's active).
    Active,
    /// Active, but waiting for the peer's news: dispatch nothing new, hold replies.
    Paused,
    /// The pair's passive: keep the worker table, dispatch nothing, forward no reply.
    Passive,
}

/// A reply that cannot go out yet.
struct HeldReply {
    client: Identity,
    service: String,
    body: Vec<Frame>,
    received: Instant,
}

/// Peers whose malformed input has been logged, so each is logged once; bounded.
const MAX_LOGGED_PEERS: usize = 4096;

/// The Majordomo broker's state and rules.
pub struct Dispatcher {
    config: DispatchConfig,
    metrics: Metrics,
    services: HashMap<String, Service>,
    workers: HashMap<Identity, Worker>,
    /// Services that have had a worker: kept (with their series) when they go idle.
    known_services: HashSet<String>,
    /// Requests waiting in services with no worker (capped by `max_waiting`).
    unserved_waiting: usize,
    /// Dropped and expired requests not logged yet.
    flood: FloodLog,
    /// When the next services nobody serves are due to be forgotten.
    next_forget: Option<Instant>,
    next_heartbeat: Instant,
    /// Earliest moment a waiting request may expire (None: none can).
    next_expiry: Option<Instant>,
    logged_peers: HashSet<Identity>,
    /// The time of the event being handled.
    clock: Instant,
    /// Whether requests go to workers and replies to clients (see [`Mode`]).
    mode: Mode,
    /// Replies held while paused.
    held_replies: Vec<HeldReply>,
}

impl Dispatcher {
    /// A dispatcher with no workers; the first heartbeat is due one interval from `now`.
    pub fn new(config: DispatchConfig, metrics: Metrics, now: Instant) -> Self {
        Dispatcher {
            next_heartbeat: now + config.heartbeat,
            config,
            metrics,
            services: HashMap::new(),
            workers: HashMap::new(),
            known_services: HashSet::new(),
            unserved_waiting: 0,
            flood: FloodLog::default(),
            next_forget: None,
            next_expiry: None,
            logged_peers: HashSet::new(),
            clock: now,
            mode: Mode::Active,
            held_replies: Vec::new(),
        }
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Switches mode. Becoming active sends held replies and waiting requests out at once;
    /// becoming passive forgets waiting requests and held replies (their clients retry on
    /// the active broker) and orphans the requests workers hold, so none of them is ever
    /// dispatched again or answered. Workers stay registered in every mode.
    pub fn set_mode(&mut self, mode: Mode, now: Instant, out: &mut Vec<Effect>) {
        if mode == self.mode {
            return;
        }
        self.clock = now;
        self.mode = mode;
        match mode {
            Mode::Active => {
                for held in std::mem::take(&mut self.held_replies) {
                    self.send_reply(now, held, out);
                }
                let names: Vec<String> = self.services.keys().cloned().collect();
                for name in names {
                    self.dispatch(&name, out);
                }
            }
            Mode::Paused => {}
            Mode::Passive => {
                let mut dropped = self.held_replies.len();
                self.held_replies.clear();
                for worker in self.workers.values_mut() {
                    for request in worker.in_flight.iter_mut() {
                        request.orphaned = true;
                    }
                }
                for service in self.services.values_mut() {
                    dropped += service.clear_requests();
                }
                self.unserved_waiting = 0;
                self.next_expiry = None;
                self.mark_emptied(now);
                self.metrics.dropped(DropReason::NotActive, dropped as u64);
            }
        }
    }

    /// Keeps a reply that may not go out yet (the reactor found the broker not serving).
    pub fn hold_reply(&mut self, now: Instant, client: Identity, msg: ClientMessage) {
        self.held_replies.push(HeldReply {
            client,
            service: msg.service,
            body: msg.body,
            received: now,
        });
        if self.mode == Mode::Active {
            self.mode = Mode::Paused;
        }
    }

    fn send_reply(&mut self, now: Instant, held: HeldReply, out: &mut Vec<Effect>) {
        if let Some(service) = self.services.get(&held.service) {
            service.metrics.replies.inc();
            service
                .metrics
                .observe_duration(now.saturating_duration_since(held.received).as_secs_f64());
        }
        out.push(Effect::ToClient {
            client: held.client,
            msg: ClientMessage {
                service: held.service,
                body: held.body,
            },
        });
    }

    /// Handles one decoded message from the frontend peer `from`.
    pub fn handle(&mut self, now: Instant, from: Identity, msg: Inbound, out: &mut Vec<Effect>) {
        self.clock = now;
        match msg {
            Inbound::Client(request) => self.client_request(now, from, request, out),
            Inbound::Worker(msg) => self.worker_message(now, from, msg, out),
        }
    }

    /// Counts a malformed message and logs it once per peer.
    pub fn malformed(&mut self, from: &[u8], error: &DecodeError) {
        self.metrics.malformed(error);
        if self.logged_peers.len() >= MAX_LOGGED_PEERS {
            self.logged_peers.clear();
        }
        if self.logged_peers.insert(from.to_vec()) {
            warn!(peer = %hex(from), %error, "dropping malformed message (logged once per peer)");
        }
    }

    /// The frontend could not route a message to `peer` (it is gone): a worker is dropped
    /// at once and its request dispatched again; a reply to a vanished client is counted.
    pub fn unreachable(&mut self, effect: Effect, out: &mut Vec<Effect>) {
        match effect {
            Effect::ToWorker { worker, .. } => {
                if self.workers.contains_key(&worker) {
                    debug!(worker = %hex(&worker), "worker unreachable, dropping it");
                    self.delete_worker(&worker, None, out);
                }
            }
            Effect::ToClient { .. } => {
                self.metrics.dropped(DropReason::ClientGone, 1);
            }
            // Not the frontend's: nothing the dispatcher sent.
            Effect::ToPeer(_) | Effect::Persist(_) | Effect::Publish(_) | Effect::ReleaseMemory => {
            }
        }
    }

    /// Sends due heartbeats, drops silent workers and expires old requests.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Effect>) {
        self.clock = now;
        if now >= self.next_heartbeat {
            self.purge_workers(now, out);
            for worker in self.workers.keys() {
                out.push(Effect::ToWorker {
                    worker: worker.clone(),
                    msg: WorkerMessage::Heartbeat,
                });
            }
            self.next_heartbeat = now + self.config.heartbeat;
        }
        if self.next_expiry.is_some_and(|at| now >= at) {
            self.expire_requests(now);
        }
        if self.next_forget.is_some_and(|at| now >= at) {
            self.forget_unserved(now, out);
        }
        if let Some(summary) = self.flood.take_due(now, self.config.flood_log_interval) {
            warn!("{summary}");
        }
    }

    /// The next moment [`Dispatcher::tick`] has work to do.
    pub fn next_deadline(&self) -> Instant {
        let mut at = self.next_heartbeat;
        for next in [self.next_expiry, self.next_forget].into_iter().flatten() {
            at = at.min(next);
        }
        if let Some(log) = self.flood.due(self.config.flood_log_interval) {
            at = at.min(log);
        }
        at
    }

    /// Says goodbye: DISCONNECT to every worker. The dispatcher is empty afterwards.
    pub fn shutdown(&mut self, out: &mut Vec<Effect>) {
        for (worker, _) in self.workers.drain() {
            out.push(Effect::ToWorker {
                worker,
                msg: WorkerMessage::Disconnect,
            });
        }
        for (name, service) in self.services.iter_mut() {
            service.idle.clear();
            service.room.clear();
            service.workers = 0;
            self.metrics.service(name).workers.set(0);
        }
        self.unserved_waiting = self.services.values().map(|s| s.requests.len()).sum();
    }

    /// Workers and queue depth per service, by name.
    pub fn service_status(&self) -> Vec<ServiceStatus> {
        let mut list: Vec<ServiceStatus> = self
            .services
            .iter()
            .map(|(name, s)| ServiceStatus {
                name: name.clone(),
                workers: s.workers as u64,
                idle_workers: s.idle.len() as u64,
                queue_depth: s.requests.len() as u64,
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Number of registered workers.
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }
}

/// A routing id in hex, for logs.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
