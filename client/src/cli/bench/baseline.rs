//! `hearth bench --baseline`: in one run, the same load against (a) a bare libzmq relay
//! (`zmq::proxy` ROUTER↔DEALER in front of REP echo sockets, the ceiling any broker on this
//! machine can reach) and (b) `hearth-broker` with `hearth-worker --echo`, with the CPU time
//! each middle process spends per request and the broker's memory.
//!
//! The relay's children are stopped before the hearth phase starts, so the two phases do not
//! share the machine.

use std::time::Duration;

use anyhow::{bail, Context as _};
use hearth_supervise::{
    cpu_time, free_port, loopback_endpoint, memory, Broker, BrokerArgs, Launch, Proc, Programs,
    WorkerArgs, WorkerKind,
};
use serde::Serialize;

use super::load::{self, Wire};
use super::stats::{round2, LoadReport};
use super::{outcome, BenchArgs};
use crate::cli::Outcome;

/// How long the relay, the broker and the workers get to come up.
const STARTUP: Duration = Duration::from_secs(10);

/// Everything `--baseline` measured, as printed and as its one JSON line.
#[derive(Debug, Serialize)]
struct BaselineReport {
    ceiling: LoadReport,
    hearth: LoadReport,
    /// hearth throughput / ceiling throughput.
    ratio: f64,
    relay_cpu_us_per_req: Option<f64>,
    broker_cpu_us_per_req: Option<f64>,
    broker_rss_mb: f64,
    broker_hwm_mb: f64,
    workers: u64,
}

/// Runs both phases and prints the comparison; exit 1 if either lost or mismatched.
pub fn run(args: &BenchArgs) -> anyhow::Result<Outcome> {
    let programs = Programs::siblings()?;
    let me = std::env::current_exe().context("cannot locate the hearth binary")?;
    let launch = Launch::terminal();
    let workers = args.workers.to_string();

    let (ceiling, relay_cpu) = {
        let frontend = local_endpoint()?;
        let backend = local_endpoint()?;
        let relay = Proc::spawn(
            "relay",
            &me,
            &strings(&[
                "internal",
                "relay",
                "--frontend",
                &frontend,
                "--backend",
                &backend,
            ]),
            &launch,
        )?;
        let _echo = Proc::spawn(
            "rep-echo",
            &me,
            &strings(&[
                "internal",
                "rep-echo",
                "--connect",
                &backend,
                "--threads",
                &workers,
            ]),
            &launch,
        )?;
        wait_for_relay(&frontend)?;
        let mut window = CpuWindow::new(relay.pid());
        let report = load::run(&args.spec(&frontend, Wire::Raw), "ceiling", &mut |open| {
            window.mark(open)
        })?;
        (report, window.used())
    };

    let frontend = local_endpoint()?;
    let mut broker = Broker::spawn(
        "hearth-broker",
        &programs.broker,
        BrokerArgs::standalone(frontend.clone()),
        launch.clone(),
    )?;
    let worker = WorkerArgs {
        extra: strings(&["--concurrency", &workers]),
        ..WorkerArgs::new(vec![frontend.clone()], &args.service, WorkerKind::Echo)
    };
    let _worker = Proc::spawn(
        "hearth-worker",
        &programs.worker,
        &worker.to_args(),
        &launch,
    )?;
    let ctx = zmq::Context::new();
    broker.wait_workers(&ctx, &args.service, args.workers, STARTUP)?;
    let pid = broker.pid().context("the broker is not running")?;
    let mut window = CpuWindow::new(pid);
    let spec = args.spec(
        &frontend,
        Wire::Mdp {
            service: args.service.clone(),
        },
    );
    let hearth = load::run(&spec, "hearth", &mut |open| window.mark(open))?;
    let broker_cpu = window.used();
    let memory = memory(pid).unwrap_or_default();

    let report = BaselineReport {
        ratio: if ceiling.throughput > 0.0 {
            (hearth.throughput / ceiling.throughput * 1000.0).round() / 1000.0
        } else {
            0.0
        },
        relay_cpu_us_per_req: per_request(relay_cpu, ceiling.requests),
        broker_cpu_us_per_req: per_request(broker_cpu, hearth.requests),
        broker_rss_mb: round2(memory.rss_kib as f64 / 1024.0),
        broker_hwm_mb: round2(memory.hwm_kib as f64 / 1024.0),
        workers: args.workers,
        ceiling,
        hearth,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    Ok(outcome(report.ceiling.clean() && report.hearth.clean()))
}

fn print_report(r: &BaselineReport) {
    let cpu = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}"));
    println!("                     libzmq relay    hearth");
    println!(
        "throughput (req/s)   {:>12.1}  {:>12.1}   ratio {:.3}",
        r.ceiling.throughput, r.hearth.throughput, r.ratio
    );
    println!(
        "cpu per request (µs) {:>12}  {:>12}   (relay process / broker process)",
        cpu(r.relay_cpu_us_per_req),
        cpu(r.broker_cpu_us_per_req)
    );
    println!("latency relay        {}", r.ceiling.latency_line());
    println!("latency hearth       {}", r.hearth.latency_line());
    println!(
        "lost / mismatched    {:>5} / {:<5}  {:>5} / {:<5}",
        r.ceiling.lost, r.ceiling.mismatched, r.hearth.lost, r.hearth.mismatched
    );
    println!(
        "broker memory        RSS {:.2} MB, peak {:.2} MB ({} workers)",
        r.broker_rss_mb, r.broker_hwm_mb, r.workers
    );
}

/// CPU time of one process across the measured window.
struct CpuWindow {
    pid: u32,
    start: Option<Duration>,
    end: Option<Duration>,
}

impl CpuWindow {
    fn new(pid: u32) -> CpuWindow {
        CpuWindow {
            pid,
            start: None,
            end: None,
        }
    }

    /// Reads the counter as the window opens (`true`) or closes (`false`).
    fn mark(&mut self, open: bool) {
        let now = cpu_time(self.pid).ok();
        if open {
            self.start = now;
        } else {
            self.end = now;
        }
    }

    fn used(&self) -> Option<Duration> {
        Some(self.end?.saturating_sub(self.start?))
    }
}

fn per_request(cpu: Option<Duration>, requests: u64) -> Option<f64> {
    let cpu = cpu?;
    (requests > 0).then(|| round2(cpu.as_micros() as f64 / requests as f64))
}

fn local_endpoint() -> anyhow::Result<String> {
    Ok(loopback_endpoint(free_port()?))
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// Waits until the relay passes a raw request through to an echo socket and back.
fn wait_for_relay(frontend: &str) -> anyhow::Result<()> {
    let context = zmq::Context::new();
    let socket = context.socket(zmq::DEALER)?;
    socket.set_linger(0)?;
    socket.connect(frontend)?;
    socket.send_multipart([&b""[..], b"probe"], 0)?;
    let mut items = [socket.as_poll_item(zmq::POLLIN)];
    if zmq::poll(&mut items, STARTUP.as_millis() as i64)? == 0 {
        bail!("the relay at {frontend} did not echo within {STARTUP:?}");
    }
    let reply = socket.recv_multipart(0)?;
    if reply != [b"".to_vec(), b"probe".to_vec()] {
        bail!("the relay at {frontend} answered {reply:?}");
    }
    Ok(())
}
