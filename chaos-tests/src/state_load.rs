//! State-model load for the pair tests: writer threads that count every acknowledged write,
//! a change-feed watcher that checks the feed's order, and the final account of both
//! against what the pair holds once it has settled.
//!
//! * **Writers** ([`StatePlan::writers`] threads) each write the keys `<prefix>w<thread>/<n>`
//!   with the integer value `n`, one key per `state.set`, one after the other, through a
//!   [`Client`] given both brokers. A write carries a fresh [`WriteId`]; the client resends
//!   it unchanged to the other broker when an attempt times out, and a writer whose call
//!   times out as a whole tries again under the same id (up to [`StatePlan::tries`] calls),
//!   so a write applies once however often it is sent. Every acknowledged write is recorded
//!   with the seq its reply carried. A timeout is allowed (a failover window) and counted; a
//!   refusal (`{error}`) is a failure. Since one thread's writes are sequential, each of its
//!   acknowledged seqs must be above the one before: a lower one means the history that held
//!   an acknowledged write was taken back.
//! * **The watcher** follows both brokers' change feeds with a
//!   [`Follower`] for the whole run and keeps a view (key -> seq and value). After a
//!   snapshot, each change must carry exactly the next seq: a lower one is a *duplicate*, a
//!   higher one *out of order* (the follower would have had to resync instead). This holds
//!   because nothing but the writers changes the state model in these tests and all their
//!   keys are under the followed prefix; the follower drops changes of other keys.
//! * **The account** ([`StateReport`]), once the writers have stopped and the pair has
//!   settled: every key read with `state.get`; every acknowledged write must be there with
//!   its value and the seq of its reply (another seq: applied twice, or its first
//!   application lost); the watcher, caught up to the model's seq, must hold exactly what
//!   `state.get` returned.
//!
//! The account lives in [`account`]; the checks that make its verdict are pure functions
//! ([`check_writes`], [`compare_view`]), tested without a broker, as is the watcher's
//! bookkeeping ([`WatchTally::take`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use hearth_client::feed::{FeedEvent, Follower, FollowerConfig};
use hearth_client::state::{Entry, Write, WriteId};
use hearth_client::{Client, ClientConfig, ClientError};

use crate::POLL;

pub mod account;

pub use account::{check_writes, compare_view, read_model, StateReport, WriteCheck};

/// What the state load does and where.
#[derive(Debug, Clone)]
pub struct StatePlan {
    /// The brokers' frontends (both brokers of a pair).
    pub endpoints: Vec<String>,
    /// The brokers' change feeds (`--publish`), for the watcher.
    pub feeds: Vec<String>,
    /// Every key written starts with this; the watcher follows it.
    pub prefix: String,
    /// How many writer threads.
    pub writers: usize,
    /// Least time between two writes of one thread (pacing, so the load leaves CPU for the
    /// brokers and the chaos).
    pub interval: Duration,
    /// How long one attempt of a client call waits before it goes to the other broker.
    pub attempt_timeout: Duration,
    /// How long one client call may take, its retries across brokers included.
    pub call_timeout: Duration,
    /// How many calls one write gets (all under the same write id) before it is given up.
    pub tries: u32,
}

impl StatePlan {
    /// Two writers under `prefix`, 10 ms apart, 1 s per attempt, 5 s per call, 3 calls per
    /// write.
    pub fn new(endpoints: Vec<String>, feeds: Vec<String>, prefix: &str) -> StatePlan {
        StatePlan {
            endpoints,
            feeds,
            prefix: prefix.to_owned(),
            writers: 2,
            interval: Duration::from_millis(10),
            attempt_timeout: Duration::from_secs(1),
            call_timeout: Duration::from_secs(5),
            tries: 3,
        }
    }

    fn client(&self) -> anyhow::Result<Client> {
        let mut config = ClientConfig::new(self.endpoints.iter().cloned());
        config.attempt_timeout = self.attempt_timeout;
        config.timeout = self.call_timeout;
        Client::new(config).context("a state client")
    }
}

/// An acknowledged write: the value written and the seq its reply carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    /// The integer written.
    pub value: i64,
    /// The seq of the reply.
    pub seq: u64,
}

/// What the writers did.
#[derive(Debug, Clone, Default)]
pub struct WritesTally {
    /// Writes started (distinct keys).
    pub sent: u64,
    /// Writes acknowledged with a seq.
    pub acknowledged: u64,
    /// Calls that timed out (a write may time out more than once before its ack).
    pub timed_out: u64,
    /// Writes given up without an acknowledgement (every try timed out).
    pub unacked: u64,
    /// Writes the broker refused (`{error}`): always a failure.
    pub refused: u64,
    /// Other client errors (a reply that does not decode, a socket failure): a failure.
    pub errors: u64,
    /// Acknowledged seqs not above the same thread's previous one: a failure.
    pub seq_backwards: u64,
    /// Every acknowledged write, by key.
    pub acked: BTreeMap<String, Acked>,
    /// Every write given up, by key, with its value: it may or may not have applied.
    pub given_up: BTreeMap<String, i64>,
    /// A few failures, for the message.
    pub examples: Vec<String>,
}

impl WritesTally {
    fn merge(&mut self, other: WritesTally) {
        self.sent += other.sent;
        self.acknowledged += other.acknowledged;
        self.timed_out += other.timed_out;
        self.unacked += other.unacked;
        self.refused += other.refused;
        self.errors += other.errors;
        self.seq_backwards += other.seq_backwards;
        self.acked.extend(other.acked);
        self.given_up.extend(other.given_up);
        for e in other.examples {
            example(&mut self.examples, e);
        }
    }
}

/// What the watcher saw.
#[derive(Debug, Clone, Default)]
pub struct WatchTally {
    /// Changes yielded by the follower.
    pub changes: u64,
    /// Snapshots, the first included.
    pub snapshots: u64,
    /// Snapshots after the first ([`Follower::resyncs`]).
    pub resyncs: u64,
    /// Changes whose seq was above the next one expected: a failure.
    pub out_of_order: u64,
    /// Changes whose seq was at or below the last one taken: a failure.
    pub duplicates: u64,
    /// Changes before any snapshot: a failure.
    pub unanchored: u64,
    /// Calls of [`Follower::next`] that failed (no broker answered a snapshot within the
    /// client's timeout: a failover window); the follower tries again.
    pub errors: u64,
    /// The last seq taken (a snapshot's or a change's).
    pub last: Option<u64>,
    /// Whether it reached the seq it was asked to catch up to.
    pub caught_up: bool,
    /// The view: key -> entry, as the feed built it.
    pub view: BTreeMap<String, Entry>,
    /// A few failures, for the message.
    pub examples: Vec<String>,
}

/// How the test tells the watcher to stop.
#[derive(Debug, Default)]
struct WatchControl {
    /// Stop at once (the load is dropped).
    abort: AtomicBool,
    /// Stop once the view is at this seq, or at the deadline.
    catch_up: Mutex<Option<(u64, Instant)>>,
}

/// Writers and a watcher running against a pair. [`StateLoad::stop_writers`] and
/// [`StateLoad::finish_watcher`] end them; dropping the load aborts both.
pub struct StateLoad {
    stop: Arc<AtomicBool>,
    writers: Vec<JoinHandle<WritesTally>>,
    control: Arc<WatchControl>,
    watcher: Option<JoinHandle<WatchTally>>,
}

impl StateLoad {
    /// Subscribes the watcher to the feeds (failing if that cannot start) and starts it and
    /// the writers, each on its own thread.
    pub fn start(plan: &StatePlan) -> anyhow::Result<StateLoad> {
        let mut config = FollowerConfig::new(plan.prefix.clone());
        config.feeds.clone_from(&plan.feeds);
        // A lost last change shows within 2 s of quiet, not the default 5 s.
        config.idle_check = Some(Duration::from_secs(2));
        let follower =
            Follower::new(plan.client()?, config).context("subscribing to the change feeds")?;
        let control = Arc::new(WatchControl::default());
        let watcher = {
            let control = control.clone();
            std::thread::Builder::new()
                .name("state-watcher".to_owned())
                .spawn(move || watch(follower, &control))
                .context("spawning the watcher")?
        };
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for index in 0..plan.writers {
            let client = plan.client()?;
            let (plan, stop) = (plan.clone(), stop.clone());
            let writer = std::thread::Builder::new()
                .name(format!("state-writer-{index}"))
                .spawn(move || write(index, client, &plan, &stop))
                .context("spawning a writer")?;
            writers.push(writer);
        }
        Ok(StateLoad {
            stop,
            writers,
            control,
            watcher: Some(watcher),
        })
    }

    /// Lets each writer finish the write it is at (its tries are bounded) and returns what
    /// they did.
    pub fn stop_writers(&mut self) -> WritesTally {
        self.stop.store(true, Ordering::SeqCst);
        let mut total = WritesTally::default();
        for writer in self.writers.drain(..) {
            match writer.join() {
                Ok(tally) => total.merge(tally),
                Err(_) => panic!("a state writer thread panicked"),
            }
        }
        total
    }

    /// Waits until the watcher's view is at `seq` (or `within` has passed) and returns what
    /// it saw. Call once nothing writes any more.
    pub fn finish_watcher(&mut self, seq: u64, within: Duration) -> WatchTally {
        *self
            .control
            .catch_up
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((seq, Instant::now() + within));
        match self.watcher.take().map(JoinHandle::join) {
            Some(Ok(tally)) => tally,
            Some(Err(_)) => panic!("the state watcher thread panicked"),
            None => panic!("the state watcher was already finished"),
        }
    }
}

impl Drop for StateLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.control.abort.store(true, Ordering::SeqCst);
        for writer in self.writers.drain(..) {
            let _ = writer.join();
        }
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
    }
}

/// One writer thread: `<prefix>w<index>/<n>` = n for n = 0, 1, … until stopped.
fn write(index: usize, mut client: Client, plan: &StatePlan, stop: &AtomicBool) -> WritesTally {
    let mut tally = WritesTally::default();
    let mut last_seq = 0;
    let mut n: i64 = 0;
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        let key = format!("{}w{index}/{n}", plan.prefix);
        let id = WriteId::random();
        tally.sent += 1;
        let mut acked = None;
        for _ in 0..plan.tries.max(1) {
            match client.state().set_as(&id, [(key.clone(), Write::new(n))]) {
                Ok(seq) => {
                    acked = Some(seq);
                    break;
                }
                Err(ClientError::Timeout { .. }) => tally.timed_out += 1,
                Err(ClientError::Refused(why)) => {
                    tally.refused += 1;
                    example(&mut tally.examples, format!("{key}: refused: {why}"));
                    break;
                }
                Err(e) => {
                    tally.errors += 1;
                    example(&mut tally.examples, format!("{key}: {e}"));
                    break;
                }
            }
        }
        match acked {
            Some(seq) => {
                tally.acknowledged += 1;
                if seq <= last_seq {
                    tally.seq_backwards += 1;
                    example(
                        &mut tally.examples,
                        format!("{key}: acknowledged with seq {seq}, after seq {last_seq}"),
                    );
                }
                last_seq = last_seq.max(seq);
                tally.acked.insert(key, Acked { value: n, seq });
            }
            None => {
                tally.unacked += 1;
                tally.given_up.insert(key, n);
            }
        }
        n += 1;
        // Pacing only: nothing depends on how long this sleeps.
        std::thread::sleep(plan.interval.saturating_sub(started.elapsed()));
    }
    tally
}

/// The watcher thread: follows the feeds and checks each event's seq until told to stop.
fn watch(mut follower: Follower, control: &WatchControl) -> WatchTally {
    let mut tally = WatchTally::default();
    loop {
        if control.abort.load(Ordering::SeqCst) {
            break;
        }
        let catch_up = *control.catch_up.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((seq, deadline)) = catch_up {
            if tally.last.is_some_and(|last| last >= seq) {
                tally.caught_up = true;
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        match follower.next(Instant::now() + Duration::from_millis(50)) {
            Ok(Some(event)) => tally.take(event),
            Ok(None) => {}
            Err(e) => {
                // No broker answered a snapshot (a failover window); the next call retries.
                tally.errors += 1;
                if tally.errors <= 3 {
                    eprintln!("state watcher: {e} (trying again)");
                }
                std::thread::sleep(POLL);
            }
        }
    }
    tally.resyncs = follower.resyncs();
    tally
}

impl WatchTally {
    /// Takes one event of the follower into the view, checking its seq.
    pub fn take(&mut self, event: FeedEvent) {
        match event {
            FeedEvent::Snapshot { snapshot, .. } => {
                self.snapshots += 1;
                self.view = snapshot.entries;
                self.last = Some(snapshot.seq);
            }
            FeedEvent::Change(change) => {
                self.changes += 1;
                let Some(last) = self.last else {
                    self.unanchored += 1;
                    example(
                        &mut self.examples,
                        format!(
                            "change {} of {} before any snapshot",
                            change.seq, change.key
                        ),
                    );
                    return;
                };
                if change.seq <= last {
                    self.duplicates += 1;
                    example(
                        &mut self.examples,
                        format!(
                            "change {} of {} again, after {last}",
                            change.seq, change.key
                        ),
                    );
                    return;
                }
                if change.seq != last + 1 {
                    self.out_of_order += 1;
                    example(
                        &mut self.examples,
                        format!(
                            "change {} of {} after {last}: {} missing",
                            change.seq,
                            change.key,
                            change.seq - last - 1
                        ),
                    );
                }
                self.last = Some(change.seq);
                match change.value {
                    Some(value) => {
                        self.view.insert(
                            change.key,
                            Entry {
                                seq: change.seq,
                                value,
                            },
                        );
                    }
                    None => {
                        self.view.remove(&change.key);
                    }
                }
            }
        }
    }
}

/// How many examples of each kind a failure message quotes.
const MAX_EXAMPLES: usize = 8;

/// Keeps `text` if fewer than [`MAX_EXAMPLES`] are kept already.
fn example(examples: &mut Vec<String>, text: String) {
    if examples.len() < MAX_EXAMPLES {
        examples.push(text);
    }
}

#[cfg(test)]
mod tests {
    use hearth_client::feed::{Change, ResyncReason};
    use hearth_client::state::{Snapshot, Value};

    use super::*;

    fn entry(seq: u64, value: i64) -> Entry {
        Entry {
            seq,
            value: Value::Int(value),
        }
    }

    fn change(key: &str, seq: u64, value: i64) -> FeedEvent {
        FeedEvent::Change(Change {
            key: key.to_owned(),
            seq,
            value: Some(Value::Int(value)),
        })
    }

    fn snapshot(seq: u64, entries: &[(&str, Entry)]) -> FeedEvent {
        FeedEvent::Snapshot {
            snapshot: Snapshot {
                seq,
                entries: entries
                    .iter()
                    .map(|(k, e)| ((*k).to_owned(), e.clone()))
                    .collect(),
            },
            cause: ResyncReason::Start,
        }
    }

    #[test]
    fn the_watcher_takes_each_next_seq_and_counts_the_rest() {
        let mut watch = WatchTally::default();
        watch.take(change("c/a", 1, 1));
        assert_eq!(watch.unanchored, 1);
        watch.take(snapshot(4, &[("c/a", entry(4, 0))]));
        watch.take(change("c/b", 5, 5));
        watch.take(change("c/b", 5, 5));
        watch.take(change("c/a", 7, 7));
        assert_eq!(
            (watch.changes, watch.duplicates, watch.out_of_order),
            (4, 1, 1)
        );
        assert_eq!(watch.last, Some(7));
        assert_eq!(watch.view["c/a"], entry(7, 7));
        assert_eq!(watch.view["c/b"], entry(5, 5));
        watch.take(FeedEvent::Change(Change {
            key: "c/a".to_owned(),
            seq: 8,
            value: None,
        }));
        assert!(!watch.view.contains_key("c/a"));
        watch.take(snapshot(9, &[]));
        assert!(watch.view.is_empty());
        assert_eq!(watch.snapshots, 2);
    }
}
