//! The seeded worker-chaos scenario and the summary line every chaos test prints.
//!
//! [`WorkerChaos::run`] keeps each service at its baseline number of workers while, at
//! random moments, it SIGKILLs a worker and starts a replacement (at once or after a pause),
//! sometimes kills every worker of a service for a moment (requests must wait, not vanish),
//! and, if asked, freezes a worker with SIGSTOP long enough for the broker to drop it, then
//! thaws it. Every choice comes from the caller's seeded RNG, every action is printed with
//! its time, and the loop is bounded in time and in actions.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::Rng;

use crate::cluster::{Cluster, WorkerKind};
use crate::load::{ClientPlan, LoadPlan, Tally};

/// The command of the `slow` service's exec workers: 0.2 s per request, reply = request.
/// Slow requests keep workers busy, so that kills hit workers holding a request.
pub const SLOW_CMD: &str = "sleep 0.2; cat";

/// Everything a chaos test counted, printed as one line.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// The run's seed.
    pub seed: u64,
    /// The load's counts.
    pub tally: Tally,
    /// Processes killed with SIGKILL (workers and brokers).
    pub kills: u64,
    /// Processes started again after a kill (workers and brokers).
    pub restarts: u64,
    /// Workers frozen with SIGSTOP.
    pub freezes: u64,
    /// The broker's `hearth_requeued_total`, summed over services (None if not read).
    pub requeued: Option<f64>,
    /// How long the test ran.
    pub elapsed: Duration,
}

impl Summary {
    /// `seed=… sent=… answered=… lost=… duplicated=… mismatched=… kills=… restarts=… …`
    pub fn line(&self) -> String {
        let t = &self.tally;
        let requeued = self
            .requeued
            .map_or_else(|| "?".to_owned(), |r| format!("{r}"));
        format!(
            "seed={} sent={} answered={} lost={} duplicated={} mismatched={} kills={} restarts={} \
             freezes={} late={} resent={} requeued={requeued} max_latency={}ms secs={:.1}",
            self.seed,
            t.sent,
            t.answered,
            t.lost,
            t.duplicated,
            t.mismatched,
            self.kills,
            self.restarts,
            self.freezes,
            t.late,
            t.resent,
            t.max_latency.as_millis(),
            self.elapsed.as_secs_f64(),
        )
    }

    /// Prints the line (with the test's name) to stderr, shown by `--nocapture`.
    pub fn print(&self, test: &str) {
        eprintln!("{test}: {}", self.line());
    }

    /// Panics unless every request was answered and every reply was one that was sent.
    pub fn assert_nothing_lost(&self) {
        let t = &self.tally;
        assert!(
            t.lost == 0 && t.mismatched == 0 && t.answered == t.sent,
            "requests lost or mismatched: {}; examples: {:#?}",
            self.line(),
            t.examples
        );
        assert!(t.sent > 0, "no request was sent: {}", self.line());
    }
}

/// The worker-chaos scenario: which services to keep up and how wild to be.
#[derive(Debug, Clone)]
pub struct WorkerChaos {
    /// How long chaos lasts (then every missing worker is started again).
    pub duration: Duration,
    /// The pause between two chaos actions is drawn from this range.
    pub pause: (Duration, Duration),
    /// Each service, how its workers work, and how many it has when all is well.
    pub services: Vec<(String, WorkerKind, usize)>,
    /// Chance that an action kills every worker of one service for a moment.
    pub blackout_chance: f64,
    /// Chance that an action freezes a worker (SIGSTOP) instead of killing it.
    pub freeze_chance: f64,
}

/// What [`WorkerChaos::run`] did.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChaosCounts {
    /// Workers killed.
    pub kills: u64,
    /// Replacement workers started.
    pub restarts: u64,
    /// Workers frozen (and thawed later).
    pub freezes: u64,
}

/// Most actions one run takes, whatever its duration.
const MAX_ACTIONS: u64 = 100_000;

impl WorkerChaos {
    /// Four `echo` workers and two `slow` ones; a kill (or, now and then, a blackout of a
    /// whole service) every 0.3 to 1.5 s.
    pub fn echo_and_slow(duration: Duration) -> WorkerChaos {
        WorkerChaos {
            duration,
            pause: (Duration::from_millis(300), Duration::from_millis(1500)),
            services: vec![
                ("echo".to_owned(), WorkerKind::Echo, 4),
                ("slow".to_owned(), WorkerKind::Exec(SLOW_CMD.to_owned()), 2),
            ],
            blackout_chance: 0.1,
            freeze_chance: 0.0,
        }
    }

    /// The load for [`WorkerChaos::echo_and_slow`]: three paced `echo` clients with two
    /// requests in flight each, and one `slow` client with four, enough to keep both `slow`
    /// workers busy. No retries: a request waits up to 20 s, as long as the broker needs to
    /// requeue it after a kill.
    pub fn echo_and_slow_load(endpoint: &str) -> LoadPlan {
        let echo = ClientPlan::new("echo", 2, Duration::from_millis(5));
        LoadPlan {
            endpoints: vec![endpoint.to_owned()],
            clients: vec![
                echo.clone(),
                echo.clone(),
                echo,
                ClientPlan::new("slow", 4, Duration::ZERO),
            ],
            request_timeout: Duration::from_secs(20),
            retry: false,
            drain: Duration::from_secs(25),
        }
    }

    /// Starts the baseline workers of every service.
    pub fn start_workers(&self, cluster: &mut Cluster) -> anyhow::Result<()> {
        for (service, kind, count) in &self.services {
            for _ in 0..*count {
                cluster.add_worker(service, kind)?;
            }
        }
        Ok(())
    }

    /// The `(service, count)` pairs of the baseline, for [`Cluster::wait_workers`].
    pub fn baseline(&self) -> Vec<(&str, u64)> {
        self.services
            .iter()
            .map(|(s, _, n)| (s.as_str(), *n as u64))
            .collect()
    }

    /// Runs the chaos for `duration`, then restores the baseline (replacements started,
    /// frozen workers thawed). Fails if the broker or a worker dies by itself.
    pub fn run(&self, cluster: &mut Cluster, rng: &mut StdRng) -> anyhow::Result<ChaosCounts> {
        let start = Instant::now();
        let end = start + self.duration;
        let log = |what: String| eprintln!("[{:7.2}s] {what}", start.elapsed().as_secs_f64());
        let mut counts = ChaosCounts::default();
        // (when, service): replacements to start.
        let mut replacements: Vec<(Instant, String)> = Vec::new();
        // (when, worker id): frozen workers to thaw.
        let mut thaws: Vec<(Instant, usize)> = Vec::new();
        let mut next_action = start + self.draw_pause(rng);
        let mut actions = 0;
        while Instant::now() < end && actions < MAX_ACTIONS {
            cluster.check_alive()?;
            let now = Instant::now();
            for (_, service) in take_due(&mut replacements, now) {
                let id = cluster.add_worker(&service, self.kind(&service))?;
                counts.restarts += 1;
                log(format!("start worker-{service}-{id}"));
            }
            for (_, id) in take_due(&mut thaws, now) {
                if let Some(w) = cluster.worker_mut(id) {
                    w.proc.thaw()?;
                    w.frozen = false;
                    log(format!("SIGCONT {:?}", w.proc));
                }
            }
            if now >= next_action {
                actions += 1;
                self.act(
                    cluster,
                    rng,
                    now,
                    &mut replacements,
                    &mut thaws,
                    &mut counts,
                    &log,
                )?;
                next_action = now + self.draw_pause(rng);
            }
            let soonest = replacements
                .iter()
                .map(|(t, _)| *t)
                .chain(thaws.iter().map(|(t, _)| *t))
                .chain([next_action, end])
                .min()
                .unwrap_or(end);
            std::thread::sleep(
                soonest
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(20)),
            );
        }
        for (_, service) in replacements.drain(..) {
            let id = cluster.add_worker(&service, self.kind(&service))?;
            counts.restarts += 1;
            log(format!("start worker-{service}-{id} (end of chaos)"));
        }
        for (_, id) in thaws.drain(..) {
            if let Some(w) = cluster.worker_mut(id) {
                w.proc.thaw()?;
                w.frozen = false;
                log(format!("SIGCONT {:?} (end of chaos)", w.proc));
            }
        }
        cluster.check_alive()?;
        Ok(counts)
    }

    /// One chaos action.
    #[allow(clippy::too_many_arguments)]
    fn act(
        &self,
        cluster: &mut Cluster,
        rng: &mut StdRng,
        now: Instant,
        replacements: &mut Vec<(Instant, String)>,
        thaws: &mut Vec<(Instant, usize)>,
        counts: &mut ChaosCounts,
        log: &dyn Fn(String),
    ) -> anyhow::Result<()> {
        let running: Vec<(usize, String)> = cluster
            .workers()
            .iter()
            .filter(|w| !w.frozen)
            .map(|w| (w.id, w.spec.service.clone()))
            .collect();
        if running.is_empty() {
            return Ok(());
        }
        let roll: f64 = rng.gen();
        if roll < self.blackout_chance {
            let (_, service) = &running[rng.gen_range(0..running.len())];
            let back = now + Duration::from_millis(rng.gen_range(300..=1000));
            log(format!("blackout: kill -9 every {service} worker"));
            for (id, s) in running.iter().filter(|(_, s)| s == service) {
                cluster.kill_worker(*id)?;
                counts.kills += 1;
                replacements.push((back, s.clone()));
            }
        } else if roll < self.blackout_chance + self.freeze_chance {
            let (id, _) = running[rng.gen_range(0..running.len())];
            // Longer than liveness x heartbeat, so the broker gives the worker up.
            let options = cluster.options();
            let dropped_after = options.heartbeat * options.liveness;
            let thaw_at = now + dropped_after + Duration::from_millis(rng.gen_range(200..=2000));
            if let Some(w) = cluster.worker_mut(id) {
                w.proc.freeze()?;
                w.frozen = true;
                log(format!("SIGSTOP {:?}", w.proc));
            }
            counts.freezes += 1;
            thaws.push((thaw_at, id));
        } else {
            let (id, service) = &running[rng.gen_range(0..running.len())];
            let pid = cluster
                .workers()
                .iter()
                .find(|w| w.id == *id)
                .map(|w| w.proc.pid());
            cluster.kill_worker(*id)?;
            counts.kills += 1;
            let delay = if rng.gen_bool(0.6) {
                Duration::ZERO
            } else {
                Duration::from_millis(rng.gen_range(100..=1000))
            };
            log(format!(
                "kill -9 worker-{service}-{id} (pid {}), replacement in {delay:?}",
                pid.unwrap_or(0)
            ));
            replacements.push((now + delay, service.clone()));
        }
        Ok(())
    }

    fn draw_pause(&self, rng: &mut StdRng) -> Duration {
        let (lo, hi) = self.pause;
        if hi <= lo {
            return lo;
        }
        Duration::from_millis(rng.gen_range(lo.as_millis() as u64..=hi.as_millis() as u64))
    }

    fn kind(&self, service: &str) -> &WorkerKind {
        self.services
            .iter()
            .find(|(s, _, _)| s == service)
            .map(|(_, k, _)| k)
            .expect("a service of the scenario")
    }
}

/// Removes and returns the entries whose time has come.
fn take_due<T>(list: &mut Vec<(Instant, T)>, now: Instant) -> Vec<(Instant, T)> {
    let (due, later): (Vec<_>, Vec<_>) = list.drain(..).partition(|(t, _)| *t <= now);
    *list = later;
    due
}
