//! `hearth_worker`: write a hearth worker in a few lines.
//!
//! A worker serves one named service for the hearth broker (or any ZeroMQ RFC 7 Majordomo
//! broker) and speaks exactly MDP/0.1 (`MDPW01`): READY on connect, REQUEST in, REPLY out,
//! HEARTBEAT both ways (also while a request runs), DISCONNECT on stop.
//!
//! ```no_run
//! use hearth_worker::{serve_fn, WorkerConfig};
//! let config = WorkerConfig::new(["tcp://hearth-a:5555", "tcp://hearth-b:5555"], "upper");
//! let worker = serve_fn(config, |body| body.to_ascii_uppercase())?;
//! // ... until it is time to go:
//! worker.stop()?;
//! # Ok::<(), hearth_worker::WorkerError>(())
//! ```
//!
//! How it works:
//!
//! * A process runs `concurrency` *units* ([`unit`](crate::unit) is private). Each unit is
//!   one thread owning one DEALER per broker endpoint, so a worker registers with both
//!   brokers of a Binary Star pair. A unit runs one request at a time on its executor
//!   thread and keeps polling meanwhile, so heartbeats never stop.
//! * A broker silent for `liveness × heartbeat`, or one that says DISCONNECT (a restarted
//!   broker does so to a worker it does not know), gets a fresh socket and a new READY,
//!   after an exponential backoff with jitter. Start order does not matter.
//! * Malformed messages from a broker are logged once per connection and dropped; a
//!   panicking handler yields the reply `{"error": "handler panicked"}` (see
//!   [`error_reply`]).
//! * [`ExecHandler`] runs a shell command per request (the binary's `--exec`).

mod backoff;
mod config;
mod connection;
mod error;
mod exec;
mod handler;
mod runner;
mod unit;
mod worker;

pub use config::{
    ConfigFile, WorkerConfig, DEFAULT_BROKER, DEFAULT_HEARTBEAT, DEFAULT_LIVENESS,
    DEFAULT_RECONNECT_INITIAL, DEFAULT_RECONNECT_MAX,
};
pub use error::WorkerError;
pub use exec::{ExecHandler, DEFAULT_EXEC_TIMEOUT};
pub use handler::{echo, error_reply, Handler, PANIC_ERROR};
pub use worker::{serve_fn, spawn, WorkerHandle};

/// One frame of a ZeroMQ multipart message (the same type as `hearth_proto::Frame`).
pub use hearth_proto::Frame;
/// Decoding bounds for messages from a broker (re-exported for [`WorkerConfig::limits`]).
pub use hearth_proto::Limits;
