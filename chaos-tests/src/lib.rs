//! A harness for chaos tests: run the built hearth binaries as real processes, kill and freeze
//! them, and count every request.
//!
//! The processes themselves (starting, signalling by PID, logs, the pair by side, polling
//! with a deadline) are `hearth_supervise`'s, the layer `hearth up` and the benchmarks use
//! too; this crate gives them a test's manners and adds what tests count.
//!
//! * [`bins`]: where the built `hearth-broker` and `hearth-worker` live;
//! * [`process`]: [`Proc`], one child process that is killed and reaped when dropped, and
//!   [`LogDir`], where the children's output goes (and is shown when a test fails);
//! * [`cluster`]: a broker and its workers on free loopback ports, asked over ZeroMQ whether
//!   they are ready;
//! * [`load`]: client threads on raw MDP/0.1 DEALER sockets that send unique bodies, check
//!   every reply byte for byte and count sent, answered, lost, duplicated and mismatched;
//! * [`chaos`]: the seeded random scenario that kills, freezes and replaces workers, and
//!   the summary line every test prints;
//! * [`pair`]: a Binary Star pair of brokers and workers that reach one or both of them;
//! * [`pair_scenario`]: broker events on a pair (kill -9 of the active or the passive,
//!   SIGSTOP of the active, restarts), each carried out until the pair settles again;
//! * [`dual_active`]: the proof that no broker answered while its peer was the active;
//! * [`state_load`]: state-model writers and a change-feed watcher on a pair (through
//!   `hearth_client`), and the final account of every acknowledged write.
//!
//! The request load speaks the wire protocol through `hearth-proto` and the processes are
//! the built binaries, as an operator would run them; only the state load uses the client
//! library, whose write ids and feed follower are what it puts to the test.

pub mod bins;
pub mod chaos;
pub mod cluster;
pub mod dual_active;
pub mod load;
pub mod ops;
pub mod pair;
pub mod pair_scenario;
pub mod process;
pub mod soak;
pub mod state_load;
pub mod tools;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Reading a broker's `/metrics` ([`metrics::BrokerSample`]).
pub use hearth_supervise::metrics;
/// How often [`wait_for`] looks again.
pub use hearth_supervise::POLL;

pub use bins::bin_path;
pub use chaos::{Summary, WorkerChaos};
pub use cluster::{BrokerOptions, Cluster, WorkerKind};
pub use load::{ClientPlan, Load, LoadPlan, ReplyKind, Tally, TracedReply};
pub use pair::{Pair, PairOptions, Reach, Side, WorkerSpec};
pub use pair_scenario::{PairCounts, PairScenario, WorkerKills};
pub use process::{LogDir, Proc};
pub use state_load::{StateLoad, StatePlan, StateReport};

/// Env variable that fixes the seed of a run, to replay a failure.
pub const SEED_ENV: &str = "HEARTH_CHAOS_SEED";
/// Env variable that sets how long the chaos phase of a test runs, in seconds.
pub const SECS_ENV: &str = "HEARTH_CHAOS_SECS";

/// The seed of this run: `HEARTH_CHAOS_SEED` if set, else derived from the clock. Always
/// printed, so that any run can be replayed.
pub fn seed(test: &str) -> u64 {
    let seed = match std::env::var(SEED_ENV) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_ENV}={text:?} is not an unsigned integer")),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64 ^ u64::from(std::process::id()))
            .unwrap_or(0x5eed),
    };
    eprintln!("{test}: seed={seed} (replay with {SEED_ENV}={seed})");
    seed
}

/// How long the chaos phase runs: `HEARTH_CHAOS_SECS` if set, else `default`.
pub fn chaos_duration(default: Duration) -> Duration {
    match std::env::var(SECS_ENV) {
        Ok(text) => Duration::from_secs_f64(
            text.trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0)
                .unwrap_or_else(|| panic!("{SECS_ENV}={text:?} is not a positive number")),
        ),
        Err(_) => default,
    }
}

/// Polls `check` until it returns `Ok`, or fails after `timeout` with the last value seen
/// (`hearth_supervise::wait_until`, the value in its `Debug` form).
pub fn wait_for<T, L: std::fmt::Debug>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, L>,
) -> anyhow::Result<T> {
    let outcome = hearth_supervise::wait_until(what, timeout, || {
        check().map_err(|last| format!("{last:?}"))
    });
    Ok(outcome?)
}

/// A free TCP port on 127.0.0.1 (bound, read and released).
pub fn free_port() -> u16 {
    hearth_supervise::free_port().expect("a free port on 127.0.0.1")
}
