//! What waits for a worker, and how much of it: a client request joins its service's
//! queue unless a cap says no, requests for a service with no worker expire, a service
//! nobody ever served is forgotten with its metric series a little while after its queue
//! empties ([`FORGET_AFTER`], so that a scrape can still see its last counts; at once when
//! more such names are kept than `max_waiting`), and what was dropped or expired is logged
//! as one summary line per interval ([`FloodLog`]).
//!
//! The caps keep a client that asks for invented names (a typo in a loop, a scan, a
//! misconfigured device) from growing the broker: each such name costs a service entry,
//! its metric series and its waiting requests until they expire.
//! * `max_waiting_per_service`: most requests one service holds waiting, served or not
//!   (`hearth_dropped_messages_total{reason="service_queue_full"}` beyond it);
//! * `max_waiting`: most requests waiting in all for services with *no worker*
//!   (`{reason="queue_full"}`); a service with workers is bounded by its own cap only, so
//!   a flood of names nobody serves never crowds out a service that is served.
//!
//! A request its worker was holding when the worker was lost goes back to its queue
//! whatever the caps say (the broker never silently loses a request it accepted).

use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, Instant};

use hearth_proto::{mmi, ClientMessage};

use super::service::{PendingRequest, Service};
use super::{Dispatcher, Effect, Identity};
use crate::metrics::DropReason;

/// How long a service nobody ever served is kept once empty, unless more than
/// `max_waiting` such services are kept.
pub const FORGET_AFTER: Duration = Duration::from_secs(10);

/// Services forgotten at once from which the allocator is asked to give memory back.
const RELEASE_FROM: usize = 16;

/// Names kept to count the distinct services of one summary; beyond, the count is a floor.
const MAX_COUNTED_SERVICES: usize = 1000;

/// Names one summary line gives as examples.
const EXAMPLES: usize = 3;

/// Dropped and expired requests since the last summary line, and when the next may go.
#[derive(Debug, Default)]
pub struct FloodLog {
    counts: FloodCounts,
    /// Distinct services affected (up to [`MAX_COUNTED_SERVICES`]).
    services: HashSet<String>,
    /// The first few of them, in the order they came.
    examples: Vec<String>,
    /// Whether more services were affected than `services` holds.
    more_services: bool,
    /// When the first request not logged yet was counted.
    since: Option<Instant>,
    /// When the last summary was logged.
    last: Option<Instant>,
}

/// How many requests went which way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FloodCounts {
    /// Dropped: the service already held `max_waiting_per_service`.
    pub service_queue_full: u64,
    /// Dropped: `max_waiting` requests already waited for services with no worker.
    pub queue_full: u64,
    /// Dropped: the broker already tracked the most services.
    pub too_many_services: u64,
    /// Expired with no worker for their service.
    pub expired: u64,
}

/// One summary line: what was dropped or expired since the last one, for how many services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloodSummary {
    /// The counts.
    pub counts: FloodCounts,
    /// Distinct services affected.
    pub services: usize,
    /// Whether there were more services than counted.
    pub more_services: bool,
    /// A few of their names.
    pub examples: Vec<String>,
}

impl FloodLog {
    /// Counts `n` requests for `service` that went the way `count` picks, at `now`.
    pub fn record(
        &mut self,
        now: Instant,
        service: &str,
        n: u64,
        count: impl FnOnce(&mut FloodCounts) -> &mut u64,
    ) {
        if n == 0 {
            return;
        }
        *count(&mut self.counts) += n;
        self.since.get_or_insert(now);
        if self.services.contains(service) {
            return;
        }
        if self.services.len() >= MAX_COUNTED_SERVICES {
            self.more_services = true;
            return;
        }
        self.services.insert(service.to_owned());
        if self.examples.len() < EXAMPLES {
            self.examples.push(service.to_owned());
        }
    }

    /// When the next summary is due, if there is anything to say: at once after a quiet
    /// interval, else one `interval` after the last.
    pub fn due(&self, interval: Duration) -> Option<Instant> {
        let since = self.since?;
        Some(self.last.map_or(since, |last| since.max(last + interval)))
    }

    /// The summary, if one is due at `now`; the counts start again from zero.
    pub fn take_due(&mut self, now: Instant, interval: Duration) -> Option<FloodSummary> {
        if self.due(interval).is_none_or(|due| now < due) {
            return None;
        }
        self.last = Some(now);
        self.since = None;
        let summary = FloodSummary {
            counts: std::mem::take(&mut self.counts),
            services: self.services.len(),
            more_services: std::mem::take(&mut self.more_services),
            examples: std::mem::take(&mut self.examples),
        };
        self.services.clear();
        self.services.shrink_to(MAX_COUNTED_SERVICES / 4);
        Some(summary)
    }
}

impl fmt::Display for FloodSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        let mut parts = Vec::new();
        if c.expired > 0 {
            parts.push(format!("{} expired with no worker", c.expired));
        }
        if c.service_queue_full > 0 {
            parts.push(format!(
                "{} dropped with their service's queue full (service_queue_full)",
                c.service_queue_full
            ));
        }
        if c.queue_full > 0 {
            parts.push(format!(
                "{} dropped with the requests waiting for services with no worker at their cap (queue_full)",
                c.queue_full
            ));
        }
        if c.too_many_services > 0 {
            parts.push(format!(
                "{} dropped with too many services tracked (too_many_services)",
                c.too_many_services
            ));
        }
        let plus = if self.more_services { "+" } else { "" };
        let plural = if self.services == 1 { "" } else { "s" };
        write!(
            f,
            "requests not served: {}, for {}{plus} service{plural} (e.g. {})",
            parts.join(", "),
            self.services,
            self.examples.join(", ")
        )
    }
}

impl Dispatcher {
    /// A client request: answered at once for a built-in name, else queued for its service
    /// and dispatched, unless a cap drops it.
    pub(super) fn client_request(
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
        if let Some(reason) = self.refusal(&name) {
            self.metrics.dropped(reason, 1);
            if let Some(service) = self.services.get(&name) {
                service.metrics.requests.inc();
            }
            self.flood.record(now, &name, 1, |c| match reason {
                DropReason::ServiceQueueFull => &mut c.service_queue_full,
                DropReason::TooManyServices => &mut c.too_many_services,
                _ => &mut c.queue_full,
            });
            return;
        }
        let metrics = &self.metrics;
        let service = self
            .services
            .entry(name.clone())
            .or_insert_with(|| Service::new(metrics.service(&name)));
        service.metrics.requests.inc();
        if service.workers == 0 {
            self.unserved_waiting += 1;
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

    /// Why a new request for `name` may not wait, if it may not.
    fn refusal(&self, name: &str) -> Option<DropReason> {
        let config = &self.config;
        match self.services.get(name) {
            Some(s) if s.requests.len() >= config.max_waiting_per_service => {
                Some(DropReason::ServiceQueueFull)
            }
            Some(s) if s.workers > 0 => None,
            _ if self.unserved_waiting >= config.max_waiting => Some(DropReason::QueueFull),
            None if self.services.len() >= config.max_services => Some(DropReason::TooManyServices),
            _ => None,
        }
    }

    /// Drops requests that waited too long for a worker-less service. Each pass looks at
    /// every service, so passes come at most every 1/64 of the expiry (a request may wait
    /// that much longer), however many services there are.
    pub(super) fn expire_requests(&mut self, now: Instant) {
        let expiry = self.config.request_expiry;
        let mut next: Option<Instant> = None;
        let mut expired_in_all = 0;
        for (name, service) in self.services.iter_mut() {
            let expired = service.expire_requests(now, expiry);
            if expired > 0 {
                expired_in_all += expired;
                self.flood
                    .record(now, name, expired as u64, |c| &mut c.expired);
            }
            if let Some(at) = service.next_expiry(expiry) {
                next = Some(next.map_or(at, |t| t.min(at)));
            }
        }
        self.unserved_waiting = self.unserved_waiting.saturating_sub(expired_in_all);
        self.metrics
            .dropped(DropReason::Expired, expired_in_all as u64);
        let pass_every = (expiry / 64).max(Duration::from_millis(1));
        self.next_expiry = next.map(|at| at.max(now + pass_every));
        if expired_in_all > 0 {
            self.mark_emptied(now);
        }
    }

    /// Notes, at `now`, the services nobody ever served that have just been left empty, and
    /// when to forget them: [`FORGET_AFTER`] from now, or at once when more than
    /// `max_waiting` are kept (however short the request expiry, what is kept stays
    /// bounded).
    pub(super) fn mark_emptied(&mut self, now: Instant) {
        let known = &self.known_services;
        let mut kept = 0;
        for (name, service) in self.services.iter_mut() {
            if service.is_unused() && !known.contains(name) {
                service.empty_since.get_or_insert(now);
                kept += 1;
            }
        }
        if kept > self.config.max_waiting {
            self.next_forget = Some(now);
        } else if kept > 0 && self.next_forget.is_none() {
            self.next_forget = Some(now + FORGET_AFTER);
        }
    }

    /// Forgets, with their metric series, the services that never had a worker and have
    /// held no request for [`FORGET_AFTER`] (names clients invented), or all of them when
    /// more than `max_waiting` are kept, and gives back the room they took.
    pub(super) fn forget_unserved(&mut self, now: Instant, out: &mut Vec<Effect>) {
        let linger = FORGET_AFTER;
        let metrics = &self.metrics;
        let known = &self.known_services;
        let before = self.services.len();
        let kept = self
            .services
            .iter()
            .filter(|(name, s)| s.empty_since.is_some() && s.is_unused() && !known.contains(*name))
            .count();
        let all = kept > self.config.max_waiting;
        let mut next: Option<Instant> = None;
        self.services.retain(|name, service| {
            let Some(since) = service.empty_since.filter(|_| service.is_unused()) else {
                return true;
            };
            if known.contains(name) {
                return true;
            }
            if all || since + linger <= now {
                metrics.forget_service(name);
                return false;
            }
            next = Some(next.map_or(since, |n| n.min(since)));
            true
        });
        // Passes look at every service: at most every 1/8 of the time kept.
        self.next_forget = next.map(|since| (since + linger).max(now + linger / 8));
        if self.services.len() < before && self.services.capacity() > 4 * self.services.len() + 64 {
            self.services.shrink_to_fit();
        }
        if before - self.services.len() >= RELEASE_FROM {
            out.push(Effect::ReleaseMemory);
        }
    }

    /// Requests waiting in services with no worker, counted afresh (for tests: the count
    /// kept as requests come and go must always equal it).
    #[cfg(test)]
    pub(super) fn unserved_recount(&self) -> (usize, usize) {
        let counted = self
            .services
            .values()
            .filter(|s| s.workers == 0)
            .map(|s| s.requests.len())
            .sum();
        (self.unserved_waiting, counted)
    }
}
