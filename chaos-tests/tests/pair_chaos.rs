//! A Binary Star pair under a seeded random schedule of broker and worker failures, with
//! steady load from retrying clients over both brokers and state-model writers: nothing may
//! be lost or mismatched, no acknowledged write may be lost or applied twice, the change
//! feed must deliver every change once and in order, and no broker may answer while its
//! peer is the active one.
//!
//! The pair: primary and backup `hearth-broker` processes (peer heartbeat 300 ms), each with
//! its own data dir (kept across its restarts) and change feed, three
//! `echo` workers and two `slow` ones (`sleep 0.1; cat`) registered with both brokers, and
//! one `echo` worker on each broker alone. The load: four `echo` clients and one `slow`
//! client that retry a request on the other broker after 1 s (as a Lazy Pirate client
//! does), and two `echo` *probe* clients that wait 8 s per try and keep up to 64 requests
//! in flight, so that they are still connected to a broker while it is frozen, killed and
//! restarted, and keep sending to it.
//!
//! The state load (see `hearth_chaos_tests::state_load`): two writer threads write
//! `chaos/w<thread>/<n>` = n, one key per `state.set`, through a `hearth_client::Client`
//! given both brokers (a write id per write, resent unchanged on every retry), and record
//! the seq of every acknowledgement; a watcher follows both brokers' change feeds for the
//! whole run and checks that after each snapshot every change has exactly the next seq.
//! Once the chaos is over and the pair has settled, every key is read with `state.get`:
//! each acknowledged write must be there with its value and its seq (`writes_missing` and
//! `writes_reapplied` must be 0), and the watcher, caught up to the model's seq, must hold
//! exactly what `state.get` returned. A write that times out (a failover window) is
//! counted, not failed; a refused one fails the test.
//!
//! For `HEARTH_CHAOS_SECS` (45 by default) the schedule, drawn from the printed seed, lets
//! the pair run 0.5 to 2 s and then does one broker event, carried out whole before the
//! next: kill -9 of the active (its peer must take over; restarted after 0.3 to 2 s, it
//! must come back passive), kill -9 of the passive (restarted the same way), or SIGSTOP of
//! the active until the peer has taken over plus 3 to 8 peer heartbeats, then SIGCONT (it
//! must step down to passive). All along, a worker is killed every 0.4 to 2 s and replaced
//! after up to 1 s. Both brokers are never down together, and each event starts only once
//! the pair has settled (one active, one passive, every worker registered with both), so the
//! restart rule (a broker restarted alone while *paired* waits for its peer) always finds
//! the peer running; the final read still waits, bounded, until a broker serves it.
//!
//! Dual-active proof (see `hearth_chaos_tests::dual_active`): every reply is traced with
//! the broker it came from, when its request was sent on that socket, and when it arrived.
//! A broker killed or frozen by the test is *deposed* until its failover counter shows it
//! took over again; a reply from it to a request sent after the deposition began and
//! received before it ended fails the test. The probes make sure such requests exist: they
//! send to the frozen broker during its freeze and to the restarted one after its restart.
//! Independently, the passive's `hearth_replies_total` must not move between the pair
//! settling and the next broker event, and a restarted broker must never report active
//! before failing over. Failovers are the last-seen `hearth_failovers_total` of every
//! broker process, summed; an unexplained one (a broker starved on a loaded machine) is
//! reported, not failed.
//!
//! Replay with `HEARTH_CHAOS_SEED=<seed>` (the schedule replays; the machine's timing does
//! not).

use std::time::{Duration, Instant};

use hearth_chaos_tests::cluster::http_get_within;
use hearth_chaos_tests::pair::SAMPLE_TIMEOUT;
use hearth_chaos_tests::pair_scenario::draw;
use hearth_chaos_tests::state_load::read_model;
use hearth_chaos_tests::{
    chaos_duration, seed, ClientPlan, Load, LoadPlan, Pair, PairOptions, PairScenario, Reach, Side,
    StateLoad, StatePlan, StateReport, Summary, WorkerKills, WorkerKind, WorkerSpec,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SLOW_CMD: &str = "sleep 0.1; cat";
/// Every key the state writers write starts with this; the watcher follows it.
const STATE_PREFIX: &str = "chaos/";
/// How long the final read may wait for a broker to serve `state.get`, and the watcher to
/// catch up: generous, as the pair has settled by then.
const FINAL_READ: Duration = Duration::from_secs(60);

/// The traced clients of both tests: an echo client that retries on the other broker after
/// 1 s, and a probe that keeps many requests on one broker for 8 s a try, so that a frozen
/// or restarted broker has requests it could answer wrongly.
fn echo_and_probe_clients() -> (ClientPlan, ClientPlan) {
    let echo = ClientPlan::new("echo", 2, Duration::from_millis(5)).traced();
    let probe = ClientPlan::new("echo", 64, Duration::from_millis(50))
        .try_timeout(Duration::from_secs(8))
        .traced();
    (echo, probe)
}

#[test]
fn pair_survives_random_broker_and_worker_failures() -> anyhow::Result<()> {
    const TEST: &str = "pair_survives_random_broker_and_worker_failures";
    let started = Instant::now();
    let seed = seed(TEST);
    let pair = Pair::start("pair-chaos", PairOptions::default().with_durable_state())?;
    let mut scenario = PairScenario::new(TEST, pair, StdRng::seed_from_u64(seed));
    let slow = WorkerKind::Exec(SLOW_CMD.to_owned());
    let workers = [
        WorkerSpec::new("echo", WorkerKind::Echo, Reach::Both),
        WorkerSpec::new("echo", WorkerKind::Echo, Reach::Both),
        WorkerSpec::new("echo", WorkerKind::Echo, Reach::Both),
        WorkerSpec::new("echo", WorkerKind::Echo, Reach::Only(Side::Primary)),
        WorkerSpec::new("echo", WorkerKind::Echo, Reach::Only(Side::Backup)),
        WorkerSpec::new("slow", slow.clone(), Reach::Both),
        WorkerSpec::new("slow", slow, Reach::Both),
    ];
    for spec in &workers {
        scenario.pair.add_worker(spec)?;
    }
    scenario.settle()?;

    let (echo, probe) = echo_and_probe_clients();
    let load = Load::start(
        scenario.pair.context(),
        LoadPlan {
            endpoints: scenario.pair.endpoints(),
            clients: vec![
                echo.clone(),
                echo.clone(),
                echo.clone(),
                echo,
                ClientPlan::new("slow", 2, Duration::ZERO).traced(),
                probe.clone(),
                probe,
            ],
            request_timeout: Duration::from_secs(1),
            retry: true,
            drain: Duration::from_secs(25),
        },
    );
    let state_plan = StatePlan::new(
        scenario.pair.endpoints(),
        scenario.pair.feeds(),
        STATE_PREFIX,
    );
    let mut state = StateLoad::start(&state_plan)?;

    scenario.set_worker_kills(Some(WorkerKills {
        pause: (Duration::from_millis(400), Duration::from_secs(2)),
        replace_after: (Duration::ZERO, Duration::from_secs(1)),
    }));
    let chaos_until = Instant::now() + chaos_duration(Duration::from_secs(45));
    let mut events = 0;
    // Bounded whatever HEARTH_CHAOS_SECS says.
    while Instant::now() < chaos_until && events < 1000 {
        let calm = draw(
            scenario.rng(),
            (Duration::from_millis(500), Duration::from_secs(2)),
        );
        scenario.idle(calm)?;
        let down = draw(
            scenario.rng(),
            (Duration::from_millis(300), Duration::from_secs(2)),
        );
        let roll = scenario.rng().gen_range(0..100);
        let beats = scenario.rng().gen_range(3..=8);
        match roll {
            0..=34 => scenario.kill_active(down)?,
            35..=59 => scenario.kill_passive(down)?,
            _ => scenario.freeze_active(beats)?,
        }
        events += 1;
    }
    scenario.set_worker_kills(None);
    scenario.replace_all_now()?;
    let active = scenario.settle()?;
    scenario.log(format!(
        "chaos over after {events} broker events; the {} is active; draining",
        active.role()
    ));
    let writes = state.stop_writers();
    scenario.log(format!(
        "state writers stopped: {} of {} writes acknowledged",
        writes.acknowledged, writes.sent
    ));
    let tally = load.finish();
    let (model, model_seq) = read_model(&state_plan, FINAL_READ, || {
        let pair = &scenario.pair;
        Side::BOTH
            .map(|side| {
                let status = http_get_within(pair.metrics_addr(side), "/status", SAMPLE_TIMEOUT)
                    .unwrap_or_else(|e| format!("{e:#}"));
                format!("{}: {status}", side.role())
            })
            .join("; ")
    })?;
    scenario.log(format!(
        "state.get: {} keys, model at seq {model_seq}",
        model.len()
    ));
    let watch = state.finish_watcher(model_seq, FINAL_READ);
    scenario.log(format!("state watcher at seq {:?}", watch.last));
    let state_report = StateReport::new(writes, watch, &model, model_seq);
    scenario.close_watch()?;
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
        "{TEST}: {} failovers={} unexplained_failovers={} broker_events={} (kills={} \
         freezes={} restarts={}) worker_kills={} answered_via=primary:{},backup:{} \
         dual_active={} {}",
        summary.line(),
        scenario.watch.failovers(),
        scenario.watch.unexplained_failovers(),
        counts.broker_events(),
        counts.broker_kills,
        counts.broker_freezes,
        counts.broker_restarts,
        counts.worker_kills,
        summary.tally.answered_via[0],
        summary.tally.answered_via[1],
        violations.len(),
        state_report.line(),
    );
    assert!(
        violations.is_empty(),
        "dual-active answers (seed {seed}): {violations:#?}"
    );
    state_report.assert_ok(seed);
    summary.assert_nothing_lost();
    scenario.pair.check_alive()?;
    scenario.pair.passed();
    Ok(())
}

/// The primary is killed while active and started again only after 2 s, long enough for
/// the backup's reconnects to its peer endpoint to back off: restarted, the primary must
/// learn from the backup's heartbeat that the backup is active and come back passive,
/// without answering a single request meanwhile (the probes send to it from the moment it
/// is back). Twice, with the backup killed and restarted in between.
#[test]
fn a_primary_restarted_after_an_outage_comes_back_passive() -> anyhow::Result<()> {
    const TEST: &str = "a_primary_restarted_after_an_outage_comes_back_passive";
    let started = Instant::now();
    let seed = seed(TEST);
    let pair = Pair::start("pair-primary-restart", PairOptions::default())?;
    let mut scenario = PairScenario::new(TEST, pair, StdRng::seed_from_u64(seed));
    for _ in 0..2 {
        scenario
            .pair
            .add_worker(&WorkerSpec::new("echo", WorkerKind::Echo, Reach::Both))?;
    }
    scenario.settle()?;
    let (echo, probe) = echo_and_probe_clients();
    let load = Load::start(
        scenario.pair.context(),
        LoadPlan {
            endpoints: scenario.pair.endpoints(),
            clients: vec![echo.clone(), echo, probe.clone(), probe],
            request_timeout: Duration::from_secs(1),
            retry: true,
            drain: Duration::from_secs(25),
        },
    );
    let outage = Duration::from_secs(2);
    scenario.idle(Duration::from_millis(500))?;
    scenario.kill_active(outage)?;
    scenario.kill_active(Duration::from_millis(300))?;
    scenario.kill_active(outage)?;
    scenario.idle(Duration::from_millis(500))?;
    let tally = load.finish();
    scenario.close_watch()?;
    scenario.watch.check_replies(&tally.replies);
    let counts = scenario.counts;
    let summary = Summary {
        seed,
        tally,
        kills: counts.broker_kills,
        restarts: counts.broker_restarts,
        freezes: 0,
        requeued: None,
        elapsed: started.elapsed(),
    };
    let violations = scenario.watch.violations().to_vec();
    eprintln!(
        "{TEST}: {} failovers={} broker_events={} dual_active={}",
        summary.line(),
        scenario.watch.failovers(),
        counts.broker_events(),
        violations.len()
    );
    assert!(
        violations.is_empty(),
        "dual-active answers: {violations:#?}"
    );
    summary.assert_nothing_lost();
    scenario.pair.check_alive()?;
    scenario.pair.passed();
    Ok(())
}
