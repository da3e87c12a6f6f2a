//! A broker and its workers as processes on free loopback ports.
//!
//! The broker runs as `hearth-broker --role standalone --frontend tcp://127.0.0.1:PORT
//! --heartbeat 200ms --liveness 3 --request-expiry 30000ms --metrics 127.0.0.1:PORT`, each
//! worker as `hearth-worker --broker ENDPOINT --service NAME (--echo | --exec CMD)
//! --heartbeat 200ms --liveness 3`, both written by `hearth_supervise`'s command lines.
//! Readiness is asked of the broker itself over ZeroMQ: `hearth.status` (its Bencode reply
//! counts the workers per service) and `mmi.service`, so a test never sleeps to wait.

use std::net::SocketAddr;
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use hearth_proto::mmi::{MmiCode, MMI_SERVICE};
use hearth_proto::status::BrokerStatus;
use hearth_supervise::{
    free_ports, loopback_endpoint, Broker, BrokerArgs, Launch, Proc, Reach, WorkerArgs, WorkerSpec,
    Workers,
};

use crate::process::{self, LogDir};
use crate::{bin_path, wait_for};

/// A question to a broker over ZeroMQ on a fresh DEALER socket, with a timeout.
pub use hearth_supervise::ask::ask;
/// A plain HTTP GET with a timeout (a stopped process accepts connections in its kernel but
/// never answers); the body of a 200 answer.
pub use hearth_supervise::http::get_ok as http_get_within;
/// One running worker process (its service is `spec.service`).
pub use hearth_supervise::Worker;
/// What a worker process does with a request.
pub use hearth_supervise::WorkerKind;

/// How the broker is configured.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// `--heartbeat`, also given to the workers.
    pub heartbeat: Duration,
    /// `--liveness`, also given to the workers.
    pub liveness: u32,
    /// `--request-expiry`: how long a request waits while its service has no worker.
    pub request_expiry: Duration,
    /// Whether to serve `/metrics` on a free port (`--metrics`).
    pub metrics: bool,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            heartbeat: Duration::from_millis(200),
            liveness: 3,
            request_expiry: Duration::from_secs(30),
            metrics: true,
        }
    }
}

/// How long a status or MMI request may take before it is asked again on a fresh socket.
const ASK_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a started broker may take to answer its first status request.
const BROKER_READY: Duration = Duration::from_secs(10);
/// How long a `/metrics` GET of [`Cluster::metric_sum`] may take.
const METRICS_TIMEOUT: Duration = Duration::from_secs(3);

/// A broker process and its worker processes. Dropping it kills them all.
pub struct Cluster {
    // Fields drop in this order: the processes first, the log directory (which prints the
    // logs of a failed test) last, once every child has written its final words.
    workers: Workers,
    broker: Broker,
    ctx: zmq::Context,
    options: BrokerOptions,
    logs: LogDir,
}

impl Cluster {
    /// Starts a broker on free ports and waits until it answers `hearth.status`.
    pub fn start(test: &str, options: BrokerOptions) -> anyhow::Result<Cluster> {
        let logs = LogDir::new(test)?;
        let [frontend, metrics] = free_ports()?;
        let args = BrokerArgs {
            metrics: options.metrics.then(|| format!("127.0.0.1:{metrics}")),
            heartbeat: Some(options.heartbeat),
            liveness: Some(options.liveness),
            request_expiry: Some(options.request_expiry),
            ..BrokerArgs::standalone(loopback_endpoint(frontend))
        };
        let launch = Launch::harness(logs.output());
        let workers = Workers::new(&bin_path("hearth-worker"), launch.clone());
        let broker = Broker::new("hearth-broker", &bin_path("hearth-broker"), args, launch);
        let mut cluster = Cluster {
            workers,
            broker,
            ctx: zmq::Context::new(),
            options,
            logs,
        };
        cluster.start_broker()?;
        Ok(cluster)
    }

    /// The frontend endpoint clients and workers connect to.
    pub fn frontend(&self) -> String {
        self.broker.frontend().to_owned()
    }

    /// The broker's HTTP address, if it serves metrics.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.broker.metrics_addr().ok().flatten()
    }

    /// The broker's options.
    pub fn options(&self) -> &BrokerOptions {
        &self.options
    }

    /// Where the children's logs go.
    pub fn logs(&self) -> &LogDir {
        &self.logs
    }

    /// Says the test passed, so the children's logs are removed rather than printed when
    /// the cluster is dropped.
    pub fn passed(&self) {
        self.logs.mark_passed();
    }

    /// A ZeroMQ context for the test's own sockets.
    pub fn context(&self) -> &zmq::Context {
        &self.ctx
    }

    /// The running broker process, if any.
    pub fn broker(&mut self) -> Option<&mut Proc> {
        self.broker.proc_mut()
    }

    /// Starts a broker on the cluster's ports (again, after [`Cluster::kill_broker`]) and
    /// waits until it answers `hearth.status`.
    pub fn start_broker(&mut self) -> anyhow::Result<()> {
        self.broker.start()?;
        let ctx = &self.ctx;
        self.broker
            .wait_ready("the broker to answer hearth.status", BROKER_READY, |b| {
                b.status(ctx, ASK_TIMEOUT).map_err(|e| e.to_string())
            })
            .with_context(|| format!("see {}", self.logs.path().display()))?;
        Ok(())
    }

    /// SIGKILLs and reaps the broker; how it ended, if it ran. (kill(2) and waitpid(2) on
    /// a child of ours not yet reaped cannot fail; were they to, the process guard, dropped,
    /// kills it again and this says `None`.)
    pub fn kill_broker(&mut self) -> Option<ExitStatus> {
        self.broker.kill9().ok().flatten()
    }

    /// Starts a worker for `service` and returns its id (it registers on its own; see
    /// [`Cluster::wait_workers`]).
    pub fn add_worker(&mut self, service: &str, kind: &WorkerKind) -> anyhow::Result<usize> {
        let spec = WorkerSpec::new(service, kind.clone(), Reach::Both);
        let args = WorkerArgs {
            heartbeat: Some(self.options.heartbeat),
            liveness: Some(self.options.liveness),
            ..WorkerArgs::new(vec![self.frontend()], service, kind.clone())
        };
        Ok(self.workers.add(&spec, &args)?)
    }

    /// The running workers, in start order.
    pub fn workers(&self) -> &[Worker] {
        self.workers.all()
    }

    /// The running worker with this id.
    pub fn worker_mut(&mut self, id: usize) -> Option<&mut Worker> {
        self.workers.get_mut(id)
    }

    /// SIGKILLs the worker with this id and forgets it. Returns its service.
    pub fn kill_worker(&mut self, id: usize) -> anyhow::Result<String> {
        Ok(self.workers.kill(id)?.service)
    }

    /// Fails if the broker or a worker has exited on its own (a crash), naming it.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        let workers = self.workers.exited();
        let exited = self.broker.exited().into_iter().chain(workers).collect();
        process::check_alive(exited, &self.logs)
    }

    /// Asks the broker for its status over ZeroMQ (`hearth.status`).
    pub fn status(&self) -> anyhow::Result<BrokerStatus> {
        Ok(hearth_supervise::ask::status(
            &self.ctx,
            self.broker.frontend(),
            ASK_TIMEOUT,
        )?)
    }

    /// Asks `mmi.service` whether `service` has a worker.
    pub fn has_worker(&self, service: &str) -> anyhow::Result<bool> {
        let reply = ask(
            &self.ctx,
            self.broker.frontend(),
            MMI_SERVICE,
            service.as_bytes(),
            ASK_TIMEOUT,
        )?;
        let body = reply.body.first().map(Vec::as_slice).unwrap_or_default();
        match MmiCode::parse(body) {
            Some(MmiCode::Found) => Ok(true),
            Some(MmiCode::NotFound) => Ok(false),
            _ => bail!(
                "unexpected mmi.service reply {:?}",
                String::from_utf8_lossy(body)
            ),
        }
    }

    /// Waits until the broker counts exactly `count` workers for each `(service, count)`.
    /// Fails at once if the broker or a worker process has ended by itself.
    pub fn wait_workers(
        &mut self,
        expected: &[(&str, u64)],
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let outcome = wait_for(&format!("workers registered {expected:?}"), timeout, || {
            if let Err(dead) = self.check_alive() {
                return Ok(Err(dead));
            }
            let status = self.status().map_err(|e| format!("{e:#}"))?;
            let counts: Vec<(String, u64)> = status
                .services
                .iter()
                .map(|s| (s.name.clone(), s.workers))
                .collect();
            let all = expected.iter().all(|(name, n)| {
                counts.iter().any(|(s, c)| s == name && c == n)
                    || (*n == 0 && !counts.iter().any(|(s, _)| s == name))
            });
            if all {
                Ok(Ok(()))
            } else {
                Err(format!("{counts:?}"))
            }
        })?;
        outcome.with_context(|| format!("waiting for workers registered {expected:?}"))
    }

    /// The sum of every sample of the metric `name` on the broker's `/metrics` (all label
    /// sets), e.g. `hearth_requeued_total`.
    pub fn metric_sum(&self, name: &str) -> anyhow::Result<f64> {
        let addr = self
            .metrics_addr()
            .ok_or_else(|| anyhow!("the broker serves no metrics"))?;
        let text = http_get_within(addr, "/metrics", METRICS_TIMEOUT)?;
        Ok(crate::metrics::sum(&crate::metrics::parse(&text), name))
    }
}
