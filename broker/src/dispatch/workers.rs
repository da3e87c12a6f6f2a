//! The worker side of the dispatcher: READY, REPLY, HEARTBEAT and DISCONNECT from workers
//! (RFC 7), their expiry, and what happens to the requests a lost worker held.

use std::collections::VecDeque;
use std::time::Instant;

use hearth_proto::{mmi, Frame, WorkerMessage};
use tracing::{debug, info};

use super::service::{PendingRequest, Service};
use super::{hex, Dispatcher, Effect, HeldReply, Identity, Mode};
use crate::metrics::{DisconnectReason, DropReason};

/// A registered worker.
pub(super) struct Worker {
    pub(super) service: String,
    /// When the worker is dropped unless heard from.
    pub(super) expiry: Instant,
    /// The requests it holds, in the order it was given them (it runs them in that order).
    pub(super) in_flight: VecDeque<PendingRequest>,
    /// When it last replied: the moment it started on its next request, if one was waiting.
    pub(super) last_reply: Option<Instant>,
}

impl Dispatcher {
    pub(super) fn worker_message(
        &mut self,
        now: Instant,
        from: Identity,
        msg: WorkerMessage,
        out: &mut Vec<Effect>,
    ) {
        let known = self.workers.contains_key(&from);
        match msg {
            WorkerMessage::Ready { service } => {
                if known {
                    self.delete_worker(&from, Some(DisconnectReason::SecondReady), out);
                } else if mmi::is_reserved(&service) {
                    self.disconnect(from, DisconnectReason::ReservedService, out);
                } else {
                    self.register(now, from, service, out);
                }
            }
            WorkerMessage::Reply { client, body } => {
                if !known {
                    self.disconnect(from, DisconnectReason::UnknownWorker, out);
                    return;
                }
                self.reply(now, from, client, body, out);
            }
            WorkerMessage::Heartbeat => match self.workers.get_mut(&from) {
                Some(worker) => worker.expiry = now + self.config.heartbeat * self.config.liveness,
                None => self.disconnect(from, DisconnectReason::UnknownWorker, out),
            },
            WorkerMessage::Disconnect => {
                if known {
                    self.delete_worker(&from, None, out);
                }
            }
            WorkerMessage::Request { .. } => {
                if known {
                    self.delete_worker(&from, Some(DisconnectReason::ProtocolError), out);
                } else {
                    self.disconnect(from, DisconnectReason::ProtocolError, out);
                }
            }
        }
    }

    pub(super) fn register(
        &mut self,
        now: Instant,
        identity: Identity,
        name: String,
        out: &mut Vec<Effect>,
    ) {
        let metrics = &self.metrics;
        let service = self
            .services
            .entry(name.clone())
            .or_insert_with(|| Service::new(metrics.service(&name)));
        if service.workers == 0 {
            // Its waiting requests are no longer waiting for a service with no worker.
            self.unserved_waiting = self.unserved_waiting.saturating_sub(service.requests.len());
        }
        service.add_worker(identity.clone());
        service.metrics.show_duration();
        if self.known_services.insert(name.clone()) {
            info!(service = %name, "first worker for service");
        }
        debug!(worker = %hex(&identity), service = %name, "worker ready");
        let expiry = now + self.config.heartbeat * self.config.liveness;
        self.workers.insert(
            identity,
            Worker {
                service: name.clone(),
                expiry,
                in_flight: VecDeque::new(),
                last_reply: None,
            },
        );
        self.dispatch(&name, out);
    }

    pub(super) fn reply(
        &mut self,
        now: Instant,
        from: Identity,
        client: Frame,
        body: Vec<Frame>,
        out: &mut Vec<Effect>,
    ) {
        let Some(worker) = self.workers.get_mut(&from) else {
            return;
        };
        let Some(position) = worker.in_flight.iter().position(|r| r.client == client) else {
            // A REPLY for no request it holds: the worker is confused; drop it and give
            // whatever it held to another worker.
            self.delete_worker(&from, Some(DisconnectReason::UnexpectedReply), out);
            return;
        };
        worker.expiry = now + self.config.heartbeat * self.config.liveness;
        let request = worker.in_flight.remove(position);
        let started = request.as_ref().map_or(now, |r| {
            worker
                .last_reply
                .map_or(r.dispatched, |l| l.max(r.dispatched))
        });
        worker.last_reply = Some(now);
        let remaining = worker.in_flight.len();
        let name = worker.service.clone();
        let Some(service) = self.services.get_mut(&name) else {
            return;
        };
        service.record_service_time(now.saturating_duration_since(started));
        if remaining == 0 {
            service.room.retain(|w| *w != from);
            service.idle.push_back(from);
        } else if !service.room.contains(&from) {
            service.room.push_back(from);
        }
        let orphaned = request.as_ref().is_some_and(|r| r.orphaned);
        let held = HeldReply {
            client,
            service: name.clone(),
            body,
            received: request.map_or(now, |r| r.received),
        };
        match self.mode {
            Mode::Active if !orphaned => self.send_reply(now, held, out),
            Mode::Paused if !orphaned => self.held_replies.push(held),
            // The broker stopped being active since the worker got the request (every
            // request a passive's workers hold is orphaned): the client has moved on to the
            // active broker; answering now could only mislead it.
            _ => self.metrics.dropped(DropReason::NotActive, 1),
        }
        self.dispatch(&name, out);
    }

    /// Hands waiting requests of `name` to its idle workers.
    pub(super) fn dispatch(&mut self, name: &str, out: &mut Vec<Effect>) {
        if self.mode != Mode::Active {
            return;
        }
        let Some(service) = self.services.get_mut(name) else {
            return;
        };
        let depth = service.prefetch_depth(self.config.prefetch, self.config.prefetch_budget);
        while let Some(identity) = service.next_worker(depth > 1) {
            let Some(worker) = self.workers.get_mut(&identity) else {
                continue;
            };
            // A busy worker queued for room before the depth shrank waits for its replies.
            if worker.in_flight.len() >= depth {
                continue;
            }
            let Some(mut request) = service.pop_request() else {
                break;
            };
            request.dispatched = self.clock;
            out.push(Effect::ToWorker {
                worker: identity.clone(),
                msg: WorkerMessage::Request {
                    client: request.client.clone(),
                    body: request.body.clone(),
                },
            });
            worker.in_flight.push_back(request);
            if worker.in_flight.len() < depth {
                service.room.push_back(identity);
            }
        }
    }

    /// Removes a worker, sending DISCONNECT with `reason` if given, and dispatches the
    /// request it held to another worker.
    pub(super) fn delete_worker(
        &mut self,
        identity: &[u8],
        reason: Option<DisconnectReason>,
        out: &mut Vec<Effect>,
    ) {
        let Some(worker) = self.workers.remove(identity) else {
            return;
        };
        if let Some(reason) = reason {
            self.disconnect(identity.to_vec(), reason, out);
        }
        let Some(service) = self.services.get_mut(&worker.service) else {
            return;
        };
        service.remove_worker(identity);
        // Back to the head of the queue, in the order they came; orphaned ones (all of a
        // passive's) are dropped.
        for request in worker.in_flight.into_iter().rev() {
            if !request.orphaned {
                service.requeue(request);
            } else {
                self.metrics.dropped(DropReason::NotActive, 1);
            }
        }
        if service.workers == 0 {
            self.unserved_waiting += service.requests.len();
            if let Some(at) = service.next_expiry(self.config.request_expiry) {
                self.next_expiry = Some(self.next_expiry.map_or(at, |t| t.min(at)));
            }
        }
        self.dispatch(&worker.service, out);
    }

    pub(super) fn disconnect(
        &mut self,
        worker: Identity,
        reason: DisconnectReason,
        out: &mut Vec<Effect>,
    ) {
        debug!(worker = %hex(&worker), %reason, "sending DISCONNECT");
        self.metrics.disconnect(reason);
        out.push(Effect::ToWorker {
            worker,
            msg: WorkerMessage::Disconnect,
        });
    }

    /// Drops workers whose expiry has passed.
    pub(super) fn purge_workers(&mut self, now: Instant, out: &mut Vec<Effect>) {
        let expired: Vec<Identity> = self
            .workers
            .iter()
            .filter(|(_, w)| w.expiry <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for identity in expired {
            info!(worker = %hex(&identity), "worker expired (missed heartbeats)");
            self.delete_worker(&identity, Some(DisconnectReason::Expired), out);
        }
    }
}
