//! What the broker's core asks the reactor to do: the only way anything leaves the core.
//!
//! The core (and the dispatcher inside it) never touches a socket, a file or a clock. It
//! pushes [`Effect`]s; the reactor carries them out in order. A reply the core cannot give
//! yet (a state write waits for its flush and the passive's acknowledgement) is simply not
//! an effect yet: the core keeps it and pushes it when its conditions hold.

use hearth_proto::peer::PeerMessage;
use hearth_proto::state::FeedUpdate;
use hearth_proto::{ClientMessage, WorkerMessage};

use crate::state::store::Batch;

/// A peer's routing id on the frontend ROUTER.
pub type Identity = Vec<u8>;

/// Something the reactor must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send a worker-protocol message to a worker.
    ToWorker {
        worker: Identity,
        msg: WorkerMessage,
    },
    /// Send a reply to a client.
    ToClient {
        client: Identity,
        msg: ClientMessage,
    },
    /// Send a message to the Binary Star peer.
    ToPeer(PeerMessage),
    /// Hand a round's state changes to the writer thread (group commit); it reports back
    /// when the round is flushed.
    Persist(Persist),
    /// Publish a committed change on the change feed.
    Publish(FeedUpdate),
    /// Much was just freed (the services of a flood of invented names): ask the allocator
    /// to give free memory back to the system, so the broker's RSS returns.
    ReleaseMemory,
}

/// One round's writes for the store.
#[derive(Debug, Clone)]
pub struct Persist {
    /// The round's number, reported back when it is flushed.
    pub round: u64,
    /// What to write.
    pub batch: Batch,
}

impl PartialEq for Persist {
    /// Rounds are numbered once: the same round is the same batch.
    fn eq(&self, other: &Persist) -> bool {
        self.round == other.round && self.batch.len() == other.batch.len()
    }
}
