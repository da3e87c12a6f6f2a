//! A unit's executor thread: runs the handler off the unit's poll loop, so the unit keeps
//! heartbeating while a request takes seconds.
//!
//! Jobs go in over a channel; results come back over a ZeroMQ inproc PAIR, which the unit
//! polls together with its broker connections. Result messages are `[job id (8 bytes,
//! little endian), reply body...]`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use crate::handler::run_guarded;
use crate::{Frame, Handler, WorkerError};

/// Makes inproc endpoint names unique within the process.
static NEXT_ENDPOINT: AtomicU64 = AtomicU64::new(0);

/// Returns a fresh inproc endpoint name with the given prefix.
pub(crate) fn unique_inproc(prefix: &str) -> String {
    let n = NEXT_ENDPOINT.fetch_add(1, Ordering::Relaxed);
    format!("inproc://hearth-worker-{prefix}-{}-{n}", std::process::id())
}

struct Job {
    id: u64,
    body: Vec<Frame>,
}

/// The unit's side of its executor thread.
pub(crate) struct Runner {
    jobs: Option<mpsc::Sender<Job>>,
    results: zmq::Socket,
    thread: Option<JoinHandle<()>>,
    next_id: u64,
}

impl Runner {
    /// Starts the executor thread.
    pub(crate) fn start(
        ctx: &zmq::Context,
        handler: Arc<dyn Handler>,
        name: String,
    ) -> Result<Runner, WorkerError> {
        let endpoint = unique_inproc("runner");
        let results = ctx.socket(zmq::PAIR)?;
        results.set_linger(0)?;
        results.bind(&endpoint)?;
        let back = ctx.socket(zmq::PAIR)?;
        back.set_linger(0)?;
        back.connect(&endpoint)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                for job in rx {
                    let reply = run_guarded(&*handler, job.body);
                    let id = job.id.to_le_bytes();
                    let frames = std::iter::once(&id[..]).chain(reply.iter().map(Vec::as_slice));
                    // Never blocks: one result is outstanding at a time, and if the unit is
                    // gone the send fails and the thread ends.
                    if let Err(e) = back.send_multipart(frames, zmq::DONTWAIT) {
                        tracing::error!(error = %e, "executor cannot hand back a reply");
                        break;
                    }
                }
            })
            .map_err(WorkerError::Thread)?;
        Ok(Runner {
            jobs: Some(tx),
            results,
            thread: Some(thread),
            next_id: 0,
        })
    }

    /// Hands a request body to the executor; returns the job id, or `None` if the
    /// executor is gone.
    pub(crate) fn submit(&mut self, body: Vec<Frame>) -> Option<u64> {
        self.next_id += 1;
        let id = self.next_id;
        self.jobs.as_ref()?.send(Job { id, body }).ok()?;
        Some(id)
    }

    /// The socket on which results arrive, to poll.
    pub(crate) fn socket(&self) -> &zmq::Socket {
        &self.results
    }

    /// A finished job `(id, reply body)`, if one is waiting.
    pub(crate) fn take_result(&self) -> Option<(u64, Vec<Frame>)> {
        let mut frames = self.results.recv_multipart(zmq::DONTWAIT).ok()?;
        if frames.is_empty() {
            return None;
        }
        let id_frame = frames.remove(0);
        let id = u64::from_le_bytes(id_frame.as_slice().try_into().ok()?);
        Some((id, frames))
    }

    /// Ends the executor. If a handler is still running the thread is left to finish it on
    /// its own (its reply goes nowhere), so that stopping never waits for a slow handler.
    pub(crate) fn shutdown(mut self, busy: bool) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            if busy {
                tracing::info!(
                    "a request is still running; its executor thread will exit after it"
                );
            } else if thread.join().is_err() {
                tracing::error!("executor thread panicked");
            }
        }
    }
}
