//! The chaos soak, bounded for CI: the logic of `hearth-soak` (see
//! `hearth_chaos_tests::soak`) for `HEARTH_CHAOS_SECS` seconds (90 by default), with the
//! seed from `HEARTH_CHAOS_SEED` or the clock, printed first. The pair, workers, callers,
//! probes, state writers and watcher run under the seeded schedule (kill -9 and restart of
//! either broker and of workers, SIGSTOP/SIGCONT of a broker, both brokers killed at once,
//! a worker hung mid-request); the test prints the soak's table and fails on what makes
//! `hearth-soak` exit non-zero: a lost or mismatched call, an acknowledged write missing or
//! applied twice after recovery, a watcher change out of order or taken twice, a watcher
//! view that differs from `state.get`, a dual answer, or a run that could not carry on.
//!
//! The long run is the documented command instead (see the README's "The chaos soak"):
//!
//! ```text
//! cargo build --release --workspace --bins && target/release/hearth-soak --duration 30m
//! ```

use std::time::Duration;

use hearth_chaos_tests::soak::{self, SoakConfig};
use hearth_chaos_tests::{chaos_duration, seed};

#[test]
fn soak_the_pair_under_every_kind_of_failure() -> anyhow::Result<()> {
    const TEST: &str = "soak_the_pair_under_every_kind_of_failure";
    let seed = seed(TEST);
    let config = SoakConfig::new(chaos_duration(Duration::from_secs(90)), seed);
    let report = soak::run(&config)?;
    eprintln!("{TEST}:\n{}", report.table());
    let failures = report.failures();
    assert!(
        failures.is_empty(),
        "soak failed (seed {seed}; replay with HEARTH_CHAOS_SEED={seed} or `{}`):\n  - {}",
        report.replay,
        failures.join("\n  - ")
    );
    Ok(())
}

/// The takeover the restart rule holds back, forced: the passive SIGSTOPped, the active
/// killed at once, the passive thawed a second later (it then knows it was not running and
/// serves nothing until its peer's news arrives, which never comes). The runner must record the held-back takeover
/// (or see a takeover, if the passive heard its peer in time), restart the killed broker,
/// let the pair settle, and go on with the next event; the callers, retrying, must get
/// every answer in the end.
#[test]
fn a_takeover_held_back_by_the_restart_rule_does_not_stop_the_run() -> anyhow::Result<()> {
    use hearth_chaos_tests::load::{ClientPlan, Load, LoadPlan};
    use hearth_chaos_tests::pair::{Pair, PairOptions};
    use hearth_chaos_tests::pair_scenario::PairScenario;
    use hearth_chaos_tests::soak::report::held_back_line;
    use hearth_chaos_tests::soak::runner::Runner;
    use hearth_chaos_tests::soak::schedule::{worker_layout, Event, Planned};
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const TEST: &str = "soak_held_back_takeover";
    let pair = Pair::start(TEST, PairOptions::default().with_durable_state())?;
    let scenario = PairScenario::new(TEST, pair, StdRng::seed_from_u64(1));
    let mut runner = Runner::start(scenario, &worker_layout(3))?;
    let load = Load::start(
        runner.scenario.pair.context(),
        LoadPlan {
            endpoints: runner.scenario.pair.endpoints(),
            clients: vec![ClientPlan::new("echo", 2, Duration::from_millis(5))],
            request_timeout: Duration::from_secs(1),
            retry: true,
            drain: Duration::from_secs(25),
        },
    );
    runner.idle(Duration::from_secs(1))?;
    let mut held = 0;
    // Should the thawed passive take over all the same (it counts a heartbeat of the active
    // queued during the freeze as news), the pair settles and the next try goes: up to
    // three tries.
    for _ in 0..3 {
        if runner.kill_the_active_past_a_stalled_passive(
            Duration::from_millis(1_000),
            Duration::from_millis(1_500),
        )? {
            held += 1;
            break;
        }
    }
    // The run goes on: another event, carried out whole.
    let next = Planned {
        at: Duration::ZERO,
        calm: Duration::ZERO,
        event: Event::KillBroker {
            side: runner.settle()?.other(),
            down: Duration::from_millis(500),
        },
    };
    runner.execute(1, &next)?;
    let active = runner.recover()?;
    runner.log(format!("recovered: the {} is active", active.role()));
    let calls = load.finish();
    runner.scenario.close_watch()?;
    let line = held_back_line(&runner.counts.held_back);
    eprintln!("{TEST}: takeovers held back by the restart rule: {line}; calls {calls:?}");
    assert_eq!(
        held, 1,
        "the restart rule never held the passive back: {line}"
    );
    assert_eq!(runner.counts.held_back.len(), 1, "{line}");
    assert!(
        line.starts_with("1 (events 0 (kill -9 of the active"),
        "{line}"
    );
    assert_eq!(calls.lost, 0, "{calls:?}");
    assert_eq!(calls.answered, calls.sent, "{calls:?}");
    assert!(calls.sent > 0);
    assert!(
        runner.scenario.watch.violations().is_empty(),
        "{:?}",
        runner.scenario.watch.violations()
    );
    runner.scenario.pair.passed();
    Ok(())
}
