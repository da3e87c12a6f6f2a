//! The brokers `hearth bench state` runs and what it asks them outside the load: a Binary
//! Star pair on free loopback ports, each broker with its own data dir under the system
//! temp dir (removed when the run ends, after the brokers stopped) and its `/status` and
//! `/metrics` on HTTP; the backup killed by its PID; the primary killed and restarted on
//! its data dir with the time from exec to its first `state.get` answer.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use hearth_proto::state::{STATE_GET, STATE_SET};
use hearth_proto::status::{BStarState, BrokerStatus};
use hearth_proto::{ClientMessage, Limits};

use super::calls::Caller;
use super::exchange::Book;
use super::wire::{self, Reply};
use crate::cli::pair::{BrokerEndpoints, PairSpec, Side};
use crate::cli::procs::{self, Supervised, STARTUP};

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

/// One running broker.
pub struct Broker {
    process: Supervised,
    args: Vec<String>,
    frontend: String,
    metrics: SocketAddr,
}

impl Broker {
    fn spawn(name: &str, program: &Path, args: Vec<String>) -> anyhow::Result<Broker> {
        let (frontend, metrics) = (flag(&args, "--frontend")?, flag(&args, "--metrics")?);
        let metrics = metrics
            .parse()
            .with_context(|| format!("--metrics {metrics}"))?;
        Ok(Broker {
            process: Supervised::spawn(name, program, &args)?,
            frontend,
            metrics,
            args,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The frontend endpoint.
    pub fn frontend(&self) -> &str {
        &self.frontend
    }

    /// Where its `/status` and `/metrics` are.
    pub fn metrics(&self) -> SocketAddr {
        self.metrics
    }

    /// Its `/status`, or why there is none (it exited, it does not answer).
    fn status(&mut self) -> Result<BrokerStatus, String> {
        if let Some(exit) = self.process.exit_status() {
            return Err(format!("{} exited: {exit}", self.process.name()));
        }
        status(self.metrics).map_err(|e| format!("{e:#}"))
    }
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
    dirs: DataDirs,
}

impl Cluster {
    /// Starts the pair (`peer_heartbeat` on the peer link) and waits until the primary is
    /// active and the backup passive, each hearing the other.
    pub fn start(program: &Path, peer_heartbeat: Duration) -> anyhow::Result<Cluster> {
        let dirs = DataDirs::create()?;
        let endpoints = || -> anyhow::Result<BrokerEndpoints> {
            Ok(BrokerEndpoints {
                frontend: local_endpoint()?,
                metrics: Some(format!("127.0.0.1:{}", procs::free_port()?)),
                peer: local_endpoint()?,
            })
        };
        let spec = PairSpec {
            primary: endpoints()?,
            backup: endpoints()?,
            peer_heartbeat,
            heartbeat: HEARTBEAT,
            liveness: LIVENESS,
        };
        let args = |side: Side| -> anyhow::Result<Vec<String>> {
            let mut args = spec.broker_args(side);
            args.extend([
                "--data-dir".to_owned(),
                dirs.of(side).display().to_string(),
                "--publish".to_owned(),
                local_endpoint()?,
            ]);
            Ok(args)
        };
        let primary = Broker::spawn("hearth-broker primary", program, args(Side::Primary)?)?;
        let backup = Broker::spawn("hearth-broker backup", program, args(Side::Backup)?)?;
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
        let dirs = DataDirs::create()?;
        let args = vec![
            "--role".to_owned(),
            "standalone".to_owned(),
            "--frontend".to_owned(),
            local_endpoint()?,
            "--metrics".to_owned(),
            format!("127.0.0.1:{}", procs::free_port()?),
            "--data-dir".to_owned(),
            dirs.of(Side::Primary).display().to_string(),
        ];
        let mut primary = Broker::spawn("hearth-broker standalone", program, args)?;
        procs::wait_until(
            "the standalone broker to start",
            STARTUP,
            POLL_EVERY,
            || primary.status().map(drop),
        )?;
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
        procs::wait_until("the pair to settle", STARTUP, POLL_EVERY, || {
            let (p, b) = (primary.status()?, backup.status()?);
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
        })
    }

    /// `kill -9` of the backup by its PID; waits until the primary no longer counts its
    /// peer alive.
    pub fn kill_backup(&mut self) -> anyhow::Result<()> {
        let mut backup = self.backup.take().context("the backup is already gone")?;
        backup.process.kill_now()?;
        let primary = &mut self.primary;
        procs::wait_until(
            "the primary to see its peer gone",
            STARTUP,
            POLL_EVERY,
            || {
                let status = primary.status()?;
                if status.peer_alive {
                    Err(format!("{}, peer alive", status.state))
                } else {
                    Ok(())
                }
            },
        )
    }

    /// One write of key 0 (recorded in `book`), waiting as long as the active may hold
    /// writes: a new pair's until its passive synced, a pair's that lost its passive for a
    /// few peer heartbeats.
    pub fn write_once(&self, book: &Book) -> anyhow::Result<()> {
        let timeout = ASK_TIMEOUT + self.peer_heartbeat * 10;
        let caller = Caller::new(&self.primary.frontend, timeout)?;
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
        self.primary.process.kill_now()?;
        let args = if standalone {
            vec![
                "--role".to_owned(),
                "standalone".to_owned(),
                "--frontend".to_owned(),
                self.primary.frontend.clone(),
                "--metrics".to_owned(),
                self.primary.metrics.to_string(),
                "--data-dir".to_owned(),
                self.dirs.of(Side::Primary).display().to_string(),
            ]
        } else {
            self.primary.args.clone()
        };
        let name = if standalone {
            "hearth-broker standalone"
        } else {
            "hearth-broker primary"
        };
        let started = Instant::now();
        self.primary = Broker::spawn(name, &self.program, args)?;
        first_answer(&mut self.primary, started)
    }
}

/// The value of `--name` in `args`.
fn flag(args: &[String], name: &str) -> anyhow::Result<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .ok_or_else(|| anyhow!("no {name} in the broker's arguments"))
}

/// Sends `state.get [bench/0]` every [`PROBE_EVERY`] until one is answered with the key;
/// the time since `started`.
fn first_answer(broker: &mut Broker, started: Instant) -> anyhow::Result<Duration> {
    let context = zmq::Context::new();
    let socket = context.socket(zmq::DEALER)?;
    socket.set_linger(0)?;
    // Reconnect at once when the broker is not bound yet (libzmq waits 100 ms by default).
    socket.set_reconnect_ivl(1)?;
    socket.connect(&broker.frontend)?;
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
        if let Some(exit) = broker.process.exit_status() {
            bail!("{} exited after its restart: {exit}", broker.process.name());
        }
        if started.elapsed() > RESTART_TIMEOUT {
            bail!("the restarted broker did not answer within {RESTART_TIMEOUT:?}");
        }
    }
}

/// A broker's `/status`.
pub fn status(metrics: SocketAddr) -> anyhow::Result<BrokerStatus> {
    let body = http_get(metrics, "/status")?;
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
    let text = http_get(metrics, "/metrics")?;
    let sample = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .ok_or_else(|| anyhow!("no {name} on /metrics of {metrics}"))
    };
    Ok(FlushCounter {
        rounds: sample("hearth_state_flush_duration_seconds_count")?,
        seconds: sample("hearth_state_flush_duration_seconds_sum")?,
        fsyncs: sample("hearth_state_fsyncs_total")?,
    })
}

/// An HTTP/1.0 GET of `path`; the body of a 200 answer.
fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, ASK_TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(ASK_TIMEOUT))?;
    stream.set_write_timeout(Some(ASK_TIMEOUT))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed HTTP answer from {addr}"))?;
    if head.split_whitespace().nth(1) != Some("200") {
        bail!(
            "GET {path} on {addr}: {}",
            head.lines().next().unwrap_or("")
        );
    }
    Ok(body.to_owned())
}

/// The two data dirs, under one directory of the system temp dir removed on drop.
struct DataDirs {
    root: PathBuf,
}

impl DataDirs {
    fn create() -> anyhow::Result<DataDirs> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let root = std::env::temp_dir().join(format!(
            "hearth-bench-state-{}-{nanos:09}",
            std::process::id()
        ));
        let dirs = DataDirs { root };
        for side in Side::BOTH {
            std::fs::create_dir_all(dirs.of(side))
                .with_context(|| format!("cannot create {}", dirs.of(side).display()))?;
        }
        Ok(dirs)
    }

    fn of(&self, side: Side) -> PathBuf {
        self.root.join(side.name())
    }
}

impl Drop for DataDirs {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.root) {
            tracing::warn!(dir = %self.root.display(), error = %e, "cannot remove the data dirs");
        }
    }
}

fn local_endpoint() -> anyhow::Result<String> {
    Ok(format!("tcp://127.0.0.1:{}", procs::free_port()?))
}
