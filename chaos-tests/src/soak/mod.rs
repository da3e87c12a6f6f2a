//! The chaos soak: a whole cluster under a seeded random schedule of failures for a given
//! time, and the table that accounts for every call, write and change at the end.
//!
//! The cluster: a Binary Star pair of `hearth-broker` processes with durable state and
//! change feeds ([`crate::Pair`]), the workers of [`schedule::worker_layout`] (echo workers
//! on both brokers and on each alone, slow exec workers that can be hung mid-request),
//! retrying echo and slow callers and two probes over both brokers ([`crate::Load`], every
//! reply traced for the dual-active proof), and state writers with a change-feed watcher
//! ([`epochs`]). The schedule ([`schedule::schedule`]) is a pure function of the seed and the
//! duration; [`runner::Runner`] carries its events out one after the other, each whole,
//! until the duration has passed. Then the pair is left to settle, the load drains, the last
//! state epoch is checked, the dual-active watch is closed, and [`report::SoakReport`] says
//! what happened and whether anything was lost.
//!
//! `hearth-soak` (`src/bin/hearth-soak.rs`) runs this for as long as asked; the test
//! `tests/soak.rs` runs it for 90 s in CI.

pub mod epochs;
pub mod report;
pub mod rss;
pub mod runner;
pub mod schedule;

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::load::{ClientPlan, Load, LoadPlan, ReplyKind, Tally};
use crate::pair::{Pair, PairOptions, Side};
use crate::pair_scenario::PairScenario;

use epochs::StateEpochs;
use report::{longest_silence, overlapping, Silence, SoakReport};
use runner::{describe, Runner};
use schedule::{schedule, worker_layout, Planned};

/// What a soak runs and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoakConfig {
    /// How long the chaos phase lasts (the start-up and the final account come on top).
    pub duration: Duration,
    /// The seed of the schedule.
    pub seed: u64,
    /// Worker slots (see [`schedule::worker_layout`]).
    pub workers: usize,
    /// Echo callers (one slow caller and two probes come on top).
    pub callers: usize,
    /// State writer threads.
    pub writers: usize,
    /// The name in logs and of the log directory.
    pub name: String,
}

impl SoakConfig {
    /// A soak of `duration` with `seed`, 7 workers, 4 echo callers and 2 writers.
    pub fn new(duration: Duration, seed: u64) -> SoakConfig {
        SoakConfig {
            duration,
            seed,
            workers: 7,
            callers: 4,
            writers: 2,
            name: "soak".to_owned(),
        }
    }

    /// The command that replays this soak's schedule.
    pub fn replay(&self) -> String {
        format!(
            "hearth-soak --seed {} --duration {}s --workers {} --callers {} --writers {}",
            self.seed,
            self.duration.as_secs(),
            self.workers,
            self.callers,
            self.writers
        )
    }

    /// The schedule of this soak.
    pub fn schedule(&self) -> Vec<Planned> {
        schedule(self.seed, self.duration, &worker_layout(self.workers))
    }
}

/// How long a state epoch runs: about 10,000 keys' worth of writes (a writer writes 100 a
/// second at most), between 20 s and 2 min.
pub fn epoch_length(writers: usize) -> Duration {
    let secs = 10_000 / (writers.max(1) as u64 * 100);
    Duration::from_secs(secs.clamp(20, 120))
}

/// How long the loads wait, once stopped, for their last answers.
const DRAIN: Duration = Duration::from_secs(25);

/// Runs a soak and returns its report. Fails only if the cluster cannot start; a failure
/// during the run ends the chaos phase and is reported in [`SoakReport::error`] after the
/// final account.
pub fn run(config: &SoakConfig) -> anyhow::Result<SoakReport> {
    let started = Instant::now();
    let layout = worker_layout(config.workers);
    let plan = config.schedule();
    eprintln!(
        "{}: seed {} (replay: {}); {} events planned for {:?}",
        config.name,
        config.seed,
        config.replay(),
        plan.len(),
        config.duration
    );
    let pair = Pair::start(&config.name, PairOptions::default().with_durable_state())?;
    let scenario = PairScenario::new(&config.name, pair, StdRng::seed_from_u64(config.seed));
    let mut runner = Runner::start(scenario, &layout)?;
    let endpoints = runner.scenario.pair.endpoints();
    let slow_workers = layout.iter().filter(|w| w.service == "slow").count();
    let callers = Load::start(
        runner.scenario.pair.context(),
        LoadPlan {
            endpoints: endpoints.clone(),
            clients: caller_plans(config.callers, slow_workers),
            request_timeout: Duration::from_secs(1),
            retry: true,
            drain: DRAIN,
        },
    );
    let probe = ClientPlan::new("echo", 64, Duration::from_millis(50))
        .try_timeout(Duration::from_secs(8))
        .traced();
    let probes = Load::start(
        runner.scenario.pair.context(),
        LoadPlan {
            endpoints: endpoints.clone(),
            clients: vec![probe.clone(), probe.first_endpoint(1)],
            request_timeout: Duration::from_secs(1),
            retry: true,
            drain: DRAIN,
        },
    );
    let load_started = Instant::now();
    let mut epochs = StateEpochs::start(
        endpoints,
        runner.scenario.pair.feeds(),
        config.writers.max(1),
        epoch_length(config.writers),
    )?;
    runner.log(format!(
        "cluster up: {} workers, {} callers + 2 probes, {} writers, state epochs of {:?}",
        layout.len(),
        config.callers + 1,
        config.writers.max(1),
        epochs.length()
    ));

    let chaos_started = Instant::now();
    let mut reached = 0;
    let chaos = chaos_phase(
        &mut runner,
        &mut epochs,
        &plan,
        chaos_started + config.duration,
        &mut reached,
    );
    let chaos_took = chaos_started.elapsed();
    let mut errors = Vec::new();
    if let Err(e) = chaos {
        runner.log(format!("the chaos phase stopped: {e:#}"));
        errors.push(format!("{e:#}"));
    }

    // Recovery, however the chaos phase ended: every broker and worker slot that is down
    // brought back, the pair settled, the loads drained, the last epoch checked, the watch
    // closed.
    let recovered = runner.recover();
    match &recovered {
        Ok(active) => runner.log(format!(
            "chaos over after {reached} events; the {} is active; draining",
            active.role()
        )),
        Err(e) => errors.push(format!("recovery: {e:#}")),
    }
    let load_stopped = Instant::now();
    let callers = callers.finish();
    let probes = probes.finish();
    match epochs.finish(|| describe(&runner.scenario)) {
        Ok(line) => runner.log(line),
        Err(e) => errors.push(format!("the last state check: {e:#}")),
    }
    if let Err(e) = runner.scenario.close_watch() {
        errors.push(format!("closing the dual-active watch: {e:#}"));
    }
    let replies: Vec<_> = callers
        .replies
        .iter()
        .chain(&probes.replies)
        .copied()
        .collect();
    runner.scenario.watch.check_replies(&replies);
    runner.memory.sample_both(&runner.scenario.pair);
    if let Err(e) = runner.scenario.pair.check_alive() {
        errors.push(format!("{e:#}"));
    }

    let first_answers: Vec<Instant> = callers
        .replies
        .iter()
        .filter(|r| r.kind == ReplyKind::First)
        .map(|r| r.received)
        .collect();
    let (length, at) = longest_silence(first_answers, load_started, load_stopped);
    let silence = Silence {
        length,
        at: at.saturating_duration_since(load_started),
        during: overlapping(&runner.spans, at, length),
    };
    let mut dual_answers = runner.scenario.watch.violations().to_vec();
    dual_answers.extend(runner.violations.iter().cloned());
    let pair = &runner.scenario.pair;
    let report = SoakReport {
        seed: config.seed,
        replay: config.replay(),
        elapsed: started.elapsed(),
        chaos: chaos_took,
        planned: plan.len(),
        reached,
        events: runner.counts.clone(),
        worker_restarts: runner.scenario.counts.worker_restarts,
        longest_call: callers.max_latency,
        calls: Tally::counts_of([&callers, &probes]),
        silence: Some(silence),
        state: epochs.totals().clone(),
        failovers: runner.scenario.watch.failovers(),
        unexplained_failovers: runner.scenario.watch.unexplained_failovers(),
        active_changes: runner.active_changes,
        dual_answers,
        memory: Side::BOTH.map(|side| runner.memory.of(side).clone()),
        broker_starts: Side::BOTH.map(|side| pair.starts(side)),
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    };
    if report.passed() {
        pair.passed();
    }
    Ok(report)
}

/// The chaos phase: each planned event after its calm spell, the state epoch checked
/// between two events when due, until `until` or the end of the plan.
fn chaos_phase(
    runner: &mut Runner,
    epochs: &mut StateEpochs,
    plan: &[Planned],
    until: Instant,
    reached: &mut usize,
) -> anyhow::Result<()> {
    for (number, planned) in plan.iter().enumerate() {
        runner.idle(
            planned
                .calm
                .min(until.saturating_duration_since(Instant::now())),
        )?;
        if Instant::now() >= until {
            break;
        }
        if epochs.due() {
            runner.settle()?;
            let line = epochs.checkpoint(|| describe(&runner.scenario))?;
            runner.log(line);
        }
        *reached += 1;
        runner.execute(number, planned)?;
    }
    Ok(())
}

/// `callers` echo callers (2 in flight, a send every 5 ms at most) and one slow caller
/// with a request in flight per slow worker, all retrying on the other broker after 1 s
/// and traced.
fn caller_plans(callers: usize, slow_workers: usize) -> Vec<ClientPlan> {
    let echo = ClientPlan::new("echo", 2, Duration::from_millis(5)).traced();
    let mut plans: Vec<ClientPlan> = (0..callers)
        .map(|i| echo.clone().first_endpoint(i % 2))
        .collect();
    plans.push(ClientPlan::new("slow", slow_workers.max(1), Duration::ZERO).traced());
    plans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_hold_about_ten_thousand_keys() {
        assert_eq!(epoch_length(2), Duration::from_secs(50));
        assert_eq!(epoch_length(1), Duration::from_secs(100));
        assert_eq!(epoch_length(0), Duration::from_secs(100));
        assert_eq!(epoch_length(16), Duration::from_secs(20));
    }

    #[test]
    fn the_replay_command_gives_the_same_schedule() {
        let config = SoakConfig::new(Duration::from_secs(300), 99);
        assert_eq!(
            config.replay(),
            "hearth-soak --seed 99 --duration 300s --workers 7 --callers 4 --writers 2"
        );
        assert_eq!(config.schedule(), config.clone().schedule());
    }
}
