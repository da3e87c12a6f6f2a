//! `hearth bench failover`: how long clients of a Binary Star pair go without an answer when
//! the active broker dies (`kill -9`) or stops in its tracks (SIGSTOP), and whether any
//! request is lost or answered by the broker that was replaced.
//!
//! One run: closed-loop throughput of a standalone broker and of a fresh pair, measured in
//! alternation (standalone, pair, standalone, pair...) so that drift on a shared machine
//! falls on both; then a steady stream of plain RFC 7 lazy-pirate clients ([`stream`])
//! while the active is killed and restarted `--rounds` times, then frozen and thawed as
//! often. Each round waits for the pair to settle (one active, one passive, the workers
//! registered with both, every client answered), waits a random fraction of a peer
//! heartbeat (seeded, so the disruption does not always fall at the same point of the
//! heartbeat cycle), disrupts the active, and ends three peer heartbeats after the pair has
//! settled again, so that what the returning broker causes is counted too. Its gap is the
//! longest time without any client getting an answer in that window ([`gap`]). Every child
//! process is started here, signalled by its PID and stopped when the run ends, fails or is
//! interrupted.

mod gap;
mod report;
mod stream;

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use hearth_supervise::{
    free_port, install_stop_signals, loopback_endpoint, settled, stop_requested, Broker,
    BrokerArgs, Launch, Pair, PairSpec, Programs, Reach, Side, Wait, WorkerArgs, WorkerKind,
    WorkerSpec, Workers,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::load::{self, LoadSpec, Wire};
use crate::cli::{Outcome, UsageError};
use report::{FailoverReport, KindReport, RoundResult, Settings, ThroughputReport, ThroughputRun};
use stream::{Stream, StreamSpec};

/// The service the echo workers offer and every client calls.
const SERVICE: &str = "echo";
/// Body size of every request.
const BODY_SIZE: usize = 64;
/// Missed heartbeats before brokers and workers drop each other.
const LIVENESS: u32 = 3;
/// How often a wait looks again.
const POLL_EVERY: Duration = Duration::from_millis(50);
/// A client counts as answering when it took an answer within this long.
const ANSWERING: Duration = Duration::from_millis(500);
/// After a kill or a freeze returned, the stopped broker can no longer have taken any
/// request sent later than this margin.
const QUIET_MARGIN: Duration = Duration::from_millis(10);
/// Warmup of each throughput run.
const LOAD_WARMUP: Duration = Duration::from_millis(500);
/// How long a round goes on watching after the pair settled again, in peer heartbeats.
const AFTERMATH_HEARTBEATS: u32 = 3;
/// How long the standalone broker and its workers get to come up.
const STARTUP: Duration = Duration::from_secs(10);

/// Flags of `hearth bench failover`.
///
/// Exit 0 when no request was lost, no reply mismatched and no replaced broker answered;
/// 1 otherwise. A gap or throughput ratio over its target is printed as MISS but does not
/// fail the command: timings on a shared machine are figures, not verdicts.
#[derive(Debug, Args)]
pub struct FailoverArgs {
    /// kill -9 rounds, and as many SIGSTOP rounds
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rounds: u32,
    /// Heartbeat interval on the pair's peer link
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = humantime::parse_duration)]
    peer_heartbeat: Duration,
    /// Heartbeat interval between brokers and workers
    #[arg(long, value_name = "DUR", default_value = "2500ms", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// Echo worker processes, each registered with both brokers
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    workers: u64,
    /// Stream clients: plain RFC 7 lazy-pirate clients, one request at a time each
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=256))]
    clients: u64,
    /// How long a stream client waits for a reply before resending to the other broker
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = humantime::parse_duration)]
    retry: Duration,
    /// How long a stream client retries one request before counting it lost
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = humantime::parse_duration)]
    give_up: Duration,
    /// Pause between an answer and the client's next request
    #[arg(long, value_name = "DUR", default_value = "2ms", value_parser = humantime::parse_duration)]
    pause: Duration,
    /// How long the active stays frozen [default: 4 peer heartbeats]
    #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration)]
    freeze: Option<Duration>,
    /// Measured duration of each throughput run
    #[arg(long, value_name = "DUR", default_value = "2s", value_parser = humantime::parse_duration)]
    load_duration: Duration,
    /// Throughput runs against each of standalone and pair, in alternation
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    load_runs: u32,
    /// Client threads of the throughput runs
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    load_clients: u64,
    /// Requests each throughput client keeps outstanding
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    load_inflight: u64,
    /// Seed of the random wait before each disruption [default: from the clock]
    #[arg(long)]
    seed: Option<u64>,
    /// Print exactly one JSON line instead of the table (progress still goes to stderr)
    #[arg(long)]
    json: bool,
}

impl FailoverArgs {
    fn freeze(&self) -> Duration {
        self.freeze.unwrap_or(self.peer_heartbeat * 4)
    }

    fn validate(&self) -> Result<(), UsageError> {
        for (flag, value) in [
            ("--peer-heartbeat", self.peer_heartbeat),
            ("--heartbeat", self.heartbeat),
            ("--retry", self.retry),
            ("--load-duration", self.load_duration),
        ] {
            if value.is_zero() {
                return Err(UsageError(format!("{flag} must be above zero")));
            }
        }
        if self.give_up < self.retry * 2 {
            return Err(UsageError(
                "--give-up must be at least twice --retry (one attempt on each broker)".into(),
            ));
        }
        if self.freeze() <= self.peer_heartbeat * 2 + self.retry {
            return Err(UsageError(
                "--freeze must be longer than two peer heartbeats (the expiry) plus --retry, \
                 or the other broker never takes over"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Kill -9 target: the stream's retry plus half of it (1.5 s at the 1 s retry).
    fn kill_target(&self) -> Duration {
        self.retry * 3 / 2
    }

    /// SIGSTOP target: 2.5 peer heartbeats.
    fn freeze_target(&self) -> Duration {
        self.peer_heartbeat * 5 / 2
    }

    fn load_spec(&self, endpoint: &str) -> LoadSpec {
        LoadSpec {
            endpoint: endpoint.to_owned(),
            wire: Wire::Mdp {
                service: SERVICE.to_owned(),
            },
            clients: self.load_clients as usize,
            inflight: self.load_inflight as usize,
            size: BODY_SIZE,
            warmup: LOAD_WARMUP,
            duration: self.load_duration,
        }
    }

    /// How long the pair may take to settle: a restarted broker's workers come back within
    /// a few worker heartbeats, the pair within a few peer heartbeats.
    fn settle_timeout(&self) -> Duration {
        Duration::from_secs(20) + self.heartbeat * 6 + self.peer_heartbeat * 6
    }

    /// How long the other broker may take to answer after a disruption.
    fn takeover_timeout(&self) -> Duration {
        Duration::from_secs(5) + self.freeze() + self.peer_heartbeat * 6 + self.retry * 4
    }
}

/// The two kinds of disruption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disruption {
    /// `kill -9` of the active, then a restart.
    Kill,
    /// SIGSTOP of the active, SIGCONT after `--freeze`.
    Freeze,
}

impl Disruption {
    /// As the report prints it.
    pub fn label(self) -> &'static str {
        match self {
            Disruption::Kill => "kill -9",
            Disruption::Freeze => "SIGSTOP",
        }
    }
}

/// Runs the whole benchmark; exit 1 if a request was lost, a reply mismatched or a
/// replaced broker answered.
pub fn run(args: &FailoverArgs) -> anyhow::Result<Outcome> {
    args.validate()?;
    let programs = Programs::siblings()?;
    install_stop_signals();

    let seed = args.seed.unwrap_or_else(clock_seed);
    eprintln!("seed {seed} (replay the disruption times with --seed {seed})");

    let mut standalone = Standalone::start(args, &programs)?;
    let mut bench = PairBench::start(args, &programs, seed)?;
    standalone.wait_ready()?;
    let active = bench.wait_settled("the pair to start")?;
    let pair_frontend = bench.pair.frontend(active);
    let mut runs = Vec::new();
    for run in 1..=args.load_runs {
        for (target, frontend) in [
            ("standalone", &standalone.frontend),
            ("pair", &pair_frontend),
        ] {
            let label = format!("{target} {run}/{}", args.load_runs);
            let report = load::run(&args.load_spec(frontend), &label, &mut |_| {})?;
            runs.push(ThroughputRun { target, report });
        }
    }
    drop(standalone);
    let rounds = bench.run_rounds()?;
    let stream = bench.stream.take().context("the stream was not started")?;
    let (counts, _log) = stream.finish()?;
    drop(bench);

    let report = FailoverReport {
        kill9: KindReport::new(Disruption::Kill, &rounds, ms(args.kill_target())),
        sigstop: KindReport::new(Disruption::Freeze, &rounds, ms(args.freeze_target())),
        stream: counts,
        dual_active: rounds.iter().map(|r| r.dual_active).sum(),
        throughput: ThroughputReport::new(runs),
        rounds,
        settings: Settings {
            seed,
            rounds: args.rounds,
            peer_heartbeat_ms: args.peer_heartbeat.as_millis() as u64,
            retry_ms: args.retry.as_millis() as u64,
            freeze_ms: args.freeze().as_millis() as u64,
            clients: args.clients,
            workers: args.workers,
        },
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        report.print();
    }
    Ok(super::outcome(report.clean()))
}

/// A standalone broker with as many workers as the pair has, to compare throughput with;
/// idle while the pair is measured, and stopped before the rounds.
struct Standalone {
    /// Held to be stopped on drop: first, so they leave before the broker.
    _workers: Workers,
    broker: Broker,
    frontend: String,
    count: u64,
}

impl Standalone {
    fn start(args: &FailoverArgs, programs: &Programs) -> anyhow::Result<Self> {
        let frontend = loopback_endpoint(free_port()?);
        let broker_args = BrokerArgs {
            heartbeat: Some(args.heartbeat),
            liveness: Some(LIVENESS),
            ..BrokerArgs::standalone(frontend.clone())
        };
        let launch = Launch::terminal();
        let broker = Broker::spawn(
            "hearth-broker standalone",
            &programs.broker,
            broker_args,
            launch.clone(),
        )?;
        let worker = WorkerArgs {
            heartbeat: Some(args.heartbeat),
            liveness: Some(LIVENESS),
            ..WorkerArgs::new(vec![frontend.clone()], SERVICE, WorkerKind::Echo)
        };
        let spec = WorkerSpec::new(SERVICE, WorkerKind::Echo, Reach::Both);
        let mut workers = Workers::new(&programs.worker, launch);
        for _ in 0..args.workers {
            workers.add(&spec, &worker)?;
        }
        Ok(Standalone {
            _workers: workers,
            broker,
            frontend,
            count: args.workers,
        })
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let ctx = zmq::Context::new();
        Ok(self
            .broker
            .wait_workers(&ctx, SERVICE, self.count, STARTUP)?)
    }
}

/// The pair, its workers and the stream clients of one run. Fields drop in order: the
/// clients first, then the pair (its workers, then its brokers).
struct PairBench<'a> {
    stream: Option<Stream>,
    pair: Pair,
    args: &'a FailoverArgs,
    rng: StdRng,
}

impl<'a> PairBench<'a> {
    /// Starts the pair on free loopback ports (no metrics, no change feeds) and workers
    /// registered with both brokers.
    fn start(
        args: &'a FailoverArgs,
        programs: &Programs,
        seed: u64,
    ) -> anyhow::Result<PairBench<'a>> {
        let mut spec = PairSpec::loopback(args.peer_heartbeat, args.heartbeat, LIVENESS)?;
        for side in Side::BOTH {
            let endpoints = spec.endpoints_mut(side);
            endpoints.metrics = None;
            endpoints.publish = None;
        }
        let mut pair = Pair::spawn(spec, programs, Launch::terminal())?;
        for _ in 0..args.workers {
            pair.add_worker(&WorkerSpec::new(SERVICE, WorkerKind::Echo, Reach::Both))?;
        }
        Ok(PairBench {
            stream: None,
            pair,
            args,
            rng: StdRng::seed_from_u64(seed),
        })
    }

    /// Starts the stream, then the kill rounds, then the freeze rounds.
    fn run_rounds(&mut self) -> anyhow::Result<Vec<RoundResult>> {
        let frontends = self.pair.endpoints();
        self.stream = Some(Stream::start(&StreamSpec {
            frontends: [frontends[0].clone(), frontends[1].clone()],
            service: SERVICE.to_owned(),
            clients: self.args.clients as usize,
            size: BODY_SIZE,
            retry: self.args.retry,
            give_up: self.args.give_up,
            pause: self.args.pause,
            keep_given_up: self.args.freeze() + self.args.peer_heartbeat * 10,
        })?);
        let mut results = Vec::new();
        for kind in [Disruption::Kill, Disruption::Freeze] {
            for round in 1..=self.args.rounds {
                let result = self.round(kind, round)?;
                eprintln!(
                    "{}",
                    result.line(self.args.rounds, self.stream()?.counts().lost)
                );
                results.push(result);
            }
        }
        Ok(results)
    }

    fn stream(&self) -> anyhow::Result<&Stream> {
        self.stream.as_ref().context("the stream is not running")
    }

    /// One disruption of the active, from a settled pair to a settled pair.
    fn round(&mut self, kind: Disruption, round: u32) -> anyhow::Result<RoundResult> {
        let what = format!("the pair to settle before {}", kind.label());
        self.wait_settled(&what)?;
        let phase = self.args.peer_heartbeat.mul_f64(self.rng.gen::<f64>());
        self.watch_until(Instant::now() + phase)?;
        let active = self.wait_settled(&what)?;
        let before = self.stream()?.counts();
        let stop = self.stream()?.now();
        match kind {
            Disruption::Kill => {
                self.pair.kill_broker(active)?;
            }
            Disruption::Freeze => self.pair.freeze_broker(active)?,
        }
        let quiet_from = self.stream()?.now() + QUIET_MARGIN;
        let other = active.other();
        match kind {
            Disruption::Kill => {
                self.wait_answered_by(other, stop, kind)?;
                self.pair.spawn_broker(active)?;
            }
            Disruption::Freeze => {
                self.watch_until(Instant::now() + self.args.freeze())?;
                self.pair.thaw_broker(active)?;
                self.wait_answered_by(other, stop, kind)?;
            }
        }
        let what = format!("the pair to settle after {}", kind.label());
        self.wait_settled(&what)?;
        self.watch_until(Instant::now() + self.args.peer_heartbeat * AFTERMATH_HEARTBEATS)?;
        let active_after = self.wait_settled(&what)?;
        let stream = self.stream()?;
        let end = stream.now();
        let after = stream.counts();
        let verdict = stream
            .with_replies(|replies| gap::judge_round(replies, active, stop, quiet_from, end))
            .with_context(|| {
                format!(
                    "{} round {round}: no answer after the disruption up to the settled pair",
                    kind.label()
                )
            })?;
        Ok(RoundResult {
            kind: kind.label(),
            round,
            stopped: active.role(),
            active_after: active_after.role(),
            gap: verdict.silence.length(),
            gap_ms: ms(verdict.silence.length()),
            takeover_ms: ms(verdict.takeover.saturating_sub(stop)),
            lost: after.lost - before.lost,
            duplicated: after.duplicated - before.duplicated,
            dual_active: verdict.dual_active,
            stale: verdict.stale,
        })
    }

    /// Fails at once on Ctrl-C, or if a broker, a worker or a stream client ended on its
    /// own.
    fn check_children(&mut self) -> anyhow::Result<()> {
        if stop_requested() {
            bail!("interrupted");
        }
        if let Some(crashed) = self.pair.exited().first() {
            bail!("{crashed}, on its own");
        }
        if let Some(stream) = &mut self.stream {
            if let Some(failure) = stream.failure() {
                return Err(failure.context("a stream client stopped"));
            }
        }
        Ok(())
    }

    /// Waits until the pair has settled (and, once the stream runs, every client takes
    /// answers from the active); returns the active side.
    fn wait_settled(&mut self, what: &str) -> anyhow::Result<Side> {
        let workers = self.args.workers;
        let wait = Wait::new(what, self.args.settle_timeout()).every(POLL_EVERY);
        wait.until(|| -> Result<_, String> {
            if let Err(fatal) = self.check_children() {
                return Ok(Err(fatal));
            }
            let states = self.pair.observe_both();
            let active = settled(&states, SERVICE, workers)?;
            if let Some(stream) = &self.stream {
                stream.all_answering(active, ANSWERING)?;
            }
            Ok(Ok(active))
        })?
    }

    /// Waits for the first reply from `side` after `stop`.
    fn wait_answered_by(
        &mut self,
        side: Side,
        stop: Duration,
        kind: Disruption,
    ) -> anyhow::Result<()> {
        let what = format!(
            "the {side} to answer after {} of the {}",
            kind.label(),
            side.other()
        );
        let wait = Wait::new(&what, self.args.takeover_timeout()).every(POLL_EVERY);
        wait.until(|| -> Result<_, String> {
            if let Err(fatal) = self.check_children() {
                return Ok(Err(fatal));
            }
            match self.stream() {
                Ok(stream) => match stream.first_reply_from(side, stop) {
                    Some(_) => Ok(Ok(())),
                    None => Err(format!("no reply from the {side} yet")),
                },
                Err(fatal) => Ok(Err(fatal)),
            }
        })?
    }

    /// Keeps watching the children until `until`.
    fn watch_until(&mut self, until: Instant) -> anyhow::Result<()> {
        while Instant::now() < until {
            self.check_children()?;
            std::thread::sleep(POLL_EVERY.min(until.saturating_duration_since(Instant::now())));
        }
        Ok(())
    }
}

/// A seed when none was given.
fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 100_000.0).round() / 100.0
}
