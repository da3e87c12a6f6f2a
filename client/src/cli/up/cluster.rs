//! The cluster `hearth up` runs: the embedded `up.toml` (a Binary Star pair and echo workers
//! on this machine) with the command line's endpoint overrides applied, checked, and turned
//! into the command lines of its processes.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use hearth_supervise::{BrokerArgs, BrokerEndpoints, PairSpec, Side, WorkerArgs, WorkerKind};
use serde::Deserialize;

use crate::cli::UsageError;

/// The embedded default cluster.
const DEFAULT_CLUSTER: &str = include_str!("../../up.toml");

/// Ports `--base-port P` gives out, relative to P: (frontend, peer, metrics, change feed) of
/// the primary (or the standalone broker), then of the backup.
const BASE_PORT_LAYOUT: [(Side, [u16; 4]); 2] = [
    (Side::Primary, [0, 1, 2, 3]),
    (Side::Backup, [10, 11, 12, 13]),
];

/// Where the brokers listen, overriding `up.toml`; a flag naming one endpoint wins over
/// `--base-port`.
#[derive(Debug, Default, Args)]
pub struct EndpointFlags {
    /// Move every endpoint: the primary (or standalone broker) on PORT (frontend), PORT+1
    /// (peer link), PORT+2 (metrics), PORT+3 (change feed), the backup on PORT+10 to PORT+13
    #[arg(long, value_name = "PORT")]
    base_port: Option<u16>,
    /// Frontend of the primary, or of the standalone broker [default: tcp://127.0.0.1:5555]
    #[arg(long, value_name = "ENDPOINT")]
    frontend: Option<String>,
    /// HTTP metrics address of the primary, or of the standalone broker [default: 127.0.0.1:9555]
    #[arg(long, value_name = "HOST:PORT")]
    metrics: Option<String>,
    /// Peer-link endpoint the primary binds [default: tcp://127.0.0.1:5556]
    #[arg(long, value_name = "ENDPOINT")]
    peer: Option<String>,
    /// Frontend of the backup [default: tcp://127.0.0.1:5565]
    #[arg(long, value_name = "ENDPOINT")]
    backup_frontend: Option<String>,
    /// HTTP metrics address of the backup [default: 127.0.0.1:9565]
    #[arg(long, value_name = "HOST:PORT")]
    backup_metrics: Option<String>,
    /// Peer-link endpoint the backup binds [default: tcp://127.0.0.1:5566]
    #[arg(long, value_name = "ENDPOINT")]
    backup_peer: Option<String>,
    /// Change feed of the primary, or of the standalone broker [default: tcp://127.0.0.1:5557]
    #[arg(long, value_name = "ENDPOINT")]
    feed: Option<String>,
    /// Change feed of the backup [default: tcp://127.0.0.1:5567]
    #[arg(long, value_name = "ENDPOINT")]
    backup_feed: Option<String>,
    /// Heartbeat interval on the pair's peer link [default: 1s]
    #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration)]
    peer_heartbeat: Option<Duration>,
}

/// The file format of `up.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterFile {
    #[serde(with = "humantime_serde")]
    heartbeat: Duration,
    liveness: u32,
    #[serde(with = "humantime_serde")]
    peer_heartbeat: Duration,
    /// The change feeds of the primary (or standalone broker) and the backup.
    feeds: [String; 2],
    primary: EndpointsFile,
    backup: EndpointsFile,
    workers: Vec<WorkerGroup>,
}

/// Where one broker listens, in `up.toml` (its change feed is in `feeds`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointsFile {
    frontend: String,
    #[serde(default)]
    metrics: Option<String>,
    peer: String,
}

impl EndpointsFile {
    fn with_feed(self, feed: String) -> BrokerEndpoints {
        BrokerEndpoints {
            frontend: self.frontend,
            peer: self.peer,
            metrics: self.metrics,
            publish: Some(feed),
        }
    }
}

/// `count` identical worker processes for one service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerGroup {
    /// The service they offer.
    pub service: String,
    /// How many processes.
    pub count: u32,
    /// Echo the request body.
    #[serde(default)]
    pub echo: bool,
    /// Or run this shell command per request.
    #[serde(default)]
    pub exec: Option<String>,
}

/// The cluster to run, after the overrides.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// The pair's brokers; the standalone broker uses the primary's frontend, metrics and
    /// change feed.
    pub pair: PairSpec,
    /// One standalone broker instead of the pair.
    pub standalone: bool,
    /// The worker processes to start, each registered with every broker.
    pub workers: Vec<WorkerGroup>,
}

impl Cluster {
    /// The embedded cluster with `flags` applied; a usage error if the result cannot run
    /// (two endpoints on one port, a worker group with nothing to run).
    pub fn new(flags: &EndpointFlags, standalone: bool) -> anyhow::Result<Cluster> {
        let file: ClusterFile =
            toml::from_str(DEFAULT_CLUSTER).context("the embedded up.toml is invalid")?;
        let [primary_feed, backup_feed] = file.feeds;
        let mut pair = PairSpec {
            primary: file.primary.with_feed(primary_feed),
            backup: file.backup.with_feed(backup_feed),
            peer_heartbeat: flags.peer_heartbeat.unwrap_or(file.peer_heartbeat),
            heartbeat: file.heartbeat,
            liveness: file.liveness,
            request_expiry: None,
            data_root: None,
        };
        if let Some(base) = flags.base_port {
            for (side, offsets) in BASE_PORT_LAYOUT {
                let port = |offset: u16| {
                    base.checked_add(offset).ok_or_else(|| {
                        UsageError(format!("--base-port {base} leaves no room for {side}"))
                    })
                };
                let endpoints = pair.endpoints_mut(side);
                endpoints.frontend = format!("tcp://127.0.0.1:{}", port(offsets[0])?);
                endpoints.peer = format!("tcp://127.0.0.1:{}", port(offsets[1])?);
                endpoints.metrics = Some(format!("127.0.0.1:{}", port(offsets[2])?));
                endpoints.publish = Some(format!("tcp://127.0.0.1:{}", port(offsets[3])?));
            }
        }
        let set = |target: &mut String, flag: &Option<String>| {
            if let Some(value) = flag {
                target.clone_from(value);
            }
        };
        set(&mut pair.primary.frontend, &flags.frontend);
        set(&mut pair.primary.peer, &flags.peer);
        set(&mut pair.backup.frontend, &flags.backup_frontend);
        set(&mut pair.backup.peer, &flags.backup_peer);
        if flags.feed.is_some() {
            pair.primary.publish.clone_from(&flags.feed);
        }
        if flags.backup_feed.is_some() {
            pair.backup.publish.clone_from(&flags.backup_feed);
        }
        if flags.metrics.is_some() {
            pair.primary.metrics.clone_from(&flags.metrics);
        }
        if flags.backup_metrics.is_some() {
            pair.backup.metrics.clone_from(&flags.backup_metrics);
        }
        if pair.peer_heartbeat.is_zero() {
            return Err(UsageError("--peer-heartbeat must be above zero".into()).into());
        }
        let cluster = Cluster {
            pair,
            standalone,
            workers: file.workers,
        };
        cluster.check()?;
        Ok(cluster)
    }

    /// Every endpoint on its own port, every worker group with something to run.
    fn check(&self) -> Result<(), UsageError> {
        if let Some(group) = self.workers.iter().find(|g| !g.echo && g.exec.is_none()) {
            return Err(UsageError(format!(
                "worker group {} has neither echo nor exec",
                group.service
            )));
        }
        let mut seen: HashMap<String, String> = HashMap::new();
        for (what, address) in self.listening() {
            let key = port_of(&address).unwrap_or(&address).to_owned();
            if let Some(earlier) = seen.insert(key, what.clone()) {
                return Err(UsageError(format!(
                    "{what} ({address}) uses the same port as {earlier}"
                )));
            }
        }
        Ok(())
    }

    /// Fails naming the first endpoint whose port something already listens on (another
    /// `hearth up`, most likely). Checked before anything starts: a broker that cannot bind
    /// dies at once, but until then the old cluster would answer for it.
    pub fn check_ports_free(&self) -> anyhow::Result<()> {
        for (what, address) in self.listening() {
            let Some(socket) = socket_address(&address) else {
                continue;
            };
            if let Err(e) = TcpListener::bind(socket.as_str()) {
                if e.kind() == ErrorKind::AddrInUse {
                    bail!(
                        "{what} {address}: the port is in use (another hearth up?); \
                         --base-port PORT moves every endpoint"
                    );
                }
            }
        }
        Ok(())
    }

    /// What the brokers bind, named for messages.
    fn listening(&self) -> Vec<(String, String)> {
        let sides: &[Side] = if self.standalone {
            &[Side::Primary]
        } else {
            &Side::BOTH
        };
        let mut out = Vec::new();
        for &side in sides {
            let e = self.pair.endpoints(side);
            let name = self.broker_name(side);
            out.push((format!("{name} frontend"), e.frontend.clone()));
            if let Some(metrics) = &e.metrics {
                out.push((format!("{name} metrics"), metrics.clone()));
            }
            if let Some(feed) = &e.publish {
                out.push((format!("{name} change feed"), feed.clone()));
            }
            if !self.standalone {
                out.push((format!("{name} peer"), e.peer.clone()));
            }
        }
        out
    }

    /// `primary`/`backup`, or `standalone` for the single broker.
    pub fn broker_name(&self, side: Side) -> &'static str {
        if self.standalone {
            "standalone"
        } else {
            side.role()
        }
    }

    /// The frontends clients and workers are given: one, or the pair's two.
    pub fn frontends(&self) -> Vec<String> {
        if self.standalone {
            vec![self.pair.primary.frontend.clone()]
        } else {
            self.pair.frontends()
        }
    }

    /// The standalone broker's command line, with its data dir.
    pub fn standalone_args(&self, data_dir: &Path) -> BrokerArgs {
        let primary = &self.pair.primary;
        BrokerArgs {
            metrics: primary.metrics.clone(),
            heartbeat: Some(self.pair.heartbeat),
            liveness: Some(self.pair.liveness),
            data_dir: Some(data_dir.to_path_buf()),
            publish: primary.publish.clone(),
            ..BrokerArgs::standalone(primary.frontend.clone())
        }
    }

    /// One worker's command line: registered with every broker of the cluster.
    pub fn worker_args(&self, group: &WorkerGroup) -> WorkerArgs {
        WorkerArgs {
            heartbeat: Some(self.pair.heartbeat),
            liveness: Some(self.pair.liveness),
            ..WorkerArgs::new(self.frontends(), &group.service, group.kind())
        }
    }
}

impl WorkerGroup {
    /// What each worker of the group does with a request.
    pub fn kind(&self) -> WorkerKind {
        match &self.exec {
            Some(command) => WorkerKind::Exec(command.clone()),
            None => WorkerKind::Echo,
        }
    }
}

/// `host:port` to bind for a `tcp://host:port` endpoint (`*` as every address) or a
/// `host:port` metrics address; none for other transports.
fn socket_address(address: &str) -> Option<String> {
    let rest = match address.split_once("://") {
        Some(("tcp", rest)) => rest,
        Some(_) => return None,
        None => address,
    };
    let (host, port) = rest.rsplit_once(':')?;
    let host = if host == "*" { "0.0.0.0" } else { host };
    Some(format!("{host}:{port}"))
}

/// The port at the end of `tcp://host:port` or `host:port`.
fn port_of(address: &str) -> Option<&str> {
    let (_, port) = address.rsplit_once(':')?;
    port.parse::<u16>().ok().map(|_| port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_config_describes_a_pair_and_two_echo_workers_on_both() {
        let c = Cluster::new(&EndpointFlags::default(), false).unwrap();
        assert_eq!(
            c.frontends(),
            ["tcp://127.0.0.1:5555", "tcp://127.0.0.1:5565"]
        );
        assert_eq!(c.workers.len(), 1);
        assert_eq!(
            (c.workers[0].service.as_str(), c.workers[0].count),
            ("echo", 2)
        );
        let primary = c.pair.broker_args(Side::Primary).to_args().join(" ");
        assert!(
            primary.starts_with(
                "--role primary --frontend tcp://127.0.0.1:5555 --metrics 127.0.0.1:9555 \
                 --peer-bind tcp://127.0.0.1:5556 --peer-connect tcp://127.0.0.1:5566 \
                 --peer-heartbeat 1000ms --heartbeat 2500ms"
            ),
            "{primary}"
        );
        assert!(
            primary.ends_with("--publish tcp://127.0.0.1:5557"),
            "{primary}"
        );
        let backup = c.pair.broker_args(Side::Backup).to_args().join(" ");
        assert!(
            backup.starts_with(
                "--role backup --frontend tcp://127.0.0.1:5565 --metrics 127.0.0.1:9565 \
                 --peer-bind tcp://127.0.0.1:5566 --peer-connect tcp://127.0.0.1:5556"
            ),
            "{backup}"
        );
        let worker = c.worker_args(&c.workers[0]).to_args().join(" ");
        assert!(
            worker.starts_with(
                "--broker tcp://127.0.0.1:5555 --broker tcp://127.0.0.1:5565 --service echo --echo"
            ),
            "{worker}"
        );
    }

    #[test]
    fn standalone_uses_the_primary_frontend_and_metrics() {
        let c = Cluster::new(&EndpointFlags::default(), true).unwrap();
        assert_eq!(c.frontends(), ["tcp://127.0.0.1:5555"]);
        assert_eq!(
            c.standalone_args(Path::new("/tmp/up")).to_args().join(" "),
            "--role standalone --frontend tcp://127.0.0.1:5555 --metrics 127.0.0.1:9555 \
             --heartbeat 2500ms --liveness 3 --data-dir /tmp/up \
             --publish tcp://127.0.0.1:5557"
        );
        let worker = c.worker_args(&c.workers[0]).to_args().join(" ");
        assert!(
            worker.starts_with("--broker tcp://127.0.0.1:5555 --service echo"),
            "{worker}"
        );
    }

    #[test]
    fn base_port_moves_everything_and_single_flags_win() {
        let flags = EndpointFlags {
            base_port: Some(7000),
            backup_metrics: Some("127.0.0.1:8000".into()),
            peer_heartbeat: Some(Duration::from_millis(250)),
            ..EndpointFlags::default()
        };
        let c = Cluster::new(&flags, false).unwrap();
        assert_eq!(
            c.pair.primary,
            BrokerEndpoints {
                frontend: "tcp://127.0.0.1:7000".into(),
                peer: "tcp://127.0.0.1:7001".into(),
                metrics: Some("127.0.0.1:7002".into()),
                publish: Some("tcp://127.0.0.1:7003".into()),
            }
        );
        assert_eq!(c.pair.backup.frontend, "tcp://127.0.0.1:7010");
        assert_eq!(c.pair.backup.peer, "tcp://127.0.0.1:7011");
        assert_eq!(c.pair.backup.metrics.as_deref(), Some("127.0.0.1:8000"));
        assert_eq!(c.pair.peer_heartbeat, Duration::from_millis(250));
    }

    #[test]
    fn clashing_ports_and_overflowing_base_ports_are_bad_usage() {
        let clash = EndpointFlags {
            backup_frontend: Some("tcp://127.0.0.1:5555".into()),
            ..EndpointFlags::default()
        };
        let err = Cluster::new(&clash, false).unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some(), "{err}");
        assert!(err.to_string().contains("same port"), "{err}");
        // The backup's endpoints do not matter for a standalone broker.
        assert!(Cluster::new(&clash, true).is_ok());
        let metrics_on_frontend = EndpointFlags {
            metrics: Some("127.0.0.1:5555".into()),
            ..EndpointFlags::default()
        };
        assert!(Cluster::new(&metrics_on_frontend, true).is_err());
        let high = EndpointFlags {
            base_port: Some(65530),
            ..EndpointFlags::default()
        };
        assert!(Cluster::new(&high, false).is_err());
    }

    #[test]
    fn a_port_in_use_is_found_before_anything_starts() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let free: Vec<TcpListener> = (0..5)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let port = |l: &TcpListener| l.local_addr().unwrap().port();
        let flags = EndpointFlags {
            frontend: Some(format!("tcp://127.0.0.1:{}", port(&free[0]))),
            peer: Some(format!("tcp://*:{}", port(&free[1]))),
            metrics: Some(format!("127.0.0.1:{}", port(&free[2]))),
            backup_frontend: Some(format!("tcp://127.0.0.1:{}", port(&free[3]))),
            backup_peer: Some(format!("tcp://127.0.0.1:{}", port(&free[4]))),
            backup_metrics: Some(format!("127.0.0.1:{}", port(&taken))),
            ..EndpointFlags::default()
        };
        drop(free);
        // The standalone broker does not bind the backup's ports.
        Cluster::new(&flags, true)
            .unwrap()
            .check_ports_free()
            .unwrap();
        let err = Cluster::new(&flags, false)
            .unwrap()
            .check_ports_free()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("backup metrics 127.0.0.1:"), "{err}");
        assert!(err.contains("in use"), "{err}");
        assert_eq!(
            socket_address("tcp://*:5555").as_deref(),
            Some("0.0.0.0:5555")
        );
        assert_eq!(socket_address("ipc:///tmp/x"), None);
    }
}
