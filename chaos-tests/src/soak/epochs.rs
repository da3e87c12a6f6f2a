//! The soak's state load, in epochs.
//!
//! A [`StateLoad`] writes a new key per write and its final account reads the whole model
//! back in one `state.get` reply, which the client accepts up to 1 MiB (about 20,000 of these
//! keys): enough for a minute or two of writes, not for a 30-minute soak. So the soak runs
//! the state load in epochs of [`StateEpochs::length`]: epoch `k` writes under
//! `soak/e<k>/` with its own writers and its own change-feed watcher. Between two broker
//! events, once the epoch is due and the pair has settled, the epoch is *checked*: its
//! writers finish their last write, the model is read back, the watcher catches up to the
//! model's seq, and the account ([`StateReport`]) is added to the totals; then the epoch's
//! keys are deleted (acknowledged deletes, before the next watcher subscribes, so that they
//! never show in its feed) and the next epoch starts. The last epoch is checked after the
//! final recovery. Every acknowledged write of the run is thus looked up once, in its own
//! epoch's model, and the model (and the brokers' memory) stays bounded however long the run.

use std::time::{Duration, Instant};

use anyhow::Context;
use hearth_client::state::WriteId;
use hearth_client::{Client, ClientConfig, ClientError};

use crate::state_load::{read_model, StateLoad, StatePlan, StateReport};

/// How long a check may wait for a broker to serve `state.get` and the watcher to catch up.
const CHECK_WITHIN: Duration = Duration::from_secs(60);
/// Keys per `state.del` when an epoch's keys are deleted.
const DELETE_CHUNK: usize = 1_000;
/// Calls per chunk of deletes before the soak gives up.
const DELETE_TRIES: u32 = 5;

/// The sums of every checked epoch's account.
#[derive(Debug, Clone, Default)]
pub struct StateTotals {
    /// Epochs checked.
    pub epochs: u64,
    /// Writes started.
    pub sent: u64,
    /// Writes acknowledged.
    pub acknowledged: u64,
    /// Acknowledged writes missing from the model after recovery.
    pub missing: u64,
    /// Acknowledged writes holding another seq or value: applied twice, or their first
    /// application lost.
    pub reapplied: u64,
    /// Calls that timed out (a write may time out before it is acknowledged).
    pub timed_out: u64,
    /// Writes given up unacknowledged (every try timed out).
    pub unacked: u64,
    /// Of those, the ones the model holds anyway.
    pub unacked_applied: u64,
    /// Writes refused by a broker, other client errors, acknowledged seqs below an earlier
    /// one of the same writer, keys written by nobody: all failures.
    pub refused_or_errors: u64,
    /// Changes the watchers took.
    pub changes: u64,
    /// Snapshots after the first, per watcher: a change missed on every feed, repaired.
    pub resyncs: u64,
    /// Changes whose seq skipped one (missed and not repaired) or that came before any
    /// snapshot: failures.
    pub out_of_order: u64,
    /// Changes taken twice: failures.
    pub duplicates: u64,
    /// Keys where a watcher's view and `state.get` differ: failures.
    pub view_diffs: u64,
    /// Epochs whose watcher never caught up to the model's seq: failures.
    pub not_caught_up: u64,
    /// Acknowledged writes of an epoch whose model could not be read back (the run failed
    /// before they could be checked).
    pub unchecked: u64,
    /// Keys the model held at the last check.
    pub last_model_keys: usize,
    /// What is wrong, one line per failing epoch.
    pub failures: Vec<String>,
}

impl StateTotals {
    fn add(&mut self, epoch: usize, report: &StateReport) {
        let (w, c, v) = (&report.writes, &report.check, &report.watch);
        self.epochs += 1;
        self.sent += w.sent;
        self.acknowledged += w.acknowledged;
        self.missing += c.missing;
        self.reapplied += c.reapplied;
        self.timed_out += w.timed_out;
        self.unacked += w.unacked;
        self.unacked_applied += c.unacked_applied;
        self.refused_or_errors += w.refused + w.errors + w.seq_backwards + c.unknown;
        self.changes += v.changes;
        self.resyncs += v.resyncs;
        self.out_of_order += v.out_of_order + v.unanchored;
        self.duplicates += v.duplicates;
        self.view_diffs += report.view_diffs.len() as u64;
        self.not_caught_up += u64::from(!v.caught_up);
        self.last_model_keys = report.model_keys;
        let failures = report.failures();
        if !failures.is_empty() {
            let examples: Vec<&String> = w
                .examples
                .iter()
                .chain(&c.examples)
                .chain(&v.examples)
                .chain(report.view_diffs.iter())
                .take(8)
                .collect();
            self.failures.push(format!(
                "epoch {epoch}: {}; examples: {examples:?}",
                failures.join(", ")
            ));
        }
    }
}

struct Running {
    index: usize,
    plan: StatePlan,
    load: StateLoad,
    started: Instant,
}

/// The state load of a soak, epoch after epoch; see the module documentation.
pub struct StateEpochs {
    endpoints: Vec<String>,
    feeds: Vec<String>,
    writers: usize,
    length: Duration,
    next: usize,
    running: Option<Running>,
    totals: StateTotals,
}

impl StateEpochs {
    /// Starts epoch 0: `writers` writer threads over `endpoints` and a watcher of `feeds`.
    pub fn start(
        endpoints: Vec<String>,
        feeds: Vec<String>,
        writers: usize,
        length: Duration,
    ) -> anyhow::Result<StateEpochs> {
        let mut epochs = StateEpochs {
            endpoints,
            feeds,
            writers,
            length,
            next: 0,
            running: None,
            totals: StateTotals::default(),
        };
        epochs.start_next()?;
        Ok(epochs)
    }

    /// How long an epoch runs before it is due for a check.
    pub fn length(&self) -> Duration {
        self.length
    }

    /// The sums of the epochs checked so far.
    pub fn totals(&self) -> &StateTotals {
        &self.totals
    }

    /// Whether the running epoch has run its length.
    pub fn due(&self) -> bool {
        self.running
            .as_ref()
            .is_some_and(|r| r.started.elapsed() >= self.length)
    }

    fn start_next(&mut self) -> anyhow::Result<()> {
        let index = self.next;
        self.next += 1;
        let mut plan = StatePlan::new(
            self.endpoints.clone(),
            self.feeds.clone(),
            &format!("soak/e{index}/"),
        );
        plan.writers = self.writers;
        let load = StateLoad::start(&plan)
            .with_context(|| format!("starting the state load of epoch {index}"))?;
        self.running = Some(Running {
            index,
            plan,
            load,
            started: Instant::now(),
        });
        Ok(())
    }

    /// Checks the running epoch, deletes its keys and starts the next one. Call between
    /// broker events, with the pair settled; `describe` says where the brokers stand, for
    /// an error. Returns a line for the log.
    pub fn checkpoint(&mut self, describe: impl FnMut() -> String) -> anyhow::Result<String> {
        let Some(running) = self.running.take() else {
            anyhow::bail!("no state epoch is running");
        };
        let (line, keys) = self.check(running, describe)?;
        let deleted = self.delete(&keys)?;
        self.start_next()?;
        Ok(format!("{line}; deleted its {deleted} keys"))
    }

    /// Checks the running epoch (if any) and starts no other. Returns a line for the log.
    pub fn finish(&mut self, describe: impl FnMut() -> String) -> anyhow::Result<String> {
        match self.running.take() {
            Some(running) => Ok(self.check(running, describe)?.0),
            None => Ok("no state epoch was running".to_owned()),
        }
    }

    /// Stops the epoch's writers, reads its keys back, lets its watcher catch up, and adds
    /// the account to the totals; returns a line and the keys the model holds.
    fn check(
        &mut self,
        mut running: Running,
        describe: impl FnMut() -> String,
    ) -> anyhow::Result<(String, Vec<String>)> {
        let index = running.index;
        let writes = running.load.stop_writers();
        let (model, seq) = match read_model(&running.plan, CHECK_WITHIN, describe) {
            Ok(read) => read,
            Err(e) => {
                // Counted as sent and acknowledged, but unchecked: the run fails anyway.
                self.totals.sent += writes.sent;
                self.totals.acknowledged += writes.acknowledged;
                self.totals.unchecked += writes.acknowledged;
                return Err(e.context(format!("reading the model back after epoch {index}")));
            }
        };
        let watch = running.load.finish_watcher(seq, CHECK_WITHIN);
        let report = StateReport::new(writes, watch, &model, seq);
        self.totals.add(index, &report);
        let line = format!("state epoch {index} checked: {}", report.line());
        Ok((line, model.into_keys().collect()))
    }

    /// Deletes `keys` in chunks, each chunk under one write id however often it is sent;
    /// returns how many were deleted.
    fn delete(&self, keys: &[String]) -> anyhow::Result<usize> {
        let mut config = ClientConfig::new(self.endpoints.iter().cloned());
        config.attempt_timeout = Duration::from_secs(1);
        config.timeout = Duration::from_secs(5);
        let mut client = Client::new(config).context("a client to delete an epoch's keys")?;
        for chunk in keys.chunks(DELETE_CHUNK) {
            let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let id = WriteId::random();
            let mut tries = 0;
            loop {
                tries += 1;
                match client.state().del_as(&id, &chunk) {
                    Ok(_) => break,
                    Err(ClientError::Timeout { .. }) if tries < DELETE_TRIES => {}
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("deleting {} keys of a checked epoch", chunk.len())
                        })
                    }
                }
            }
        }
        Ok(keys.len())
    }
}
