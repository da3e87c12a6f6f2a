//! Two `hearth-broker` processes as a Binary Star pair, killed and frozen under a steady
//! stream of calls from Lazy Pirate clients. Every reply names the broker that sent it.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::load::{lazy_pirate, tagged_worker, ClientLog};
use common::procs::{pair_args, BrokerProc};
use common::*;

const T: Duration = Duration::from_secs(15);
const PEER_HB: u64 = 200;

struct Pair {
    primary: BrokerProc,
    backup: BrokerProc,
    stop: Arc<AtomicBool>,
    stop_workers: Arc<AtomicBool>,
    ran: Arc<Mutex<Vec<Vec<u8>>>>,
    workers: Vec<JoinHandle<()>>,
}

impl Pair {
    fn start() -> Pair {
        let (pp, bp) = (free_port(), free_port());
        let primary = BrokerProc::start(&pair_args("primary", pp, bp, PEER_HB));
        let backup = BrokerProc::start(&pair_args("backup", bp, pp, PEER_HB));
        primary.wait_state("active", T);
        backup.wait_state("passive", T);
        let stop = Arc::new(AtomicBool::new(false));
        let stop_workers = Arc::new(AtomicBool::new(false));
        let ran = Arc::new(Mutex::new(Vec::new()));
        let workers = vec![
            tagged_worker(
                primary.frontend.clone(),
                "primary",
                ran.clone(),
                stop_workers.clone(),
            ),
            tagged_worker(
                backup.frontend.clone(),
                "backup",
                ran.clone(),
                stop_workers.clone(),
            ),
        ];
        for b in [&primary, &backup] {
            wait_workers(b, 1);
        }
        Pair {
            primary,
            backup,
            stop,
            stop_workers,
            ran,
            workers,
        }
    }

    fn clients(&self, n: usize) -> Vec<JoinHandle<ClientLog>> {
        let names = ["c1", "c2", "c3", "c4"];
        (0..n)
            .map(|i| {
                let brokers = vec![self.primary.frontend.clone(), self.backup.frontend.clone()];
                lazy_pirate(
                    names[i],
                    brokers,
                    Duration::from_secs(1),
                    T,
                    self.stop.clone(),
                )
            })
            .collect()
    }

    /// Stops clients and workers; returns the client logs and how many requests ran twice.
    fn finish(self, clients: Vec<JoinHandle<ClientLog>>) -> (Vec<ClientLog>, usize) {
        // Clients first: the request each has in flight is still answered.
        self.stop.store(true, Ordering::Relaxed);
        let logs: Vec<ClientLog> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        self.stop_workers.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.join().unwrap();
        }
        let mut ran = self.ran.lock().unwrap().clone();
        let total = ran.len();
        ran.sort();
        ran.dedup();
        (logs, total - ran.len())
    }
}

fn wait_workers(broker: &BrokerProc, n: u64) {
    wait_for("echo workers", T, || {
        let s = broker.status();
        let workers = s
            .as_ref()
            .and_then(|s| s["services"][0]["workers"].as_u64());
        if workers == Some(n) {
            Ok(())
        } else {
            Err(s)
        }
    });
}

fn report(what: &str, logs: &[ClientLog], duplicates: usize) -> (u64, usize) {
    let sent: u64 = logs.iter().map(|l| l.sent).sum();
    let answered: usize = logs.iter().map(|l| l.answers.len()).sum();
    let lost: usize = logs.iter().map(|l| l.unanswered.len()).sum();
    let gap = logs.iter().map(|l| l.longest_gap).max().unwrap_or_default();
    eprintln!("{what}: sent={sent} answered={answered} lost={lost} duplicated={duplicates} longest_gap={gap:?}");
    assert_eq!(
        lost,
        0,
        "{what}: unanswered requests: {:?}",
        logs.iter().flat_map(|l| &l.unanswered).collect::<Vec<_>>()
    );
    assert_eq!(answered as u64, sent);
    (sent, duplicates)
}

/// A pause that *is* the scenario: load keeps flowing while it lasts.
fn pause(d: Duration) {
    std::thread::sleep(d);
}

#[test]
fn kill9_of_either_active_loses_no_call_and_the_restarted_broker_comes_back_passive() {
    let mut pair = Pair::start();
    let clients = pair.clients(2);
    pause(Duration::from_millis(800));
    pair.primary.kill9();
    // The backup takes over on the first client request after the primary's connection closed.
    pair.backup.wait_state("active", T);
    pause(Duration::from_millis(500));
    pair.primary.restart();
    pair.primary.wait_state("passive", T);
    wait_workers(&pair.primary, 1);
    pause(Duration::from_millis(500));
    // Now the other way round: kill the backup while it is active.
    pair.backup.kill9();
    pair.primary.wait_state("active", T);
    pause(Duration::from_millis(800));
    let (logs, duplicates) = pair.finish(clients);
    report("kill -9", &logs, duplicates);
    let tags: Vec<&str> = logs
        .iter()
        .flat_map(|l| l.answers.iter().map(|a| a.tag.as_str()))
        .collect();
    assert!(
        tags.contains(&"primary") && tags.contains(&"backup"),
        "both brokers served in turn"
    );
}

#[test]
fn frozen_active_answers_nothing_after_the_peer_took_over() {
    let pair = Pair::start();
    let clients = pair.clients(2);
    pause(Duration::from_millis(500));
    pair.primary.signal(libc::SIGSTOP);
    let frozen_at = Instant::now();
    pair.backup.wait_state("active", T);
    // Stay frozen for several peer heartbeats after the takeover.
    pause(Duration::from_millis(6 * PEER_HB));
    let thawed_at = Instant::now();
    pair.primary.signal(libc::SIGCONT);
    pair.primary.wait_state("passive", T);
    let replies_when_passive = metric(
        pair.primary.metrics,
        "hearth_replies_total{service=\"echo\"}",
    );
    pause(Duration::from_millis(1000));
    let replies_at_end = metric(
        pair.primary.metrics,
        "hearth_replies_total{service=\"echo\"}",
    );
    let split_brain = metric(pair.primary.metrics, "hearth_split_brain_total");
    let failovers = metric(pair.backup.metrics, "hearth_failovers_total");
    let stalls = metric(pair.primary.metrics, "hearth_stalls_total");
    let (logs, duplicates) = pair.finish(clients);
    report("SIGSTOP", &logs, duplicates);
    let late: Vec<_> = logs
        .iter()
        .flat_map(|l| &l.answers)
        .filter(|a| a.tag == "primary" && a.at > thawed_at)
        .collect();
    assert!(
        late.is_empty(),
        "the resumed primary answered after the takeover: {late:?}"
    );
    assert!(
        logs.iter()
            .flat_map(|l| &l.answers)
            .any(|a| a.tag == "backup" && a.at > frozen_at),
        "the backup served during the freeze"
    );
    assert_eq!(
        replies_when_passive, replies_at_end,
        "the passive primary replied to clients"
    );
    assert_eq!(split_brain, 1.0, "the resumed primary stepped down once");
    assert_eq!(failovers, 1.0);
    assert!(stalls >= 1.0, "the primary noticed it had been stopped");
}

#[test]
fn quick_restart_of_the_active_primary_comes_back_passive() {
    let mut pair = Pair::start();
    let clients = pair.clients(2);
    pause(Duration::from_millis(500));
    // Kill the active primary and restart it at once, well within one peer heartbeat.
    let restarted_at = Instant::now();
    pair.primary.restart();
    assert!(restarted_at.elapsed() < Duration::from_millis(PEER_HB));
    // Watch both: they must never both say active, and settle as backup active, primary passive.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut settled = false;
    while Instant::now() < deadline {
        let (p, b) = (pair.primary.state(), pair.backup.state());
        assert!(
            !(p.as_deref() == Some("active") && b.as_deref() == Some("active")),
            "two actives"
        );
        settled |= p.as_deref() == Some("passive") && b.as_deref() == Some("active");
        pause(Duration::from_millis(20));
    }
    assert!(
        settled,
        "primary {:?}, backup {:?}",
        pair.primary.state(),
        pair.backup.state()
    );
    let (logs, duplicates) = pair.finish(clients);
    report("quick restart", &logs, duplicates);
}

#[test]
fn start_orders() {
    // Backup first, then primary: the primary becomes active, the backup passive.
    let (pp, bp) = (free_port(), free_port());
    let backup = BrokerProc::start(&pair_args("backup", bp, pp, PEER_HB));
    wait_for("backup up", T, || backup.state().ok_or(()));
    assert_eq!(backup.state().as_deref(), Some("backup"));
    let primary = BrokerProc::start(&pair_args("primary", pp, bp, PEER_HB));
    primary.wait_state("active", T);
    backup.wait_state("passive", T);
    drop((primary, backup));
    // Both at once.
    let (pp, bp) = (free_port(), free_port());
    let primary = BrokerProc::start(&pair_args("primary", pp, bp, PEER_HB));
    let backup = BrokerProc::start(&pair_args("backup", bp, pp, PEER_HB));
    primary.wait_state("active", T);
    backup.wait_state("passive", T);
}
