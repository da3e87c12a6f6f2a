//! The long soak: the worker-kill scenario of `worker_kills.rs`, plus workers frozen with
//! SIGSTOP (and thawed) now and then, for `HEARTH_CHAOS_SECS` seconds (300 by default).
//! Ignored by default; run it with
//!
//! ```text
//! cargo build --workspace --bins --release
//! cargo test -p hearth-chaos-tests --release -- --ignored --nocapture
//! ```
//!
//! and add `HEARTH_CHAOS_SECS=3600` for an hour, `HEARTH_CHAOS_SEED=<seed>` to replay.

use std::time::{Duration, Instant};

use hearth_chaos_tests::{
    chaos_duration, seed, BrokerOptions, Cluster, Load, Summary, WorkerChaos,
};
use rand::rngs::StdRng;
use rand::SeedableRng;

#[test]
#[ignore = "long soak; run with: cargo test -p hearth-chaos-tests --release -- --ignored --nocapture"]
fn soak_worker_kills_and_freezes() -> anyhow::Result<()> {
    const TEST: &str = "soak_worker_kills_and_freezes";
    let started = Instant::now();
    let seed = seed(TEST);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut cluster = Cluster::start("soak", BrokerOptions::default())?;
    let mut chaos = WorkerChaos::echo_and_slow(chaos_duration(Duration::from_secs(300)));
    chaos.freeze_chance = 0.15;
    chaos.start_workers(&mut cluster)?;
    cluster.wait_workers(&chaos.baseline(), Duration::from_secs(10))?;

    let load = Load::start(
        cluster.context(),
        WorkerChaos::echo_and_slow_load(&cluster.frontend()),
    );
    let counts = chaos.run(&mut cluster, &mut rng)?;
    // Thawed workers must come back on their own, the dead be forgotten.
    cluster.wait_workers(&chaos.baseline(), Duration::from_secs(20))?;
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
