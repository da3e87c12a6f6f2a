//! Why a call through a [`crate::Client`] failed.

use std::time::Duration;

use thiserror::Error;

/// A failed [`crate::Client`] operation.
#[derive(Debug, Error)]
pub enum ClientError {
    /// No broker answered within the overall deadline (every attempt timed out). The
    /// request may still have run: delivery is at least once.
    #[error("no reply for service {service:?} within {after:?}")]
    Timeout {
        /// The service called.
        service: String,
        /// How long the client waited, retries included.
        after: Duration,
    },
    /// The broker answered, but not in the way the protocol promises (an MMI code that is
    /// not "200"/"404", a status record that does not decode).
    #[error("bad reply: {0}")]
    BadReply(String),
    /// The broker understood the request and refused it, answering `{error: "..."}` (a
    /// state-model write whose `if_seq` does not match, a bad key, a value over a limit).
    /// Nothing was changed.
    #[error("refused: {0}")]
    Refused(String),
    /// The request cannot be sent as RFC 7 requires (empty or over-long service name, no
    /// body frame, a frame over the configured limit).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The configuration cannot work (no broker endpoint).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A broker endpoint ZeroMQ refuses to connect to (malformed address, unknown
    /// transport).
    #[error("cannot connect to {endpoint}: {source}")]
    Endpoint {
        /// The endpoint as configured.
        endpoint: String,
        /// ZeroMQ's reason.
        source: zmq::Error,
    },
    /// Any other ZeroMQ failure (context terminated, out of file descriptors).
    #[error("zeromq: {0}")]
    Zmq(#[from] zmq::Error),
}
