//! Workers of a Binary Star pair across failovers.
//!
//! * `worker_deaths_during_failover_lose_nothing`: the active broker and most workers are
//!   SIGKILLed at the same moment (the backup with three of four workers, then the primary
//!   with all of them); the new active serves every request with the surviving and the
//!   restarted workers.
//! * `a_worker_on_the_backup_alone_serves_once_the_backup_is_active`: a service whose only
//!   worker reaches only the backup is not served while the primary is active (the passive
//!   serves nothing), is served by the backup once it takes over, and loses nothing.
//! * `a_worker_of_both_brokers_runs_one_request_at_a_time`: a `hearth-worker` with two
//!   `--broker` and the default concurrency, whose `--exec` command marks itself busy with an
//!   atomic `mkdir`, is handed a request by the new active while it still runs one from the
//!   old active (after a freeze of the primary, then a kill of the backup): it must never
//!   run two at once.
//!
//! Dual-active answers fail the first two tests (see `hearth_chaos_tests::dual_active`).

use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use hearth_chaos_tests::pair_scenario::EVENT_TIMEOUT;
use hearth_chaos_tests::{
    seed, wait_for, ClientPlan, Load, LoadPlan, Pair, PairOptions, PairScenario, Reach, Side,
    Summary, Tally, WorkerKind, WorkerSpec,
};
use hearth_proto::{ClientMessage, Limits};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Replies that came via `side` and were received after `after`.
fn replies_via_after(tally: &Tally, side: Side, after: Instant) -> usize {
    tally
        .replies
        .iter()
        .filter(|r| r.via == side.index() && r.received > after)
        .count()
}

/// Prints the summary line and fails on loss, mismatch or a dual-active answer.
fn conclude(test: &str, seed: u64, started: Instant, scenario: &mut PairScenario, tally: Tally) {
    scenario.watch.check_replies(&tally.replies);
    let counts = scenario.counts;
    let summary = Summary {
        seed,
        tally,
        kills: counts.broker_kills + counts.worker_kills,
        restarts: counts.broker_restarts + counts.worker_restarts,
        freezes: counts.broker_freezes,
        requeued: None,
        elapsed: started.elapsed(),
    };
    let violations = scenario.watch.violations().to_vec();
    eprintln!(
        "{test}: {} failovers={} broker_events={} answered_via=primary:{},backup:{} dual_active={}",
        summary.line(),
        scenario.watch.failovers(),
        counts.broker_events(),
        summary.tally.answered_via[0],
        summary.tally.answered_via[1],
        violations.len()
    );
    assert!(
        violations.is_empty(),
        "dual-active answers: {violations:#?}"
    );
    summary.assert_nothing_lost();
}

#[test]
fn worker_deaths_during_failover_lose_nothing() -> anyhow::Result<()> {
    const TEST: &str = "worker_deaths_during_failover_lose_nothing";
    let started = Instant::now();
    let seed = seed(TEST);
    let pair = Pair::start("pair-worker-deaths", PairOptions::default())?;
    let mut scenario = PairScenario::new(TEST, pair, StdRng::seed_from_u64(seed));
    // Slow enough that the kills hit workers holding a request.
    let work = WorkerSpec::new(
        "work",
        WorkerKind::Exec("sleep 0.05; cat".to_owned()),
        Reach::Both,
    );
    for _ in 0..4 {
        scenario.pair.add_worker(&work)?;
    }
    scenario.settle()?;
    let client = ClientPlan::new("work", 2, Duration::from_millis(10)).traced();
    let load = Load::start(
        scenario.pair.context(),
        LoadPlan {
            endpoints: scenario.pair.endpoints(),
            clients: vec![client.clone(), client.clone(), client.clone(), client],
            request_timeout: Duration::from_secs(1),
            retry: true,
            drain: Duration::from_secs(20),
        },
    );
    scenario.idle(Duration::from_secs(1))?;

    // The backup becomes the active first (the primary frozen, then stepping down), so
    // that the broker restarted below is the backup.
    scenario.freeze_active(4)?;
    scenario.idle(Duration::from_secs(1))?;

    // The active backup and three of the four workers at once; one survivor serves until
    // the replacements come. The backup is started again and comes back passive.
    let ids: Vec<usize> = scenario.pair.workers().iter().map(|w| w.id).collect();
    let first = Instant::now();
    let killed = scenario.kill_active_and_workers(
        Some(Duration::ZERO),
        &ids[..3],
        Duration::from_millis(1500),
    )?;
    anyhow::ensure!(killed == Side::Backup, "the backup was active");
    scenario.idle(Duration::from_secs(1))?;

    // The active primary and every worker at once: requests wait at the new active for the
    // replacements. The primary stays down (its restart is `pair_chaos.rs`'s subject).
    let ids: Vec<usize> = scenario.pair.workers().iter().map(|w| w.id).collect();
    let second = Instant::now();
    scenario.kill_active_and_workers(None, &ids, Duration::from_secs(1))?;
    scenario.idle(Duration::from_secs(1))?;
    scenario.replace_all_now()?;
    scenario.wait("the replacements on the backup", EVENT_TIMEOUT, |s| {
        s.pair
            .wait_workers(Side::Backup, Duration::ZERO)
            .map_err(|e| format!("{e:#}"))
    })?;
    scenario.idle(Duration::from_secs(1))?;

    let tally = load.finish();
    scenario.close_watch()?;
    let after_first = replies_via_after(&tally, Side::Primary, first);
    let after_second = replies_via_after(&tally, Side::Backup, second);
    scenario.log(format!(
        "replies via the primary after the first kill: {after_first}; via the backup after \
         the second: {after_second}"
    ));
    conclude(TEST, seed, started, &mut scenario, tally);
    assert!(after_first > 0, "the primary served after the first kill");
    assert!(after_second > 0, "the backup served after the second kill");
    scenario.pair.check_alive()?;
    scenario.pair.passed();
    Ok(())
}

#[test]
fn a_worker_on_the_backup_alone_serves_once_the_backup_is_active() -> anyhow::Result<()> {
    const TEST: &str = "a_worker_on_the_backup_alone_serves_once_the_backup_is_active";
    let started = Instant::now();
    let seed = seed(TEST);
    let pair = Pair::start("pair-backup-only-worker", PairOptions::default())?;
    let mut scenario = PairScenario::new(TEST, pair, StdRng::seed_from_u64(seed));
    scenario
        .pair
        .add_worker(&WorkerSpec::new("echo", WorkerKind::Echo, Reach::Both))?;
    scenario.pair.add_worker(&WorkerSpec::new(
        "solo",
        WorkerKind::Echo,
        Reach::Only(Side::Backup),
    ))?;
    scenario.settle()?;
    const SOLO: usize = 1;
    let load = Load::start(
        scenario.pair.context(),
        LoadPlan {
            endpoints: scenario.pair.endpoints(),
            clients: vec![
                ClientPlan::new("echo", 2, Duration::from_millis(10)).traced(),
                ClientPlan::new("solo", 2, Duration::from_millis(10)).traced(),
            ],
            request_timeout: Duration::from_secs(1),
            retry: true,
            drain: Duration::from_secs(20),
        },
    );
    // While the primary is active, nobody may serve `solo`: the primary has no worker for
    // it and the passive backup dispatches nothing.
    scenario.idle(Duration::from_secs(3))?;
    let early = load.answered_by(SOLO);
    assert_eq!(
        early, 0,
        "solo was answered while the primary was active and the backup passive"
    );
    assert!(load.answered_by(0) > 0, "echo is served meanwhile");

    // The backup takes over (the primary frozen, then stepping down): solo is served.
    let takeover = Instant::now();
    scenario.freeze_active(4)?;
    scenario.wait("solo answers", EVENT_TIMEOUT, |_| {
        match load.answered_by(SOLO) {
            0 => Err("none".to_owned()),
            n => Ok(n),
        }
    })?;
    scenario.idle(Duration::from_secs(2))?;

    let tally = load.finish();
    scenario.close_watch()?;
    let solo_via: Vec<usize> = Side::BOTH
        .iter()
        .map(|side| {
            tally
                .replies
                .iter()
                .filter(|r| r.client == SOLO && r.via == side.index())
                .count()
        })
        .collect();
    scenario.log(format!(
        "solo replies via primary {}, via backup {} (all after {:?})",
        solo_via[0],
        solo_via[1],
        takeover.elapsed()
    ));
    assert_eq!(solo_via[0], 0, "the primary has no solo worker");
    assert!(solo_via[1] > 0);
    conclude(TEST, seed, started, &mut scenario, tally);
    scenario.pair.check_alive()?;
    scenario.pair.passed();
    Ok(())
}

/// How long the serial worker's command runs: longer than a takeover after a freeze (two
/// 300 ms peer heartbeats and a request) or a kill, so the new active hands it a request
/// while it still runs the old active's.
const SERIAL_SECS: &str = "1.5";

/// A Lazy Pirate call of `service` with `body`: one try on `endpoints[start]`, then on the
/// next endpoint after each `try_timeout`, until `deadline`. Returns the reply body and the
/// index of the endpoint that answered.
fn call(
    ctx: zmq::Context,
    endpoints: Vec<String>,
    start: usize,
    service: &'static str,
    body: Vec<u8>,
    try_timeout: Duration,
    deadline: Duration,
) -> JoinHandle<anyhow::Result<(Vec<u8>, usize)>> {
    std::thread::spawn(move || {
        let until = Instant::now() + deadline;
        let mut target = start;
        while Instant::now() < until {
            let socket = ctx.socket(zmq::DEALER)?;
            socket.set_linger(0)?;
            socket.connect(&endpoints[target])?;
            socket.send_multipart(ClientMessage::new(service, body.clone()).frames(), 0)?;
            if socket.poll(zmq::POLLIN, try_timeout.as_millis() as i64)? > 0 {
                let reply = ClientMessage::decode(socket.recv_multipart(0)?, &Limits::default())
                    .map_err(|e| anyhow!("undecodable reply: {e}"))?;
                let got = reply.body.concat();
                if got != body {
                    bail!(
                        "reply {:?} to {:?}",
                        String::from_utf8_lossy(&got),
                        String::from_utf8_lossy(&body)
                    );
                }
                return Ok((got, target));
            }
            target = (target + 1) % endpoints.len();
        }
        bail!(
            "{:?} unanswered within {deadline:?}",
            String::from_utf8_lossy(&body)
        )
    })
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

fn joined(handle: JoinHandle<anyhow::Result<(Vec<u8>, usize)>>) -> anyhow::Result<usize> {
    let (_, via) = handle
        .join()
        .map_err(|_| anyhow!("a call thread panicked"))??;
    Ok(via)
}

#[test]
fn a_worker_of_both_brokers_runs_one_request_at_a_time() -> anyhow::Result<()> {
    const TEST: &str = "a_worker_of_both_brokers_runs_one_request_at_a_time";
    let started = Instant::now();
    let seed = seed(TEST);
    let mut pair = Pair::start("pair-serial-worker", PairOptions::default())?;
    let marks = pair.logs().path().join("serial");
    std::fs::create_dir_all(&marks)?;
    let (runs, overlaps) = (marks.join("runs"), marks.join("overlaps"));
    // `mkdir` is atomic: it fails if another run of the command holds the directory.
    let cmd = format!(
        "d='{}'; mkdir \"$d/busy\" 2>/dev/null || echo overlap >> \"$d/overlaps\"; \
         echo run >> \"$d/runs\"; sleep {SERIAL_SECS}; rmdir \"$d/busy\" 2>/dev/null; cat",
        marks.display()
    );
    // Default concurrency (1), two --broker.
    pair.add_worker(&WorkerSpec::new(
        "serial",
        WorkerKind::Exec(cmd),
        Reach::Both,
    ))?;
    for side in Side::BOTH {
        pair.wait_workers(side, Duration::from_secs(15))?;
    }
    let ctx = pair.context().clone();
    let endpoints = pair.endpoints();
    // Longer than a takeover plus two runs of the command, so that an answer is not missed
    // by a client that already moved on.
    let long_try = Duration::from_secs(5);
    let short_try = long_try;
    let deadline = Duration::from_secs(25);
    let log = |what: &str| eprintln!("{TEST} [{:6.2}s] {what}", started.elapsed().as_secs_f64());

    // Round 1: the active primary hands the worker r1; while it runs, the primary is frozen
    // and the backup takes over with r2, which it hands to the same (busy) worker.
    let r1 = call(
        ctx.clone(),
        endpoints.clone(),
        0,
        "serial",
        b"r1".to_vec(),
        long_try,
        deadline,
    );
    wait_for("the worker to start r1", Duration::from_secs(10), || {
        if lines(&runs) >= 1 {
            Ok(())
        } else {
            Err(lines(&runs))
        }
    })?;
    pair.freeze_broker(Side::Primary)?;
    log("SIGSTOP the primary while the worker runs r1");
    let r2 = call(
        ctx.clone(),
        endpoints.clone(),
        1,
        "serial",
        b"r2".to_vec(),
        short_try,
        deadline,
    );
    pair.wait_state(Side::Backup, "active", EVENT_TIMEOUT)?;
    log("the backup took over");
    let r2_via = joined(r2).context("r2")?;
    log(&format!("r2 answered via endpoint {r2_via}"));
    pair.thaw_broker(Side::Primary)?;
    pair.wait_state(Side::Primary, "passive", EVENT_TIMEOUT)?;
    log("the primary stepped down");
    let r1_via = joined(r1).context("r1")?;
    log(&format!("r1 answered via endpoint {r1_via}"));
    assert_eq!(
        r2_via,
        Side::Backup.index(),
        "r2 is answered by the new active"
    );

    // Round 2: the active backup hands the worker r3; while it runs, the backup is killed
    // and the primary takes over with r4, which it hands to the same (busy) worker.
    let before = lines(&runs);
    let r3 = call(
        ctx.clone(),
        endpoints.clone(),
        1,
        "serial",
        b"r3".to_vec(),
        long_try,
        deadline,
    );
    wait_for("the worker to start r3", Duration::from_secs(10), || {
        if lines(&runs) > before {
            Ok(())
        } else {
            Err(lines(&runs))
        }
    })?;
    pair.kill_broker(Side::Backup);
    log("kill -9 the backup while the worker runs r3");
    let r4 = call(
        ctx.clone(),
        endpoints.clone(),
        0,
        "serial",
        b"r4".to_vec(),
        short_try,
        deadline,
    );
    pair.wait_state(Side::Primary, "active", EVENT_TIMEOUT)?;
    log("the primary took over");
    let r4_via = joined(r4).context("r4")?;
    let r3_via = joined(r3).context("r3")?;
    log(&format!(
        "r3 answered via endpoint {r3_via}, r4 via {r4_via}"
    ));
    assert_eq!(
        r4_via,
        Side::Primary.index(),
        "r4 is answered by the new active"
    );
    pair.start_broker(Side::Backup)?;
    pair.wait_state(Side::Backup, "passive", EVENT_TIMEOUT)
        .context("the restarted backup must come back passive")?;

    let overlapped = lines(&overlaps);
    eprintln!(
        "{TEST}: seed={seed} runs={} overlaps={overlapped} secs={:.1}",
        lines(&runs),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        overlapped,
        0,
        "the worker ran two requests at once ({} runs)",
        lines(&runs)
    );
    assert!(lines(&runs) >= 4, "every request ran");
    pair.check_alive()?;
    pair.passed();
    Ok(())
}
