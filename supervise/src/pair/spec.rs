//! What a Binary Star pair is made of before it runs: each broker's endpoints, the
//! timings, where the state model lives, and from that the two broker command lines (each
//! binds its own peer endpoint and connects to the other's) and a worker's.

use std::path::PathBuf;
use std::time::Duration;

use crate::args::{BrokerArgs, PeerArgs, WorkerArgs};
use crate::error::Result;
use crate::net::{free_ports, loopback_endpoint};
use crate::pair::side::Side;
use crate::worker::WorkerSpec;

/// Where one broker of the pair listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerEndpoints {
    /// The ROUTER frontend for clients and workers.
    pub frontend: String,
    /// The peer-link endpoint this broker binds; its peer connects to it.
    pub peer: String,
    /// HTTP address of `/metrics` and `/status`; none serves no HTTP.
    pub metrics: Option<String>,
    /// The change feed (`--publish`); none publishes no feed.
    pub publish: Option<String>,
}

impl BrokerEndpoints {
    /// Every endpoint on loopback, on these ports: frontend, peer, metrics, feed.
    fn loopback([frontend, peer, metrics, publish]: [u16; 4]) -> BrokerEndpoints {
        BrokerEndpoints {
            frontend: loopback_endpoint(frontend),
            peer: loopback_endpoint(peer),
            metrics: Some(format!("127.0.0.1:{metrics}")),
            publish: Some(loopback_endpoint(publish)),
        }
    }
}

/// Everything the two brokers' command lines need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairSpec {
    /// The primary's endpoints.
    pub primary: BrokerEndpoints,
    /// The backup's endpoints.
    pub backup: BrokerEndpoints,
    /// Heartbeat interval on the peer link (`--peer-heartbeat`).
    pub peer_heartbeat: Duration,
    /// Heartbeat interval between brokers and workers (`--heartbeat`), also the workers'.
    pub heartbeat: Duration,
    /// Missed heartbeats before brokers and workers drop each other (`--liveness`).
    pub liveness: u32,
    /// `--request-expiry`; none keeps the broker's default.
    pub request_expiry: Option<Duration>,
    /// Keep each broker's state model on disk in `<root>/primary` and `<root>/backup`
    /// (`--data-dir`); none keeps it in memory only.
    pub data_root: Option<PathBuf>,
}

impl PairSpec {
    /// A pair on eight different loopback ports free a moment ago (every endpoint, metrics
    /// and feeds too; set one to `None` to leave it out), with these timings and no data
    /// dirs.
    pub fn loopback(peer_heartbeat: Duration, heartbeat: Duration, liveness: u32) -> Result<Self> {
        let [a, b, c, d, e, f, g, h] = free_ports::<8>()?;
        Ok(PairSpec {
            primary: BrokerEndpoints::loopback([a, b, c, d]),
            backup: BrokerEndpoints::loopback([e, f, g, h]),
            peer_heartbeat,
            heartbeat,
            liveness,
            request_expiry: None,
            data_root: None,
        })
    }

    /// The endpoints of one side.
    pub fn endpoints(&self, side: Side) -> &BrokerEndpoints {
        match side {
            Side::Primary => &self.primary,
            Side::Backup => &self.backup,
        }
    }

    /// The endpoints of one side, to change.
    pub fn endpoints_mut(&mut self, side: Side) -> &mut BrokerEndpoints {
        match side {
            Side::Primary => &mut self.primary,
            Side::Backup => &mut self.backup,
        }
    }

    /// Both frontends, primary first: what a client or worker of the pair is given.
    pub fn frontends(&self) -> Vec<String> {
        Side::BOTH
            .iter()
            .map(|&s| self.endpoints(s).frontend.clone())
            .collect()
    }

    /// One side's data dir (`--data-dir`), if the state model is kept on disk.
    pub fn data_dir(&self, side: Side) -> Option<PathBuf> {
        self.data_root.as_ref().map(|root| root.join(side.role()))
    }

    /// The `hearth-broker` command line of one side.
    pub fn broker_args(&self, side: Side) -> BrokerArgs {
        let own = self.endpoints(side);
        BrokerArgs {
            role: side.as_role(),
            metrics: own.metrics.clone(),
            peer: Some(PeerArgs {
                bind: own.peer.clone(),
                connect: self.endpoints(side.other()).peer.clone(),
                heartbeat: self.peer_heartbeat,
            }),
            heartbeat: Some(self.heartbeat),
            liveness: Some(self.liveness),
            request_expiry: self.request_expiry,
            data_dir: self.data_dir(side),
            publish: own.publish.clone(),
            ..BrokerArgs::standalone(own.frontend.clone())
        }
    }

    /// The `hearth-worker` command line of a worker of the pair: registered with the
    /// brokers its reach includes, on the pair's heartbeat and liveness.
    pub fn worker_args(&self, spec: &WorkerSpec) -> WorkerArgs {
        let brokers = Side::BOTH
            .iter()
            .filter(|&&s| spec.reach.includes(s))
            .map(|&s| self.endpoints(s).frontend.clone())
            .collect();
        WorkerArgs {
            heartbeat: Some(self.heartbeat),
            liveness: Some(self.liveness),
            extra: spec.extra.clone(),
            ..WorkerArgs::new(brokers, &spec.service, spec.kind.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::WorkerKind;
    use crate::pair::side::Reach;

    fn spec() -> PairSpec {
        PairSpec {
            primary: BrokerEndpoints {
                frontend: "tcp://127.0.0.1:1".into(),
                peer: "tcp://127.0.0.1:3".into(),
                metrics: Some("127.0.0.1:2".into()),
                publish: None,
            },
            backup: BrokerEndpoints {
                frontend: "tcp://127.0.0.1:11".into(),
                peer: "tcp://127.0.0.1:13".into(),
                metrics: None,
                publish: Some("tcp://127.0.0.1:14".into()),
            },
            peer_heartbeat: Duration::from_millis(1000),
            heartbeat: Duration::from_millis(2500),
            liveness: 3,
            request_expiry: None,
            data_root: Some("/tmp/pair".into()),
        }
    }

    #[test]
    fn each_broker_binds_its_own_peer_endpoint_and_connects_to_the_other() {
        let s = spec();
        assert_eq!(
            s.broker_args(Side::Primary).to_args().join(" "),
            "--role primary --frontend tcp://127.0.0.1:1 --metrics 127.0.0.1:2 \
             --peer-bind tcp://127.0.0.1:3 --peer-connect tcp://127.0.0.1:13 \
             --peer-heartbeat 1000ms --heartbeat 2500ms --liveness 3 \
             --data-dir /tmp/pair/primary"
        );
        assert_eq!(
            s.broker_args(Side::Backup).to_args().join(" "),
            "--role backup --frontend tcp://127.0.0.1:11 \
             --peer-bind tcp://127.0.0.1:13 --peer-connect tcp://127.0.0.1:3 \
             --peer-heartbeat 1000ms --heartbeat 2500ms --liveness 3 \
             --data-dir /tmp/pair/backup --publish tcp://127.0.0.1:14"
        );
        assert_eq!(s.frontends(), ["tcp://127.0.0.1:1", "tcp://127.0.0.1:11"]);
    }

    #[test]
    fn a_worker_registers_with_the_brokers_it_reaches() {
        let s = spec();
        let mut worker = WorkerSpec::new("echo", WorkerKind::Echo, Reach::Both);
        assert_eq!(
            s.worker_args(&worker).to_args().join(" "),
            "--broker tcp://127.0.0.1:1 --broker tcp://127.0.0.1:11 --service echo --echo \
             --heartbeat 2500ms --liveness 3"
        );
        worker.reach = Reach::Only(Side::Backup);
        assert_eq!(
            s.worker_args(&worker).brokers,
            ["tcp://127.0.0.1:11".to_owned()]
        );
    }

    #[test]
    fn loopback_ports_differ() {
        let s =
            PairSpec::loopback(Duration::from_millis(300), Duration::from_millis(200), 3).unwrap();
        assert_ne!(s.primary.frontend, s.backup.frontend);
        assert!(s.primary.metrics.is_some() && s.backup.publish.is_some());
    }
}
