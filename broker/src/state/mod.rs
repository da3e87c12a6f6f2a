//! The state model of the home: a key/value map with one global sequence number, TTLs,
//! conditional writes and write ids (pure, no sockets, no clock), and its sled store.
//!
//! * [`limits`]: [`StateLimits`], the caps on keys, values, requests and the whole model;
//! * [`value`]: a strict reader of canonical Bencode (values are stored as their bytes);
//! * [`request`]: the `state.get`/`state.set`/`state.del` bodies and [`BadRequest`];
//! * [`model`]: [`StateModel`], the map, its sequence number, TTLs and write ids;
//! * [`open`]: the model restored from the data dir at start-up;
//! * [`restart`]: the restart rule and the activation gate (when the model may serve);
//! * [`write_ids`]: the write ids the model remembers, so a resent write applies once.

pub mod limits;
pub mod model;
pub mod open;
pub mod request;
pub mod restart;
pub mod store;
pub mod value;
pub mod write_ids;
pub mod writer;

pub use limits::StateLimits;
pub use model::{error_reply, ApplyError, Entry, StateModel, WriteOutcome, WriteOutcomeKind};
pub use request::{BadRequest, BadRequestReason};
