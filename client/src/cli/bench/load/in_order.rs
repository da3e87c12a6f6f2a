//! Closed-loop runs of requests whose replies do not echo the request but come back in
//! order on each connection, as the broker's `state.*` services answer: an [`InOrder`]
//! exchange makes each request and judges its reply, on the clock and with the progress
//! line of [`super::run`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hearth_proto::{ClientMessage, Limits};

use super::{drive, ClientTally, Schedule, Timing};
use crate::cli::bench::stats::LoadReport;

/// A request-reply exchange whose replies come back on each connection in the order the
/// requests went out, as the broker's `state.*` services answer: one connection's requests
/// are applied in order and their replies released in that order once committed (only a
/// refusal is answered at once, and so may overtake). Replies are matched to requests
/// first in, first out, and the exchange judges each.
pub trait InOrder: Send + 'static {
    /// What the exchange keeps of an outstanding request, to judge its reply.
    type Ticket: Send;
    /// The service every request calls.
    fn service(&self) -> &str;
    /// Puts the next request's body frames into `frames` (reused between requests).
    fn request(&mut self, frames: &mut Vec<Vec<u8>>) -> Self::Ticket;
    /// Judges the body frames of the reply to the request `ticket` was issued for.
    fn judge(&mut self, ticket: Self::Ticket, body: &[Vec<u8>]) -> Verdict;
}

/// What an [`InOrder`] exchange made of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The answer the request asked for.
    Answered,
    /// A well-formed refusal (`{error}`): the request was not carried out.
    Refused,
    /// Not a reply this request can have.
    Mismatched,
}

/// One in-order run's parameters; there is one client per exchange given to
/// [`run_in_order`].
#[derive(Debug, Clone)]
pub struct InOrderSpec {
    /// Where every client connects.
    pub endpoint: String,
    /// Requests each client keeps outstanding.
    pub inflight: usize,
    /// Unmeasured time before the window.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
}

/// What an in-order run measured. A refused request counts neither as answered nor as
/// mismatched in `load`, only in `refused`, which, like `mismatched` and `lost`, counts
/// the whole run (warmup and drain too), not only the window.
#[derive(Debug, Clone, PartialEq)]
pub struct InOrderReport {
    /// Answers, latencies, lost and mismatched.
    pub load: LoadReport,
    /// Refusals (`{error}` replies and the like).
    pub refused: u64,
}

/// Runs one client per exchange, each keeping `spec.inflight` requests outstanding, on
/// the clock [`run`] uses; returns the report and the exchanges (with whatever they
/// recorded while judging).
pub fn run_in_order<E: InOrder>(
    spec: &InOrderSpec,
    exchanges: Vec<E>,
    label: &str,
    on_window: &mut dyn FnMut(bool),
) -> anyhow::Result<(InOrderReport, Vec<E>)> {
    let timing = Timing {
        endpoint: &spec.endpoint,
        warmup: spec.warmup,
        duration: spec.duration,
    };
    let mut exchanges: Vec<Option<E>> = exchanges.into_iter().map(Some).collect();
    let clients = exchanges.len();
    let inflight = spec.inflight;
    let results = drive(
        &timing,
        clients,
        label,
        on_window,
        |index, socket, schedule, answered| {
            let exchange = exchanges[index].take().expect("one thread per exchange");
            std::thread::Builder::new()
                .name(format!("bench-client-{index}"))
                .spawn(move || in_order_loop(&socket, exchange, inflight, schedule, &answered))
        },
    )?;
    let mut total = ClientTally::default();
    let mut refused = 0;
    let mut exchanges = Vec::with_capacity(clients);
    for (tally, exchange) in results {
        total.latencies_us.extend(tally.counts.latencies_us);
        total.lost += tally.counts.lost;
        total.mismatched += tally.counts.mismatched;
        refused += tally.refused;
        exchanges.push(exchange);
    }
    let report = InOrderReport {
        load: LoadReport::new(
            total.latencies_us,
            spec.duration,
            total.lost,
            total.mismatched,
        ),
        refused,
    };
    Ok((report, exchanges))
}

/// What one in-order client counted.
#[derive(Debug, Default)]
struct InOrderTally {
    counts: ClientTally,
    refused: u64,
}

/// One in-order client: keep `inflight` requests outstanding until the window closes,
/// then drain; match replies to requests in order.
fn in_order_loop<E: InOrder>(
    socket: &zmq::Socket,
    mut exchange: E,
    inflight: usize,
    schedule: Schedule,
    answered: &AtomicU64,
) -> anyhow::Result<(InOrderTally, E)> {
    let limits = Limits::default();
    let mut tally = InOrderTally::default();
    let mut outstanding: VecDeque<(Instant, E::Ticket)> = VecDeque::with_capacity(inflight);
    let mut frames = Vec::new();
    // A request made but refused by the high-water mark, sent again first.
    let mut unsent: Option<E::Ticket> = None;
    loop {
        let now = Instant::now();
        let sending = now < schedule.measure_end;
        if now >= schedule.drain_end || (!sending && outstanding.is_empty()) {
            break;
        }
        if sending {
            while outstanding.len() < inflight {
                let ticket = match unsent.take() {
                    Some(ticket) => ticket,
                    None => exchange.request(&mut frames),
                };
                let header = [&b""[..], b"MDPC01", exchange.service().as_bytes()];
                let parts = header.into_iter().chain(frames.iter().map(Vec::as_slice));
                match socket.send_multipart(parts, zmq::DONTWAIT) {
                    Ok(()) => outstanding.push_back((Instant::now(), ticket)),
                    Err(zmq::Error::EAGAIN) => {
                        unsent = Some(ticket);
                        break; // high-water mark: wait for replies
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if !schedule.poll_replies(socket, now, sending)? {
            continue;
        }
        while let Ok(reply) = socket.recv_multipart(zmq::DONTWAIT) {
            let received = Instant::now();
            let Some((sent, ticket)) = outstanding.pop_front() else {
                tally.counts.mismatched += 1; // a reply to nothing outstanding
                continue;
            };
            let verdict = match ClientMessage::decode(reply, &limits) {
                Ok(msg) if msg.service == exchange.service() => exchange.judge(ticket, &msg.body),
                _ => Verdict::Mismatched,
            };
            match verdict {
                Verdict::Answered => {
                    answered.fetch_add(1, Ordering::Relaxed);
                    if received >= schedule.measure_start && received < schedule.measure_end {
                        let us = received.duration_since(sent).as_micros();
                        tally
                            .counts
                            .latencies_us
                            .push(u32::try_from(us).unwrap_or(u32::MAX));
                    }
                }
                Verdict::Refused => tally.refused += 1,
                Verdict::Mismatched => tally.counts.mismatched += 1,
            }
        }
    }
    tally.counts.lost = outstanding.len() as u64;
    Ok((tally, exchange))
}
