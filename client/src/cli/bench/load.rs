//! The closed-loop load generator: `clients` threads, each with its own DEALER, each keeping
//! `inflight` requests outstanding, every reply verified against its regenerated body.
//!
//! All threads follow one clock: warmup until `measure_start`, measure until `measure_end`,
//! then stop sending and drain outstanding replies until `drain_end`. Only replies received
//! inside the measured window count towards throughput and latency; every reply, whenever
//! it comes, is checked; a request still unanswered after the drain is lost.
//!
//! [`run`] sends self-checking bodies that the far end echoes. [`run_in_order`] drives
//! request kinds whose replies do not echo the request but come back in order on each
//! connection (the broker's `state.*` services): an [`InOrder`] exchange makes each request
//! and judges its reply.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use hearth_proto::{ClientMessage, Limits};

use super::payload;
use super::stats::LoadReport;

mod in_order;

pub use in_order::{run_in_order, InOrder, InOrderReport, InOrderSpec, Verdict};

/// How long outstanding replies are waited for after the measured window.
pub const DRAIN: Duration = Duration::from_secs(2);

/// What the load speaks.
#[derive(Debug, Clone)]
pub enum Wire {
    /// RFC 7 requests `["", "MDPC01", service, body]` to a Majordomo broker.
    Mdp {
        /// The service to call.
        service: String,
    },
    /// `["", body]` to a bare ROUTER/DEALER relay in front of REP echo sockets.
    Raw,
}

/// One load run's parameters.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Where every client connects.
    pub endpoint: String,
    /// What they speak.
    pub wire: Wire,
    /// Client threads, one DEALER each.
    pub clients: usize,
    /// Requests each client keeps outstanding.
    pub inflight: usize,
    /// Body size in bytes, at least [`payload::ID_LEN`].
    pub size: usize,
    /// Unmeasured time before the window.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
}

/// The shared clock of one run.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    measure_start: Instant,
    measure_end: Instant,
    drain_end: Instant,
}

impl Schedule {
    /// Waits for replies on `socket` until the next moment of the schedule (at most 100 ms,
    /// so the caller looks at the clock again); true if some are ready.
    fn poll_replies(&self, socket: &zmq::Socket, now: Instant, sending: bool) -> zmq::Result<bool> {
        let wake = if now < self.measure_start {
            self.measure_start
        } else if sending {
            self.measure_end
        } else {
            self.drain_end
        };
        let wait = wake
            .saturating_duration_since(now)
            .min(Duration::from_millis(100));
        let mut items = [socket.as_poll_item(zmq::POLLIN)];
        Ok(zmq::poll(&mut items, wait.as_millis().max(1) as i64)? > 0)
    }
}

/// What one client thread counted.
#[derive(Debug, Default)]
struct ClientTally {
    latencies_us: Vec<u32>,
    lost: u64,
    mismatched: u64,
}

/// Runs the load. `on_window` is called on this thread with `true` when the measured window
/// opens and `false` when it closes, so a caller can read CPU counters exactly around it.
/// `label` prefixes the once-per-second progress line on stderr.
pub fn run(
    spec: &LoadSpec,
    label: &str,
    on_window: &mut dyn FnMut(bool),
) -> anyhow::Result<LoadReport> {
    let timing = Timing {
        endpoint: &spec.endpoint,
        warmup: spec.warmup,
        duration: spec.duration,
    };
    let tallies = drive(
        &timing,
        spec.clients,
        label,
        on_window,
        |index, socket, schedule, answered| {
            let spec = spec.clone();
            std::thread::Builder::new()
                .name(format!("bench-client-{index}"))
                .spawn(move || client_loop(&socket, index as u64, &spec, schedule, &answered))
        },
    )?;
    let mut total = ClientTally::default();
    for tally in tallies {
        total.latencies_us.extend(tally.latencies_us);
        total.lost += tally.lost;
        total.mismatched += tally.mismatched;
    }
    Ok(LoadReport::new(
        total.latencies_us,
        spec.duration,
        total.lost,
        total.mismatched,
    ))
}

/// Where the clients of one run connect, and its clock.
struct Timing<'a> {
    endpoint: &'a str,
    warmup: Duration,
    duration: Duration,
}

/// Starts one thread per client with `spawn` (given its index, a connected DEALER, the
/// shared clock and the shared answered counter), follows the clock on this thread (the
/// progress line, `on_window`), and returns what each thread returned.
fn drive<T: Send + 'static>(
    timing: &Timing<'_>,
    clients: usize,
    label: &str,
    on_window: &mut dyn FnMut(bool),
    mut spawn: impl FnMut(
        usize,
        zmq::Socket,
        Schedule,
        Arc<AtomicU64>,
    ) -> std::io::Result<JoinHandle<anyhow::Result<T>>>,
) -> anyhow::Result<Vec<T>> {
    let context = zmq::Context::new();
    let answered = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let measure_start = start + timing.warmup;
    let schedule = Schedule {
        measure_start,
        measure_end: measure_start + timing.duration,
        drain_end: measure_start + timing.duration + DRAIN,
    };
    let mut threads = Vec::with_capacity(clients);
    for index in 0..clients {
        let socket = context.socket(zmq::DEALER)?;
        socket.set_linger(0)?;
        socket
            .connect(timing.endpoint)
            .with_context(|| format!("cannot connect to {}", timing.endpoint))?;
        threads.push(spawn(index, socket, schedule, answered.clone())?);
    }

    let mut progress = Progress::new(label, answered.clone());
    sleep_until(schedule.measure_start, &mut progress);
    on_window(true);
    sleep_until(schedule.measure_end, &mut progress);
    on_window(false);
    progress.finish();

    let mut results = Vec::with_capacity(clients);
    for thread in threads {
        results.push(
            thread
                .join()
                .map_err(|_| anyhow!("a bench client thread panicked"))??,
        );
    }
    Ok(results)
}

/// One client: keep `inflight` requests outstanding until the window closes, then drain.
fn client_loop(
    socket: &zmq::Socket,
    index: u64,
    spec: &LoadSpec,
    schedule: Schedule,
    answered: &AtomicU64,
) -> anyhow::Result<ClientTally> {
    let limits = Limits::default();
    let mut tally = ClientTally::default();
    let mut outstanding: HashMap<u64, Instant> = HashMap::with_capacity(spec.inflight);
    let mut next_id = index << 40;
    let mut body = vec![0u8; spec.size];
    let mut scratch = Vec::with_capacity(spec.size);
    loop {
        let now = Instant::now();
        let sending = now < schedule.measure_end;
        if now >= schedule.drain_end || (!sending && outstanding.is_empty()) {
            break;
        }
        if sending {
            while outstanding.len() < spec.inflight {
                payload::fill(next_id, &mut body);
                let sent = match &spec.wire {
                    Wire::Mdp { service } => socket.send_multipart(
                        [&b""[..], b"MDPC01", service.as_bytes(), &body],
                        zmq::DONTWAIT,
                    ),
                    Wire::Raw => socket.send_multipart([&b""[..], &body], zmq::DONTWAIT),
                };
                match sent {
                    Ok(()) => {
                        outstanding.insert(next_id, Instant::now());
                        next_id += 1;
                    }
                    Err(zmq::Error::EAGAIN) => break, // high-water mark: wait for replies
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if !schedule.poll_replies(socket, now, sending)? {
            continue;
        }
        while let Ok(frames) = socket.recv_multipart(zmq::DONTWAIT) {
            let received = Instant::now();
            let Some(reply) = reply_body(&spec.wire, frames, &limits) else {
                tally.mismatched += 1;
                continue;
            };
            let Some(id) = payload::id_of(&reply) else {
                tally.mismatched += 1;
                continue;
            };
            let Some(sent) = outstanding.remove(&id) else {
                tally.mismatched += 1; // unknown id, or a duplicate
                continue;
            };
            if !payload::matches(id, &reply, spec.size, &mut scratch) {
                tally.mismatched += 1;
                continue;
            }
            answered.fetch_add(1, Ordering::Relaxed);
            if received >= schedule.measure_start && received < schedule.measure_end {
                let us = received.duration_since(sent).as_micros();
                tally
                    .latencies_us
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
            }
        }
    }
    tally.lost = outstanding.len() as u64;
    Ok(tally)
}

/// The one body frame of a reply, if the reply has the shape `wire` promises.
fn reply_body(wire: &Wire, frames: Vec<Vec<u8>>, limits: &Limits) -> Option<Vec<u8>> {
    match wire {
        Wire::Mdp { service } => {
            let reply = ClientMessage::decode(frames, limits).ok()?;
            if reply.service != *service || reply.body.len() != 1 {
                return None;
            }
            reply.body.into_iter().next()
        }
        Wire::Raw => match <[Vec<u8>; 2]>::try_from(frames) {
            Ok([delimiter, body]) if delimiter.is_empty() => Some(body),
            _ => None,
        },
    }
}

/// The once-per-second progress line on stderr: `\r`-updated on a terminal, plain lines
/// otherwise.
struct Progress {
    label: String,
    answered: Arc<AtomicU64>,
    tty: bool,
    started: Instant,
    last_tick: Instant,
    last_count: u64,
}

impl Progress {
    fn new(label: &str, answered: Arc<AtomicU64>) -> Progress {
        let now = Instant::now();
        Progress {
            label: label.to_owned(),
            answered,
            tty: std::io::stderr().is_terminal(),
            started: now,
            last_tick: now,
            last_count: 0,
        }
    }

    fn next_tick(&self) -> Instant {
        self.last_tick + Duration::from_secs(1)
    }

    fn tick(&mut self) {
        let now = Instant::now();
        let count = self.answered.load(Ordering::Relaxed);
        let rate = (count - self.last_count) as f64 / (now - self.last_tick).as_secs_f64();
        let line = format!(
            "{}: {:>3}s  {:>10.0} req/s  {:>10} answered",
            self.label,
            (now - self.started).as_secs(),
            rate,
            count
        );
        if self.tty {
            eprint!("\r{line}");
        } else {
            eprintln!("{line}");
        }
        self.last_tick = now;
        self.last_count = count;
    }

    fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

/// Sleeps until `until`, ticking the progress line each second on the way.
fn sleep_until(until: Instant, progress: &mut Progress) {
    loop {
        let now = Instant::now();
        if now >= until {
            return;
        }
        let tick = progress.next_tick();
        if now >= tick {
            progress.tick();
            continue;
        }
        std::thread::sleep(until.min(tick) - now);
    }
}
