//! What can go wrong while supervising: one error type for the whole crate, so that a
//! supervisor (`hearth up`, a benchmark, a test harness) can pass any of it on with `?` and
//! its message says which child, which PID, which address, and what was seen last.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// An error of the supervision layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A child process could not be started.
    #[error("cannot start {name} ({program}): {source}")]
    Spawn {
        /// The child's name.
        name: String,
        /// The program that was to run.
        program: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
    /// A file or directory of the supervisor (a log, a scratch dir) could not be made.
    #[error("cannot create {path}: {source}")]
    Create {
        /// The path.
        path: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
    /// The child has already exited (and was reaped), so it is never signalled: its PID may
    /// belong to another process by now.
    #[error("{name} (pid {pid}) already exited: {status}")]
    Exited {
        /// The child's name.
        name: String,
        /// Its PID while it ran.
        pid: u32,
        /// How it ended.
        status: ExitStatus,
    },
    /// The child is not running: killed on purpose and not started again, or never started.
    #[error("{0} is not running")]
    NotRunning(String),
    /// The child is already running, so it cannot be started again.
    #[error("{0} is already running")]
    AlreadyRunning(String),
    /// The child is frozen (SIGSTOP), so asking it anything would only time out.
    #[error("{0} is frozen")]
    Frozen(String),
    /// kill(2) or waitpid(2) on a child failed.
    #[error("cannot {action} {name} (pid {pid}): {source}")]
    Signal {
        /// What was tried: `signal`, `reap`.
        action: &'static str,
        /// The child's name.
        name: String,
        /// Its PID.
        pid: u32,
        /// Why not.
        source: std::io::Error,
    },
    /// A condition did not hold within its time.
    #[error("timed out after {timeout:?} waiting for {what}; last seen: {last}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        timeout: Duration,
        /// The last thing the check reported.
        last: String,
    },
    /// A built binary was not found where it is looked for.
    #[error("{name} not found; {hint} (looked in: {searched})")]
    BinaryNotFound {
        /// The binary's name.
        name: String,
        /// The directories looked in.
        searched: String,
        /// How to build it.
        hint: String,
    },
    /// No free port on 127.0.0.1 could be had.
    #[error("cannot find a free port on 127.0.0.1: {0}")]
    FreePort(std::io::Error),
    /// A `/proc` file was missing or not as expected.
    #[error("cannot read {path}: {why}")]
    Proc {
        /// The file.
        path: String,
        /// Why not.
        why: String,
    },
    /// An HTTP GET failed (no connection, no answer in time, not a 200, not HTTP).
    #[error("GET {path} on {addr}: {why}")]
    Http {
        /// The server.
        addr: String,
        /// The path asked for.
        path: String,
        /// What went wrong.
        why: String,
    },
    /// A request over ZeroMQ failed (no answer in time, an undecodable reply).
    #[error("{service} at {endpoint}: {why}")]
    Ask {
        /// The broker's frontend.
        endpoint: String,
        /// The service asked.
        service: String,
        /// What went wrong.
        why: String,
    },
    /// A ZeroMQ call failed.
    #[error("zmq: {0}")]
    Zmq(#[from] zmq::Error),
    /// An address given to the pair does not parse.
    #[error("bad address {address:?}: {why}")]
    Address {
        /// The address.
        address: String,
        /// Why.
        why: String,
    },
}

/// A result of the supervision layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;
