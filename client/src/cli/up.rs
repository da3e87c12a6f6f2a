//! `hearth up`: a whole local cluster — one standalone broker and its workers — from the
//! embedded default configuration (`up.toml`), supervised until Ctrl-C or `--for`.
//!
//! Children are started and watched through [`procs::Supervised`], which knows nothing about
//! brokers or workers, so the same code will run a primary and backup pair.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use serde::Deserialize;

use super::procs::{self, Supervised, GRACE};
use super::{Connection, Outcome, UsageError};

/// The embedded default cluster.
const DEFAULT_CLUSTER: &str = include_str!("../up.toml");
/// The request sent once the cluster is up, to show it works.
const GREETING: &str = "hello from hearth";

/// Flags of `hearth up`; they override the embedded configuration.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Stop after this long instead of waiting for Ctrl-C
    #[arg(long = "for", value_name = "DUR", value_parser = humantime::parse_duration)]
    run_for: Option<Duration>,
    /// Broker frontend endpoint [default: tcp://127.0.0.1:5555]
    #[arg(long, value_name = "ENDPOINT")]
    frontend: Option<String>,
    /// Broker HTTP metrics address [default: 127.0.0.1:9555]
    #[arg(long, value_name = "HOST:PORT")]
    metrics: Option<String>,
}

/// The cluster `hearth up` runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterConfig {
    frontend: String,
    metrics: String,
    #[serde(with = "humantime_serde")]
    heartbeat: Duration,
    liveness: u32,
    workers: Vec<WorkerGroup>,
}

/// `count` identical worker processes for one service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkerGroup {
    service: String,
    count: u32,
    #[serde(default)]
    echo: bool,
    #[serde(default)]
    exec: Option<String>,
}

impl ClusterConfig {
    fn embedded() -> anyhow::Result<ClusterConfig> {
        toml::from_str(DEFAULT_CLUSTER).context("the embedded up.toml is invalid")
    }

    fn broker_args(&self) -> Vec<String> {
        let mut args = vec!["--role", "standalone", "--frontend", &self.frontend];
        args.extend(["--metrics", &self.metrics]);
        let mut args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        args.extend(self.timing_args());
        args
    }

    fn worker_args(&self, group: &WorkerGroup) -> Vec<String> {
        let mut args = vec![
            "--broker".to_owned(),
            self.frontend.clone(),
            "--service".to_owned(),
            group.service.clone(),
        ];
        match &group.exec {
            Some(command) => args.extend(["--exec".to_owned(), command.clone()]),
            None => args.push("--echo".to_owned()),
        }
        args.extend(self.timing_args());
        args
    }

    fn timing_args(&self) -> [String; 4] {
        [
            "--heartbeat".to_owned(),
            humantime::format_duration(self.heartbeat).to_string(),
            "--liveness".to_owned(),
            self.liveness.to_string(),
        ]
    }
}

/// Starts the cluster, proves it answers, then supervises it until Ctrl-C, SIGTERM or
/// `--for`; exit 1 if a child dies on its own.
pub fn run(connection: &Connection, args: UpArgs) -> anyhow::Result<Outcome> {
    let mut cluster = ClusterConfig::embedded()?;
    cluster.frontend = args.frontend.unwrap_or(cluster.frontend);
    cluster.metrics = args.metrics.unwrap_or(cluster.metrics);
    if let Some(group) = cluster.workers.iter().find(|g| !g.echo && g.exec.is_none()) {
        return Err(UsageError(format!(
            "worker group {} has neither echo nor exec",
            group.service
        ))
        .into());
    }
    let broker_bin = procs::sibling_binary("hearth-broker")?;
    let worker_bin = procs::sibling_binary("hearth-worker")?;
    procs::install_stop_signals();

    let mut children = vec![Supervised::spawn(
        "hearth-broker",
        &broker_bin,
        &cluster.broker_args(),
    )?];
    for group in &cluster.workers {
        for n in 1..=group.count {
            let name = format!("hearth-worker {}#{n}", group.service);
            children.push(Supervised::spawn(
                &name,
                &worker_bin,
                &cluster.worker_args(group),
            )?);
        }
    }
    println!("frontend  {}", cluster.frontend);
    println!("metrics   http://{}/metrics", cluster.metrics);
    for child in &children {
        println!("pid {:>7}  {}", child.pid(), child.name());
    }

    for group in &cluster.workers {
        procs::wait_for_workers(
            &mut children[0],
            &cluster.frontend,
            &group.service,
            u64::from(group.count),
        )?;
    }
    if cluster
        .workers
        .iter()
        .any(|g| g.service == "echo" && g.echo)
    {
        let mut client = Connection {
            brokers: vec![cluster.frontend.clone()],
            timeout: connection.timeout,
        }
        .client()?;
        let reply = client.call_one("echo", GREETING.as_bytes())?;
        println!("echo {GREETING:?} -> {:?}", String::from_utf8_lossy(&reply));
    }
    println!("cluster up; Ctrl-C stops it");

    let outcome = supervise(&mut children, args.run_for);
    // Workers first, so they leave the broker in order; the broker last.
    for child in children.iter_mut().rev() {
        child.terminate(GRACE);
    }
    println!("cluster stopped");
    Ok(outcome)
}

/// Watches the children until a stop is asked for, `run_for` passes, or one of them exits.
fn supervise(children: &mut [Supervised], run_for: Option<Duration>) -> Outcome {
    let until = run_for.map(|d| Instant::now() + d);
    loop {
        if procs::stop_requested() || until.is_some_and(|u| Instant::now() >= u) {
            return Outcome::Success;
        }
        for child in children.iter_mut() {
            if let Some(status) = child.exit_status() {
                eprintln!(
                    "hearth: {} (pid {}) exited unexpectedly: {status}; stopping the cluster",
                    child.name(),
                    child.pid()
                );
                return Outcome::Failed;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_config_describes_a_broker_and_two_echo_workers() {
        let c = ClusterConfig::embedded().unwrap();
        assert_eq!(c.frontend, "tcp://127.0.0.1:5555");
        assert_eq!(c.workers.len(), 1);
        assert_eq!(
            (c.workers[0].service.as_str(), c.workers[0].count),
            ("echo", 2)
        );
        let broker = c.broker_args().join(" ");
        assert!(
            broker.starts_with(
                "--role standalone --frontend tcp://127.0.0.1:5555 --metrics 127.0.0.1:9555"
            ),
            "{broker}"
        );
        assert!(broker.contains("--heartbeat 2s 500ms"), "{broker}");
        let worker = c.worker_args(&c.workers[0]).join(" ");
        assert!(
            worker.starts_with("--broker tcp://127.0.0.1:5555 --service echo --echo"),
            "{worker}"
        );
    }
}
