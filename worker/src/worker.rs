//! Starting and stopping a worker: [`spawn`], [`serve_fn`] and the [`WorkerHandle`].
//!
//! `spawn` builds every unit on the caller's thread (so a bad endpoint is an error right
//! away), then gives each its own thread. The handle keeps one inproc PAIR per unit to wake
//! it for a stop, which sends DISCONNECT to every broker and joins the threads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::runner::unique_inproc;
use crate::unit::{Shared, Unit};
use crate::{Frame, Handler, WorkerConfig, WorkerError};

/// A running worker. Stop it with [`WorkerHandle::stop`]; dropping it stops it too.
pub struct WorkerHandle {
    units: Vec<UnitHandle>,
    shared: Arc<Shared>,
}

struct UnitHandle {
    /// Wrapped so the handle is `Sync`; only stop and drop use it.
    control: Mutex<zmq::Socket>,
    thread: Option<JoinHandle<()>>,
}

/// Starts a worker serving `config.service` with `handler` on `config.concurrency` units,
/// each connected to every broker. Returns at once; the units run on background threads
/// and keep reconnecting until stopped, whatever the brokers do.
pub fn spawn(config: WorkerConfig, handler: impl Handler) -> Result<WorkerHandle, WorkerError> {
    config.validate()?;
    let ctx = zmq::Context::new();
    let handler: Arc<dyn Handler> = Arc::new(handler);
    let shared = Arc::new(Shared {
        stopping: AtomicBool::new(false),
        handled: AtomicU64::new(0),
    });
    let mut handle = WorkerHandle {
        units: Vec::with_capacity(config.concurrency),
        shared: shared.clone(),
    };
    for index in 0..config.concurrency {
        let endpoint = unique_inproc("control");
        let control = ctx.socket(zmq::PAIR)?;
        control.set_linger(0)?;
        control.bind(&endpoint)?;
        let unit_control = ctx.socket(zmq::PAIR)?;
        unit_control.set_linger(0)?;
        unit_control.connect(&endpoint)?;
        let name = format!("hearth-worker-{index}");
        // On error `handle` drops here and stops the units already started.
        let unit = Unit::new(
            &ctx,
            &config,
            handler.clone(),
            unit_control,
            shared.clone(),
            name.clone(),
        )?;
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || unit.run())
            .map_err(WorkerError::Thread)?;
        handle.units.push(UnitHandle {
            control: Mutex::new(control),
            thread: Some(thread),
        });
    }
    Ok(handle)
}

/// Serves a one-frame-body service with a plain function: the request's first frame in,
/// the reply frame out. So a worker is a few lines:
///
/// ```no_run
/// let config = hearth_worker::WorkerConfig::new(["tcp://127.0.0.1:5555"], "upper");
/// let worker = hearth_worker::serve_fn(config, |body| body.to_ascii_uppercase())?;
/// # worker.stop()?;
/// # Ok::<(), hearth_worker::WorkerError>(())
/// ```
///
/// Frames after the first are ignored; an empty body gives `f` an empty slice.
pub fn serve_fn(
    config: WorkerConfig,
    f: impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static,
) -> Result<WorkerHandle, WorkerError> {
    spawn(config, move |body: Vec<Frame>| {
        vec![f(body.first().map(Vec::as_slice).unwrap_or_default())]
    })
}

impl WorkerHandle {
    /// Sends DISCONNECT on every live connection and joins the unit threads; takes at most
    /// about half a second (the DISCONNECT's linger). A handler still running is not waited
    /// for: its thread finishes on its own and its reply is dropped.
    pub fn stop(mut self) -> Result<(), WorkerError> {
        let panicked = self.shutdown();
        if panicked > 0 {
            return Err(WorkerError::UnitPanicked(panicked));
        }
        Ok(())
    }

    /// How many requests this worker's handler has finished (all units), for tests and
    /// monitoring.
    pub fn requests_handled(&self) -> u64 {
        self.shared.handled.load(Ordering::SeqCst)
    }

    /// Wakes every unit, joins them, and returns how many panicked.
    fn shutdown(&mut self) -> usize {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for unit in &self.units {
            if let Ok(control) = unit.control.lock() {
                // A unit that is already gone does not need waking.
                let _ = control.send(&b"STOP"[..], zmq::DONTWAIT);
            }
        }
        let mut panicked = 0;
        for unit in &mut self.units {
            if let Some(thread) = unit.thread.take() {
                if thread.join().is_err() {
                    panicked += 1;
                }
            }
        }
        panicked
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        let panicked = self.shutdown();
        if panicked > 0 {
            tracing::error!(panicked, "worker unit thread(s) panicked");
        }
    }
}

impl std::fmt::Debug for WorkerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerHandle")
            .field("units", &self.units.len())
            .field("requests_handled", &self.requests_handled())
            .finish()
    }
}
