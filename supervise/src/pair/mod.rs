//! A Binary Star pair of `hearth-broker` processes and their `hearth-worker`s on this
//! machine, as `hearth up` runs it for a new user, `hearth bench failover` measures it and
//! the chaos tests break it: start, `kill -9`, freeze (SIGSTOP), thaw and restart each
//! broker by side, always by the PID this process started; add and kill workers that reach
//! one broker or both; and see where each broker stands.
//!
//! Two views of a broker, for two uses: [`Pair::observe`] asks `hearth.status` over ZeroMQ
//! (what a client sees; answered in every state without triggering a takeover), and
//! [`Pair::sample`] reads `/metrics` over HTTP with a short timeout (counters and state while
//! the pair is being broken). Neither asks a broker known to be down or frozen.
//!
//! [`side`] names the brokers, [`spec`] holds the command lines, [`observe`] judges what
//! was seen.

pub mod observe;
pub mod side;
pub mod spec;

use std::path::PathBuf;
use std::time::Duration;

use crate::broker::Broker;
use crate::error::Result;
use crate::metrics::BrokerSample;
use crate::proc::{Exited, Launch};
use crate::wait::wait_until;
use crate::worker::{Worker, WorkerSpec, Workers};
use crate::Programs;

pub use observe::{settled, Observed};
pub use side::{Reach, Side};
pub use spec::{BrokerEndpoints, PairSpec};

/// How long one `hearth.status` question may take; a broker that is frozen, gone or still
/// starting is reported [`Observed::Silent`] after this.
pub const STATUS_TIMEOUT: Duration = Duration::from_millis(300);
/// How long a `/metrics` GET may take before the broker counts as not answering.
pub const SAMPLE_TIMEOUT: Duration = Duration::from_millis(500);

/// The pair and its workers, started by this process and stopped when dropped (workers
/// first).
pub struct Pair {
    // Fields drop in this order: the workers leave before the brokers.
    workers: Workers,
    brokers: [Broker; 2],
    spec: PairSpec,
    ctx: zmq::Context,
}

impl Pair {
    /// Starts both brokers of `spec` (not waiting for them; see [`Pair::wait_state`] and
    /// [`settled`]).
    pub fn spawn(spec: PairSpec, programs: &Programs, launch: Launch) -> Result<Pair> {
        let mut pair = Pair::new(spec, programs, launch);
        for side in Side::BOTH {
            pair.spawn_broker(side)?;
        }
        Ok(pair)
    }

    /// The pair of `spec` with neither broker started yet, for a caller that starts them
    /// one at a time ([`Pair::spawn_broker`]).
    pub fn new(spec: PairSpec, programs: &Programs, launch: Launch) -> Pair {
        let broker = |side: Side| {
            Broker::new(
                &broker_name(side),
                &programs.broker,
                spec.broker_args(side),
                launch.clone(),
            )
        };
        Pair {
            workers: Workers::new(&programs.worker, launch.clone()),
            brokers: [broker(Side::Primary), broker(Side::Backup)],
            spec,
            ctx: zmq::Context::new(),
        }
    }

    /// What the pair was started from.
    pub fn spec(&self) -> &PairSpec {
        &self.spec
    }

    /// One side's broker.
    pub fn broker(&self, side: Side) -> &Broker {
        &self.brokers[side.index()]
    }

    /// One side's broker, to act on.
    pub fn broker_mut(&mut self, side: Side) -> &mut Broker {
        &mut self.brokers[side.index()]
    }

    /// The frontend endpoint of `side`.
    pub fn frontend(&self, side: Side) -> String {
        self.spec.endpoints(side).frontend.clone()
    }

    /// Both frontends, primary first: the endpoints of a client of the pair.
    pub fn endpoints(&self) -> Vec<String> {
        self.spec.frontends()
    }

    /// The change-feed endpoint of `side` (`--publish`), if it publishes one.
    pub fn feed(&self, side: Side) -> Option<String> {
        self.spec.endpoints(side).publish.clone()
    }

    /// Both change feeds, primary first; empty without feeds.
    pub fn feeds(&self) -> Vec<String> {
        Side::BOTH.iter().filter_map(|&s| self.feed(s)).collect()
    }

    /// The data dir of `side` (`--data-dir`), if the state model is kept on disk.
    pub fn data_dir(&self, side: Side) -> Option<PathBuf> {
        self.spec.data_dir(side)
    }

    /// The ZeroMQ context the pair asks its brokers with, for the caller's own sockets too.
    pub fn context(&self) -> &zmq::Context {
        &self.ctx
    }

    /// The PID of `side`'s process, if it has one.
    pub fn pid(&self, side: Side) -> Option<u32> {
        self.broker(side).pid()
    }

    /// Whether `side` has a process (running or frozen).
    pub fn is_up(&self, side: Side) -> bool {
        self.broker(side).is_up()
    }

    /// Whether `side` is frozen by SIGSTOP.
    pub fn is_frozen(&self, side: Side) -> bool {
        self.broker(side).is_frozen()
    }

    /// How many times `side` has been started (1 before any restart).
    pub fn starts(&self, side: Side) -> usize {
        self.broker(side).starts()
    }

    /// Starts `side` on its ports and data dir (again, after [`Pair::kill_broker`]); its
    /// PID. Does not wait for it.
    pub fn spawn_broker(&mut self, side: Side) -> Result<u32> {
        self.broker_mut(side).start()
    }

    /// `kill -9` of `side` if it runs, then [`Pair::spawn_broker`]; the new PID.
    pub fn restart_broker(&mut self, side: Side) -> Result<u32> {
        self.broker_mut(side).restart()
    }

    /// `kill -9` of `side` (frozen or not), reaped at once; it stays down until started
    /// again, and its exit is not a crash. Whether it was running.
    pub fn kill_broker(&mut self, side: Side) -> Result<bool> {
        Ok(self.broker_mut(side).kill9()?.is_some())
    }

    /// SIGSTOP of `side`: its sockets stay open, nothing answers.
    pub fn freeze_broker(&mut self, side: Side) -> Result<()> {
        self.broker_mut(side).freeze()
    }

    /// SIGCONT of a frozen `side`.
    pub fn thaw_broker(&mut self, side: Side) -> Result<()> {
        self.broker_mut(side).thaw()
    }

    /// Asks `side` for its state over ZeroMQ (not a killed or frozen one: that is known).
    pub fn observe(&self, side: Side) -> Observed {
        let broker = self.broker(side);
        if !broker.is_up() {
            return Observed::Killed;
        }
        if broker.is_frozen() {
            return Observed::Frozen;
        }
        match broker.status(&self.ctx, STATUS_TIMEOUT) {
            Ok(status) => Observed::Status(status),
            Err(_) => Observed::Silent,
        }
    }

    /// Asks both brokers, primary first.
    pub fn observe_both(&self) -> [Observed; 2] {
        Side::BOTH.map(|side| self.observe(side))
    }

    /// The side whose broker says it is active (over ZeroMQ), if exactly one does.
    pub fn active(&self) -> Option<Side> {
        let states = self.observe_both();
        let mut active = Side::BOTH
            .into_iter()
            .filter(|s| states[s.index()].state() == "active");
        match (active.next(), active.next()) {
            (Some(side), None) => Some(side),
            _ => None,
        }
    }

    /// Reads `side`'s `/metrics`. Fails at once, without asking, if it is down or frozen.
    pub fn sample(&self, side: Side) -> Result<BrokerSample> {
        self.broker(side).sample(SAMPLE_TIMEOUT)
    }

    /// Waits until `side`'s `/metrics` say `state`; the sample that said so.
    pub fn wait_state(&self, side: Side, state: &str, timeout: Duration) -> Result<BrokerSample> {
        wait_until(
            &format!("the {side} to be {state}"),
            timeout,
            || match self.sample(side) {
                Ok(s) if s.is(state) => Ok(s),
                Ok(s) => Err(format!("{:?}", s.state)),
                Err(e) => Err(e.to_string()),
            },
        )
    }

    /// The side that is active while the other is passive (by `/metrics`), both running
    /// and unfrozen, if the pair is so settled now.
    pub fn settled(&self) -> Option<Side> {
        let primary = self.sample(Side::Primary).ok()?;
        let backup = self.sample(Side::Backup).ok()?;
        match (primary.state.as_deref(), backup.state.as_deref()) {
            (Some("active"), Some("passive")) => Some(Side::Primary),
            (Some("passive"), Some("active")) => Some(Side::Backup),
            _ => None,
        }
    }

    /// Starts a worker and returns its id (it registers by itself; see
    /// [`Pair::wait_workers`] and [`settled`]).
    pub fn add_worker(&mut self, spec: &WorkerSpec) -> Result<usize> {
        let args = self.spec.worker_args(spec);
        self.workers.add(spec, &args)
    }

    /// The running workers, in start order.
    pub fn workers(&self) -> &[Worker] {
        self.workers.all()
    }

    /// The running worker with this id.
    pub fn worker_mut(&mut self, id: usize) -> Option<&mut Worker> {
        self.workers.get_mut(id)
    }

    /// `kill -9` of worker `id`, which is forgotten; its spec, to start a replacement.
    pub fn kill_worker(&mut self, id: usize) -> Result<WorkerSpec> {
        self.workers.kill(id)
    }

    /// How many running workers of `service` register with `side`.
    pub fn expected_workers(&self, side: Side, service: &str) -> u64 {
        self.workers()
            .iter()
            .filter(|w| w.spec.service == service && w.spec.reaches(side))
            .count() as u64
    }

    /// Waits until `side`'s `/metrics` count, for every service of a running worker,
    /// exactly the running workers that reach it. Fails at once if a process crashed.
    pub fn wait_workers(&mut self, side: Side, timeout: Duration) -> Result<()> {
        let mut services: Vec<String> = self
            .workers()
            .iter()
            .map(|w| w.spec.service.clone())
            .collect();
        services.sort();
        services.dedup();
        let expected: Vec<(String, u64)> = services
            .into_iter()
            .map(|s| {
                let n = self.expected_workers(side, &s);
                (s, n)
            })
            .collect();
        wait_until(
            &format!("workers {expected:?} on the {side}"),
            timeout,
            || {
                if let Some(crashed) = self.exited().into_iter().next() {
                    return Ok(Err(crashed.into()));
                }
                let sample = self.sample(side).map_err(|e| e.to_string())?;
                let seen: Vec<(String, u64)> = expected
                    .iter()
                    .map(|(s, _)| (s.clone(), sample.workers_of(s)))
                    .collect();
                if seen == expected {
                    Ok(Ok(()))
                } else {
                    Err(format!("{seen:?}"))
                }
            },
        )?
    }

    /// Every broker and worker that ended without being killed here (a crash).
    pub fn exited(&mut self) -> Vec<Exited> {
        let brokers = self.brokers.iter_mut().filter_map(Broker::exited);
        brokers.chain(self.workers.exited()).collect()
    }

    /// `side`'s role, PID and endpoints, for an event log.
    pub fn describe(&self, side: Side) -> String {
        let e = self.spec.endpoints(side);
        let pid = self
            .pid(side)
            .map_or_else(|| "-".to_owned(), |p| p.to_string());
        let mut text = format!("{side} (pid {pid}, frontend {}", e.frontend);
        if let Some(metrics) = &e.metrics {
            text += &format!(", metrics {metrics}");
        }
        text + ")"
    }

    /// Stops the workers (last started first), then the brokers: SIGTERM, SIGKILL after
    /// `grace`.
    pub fn terminate(&mut self, grace: Duration) {
        self.workers.terminate(grace);
        for broker in &mut self.brokers {
            let _ = broker.terminate(grace);
        }
    }
}

/// The name a broker of the pair has in messages: `hearth-broker primary`.
pub fn broker_name(side: Side) -> String {
    format!("hearth-broker {side}")
}
