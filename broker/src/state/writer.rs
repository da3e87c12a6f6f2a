//! The group-commit writer: the one thread that writes and fsyncs the state store, so the
//! reactor thread never blocks on the disk.
//!
//! The reactor hands each round's [`Batch`] to [`Writer::submit`] and goes on polling. The
//! thread takes one batch (blocking), then every batch already queued, writes them as one
//! sled batch, flushes once, and reports the highest round now durable with
//! [`WriterReport::Flushed`]: the reactor answers the writes of every round up to it. The
//! busier the broker, the more rounds share one fsync. After an error it reports
//! [`WriterReport::Failed`] and stops; the broker must not answer writes after that.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use thiserror::Error;

use super::store::{Batch, Store, StoreError};

/// What the writer thread tells the reactor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriterReport {
    /// Every batch submitted with a round up to this one is written and flushed.
    Flushed {
        /// The highest round in the flush.
        round: u64,
    },
    /// A write or flush failed; the thread has stopped and nothing later is durable.
    Failed(String),
}

/// The writer thread is gone (it failed, or it was shut down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the state writer thread has stopped")]
pub struct WriterStopped;

/// The handle of a running writer thread. Dropping it (or [`Writer::shutdown`]) lets the
/// thread write and flush what was submitted, then joins it.
#[derive(Debug)]
pub struct Writer {
    queue: Option<Sender<(u64, Batch)>>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the writer thread for `store`. `notify` runs on that thread after every flush
/// (and once on failure); it should only pass the report on, e.g. over a channel and a
/// wake-up of the reactor's poll.
pub fn spawn_writer(
    store: Arc<Store>,
    notify: Box<dyn Fn(WriterReport) + Send>,
) -> Result<Writer, std::io::Error> {
    spawn_with(store, notify)
}

/// Where the thread writes: the [`Store`], or a fake in the tests.
trait Sink: Send + Sync + 'static {
    fn write(&self, batch: &Batch) -> Result<(), StoreError>;
    fn flush(&self) -> Result<(), StoreError>;
}

impl Sink for Store {
    fn write(&self, batch: &Batch) -> Result<(), StoreError> {
        Store::write(self, batch)
    }

    fn flush(&self) -> Result<(), StoreError> {
        Store::flush(self)
    }
}

fn spawn_with<S: Sink>(
    store: Arc<S>,
    notify: Box<dyn Fn(WriterReport) + Send>,
) -> Result<Writer, std::io::Error> {
    let (queue, batches) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("hearth-state-writer".into())
        .spawn(move || run(&*store, &batches, &*notify))?;
    Ok(Writer {
        queue: Some(queue),
        thread: Some(thread),
    })
}

/// The thread's loop: one blocking take, coalesce what is queued, write, one flush.
fn run<S: Sink>(store: &S, batches: &Receiver<(u64, Batch)>, notify: &dyn Fn(WriterReport)) {
    while let Ok((mut round, mut batch)) = batches.recv() {
        while let Ok((later, more)) = batches.try_recv() {
            round = round.max(later);
            batch.append(more);
        }
        match store.write(&batch).and_then(|()| store.flush()) {
            Ok(()) => notify(WriterReport::Flushed { round }),
            Err(e) => {
                tracing::error!(error = %e, "state writer stopped");
                notify(WriterReport::Failed(e.to_string()));
                return;
            }
        }
    }
}

impl Writer {
    /// Queues `batch` as part of `round` (rounds should only grow). Never blocks.
    pub fn submit(&self, round: u64, batch: Batch) -> Result<(), WriterStopped> {
        self.queue
            .as_ref()
            .ok_or(WriterStopped)?
            .send((round, batch))
            .map_err(|_| WriterStopped)
    }

    /// Lets the thread write and flush everything submitted, then waits for it. An error
    /// if the thread panicked.
    pub fn shutdown(mut self) -> Result<(), WriterStopped> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), WriterStopped> {
        // The thread's `recv` fails once the queue is empty and the sender gone.
        drop(self.queue.take());
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|_| WriterStopped),
            None => Ok(()),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::RecvTimeoutError;
    use std::sync::{Condvar, Mutex};
    use std::time::{Duration, Instant};

    use hearth_proto::state::{Cause, Change};

    use super::*;
    use crate::state::store::tests::TempDir;

    fn set(seq: u64, value_len: usize) -> Change {
        let body = "x".repeat(value_len - 3);
        Change {
            seq,
            term: 1,
            key: format!("bench/{}", seq % 10_000),
            cause: Cause::Set,
            value: Some(format!("{}:{body}", body.len()).into_bytes()),
            expires_at_ms: None,
            write: None,
        }
    }

    fn batch(first_seq: u64, changes: u64) -> Batch {
        let mut batch = Batch::default();
        for seq in first_seq..first_seq + changes {
            batch.change(&set(seq, 64));
        }
        batch
    }

    fn start<S: Sink>(sink: &Arc<S>) -> (Writer, Receiver<WriterReport>) {
        let (tx, rx) = mpsc::channel();
        let notify = Box::new(move |report| {
            let _ = tx.send(report);
        });
        let writer = spawn_with(sink.clone(), notify).expect("spawn the writer");
        (writer, rx)
    }

    fn next_report(reports: &Receiver<WriterReport>) -> WriterReport {
        reports
            .recv_timeout(Duration::from_secs(10))
            .expect("a report within 10 s")
    }

    /// A sink that records what it is asked to do, holds every write until released, and
    /// fails the write numbered `fail_at` (counting from 1).
    #[derive(Default)]
    struct FakeSink {
        log: Mutex<Vec<String>>,
        /// (writes entered, released)
        gate: Mutex<(usize, bool)>,
        changed: Condvar,
        fail_at: Option<usize>,
    }

    impl FakeSink {
        fn release(&self) {
            self.gate.lock().expect("lock").1 = true;
            self.changed.notify_all();
        }

        fn wait_until_writing(&self) {
            let mut gate = self.gate.lock().expect("lock");
            while gate.0 == 0 {
                gate = self.changed.wait(gate).expect("lock");
            }
        }

        fn log(&self) -> Vec<String> {
            self.log.lock().expect("lock").clone()
        }
    }

    impl Sink for FakeSink {
        fn write(&self, batch: &Batch) -> Result<(), StoreError> {
            let mut gate = self.gate.lock().expect("lock");
            gate.0 += 1;
            let number = gate.0;
            self.changed.notify_all();
            while !gate.1 {
                gate = self.changed.wait(gate).expect("lock");
            }
            self.log
                .lock()
                .expect("lock")
                .push(format!("write {}", batch.len()));
            if Some(number) == self.fail_at {
                return Err(StoreError::Corrupt {
                    dir: "/fake".into(),
                    detail: "a test failure".into(),
                });
            }
            Ok(())
        }

        fn flush(&self) -> Result<(), StoreError> {
            self.log.lock().expect("lock").push("flush".into());
            Ok(())
        }
    }

    #[test]
    fn queued_batches_share_one_write_and_one_flush() {
        let sink = Arc::new(FakeSink::default());
        let (writer, reports) = start(&sink);
        writer.submit(1, batch(1, 1)).expect("submit");
        sink.wait_until_writing();
        // Round 1 is held in `write`; these queue up meanwhile and go as one.
        writer.submit(2, batch(2, 2)).expect("submit");
        writer.submit(3, batch(4, 3)).expect("submit");
        writer.submit(4, Batch::default()).expect("submit");
        sink.release();
        assert_eq!(next_report(&reports), WriterReport::Flushed { round: 1 });
        assert_eq!(next_report(&reports), WriterReport::Flushed { round: 4 });
        writer.shutdown().expect("shutdown");
        assert_eq!(sink.log(), ["write 1", "flush", "write 5", "flush"]);
        assert_eq!(
            reports.recv_timeout(Duration::from_secs(10)),
            Err(RecvTimeoutError::Disconnected)
        );
    }

    #[test]
    fn a_failure_is_reported_once_and_stops_the_thread() {
        let sink = Arc::new(FakeSink {
            fail_at: Some(2),
            ..FakeSink::default()
        });
        sink.release();
        let (writer, reports) = start(&sink);
        writer.submit(1, batch(1, 1)).expect("submit");
        assert_eq!(next_report(&reports), WriterReport::Flushed { round: 1 });
        writer.submit(2, batch(2, 1)).expect("submit");
        match next_report(&reports) {
            WriterReport::Failed(message) => {
                assert!(message.contains("a test failure"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        // The thread is gone: the report channel closes, submits fail.
        assert_eq!(
            reports.recv_timeout(Duration::from_secs(10)),
            Err(RecvTimeoutError::Disconnected)
        );
        assert_eq!(writer.submit(3, batch(3, 1)), Err(WriterStopped));
        assert_eq!(sink.log(), ["write 1", "flush", "write 1"]);
    }

    #[test]
    fn every_round_is_flushed_to_the_store_and_shutdown_keeps_the_rest() {
        let tmp = TempDir::new("writer-rounds");
        let store = Arc::new(Store::open(tmp.path(), 1_000).expect("open"));
        let (writer, reports) = start(&store);
        for round in 1..=50 {
            writer.submit(round, batch(round, 1)).expect("submit");
        }
        let mut last = 0;
        while last < 50 {
            match next_report(&reports) {
                WriterReport::Flushed { round } => {
                    assert!(round > last, "rounds go up: {round} after {last}");
                    last = round;
                }
                other => panic!("after round {last}: {other:?}"),
            }
        }
        // Submitted, then shut down at once: still written and flushed.
        writer.submit(51, batch(51, 1)).expect("submit");
        writer.shutdown().expect("shutdown");
        assert_eq!(next_report(&reports), WriterReport::Flushed { round: 51 });
        drop(store);
        let store = Store::open(tmp.path(), 1_000).expect("reopen");
        assert_eq!(store.last_seq(), 51);
        assert_eq!(store.load().expect("load").entries.len(), 51);
    }

    /// Group-commit throughput on this machine's disk; prints, asserts nothing. Run with
    /// `cargo test --release -p hearth-broker --lib state::writer -- --ignored --nocapture`
    /// (`HEARTH_BENCH_DIR` picks the file system, default the temp dir). Batches are built
    /// before the clock starts: this measures the writer thread, sled and the disk.
    #[test]
    #[ignore = "a measurement, not a test; run it by hand"]
    fn throughput() {
        use std::os::unix::fs::FileExt;
        let tmp = TempDir::new("writer-bench");
        let store = Arc::new(Store::open(tmp.path(), 100_000).expect("open"));
        println!("store in {}", tmp.path().display());

        // The disk's own price of one durable write, for scale.
        let probe = std::fs::File::create(tmp.path().join("probe")).expect("probe file");
        let started = Instant::now();
        for i in 0..200u64 {
            probe.write_all_at(&[7; 64], i * 64).expect("write");
            probe.sync_data().expect("fdatasync");
        }
        let fsync_ms = started.elapsed().as_secs_f64() * 1e3 / 200.0;
        println!("plain 64-byte write + fdatasync: {fsync_ms:.2} ms");

        let (writer, reports) = start(&store);
        let mut seq = 1;
        let flushed = |reports: &Receiver<WriterReport>, round: u64| loop {
            match next_report(reports) {
                WriterReport::Flushed { round: r } if r >= round => break,
                WriterReport::Flushed { .. } => {}
                other => panic!("{other:?}"),
            }
        };
        // Warm-up: sled allocates its first segments.
        for _ in 0..300 {
            writer.submit(seq, batch(seq, 16)).expect("submit");
            flushed(&reports, seq);
            seq += 16;
        }
        for pass in 1..=2 {
            for per_batch in [1u64, 16, 256] {
                // Lockstep: one batch, wait for its flush, then the next (one client).
                let rounds = 2_000 / per_batch.min(8);
                let batches: Vec<(u64, Batch)> = (0..rounds)
                    .map(|i| (seq + i * per_batch, batch(seq + i * per_batch, per_batch)))
                    .collect();
                seq += rounds * per_batch;
                let started = Instant::now();
                for (round, batch) in batches {
                    writer.submit(round, batch).expect("submit");
                    flushed(&reports, round);
                }
                let secs = started.elapsed().as_secs_f64();
                println!(
                    "pass {pass} lockstep  {per_batch:>3} changes/batch: {:>6.0} batches/s \
                     {:>7.0} changes/s, {:.2} ms a round ({:.1}x a plain fdatasync)",
                    rounds as f64 / secs,
                    (rounds * per_batch) as f64 / secs,
                    secs * 1e3 / rounds as f64,
                    secs * 1e3 / rounds as f64 / fsync_ms,
                );
                // Pipelined: all submitted at once; the thread coalesces what queued up.
                let batches: Vec<(u64, Batch)> = (0..rounds)
                    .map(|i| (seq + i * per_batch, batch(seq + i * per_batch, per_batch)))
                    .collect();
                let last_round = seq + (rounds - 1) * per_batch;
                seq += rounds * per_batch;
                let started = Instant::now();
                for (round, batch) in batches {
                    writer.submit(round, batch).expect("submit");
                }
                let mut flushes = 0;
                loop {
                    match next_report(&reports) {
                        WriterReport::Flushed { round } => {
                            flushes += 1;
                            if round == last_round {
                                break;
                            }
                        }
                        other => panic!("{other:?}"),
                    }
                }
                let secs = started.elapsed().as_secs_f64();
                println!(
                    "pass {pass} pipelined {per_batch:>3} changes/batch: {:>6.0} batches/s \
                     {:>7.0} changes/s, {flushes} flushes for {rounds} batches",
                    rounds as f64 / secs,
                    (rounds * per_batch) as f64 / secs,
                );
            }
        }
        writer.shutdown().expect("shutdown");
    }
}
