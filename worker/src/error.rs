//! Why a worker could not start or did not stop cleanly.
//!
//! Only set-up and tear-down can fail from the caller's point of view: once running, a
//! worker survives brokers that vanish, misbehave or restart, and handlers that panic, so
//! those are logged rather than returned.

use thiserror::Error;

/// An error from starting or stopping a worker.
#[derive(Debug, Error)]
pub enum WorkerError {
    /// The configuration cannot work (no broker, bad service name, zero heartbeat...).
    #[error("invalid worker configuration: {0}")]
    Config(String),
    /// ZeroMQ refused to create, bind or connect a socket (for example a malformed endpoint).
    #[error("zmq: {0}")]
    Zmq(#[from] zmq::Error),
    /// The operating system refused to start a thread.
    #[error("cannot start a worker thread: {0}")]
    Thread(#[source] std::io::Error),
    /// A worker unit's thread panicked; the others were still stopped.
    #[error("{0} worker unit thread(s) panicked")]
    UnitPanicked(usize),
}
