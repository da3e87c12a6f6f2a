//! The load generator: client threads that send requests with unique bodies over raw MDP/0.1
//! DEALER sockets and account for every one of them.
//!
//! Client `c`'s request number `s` to service `svc` has the body `c{c}-s{s}-{svc}-` followed
//! by padding computed from `s`, so any reply can be checked byte for byte against the body
//! that must have been sent, without storing the bodies. Every reply is one of:
//! * the answer to an outstanding request: *answered*;
//! * a second answer to an answered request: *duplicated* (at-least-once allows it);
//! * an answer after the client gave the request up: *late*;
//! * anything else (a body never sent, a wrong service, an undecodable message):
//!   *mismatched*, which is always a bug.
//!
//! A request that is never answered, or not within the per-request timeout (when clients do
//! not retry), is *lost*. Clients that retry (for broker restarts and failover) close their
//! DEALER on a timeout, open a new one to the *next* endpoint of the plan (the same one when
//! there is only one; the other broker of a pair otherwise, as a Lazy Pirate client does)
//! and resend the same bodies, so only the brokers, not a stale socket, decide what happens;
//! such a request is lost only if the run ends first. A client's socket is connected to one
//! endpoint only, so every answer is counted against the broker that sent it.
//!
//! A client may also be *traced* ([`ClientPlan::traced`]): it then records every reply it
//! receives with the endpoint it came from, when it came, and when its request was sent on
//! that socket ([`TracedReply`]), so a test can tell which broker decided a reply in which
//! window of time (the pair tests' dual-active check).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hearth_proto::{ClientMessage, Limits};

/// What one client thread does.
#[derive(Debug, Clone)]
pub struct ClientPlan {
    /// The service it sends to.
    pub service: String,
    /// Most requests it has outstanding at once.
    pub inflight: usize,
    /// Least time between two of its sends (pacing, so the load leaves CPU for the chaos).
    pub interval: Duration,
    /// Most requests it sends in the whole run (None: until stopped).
    pub limit: Option<u64>,
    /// The endpoint of the plan it connects to first (modulo their number).
    pub first_endpoint: usize,
    /// How long one try may take before a retrying client moves on (None: the plan's
    /// `request_timeout`).
    pub try_timeout: Option<Duration>,
    /// Whether every reply it receives is recorded in [`Tally::replies`].
    pub trace: bool,
}

impl ClientPlan {
    /// `inflight` requests at a time to `service`, one send every `interval` at most.
    pub fn new(service: &str, inflight: usize, interval: Duration) -> ClientPlan {
        ClientPlan {
            service: service.to_owned(),
            inflight: inflight.max(1),
            interval,
            limit: None,
            first_endpoint: 0,
            try_timeout: None,
            trace: false,
        }
    }

    /// The same plan starting on endpoint `index` of the load plan.
    pub fn first_endpoint(mut self, index: usize) -> ClientPlan {
        self.first_endpoint = index;
        self
    }

    /// The same plan waiting `timeout` per try instead of the load plan's timeout.
    pub fn try_timeout(mut self, timeout: Duration) -> ClientPlan {
        self.try_timeout = Some(timeout);
        self
    }

    /// The same plan recording every reply in [`Tally::replies`].
    pub fn traced(mut self) -> ClientPlan {
        self.trace = true;
        self
    }

    /// The same plan sending `limit` requests in all.
    pub fn limit(mut self, limit: u64) -> ClientPlan {
        self.limit = Some(limit);
        self
    }
}

/// A whole load: its clients and how they wait.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// The brokers' frontends: one broker, or the two of a pair. Clients start on the
    /// first; retrying clients move to the next one on a timeout.
    pub endpoints: Vec<String>,
    /// One thread per client.
    pub clients: Vec<ClientPlan>,
    /// Without retry: how long a request may stay unanswered before it is given up (lost).
    /// With retry: how long one try may take before the client reconnects (to the next
    /// endpoint) and resends.
    pub request_timeout: Duration,
    /// Whether clients reconnect and resend on a timeout.
    pub retry: bool,
    /// How long, once stopped, clients keep waiting for outstanding answers.
    pub drain: Duration,
}

/// Counts of one client, or of a whole load.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Distinct requests sent.
    pub sent: u64,
    /// Distinct requests answered.
    pub answered: u64,
    /// Requests never answered within the timeout or the run.
    pub lost: u64,
    /// Second (or later) answers to an answered request.
    pub duplicated: u64,
    /// Replies that match no request sent.
    pub mismatched: u64,
    /// Answers that came after their request had been given up.
    pub late: u64,
    /// Requests sent again on a fresh socket after a timeout (retrying clients only).
    pub resent: u64,
    /// The longest time from first send to answer.
    pub max_latency: Duration,
    /// First answers per endpoint of the plan, in the plan's order (which broker answered).
    pub answered_via: Vec<u64>,
    /// A few of the mismatched or lost requests, for the failure message.
    pub examples: Vec<String>,
    /// Every reply a traced client received (see [`ClientPlan::traced`]), in no set order.
    pub replies: Vec<TracedReply>,
}

/// One reply a traced client received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TracedReply {
    /// The client (its index in the plan).
    pub client: usize,
    /// The request's sequence number.
    pub seq: u64,
    /// The endpoint (index in the plan) whose socket it came on: the broker that sent it.
    pub via: usize,
    /// When the request was sent on that socket: the broker cannot have decided the reply
    /// earlier.
    pub sent: Instant,
    /// When the reply was received: the broker decided it no later.
    pub received: Instant,
    /// Whether it was the request's first answer, a duplicate or a late one.
    pub kind: ReplyKind,
}

/// How a traced reply was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// The first answer to an outstanding request.
    First,
    /// A further answer to an answered request.
    Duplicate,
    /// An answer to a request given up.
    Late,
}

impl Tally {
    /// The counts and examples of `tallies` together; their replies are left out.
    pub fn counts_of<'a>(tallies: impl IntoIterator<Item = &'a Tally>) -> Tally {
        let mut all = Tally::default();
        for t in tallies {
            all.add_counts(t);
        }
        all
    }

    /// How many first answers came via endpoint `index` of the plan (0 if none).
    pub fn answered_via(&self, index: usize) -> u64 {
        self.answered_via.get(index).copied().unwrap_or(0)
    }

    fn merge(&mut self, other: Tally) {
        self.add_counts(&other);
        self.replies.extend(other.replies);
    }

    /// Adds `other`'s counts and (up to the cap) its examples, not its replies.
    fn add_counts(&mut self, other: &Tally) {
        self.sent += other.sent;
        self.answered += other.answered;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.mismatched += other.mismatched;
        self.late += other.late;
        self.resent += other.resent;
        self.max_latency = self.max_latency.max(other.max_latency);
        if self.answered_via.len() < other.answered_via.len() {
            self.answered_via.resize(other.answered_via.len(), 0);
        }
        for (mine, theirs) in self.answered_via.iter_mut().zip(&other.answered_via) {
            *mine += theirs;
        }
        for e in &other.examples {
            self.example(e.clone());
        }
    }

    fn example(&mut self, text: String) {
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(text);
        }
    }
}

const MAX_EXAMPLES: usize = 8;

/// Live counters of one client, readable while the load runs.
#[derive(Debug, Default)]
struct Live {
    sent: AtomicU64,
    answered: AtomicU64,
}

const RUN: u8 = 0;
const DRAIN: u8 = 1;
const ABORT: u8 = 2;

/// A running load. [`Load::finish`] stops it and returns the tally; dropping it aborts it.
pub struct Load {
    phase: Arc<AtomicU8>,
    live: Vec<Arc<Live>>,
    threads: Vec<JoinHandle<Tally>>,
}

impl Load {
    /// Starts one thread per client of `plan`.
    pub fn start(ctx: &zmq::Context, plan: LoadPlan) -> Load {
        let phase = Arc::new(AtomicU8::new(RUN));
        let mut live = Vec::new();
        let mut threads = Vec::new();
        for (index, client) in plan.clients.iter().enumerate() {
            let counters = Arc::new(Live::default());
            live.push(counters.clone());
            let state = ClientState {
                index,
                plan: client.clone(),
                endpoints: plan.endpoints.clone(),
                request_timeout: plan.request_timeout,
                retry: plan.retry,
                drain: plan.drain,
                ctx: ctx.clone(),
                phase: phase.clone(),
                live: counters,
            };
            let thread = std::thread::Builder::new()
                .name(format!("load-client-{index}"))
                .spawn(move || state.run())
                .expect("spawning a load client thread");
            threads.push(thread);
        }
        Load {
            phase,
            live,
            threads,
        }
    }

    /// Requests sent so far, by all clients.
    pub fn sent(&self) -> u64 {
        self.live
            .iter()
            .map(|l| l.sent.load(Ordering::Relaxed))
            .sum()
    }

    /// Requests answered so far, by all clients.
    pub fn answered(&self) -> u64 {
        self.live
            .iter()
            .map(|l| l.answered.load(Ordering::Relaxed))
            .sum()
    }

    /// Requests answered so far to client `index` (in the plan's order).
    pub fn answered_by(&self, index: usize) -> u64 {
        self.live[index].answered.load(Ordering::Relaxed)
    }

    /// Stops sending, waits up to the plan's drain time for outstanding answers, and
    /// returns the counts of all clients.
    pub fn finish(mut self) -> Tally {
        self.phase.store(DRAIN, Ordering::SeqCst);
        let mut total = Tally::default();
        for thread in self.threads.drain(..) {
            match thread.join() {
                Ok(tally) => total.merge(tally),
                Err(_) => panic!("a load client thread panicked"),
            }
        }
        total
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.phase.store(ABORT, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The body of client `client`'s request `seq` to `service`.
pub fn request_body(client: usize, seq: u64, service: &str) -> Vec<u8> {
    let mut body = format!("c{client}-s{seq}-{service}-").into_bytes();
    // 16 to 200 bytes of padding that differ from request to request, so a reply carrying
    // pieces of another request's body cannot pass for this one.
    let len = 16 + (seq.wrapping_mul(7919) % 185) as usize;
    body.extend((0..len as u64).map(|i| b'a' + (seq.wrapping_mul(31).wrapping_add(i) % 26) as u8));
    body
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Outstanding,
    Answered,
    GivenUp,
}

/// One client thread's plan and handles.
struct ClientState {
    index: usize,
    plan: ClientPlan,
    endpoints: Vec<String>,
    request_timeout: Duration,
    retry: bool,
    drain: Duration,
    ctx: zmq::Context,
    phase: Arc<AtomicU8>,
    live: Arc<Live>,
}

/// How long one poll of a client's socket lasts at most.
const TICK: Duration = Duration::from_millis(10);

impl ClientState {
    /// A fresh DEALER connected to endpoint `target` only.
    fn socket(&self, target: usize) -> zmq::Socket {
        let socket = self.ctx.socket(zmq::DEALER).expect("a DEALER socket");
        socket.set_linger(0).expect("linger");
        socket
            .connect(&self.endpoints[target])
            .expect("connect to the broker");
        socket
    }

    fn run(self) -> Tally {
        assert!(!self.endpoints.is_empty(), "a load plan needs an endpoint");
        let service = self.plan.service.clone();
        let mut tally = Tally {
            answered_via: vec![0; self.endpoints.len()],
            ..Tally::default()
        };
        let request_timeout = self.plan.try_timeout.unwrap_or(self.request_timeout);
        // The endpoint the current socket is connected to.
        let mut target = self.plan.first_endpoint % self.endpoints.len();
        let mut socket = self.socket(target);
        // Traced clients only: seq -> when it was sent on the current socket.
        let mut sent_here: HashMap<u64, Instant> = HashMap::new();
        let mut fates: Vec<Fate> = Vec::new();
        // seq -> (first sent, this try sent)
        let mut inflight: HashMap<u64, (Instant, Instant)> = HashMap::new();
        let mut next_send = Instant::now();
        let mut drain_until: Option<Instant> = None;
        loop {
            let now = Instant::now();
            match self.phase.load(Ordering::SeqCst) {
                ABORT => break,
                DRAIN if drain_until.is_none() => drain_until = Some(now + self.drain),
                _ => {}
            }
            if let Some(until) = drain_until {
                if inflight.is_empty() || now >= until {
                    break;
                }
            }

            // Send, keeping `inflight` outstanding, paced.
            while drain_until.is_none()
                && inflight.len() < self.plan.inflight
                && now >= next_send
                && !matches!(self.plan.limit, Some(l) if tally.sent >= l)
            {
                let seq = fates.len() as u64;
                let body = request_body(self.index, seq, &service);
                let msg = ClientMessage::new(service.as_str(), body);
                if socket.send_multipart(msg.frames(), zmq::DONTWAIT).is_err() {
                    break; // queue full or no peer yet: try again on the next tick
                }
                fates.push(Fate::Outstanding);
                inflight.insert(seq, (now, now));
                if self.plan.trace {
                    sent_here.insert(seq, now);
                }
                tally.sent += 1;
                self.live.sent.fetch_add(1, Ordering::Relaxed);
                next_send = now + self.plan.interval;
            }

            // Timeouts: give up, or reconnect (to the next endpoint) and resend.
            let timed_out: Vec<u64> = inflight
                .iter()
                .filter(|(_, (_, tried))| now.duration_since(*tried) >= request_timeout)
                .map(|(seq, _)| *seq)
                .collect();
            if !timed_out.is_empty() {
                if self.retry {
                    target = (target + 1) % self.endpoints.len();
                    socket = self.socket(target);
                    sent_here.clear();
                    for (seq, (_, tried)) in inflight.iter_mut() {
                        let body = request_body(self.index, *seq, &service);
                        let msg = ClientMessage::new(service.as_str(), body);
                        if socket.send_multipart(msg.frames(), zmq::DONTWAIT).is_ok() {
                            *tried = now;
                            tally.resent += 1;
                            if self.plan.trace {
                                sent_here.insert(*seq, now);
                            }
                        }
                    }
                } else {
                    for seq in timed_out {
                        inflight.remove(&seq);
                        fates[seq as usize] = Fate::GivenUp;
                        tally.lost += 1;
                        tally.example(format!(
                            "client {} {service} request {seq}: no answer within {:?}",
                            self.index, request_timeout
                        ));
                    }
                }
            }

            // Receive whatever has come, waiting one tick at most.
            let wait = if drain_until.is_none() && inflight.len() < self.plan.inflight {
                next_send
                    .saturating_duration_since(Instant::now())
                    .min(TICK)
            } else {
                TICK
            };
            if socket
                .poll(zmq::POLLIN, wait.as_millis() as i64)
                .unwrap_or(0)
                == 0
            {
                continue;
            }
            while let Ok(frames) = socket.recv_multipart(zmq::DONTWAIT) {
                let received = Instant::now();
                let kind = self.account(
                    frames,
                    &service,
                    target,
                    &mut fates,
                    &mut inflight,
                    &mut tally,
                );
                // Every request answered on this socket was sent on it (and recorded).
                let sent = kind.and_then(|(seq, _)| sent_here.get(&seq).copied());
                if let (Some((seq, kind)), Some(sent)) = (kind, sent) {
                    tally.replies.push(TracedReply {
                        client: self.index,
                        seq,
                        via: target,
                        sent,
                        received,
                        kind,
                    });
                }
            }
        }
        if self.phase.load(Ordering::SeqCst) != ABORT {
            for (seq, _) in inflight.drain() {
                fates[seq as usize] = Fate::GivenUp;
                tally.lost += 1;
                tally.example(format!(
                    "client {} {service} request {seq}: unanswered at the end of the run",
                    self.index
                ));
            }
        }
        tally
    }

    /// Classifies one reply, which came from endpoint `via`; returns its request's sequence
    /// number and how it counted, unless it matched no request.
    fn account(
        &self,
        frames: Vec<Vec<u8>>,
        service: &str,
        via: usize,
        fates: &mut [Fate],
        inflight: &mut HashMap<u64, (Instant, Instant)>,
        tally: &mut Tally,
    ) -> Option<(u64, ReplyKind)> {
        let client = self.index;
        let mismatch = |tally: &mut Tally, why: String| {
            tally.mismatched += 1;
            tally.example(format!("client {client}: {why}"));
            None
        };
        let reply = match ClientMessage::decode(frames, &Limits::default()) {
            Ok(reply) => reply,
            Err(e) => return mismatch(tally, format!("undecodable reply: {e}")),
        };
        if reply.service != service || reply.body.len() != 1 {
            return mismatch(
                tally,
                format!(
                    "reply from service {:?} with {} body frames",
                    reply.service,
                    reply.body.len()
                ),
            );
        }
        let body = &reply.body[0];
        let Some(seq) = parse_seq(client, body).filter(|s| (*s as usize) < fates.len()) else {
            return mismatch(tally, format!("unknown body {:?}", preview(body)));
        };
        if *body != request_body(client, seq, service) {
            return mismatch(
                tally,
                format!("corrupted body for request {seq}: {:?}", preview(body)),
            );
        }
        match fates[seq as usize] {
            Fate::Outstanding => {
                fates[seq as usize] = Fate::Answered;
                if let Some((first, _)) = inflight.remove(&seq) {
                    tally.max_latency = tally.max_latency.max(first.elapsed());
                }
                tally.answered += 1;
                tally.answered_via[via] += 1;
                self.live.answered.fetch_add(1, Ordering::Relaxed);
                Some((seq, ReplyKind::First))
            }
            Fate::Answered => {
                tally.duplicated += 1;
                Some((seq, ReplyKind::Duplicate))
            }
            Fate::GivenUp => {
                tally.late += 1;
                Some((seq, ReplyKind::Late))
            }
        }
    }
}

/// The sequence number in a body of client `client`, if it is one of its bodies.
fn parse_seq(client: usize, body: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(body.get(..body.len().min(64))?).ok()?;
    let rest = text.strip_prefix(&format!("c{client}-s"))?;
    let digits = rest.split('-').next()?;
    digits.parse().ok()
}

fn preview(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(48)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_unique_and_parse_back() {
        let a = request_body(3, 41, "echo");
        let b = request_body(3, 42, "echo");
        assert_ne!(a, b);
        assert_eq!(parse_seq(3, &a), Some(41));
        assert_eq!(parse_seq(4, &a), None);
        assert_eq!(parse_seq(3, b"garbage"), None);
        assert!(a.len() >= 16 + "c3-s41-echo-".len());
    }
}
