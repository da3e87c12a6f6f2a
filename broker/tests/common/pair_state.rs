//! A pair of real `hearth-broker` processes with data dirs, for the state-model tests that
//! kill, freeze and restart them: the pair itself, its data dirs, and the checks every such
//! test makes (each acknowledged write is there, with its seq, applied once; a broker that
//! must wait for its peer does not serve).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hearth_supervise::{wait_until, ScratchDir};

use super::procs::{pair_args, BrokerProc};
use super::writes::{parse_get_reply, WriteLog};
use super::{free_port, metric, raw, recv, send, wait_for};

/// Deadline for a condition of the pair (takeover, catch-up, restart).
pub const T: Duration = Duration::from_secs(15);
/// The peer heartbeat of the test pairs, in ms: takeovers within half a second.
pub const PEER_HB: u64 = 200;
/// How long a broker that must wait for its peer is watched not answering: many peer
/// expiries (two heartbeats each).
pub const NOT_SERVING_FOR: Duration = Duration::from_secs(2);

/// A data dir of its own (not yet existing, so the broker makes it) in a scratch dir of
/// the system temp dir, removed on drop.
pub struct DataDir(pub PathBuf, ScratchDir);

impl DataDir {
    /// A fresh directory named after the test.
    pub fn new(name: &str) -> DataDir {
        let root = ScratchDir::new(&format!("hearth-{name}")).expect("a scratch dir");
        DataDir(root.of("data"), root)
    }

    /// The path as a flag value.
    pub fn arg(&self) -> String {
        self.0.display().to_string()
    }
}

/// A primary and a backup with data dirs, on free ports. The arguments of each are kept
/// so that a broker can be started again with extra flags (such as `--force-active`).
pub struct Pair {
    pub primary: BrokerProc,
    pub backup: BrokerProc,
    pub primary_dir: DataDir,
    pub backup_dir: DataDir,
    primary_args: Vec<String>,
    backup_args: Vec<String>,
}

/// Start-up attempts on fresh ports: a port picked free can be taken (by an outgoing
/// connection, another test process) before the broker binds it, and the broker then exits.
const START_ATTEMPTS: usize = 3;

/// Starts `hearth-broker` with `args` on fresh frontend and metrics ports, again on other
/// ports if it exits before its `/status` answers (a port taken in the meantime).
pub fn start_broker(args: &[String]) -> BrokerProc {
    let mut last = String::new();
    for _ in 0..START_ATTEMPTS {
        let mut broker = BrokerProc::start(args);
        match until_up(&mut broker, |s| s.is_some()) {
            Ok(()) => return broker,
            Err(why) => last = why,
        }
    }
    panic!("hearth-broker {args:?} did not start: {last}")
}

/// Waits until `check` accepts the broker's `/status` (None: it does not answer), or says
/// why not: the process exited, or the deadline passed.
fn until_up(
    broker: &mut BrokerProc,
    check: impl Fn(&Option<serde_json::Value>) -> bool,
) -> Result<(), String> {
    let up = wait_until("the broker to be up", T, || {
        if let Some(exit) = broker.exit_status() {
            return Ok(Err(format!("exited at start-up ({exit})")));
        }
        let status = broker.status();
        if check(&status) {
            Ok(Ok(()))
        } else {
            Err(format!("{status:?}"))
        }
    });
    up.map_err(|e| e.to_string())?
}

impl Pair {
    /// Starts both and waits until the primary is active and the backup passive (again on
    /// other ports if a broker exits at start-up).
    pub fn start(name: &str) -> Pair {
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            match Pair::try_start(name) {
                Ok(pair) => return pair,
                Err(why) => {
                    eprintln!("pair {name} did not start ({why}); again on other ports");
                    last = why;
                }
            }
        }
        panic!("pair {name} did not start: {last}")
    }

    fn try_start(name: &str) -> Result<Pair, String> {
        let (pp, bp) = (free_port(), free_port());
        let primary_dir = DataDir::new(&format!("{name}-p"));
        let backup_dir = DataDir::new(&format!("{name}-b"));
        let with_dir = |mut args: Vec<String>, dir: &DataDir| {
            args.extend(["--data-dir".into(), dir.arg()]);
            args
        };
        let primary_args = with_dir(pair_args("primary", pp, bp, PEER_HB), &primary_dir);
        let backup_args = with_dir(pair_args("backup", bp, pp, PEER_HB), &backup_dir);
        let primary = BrokerProc::start(&primary_args);
        let backup = BrokerProc::start(&backup_args);
        let mut pair = Pair {
            primary,
            backup,
            primary_dir,
            backup_dir,
            primary_args,
            backup_args,
        };
        let is = |state: &'static str| {
            move |s: &Option<serde_json::Value>| s.as_ref().is_some_and(|s| s["state"] == state)
        };
        until_up(&mut pair.primary, is("active")).map_err(|e| format!("primary: {e}"))?;
        until_up(&mut pair.backup, is("passive")).map_err(|e| format!("backup: {e}"))?;
        Ok(pair)
    }

    /// The frontends, primary first.
    pub fn brokers(&self) -> Vec<String> {
        vec![self.primary.frontend.clone(), self.backup.frontend.clone()]
    }

    /// Replaces the backup by a new process (on new frontend and metrics ports) with its
    /// arguments plus `extra`; the old process, if still running, is killed first (it
    /// holds the peer port and the data dir).
    pub fn start_backup_with(&mut self, extra: &[&str]) {
        self.backup.kill9();
        let mut args = self.backup_args.clone();
        args.extend(extra.iter().map(|s| s.to_string()));
        self.backup = start_broker(&args);
    }

    /// The primary's arguments (role, peer endpoints, data dir).
    pub fn primary_args(&self) -> &[String] {
        &self.primary_args
    }

    /// The frontend of `which` (`"primary"` or `"backup"`).
    pub fn frontend(&self, which: &str) -> &str {
        match which {
            "primary" => &self.primary.frontend,
            _ => &self.backup.frontend,
        }
    }

    /// Waits until the pair has settled and both brokers' `/status` shows `seq`: used with
    /// the seq of a model read from the active, since `/status` may lag the broker by a
    /// refresh period.
    pub fn wait_both_at(&self, seq: u64) {
        wait_for(&format!("both brokers at seq {seq}"), T, || {
            let p = seq_of(&self.primary);
            let b = seq_of(&self.backup);
            if p == Some(seq) && b == Some(seq) {
                Ok(())
            } else {
                Err((p, b))
            }
        });
        self.wait_settled();
    }

    /// Waits until one broker is active and the other passive with the same seq; returns
    /// which is active (`"primary"` or `"backup"`) and the seq. (`/status` may lag: with
    /// writes just done, follow with [`Pair::wait_both_at`] the seq read from the active.)
    pub fn wait_settled(&self) -> (&'static str, u64) {
        wait_for("the pair to settle with the same seq", T, || {
            let p = self.primary.status();
            let b = self.backup.status();
            let view = |s: &Option<serde_json::Value>| {
                s.as_ref().map(|s| {
                    (
                        s["state"].as_str().unwrap_or("?").to_owned(),
                        s["state_seq"].as_u64(),
                    )
                })
            };
            let (pv, bv) = (view(&p), view(&b));
            match (&pv, &bv) {
                (Some((ps, Some(pseq))), Some((bs, Some(bseq)))) if pseq == bseq => {
                    match (ps.as_str(), bs.as_str()) {
                        ("active", "passive") => Ok(("primary", *pseq)),
                        ("passive", "active") => Ok(("backup", *pseq)),
                        _ => Err((pv, bv)),
                    }
                }
                _ => Err((pv, bv)),
            }
        })
    }
}

/// The broker's state seq per `/status`.
pub fn seq_of(broker: &BrokerProc) -> Option<u64> {
    broker.status().and_then(|s| s["state_seq"].as_u64())
}

/// Waits until the broker's state seq reaches `at_least`.
pub fn wait_seq(broker: &BrokerProc, at_least: u64, what: &str) -> u64 {
    wait_for(what, T, || match seq_of(broker) {
        Some(seq) if seq >= at_least => Ok(seq),
        other => Err(other),
    })
}

/// The highest seq in a model read with `state.get` (its seq when every change was a set
/// of a new key, as with the Lazy Pirate writer's).
pub fn max_seq(found: &BTreeMap<String, (i64, u64)>) -> u64 {
    found.values().map(|&(_, seq)| seq).max().unwrap_or(0)
}

/// Waits until the process has exited (after SIGTERM), and returns its exit status.
pub fn wait_exit(broker: &mut BrokerProc) -> std::process::ExitStatus {
    let pid = broker.proc.pid();
    wait_for(&format!("broker {pid} to exit"), T, || {
        broker.exit_status().ok_or("running")
    })
}

/// SIGKILLs both brokers before reaping either: a power cut.
pub fn power_cut(a: &mut BrokerProc, b: &mut BrokerProc) {
    a.signal(libc::SIGKILL);
    b.signal(libc::SIGKILL);
    a.kill9();
    b.kill9();
}

/// One `state.get` of every key sent once to `frontend` (no retry elsewhere): the model,
/// or None if no reply came within `within`.
pub fn get_from(frontend: &str, within: Duration) -> Option<BTreeMap<String, (i64, u64)>> {
    let ctx = zmq::Context::new();
    let s = raw(&ctx, zmq::REQ, frontend);
    send(&s, &[b"MDPC01", b"state.get", b"le"]);
    let reply = recv(&s, within)?;
    Some(parse_get_reply(reply.get(2)?))
}

/// Waits until `frontend` answers a `state.get` (a broker that may serve alone takes over
/// on a client request once its peer's expiry has passed).
pub fn wait_serves(frontend: &str, what: &str) -> BTreeMap<String, (i64, u64)> {
    wait_for(what, T, || {
        get_from(frontend, Duration::from_millis(500)).ok_or("no reply")
    })
}

/// Checks that `broker`, restarted with its peer down, waits for its peer: `/status` says
/// why, `hearth_state_waiting_for_peer` is 1, it is not active, and a `state.get` sent to
/// it goes unanswered for [`NOT_SERVING_FOR`]. Returns the reason it gives.
pub fn assert_waits_for_peer(broker: &BrokerProc, name: &str) -> String {
    let reason = wait_for(
        &format!("{name} to say it waits for its peer"),
        T,
        || match broker.status() {
            Some(s) if s["waiting_for_peer"].is_string() => Ok(s["waiting_for_peer"]
                .as_str()
                .unwrap_or_default()
                .to_owned()),
            other => Err(other),
        },
    );
    let started = Instant::now();
    let answer = get_from(&broker.frontend, NOT_SERVING_FOR);
    assert!(
        answer.is_none(),
        "{name} waits for its peer but answered state.get after {:?}: {answer:?}",
        started.elapsed()
    );
    let status = broker.status().expect("status after the state.get");
    assert_ne!(status["state"], "active", "{name}: {status}");
    assert!(status["waiting_for_peer"].is_string(), "{name}: {status}");
    assert_eq!(
        metric(broker.metrics, "hearth_state_waiting_for_peer"),
        1.0,
        "{name}: hearth_state_waiting_for_peer"
    );
    println!(
        "{name} waits (state {}, seq {}): {reason}",
        status["state"], status["state_seq"]
    );
    reason
}

/// What the checks of acknowledged writes against a model found.
#[derive(Debug, Default)]
pub struct Tally {
    pub sent: u64,
    pub acked: usize,
    /// Acknowledged writes whose key is absent or holds another value.
    pub missing: Vec<String>,
    /// Acknowledged writes whose key holds their value with another seq than the reply's
    /// (applied again after the acknowledgement, or the reply's seq was wrong).
    pub duplicates: Vec<String>,
    pub unanswered: usize,
    pub refused: usize,
}

/// Checks every acknowledged write of `logs` against `found`.
pub fn tally(logs: &[&WriteLog], found: &BTreeMap<String, (i64, u64)>) -> Tally {
    let mut t = Tally::default();
    for log in logs {
        t.sent += log.sent;
        t.acked += log.acked.len();
        t.unanswered += log.unanswered.len();
        t.refused += log.refused.len();
        for (key, &(value, seq)) in &log.acked {
            match found.get(key) {
                Some(&(v, s)) if v == value && s == seq => {}
                Some(&(v, s)) if v == value => t
                    .duplicates
                    .push(format!("{key}: acked seq {seq}, holds seq {s}")),
                other => t
                    .missing
                    .push(format!("{key}: acked {:?}, found {other:?}", (value, seq))),
            }
        }
    }
    t
}

/// Prints the counts in the form every state test uses.
pub fn print_tally(what: &str, t: &Tally) {
    println!(
        "{what}: writes sent {}, acknowledged {}, acknowledged but missing {}, duplicates applied {} (unanswered {}, refused {})",
        t.sent,
        t.acked,
        t.missing.len(),
        t.duplicates.len(),
        t.unanswered,
        t.refused
    );
}

/// Prints the counts and asserts that nothing acknowledged is missing or applied twice,
/// and that every write was answered.
pub fn check_writes(what: &str, logs: &[&WriteLog], found: &BTreeMap<String, (i64, u64)>) {
    let t = tally(logs, found);
    print_tally(what, &t);
    assert!(
        t.missing.is_empty(),
        "{what}: acknowledged writes missing: {:?}",
        t.missing
    );
    assert!(
        t.duplicates.is_empty(),
        "{what}: writes applied again: {:?}",
        t.duplicates
    );
    for log in logs {
        assert!(
            log.unanswered.is_empty(),
            "{what}: unanswered {:?}",
            log.unanswered
        );
        assert!(log.refused.is_empty(), "{what}: refused {:?}", log.refused);
    }
}
