//! `hearth up`: a whole local cluster from the embedded default configuration (`up.toml`) —
//! a Binary Star pair and echo workers registered with both brokers, or with `--standalone`
//! one broker and the same workers — supervised until Ctrl-C, SIGTERM or `--for`.
//!
//! [`cluster`] turns the configuration and flags into command lines, [`hearth_supervise`]
//! runs the processes, [`demo`] shows a failover (kill -9 of the active broker on
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
use hearth_supervise::{
    install_stop_signals, settled, stop_requested, Broker, Launch, Observed, Pair, Programs, Reach,
    ScratchDir, Side, Wait, WorkerSpec, Workers,
};

use self::cluster::{Cluster, EndpointFlags};
use self::demo::{FailoverDemo, StateLog};
use super::{client_failure, Connection, Outcome};

/// The request sent once the cluster is up, to show it works.
const GREETING: &str = "hello from hearth";
/// How often the supervisor looks at its children and the brokers' states.
const WATCH_EVERY: Duration = Duration::from_millis(200);
/// How long one attempt of the greeting waits for a broker before trying the other.
const GREETING_ATTEMPT: Duration = Duration::from_secs(1);
/// How long the children get to come up (brokers bound, workers registered).
const STARTUP: Duration = Duration::from_secs(10);
/// How long a child gets between SIGTERM and SIGKILL when the cluster stops.
const GRACE: Duration = Duration::from_secs(2);

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
    let programs = Programs::siblings()?;
    cluster.check_ports_free()?;
    let data = DataRoot::new(args.data_dir.clone())?;
    install_stop_signals();
    if cluster.standalone {
        run_standalone(connection, &args, &cluster, &data, &programs)
    } else {
        run_pair(connection, &args, &cluster, &data, &programs)
    }
}

/// Where the brokers keep their state models: `--data-dir`, kept; or a temporary dir,
/// removed when `hearth up` ends.
enum DataRoot {
    Given(PathBuf),
    Temporary(ScratchDir),
}

impl DataRoot {
    fn new(given: Option<PathBuf>) -> anyhow::Result<DataRoot> {
        Ok(match given {
            Some(dir) => {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
                DataRoot::Given(dir)
            }
            None => DataRoot::Temporary(ScratchDir::new("hearth-up")?),
        })
    }

    /// The directory holding each broker's data dir, named after its role.
    fn root(&self) -> &Path {
        match self {
            DataRoot::Given(dir) => dir,
            DataRoot::Temporary(dir) => dir.path(),
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
    programs: &Programs,
) -> anyhow::Result<Outcome> {
    let spec = hearth_supervise::PairSpec {
        data_root: Some(data.root().to_path_buf()),
        ..cluster.pair.clone()
    };
    let mut pair = Pair::spawn(spec, programs, Launch::terminal())?;
    for group in &cluster.workers {
        for _ in 0..group.count {
            pair.add_worker(&WorkerSpec::new(&group.service, group.kind(), Reach::Both))?;
        }
    }
    for side in Side::BOTH {
        print_broker(cluster, side);
    }
    for side in Side::BOTH {
        print_proc(pair.pid(side), pair.broker(side).name());
    }
    for worker in pair.workers() {
        print_proc(Some(worker.proc.pid()), worker.proc.name());
    }

    let started = Instant::now();
    let states = match wait_until_settled(cluster, &mut pair)? {
        Some(states) => states,
        None => {
            stop(|| pair.terminate(GRACE));
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
        if stop_requested() || until.is_some_and(|u| Instant::now() >= u) {
            break Outcome::Success;
        }
        if let Some(crashed) = pair.exited().first() {
            eprintln!("hearth: {crashed}; stopping the cluster");
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
    stop(|| pair.terminate(GRACE));
    Ok(outcome)
}

/// One standalone broker and the workers.
fn run_standalone(
    connection: &Connection,
    args: &UpArgs,
    cluster: &Cluster,
    data: &DataRoot,
    programs: &Programs,
) -> anyhow::Result<Outcome> {
    let launch = Launch::terminal();
    let mut broker = Broker::spawn(
        "hearth-broker standalone",
        &programs.broker,
        cluster.standalone_args(&data.root().join("standalone")),
        launch.clone(),
    )?;
    let mut workers = Workers::new(&programs.worker, launch);
    for group in &cluster.workers {
        let spec = WorkerSpec::new(&group.service, group.kind(), Reach::Both);
        for _ in 0..group.count {
            workers.add(&spec, &cluster.worker_args(group))?;
        }
    }
    print_broker(cluster, Side::Primary);
    print_proc(broker.pid(), broker.name());
    for worker in workers.all() {
        print_proc(Some(worker.proc.pid()), worker.proc.name());
    }
    let ctx = zmq::Context::new();
    for group in &cluster.workers {
        broker.wait_workers(&ctx, &group.service, u64::from(group.count), STARTUP)?;
    }
    greet(connection, cluster)?;
    println!("cluster up; Ctrl-C stops it");

    let until = args.run_for.map(|d| Instant::now() + d);
    let outcome = loop {
        if stop_requested() || until.is_some_and(|u| Instant::now() >= u) {
            break Outcome::Success;
        }
        let crashed = broker.exited().or_else(|| workers.exited().next());
        if let Some(crashed) = crashed {
            eprintln!("hearth: {crashed}; stopping the cluster");
            break Outcome::Failed;
        }
        std::thread::sleep(WATCH_EVERY);
    };
    stop(|| {
        workers.terminate(GRACE);
        let _ = broker.terminate(GRACE);
    });
    Ok(outcome)
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

/// One child process, as a line.
fn print_proc(pid: Option<u32>, name: &str) {
    let pid = pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
    println!("pid {pid:>7}  {name}");
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
fn wait_until_settled(cluster: &Cluster, pair: &mut Pair) -> anyhow::Result<Option<[Observed; 2]>> {
    let settle = Wait::new("the pair to settle", STARTUP).every(Duration::from_millis(100));
    let outcome = settle.until(|| -> Result<_, String> {
        if stop_requested() {
            return Ok(Ok(None));
        }
        if let Some(crashed) = pair.exited().into_iter().next() {
            return Ok(Err(anyhow::anyhow!("{crashed} during startup")));
        }
        let states = pair.observe_both();
        for group in &cluster.workers {
            settled(&states, &group.service, u64::from(group.count))?;
        }
        Ok(Ok(Some(states)))
    })?;
    outcome
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

/// Stops the children (`stop_children`: workers first, so they leave the brokers in
/// order, then the brokers) and says so.
fn stop(stop_children: impl FnOnce()) {
    stop_children();
    println!("cluster stopped");
}
