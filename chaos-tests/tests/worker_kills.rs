//! Workers are SIGKILLed at random while clients send: every request is still answered.
//!
//! A broker, four `echo` workers and two `slow` ones (`sh -c 'sleep 0.2; cat'`, so kills
//! often hit a worker holding a request); four clients send for `HEARTH_CHAOS_SECS` (10 by
//! default) while a worker is killed every 0.3 to 1.5 s and replaced at once or after a
//! pause, and now and then every worker of a service is killed at once. The broker must
//! dispatch a dead worker's request again and hold requests while a service has no worker.
//! Replay a run with `HEARTH_CHAOS_SEED=<seed>` from the printed summary.

use std::time::{Duration, Instant};

use hearth_chaos_tests::{
    chaos_duration, seed, BrokerOptions, Cluster, Load, Summary, WorkerChaos,
};
use rand::rngs::StdRng;
use rand::SeedableRng;

#[test]
fn worker_kills_lose_nothing() -> anyhow::Result<()> {
    const TEST: &str = "worker_kills_lose_nothing";
    let started = Instant::now();
    let seed = seed(TEST);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut cluster = Cluster::start("worker-kills", BrokerOptions::default())?;
    let chaos = WorkerChaos::echo_and_slow(chaos_duration(Duration::from_secs(10)));
    chaos.start_workers(&mut cluster)?;
    cluster.wait_workers(&chaos.baseline(), Duration::from_secs(10))?;

    let load = Load::start(
        cluster.context(),
        WorkerChaos::echo_and_slow_load(&cluster.frontend()),
    );
    let counts = chaos.run(&mut cluster, &mut rng)?;
    // The dead are forgotten and the replacements registered.
    cluster.wait_workers(&chaos.baseline(), Duration::from_secs(10))?;
    let tally = load.finish();

    let summary = Summary {
        seed,
        tally,
        kills: counts.kills,
        restarts: counts.restarts,
        freezes: counts.freezes,
        requeued: cluster.metric_sum("hearth_requeued_total").ok(),
        elapsed: started.elapsed(),
    };
    summary.print(TEST);
    summary.assert_nothing_lost();
    cluster.check_alive()?;
    cluster.passed();
    Ok(())
}
