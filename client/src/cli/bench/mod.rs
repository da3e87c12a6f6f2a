//! `hearth bench`: a closed-loop load generator against a broker, with `--baseline` a
//! one-run comparison of hearth against a bare libzmq relay (the ceiling), and
//! `hearth bench failover`: the failover gaps of a Binary Star pair it starts itself.

mod baseline;
mod failover;
mod load;
mod payload;
mod state;
mod stats;

use std::time::Duration;

use clap::{Args, Subcommand};

use super::{Connection, Outcome, UsageError};
use load::{LoadSpec, Wire};
use stats::LoadReport;

/// Largest body: the broker's default frame limit.
const MAX_SIZE: usize = 1024 * 1024;

/// Flags of `hearth bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Service to call
    #[arg(long, default_value = "echo")]
    service: String,
    /// Client threads, one DEALER socket each
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    clients: u64,
    /// Requests each client keeps outstanding
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    inflight: u64,
    /// Body size in bytes (at least 8: the request id)
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Measured duration
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Unmeasured warmup before the measured duration
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Print exactly one JSON line instead of the table
    #[arg(long)]
    json: bool,
    /// Compare with a bare libzmq relay in one run (starts hearth-broker and hearth-worker)
    #[arg(long)]
    baseline: bool,
    /// Echo workers (and REP echo threads for the relay) in --baseline
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=256))]
    workers: u64,
    #[command(subcommand)]
    mode: Option<BenchMode>,
}

/// Benchmarks other than the load generator.
#[derive(Debug, Subcommand)]
enum BenchMode {
    /// Failover gaps of a Binary Star pair under kill -9 and SIGSTOP of its active
    ///
    /// Starts a pair with echo workers registered with both brokers, kills -9 and freezes
    /// (SIGSTOP) its active under a steady stream of plain RFC 7 clients, and prints the
    /// client-observed failover gaps (p50, p99, max), lost requests and answers from a
    /// replaced broker, plus the pair's throughput against a standalone broker. Exit 1 if a
    /// request was lost, a reply mismatched or a replaced broker answered; gaps and
    /// throughput over their targets are reported as MISS, not failed.
    Failover(failover::FailoverArgs),
    /// Replicated durable writes, reads and restart of the state model, on a pair it starts
    ///
    /// Starts a pair, each broker with its own data dir under the system temp dir (removed at
    /// the end), and measures in one run: state.set throughput and latency with the passive
    /// acknowledging every write, the same with the passive killed, one-key state.get reads,
    /// and, with the model at --keys keys, the active's RSS and the time from exec to the
    /// first state.get answer after kill -9 and a restart on its data dir. Beside each
    /// throughput, the CPU time per request of each broker and of the clients, and writes per
    /// fsync round. Exit 1 on any lost write, error reply or mismatched reply; figures over
    /// their targets are reported as MISS, not failed.
    State(state::StateArgs),
}

impl BenchArgs {
    /// The load these flags describe, against `endpoint`.
    fn spec(&self, endpoint: &str, wire: Wire) -> LoadSpec {
        LoadSpec {
            endpoint: endpoint.to_owned(),
            wire,
            clients: self.clients as usize,
            inflight: self.inflight as usize,
            size: self.size,
            warmup: self.warmup,
            duration: self.duration,
        }
    }

    fn validate(&self) -> Result<(), UsageError> {
        if self.size < payload::ID_LEN {
            return Err(UsageError(format!(
                "--size must be at least {} (the request id)",
                payload::ID_LEN
            )));
        }
        if self.size > MAX_SIZE {
            return Err(UsageError(format!("--size must be at most {MAX_SIZE}")));
        }
        if self.duration.is_zero() {
            return Err(UsageError("--duration must be above zero".into()));
        }
        Ok(())
    }
}

/// Runs the benchmark; exit 1 if any request was lost or any reply mismatched.
pub fn run(connection: &Connection, args: BenchArgs) -> anyhow::Result<Outcome> {
    match &args.mode {
        Some(BenchMode::Failover(failover)) => return failover::run(failover),
        Some(BenchMode::State(state)) => return state::run(state),
        None => {}
    }
    args.validate()?;
    if args.baseline {
        return baseline::run(&args);
    }
    let endpoint = &connection.brokers[0];
    let spec = args.spec(
        endpoint,
        Wire::Mdp {
            service: args.service.clone(),
        },
    );
    let report = load::run(&spec, "bench", &mut |_| {})?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    Ok(outcome(report.clean()))
}

fn print_report(report: &LoadReport) {
    println!("requests    {}", report.requests);
    println!("throughput  {:.1} req/s", report.throughput);
    println!("latency     {}", report.latency_line());
    println!("lost        {}", report.lost);
    println!("mismatched  {}", report.mismatched);
}

fn outcome(clean: bool) -> Outcome {
    if clean {
        Outcome::Success
    } else {
        Outcome::Failed
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::BenchMode;
    use crate::cli::{Cli, Command};

    fn bench(args: &[&str]) -> super::BenchArgs {
        let cli = Cli::try_parse_from(args).unwrap();
        match cli.command {
            Command::Bench(args) => args,
            other => panic!("not bench: {other:?}"),
        }
    }

    #[test]
    fn bench_flags_and_the_failover_subcommand_both_parse() {
        Cli::command().debug_assert();
        let load = bench(&["hearth", "bench", "--clients", "2", "--baseline"]);
        assert!(load.mode.is_none());
        assert_eq!(load.clients, 2);
        assert!(load.baseline);
        let failover = bench(&["hearth", "bench", "failover", "--rounds", "1", "--json"]);
        assert!(matches!(failover.mode, Some(BenchMode::Failover(_))));
        assert!(Cli::try_parse_from(["hearth", "bench", "failover", "--rounds", "0"]).is_err());
    }
}
