//! The broker is SIGKILLed under load and started again on the same port: workers register
//! again by themselves, and clients that retry (new socket, same body, after 1 s) get every
//! request answered. Retrying may answer a request twice; duplicates are counted, not failed.

use std::time::{Duration, Instant};

use hearth_chaos_tests::{
    chaos_duration, seed, wait_for, BrokerOptions, ClientPlan, Cluster, Load, LoadPlan, Summary,
    WorkerKind,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[test]
fn broker_restart_is_survived() -> anyhow::Result<()> {
    const TEST: &str = "broker_restart_is_survived";
    const WORKERS: u64 = 3;
    let started = Instant::now();
    let seed = seed(TEST);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut cluster = Cluster::start("broker-restart", BrokerOptions::default())?;
    for _ in 0..WORKERS {
        cluster.add_worker("echo", &WorkerKind::Echo)?;
    }
    cluster.wait_workers(&[("echo", WORKERS)], Duration::from_secs(10))?;

    let echo = ClientPlan::new("echo", 2, Duration::from_millis(5));
    let load = Load::start(
        cluster.context(),
        LoadPlan {
            endpoints: vec![cluster.frontend()],
            clients: vec![echo.clone(), echo.clone(), echo.clone(), echo],
            request_timeout: Duration::from_secs(1),
            retry: true,
            drain: Duration::from_secs(20),
        },
    );
    let (mut kills, mut restarts) = (0, 0);
    let chaos_until = Instant::now() + chaos_duration(Duration::from_secs(6));
    // Bounded: at most 100 restarts whatever HEARTH_CHAOS_SECS says.
    while Instant::now() < chaos_until && kills < 100 {
        std::thread::sleep(Duration::from_millis(rng.gen_range(1000..=2000)));
        let answered = load.answered();
        cluster.kill_broker();
        kills += 1;
        eprintln!("{TEST}: kill -9 the broker ({answered} answered so far)");
        std::thread::sleep(Duration::from_millis(rng.gen_range(100..=1000)));
        cluster.start_broker()?;
        restarts += 1;
        cluster.wait_workers(&[("echo", WORKERS)], Duration::from_secs(10))?;
        eprintln!("{TEST}: broker back, {WORKERS} workers registered again");
        wait_for("answers after the restart", Duration::from_secs(10), || {
            let now = load.answered();
            if now > answered {
                Ok(())
            } else {
                Err(now)
            }
        })?;
    }
    let tally = load.finish();

    let summary = Summary {
        seed,
        tally,
        kills,
        restarts,
        freezes: 0,
        requeued: cluster.metric_sum("hearth_requeued_total").ok(),
        elapsed: started.elapsed(),
    };
    summary.print(TEST);
    summary.assert_nothing_lost();
    cluster.check_alive()?;
    cluster.passed();
    Ok(())
}
