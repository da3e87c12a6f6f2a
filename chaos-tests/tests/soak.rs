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
