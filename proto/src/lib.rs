//! hearth's wire formats, kept apart from any socket so they can be tested alone.
//!
//! * [`mdp`]: the Majordomo Protocol MDP/0.1 (ZeroMQ RFC 7), client and worker halves, as
//!   Rust types with `decode` from frames and `encode` to frames. Every malformed shape is a
//!   distinct [`DecodeError`] variant.
//! * [`mmi`]: the Majordomo Management Interface (RFC 8) and the other service names the
//!   broker answers itself.
//! * [`peer`]: the Binary Star peer link between the two brokers of a pair.
//! * [`repl`]: the state model's replication between the brokers of a pair.
//! * [`state`]: the state model's change records and the change feed.
//! * [`label`]: metric label values as enums ([`label_enum!`]), one list per label.
//! * [`status`]: the broker's status record, served over ZeroMQ (Bencode, by the built-in
//!   `hearth.status` service) and over HTTP (JSON, at `/status`).
//!
//! Frames are plain byte vectors: a ZeroMQ multipart message is a `Vec<Frame>`. On a ROUTER
//! socket the routing id frame is the socket's business and is not part of these messages.

pub mod error;
pub mod label;
pub mod mdp;
pub mod mmi;
pub mod peer;
pub mod repl;
pub mod state;
pub mod status;

pub use error::{DecodeError, MalformedReason};
pub use mdp::{
    ClientMessage, Inbound, Limits, WorkerCommand, WorkerMessage, DEFAULT_MAX_FRAME_SIZE,
};

/// One frame of a ZeroMQ multipart message.
pub type Frame = Vec<u8>;
