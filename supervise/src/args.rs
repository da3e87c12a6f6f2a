//! The command lines of `hearth-broker` and `hearth-worker`, written once: every supervisor
//! (`hearth up`, the benchmarks, the tests) says what it wants in [`BrokerArgs`] and
//! [`WorkerArgs`], and these turn it into the flags DESIGN.md documents.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use hearth_proto::status::Role;

use crate::error::{Error, Result};

/// The peer link of a broker of a pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerArgs {
    /// `--peer-bind`: the endpoint this broker binds; its peer connects to it.
    pub bind: String,
    /// `--peer-connect`: the peer's endpoint.
    pub connect: String,
    /// `--peer-heartbeat`.
    pub heartbeat: Duration,
}

/// What one `hearth-broker` is started with; `None` leaves a flag out (the broker's
/// default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerArgs {
    /// `--role`.
    pub role: Role,
    /// `--frontend`: the ROUTER endpoint for clients and workers.
    pub frontend: String,
    /// `--metrics`: HTTP address of `/metrics` and `/status`.
    pub metrics: Option<String>,
    /// The peer link (a pair's broker only).
    pub peer: Option<PeerArgs>,
    /// `--heartbeat` to workers.
    pub heartbeat: Option<Duration>,
    /// `--liveness`: missed worker heartbeats before a worker is dropped.
    pub liveness: Option<u32>,
    /// `--request-expiry`: how long a request waits while its service has no worker.
    pub request_expiry: Option<Duration>,
    /// `--data-dir`: where the state model is kept on disk.
    pub data_dir: Option<PathBuf>,
    /// `--publish`: the change feed's endpoint.
    pub publish: Option<String>,
    /// Further flags, last.
    pub extra: Vec<String>,
}

impl BrokerArgs {
    /// A standalone broker on `frontend`, every other flag at the broker's default.
    pub fn standalone(frontend: impl Into<String>) -> BrokerArgs {
        BrokerArgs {
            role: Role::Standalone,
            frontend: frontend.into(),
            metrics: None,
            peer: None,
            heartbeat: None,
            liveness: None,
            request_expiry: None,
            data_dir: None,
            publish: None,
            extra: Vec::new(),
        }
    }

    /// The flags, in the order written above.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = flags(&[("--role", self.role.as_str())]);
        args.extend(flags(&[("--frontend", &self.frontend)]));
        if let Some(metrics) = &self.metrics {
            args.extend(flags(&[("--metrics", metrics)]));
        }
        if let Some(peer) = &self.peer {
            args.extend(flags(&[
                ("--peer-bind", &peer.bind),
                ("--peer-connect", &peer.connect),
                ("--peer-heartbeat", &duration_arg(peer.heartbeat)),
            ]));
        }
        if let Some(heartbeat) = self.heartbeat {
            args.extend(flags(&[("--heartbeat", &duration_arg(heartbeat))]));
        }
        if let Some(liveness) = self.liveness {
            args.extend(flags(&[("--liveness", &liveness.to_string())]));
        }
        if let Some(expiry) = self.request_expiry {
            args.extend(flags(&[("--request-expiry", &duration_arg(expiry))]));
        }
        if let Some(dir) = &self.data_dir {
            args.extend(flags(&[("--data-dir", &dir.display().to_string())]));
        }
        if let Some(publish) = &self.publish {
            args.extend(flags(&[("--publish", publish)]));
        }
        args.extend(self.extra.iter().cloned());
        args
    }

    /// The metrics address as a socket address, to read it; `None` without `--metrics`.
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>> {
        self.metrics
            .as_deref()
            .map(|text| {
                text.parse().map_err(|e| Error::Address {
                    address: text.to_owned(),
                    why: format!("{e}"),
                })
            })
            .transpose()
    }
}

/// What a worker process does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerKind {
    /// `--echo`: the reply is the request.
    Echo,
    /// `--exec CMD`: the body goes to CMD's stdin, the reply is its stdout.
    Exec(String),
}

/// What one `hearth-worker` is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerArgs {
    /// One `--broker` each: every broker the worker registers with.
    pub brokers: Vec<String>,
    /// `--service`.
    pub service: String,
    /// `--echo` or `--exec`.
    pub kind: WorkerKind,
    /// `--heartbeat`.
    pub heartbeat: Option<Duration>,
    /// `--liveness`.
    pub liveness: Option<u32>,
    /// Further flags, last (`--concurrency 2`, say).
    pub extra: Vec<String>,
}

impl WorkerArgs {
    /// A worker of `service` doing `kind` on `brokers`, every other flag at its default.
    pub fn new(brokers: Vec<String>, service: &str, kind: WorkerKind) -> WorkerArgs {
        WorkerArgs {
            brokers,
            service: service.to_owned(),
            kind,
            heartbeat: None,
            liveness: None,
            extra: Vec::new(),
        }
    }

    /// The flags, in the order written above.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for broker in &self.brokers {
            args.extend(flags(&[("--broker", broker)]));
        }
        args.extend(flags(&[("--service", &self.service)]));
        match &self.kind {
            WorkerKind::Echo => args.push("--echo".to_owned()),
            WorkerKind::Exec(command) => args.extend(flags(&[("--exec", command)])),
        }
        if let Some(heartbeat) = self.heartbeat {
            args.extend(flags(&[("--heartbeat", &duration_arg(heartbeat))]));
        }
        if let Some(liveness) = self.liveness {
            args.extend(flags(&[("--liveness", &liveness.to_string())]));
        }
        args.extend(self.extra.iter().cloned());
        args
    }
}

/// A duration as the binaries' flags read it (humantime): whole milliseconds, or
/// microseconds when it has a fraction of one.
pub fn duration_arg(d: Duration) -> String {
    if d.subsec_nanos() % 1_000_000 == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}us", d.as_micros())
    }
}

fn flags(pairs: &[(&str, &str)]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|(flag, value)| [(*flag).to_owned(), (*value).to_owned()])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_broker_command_line() {
        let args = BrokerArgs {
            role: Role::Primary,
            metrics: Some("127.0.0.1:2".into()),
            peer: Some(PeerArgs {
                bind: "tcp://127.0.0.1:3".into(),
                connect: "tcp://127.0.0.1:13".into(),
                heartbeat: Duration::from_secs(1),
            }),
            heartbeat: Some(Duration::from_millis(2500)),
            liveness: Some(3),
            request_expiry: Some(Duration::from_secs(120)),
            data_dir: Some("/tmp/d/primary".into()),
            publish: Some("tcp://127.0.0.1:4".into()),
            extra: vec!["--force-active".into()],
            ..BrokerArgs::standalone("tcp://127.0.0.1:1")
        };
        assert_eq!(
            args.to_args().join(" "),
            "--role primary --frontend tcp://127.0.0.1:1 --metrics 127.0.0.1:2 \
             --peer-bind tcp://127.0.0.1:3 --peer-connect tcp://127.0.0.1:13 \
             --peer-heartbeat 1000ms --heartbeat 2500ms --liveness 3 --request-expiry 120000ms \
             --data-dir /tmp/d/primary --publish tcp://127.0.0.1:4 --force-active"
        );
        assert_eq!(
            args.metrics_addr().unwrap(),
            Some("127.0.0.1:2".parse().unwrap())
        );
    }

    #[test]
    fn a_bare_standalone_broker_and_a_bad_metrics_address() {
        let mut args = BrokerArgs::standalone("tcp://127.0.0.1:1");
        assert_eq!(
            args.to_args().join(" "),
            "--role standalone --frontend tcp://127.0.0.1:1"
        );
        assert_eq!(args.metrics_addr().unwrap(), None);
        args.metrics = Some("localhost:x".into());
        assert!(args.metrics_addr().is_err());
    }

    #[test]
    fn worker_command_lines() {
        let mut args = WorkerArgs::new(
            vec!["tcp://a:1".into(), "tcp://b:2".into()],
            "echo",
            WorkerKind::Echo,
        );
        args.heartbeat = Some(Duration::from_millis(200));
        assert_eq!(
            args.to_args().join(" "),
            "--broker tcp://a:1 --broker tcp://b:2 --service echo --echo --heartbeat 200ms"
        );
        args.kind = WorkerKind::Exec("tr a-z A-Z".into());
        args.liveness = Some(3);
        args.extra = vec!["--concurrency".into(), "2".into()];
        assert_eq!(
            args.to_args()[6..],
            [
                "--exec",
                "tr a-z A-Z",
                "--heartbeat",
                "200ms",
                "--liveness",
                "3",
                "--concurrency",
                "2"
            ]
        );
    }

    #[test]
    fn durations_keep_their_precision() {
        assert_eq!(duration_arg(Duration::from_millis(2500)), "2500ms");
        assert_eq!(duration_arg(Duration::from_micros(1500)), "1500us");
        assert_eq!(duration_arg(Duration::ZERO), "0ms");
    }
}
