//! `hearth-soak`: the chaos soak (see `hearth_chaos_tests::soak`). Runs a Binary Star pair,
//! workers, callers, state writers and a watcher under a seeded random schedule of kills,
//! freezes, power cuts and hung workers for `--duration`, prints the table, and exits 1 if
//! anything was lost or answered twice by two brokers.
//!
//! ```text
//! cargo build --release --workspace --bins && target/release/hearth-soak --duration 30m
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use hearth_chaos_tests::bins::BIN_DIR_ENV;
use hearth_chaos_tests::process::KEEP_LOGS_ENV;
use hearth_chaos_tests::soak::{self, SoakConfig};

/// Run a hearth pair under a seeded random schedule of failures and account for every call,
/// write and change.
#[derive(Debug, Parser)]
#[command(name = "hearth-soak", version)]
struct Args {
    /// How long the chaos lasts (e.g. 90s, 5m, 30m); the start-up and the final account
    /// come on top.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// The schedule's seed (default: from the clock). Printed always; give it again to
    /// replay a run's schedule.
    #[arg(long, env = "HEARTH_CHAOS_SEED")]
    seed: Option<u64>,
    /// Worker processes: a third slow exec workers, one echo worker on each broker alone
    /// (from 6 on), the rest echo workers on both.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u64).range(2..=64))]
    workers: u64,
    /// Echo callers (one slow caller and two probes come on top).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    callers: u64,
    /// State writer threads.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=16))]
    writers: u64,
    /// Keep the processes' logs and the brokers' data dirs even if the run passes.
    #[arg(long)]
    keep_logs: bool,
    /// Where `hearth-broker` and `hearth-worker` are (default: beside this program if they
    /// are there, else the workspace's target directory).
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// Print the schedule and exit.
    #[arg(long)]
    schedule_only: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(clock_seed);
    let mut config = SoakConfig::new(args.duration, seed);
    config.workers = args.workers as usize;
    config.callers = args.callers as usize;
    config.writers = args.writers as usize;

    if args.schedule_only {
        println!("seed {seed} (replay: {})", config.replay());
        for (number, planned) in config.schedule().iter().enumerate() {
            println!(
                "{number:5} [{:8.1}s] {}",
                planned.at.as_secs_f64(),
                planned.event
            );
        }
        return ExitCode::SUCCESS;
    }
    // Both set before any thread starts.
    if let Some(dir) = args.bin_dir.or_else(beside_me) {
        std::env::set_var(BIN_DIR_ENV, dir);
    }
    if args.keep_logs {
        std::env::set_var(KEEP_LOGS_ENV, "1");
    }
    eprintln!("hearth-soak: seed {seed}");
    match soak::run(&config) {
        Ok(report) => {
            println!("{}", report.table());
            let failures = report.failures();
            if failures.is_empty() {
                println!("PASS (seed {seed})");
                ExitCode::SUCCESS
            } else {
                println!("FAIL (seed {seed}; replay: {}):", report.replay);
                for failure in failures {
                    println!("  - {failure}");
                }
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("hearth-soak: the cluster did not start (seed {seed}): {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A seed from the clock and the PID.
fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 ^ u64::from(std::process::id()))
        .unwrap_or(0x5eed)
}

/// This program's directory, if `hearth-broker` was built beside it (a release build runs
/// the release brokers, not whatever the workspace's debug directory holds).
fn beside_me() -> Option<PathBuf> {
    let dir = std::env::current_exe().ok()?.parent()?.to_path_buf();
    dir.join("hearth-broker").is_file().then_some(dir)
}
