//! The replicated state model with real `hearth-broker` processes: kill -9 of the active
//! under a write load, the three death orders of the restart rule, and a power cut. Each
//! run prints writes sent, acknowledged and acknowledged-but-missing (which must be 0).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::pair_state::{seq_of, Pair};
use common::writes::{missing, read_all, writer, WriteLog};
use common::*;

const T: Duration = Duration::from_secs(15);

fn report(what: &str, log: &WriteLog, missing: &[String]) {
    println!(
        "{what}: writes sent {}, acknowledged {}, acknowledged but missing {}, unanswered {}, refused {}",
        log.sent,
        log.acked.len(),
        missing.len(),
        log.unanswered.len(),
        log.refused.len()
    );
}

#[test]
fn kill9_of_the_active_under_writes_loses_no_acknowledged_write() {
    let mut pair = Pair::start("kill9");
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|p| writer(p, pair.brokers(), 100_000, stop.clone()))
        .collect();
    wait_for("writes to flow", T, || match seq_of(&pair.primary) {
        Some(seq) if seq >= 200 => Ok(()),
        other => Err(other),
    });
    pair.primary.kill9();
    pair.backup.wait_state("active", T);
    wait_for("writes to flow on the backup", T, || {
        match seq_of(&pair.backup) {
            Some(seq) if seq >= 400 => Ok(()),
            other => Err(other),
        }
    });
    stop.store(true, Ordering::Relaxed);
    let logs: Vec<WriteLog> = writers
        .into_iter()
        .map(|w| w.join().expect("writer"))
        .collect();
    let found = read_all(&pair.brokers());
    for log in &logs {
        let lost = missing(log, &found);
        report("kill -9 of the active", log, &lost);
        assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
        assert!(log.unanswered.is_empty(), "{:?}", log.unanswered);
        assert!(log.refused.is_empty(), "{:?}", log.refused);
    }
    // The restarted primary catches up and comes back passive with the same model.
    pair.primary.restart();
    pair.primary.wait_state("passive", T);
    let seq = seq_of(&pair.backup).expect("backup status");
    wait_for("the primary to catch up", T, || {
        match seq_of(&pair.primary) {
            Some(s) if s == seq => Ok(()),
            other => Err(other),
        }
    });
}
