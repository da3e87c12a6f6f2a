//! Broker events on a running [`Pair`], each carried out as a whole (the event, the
//! takeover it causes, the restart, the pair settling again) while the pair is watched:
//! every tick samples both running brokers into the [`DualActiveWatch`], starts the workers
//! due to be replaced, and, when worker chaos is on, kills a random worker now and then.
//!
//! The events keep the pair sane for clients: a broker is killed or frozen only when the
//! pair is settled (one active, one passive, every worker registered with both), the peer is
//! seen active before the victim is thawed or restarted (so a deposed broker could never be
//! the only active one), and a killed broker is always started again. So both brokers are
//! never unavailable at once, except for the moment a new active takes over.

use std::time::{Duration, Instant};

use anyhow::Context;
use hearth_supervise::Wait;
use rand::rngs::StdRng;
use rand::Rng;

use crate::dual_active::DualActiveWatch;
use crate::metrics::BrokerSample;
use crate::pair::{Pair, Side, WorkerSpec};
use crate::POLL;

/// How long a takeover, a restart or the pair settling may take on a loaded machine.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(20);
/// How often the brokers are sampled while the scenario waits.
const TICK: Duration = Duration::from_millis(60);

/// What the scenario did, for the summary line.
#[derive(Debug, Clone, Copy, Default)]
pub struct PairCounts {
    /// Brokers SIGKILLed.
    pub broker_kills: u64,
    /// Brokers frozen with SIGSTOP (and thawed).
    pub broker_freezes: u64,
    /// Brokers started again.
    pub broker_restarts: u64,
    /// Workers SIGKILLed.
    pub worker_kills: u64,
    /// Replacement workers started.
    pub worker_restarts: u64,
}

impl PairCounts {
    /// Kills, freezes and restarts of brokers.
    pub fn broker_events(&self) -> u64 {
        self.broker_kills + self.broker_freezes + self.broker_restarts
    }
}

/// Random worker kills during a scenario: a pause drawn from `pause` between two kills,
/// each victim replaced after a delay drawn from `replace_after`.
#[derive(Debug, Clone)]
pub struct WorkerKills {
    /// The pause between two kills.
    pub pause: (Duration, Duration),
    /// How long until a killed worker's replacement starts.
    pub replace_after: (Duration, Duration),
}

/// A pair under test, its watch, and the scenario's log.
pub struct PairScenario {
    /// The processes.
    pub pair: Pair,
    /// The dual-active bookkeeping.
    pub watch: DualActiveWatch,
    /// What has been done.
    pub counts: PairCounts,
    rng: StdRng,
    started: Instant,
    worker_kills: Option<WorkerKills>,
    next_worker_kill: Option<Instant>,
    replacements: Vec<(Instant, WorkerSpec)>,
    last_tick: Option<Instant>,
    test: String,
}

impl PairScenario {
    /// Takes over a started pair (primary active, backup passive) and its workers.
    pub fn new(test: &str, pair: Pair, rng: StdRng) -> PairScenario {
        PairScenario {
            pair,
            watch: DualActiveWatch::new(),
            counts: PairCounts::default(),
            rng,
            started: Instant::now(),
            worker_kills: None,
            next_worker_kill: None,
            replacements: Vec::new(),
            last_tick: None,
            test: test.to_owned(),
        }
    }

    /// The scenario's random numbers.
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    /// Prints `what` with the time since the scenario began.
    pub fn log(&self, what: impl AsRef<str>) {
        eprintln!(
            "{} [{:6.2}s] {}",
            self.test,
            self.started.elapsed().as_secs_f64(),
            what.as_ref()
        );
    }

    /// Turns random worker kills on (Some) or off (None).
    pub fn set_worker_kills(&mut self, kills: Option<WorkerKills>) {
        self.next_worker_kill = kills
            .as_ref()
            .map(|k| Instant::now() + draw(&mut self.rng, k.pause));
        self.worker_kills = kills;
    }

    /// One round of bookkeeping: crashes, replacements due, a worker kill due, and a
    /// sample of each running broker (at most every [`TICK`]).
    pub fn tick(&mut self) -> anyhow::Result<()> {
        self.pair.check_alive()?;
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) =
            self.replacements.drain(..).partition(|(t, _)| *t <= now);
        self.replacements = later;
        for (_, spec) in due {
            let id = self.pair.add_worker(&spec)?;
            self.counts.worker_restarts += 1;
            self.log(format!(
                "start worker {id} ({} {:?})",
                spec.service, spec.reach
            ));
        }
        if let (Some(kills), Some(next)) = (self.worker_kills.clone(), self.next_worker_kill) {
            if now >= next {
                self.kill_random_worker(&kills)?;
                self.next_worker_kill = Some(now + draw(&mut self.rng, kills.pause));
            }
        }
        if self.last_tick.map_or(true, |t| t.elapsed() >= TICK) {
            self.last_tick = Some(Instant::now());
            self.observe_both();
        }
        Ok(())
    }

    /// Samples each running, unfrozen broker into the watch; returns the samples.
    pub fn observe_both(&mut self) -> [Option<BrokerSample>; 2] {
        Side::BOTH.map(|side| self.observe(side))
    }

    fn observe(&mut self, side: Side) -> Option<BrokerSample> {
        let asked = Instant::now();
        let sample = self.pair.sample(side).ok()?;
        self.watch.observe(side, asked, &sample);
        Some(sample)
    }

    fn kill_random_worker(&mut self, kills: &WorkerKills) -> anyhow::Result<()> {
        let ids: Vec<usize> = self.pair.workers().iter().map(|w| w.id).collect();
        if ids.is_empty() {
            return Ok(());
        }
        let id = ids[self.rng.gen_range(0..ids.len())];
        let pid = self
            .pair
            .workers()
            .iter()
            .find(|w| w.id == id)
            .map(|w| w.proc.pid());
        let spec = self.pair.kill_worker(id)?;
        self.counts.worker_kills += 1;
        let delay = draw(&mut self.rng, kills.replace_after);
        self.log(format!(
            "kill -9 worker {id} ({} {:?}, pid {}), replacement in {delay:?}",
            spec.service,
            spec.reach,
            pid.unwrap_or(0)
        ));
        self.replacements.push((Instant::now() + delay, spec));
        Ok(())
    }

    /// Kills the workers `ids` at once; they are replaced after `replace_after`.
    pub fn kill_workers(&mut self, ids: &[usize], replace_after: Duration) -> anyhow::Result<()> {
        for id in ids {
            let spec = self.pair.kill_worker(*id)?;
            self.counts.worker_kills += 1;
            self.replacements
                .push((Instant::now() + replace_after, spec));
        }
        self.log(format!(
            "kill -9 workers {ids:?}, replacements in {replace_after:?}"
        ));
        Ok(())
    }

    /// Starts every pending replacement worker now.
    pub fn replace_all_now(&mut self) -> anyhow::Result<()> {
        for (t, _) in &mut self.replacements {
            *t = Instant::now();
        }
        self.tick()
    }

    /// Lets time pass, ticking.
    pub fn idle(&mut self, how_long: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + how_long;
        while Instant::now() < until {
            self.tick()?;
            std::thread::sleep(POLL.min(until.saturating_duration_since(Instant::now())));
        }
        Ok(())
    }

    /// Ticks until `check` says Ok, failing after `timeout` with the last value seen.
    pub fn wait<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&mut PairScenario) -> Result<T, String>,
    ) -> anyhow::Result<T> {
        let outcome = Wait::new(what, timeout).every(POLL).until(|| {
            if let Err(fatal) = self.tick() {
                return Ok(Err(fatal));
            }
            check(self).map(Ok)
        })?;
        outcome
    }

    /// Waits until `side` reports `state`.
    pub fn wait_state(&mut self, side: Side, state: &str) -> anyhow::Result<BrokerSample> {
        self.wait(
            &format!("the {} to be {state}", side.role()),
            EVENT_TIMEOUT,
            |s| match s.pair.sample(side) {
                Ok(sample) if sample.is(state) => Ok(sample),
                Ok(sample) => Err(format!("{:?}", sample.state)),
                Err(e) => Err(format!("{e:#}")),
            },
        )
    }

    /// Waits until one broker is active and the other passive and both count every
    /// running worker that reaches them; starts the passive's quiet period (its reply count
    /// must not move until the next broker event). Returns the active side.
    pub fn settle(&mut self) -> anyhow::Result<Side> {
        let active = self.wait("the pair to settle", EVENT_TIMEOUT, |s| {
            let active = s.pair.settled().ok_or_else(|| {
                format!(
                    "states {:?}",
                    Side::BOTH.map(|b| s.pair.sample(b).ok().map(|x| x.state))
                )
            })?;
            for side in Side::BOTH {
                let sample = s.pair.sample(side).map_err(|e| format!("{e:#}"))?;
                for w in s.pair.workers() {
                    let want = s.pair.expected_workers(side, &w.spec.service);
                    let seen = sample.workers_of(&w.spec.service);
                    if seen != want {
                        return Err(format!(
                            "{} counts {seen} {} workers, {want} run",
                            side.role(),
                            w.spec.service
                        ));
                    }
                }
            }
            Ok(active)
        })?;
        let passive = active.other();
        let sample = self.pair.sample(passive)?;
        self.watch.quiet_begin(passive, &sample);
        Ok(active)
    }

    /// Ends the quiet periods of both brokers, just before a broker event.
    fn before_event(&mut self) -> anyhow::Result<()> {
        for side in Side::BOTH {
            if !self.pair.is_up(side) || self.pair.is_frozen(side) {
                continue;
            }
            let first = self.pair.sample(side)?;
            let later = self.pair.sample(side)?;
            self.watch.quiet_end(side, &first, &later);
        }
        Ok(())
    }

    /// kill -9 of the active: the peer must take over; after `down` the killed broker is
    /// started again and must come back passive. The pair must be settled.
    pub fn kill_active(&mut self, down: Duration) -> anyhow::Result<()> {
        let active = self.settle()?;
        self.kill(active, "active", Some(down), &[], Duration::ZERO)
    }

    /// kill -9 of the active and, at the same moment, of the workers `workers` (replaced
    /// after `replace_after`); the peer must take over. Then, if `restart_after` is Some,
    /// as [`PairScenario::kill_active`]; else the killed broker stays down. Returns the side
    /// that was killed.
    pub fn kill_active_and_workers(
        &mut self,
        restart_after: Option<Duration>,
        workers: &[usize],
        replace_after: Duration,
    ) -> anyhow::Result<Side> {
        let active = self.settle()?;
        self.kill(active, "active", restart_after, workers, replace_after)?;
        Ok(active)
    }

    /// kill -9 of the passive; after `down` it is started again and must come back passive.
    pub fn kill_passive(&mut self, down: Duration) -> anyhow::Result<()> {
        let active = self.settle()?;
        self.kill(active.other(), "passive", Some(down), &[], Duration::ZERO)
    }

    fn kill(
        &mut self,
        victim: Side,
        was: &str,
        restart_after: Option<Duration>,
        workers: &[usize],
        replace_after: Duration,
    ) -> anyhow::Result<()> {
        self.before_event()?;
        self.watch.peer_event(victim);
        let what = format!("kill -9 the {was} {}", self.pair.describe(victim));
        self.pair.kill_broker(victim);
        self.watch.killed(victim, Instant::now(), what.clone());
        self.counts.broker_kills += 1;
        self.log(&what);
        if !workers.is_empty() {
            self.kill_workers(workers, replace_after)?;
        }
        let peer = victim.other();
        self.wait_state(peer, "active")?;
        self.log(format!("the {} is active", peer.role()));
        match restart_after {
            Some(down) => {
                self.idle(down)?;
                self.restart(victim)
            }
            None => Ok(()),
        }
    }

    fn restart(&mut self, side: Side) -> anyhow::Result<()> {
        self.pair
            .start_broker(side)
            .with_context(|| format!("restarting the {}", side.role()))?;
        self.counts.broker_restarts += 1;
        self.log(format!("restarted {}", self.pair.describe(side)));
        self.wait_state(side, "passive")
            .context("the restarted broker must come back passive")?;
        let active = self.settle()?;
        anyhow::ensure!(
            active == side.other(),
            "after the {} restarted, the {} is active",
            side.role(),
            active.role()
        );
        self.log(format!(
            "settled: {} active, {} passive",
            active.role(),
            side.role()
        ));
        Ok(())
    }

    /// SIGSTOP of the active until its peer has taken over and `beats` more peer heartbeats
    /// have passed, then SIGCONT: the resumed broker must step down to passive without
    /// answering. The pair must be settled.
    pub fn freeze_active(&mut self, beats: u32) -> anyhow::Result<()> {
        let active = self.settle()?;
        self.before_event()?;
        self.watch.peer_event(active);
        let what = format!("SIGSTOP the active {}", self.pair.describe(active));
        let before = self.pair.sample(active)?;
        self.pair.freeze_broker(active)?;
        let frozen_at = Instant::now();
        self.watch.frozen(active, frozen_at, &before, what.clone());
        self.counts.broker_freezes += 1;
        self.log(&what);
        let peer = active.other();
        self.wait_state(peer, "active")?;
        self.log(format!(
            "the {} took over {:?} after the freeze",
            peer.role(),
            frozen_at.elapsed()
        ));
        self.idle(self.pair.options().peer_heartbeat * beats)?;
        self.pair.thaw_broker(active)?;
        self.log(format!(
            "SIGCONT the {} after {:?}",
            active.role(),
            frozen_at.elapsed()
        ));
        let after = self
            .wait_state(active, "passive")
            .context("the resumed broker must step down")?;
        self.log(format!(
            "the {} stepped down: hearth_replies_total {} before SIGSTOP, {} once passive \
             (replies decided just before the freeze), split_brain {}, stalls {}",
            active.role(),
            before.replies,
            after.replies,
            after.split_brain,
            after.stalls
        ));
        let settled = self.settle()?;
        anyhow::ensure!(
            settled == peer,
            "after the freeze the {} is active",
            settled.role()
        );
        Ok(())
    }

    /// Ends the scenario's watching: a last sample of each broker, the passive's quiet
    /// period checked, depositions closed. Call after the load has drained.
    pub fn close_watch(&mut self) -> anyhow::Result<()> {
        self.before_event()?;
        self.observe_both();
        self.watch.close();
        Ok(())
    }
}

/// A duration drawn uniformly from `[lo, hi]`.
pub fn draw(rng: &mut StdRng, (lo, hi): (Duration, Duration)) -> Duration {
    if hi <= lo {
        return lo;
    }
    Duration::from_millis(rng.gen_range(lo.as_millis() as u64..=hi.as_millis() as u64))
}
