//! A cut peer link with real `hearth-broker` processes: what happens to acknowledged writes
//! when both brokers of a pair serve while they cannot hear each other.
//!
//! Each broker's `--peer-connect` goes through a [`Proxy`] to the other's `--peer-bind`, so
//! the test can cut the link while clients still reach both frontends. During the cut each
//! broker gets writes of its own (no failover), both become active, and when the link heals
//! the broker with the higher term stays; the other installs its state and keeps its own
//! divergent changes in the conflict record (`/conflicts`, `hearth_state_conflicts_total`).
//! The test counts, per side, writes acknowledged during the cut, kept in the model, kept
//! in the conflict record, and lost silently, which must be 0.
//!
//! The proxy's own test is here too rather than beside it: `common` is compiled into every
//! integration test binary, and a test there would run once per binary.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::pair_state::DataDir;
use common::procs::{pair_args, BrokerProc};
use common::proxy::Proxy;
use common::writes::{missing, read_all, reply_seq, state_call, writer, WriteLog};
use common::*;

const T: Duration = Duration::from_secs(15);
const PEER_HB: u64 = 200;
/// Writes before the cut, through the pair.
const BEFORE: u64 = 20;
/// Distinct keys written on each side during the cut: different counts, so the two sides'
/// seqs differ and equal seqs after the heal mean the loser really took the winner's state.
const ON_PRIMARY: u64 = 40;
const ON_BACKUP: u64 = 30;
/// The key written on both sides during the cut, with these values.
const SHARED: &str = "cut/both";
const SHARED_ON_PRIMARY: i64 = 1001;
const SHARED_ON_BACKUP: i64 = 2002;

/// A pair whose peer link runs through two proxies, one per direction.
struct CutPair {
    primary: BrokerProc,
    backup: BrokerProc,
    /// The primary's PUSH sockets go through this one to the backup's PULL...
    to_backup: Proxy,
    /// ...and the backup's through this one to the primary's.
    to_primary: Proxy,
    _dirs: (DataDir, DataDir),
}

impl CutPair {
    fn start() -> CutPair {
        let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        // The peer ports are picked free and released, so the kernel may hand one out again
        // (to the other, or to a proxy's listener): pick again until all four differ.
        let (pp, bp, to_backup, to_primary) = loop {
            let (pp, bp) = (free_port(), free_port());
            let to_backup = Proxy::start(loopback(bp));
            let to_primary = Proxy::start(loopback(pp));
            let ports = [pp, bp, to_backup.addr().port(), to_primary.addr().port()];
            if ports
                .iter()
                .enumerate()
                .all(|(i, p)| !ports[..i].contains(p))
            {
                break (pp, bp, to_backup, to_primary);
            }
        };
        let dirs = (DataDir::new("p"), DataDir::new("b"));
        let args = |role: &str, own: u16, proxy: &Proxy, dir: &DataDir| {
            let mut args = pair_args(role, own, proxy.addr().port(), PEER_HB);
            args.extend(["--data-dir".into(), dir.0.display().to_string()]);
            args
        };
        let primary = BrokerProc::start(&args("primary", pp, &to_backup, &dirs.0));
        let backup = BrokerProc::start(&args("backup", bp, &to_primary, &dirs.1));
        primary.wait_state("active", T);
        backup.wait_state("passive", T);
        CutPair {
            primary,
            backup,
            to_backup,
            to_primary,
            _dirs: dirs,
        }
    }

    fn brokers(&self) -> Vec<String> {
        vec![self.primary.frontend.clone(), self.backup.frontend.clone()]
    }

    fn cut(&self) {
        self.to_backup.cut();
        self.to_primary.cut();
    }

    fn heal(&self) {
        self.to_backup.heal();
        self.to_primary.heal();
    }

    fn broker(&self, side: Side) -> &BrokerProc {
        match side {
            Side::Primary => &self.primary,
            Side::Backup => &self.backup,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Primary,
    Backup,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Primary => "primary",
            Side::Backup => "backup",
        }
    }

    fn other(self) -> Side {
        match self {
            Side::Primary => Side::Backup,
            Side::Backup => Side::Primary,
        }
    }
}

/// A few fields of `/status`.
#[derive(Debug, Clone, PartialEq)]
struct Brief {
    state: String,
    seq: u64,
    term: u64,
    peer_alive: bool,
}

fn brief(broker: &BrokerProc) -> Option<Brief> {
    let s = broker.status()?;
    Some(Brief {
        state: s["state"].as_str()?.to_owned(),
        seq: s["state_seq"].as_u64()?,
        term: s["term"].as_u64()?,
        peer_alive: s["peer_alive"].as_bool()?,
    })
}

/// Writes `cut/{side}/{i} = i` for i in 1..=count, and [`SHARED`] = `shared` halfway, to
/// one broker only: retried there with the same write id, never failed over. Stops at the
/// first write not answered, so a broker that does not serve cannot stretch the test.
fn write_alone(side: Side, frontend: String, count: u64, shared: i64) -> JoinHandle<WriteLog> {
    std::thread::spawn(move || {
        let ctx = zmq::Context::new();
        let brokers = [frontend];
        let mut writes: Vec<(String, i64)> = (1..=count)
            .map(|i| (format!("cut/{}/{i}", side.name()), i as i64))
            .collect();
        writes.insert(writes.len() / 2, (SHARED.to_owned(), shared));
        let deadline = Instant::now() + T;
        let mut log = WriteLog::default();
        for (key, value) in writes {
            let body = format!("d{}:{key}i{value}ee", key.len());
            let id = format!("partition-{}-{key}-{}", side.name(), std::process::id());
            log.sent += 1;
            let reply = state_call(
                &ctx,
                &brokers,
                &mut 0,
                "state.set",
                &[body.as_bytes(), id.as_bytes()],
                Duration::from_millis(500),
                deadline.saturating_duration_since(Instant::now()),
            );
            match reply.as_deref().map(|b| (reply_seq(b), b)) {
                Some((Some(seq), _)) => {
                    log.acked.insert(key, (value, seq));
                }
                Some((None, body)) => log.refused.push(String::from_utf8_lossy(body).into_owned()),
                None => {
                    log.unanswered.push(key);
                    break;
                }
            }
        }
        log
    })
}

/// One entry of `/conflicts`.
#[derive(Debug, Clone)]
struct Conflict {
    key: String,
    value: Option<String>,
    seq: u64,
    common: u64,
    value_only: bool,
}

fn conflicts(broker: &BrokerProc) -> Vec<Conflict> {
    let (code, body) = http_get(broker.metrics, "/conflicts");
    assert_eq!(code, 200, "/conflicts: {body}");
    let list: serde_json::Value = serde_json::from_str(&body).expect("/conflicts is JSON");
    list.as_array()
        .unwrap_or_else(|| panic!("/conflicts is a list: {body}"))
        .iter()
        .map(|c| Conflict {
            key: c["key"].as_str().unwrap_or_default().to_owned(),
            value: c["value"].as_str().map(str::to_owned),
            seq: c["seq"].as_u64().unwrap_or(0),
            common: c["common"].as_u64().unwrap_or(0),
            value_only: c["value_only"].as_bool().unwrap_or(false),
        })
        .collect()
}

/// Where each write a side acknowledged during the cut ended up.
#[derive(Debug, Default)]
struct Fate {
    acked: usize,
    in_model: usize,
    in_conflicts: usize,
    lost: Vec<String>,
}

fn fate(
    log: &WriteLog,
    model: &std::collections::BTreeMap<String, (i64, u64)>,
    record: &[Conflict],
) -> Fate {
    let mut fate = Fate {
        acked: log.acked.len(),
        ..Fate::default()
    };
    for (key, &(value, seq)) in &log.acked {
        let bencoded = format!("i{value}e");
        if model.get(key) == Some(&(value, seq)) {
            fate.in_model += 1;
        } else if record
            .iter()
            .any(|c| &c.key == key && c.value.as_deref() == Some(&bencoded) && c.seq == seq)
        {
            fate.in_conflicts += 1;
        } else {
            fate.lost.push(format!(
                "{key} = {value} (seq {seq}): model has {:?}",
                model.get(key)
            ));
        }
    }
    fate
}

#[test]
fn a_cut_peer_link_loses_no_acknowledged_write() {
    let pair = CutPair::start();

    // Before the cut: writes through the pair, replicated to the passive.
    let stop = Arc::new(AtomicBool::new(false));
    let before = writer("before", pair.brokers(), BEFORE, stop)
        .join()
        .expect("writer");
    assert_eq!(before.acked.len() as u64, BEFORE, "{before:?}");
    let common = wait_for("both brokers at the same seq", T, || {
        match (brief(&pair.primary), brief(&pair.backup)) {
            (Some(p), Some(b)) if p.seq == b.seq && p.seq >= BEFORE => Ok(p.seq),
            other => Err(other),
        }
    });

    // The cut: both sides lose each other, and each gets writes of its own.
    pair.cut();
    wait_for("both brokers to lose their peer", T, || {
        match (brief(&pair.primary), brief(&pair.backup)) {
            (Some(p), Some(b)) if !p.peer_alive && !b.peer_alive => Ok(()),
            other => Err(other),
        }
    });
    let on_primary = write_alone(
        Side::Primary,
        pair.primary.frontend.clone(),
        ON_PRIMARY,
        SHARED_ON_PRIMARY,
    );
    let on_backup = write_alone(
        Side::Backup,
        pair.backup.frontend.clone(),
        ON_BACKUP,
        SHARED_ON_BACKUP,
    );
    let on_primary = on_primary.join().expect("primary writer");
    let on_backup = on_backup.join().expect("backup writer");
    let during = |side: Side| match side {
        Side::Primary => &on_primary,
        Side::Backup => &on_backup,
    };
    // `/status` is refreshed at most every 100 ms: wait until it shows the cut's writes.
    let last_acked = |log: &WriteLog| log.acked.values().map(|e| e.1).max().unwrap_or(0);
    let at_heal = wait_for("both brokers active with the cut's writes", T, || {
        match (brief(&pair.primary), brief(&pair.backup)) {
            (Some(p), Some(b))
                if p.state == "active"
                    && b.state == "active"
                    && p.seq >= last_acked(&on_primary)
                    && b.seq >= last_acked(&on_backup) =>
            {
                Ok((p, b))
            }
            other => Err(format!(
                "{other:?}; on the primary {on_primary:?}; on the backup {on_backup:?}"
            )),
        }
    });
    let installed_before = |side: Side| {
        metric(
            pair.broker(side).metrics,
            "hearth_state_snapshots_installed_total",
        )
    };
    let installed = (
        installed_before(Side::Primary),
        installed_before(Side::Backup),
    );

    // The heal: one broker stays active, the other follows it and takes its state.
    pair.heal();
    let winner = wait_for(
        "one active and one passive broker at the same seq, the passive having installed a snapshot",
        T,
        || {
            let (p, b) = (brief(&pair.primary), brief(&pair.backup));
            let (Some(pb), Some(bb)) = (&p, &b) else {
                return Err((p, b));
            };
            let winner = match (pb.state.as_str(), bb.state.as_str()) {
                ("active", "passive") => Side::Primary,
                ("passive", "active") => Side::Backup,
                _ => return Err((p, b)),
            };
            let loser_installed = match winner.other() {
                Side::Primary => installed.0,
                Side::Backup => installed.1,
            };
            let installed_now = metric(
                pair.broker(winner.other()).metrics,
                "hearth_state_snapshots_installed_total",
            );
            if pb.seq == bb.seq && pb.peer_alive && bb.peer_alive && installed_now > loser_installed
            {
                Ok(winner)
            } else {
                Err((p, b))
            }
        },
    );
    let loser = winner.other();

    let model = read_all(&[pair.broker(winner).frontend.clone()]);
    let record = conflicts(pair.broker(loser));
    let counted = metric(pair.broker(loser).metrics, "hearth_state_conflicts_total");
    let winner_fate = fate(during(winner), &model, &record);
    let loser_fate = fate(during(loser), &model, &record);
    let before_lost = missing(&before, &model);
    let loser_seq_at_heal = match loser {
        Side::Primary => at_heal.0.seq,
        Side::Backup => at_heal.1.seq,
    };

    println!(
        "cut peer link (peer heartbeat {PEER_HB} ms): both active during the cut \
         (primary term {}, seq {}; backup term {}, seq {}; common seq {common}); \
         winner: {} (it became active later)",
        at_heal.0.term,
        at_heal.0.seq,
        at_heal.1.term,
        at_heal.1.seq,
        winner.name()
    );
    println!(
        "{:<12} | {:>16} | {:>13} | {:>23} | {:>13} | {:>10} | {:>7}",
        "side",
        "acked in the cut",
        "kept in model",
        "kept in conflict record",
        "lost silently",
        "unanswered",
        "refused"
    );
    for side in [Side::Primary, Side::Backup] {
        let f = if side == winner {
            &winner_fate
        } else {
            &loser_fate
        };
        let log = during(side);
        let name = if side == winner {
            format!("{} (won)", side.name())
        } else {
            side.name().to_owned()
        };
        println!(
            "{:<12} | {:>16} | {:>13} | {:>23} | {:>13} | {:>10} | {:>7}",
            name,
            f.acked,
            f.in_model,
            f.in_conflicts,
            f.lost.len(),
            log.unanswered.len(),
            log.refused.len()
        );
    }
    println!(
        "before the cut: {} acked, {} missing; loser's conflict record: {} entries \
         ({} value only), hearth_state_conflicts_total {counted}",
        before.acked.len(),
        before_lost.len(),
        record.len(),
        record.iter().filter(|c| c.value_only).count()
    );

    assert!(before_lost.is_empty(), "{before_lost:?}");
    for side in [Side::Primary, Side::Backup] {
        let log = during(side);
        assert!(log.unanswered.is_empty(), "{}: {log:?}", side.name());
        assert!(log.refused.is_empty(), "{}: {log:?}", side.name());
        assert!(!log.acked.is_empty(), "{}: {log:?}", side.name());
    }
    // The winner's writes are the model; the loser's are all in its conflict record.
    assert_eq!(winner_fate.in_model, winner_fate.acked, "{winner_fate:?}");
    assert_eq!(
        loser_fate.in_conflicts, loser_fate.acked,
        "{loser_fate:?}; record {record:?}"
    );
    assert!(winner_fate.lost.is_empty(), "{:?}", winner_fate.lost);
    assert!(loser_fate.lost.is_empty(), "{:?}", loser_fate.lost);
    let shared_won = match winner {
        Side::Primary => SHARED_ON_PRIMARY,
        Side::Backup => SHARED_ON_BACKUP,
    };
    assert_eq!(model.get(SHARED).map(|e| e.0), Some(shared_won));
    // The record holds only what was given up: nothing the final model still holds.
    let not_given_up: Vec<&Conflict> = record
        .iter()
        .filter(|c| {
            model.get(&c.key).is_some_and(|&(v, seq)| {
                seq == c.seq && c.value.as_deref() == Some(&format!("i{v}e"))
            })
        })
        .collect();
    assert!(
        not_given_up.is_empty(),
        "the loser's conflict record lists {} changes the final model holds: {not_given_up:?}",
        not_given_up.len()
    );
    // Every divergent change of the loser is recorded, once, after the common seq.
    let divergent = loser_seq_at_heal - common;
    assert_eq!(record.len() as u64, divergent, "{record:?}");
    assert_eq!(counted, divergent as f64);
    assert!(
        record.iter().all(|c| c.common == common && c.seq > common),
        "{record:?}"
    );
}

/// An echo server on a free port of 127.0.0.1 (a few connections, then it stops accepting).
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                if let Ok(mut reader) = stream.try_clone() {
                    let _ = std::io::copy(&mut reader, &mut stream);
                }
            });
        }
    });
    addr
}

/// Whether `msg` comes back on `stream` within a second.
fn echoes(stream: &mut TcpStream, msg: &[u8]) -> bool {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(msg).is_err() {
        return false;
    }
    let mut back = vec![0; msg.len()];
    stream.read_exact(&mut back).is_ok() && back == msg
}

#[test]
fn the_proxy_forwards_until_cut_and_again_after_heal() {
    let proxy = Proxy::start(echo_server());
    let mut before = TcpStream::connect(proxy.addr()).expect("connect");
    assert!(echoes(&mut before, b"one"));
    assert_eq!(proxy.open_connections(), 1);

    proxy.cut();
    assert!(
        !echoes(&mut before, b"two"),
        "a forwarded connection survived the cut"
    );
    let during = TcpStream::connect(proxy.addr());
    assert!(
        during.map_or(true, |mut s| !echoes(&mut s, b"three")),
        "a new connection got through the cut"
    );
    assert_eq!(proxy.open_connections(), 0);

    proxy.heal();
    let mut after = TcpStream::connect(proxy.addr()).expect("connect");
    assert!(echoes(&mut after, b"four"));
}
