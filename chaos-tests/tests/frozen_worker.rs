//! A worker frozen (SIGSTOP) while it holds a request is given up by the broker after
//! liveness x heartbeat; another worker answers the request; thawed (SIGCONT), the frozen
//! worker registers again by itself.

use std::time::{Duration, Instant};

use hearth_chaos_tests::{
    seed, wait_for, BrokerOptions, ClientPlan, Cluster, Load, LoadPlan, Summary, WorkerKind,
};

/// Long enough that the worker is surely frozen while it holds the request, shorter than
/// liveness x heartbeat (600 ms) so that even a worker that does not heartbeat while it
/// runs its command is not dropped for that alone.
const SLOW_CMD: &str = "sleep 0.5; cat";

#[test]
fn frozen_worker_is_replaced() -> anyhow::Result<()> {
    const TEST: &str = "frozen_worker_is_replaced";
    let started = Instant::now();
    // Nothing here is random; the seed is printed for the summary's sake only.
    let seed = seed(TEST);
    let mut cluster = Cluster::start("frozen-worker", BrokerOptions::default())?;
    let slow = WorkerKind::Exec(SLOW_CMD.to_owned());
    cluster.add_worker("echo", &WorkerKind::Echo)?;
    let frozen = cluster.add_worker("slow", &slow)?;
    cluster.wait_workers(&[("echo", 1), ("slow", 1)], Duration::from_secs(10))?;

    // Background echo traffic, and one slow request that only the soon-frozen worker can take.
    const SLOW_CLIENT: usize = 1;
    let load = Load::start(
        cluster.context(),
        LoadPlan {
            endpoints: vec![cluster.frontend()],
            clients: vec![
                ClientPlan::new("echo", 1, Duration::from_millis(10)),
                ClientPlan::new("slow", 1, Duration::ZERO).limit(1),
            ],
            request_timeout: Duration::from_secs(20),
            retry: false,
            drain: Duration::from_secs(20),
        },
    );
    wait_for(
        "the slow worker to take the request",
        Duration::from_secs(10),
        || {
            let status = cluster.status().map_err(|e| format!("{e:#}"))?;
            let s = status.services.iter().find(|s| s.name == "slow");
            match s {
                Some(s) if s.workers == 1 && s.idle_workers == 0 && s.queue_depth == 0 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )?;
    let worker = cluster.worker_mut(frozen).expect("the slow worker runs");
    worker.proc.freeze()?;
    worker.frozen = true;
    let frozen_at = Instant::now();
    eprintln!(
        "{TEST}: SIGSTOP {:?} while it holds the slow request",
        worker.proc
    );

    cluster.add_worker("slow", &slow)?;
    wait_for(
        "another worker to answer the slow request",
        Duration::from_secs(15),
        || match load.answered_by(SLOW_CLIENT) {
            1 => Ok(()),
            n => Err(n),
        },
    )?;
    eprintln!(
        "{TEST}: slow request answered {:?} after the freeze",
        frozen_at.elapsed()
    );
    // The frozen worker is gone from the broker's books, its replacement is there.
    cluster.wait_workers(&[("slow", 1)], Duration::from_secs(5))?;
    let requeued = cluster.metric_sum("hearth_requeued_total")?;
    assert!(
        requeued >= 1.0,
        "hearth_requeued_total is {requeued}, expected at least 1"
    );

    let worker = cluster
        .worker_mut(frozen)
        .expect("the frozen worker is still there");
    worker.proc.thaw()?;
    worker.frozen = false;
    eprintln!("{TEST}: SIGCONT {:?}", worker.proc);
    cluster.wait_workers(&[("echo", 1), ("slow", 2)], Duration::from_secs(10))?;
    let tally = load.finish();

    let summary = Summary {
        seed,
        tally,
        kills: 0,
        restarts: 0,
        freezes: 1,
        requeued: Some(requeued),
        elapsed: started.elapsed(),
    };
    summary.print(TEST);
    summary.assert_nothing_lost();
    cluster.check_alive()?;
    cluster.passed();
    Ok(())
}
