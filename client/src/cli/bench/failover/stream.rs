//! The steady call stream of `hearth bench failover`: plain RFC 7 lazy-pirate clients
//! written on bare DEALER sockets (not `hearth_client`), to measure what any RFC 7 client
//! sees. Each sends one request at a time, waits `retry` for the reply, then gives that
//! socket up and sends the same request to the *other* broker on a fresh socket, until an
//! answer comes or `give_up` passes (the request is then lost).
//!
//! A given-up socket is not closed at once, only stopped being waited on: it keeps listening
//! for `keep_given_up`, so a late reply from a broker that was frozen, or a second execution
//! of a request, is still seen and counted, though it never counts as the client's answer.
//! Every reply is logged with its arrival time and the broker it came from, which is all
//! [`super::gap`] needs.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use hearth_proto::{ClientMessage, Limits};
use hearth_supervise::Side;
use serde::Serialize;

use super::super::payload;
use super::gap::Reply;

/// The longest a client sleeps in `zmq::poll`, so that it notices an abort quickly.
const POLL_CAP: Duration = Duration::from_millis(50);

/// What the stream clients do.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// The primary's and the backup's frontend.
    pub frontends: [String; 2],
    /// The service called.
    pub service: String,
    /// Client threads.
    pub clients: usize,
    /// Body size in bytes, at least [`payload::ID_LEN`].
    pub size: usize,
    /// How long one attempt waits before the request goes to the other broker.
    pub retry: Duration,
    /// How long one request is retried before it counts as lost.
    pub give_up: Duration,
    /// Pause between an answer and the client's next request.
    pub pause: Duration,
    /// How long a given-up socket keeps listening for late replies.
    pub keep_given_up: Duration,
}

/// Running totals over all clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Requests answered.
    pub answered: u64,
    /// Requests still unanswered after `give_up`.
    pub lost: u64,
    /// Replies beyond the first for one request (on any socket).
    pub duplicated: u64,
    /// Replies that were not the exact body of a request this client sent.
    pub mismatched: u64,
}

#[derive(Default)]
struct AtomicCounts {
    answered: AtomicU64,
    lost: AtomicU64,
    duplicated: AtomicU64,
    mismatched: AtomicU64,
}

/// What the clients and the measuring thread share.
struct Shared {
    epoch: Instant,
    /// Finish the current request, start no new one.
    stopping: AtomicBool,
    /// Leave at once.
    aborted: AtomicBool,
    log: Mutex<Vec<Reply>>,
    counts: AtomicCounts,
}

impl Shared {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn log(&self) -> MutexGuard<'_, Vec<Reply>> {
        // A client that panicked holding the lock leaves a log that is still consistent.
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The running clients; dropping it stops them at once.
pub struct Stream {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Stream {
    /// Starts `spec.clients` clients, all on the primary first.
    pub fn start(spec: &StreamSpec) -> anyhow::Result<Stream> {
        let context = zmq::Context::new();
        let shared = Arc::new(Shared {
            epoch: Instant::now(),
            stopping: AtomicBool::new(false),
            aborted: AtomicBool::new(false),
            log: Mutex::new(Vec::with_capacity(1 << 16)),
            counts: AtomicCounts::default(),
        });
        let mut stream = Stream {
            shared,
            threads: Vec::with_capacity(spec.clients),
        };
        for index in 0..spec.clients {
            let client = LazyPirate::new(
                u16::try_from(index).context("too many stream clients")?,
                spec.clone(),
                context.clone(),
                stream.shared.clone(),
            );
            stream.threads.push(
                std::thread::Builder::new()
                    .name(format!("failover-client-{index}"))
                    .spawn(move || client.run())?,
            );
        }
        Ok(stream)
    }

    /// Time since the stream started, the clock every [`Reply`] is on.
    pub fn now(&self) -> Duration {
        self.shared.now()
    }

    /// Runs `f` over every reply logged so far, in arrival order.
    pub fn with_replies<T>(&self, f: impl FnOnce(&[Reply]) -> T) -> T {
        f(&self.shared.log())
    }

    /// The totals so far.
    pub fn counts(&self) -> Counts {
        let c = &self.shared.counts;
        Counts {
            answered: c.answered.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
            duplicated: c.duplicated.load(Ordering::Relaxed),
            mismatched: c.mismatched.load(Ordering::Relaxed),
        }
    }

    /// Why a client thread ended, if one did (before [`Stream::finish`] one only ends on an
    /// error).
    pub fn failure(&mut self) -> Option<anyhow::Error> {
        let index = self.threads.iter().position(JoinHandle::is_finished)?;
        let outcome = self.threads.swap_remove(index).join();
        Some(match outcome {
            Ok(Err(e)) => e,
            Ok(Ok(())) => anyhow!("a stream client ended early"),
            Err(_) => anyhow!("a stream client panicked"),
        })
    }

    /// The first reply from `side` that arrived after `after`.
    pub fn first_reply_from(&self, side: Side, after: Duration) -> Option<Duration> {
        self.with_replies(|log| {
            log.iter()
                .rev()
                .take_while(|r| r.at > after)
                .filter(|r| r.from == side)
                .map(|r| r.at)
                .min()
        })
    }

    /// `Ok` when every client took an answer from `side` within the last `within`;
    /// otherwise which clients did not.
    pub fn all_answering(&self, side: Side, within: Duration) -> Result<(), String> {
        let clients = self.threads.len();
        let since = self.now().saturating_sub(within);
        let mut answering = vec![false; clients];
        self.with_replies(|log| {
            for r in log.iter().rev().take_while(|r| r.at >= since) {
                if r.answer && r.from == side {
                    if let Some(seen) = answering.get_mut(usize::from(r.client)) {
                        *seen = true;
                    }
                }
            }
        });
        let silent: Vec<String> = (0..clients)
            .filter(|&i| !answering[i])
            .map(|i| i.to_string())
            .collect();
        if silent.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "stream clients {} had no answer from the {side} in the last {}",
                silent.join(", "),
                humantime::format_duration(within)
            ))
        }
    }

    /// Lets every client finish (answer or give up) its current request, then returns the
    /// totals and the full reply log.
    pub fn finish(mut self) -> anyhow::Result<(Counts, Vec<Reply>)> {
        self.shared.stopping.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            thread
                .join()
                .map_err(|_| anyhow!("a stream client thread panicked"))??;
        }
        let log = std::mem::take(&mut *self.shared.log());
        Ok((self.counts(), log))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.shared.aborted.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// One socket and what was sent on it.
struct Attempt {
    socket: zmq::Socket,
    side: Side,
    /// When the request was sent on it (stream clock).
    sent: Duration,
}

/// A socket given up, still listening until `close_at`.
struct GivenUp {
    attempt: Attempt,
    close_at: Instant,
}

/// The request a client waits for.
struct Pending {
    id: u64,
    attempt_deadline: Instant,
    give_up_at: Instant,
}

/// One lazy-pirate client.
struct LazyPirate {
    index: u16,
    spec: StreamSpec,
    context: zmq::Context,
    shared: Arc<Shared>,
    limits: Limits,
    /// The broker the next attempt goes to.
    side: Side,
    current: Option<Attempt>,
    given_up: VecDeque<GivenUp>,
    pending: Option<Pending>,
    /// Ids that got at least one reply, on any socket.
    replied: HashSet<u64>,
    next_seq: u64,
    body: Vec<u8>,
    scratch: Vec<u8>,
}

impl LazyPirate {
    fn new(index: u16, spec: StreamSpec, context: zmq::Context, shared: Arc<Shared>) -> Self {
        let size = spec.size;
        LazyPirate {
            index,
            spec,
            context,
            shared,
            limits: Limits::default(),
            side: Side::Primary,
            current: None,
            given_up: VecDeque::new(),
            pending: None,
            replied: HashSet::new(),
            next_seq: 0,
            body: vec![0; size],
            scratch: Vec::with_capacity(size),
        }
    }

    fn run(mut self) -> anyhow::Result<()> {
        let mut next_send = Instant::now();
        loop {
            if self.shared.aborted.load(Ordering::Relaxed) {
                return Ok(());
            }
            let now = Instant::now();
            while self.given_up.front().is_some_and(|g| g.close_at <= now) {
                self.given_up.pop_front();
            }
            match &self.pending {
                None if self.shared.stopping.load(Ordering::Relaxed) => return Ok(()),
                None if now >= next_send => {
                    self.send_new(now)?;
                    continue;
                }
                Some(p) if now >= p.attempt_deadline => {
                    let (id, lost) = (p.id, now >= p.give_up_at);
                    self.give_up_socket(now);
                    if lost {
                        self.shared.counts.lost.fetch_add(1, Ordering::Relaxed);
                        self.pending = None;
                        next_send = now;
                    } else {
                        self.resend(id, now)?;
                    }
                    continue;
                }
                _ => {}
            }
            let wake = match &self.pending {
                Some(p) => p.attempt_deadline,
                None => next_send,
            };
            let wait = wake.saturating_duration_since(now).min(POLL_CAP);
            if let Some(answered_at) = self.poll(wait)? {
                next_send = answered_at + self.spec.pause;
            }
        }
    }

    /// Sends a new request on the current socket (a new one if there is none).
    fn send_new(&mut self, now: Instant) -> anyhow::Result<()> {
        let id = (u64::from(self.index) << 40) | self.next_seq;
        self.next_seq += 1;
        self.pending = Some(Pending {
            id,
            attempt_deadline: now,
            give_up_at: now + self.spec.give_up,
        });
        self.resend(id, now)
    }

    /// Sends request `id` on the current socket, opening one to `self.side` if needed.
    fn resend(&mut self, id: u64, now: Instant) -> anyhow::Result<()> {
        if self.current.is_none() {
            let socket = self.context.socket(zmq::DEALER)?;
            socket.set_linger(0)?;
            let endpoint = &self.spec.frontends[self.side.index()];
            socket
                .connect(endpoint)
                .with_context(|| format!("cannot connect to {endpoint}"))?;
            self.current = Some(Attempt {
                socket,
                side: self.side,
                sent: Duration::ZERO,
            });
        }
        let attempt = self.current.as_mut().expect("opened above");
        payload::fill(id, &mut self.body);
        attempt.socket.send_multipart(
            [
                &b""[..],
                b"MDPC01",
                self.spec.service.as_bytes(),
                &self.body,
            ],
            0,
        )?;
        attempt.sent = self.shared.now();
        if let Some(p) = &mut self.pending {
            p.attempt_deadline = now + self.spec.retry;
        }
        Ok(())
    }

    /// Stops waiting on the current socket (it keeps listening a while) and turns to the
    /// other broker.
    fn give_up_socket(&mut self, now: Instant) {
        if let Some(attempt) = self.current.take() {
            self.given_up.push_back(GivenUp {
                attempt,
                close_at: now + self.spec.keep_given_up,
            });
        }
        self.side = self.side.other();
    }

    /// Waits up to `wait` for replies on every open socket and handles them; returns when
    /// the pending request was answered, if it was.
    fn poll(&mut self, wait: Duration) -> anyhow::Result<Option<Instant>> {
        let readable: Vec<bool> = {
            let mut items: Vec<zmq::PollItem<'_>> = Vec::with_capacity(1 + self.given_up.len());
            if let Some(current) = &self.current {
                items.push(current.socket.as_poll_item(zmq::POLLIN));
            }
            items.extend(
                self.given_up
                    .iter()
                    .map(|g| g.attempt.socket.as_poll_item(zmq::POLLIN)),
            );
            if items.is_empty() {
                std::thread::sleep(wait);
                return Ok(None);
            }
            let millis = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX).max(1);
            if zmq::poll(&mut items, millis)? == 0 {
                return Ok(None);
            }
            items.iter().map(zmq::PollItem::is_readable).collect()
        };
        let mut answered = None;
        let mut slot = 0;
        if self.current.is_some() {
            if readable[0] {
                answered = self.drain_current()?;
            }
            slot = 1;
        }
        for (i, is_readable) in readable[slot..].iter().enumerate() {
            if *is_readable {
                self.drain_given_up(i)?;
            }
        }
        Ok(answered)
    }

    fn drain_current(&mut self) -> anyhow::Result<Option<Instant>> {
        let mut answered = None;
        loop {
            let Some(current) = &self.current else {
                return Ok(answered);
            };
            let frames = match current.socket.recv_multipart(zmq::DONTWAIT) {
                Ok(frames) => frames,
                Err(zmq::Error::EAGAIN) => return Ok(answered),
                Err(e) => return Err(e.into()),
            };
            let (side, sent) = (current.side, current.sent);
            let Some(id) = self.verified_id(frames) else {
                continue;
            };
            let is_answer = self.pending.as_ref().is_some_and(|p| p.id == id);
            self.record(id, side, sent, is_answer);
            if is_answer {
                self.pending = None;
                self.shared.counts.answered.fetch_add(1, Ordering::Relaxed);
                answered = Some(Instant::now());
            }
        }
    }

    fn drain_given_up(&mut self, slot: usize) -> anyhow::Result<()> {
        loop {
            let Some(given_up) = self.given_up.get(slot) else {
                return Ok(());
            };
            let frames = match given_up.attempt.socket.recv_multipart(zmq::DONTWAIT) {
                Ok(frames) => frames,
                Err(zmq::Error::EAGAIN) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let (side, sent) = (given_up.attempt.side, given_up.attempt.sent);
            if let Some(id) = self.verified_id(frames) {
                self.record(id, side, sent, false);
            }
        }
    }

    /// The id of a reply that is exactly the body of a request this client sent; anything
    /// else is counted as mismatched.
    fn verified_id(&mut self, frames: Vec<Vec<u8>>) -> Option<u64> {
        let id = ClientMessage::decode(frames, &self.limits)
            .ok()
            .filter(|reply| reply.service == self.spec.service && reply.body.len() == 1)
            .and_then(|reply| {
                let body = &reply.body[0];
                let id = payload::id_of(body)?;
                let ours =
                    id >> 40 == u64::from(self.index) && (id & ((1 << 40) - 1)) < self.next_seq;
                (ours && payload::matches(id, body, self.spec.size, &mut self.scratch))
                    .then_some(id)
            });
        if id.is_none() {
            self.shared
                .counts
                .mismatched
                .fetch_add(1, Ordering::Relaxed);
        }
        id
    }

    fn record(&mut self, id: u64, from: Side, sent: Duration, answer: bool) {
        if !self.replied.insert(id) {
            self.shared
                .counts
                .duplicated
                .fetch_add(1, Ordering::Relaxed);
        }
        // Stamped under the lock, so the log is in arrival order.
        let mut log = self.shared.log();
        let at = self.shared.now();
        log.push(Reply {
            at,
            sent,
            from,
            answer,
            client: self.index,
        });
    }
}
