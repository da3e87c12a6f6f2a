//! A Binary Star pair of `hearth-broker` processes and their workers on free loopback ports.
//!
//! The primary runs as `hearth-broker --role primary --frontend tcp://127.0.0.1:F1
//! --peer-bind tcp://127.0.0.1:P1 --peer-connect tcp://127.0.0.1:P2 --peer-heartbeat …
//! --heartbeat … --metrics 127.0.0.1:M1`, the backup the same way round. Each broker keeps
//! its ports for the whole test, so a broker killed and started again is the same broker to
//! its peer, its workers and its clients. A pair asked for durable state
//! ([`PairOptions::durable_state`]) also gives each broker `--data-dir` (its own directory
//! under one temp dir per test run, kept across that broker's restarts, removed once the
//! test passed) and `--publish tcp://127.0.0.1:PORT` (its change feed, on a port kept across
//! restarts too). Workers are `hearth-worker` processes with one
//! `--broker` per broker they reach: both ([`Reach::Both`], as DESIGN.md asks of workers of
//! a pair) or only one ([`Reach::Only`]).
//!
//! Where a broker stands is read from its `/metrics` with short timeouts
//! ([`Pair::sample`]): a frozen broker's kernel still accepts the connection but nobody
//! answers, so a frozen broker is never asked at all. Signals go only to the PIDs this
//! harness started ([`Proc`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};

use crate::cluster::{humantime_ms, worker_args, WorkerKind};
use crate::metrics::BrokerSample;
use crate::process::{self, LogDir, Proc, KEEP_LOGS_ENV};
use crate::{bin_path, free_port, wait_for};

/// One broker of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// `--role primary`: active when both start.
    Primary,
    /// `--role backup`: passive until the primary fails.
    Backup,
}

impl Side {
    /// Both sides, primary first (the order of [`Pair::endpoints`]).
    pub const BOTH: [Side; 2] = [Side::Primary, Side::Backup];

    /// 0 for the primary, 1 for the backup: the index of its endpoint in a load plan made
    /// from [`Pair::endpoints`].
    pub fn index(self) -> usize {
        match self {
            Side::Primary => 0,
            Side::Backup => 1,
        }
    }

    /// The other broker.
    pub fn other(self) -> Side {
        match self {
            Side::Primary => Side::Backup,
            Side::Backup => Side::Primary,
        }
    }

    /// The `--role` value, also the broker's name in logs.
    pub fn role(self) -> &'static str {
        match self {
            Side::Primary => "primary",
            Side::Backup => "backup",
        }
    }
}

/// Which brokers a worker connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// One `--broker` per broker of the pair.
    Both,
    /// Only this broker's frontend.
    Only(Side),
}

impl Reach {
    /// Whether a worker with this reach registers with `side`.
    pub fn includes(self, side: Side) -> bool {
        match self {
            Reach::Both => true,
            Reach::Only(s) => s == side,
        }
    }
}

/// Timings of the pair and its workers.
#[derive(Debug, Clone)]
pub struct PairOptions {
    /// `--peer-heartbeat`: the brokers' heartbeat to each other.
    pub peer_heartbeat: Duration,
    /// `--heartbeat` of brokers and workers.
    pub heartbeat: Duration,
    /// `--liveness` of the brokers.
    pub liveness: u32,
    /// `--request-expiry`: how long a request waits while its service has no worker.
    pub request_expiry: Duration,
    /// Whether each broker keeps the state model on disk (`--data-dir`, a directory per
    /// broker kept across its restarts) and publishes its change feed (`--publish`).
    pub durable_state: bool,
}

impl Default for PairOptions {
    /// A 300 ms peer heartbeat (a silent peer expires after 600 ms: long enough that a
    /// loaded 2-core machine does not starve a broker that long, short enough for tests),
    /// 200 ms worker heartbeats, liveness 3, a request expiry longer than any test, and the
    /// state model in memory only (no data dir, no change feed).
    fn default() -> Self {
        PairOptions {
            peer_heartbeat: Duration::from_millis(300),
            heartbeat: Duration::from_millis(200),
            liveness: 3,
            request_expiry: Duration::from_secs(120),
            durable_state: false,
        }
    }
}

impl PairOptions {
    /// The same timings, with data dirs and change feeds ([`PairOptions::durable_state`]).
    pub fn with_durable_state(self) -> PairOptions {
        PairOptions {
            durable_state: true,
            ..self
        }
    }
}

/// The data dirs of a pair with durable state: `primary/` and `backup/` under one fresh
/// directory of the system temp dir. Removed on drop once the test has passed (and the
/// brokers are dead: [`Pair`] drops its processes first); kept, its path printed, after a
/// failure or with `HEARTH_CHAOS_KEEP_LOGS`, as evidence next to the logs.
#[derive(Debug)]
struct DataDirs {
    root: PathBuf,
    passed: AtomicBool,
}

impl DataDirs {
    fn new(test: &str) -> DataDirs {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        DataDirs {
            root: std::env::temp_dir().join(format!(
                "hearth-chaos-{test}-data-{}-{nanos}",
                std::process::id()
            )),
            passed: AtomicBool::new(false),
        }
    }

    /// `side`'s directory; the broker creates it at its first start.
    fn of(&self, side: Side) -> PathBuf {
        self.root.join(side.role())
    }
}

impl Drop for DataDirs {
    fn drop(&mut self) {
        let keep = std::env::var_os(KEEP_LOGS_ENV).is_some()
            || !self.passed.load(Ordering::SeqCst)
            || std::thread::panicking();
        if keep {
            if self.root.exists() {
                eprintln!("broker data dirs kept in {}", self.root.display());
            }
        } else {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// One broker process of the pair, and the ports it keeps across restarts.
#[derive(Debug)]
struct PairBroker {
    frontend_port: u16,
    peer_port: u16,
    /// The change feed's port (bound only with durable state).
    publish_port: u16,
    metrics: SocketAddr,
    proc: Option<Proc>,
    frozen: bool,
    starts: usize,
}

/// One running worker process.
#[derive(Debug)]
pub struct PairWorker {
    /// Unique within the pair's test, in start order.
    pub id: usize,
    /// How to start it again: service, kind, reach and extra flags.
    pub spec: WorkerSpec,
    /// The process.
    pub proc: Proc,
}

/// What a worker serves and where, enough to start a replacement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSpec {
    /// The service it offers.
    pub service: String,
    /// Echo or exec.
    pub kind: WorkerKind,
    /// The brokers it connects to.
    pub reach: Reach,
    /// Further flags, e.g. `--concurrency 2`.
    pub extra: Vec<String>,
}

impl WorkerSpec {
    /// A worker of `service` doing `kind`, reaching `reach`, with no further flags.
    pub fn new(service: &str, kind: WorkerKind, reach: Reach) -> WorkerSpec {
        WorkerSpec {
            service: service.to_owned(),
            kind,
            reach,
            extra: Vec::new(),
        }
    }
}

/// How long a metrics GET may take before the broker counts as not answering.
pub const SAMPLE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a started broker may take to serve `/metrics`.
const BROKER_UP: Duration = Duration::from_secs(10);

/// The pair and its workers. Dropping it kills them all (workers first).
pub struct Pair {
    // Fields drop in this order: the processes first, the log directory (which prints the
    // logs of a failed test) last.
    workers: Vec<PairWorker>,
    brokers: [PairBroker; 2],
    data: Option<DataDirs>,
    ctx: zmq::Context,
    options: PairOptions,
    next_worker: usize,
    logs: LogDir,
}

impl Pair {
    /// Starts the primary and the backup on free ports and waits until the primary is
    /// active and the backup passive.
    pub fn start(test: &str, options: PairOptions) -> anyhow::Result<Pair> {
        let broker = || PairBroker {
            frontend_port: free_port(),
            peer_port: free_port(),
            publish_port: free_port(),
            metrics: SocketAddr::from(([127, 0, 0, 1], free_port())),
            proc: None,
            frozen: false,
            starts: 0,
        };
        let mut pair = Pair {
            workers: Vec::new(),
            brokers: [broker(), broker()],
            data: options.durable_state.then(|| DataDirs::new(test)),
            ctx: zmq::Context::new(),
            options,
            next_worker: 0,
            logs: LogDir::new(test)?,
        };
        pair.start_broker(Side::Primary)?;
        pair.start_broker(Side::Backup)?;
        pair.wait_state(Side::Primary, "active", Duration::from_secs(15))?;
        pair.wait_state(Side::Backup, "passive", Duration::from_secs(15))?;
        Ok(pair)
    }

    fn broker(&self, side: Side) -> &PairBroker {
        &self.brokers[side.index()]
    }

    fn broker_mut(&mut self, side: Side) -> &mut PairBroker {
        &mut self.brokers[side.index()]
    }

    /// The frontend endpoint of `side`.
    pub fn frontend(&self, side: Side) -> String {
        format!("tcp://127.0.0.1:{}", self.broker(side).frontend_port)
    }

    /// Both frontends, primary first: the endpoints of a load plan over the pair.
    pub fn endpoints(&self) -> Vec<String> {
        Side::BOTH.iter().map(|s| self.frontend(*s)).collect()
    }

    /// The change-feed endpoint of `side` (`--publish`), if the pair has durable state.
    pub fn feed(&self, side: Side) -> Option<String> {
        self.data
            .as_ref()
            .map(|_| format!("tcp://127.0.0.1:{}", self.broker(side).publish_port))
    }

    /// Both change feeds, primary first; empty without durable state.
    pub fn feeds(&self) -> Vec<String> {
        Side::BOTH.iter().filter_map(|s| self.feed(*s)).collect()
    }

    /// The data dir of `side` (`--data-dir`), if the pair has durable state.
    pub fn data_dir(&self, side: Side) -> Option<PathBuf> {
        self.data.as_ref().map(|d| d.of(side))
    }

    /// Where both brokers' data dirs live, if the pair has durable state.
    pub fn data_root(&self) -> Option<&Path> {
        self.data.as_ref().map(|d| d.root.as_path())
    }

    /// The HTTP address of `side` (`/metrics`, `/status`).
    pub fn metrics_addr(&self, side: Side) -> SocketAddr {
        self.broker(side).metrics
    }

    /// The timings.
    pub fn options(&self) -> &PairOptions {
        &self.options
    }

    /// Where the children's logs go.
    pub fn logs(&self) -> &LogDir {
        &self.logs
    }

    /// Says the test passed, so the logs (and data dirs) are removed rather than kept on
    /// drop.
    pub fn passed(&self) {
        self.logs.mark_passed();
        if let Some(data) = &self.data {
            data.passed.store(true, Ordering::SeqCst);
        }
    }

    /// A ZeroMQ context for the test's own sockets.
    pub fn context(&self) -> &zmq::Context {
        &self.ctx
    }

    /// The PID of `side`'s process, if it runs.
    pub fn pid(&self, side: Side) -> Option<libc::pid_t> {
        self.broker(side).proc.as_ref().map(Proc::pid)
    }

    /// Whether `side` has a process (running or frozen).
    pub fn is_up(&self, side: Side) -> bool {
        self.broker(side).proc.is_some()
    }

    /// Whether `side` is frozen by SIGSTOP.
    pub fn is_frozen(&self, side: Side) -> bool {
        self.broker(side).frozen
    }

    /// How many times `side` has been started (1 before any restart).
    pub fn starts(&self, side: Side) -> usize {
        self.broker(side).starts
    }

    /// Starts `side` on its ports (again, after [`Pair::kill_broker`]) and waits until it
    /// serves `/metrics`; whatever state it then reports is the caller's to check.
    pub fn start_broker(&mut self, side: Side) -> anyhow::Result<()> {
        if self.is_up(side) {
            bail!("the {} is already running", side.role());
        }
        let other = self.broker(side.other());
        let peer_connect = format!("tcp://127.0.0.1:{}", other.peer_port);
        let me = self.broker(side);
        let mut args = vec![
            "--role".to_owned(),
            side.role().to_owned(),
            "--frontend".to_owned(),
            format!("tcp://127.0.0.1:{}", me.frontend_port),
            "--peer-bind".to_owned(),
            format!("tcp://127.0.0.1:{}", me.peer_port),
            "--peer-connect".to_owned(),
            peer_connect,
            "--peer-heartbeat".to_owned(),
            humantime_ms(self.options.peer_heartbeat),
            "--heartbeat".to_owned(),
            humantime_ms(self.options.heartbeat),
            "--liveness".to_owned(),
            self.options.liveness.to_string(),
            "--request-expiry".to_owned(),
            humantime_ms(self.options.request_expiry),
            "--metrics".to_owned(),
            me.metrics.to_string(),
        ];
        if let (Some(dir), Some(feed)) = (self.data_dir(side), self.feed(side)) {
            args.extend([
                "--data-dir".to_owned(),
                dir.display().to_string(),
                "--publish".to_owned(),
                feed,
            ]);
        }
        let metrics = me.metrics;
        let name = format!("broker-{}-{}", side.role(), me.starts + 1);
        let mut proc = Proc::spawn(&name, &bin_path("hearth-broker"), &args, &self.logs)?;
        let up = wait_for(&format!("{name} to serve /metrics"), BROKER_UP, || {
            if let Some(status) = proc.try_status() {
                return Ok(Err(anyhow!("{name} exited with {status}")));
            }
            BrokerSample::fetch(metrics, SAMPLE_TIMEOUT)
                .map(Ok)
                .map_err(|e| format!("{e:#}"))
        })?;
        up.with_context(|| format!("see {}", self.logs.path().display()))?;
        let broker = self.broker_mut(side);
        broker.proc = Some(proc);
        broker.frozen = false;
        broker.starts += 1;
        Ok(())
    }

    /// SIGKILLs `side` (thawed or not) and reaps it. Returns whether it was running.
    pub fn kill_broker(&mut self, side: Side) -> bool {
        let broker = self.broker_mut(side);
        broker.frozen = false;
        match broker.proc.take() {
            Some(mut proc) => {
                proc.kill9();
                true
            }
            None => false,
        }
    }

    /// SIGSTOPs `side`: its sockets stay open, nothing answers.
    pub fn freeze_broker(&mut self, side: Side) -> anyhow::Result<()> {
        let broker = self.broker_mut(side);
        let proc = broker
            .proc
            .as_mut()
            .ok_or_else(|| anyhow!("the {} is not running", side.role()))?;
        proc.freeze();
        broker.frozen = true;
        Ok(())
    }

    /// SIGCONTs a frozen `side`.
    pub fn thaw_broker(&mut self, side: Side) -> anyhow::Result<()> {
        let broker = self.broker_mut(side);
        let proc = broker
            .proc
            .as_mut()
            .ok_or_else(|| anyhow!("the {} is not running", side.role()))?;
        proc.thaw();
        broker.frozen = false;
        Ok(())
    }

    /// Reads `side`'s metrics. Fails at once, without asking, if it is down or frozen.
    pub fn sample(&self, side: Side) -> anyhow::Result<BrokerSample> {
        let broker = self.broker(side);
        if broker.proc.is_none() {
            bail!("the {} is down", side.role());
        }
        if broker.frozen {
            bail!("the {} is frozen", side.role());
        }
        BrokerSample::fetch(broker.metrics, SAMPLE_TIMEOUT)
    }

    /// Waits until `side` reports `state`; returns the sample that said so.
    pub fn wait_state(
        &self,
        side: Side,
        state: &str,
        timeout: Duration,
    ) -> anyhow::Result<BrokerSample> {
        wait_for(
            &format!("the {} to be {state}", side.role()),
            timeout,
            || match self.sample(side) {
                Ok(s) if s.is(state) => Ok(s),
                Ok(s) => Err(format!("{:?}", s.state)),
                Err(e) => Err(format!("{e:#}")),
            },
        )
    }

    /// The side that is active while the other is passive, both running and unfrozen, if
    /// the pair is so settled now.
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
    /// [`Pair::wait_workers`]).
    pub fn add_worker(&mut self, spec: &WorkerSpec) -> anyhow::Result<usize> {
        let id = self.next_worker;
        self.next_worker += 1;
        let brokers: Vec<String> = Side::BOTH
            .iter()
            .filter(|s| spec.reach.includes(**s))
            .map(|s| self.frontend(*s))
            .collect();
        let mut args = worker_args(&brokers, &spec.service, &spec.kind, self.options.heartbeat);
        args.extend(spec.extra.iter().cloned());
        let reach = match spec.reach {
            Reach::Both => "both",
            Reach::Only(side) => side.role(),
        };
        let proc = Proc::spawn(
            &format!("worker-{}-{id}-{reach}", spec.service),
            &bin_path("hearth-worker"),
            &args,
            &self.logs,
        )?;
        self.workers.push(PairWorker {
            id,
            spec: spec.clone(),
            proc,
        });
        Ok(id)
    }

    /// The running workers, in start order.
    pub fn workers(&self) -> &[PairWorker] {
        &self.workers
    }

    /// SIGKILLs the worker `id` and forgets it; returns its spec, to start a replacement.
    pub fn kill_worker(&mut self, id: usize) -> anyhow::Result<WorkerSpec> {
        let at = self
            .workers
            .iter()
            .position(|w| w.id == id)
            .ok_or_else(|| anyhow!("no running worker {id}"))?;
        let mut worker = self.workers.remove(at);
        worker.proc.kill9();
        Ok(worker.spec)
    }

    /// How many running workers of `service` register with `side`.
    pub fn expected_workers(&self, side: Side, service: &str) -> u64 {
        self.workers
            .iter()
            .filter(|w| w.spec.service == service && w.spec.reach.includes(side))
            .count() as u64
    }

    /// Waits until `side` counts, for every service of a running worker, exactly the
    /// running workers that reach it. Fails at once if a process ended by itself.
    pub fn wait_workers(&mut self, side: Side, timeout: Duration) -> anyhow::Result<()> {
        let mut services: Vec<String> = self
            .workers
            .iter()
            .map(|w| w.spec.service.clone())
            .collect();
        services.sort();
        services.dedup();
        let expected: Vec<(String, u64)> = services
            .iter()
            .map(|s| (s.clone(), self.expected_workers(side, s)))
            .collect();
        let outcome = wait_for(
            &format!("workers {expected:?} on the {}", side.role()),
            timeout,
            || {
                if let Err(dead) = self.check_alive() {
                    return Ok(Err(dead));
                }
                let sample = self.sample(side).map_err(|e| format!("{e:#}"))?;
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
        )?;
        outcome
    }

    /// Fails if a broker or worker process ended by itself (a crash), naming it.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        let brokers = self.brokers.iter_mut().filter_map(|b| b.proc.as_mut());
        let workers = self.workers.iter_mut().map(|w| &mut w.proc);
        process::check_alive(brokers.chain(workers), &self.logs)
    }

    /// Writes the named broker's role, PID and ports, for the test's event log.
    pub fn describe(&self, side: Side) -> String {
        let b = self.broker(side);
        format!(
            "{} (pid {}, frontend :{}, metrics :{})",
            side.role(),
            self.pid(side)
                .map_or_else(|| "-".to_owned(), |p| p.to_string()),
            b.frontend_port,
            b.metrics.port()
        )
    }
}
