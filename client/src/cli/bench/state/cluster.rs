//! The brokers `hearth bench state` runs and what it asks them outside the load: a Binary
//! Star pair on free loopback ports, each broker with its own data dir under the system
//! temp dir (removed when the run ends, after the brokers stopped) and its `/status` and
//! `/metrics` on HTTP; the backup killed by its PID; the primary killed and restarted on
//! its data dir with the time from exec to its first `state.get` answer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use hearth_proto::state::{STATE_GET, STATE_SET};
use hearth_proto::status::{BStarState, BrokerStatus};
use hearth_proto::{ClientMessage, Limits};
use hearth_supervise::pair::broker_name;
use hearth_supervise::{
    free_port, http, loopback_endpoint, metrics, Broker, BrokerArgs, Launch, PairSpec, ScratchDir,
    Side, Wait,
};

use super::calls::Caller;
use super::exchange::Book;
use super::wire::{self, Reply};

/// Worker heartbeat and liveness of the brokers (no worker connects; the defaults).
const HEARTBEAT: Duration = Duration::from_millis(2500);
const LIVENESS: u32 = 3;
/// How often a wait looks again.
const POLL_EVERY: Duration = Duration::from_millis(20);
/// How long one HTTP question or one request outside the load may take.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the restart probe sends another `state.get` while no answer came.
const PROBE_EVERY: Duration = Duration::from_millis(10);
/// How long a restarted broker may take to answer at all.
const RESTART_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the brokers get to come up and to see each other.
const STARTUP: Duration = Duration::from_secs(10);

/// Where `broker`'s `/status` and `/metrics` are (every broker here serves them).
pub fn metrics_of(broker: &Broker) -> anyhow::Result<SocketAddr> {
    broker
        .metrics_addr()?
        .with_context(|| format!("{} serves no metrics", broker.name()))
}

/// `broker`'s `/status`, or why there is none (it exited, it does not answer).
fn status_of(broker: &mut Broker) -> Result<BrokerStatus, String> {
    if let Some(exited) = broker.exited() {
        return Err(exited.to_string());
    }
    metrics_of(broker)
        .and_then(status)
        .map_err(|e| format!("{e:#}"))
}

/// The pair, then the primary alone; dropped, it stops the brokers, then removes the data
/// dirs.
pub struct Cluster {
    /// The primary broker.
    pub primary: Broker,
    /// The backup, until it is killed.
    pub backup: Option<Broker>,
    program: PathBuf,
    peer_heartbeat: Duration,
    /// Dropped last, once the brokers are stopped.
    dirs: ScratchDir,
}

impl Cluster {
    /// Starts the pair (`peer_heartbeat` on the peer link) and waits until the primary is
    /// active and the backup passive, each hearing the other.
    pub fn start(program: &Path, peer_heartbeat: Duration) -> anyhow::Result<Cluster> {
        let dirs = ScratchDir::new("hearth-bench-state")?;
        let spec = PairSpec {
            data_root: Some(dirs.path().to_path_buf()),
            ..PairSpec::loopback(peer_heartbeat, HEARTBEAT, LIVENESS)?
        };
        let broker = |side: Side| {
            Broker::spawn(
                &broker_name(side),
                program,
                spec.broker_args(side),
                Launch::terminal(),
            )
        };
        let primary = broker(Side::Primary)?;
        let backup = broker(Side::Backup)?;
        let mut cluster = Cluster {
            primary,
            backup: Some(backup),
            program: program.to_path_buf(),
            peer_heartbeat,
            dirs,
        };
        cluster.wait_paired()?;
        Ok(cluster)
    }

    /// Starts one standalone broker on a fresh data dir and waits until it answers
    /// `/status`.
    pub fn start_standalone(program: &Path) -> anyhow::Result<Cluster> {
        let dirs = ScratchDir::new("hearth-bench-state")?;
        let args = BrokerArgs {
            metrics: Some(format!("127.0.0.1:{}", free_port()?)),
            data_dir: Some(dirs.of(Side::Primary.role())),
            ..BrokerArgs::standalone(loopback_endpoint(free_port()?))
        };
        let mut primary = Broker::spawn(
            "hearth-broker standalone",
            program,
            args,
            Launch::terminal(),
        )?;
        let wait = Wait::new("the standalone broker to start", STARTUP).every(POLL_EVERY);
        wait.until(|| status_of(&mut primary).map(drop))?;
        Ok(Cluster {
            primary,
            backup: None,
            program: program.to_path_buf(),
            peer_heartbeat: Duration::ZERO,
            dirs,
        })
    }

    fn wait_paired(&mut self) -> anyhow::Result<()> {
        let Cluster {
            primary, backup, ..
        } = self;
        let backup = backup.as_mut().context("no backup")?;
        let wait = Wait::new("the pair to settle", STARTUP).every(POLL_EVERY);
        wait.until(|| {
            let (p, b) = (status_of(primary)?, status_of(backup)?);
            if p.state == BStarState::Active
                && b.state == BStarState::Passive
                && p.peer_alive
                && b.peer_alive
            {
                Ok(())
            } else {
                Err(format!(
                    "primary {} (peer alive {}), backup {} (peer alive {})",
                    p.state, p.peer_alive, b.state, b.peer_alive
                ))
            }
        })?;
        Ok(())
    }

    /// `kill -9` of the backup by its PID; waits until the primary no longer counts its
    /// peer alive.
    pub fn kill_backup(&mut self) -> anyhow::Result<()> {
        let mut backup = self.backup.take().context("the backup is already gone")?;
        backup.kill9()?;
        let primary = &mut self.primary;
        let wait = Wait::new("the primary to see its peer gone", STARTUP).every(POLL_EVERY);
        wait.until(|| {
            let status = status_of(primary)?;
            if status.peer_alive {
                Err(format!("{}, peer alive", status.state))
            } else {
                Ok(())
            }
        })?;
        Ok(())
    }

    /// One write of key 0 (recorded in `book`), waiting as long as the active may hold
    /// writes: a new pair's until its passive synced, a pair's that lost its passive for a
    /// few peer heartbeats.
    pub fn write_once(&self, book: &Book) -> anyhow::Result<()> {
        let timeout = ASK_TIMEOUT + self.peer_heartbeat * 10;
        let caller = Caller::new(self.primary.frontend(), timeout)?;
        let write = book.take_write();
        let mut body = Vec::new();
        wire::set_body(&mut body, &[0], write, book.value_len());
        let reply = caller.call(STATE_SET, &[&body, &book.write_id(write)])?;
        match wire::read_reply(&reply) {
            Some(Reply::Seq(seq)) => {
                book.acknowledged(0, seq);
                Ok(())
            }
            _ => bail!(
                "a write was answered {}",
                String::from_utf8_lossy(&reply[..reply.len().min(200)])
            ),
        }
    }

    /// `kill -9` of the primary (or of the standalone broker), then a restart on its data
    /// dir: with its own flags, or (`standalone`) as a standalone broker. Returns the time
    /// from exec to the first `state.get` answer holding key 0.
    pub fn restart_primary(&mut self, standalone: bool) -> anyhow::Result<Duration> {
        self.primary.kill9()?;
        if standalone {
            let args = BrokerArgs {
                metrics: self.primary.args().metrics.clone(),
                data_dir: Some(self.dirs.of(Side::Primary.role())),
                ..BrokerArgs::standalone(self.primary.frontend())
            };
            self.primary = Broker::new(
                "hearth-broker standalone",
                &self.program,
                args,
                Launch::terminal(),
            );
        }
        let started = Instant::now();
        self.primary.start()?;
        first_answer(&mut self.primary, started)
    }
}

/// Sends `state.get [bench/0]` every [`PROBE_EVERY`] until one is answered with the key;
/// the time since `started`.
fn first_answer(broker: &mut Broker, started: Instant) -> anyhow::Result<Duration> {
    let context = zmq::Context::new();
    let socket = context.socket(zmq::DEALER)?;
    socket.set_linger(0)?;
    // Reconnect at once when the broker is not bound yet (libzmq waits 100 ms by default).
    socket.set_reconnect_ivl(1)?;
    socket.connect(broker.frontend())?;
    let mut body = Vec::new();
    wire::get_body(&mut body, &[0]);
    let probe = ClientMessage::new(STATE_GET, body);
    let mut next_send = Instant::now();
    loop {
        let now = Instant::now();
        if now >= next_send {
            match socket.send_multipart(probe.frames(), zmq::DONTWAIT) {
                Ok(()) | Err(zmq::Error::EAGAIN) => {}
                Err(e) => return Err(e.into()),
            }
            next_send = now + PROBE_EVERY;
        }
        if socket.poll(zmq::POLLIN, 1)? > 0 {
            let at = started.elapsed();
            let reply = ClientMessage::decode(socket.recv_multipart(0)?, &Limits::default())
                .map_err(|e| anyhow!("undecodable reply from the restarted broker: {e}"))?;
            match reply.body.first().and_then(|b| wire::read_reply(b)) {
                Some(Reply::Entries(entries)) if entries.len() == 1 => return Ok(at),
                other => bail!("the restarted broker answered {other:?} for key 0"),
            }
        }
        if let Some(exited) = broker.exited() {
            bail!("{exited}, after its restart");
        }
        if started.elapsed() > RESTART_TIMEOUT {
            bail!("the restarted broker did not answer within {RESTART_TIMEOUT:?}");
        }
    }
}

/// A broker's `/status`.
pub fn status(metrics: SocketAddr) -> anyhow::Result<BrokerStatus> {
    let body = http::get_ok(metrics, "/status", ASK_TIMEOUT)?;
    serde_json::from_str(&body).with_context(|| format!("/status of {metrics}"))
}

/// Count and sum of the broker's `hearth_state_flush_duration_seconds` histogram: one
/// sample per poll round whose changes reached the store, from their hand-over to the
/// writer thread to their fsync.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FlushCounter {
    /// Rounds flushed.
    pub rounds: f64,
    /// Seconds, summed over the rounds.
    pub seconds: f64,
    /// Flushes (fsyncs): `hearth_state_fsyncs_total`.
    pub fsyncs: f64,
}

/// Reads the broker's [`FlushCounter`] from `/metrics`.
pub fn flush_counter(metrics: SocketAddr) -> anyhow::Result<FlushCounter> {
    let samples = metrics::parse(&http::get_ok(metrics, "/metrics", ASK_TIMEOUT)?);
    let sample = |name: &str| {
        samples
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.value)
            .ok_or_else(|| anyhow!("no {name} on /metrics of {metrics}"))
    };
    Ok(FlushCounter {
        rounds: sample("hearth_state_flush_duration_seconds_count")?,
        seconds: sample("hearth_state_flush_duration_seconds_sum")?,
        fsyncs: sample("hearth_state_fsyncs_total")?,
    })
}
