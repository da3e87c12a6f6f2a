//! `hearth_client`: call services through a hearth (or any MDP/0.1, ZeroMQ RFC 7) broker.
//!
//! A [`Client`] sends a request for a named service and waits for the reply, retrying on the
//! next broker of its list when an attempt times out (the Lazy Pirate pattern of the ZeroMQ
//! guide, as RFC 7 clients do). Give it both brokers of a Binary Star pair and failover is
//! hidden from the caller, within the caller's deadline.
//!
//! ```no_run
//! use hearth_client::{Client, ClientConfig};
//! let mut client = Client::new(ClientConfig::new(["tcp://127.0.0.1:5555"]))?;
//! let reply = client.call_one("echo", b"hello")?;
//! assert_eq!(reply, b"hello");
//! # Ok::<(), hearth_client::ClientError>(())
//! ```
//!
//! The home's state model is in [`state`] (`client.state().get(...)`, `set`, `del`,
//! `snapshot`), and [`feed`] follows its change feed: a snapshot, then every change once, in
//! order, across failover.
//!
//! Delivery is *at least once*: a request whose attempt timed out is sent again, so a
//! service may run it twice. Make requests idempotent where that matters.

mod client;
mod config;
mod error;
pub mod feed;
pub mod state;

pub use client::Client;
pub use config::ClientConfig;
pub use error::ClientError;

/// One frame of a ZeroMQ multipart message (the same type as [`hearth_proto::Frame`]).
pub type Frame = Vec<u8>;
