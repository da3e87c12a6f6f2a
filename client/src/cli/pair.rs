//! A Binary Star pair of `hearth-broker` child processes on this machine, as `hearth up`
//! runs it for a new user and `hearth bench failover` measures it: the two command lines,
//! starting, killing (`kill -9`), freezing (SIGSTOP, SIGCONT) and restarting each broker by
//! the PID this process started, and reading their states from `hearth.status`, which a
//! broker answers in every state without it counting as a client request (so asking never
//! triggers a takeover).

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::Context as _;
use hearth_client::{Client, ClientConfig};
use hearth_proto::status::BrokerStatus;
use serde::Deserialize;

use super::procs::{Supervised, GRACE};

/// How long one `hearth.status` question may take; a broker that is frozen, gone or still
/// starting is reported as silent after this.
pub const STATUS_TIMEOUT: Duration = Duration::from_millis(300);

/// One broker of the pair, by its configured role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `--role primary`: active by default.
    Primary,
    /// `--role backup`: passive until the primary fails.
    Backup,
}

impl Side {
    /// Both sides, primary first.
    pub const BOTH: [Side; 2] = [Side::Primary, Side::Backup];

    /// The other broker of the pair.
    pub fn other(self) -> Side {
        match self {
            Side::Primary => Side::Backup,
            Side::Backup => Side::Primary,
        }
    }

    /// `primary` or `backup`, as `--role` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Side::Primary => "primary",
            Side::Backup => "backup",
        }
    }

    pub fn index(self) -> usize {
        match self {
            Side::Primary => 0,
            Side::Backup => 1,
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where one broker of the pair listens.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerEndpoints {
    /// The ROUTER frontend for clients and workers.
    pub frontend: String,
    /// HTTP address for `/metrics` and `/status`; none serves no HTTP.
    #[serde(default)]
    pub metrics: Option<String>,
    /// The peer-link endpoint this broker binds; its peer connects to it.
    pub peer: String,
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
    /// Heartbeat interval to workers (`--heartbeat`).
    pub heartbeat: Duration,
    /// Missed worker heartbeats before a worker is dropped (`--liveness`).
    pub liveness: u32,
}

impl PairSpec {
    /// The endpoints of one side.
    pub fn endpoints(&self, side: Side) -> &BrokerEndpoints {
        match side {
            Side::Primary => &self.primary,
            Side::Backup => &self.backup,
        }
    }

    /// Both frontends, primary first: what a client or worker of the pair is given.
    pub fn frontends(&self) -> Vec<String> {
        Side::BOTH
            .iter()
            .map(|&s| self.endpoints(s).frontend.clone())
            .collect()
    }

    /// The `hearth-broker` arguments of one side: it binds its own peer endpoint and
    /// connects to the other's.
    pub fn broker_args(&self, side: Side) -> Vec<String> {
        let own = self.endpoints(side);
        let other = self.endpoints(side.other());
        let mut args = vec![
            "--role".to_owned(),
            side.name().to_owned(),
            "--frontend".to_owned(),
            own.frontend.clone(),
        ];
        if let Some(metrics) = &own.metrics {
            args.extend(["--metrics".to_owned(), metrics.clone()]);
        }
        args.extend([
            "--peer-bind".to_owned(),
            own.peer.clone(),
            "--peer-connect".to_owned(),
            other.peer.clone(),
            "--peer-heartbeat".to_owned(),
            humantime::format_duration(self.peer_heartbeat).to_string(),
            "--heartbeat".to_owned(),
            humantime::format_duration(self.heartbeat).to_string(),
            "--liveness".to_owned(),
            self.liveness.to_string(),
        ]);
        args
    }
}

/// What asking one broker for its state came to.
#[derive(Debug, Clone, PartialEq, Eq)]
// Two at a time, a few times a second: boxing the status would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Observed {
    /// It answered `hearth.status`.
    Status(BrokerStatus),
    /// Killed on purpose and not restarted yet.
    Killed,
    /// Frozen on purpose (SIGSTOP) and not thawed yet.
    Frozen,
    /// It did not answer within [`STATUS_TIMEOUT`].
    Silent,
}

impl Observed {
    /// The Binary Star state it reported, or `(killed)`, `(frozen)`, `(no answer)`.
    pub fn state(&self) -> &str {
        match self {
            Observed::Status(status) => status.state.as_str(),
            Observed::Killed => "(killed)",
            Observed::Frozen => "(frozen)",
            Observed::Silent => "(no answer)",
        }
    }

    /// The status record, if it answered.
    pub fn status(&self) -> Option<&BrokerStatus> {
        match self {
            Observed::Status(status) => Some(status),
            _ => None,
        }
    }

    /// Workers of `service` it reported (0 if it did not answer).
    pub fn workers(&self, service: &str) -> u64 {
        self.status()
            .and_then(|s| s.services.iter().find(|svc| svc.name == service))
            .map_or(0, |svc| svc.workers)
    }

    /// A short description for messages: the state, whether it hears its peer, its
    /// workers.
    pub fn describe(&self, service: &str) -> String {
        match self.status() {
            Some(s) => format!(
                "{} (peer {}, {} {service} workers)",
                s.state,
                if s.peer_alive { "alive" } else { "silent" },
                self.workers(service)
            ),
            None => self.state().to_owned(),
        }
    }
}

/// Whether the pair has settled: one broker active, the other passive, each hearing the
/// other, and each knowing at least `workers` workers of `service`. `Ok` names the active
/// side; `Err` says what is still missing.
pub fn settled(states: &[Observed; 2], service: &str, workers: u64) -> Result<Side, String> {
    let describe = || {
        Side::BOTH
            .iter()
            .map(|&s| format!("{s} {}", states[s.index()].describe(service)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let active = Side::BOTH
        .into_iter()
        .find(|&s| states[s.index()].state() == "active")
        .ok_or_else(describe)?;
    let passive = &states[active.other().index()];
    let both_hear = Side::BOTH
        .iter()
        .all(|&s| states[s.index()].status().is_some_and(|st| st.peer_alive));
    let staffed = Side::BOTH
        .iter()
        .all(|&s| states[s.index()].workers(service) >= workers);
    if passive.state() == "passive" && both_hear && staffed {
        Ok(active)
    } else {
        Err(describe())
    }
}

/// One running (or deliberately killed) broker of the pair.
struct Member {
    side: Side,
    args: Vec<String>,
    process: Supervised,
    status: Client,
    killed: bool,
    frozen: bool,
}

/// The two broker processes of a pair, started by this process and stopped when dropped.
pub struct Pair {
    program: PathBuf,
    members: [Member; 2],
}

impl Pair {
    /// Starts both brokers of `spec` from the `hearth-broker` binary at `program`.
    pub fn spawn(program: &Path, spec: &PairSpec) -> anyhow::Result<Pair> {
        Pair::spawn_with(program, spec, |_| Vec::new())
    }

    /// [`Pair::spawn`], each broker given `extra(side)` after the spec's arguments (its data
    /// dir and change feed, say).
    pub fn spawn_with(
        program: &Path,
        spec: &PairSpec,
        extra: impl Fn(Side) -> Vec<String>,
    ) -> anyhow::Result<Pair> {
        let member = |side: Side| -> anyhow::Result<Member> {
            let mut args = spec.broker_args(side);
            args.extend(extra(side));
            let process = Supervised::spawn(&process_name(side), program, &args)?;
            let mut config = ClientConfig::new([spec.endpoints(side).frontend.clone()]);
            config.timeout = STATUS_TIMEOUT;
            config.attempt_timeout = STATUS_TIMEOUT;
            let status = Client::new(config).context("status client")?;
            Ok(Member {
                side,
                args,
                process,
                status,
                killed: false,
                frozen: false,
            })
        };
        Ok(Pair {
            program: program.to_path_buf(),
            members: [member(Side::Primary)?, member(Side::Backup)?],
        })
    }

    fn member(&mut self, side: Side) -> &mut Member {
        &mut self.members[side.index()]
    }

    /// The PID of one side's current process.
    pub fn pid(&self, side: Side) -> u32 {
        self.members[side.index()].process.pid()
    }

    /// Whether one side was killed on purpose and not restarted yet.
    #[allow(dead_code)] // for `hearth bench failover`, which freezes the active
    pub fn is_killed(&self, side: Side) -> bool {
        self.members[side.index()].killed
    }

    /// Asks one broker for its state (not a killed or frozen one: that is known).
    pub fn observe(&mut self, side: Side) -> Observed {
        let member = self.member(side);
        if member.killed {
            return Observed::Killed;
        }
        if member.frozen {
            return Observed::Frozen;
        }
        match member.status.status() {
            Ok(status) => Observed::Status(status),
            Err(_) => Observed::Silent,
        }
    }

    /// Asks both brokers, primary first.
    pub fn observe_both(&mut self) -> [Observed; 2] {
        [self.observe(Side::Primary), self.observe(Side::Backup)]
    }

    /// The side whose broker says it is active, if exactly one does.
    pub fn active(&mut self) -> Option<Side> {
        let states = self.observe_both();
        let mut active = Side::BOTH
            .into_iter()
            .filter(|s| states[s.index()].state() == "active");
        match (active.next(), active.next()) {
            (Some(side), None) => Some(side),
            _ => None,
        }
    }

    /// `kill -9` of one broker by its PID, reaped at once; it stays down until
    /// [`Pair::restart`], and its exit is not unexpected.
    pub fn kill9(&mut self, side: Side) -> anyhow::Result<()> {
        let member = self.member(side);
        member.process.kill_now()?;
        member.killed = true;
        member.frozen = false;
        Ok(())
    }

    /// SIGSTOP: the broker stops in its tracks, sockets open, as a VM pause would.
    #[allow(dead_code)] // for `hearth bench failover`, which freezes the active
    pub fn freeze(&mut self, side: Side) -> anyhow::Result<()> {
        let member = self.member(side);
        member.process.signal(libc::SIGSTOP)?;
        member.frozen = true;
        Ok(())
    }

    /// SIGCONT after [`Pair::freeze`].
    #[allow(dead_code)] // for `hearth bench failover`, which freezes the active
    pub fn thaw(&mut self, side: Side) -> anyhow::Result<()> {
        let member = self.member(side);
        member.process.signal(libc::SIGCONT)?;
        member.frozen = false;
        Ok(())
    }

    /// Starts a killed broker again with the same arguments; returns its new PID.
    pub fn restart(&mut self, side: Side) -> anyhow::Result<u32> {
        let program = self.program.clone();
        let member = self.member(side);
        if member.process.is_alive() {
            member.process.kill_now()?;
        }
        member.process = Supervised::spawn(&process_name(side), &program, &member.args)?;
        member.killed = false;
        member.frozen = false;
        Ok(member.process.pid())
    }

    /// A broker that exited without being killed on purpose: its side, PID and status.
    pub fn unexpected_exit(&mut self) -> Option<(Side, u32, ExitStatus)> {
        self.members.iter_mut().find_map(|m| {
            if m.killed {
                return None;
            }
            let status = m.process.exit_status()?;
            Some((m.side, m.process.pid(), status))
        })
    }

    /// Stops both brokers (SIGTERM, then SIGKILL after the grace period).
    pub fn terminate(&mut self) {
        for member in &mut self.members {
            member.process.terminate(GRACE);
        }
    }
}

/// The name a broker of the pair has in messages.
pub fn process_name(side: Side) -> String {
    format!("hearth-broker {side}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_proto::status::ServiceStatus;

    fn spec() -> PairSpec {
        PairSpec {
            primary: BrokerEndpoints {
                frontend: "tcp://127.0.0.1:1".into(),
                metrics: Some("127.0.0.1:2".into()),
                peer: "tcp://127.0.0.1:3".into(),
            },
            backup: BrokerEndpoints {
                frontend: "tcp://127.0.0.1:11".into(),
                metrics: None,
                peer: "tcp://127.0.0.1:13".into(),
            },
            peer_heartbeat: Duration::from_millis(1000),
            heartbeat: Duration::from_millis(2500),
            liveness: 3,
        }
    }

    fn seen(state: &str, peer_alive: bool, workers: u64) -> Observed {
        Observed::Status(BrokerStatus {
            state: state.parse().expect("a state name"),
            peer_alive,
            services: vec![ServiceStatus {
                name: "echo".into(),
                workers,
                ..ServiceStatus::default()
            }],
            ..BrokerStatus::default()
        })
    }

    #[test]
    fn each_broker_binds_its_own_peer_endpoint_and_connects_to_the_other() {
        let s = spec();
        assert_eq!(
            s.broker_args(Side::Primary).join(" "),
            "--role primary --frontend tcp://127.0.0.1:1 --metrics 127.0.0.1:2 \
             --peer-bind tcp://127.0.0.1:3 --peer-connect tcp://127.0.0.1:13 \
             --peer-heartbeat 1s --heartbeat 2s 500ms --liveness 3"
        );
        let backup = s.broker_args(Side::Backup).join(" ");
        assert!(
            backup.starts_with(
                "--role backup --frontend tcp://127.0.0.1:11 \
                 --peer-bind tcp://127.0.0.1:13 --peer-connect tcp://127.0.0.1:3"
            ),
            "{backup}"
        );
        assert_eq!(s.frontends(), ["tcp://127.0.0.1:1", "tcp://127.0.0.1:11"]);
    }

    #[test]
    fn settled_needs_one_active_one_passive_both_hearing_and_staffed() {
        let ok = [seen("passive", true, 2), seen("active", true, 2)];
        assert_eq!(settled(&ok, "echo", 2), Ok(Side::Backup));
        let cases = [
            [seen("active", true, 2), Observed::Killed],
            [seen("active", true, 2), seen("primary", true, 2)],
            [seen("active", true, 2), seen("passive", false, 2)],
            [seen("active", true, 2), seen("passive", true, 1)],
            [seen("active", true, 2), seen("active", true, 2)],
            [Observed::Silent, Observed::Frozen],
        ];
        for states in cases {
            let err = settled(&states, "echo", 2).unwrap_err();
            assert!(err.starts_with("primary "), "{err}");
        }
        assert_eq!(
            Observed::Killed.describe("echo"),
            "(killed)",
            "no status, just the reason"
        );
        assert_eq!(
            seen("active", false, 3).describe("echo"),
            "active (peer silent, 3 echo workers)"
        );
    }
}
