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
//! * READY for a reserved name or a second READY, and REPLY or HEARTBEAT from an unknown
//!   worker, are answered with DISCONNECT; `mmi.service` answers "200"/"404", other `mmi.*`
//!   "501"; `hearth.status` answers the broker's status in Bencode.

mod builtin;
mod service;
#[cfg(test)]
mod tests;
mod workers;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use hearth_proto::mmi;
use hearth_proto::status::ServiceStatus;
use hearth_proto::{ClientMessage, DecodeError, Frame, Inbound, WorkerMessage};
use tracing::{debug, info, warn};

use service::{PendingRequest, Service};
use workers::Worker;

use crate::metrics::Metrics;

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
    /// Most requests one service may hold; more are dropped and counted.
    pub max_queue: usize,
    /// Most services the broker keeps track of; requests for more are dropped and counted.
    pub max_services: usize,
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
            max_queue: 100_000,
            max_services: 10_000,
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

/// Services kept before unused, never-served ones are forgotten with their series.
const FORGET_ABOVE: usize = 1000;

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
                    dropped += service.requests.len();
                    service.requests.clear();
                    service.metrics.queue_depth.set(0);
                }
                self.metrics
                    .dropped
                    .with_label_values(&["not_active"])
                    .inc_by(dropped as u64);
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
                .duration
                .observe(now.saturating_duration_since(held.received).as_secs_f64());
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
        self.metrics
            .malformed
            .with_label_values(&[error.reason()])
            .inc();
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
                self.metrics
                    .dropped
                    .with_label_values(&["client_gone"])
                    .inc();
            }
            // Not the frontend's: nothing the dispatcher sent.
            Effect::ToPeer(_) | Effect::Persist(_) | Effect::Publish(_) => {}
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
    }

    /// The next moment [`Dispatcher::tick`] has work to do.
    pub fn next_deadline(&self) -> Instant {
        match self.next_expiry {
            Some(at) => at.min(self.next_heartbeat),
            None => self.next_heartbeat,
        }
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

    fn client_request(
        &mut self,
        now: Instant,
        client: Identity,
        request: ClientMessage,
        out: &mut Vec<Effect>,
    ) {
        if mmi::is_reserved(&request.service) {
            let body = self.builtin(&request);
            out.push(Effect::ToClient {
                client,
                msg: ClientMessage {
                    service: request.service,
                    body,
                },
            });
            return;
        }
        let ClientMessage {
            service: name,
            body,
        } = request;
        if !self.services.contains_key(&name) && self.services.len() >= self.config.max_services {
            self.metrics
                .dropped
                .with_label_values(&["too_many_services"])
                .inc();
            return;
        }
        let metrics = &self.metrics;
        let service = self
            .services
            .entry(name.clone())
            .or_insert_with(|| Service::new(metrics.service(&name)));
        service.metrics.requests.inc();
        if service.requests.len() >= self.config.max_queue {
            self.metrics
                .dropped
                .with_label_values(&["queue_full"])
                .inc();
            return;
        }
        if service.workers == 0 {
            let at = now + self.config.request_expiry;
            self.next_expiry = Some(self.next_expiry.map_or(at, |t| t.min(at)));
        }
        service.enqueue(PendingRequest {
            client,
            body,
            received: now,
            dispatched: now,
            orphaned: false,
        });
        self.dispatch(&name, out);
    }

    /// Drops requests that waited too long for a worker-less service; once there are many
    /// services, forgets those nobody uses that never had a worker (names clients invented).
    fn expire_requests(&mut self, now: Instant) {
        let expiry = self.config.request_expiry;
        let mut next: Option<Instant> = None;
        for (name, service) in self.services.iter_mut() {
            let expired = service.expire_requests(now, expiry);
            if expired > 0 {
                info!(service = %name, expired, "requests expired with no worker for their service");
            }
            if let Some(at) = service.next_expiry(expiry) {
                next = Some(next.map_or(at, |t| t.min(at)));
            }
        }
        if self.services.len() > FORGET_ABOVE {
            let metrics = &self.metrics;
            let known = &self.known_services;
            self.services.retain(|name, service| {
                let keep = !service.is_unused() || known.contains(name);
                if !keep {
                    metrics.forget_service(name);
                }
                keep
            });
        }
        self.next_expiry = next;
    }
}

/// A routing id in hex, for logs.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
