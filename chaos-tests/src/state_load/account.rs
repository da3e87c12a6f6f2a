//! The account of a state load once the pair has settled: the model read back
//! ([`read_model`]), each acknowledged write looked up in it ([`check_writes`]), the
//! watcher's view compared with it ([`compare_view`]), and the verdict with its summary
//! counts ([`StateReport`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use hearth_client::state::{Entry, Value};
use hearth_client::{Client, ClientError};

use super::{example, StatePlan, WatchTally, WritesTally, MAX_EXAMPLES};

/// Reads every entry under the plan's prefix with `state.get` and the model's seq with
/// `state.snapshot`, through a client of the plan's brokers, asking again until one broker
/// serves them or `timeout` has passed (a broker restarted while *paired* may wait for its
/// peer before it serves). `describe` says where the brokers stand, for the error.
pub fn read_model(
    plan: &StatePlan,
    timeout: Duration,
    mut describe: impl FnMut() -> String,
) -> anyhow::Result<(BTreeMap<String, Entry>, u64)> {
    let deadline = Instant::now() + timeout;
    let mut client = plan.client()?;
    loop {
        match read_once(&mut client, &plan.prefix) {
            Ok((mut entries, seq)) => {
                entries.retain(|key, _| key.starts_with(&plan.prefix));
                let seq = entries.values().map(|e| e.seq).fold(seq, u64::max);
                return Ok((entries, seq));
            }
            Err(ClientError::Timeout { .. }) if Instant::now() < deadline => {}
            Err(e @ ClientError::Timeout { .. }) => anyhow::bail!(
                "no broker served state.get within {timeout:?} ({e}); the brokers: {}",
                describe()
            ),
            Err(e) => return Err(e).context("reading the state model"),
        }
    }
}

/// One try of [`read_model`]: every entry, then the seq of a snapshot under `prefix`.
fn read_once(
    client: &mut Client,
    prefix: &str,
) -> Result<(BTreeMap<String, Entry>, u64), ClientError> {
    let entries = client.state().get(&[])?;
    let snapshot = client.state().snapshot(Some(prefix))?;
    Ok((entries, snapshot.seq))
}

/// What [`check_writes`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteCheck {
    /// Acknowledged writes whose key is not in the model: lost.
    pub missing: u64,
    /// Acknowledged writes whose key holds another seq or value: applied twice, or the
    /// acknowledged application lost and a later one kept.
    pub reapplied: u64,
    /// Writes given up (never acknowledged) that the model holds anyway.
    pub unacked_applied: u64,
    /// Keys under the prefix that no writer wrote.
    pub unknown: u64,
    /// A few of the above, for the message.
    pub examples: Vec<String>,
}

/// Checks the writers' record against the model read at the end (keys under the prefix).
pub fn check_writes(writes: &WritesTally, model: &BTreeMap<String, Entry>) -> WriteCheck {
    let mut check = WriteCheck::default();
    for (key, acked) in &writes.acked {
        match model.get(key) {
            None => {
                check.missing += 1;
                example(
                    &mut check.examples,
                    format!("{key}: acknowledged (seq {}) but missing", acked.seq),
                );
            }
            Some(entry) if entry.seq != acked.seq || entry.value != Value::Int(acked.value) => {
                check.reapplied += 1;
                example(
                    &mut check.examples,
                    format!(
                        "{key}: acknowledged {} at seq {}, holds {:?} at seq {}",
                        acked.value, acked.seq, entry.value, entry.seq
                    ),
                );
            }
            Some(_) => {}
        }
    }
    for (key, value) in &writes.given_up {
        match model.get(key) {
            Some(entry) if entry.value == Value::Int(*value) => check.unacked_applied += 1,
            Some(entry) => {
                check.reapplied += 1;
                example(
                    &mut check.examples,
                    format!("{key}: {value} given up, holds {:?}", entry.value),
                );
            }
            None => {}
        }
    }
    for key in model.keys() {
        if !writes.acked.contains_key(key) && !writes.given_up.contains_key(key) {
            check.unknown += 1;
            example(&mut check.examples, format!("{key}: written by nobody"));
        }
    }
    check
}

/// The keys on which the watcher's view and the model disagree (seq or value), each
/// described.
pub fn compare_view(
    view: &BTreeMap<String, Entry>,
    model: &BTreeMap<String, Entry>,
) -> Vec<String> {
    let mut diffs = Vec::new();
    for (key, entry) in model {
        match view.get(key) {
            None => diffs.push(format!(
                "{key}: seq {} in the model, not in the view",
                entry.seq
            )),
            Some(seen) if seen != entry => diffs.push(format!(
                "{key}: {:?} at seq {} in the model, {:?} at seq {} in the view",
                entry.value, entry.seq, seen.value, seen.seq
            )),
            Some(_) => {}
        }
    }
    for (key, seen) in view {
        if !model.contains_key(key) {
            diffs.push(format!(
                "{key}: seq {} in the view, not in the model",
                seen.seq
            ));
        }
    }
    diffs
}

/// The state part of a test's verdict: the writers', the watcher's and the model's counts.
#[derive(Debug, Clone)]
pub struct StateReport {
    /// What the writers did.
    pub writes: WritesTally,
    /// What the watcher saw.
    pub watch: WatchTally,
    /// The writers' record against the model.
    pub check: WriteCheck,
    /// The model's seq at the end.
    pub model_seq: u64,
    /// Keys in the model at the end (under the prefix).
    pub model_keys: usize,
    /// Where the watcher's view and the model disagree.
    pub view_diffs: Vec<String>,
}

impl StateReport {
    /// Puts the counts together and compares the watcher's view with the model.
    pub fn new(
        writes: WritesTally,
        watch: WatchTally,
        model: &BTreeMap<String, Entry>,
        model_seq: u64,
    ) -> StateReport {
        let check = check_writes(&writes, model);
        let view_diffs = compare_view(&watch.view, model);
        StateReport {
            writes,
            watch,
            check,
            model_seq,
            model_keys: model.len(),
            view_diffs,
        }
    }

    /// `writes_sent=… writes_acked=… writes_missing=… … watcher_out_of_order=…`
    pub fn line(&self) -> String {
        let (w, c, v) = (&self.writes, &self.check, &self.watch);
        format!(
            "writes_sent={} writes_acked={} writes_missing={} writes_reapplied={} \
             writes_timed_out={} writes_unacked={} unacked_applied={} writes_refused={} \
             write_errors={} ack_seq_backwards={} model_keys={} model_seq={} \
             watcher_changes={} watcher_snapshots={} watcher_resyncs={} \
             watcher_out_of_order={} watcher_duplicates={} watcher_errors={} \
             watcher_caught_up={} view_diffs={}",
            w.sent,
            w.acknowledged,
            c.missing,
            c.reapplied,
            w.timed_out,
            w.unacked,
            c.unacked_applied,
            w.refused,
            w.errors,
            w.seq_backwards,
            self.model_keys,
            self.model_seq,
            v.changes,
            v.snapshots,
            v.resyncs,
            v.out_of_order,
            v.duplicates,
            v.errors,
            v.caught_up,
            self.view_diffs.len(),
        )
    }

    /// What is wrong, one line each; empty if nothing is.
    pub fn failures(&self) -> Vec<String> {
        let (w, c, v) = (&self.writes, &self.check, &self.watch);
        let mut failures = Vec::new();
        let mut fail = |count: u64, what: &str| {
            if count > 0 {
                failures.push(format!("{count} {what}"));
            }
        };
        fail(c.missing, "acknowledged writes missing");
        fail(
            c.reapplied,
            "writes applied twice or with their first application lost",
        );
        fail(c.unknown, "keys written by nobody");
        fail(w.refused, "writes refused");
        fail(w.errors, "writes failed otherwise");
        fail(w.seq_backwards, "acknowledged seqs below an earlier one");
        fail(v.out_of_order, "changes out of order");
        fail(v.duplicates, "changes taken twice");
        fail(v.unanchored, "changes before a snapshot");
        fail(
            self.view_diffs.len() as u64,
            "keys where the watcher's view and state.get differ",
        );
        if !v.caught_up {
            failures.push(format!(
                "the watcher did not catch up to seq {} (at {:?})",
                self.model_seq, v.last
            ));
        }
        if w.acknowledged == 0 {
            failures.push("no write was acknowledged".to_owned());
        }
        failures
    }

    /// Panics, naming the seed and giving examples, if anything is wrong.
    pub fn assert_ok(&self, seed: u64) {
        let failures = self.failures();
        if failures.is_empty() {
            return;
        }
        let examples: Vec<&String> = self
            .writes
            .examples
            .iter()
            .chain(&self.check.examples)
            .chain(&self.watch.examples)
            .chain(self.view_diffs.iter().take(MAX_EXAMPLES))
            .collect();
        panic!(
            "state model (seed {seed}): {}; {}; examples: {examples:#?}",
            failures.join(", "),
            self.line()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state_load::Acked;

    fn entry(seq: u64, value: i64) -> Entry {
        Entry {
            seq,
            value: Value::Int(value),
        }
    }

    #[test]
    fn writes_are_checked_against_the_model() {
        let mut writes = WritesTally::default();
        for (key, value, seq) in [("c/w0/0", 0, 1), ("c/w0/1", 1, 2), ("c/w0/2", 2, 3)] {
            writes.acked.insert(key.to_owned(), Acked { value, seq });
        }
        writes.given_up.insert("c/w0/3".to_owned(), 3);
        writes.given_up.insert("c/w0/4".to_owned(), 4);
        let model: BTreeMap<String, Entry> = [
            ("c/w0/0", entry(1, 0)), // as acknowledged
            ("c/w0/1", entry(5, 1)), // applied again later
            ("c/w0/3", entry(4, 3)), // given up, applied
            ("c/x", entry(6, 9)),    // nobody's
        ]
        .into_iter()
        .map(|(k, e)| (k.to_owned(), e))
        .collect();
        let check = check_writes(&writes, &model);
        assert_eq!(
            (
                check.missing,
                check.reapplied,
                check.unacked_applied,
                check.unknown
            ),
            (1, 1, 1, 1),
            "{check:#?}"
        );
    }

    #[test]
    fn the_view_must_equal_the_model() {
        let model: BTreeMap<String, Entry> = [("a", entry(1, 1)), ("b", entry(2, 2))]
            .into_iter()
            .map(|(k, e)| (k.to_owned(), e))
            .collect();
        assert!(compare_view(&model, &model).is_empty());
        let mut view = model.clone();
        view.insert("b".to_owned(), entry(3, 2));
        view.insert("c".to_owned(), entry(4, 4));
        view.remove("a");
        assert_eq!(compare_view(&view, &model).len(), 3);
    }
}
