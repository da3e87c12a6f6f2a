//! `hearth up`: a whole local cluster from the embedded default configuration (`up.toml`) —
//! a Binary Star pair and echo workers registered with both brokers, or with `--standalone`
//! one broker and the same workers — supervised until Ctrl-C, SIGTERM or `--for`.
//!
//! [`cluster`] turns the configuration and flags into command lines, [`crate::cli::pair`]
//! runs the two brokers, [`demo`] shows a failover (kill -9 of the active broker on
//! `--kill-active-after` or `k` + Enter, and its restart). This file starts everything,
//! waits until it is ready, proves it answers, and watches it.

mod cluster;
mod demo;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use clap::Args;
use hearth_client::state::Write;
use hearth_client::Client;

use self::cluster::{Cluster, EndpointFlags};
use self::demo::{FailoverDemo, StateLog};
use super::pair::{self, Observed, Pair, Side};
use super::procs::{self, Supervised, GRACE, STARTUP};
use super::{client_failure, Connection, Outcome};

/// The request sent once the cluster is up, to show it works.
const GREETING: &str = "hello from hearth";
/// How often the supervisor looks at its children and the brokers' states.
const WATCH_EVERY: Duration = Duration::from_millis(200);
/// How long one attempt of the greeting waits for a broker before trying the other.
const GREETING_ATTEMPT: Duration = Duration::from_secs(1);

/// Flags of `hearth up`; they override the embedded configuration.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Stop after this long (counted from when the cluster is up) instead of waiting for
    /// Ctrl-C
    #[arg(long = "for", value_name = "DUR", value_parser = humantime::parse_duration)]
    run_for: Option<Duration>,
    /// Kill the active broker with kill -9 this long after the cluster is up, to watch the
    /// other take over and the killed one come back passive (typing k and Enter does the same)
    #[arg(
        long,
        value_name = "DUR",
        value_parser = humantime::parse_duration,
        conflicts_with = "standalone"
    )]
    kill_active_after: Option<Duration>,
    /// How long a killed broker stays down, at least: it is restarted once this has passed
    /// and the other broker has taken over
    #[arg(
        long,
        value_name = "DUR",
        value_parser = humantime::parse_duration,
        default_value = "5s"
    )]
    restart_after: Duration,
    /// Run one standalone broker (on the primary's frontend and metrics) instead of the pair
    #[arg(long)]
    standalone: bool,
    /// Keep the brokers' state models in DIR/primary and DIR/backup (DIR/standalone), so a
    /// later hearth up finds them again [default: a temporary dir, removed on exit]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    endpoints: EndpointFlags,
}

/// Starts the cluster, proves it answers, then supervises it until Ctrl-C, SIGTERM or
/// `--for`; exit 1 if a child dies without being killed on purpose.
pub fn run(connection: &Connection, args: UpArgs) -> anyhow::Result<Outcome> {
    let cluster = Cluster::new(&args.endpoints, args.standalone)?;
    let broker_bin = procs::sibling_binary("hearth-broker")?;
    let worker_bin = procs::sibling_binary("hearth-worker")?;
    cluster.check_ports_free()?;
    let data = DataRoot::new(args.data_dir.clone())?;
    procs::install_stop_signals();
    if cluster.standalone {
        run_standalone(connection, &args, &cluster, &data, &broker_bin, &worker_bin)
    } else {
        run_pair(connection, &args, &cluster, &data, &broker_bin, &worker_bin)
    }
}

/// Where the brokers keep their state models: `--data-dir`, kept; or a temporary dir,
/// removed when `hearth up` ends.
struct DataRoot {
    root: PathBuf,
    temporary: bool,
}

impl DataRoot {
    fn new(given: Option<PathBuf>) -> anyhow::Result<DataRoot> {
        let (root, temporary) = match given {
            Some(dir) => (dir, false),
            None => (
                std::env::temp_dir().join(format!("hearth-up-{}", std::process::id())),
                true,
            ),
        };
        std::fs::create_dir_all(&root)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", root.display()))?;
        Ok(DataRoot { root, temporary })
    }

    /// The data dir of the broker called `name` (primary, backup, standalone).
    fn of(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

impl Drop for DataRoot {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// The pair: start, settle, greet, then watch and print state changes, with the failover
/// demo on request.
fn run_pair(
    connection: &Connection,
    args: &UpArgs,
    cluster: &Cluster,
    data: &DataRoot,
    broker_bin: &Path,
    worker_bin: &Path,
) -> anyhow::Result<Outcome> {
    let mut pair = Pair::spawn_with(broker_bin, &cluster.pair, |side| {
        cluster.state_args(side, &data.of(side.name()))
    })?;
    let mut workers = spawn_workers(cluster, worker_bin)?;
    for side in Side::BOTH {
        print_broker(cluster, side);
    }
    for side in Side::BOTH {
        println!("pid {:>7}  {}", pair.pid(side), pair::process_name(side));
    }
    print_workers(&workers);

    let started = Instant::now();
    let states = match wait_until_settled(cluster, &mut pair, &mut workers)? {
        Some(states) => states,
        None => {
            stop(&mut workers, || pair.terminate());
            return Ok(Outcome::Success);
        }
    };
    println!(
        "pair settled in {} ms: primary {}, backup {}",
        started.elapsed().as_millis(),
        states[0].describe(first_service(cluster)),
        states[1].describe(first_service(cluster)),
    );
    greet(connection, cluster)?;
    println!(
        "cluster up; Ctrl-C stops it, k and Enter kills the active broker (kill -9); in \
         another terminal: hearth {} status",
        cluster
            .frontends()
            .iter()
            .map(|f| format!("--broker {f}"))
            .collect::<Vec<_>>()
            .join(" ")
    );

    let mut log = StateLog::new(&states);
    let brokers = Side::BOTH
        .iter()
        .map(|&s| (s, cluster.pair.endpoints(s).frontend.clone()))
        .collect();
    let mut demo = FailoverDemo::new(brokers, args.restart_after);
    let kill_commands = demo::kill_commands_from_stdin();
    let up_at = Instant::now();
    let until = args.run_for.map(|d| up_at + d);
    let mut kill_at = args.kill_active_after.map(|d| up_at + d);
    let outcome = loop {
        if procs::stop_requested() || until.is_some_and(|u| Instant::now() >= u) {
            break Outcome::Success;
        }
        if let Some(failure) = unexpected_exit(&mut workers, Some(&mut pair)) {
            eprintln!("hearth: {failure}; stopping the cluster");
            break Outcome::Failed;
        }
        let timer_fired = kill_at.is_some_and(|at| Instant::now() >= at);
        if timer_fired {
            kill_at = None;
        }
        if timer_fired || kill_requested(&kill_commands) {
            if let Err(why) = demo.kill_active(&mut pair, &mut log) {
                eprintln!("hearth: not killing: {why}");
            }
        }
        let states = pair.observe_both();
        for line in log.update(&states) {
            println!("{line}");
        }
        demo.tick(&mut pair, &states)?;
        std::thread::sleep(WATCH_EVERY);
    };
    demo.stop_calls();
    stop(&mut workers, || pair.terminate());
    Ok(outcome)
}

/// One standalone broker and the workers.
fn run_standalone(
    connection: &Connection,
    args: &UpArgs,
    cluster: &Cluster,
    data: &DataRoot,
    broker_bin: &Path,
    worker_bin: &Path,
) -> anyhow::Result<Outcome> {
    let mut broker = Supervised::spawn(
        "hearth-broker standalone",
        broker_bin,
        &cluster.standalone_args(&data.of("standalone")),
    )?;
    let mut workers = spawn_workers(cluster, worker_bin)?;
    print_broker(cluster, Side::Primary);
    println!("pid {:>7}  {}", broker.pid(), broker.name());
    print_workers(&workers);
    for group in &cluster.workers {
        procs::wait_for_workers(
            &mut broker,
            &cluster.pair.primary.frontend,
            &group.service,
            u64::from(group.count),
        )?;
    }
    greet(connection, cluster)?;
    println!("cluster up; Ctrl-C stops it");

    let until = args.run_for.map(|d| Instant::now() + d);
    let outcome = loop {
        if procs::stop_requested() || until.is_some_and(|u| Instant::now() >= u) {
            break Outcome::Success;
        }
        let failure = broker
            .exit_status()
            .map(|status| format!("{} (pid {}) exited: {status}", broker.name(), broker.pid()))
            .or_else(|| unexpected_exit(&mut workers, None));
        if let Some(failure) = failure {
            eprintln!("hearth: {failure}; stopping the cluster");
            break Outcome::Failed;
        }
        std::thread::sleep(WATCH_EVERY);
    };
    stop(&mut workers, || {
        broker.terminate(GRACE);
    });
    Ok(outcome)
}

/// Starts every worker process of the cluster, each registered with every broker.
fn spawn_workers(cluster: &Cluster, worker_bin: &Path) -> anyhow::Result<Vec<Supervised>> {
    let mut workers = Vec::new();
    for group in &cluster.workers {
        for n in 1..=group.count {
            let name = format!("hearth-worker {}#{n}", group.service);
            workers.push(Supervised::spawn(
                &name,
                worker_bin,
                &cluster.worker_args(group),
            )?);
        }
    }
    Ok(workers)
}

/// One broker's endpoints, as a line.
fn print_broker(cluster: &Cluster, side: Side) {
    let e = cluster.pair.endpoints(side);
    let mut line = format!("{:<10} frontend {}", cluster.broker_name(side), e.frontend);
    if !cluster.standalone {
        line += &format!("  peer {}", e.peer);
    }
    if let Some(metrics) = &e.metrics {
        line += &format!("  metrics http://{metrics}/metrics");
    }
    println!("{line}");
}

fn print_workers(workers: &[Supervised]) {
    for worker in workers {
        println!("pid {:>7}  {}", worker.pid(), worker.name());
    }
}

/// The service the settle check and the messages name first (echo in the embedded file).
fn first_service(cluster: &Cluster) -> &str {
    cluster
        .workers
        .first()
        .map_or("echo", |g| g.service.as_str())
}

/// Polls both brokers until the pair has settled (one active, one passive, each hearing the
/// other and knowing every worker). `None` if a stop was asked for meanwhile; an error if a
/// child exits or the pair does not settle within [`STARTUP`].
fn wait_until_settled(
    cluster: &Cluster,
    pair: &mut Pair,
    workers: &mut [Supervised],
) -> anyhow::Result<Option<[Observed; 2]>> {
    let mut failure = None;
    let outcome = procs::wait_until(
        "the pair to settle",
        STARTUP,
        Duration::from_millis(100),
        || {
            if procs::stop_requested() {
                return Ok(None);
            }
            if let Some(f) = unexpected_exit(workers, Some(pair)) {
                failure = Some(f);
                return Ok(None);
            }
            let states = pair.observe_both();
            for group in &cluster.workers {
                pair::settled(&states, &group.service, u64::from(group.count))?;
            }
            Ok(Some(states))
        },
    )?;
    if let Some(failure) = failure {
        anyhow::bail!("{failure} during startup");
    }
    Ok(outcome)
}

/// One echo call through a client given every broker, printing which one answered.
fn greet(connection: &Connection, cluster: &Cluster) -> anyhow::Result<()> {
    if !cluster
        .workers
        .iter()
        .any(|g| g.service == "echo" && g.echo)
    {
        return Ok(());
    }
    let mut config = Connection {
        brokers: cluster.frontends(),
        timeout: connection.timeout,
    }
    .client_config();
    config.attempt_timeout = config.attempt_timeout.min(GREETING_ATTEMPT);
    let mut client = Client::new(config).map_err(|e| client_failure(e, "creating the client"))?;
    let reply = client
        .call_one("echo", GREETING.as_bytes())
        .map_err(|e| client_failure(e, "the first echo call"))?;
    let by = client.current_broker().to_owned();
    let name = Side::BOTH
        .into_iter()
        .find(|&s| cluster.pair.endpoints(s).frontend == by)
        .map_or("?", |s| cluster.broker_name(s));
    println!(
        "echo {GREETING:?} -> {:?} (answered by {name}, {by})",
        String::from_utf8_lossy(&reply)
    );
    // The state model: one write (acknowledged once durable on both brokers), read back.
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut state = client.state();
    let seq = state
        .set([(UP_KEY, Write::new(started))])
        .map_err(|e| client_failure(e, "the first state write"))?;
    let entries = state
        .get(&[UP_KEY])
        .map_err(|e| client_failure(e, "the first state read"))?;
    let shown = entries.get(UP_KEY).map_or_else(
        || "absent".to_owned(),
        |e| {
            let value = e
                .value
                .as_int()
                .map_or_else(|| format!("{:?}", e.value), |n| n.to_string());
            format!("{value} (seq {})", e.seq)
        },
    );
    println!("state set {UP_KEY} {started} -> seq {seq}; state get {UP_KEY} -> {shown}");
    Ok(())
}

/// The key `hearth up` writes once the cluster answers.
const UP_KEY: &str = "hearth/up/started";

/// Whether `k` and Enter came in since the last look.
fn kill_requested(commands: &Receiver<()>) -> bool {
    match commands.try_recv() {
        Ok(()) => true,
        Err(TryRecvError::Empty | TryRecvError::Disconnected) => false,
    }
}

/// A child that exited without being killed on purpose, described for the user.
fn unexpected_exit(workers: &mut [Supervised], pair: Option<&mut Pair>) -> Option<String> {
    if let Some((side, pid, status)) = pair.and_then(Pair::unexpected_exit) {
        return Some(format!(
            "{} (pid {pid}) exited: {status}",
            pair::process_name(side)
        ));
    }
    workers.iter_mut().find_map(|w| {
        let status = w.exit_status()?;
        Some(format!("{} (pid {}) exited: {status}", w.name(), w.pid()))
    })
}

/// Stops the workers first, so they leave the brokers in order, then the brokers.
fn stop(workers: &mut [Supervised], mut stop_brokers: impl FnMut()) {
    for worker in workers.iter_mut().rev() {
        worker.terminate(GRACE);
    }
    stop_brokers();
    println!("cluster stopped");
}
