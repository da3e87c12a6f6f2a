//! One service as the dispatcher keeps it: the requests waiting for a worker, in arrival
//! order; the idle workers, longest-idle first; and the busy workers that may take one more
//! request ahead (see [`Service::prefetch_depth`]).

use std::collections::VecDeque;
use std::time::Instant;

use hearth_proto::Frame;

use super::Identity;
use crate::metrics::ServiceMetrics;

/// A client request the broker holds until a worker has answered it.
#[derive(Debug, Clone)]
pub struct PendingRequest {
    /// The client's routing id on the frontend.
    pub client: Identity,
    /// The opaque body, kept so the request can be dispatched again if its worker is lost.
    pub body: Vec<Frame>,
    /// When the request arrived (for `hearth_request_duration_seconds`).
    pub received: Instant,
    /// When it was handed to its worker.
    pub dispatched: Instant,
    /// Set when the broker stopped being active while a worker held it: its client has
    /// retried on the other broker, so it is never dispatched again and its reply, should
    /// it come, goes nowhere (else a request could run again seconds later, after newer
    /// ones, once this broker is active again).
    pub orphaned: bool,
}

/// A named service: its queue, its idle workers and its metrics.
pub struct Service {
    /// Requests waiting for a worker; requeued requests go to the front.
    pub requests: VecDeque<PendingRequest>,
    /// Idle workers, longest-idle at the front.
    pub idle: VecDeque<Identity>,
    /// Busy workers that may take another request ahead of finishing the current one.
    pub room: VecDeque<Identity>,
    /// Smoothed time a worker spends on one request of this service.
    pub service_time: Option<std::time::Duration>,
    /// Registered workers, idle or busy.
    pub workers: usize,
    /// Since when the service has held no request and had no worker, if it has not:
    /// a service nobody serves is forgotten a while after (see `Dispatcher::forget_unserved`).
    pub empty_since: Option<Instant>,
    /// The service's series in the registry.
    pub metrics: ServiceMetrics,
}

impl Service {
    /// A service with no workers and no requests yet.
    pub fn new(metrics: ServiceMetrics) -> Service {
        Service {
            requests: VecDeque::new(),
            idle: VecDeque::new(),
            room: VecDeque::new(),
            service_time: None,
            workers: 0,
            empty_since: None,
            metrics,
        }
    }

    /// Appends a new request.
    pub fn enqueue(&mut self, request: PendingRequest) {
        self.empty_since = None;
        self.requests.push_back(request);
        self.metrics.queue_depth.set(self.requests.len() as i64);
    }

    /// Puts a request whose worker was lost back at the head of the queue.
    pub fn requeue(&mut self, request: PendingRequest) {
        self.requests.push_front(request);
        self.metrics.requeued.inc();
        self.metrics.queue_depth.set(self.requests.len() as i64);
    }

    /// The worker for the next request, if a request waits: the longest-idle worker, or,
    /// when `prefetch` allows it and no worker is idle, a busy worker with room.
    pub fn next_worker(&mut self, prefetch: bool) -> Option<Identity> {
        if self.requests.is_empty() {
            return None;
        }
        match self.idle.pop_front() {
            Some(w) => Some(w),
            None if prefetch => self.room.pop_front(),
            None => None,
        }
    }

    /// Takes the oldest waiting request.
    pub fn pop_request(&mut self) -> Option<PendingRequest> {
        let request = self.requests.pop_front();
        self.metrics.queue_depth.set(self.requests.len() as i64);
        request
    }

    /// How many requests one worker of this service may hold: as many as fit in `budget`
    /// at the service's smoothed request time (so a request waits about `budget` at most
    /// behind those ahead of it at its worker), between 1 and `max`. Until a request has
    /// been timed, one.
    pub fn prefetch_depth(&self, max: usize, budget: std::time::Duration) -> usize {
        match self.service_time {
            None => 1,
            Some(t) if t.is_zero() => max,
            Some(t) => (budget.as_nanos() / t.as_nanos()).clamp(1, max as u128) as usize,
        }
    }

    /// Folds one measured request time into the smoothed service time (weight 1/8).
    pub fn record_service_time(&mut self, sample: std::time::Duration) {
        self.service_time = Some(match self.service_time {
            Some(t) => (t * 7 + sample) / 8,
            None => sample,
        });
    }

    /// Counts a worker in; it starts idle.
    pub fn add_worker(&mut self, worker: Identity) {
        self.idle.push_back(worker);
        self.workers += 1;
        self.metrics.workers.set(self.workers as i64);
    }

    /// Counts a worker out.
    pub fn remove_worker(&mut self, worker: &[u8]) {
        self.idle.retain(|w| w != worker);
        self.room.retain(|w| w != worker);
        self.workers = self.workers.saturating_sub(1);
        self.metrics.workers.set(self.workers as i64);
    }

    /// Drops every waiting request; returns how many.
    pub fn clear_requests(&mut self) -> usize {
        let dropped = self.requests.len();
        self.requests.clear();
        self.metrics.queue_depth.set(0);
        dropped
    }

    /// Drops the requests that have waited longer than `expiry` while the service has no
    /// worker; returns how many. Requests wait as long as any worker of the service lives.
    pub fn expire_requests(&mut self, now: Instant, expiry: std::time::Duration) -> usize {
        if self.workers > 0 {
            return 0;
        }
        let before = self.requests.len();
        self.requests
            .retain(|r| now.saturating_duration_since(r.received) < expiry);
        let expired = before - self.requests.len();
        if expired > 0 {
            self.metrics.expired.inc_by(expired as u64);
            self.metrics.queue_depth.set(self.requests.len() as i64);
        }
        expired
    }

    /// When the oldest waiting request of a worker-less service expires, if any.
    pub fn next_expiry(&self, expiry: std::time::Duration) -> Option<Instant> {
        if self.workers > 0 {
            return None;
        }
        self.requests.iter().map(|r| r.received + expiry).min()
    }

    /// Whether nothing refers to this service any more.
    pub fn is_unused(&self) -> bool {
        self.workers == 0 && self.requests.is_empty()
    }
}
