//! A broker and its workers as processes on free loopback ports.
//!
//! The broker runs as `hearth-broker --frontend tcp://127.0.0.1:PORT --heartbeat 200ms
//! --liveness 3 --request-expiry 30s --metrics 127.0.0.1:PORT`, each worker as
//! `hearth-worker --broker ENDPOINT --service NAME (--echo | --exec CMD) --heartbeat 200ms`.
//! Readiness is asked of the broker itself over ZeroMQ: `hearth.status` (its Bencode reply
//! counts the workers per service) and `mmi.service`, so a test never sleeps to wait.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use hearth_proto::mmi::{MmiCode, MMI_SERVICE, STATUS_SERVICE};
use hearth_proto::status::BrokerStatus;
use hearth_proto::{ClientMessage, Limits};

use crate::process::{self, LogDir, Proc};
use crate::{bin_path, free_port, wait_for};

/// How the broker is configured.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// `--heartbeat`, also given to the workers.
    pub heartbeat: Duration,
    /// `--liveness`.
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

/// What a worker process does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerKind {
    /// `--echo`: the reply is the request.
    Echo,
    /// `--exec CMD`: the body goes to CMD's stdin, the reply is its stdout.
    Exec(String),
}

/// One running worker process.
#[derive(Debug)]
pub struct Worker {
    /// Unique within the cluster, in start order.
    pub id: usize,
    /// The service it offers.
    pub service: String,
    /// The process.
    pub proc: Proc,
    /// Whether it has been sent SIGSTOP (and not SIGCONT since).
    pub frozen: bool,
}

/// How long a status or MMI request may take before it is asked again on a fresh socket.
const ASK_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a started broker may take to answer its first status request.
const BROKER_READY: Duration = Duration::from_secs(10);

/// A broker process and its worker processes. Dropping it kills them all.
pub struct Cluster {
    // Fields drop in this order: the processes first, the log directory (which prints the
    // logs of a failed test) last, once every child has written its final words.
    workers: Vec<Worker>,
    broker: Option<Proc>,
    ctx: zmq::Context,
    options: BrokerOptions,
    frontend_port: u16,
    metrics_addr: Option<SocketAddr>,
    next_worker: usize,
    broker_starts: usize,
    logs: LogDir,
}

impl Cluster {
    /// Starts a broker on free ports and waits until it answers `hearth.status`.
    pub fn start(test: &str, options: BrokerOptions) -> anyhow::Result<Cluster> {
        let metrics_addr = options
            .metrics
            .then(|| SocketAddr::from(([127, 0, 0, 1], free_port())));
        let mut cluster = Cluster {
            workers: Vec::new(),
            broker: None,
            ctx: zmq::Context::new(),
            options,
            frontend_port: free_port(),
            metrics_addr,
            next_worker: 0,
            broker_starts: 0,
            logs: LogDir::new(test)?,
        };
        cluster.start_broker()?;
        Ok(cluster)
    }

    /// The frontend endpoint clients and workers connect to.
    pub fn frontend(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.frontend_port)
    }

    /// The broker's HTTP address, if it serves metrics.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
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
        self.broker.as_mut()
    }

    /// Starts a broker on the cluster's ports (again, after [`Cluster::kill_broker`]) and
    /// waits until it answers `hearth.status`.
    pub fn start_broker(&mut self) -> anyhow::Result<()> {
        if self.broker.is_some() {
            bail!("a broker is already running");
        }
        let mut args = vec![
            "--frontend".to_owned(),
            self.frontend(),
            "--heartbeat".to_owned(),
            humantime_ms(self.options.heartbeat),
            "--liveness".to_owned(),
            self.options.liveness.to_string(),
            "--request-expiry".to_owned(),
            humantime_ms(self.options.request_expiry),
        ];
        if let Some(addr) = self.metrics_addr {
            args.extend(["--metrics".to_owned(), addr.to_string()]);
        }
        self.broker_starts += 1;
        let name = format!("broker-{}", self.broker_starts);
        let mut broker = Proc::spawn(&name, &bin_path("hearth-broker"), &args, &self.logs)?;
        let ready = wait_for("the broker to answer hearth.status", BROKER_READY, || {
            if let Some(status) = broker.try_status() {
                return Ok(Err(format!("{name} exited with {status}")));
            }
            self.status().map(Ok).map_err(|e| format!("{e:#}"))
        })?;
        ready.map_err(|e| anyhow!("{e}; see {}", self.logs.path().display()))?;
        self.broker = Some(broker);
        Ok(())
    }

    /// SIGKILLs the broker.
    pub fn kill_broker(&mut self) -> Option<ExitStatus> {
        self.broker.take().map(|mut b| b.kill9())
    }

    /// Starts a worker for `service` and returns its id (it registers on its own; see
    /// [`Cluster::wait_workers`]).
    pub fn add_worker(&mut self, service: &str, kind: &WorkerKind) -> anyhow::Result<usize> {
        let id = self.next_worker;
        self.next_worker += 1;
        let args = worker_args(&[self.frontend()], service, kind, self.options.heartbeat);
        let proc = Proc::spawn(
            &format!("worker-{service}-{id}"),
            &bin_path("hearth-worker"),
            &args,
            &self.logs,
        )?;
        self.workers.push(Worker {
            id,
            service: service.to_owned(),
            proc,
            frozen: false,
        });
        Ok(id)
    }

    /// The running workers, in start order.
    pub fn workers(&self) -> &[Worker] {
        &self.workers
    }

    /// The running worker with this id.
    pub fn worker_mut(&mut self, id: usize) -> Option<&mut Worker> {
        self.workers.iter_mut().find(|w| w.id == id)
    }

    /// SIGKILLs the worker with this id and forgets it. Returns its service.
    pub fn kill_worker(&mut self, id: usize) -> anyhow::Result<String> {
        let at = self
            .workers
            .iter()
            .position(|w| w.id == id)
            .ok_or_else(|| anyhow!("no running worker {id}"))?;
        let mut worker = self.workers.remove(at);
        worker.proc.kill9();
        Ok(worker.service)
    }

    /// Fails if the broker or a worker has exited on its own (a crash), naming it.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        let workers = self.workers.iter_mut().map(|w| &mut w.proc);
        process::check_alive(self.broker.iter_mut().chain(workers), &self.logs)
    }

    /// Asks the broker for its status over ZeroMQ (`hearth.status`).
    pub fn status(&self) -> anyhow::Result<BrokerStatus> {
        let reply = ask(
            &self.ctx,
            &self.frontend(),
            STATUS_SERVICE,
            b"",
            ASK_TIMEOUT,
        )?;
        let body = reply.body.first().map(Vec::as_slice).unwrap_or_default();
        BrokerStatus::from_bencode(body).map_err(|e| anyhow!("bad hearth.status reply: {e}"))
    }

    /// Asks `mmi.service` whether `service` has a worker.
    pub fn has_worker(&self, service: &str) -> anyhow::Result<bool> {
        let reply = ask(
            &self.ctx,
            &self.frontend(),
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
            .metrics_addr
            .ok_or_else(|| anyhow!("the broker serves no metrics"))?;
        let text = http_get(addr, "/metrics")?;
        Ok(crate::metrics::sum(&crate::metrics::parse(&text), name))
    }
}

/// One request on a fresh DEALER socket, waiting at most `timeout` for the reply.
pub fn ask(
    ctx: &zmq::Context,
    endpoint: &str,
    service: &str,
    body: &[u8],
    timeout: Duration,
) -> anyhow::Result<ClientMessage> {
    let socket = ctx.socket(zmq::DEALER)?;
    socket.set_linger(0)?;
    socket.connect(endpoint)?;
    let request = ClientMessage::new(service, body.to_vec());
    socket.send_multipart(request.frames(), 0)?;
    if socket.poll(zmq::POLLIN, timeout.as_millis() as i64)? == 0 {
        bail!("no answer from {endpoint} to {service} within {timeout:?}");
    }
    let frames = socket.recv_multipart(0)?;
    ClientMessage::decode(frames, &Limits::default())
        .map_err(|e| anyhow!("undecodable reply to {service}: {e}"))
}

/// An HTTP/1.0 GET of `path`; the body of a 200 answer.
pub fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    http_get_within(addr, path, Duration::from_secs(3))
}

/// An HTTP/1.0 GET of `path` that waits at most `timeout` to connect and `timeout` for
/// each read (a stopped process accepts connections in its kernel but never answers).
pub fn http_get_within(addr: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed HTTP answer from {addr}"))?;
    if head.split_whitespace().nth(1) != Some("200") {
        bail!(
            "GET {path} on {addr}: {}",
            head.lines().next().unwrap_or("")
        );
    }
    Ok(body.to_owned())
}

/// A duration as the binaries' flags read it (humantime), in milliseconds.
pub(crate) fn humantime_ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// The arguments of a `hearth-worker` for `service` on every broker of `brokers`.
pub(crate) fn worker_args(
    brokers: &[String],
    service: &str,
    kind: &WorkerKind,
    heartbeat: Duration,
) -> Vec<String> {
    let mut args = Vec::new();
    for broker in brokers {
        args.extend(["--broker".to_owned(), broker.clone()]);
    }
    args.extend(["--service".to_owned(), service.to_owned()]);
    match kind {
        WorkerKind::Echo => args.push("--echo".to_owned()),
        WorkerKind::Exec(cmd) => args.extend(["--exec".to_owned(), cmd.clone()]),
    }
    args.extend(["--heartbeat".to_owned(), humantime_ms(heartbeat)]);
    args
}
