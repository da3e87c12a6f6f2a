//! What the broker hands the store to write: [`Batch`]es of changes, metadata, forgotten
//! write ids, conflict records and snapshots, already encoded (the writer thread only
//! copies bytes); and the records as stored.

use hearth_proto::state::{Change, WriteTag};
use serde::{Deserialize, Serialize};

use super::*;
use crate::state::value::{put_bytes, put_uint};

/// One entry of the state model as stored under `k/<key>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEntry {
    /// The seq of the change that set it.
    #[serde(rename = "s")]
    pub seq: u64,
    /// The value's canonical Bencode, byte for byte as written.
    #[serde(rename = "v", with = "serde_bytes")]
    pub value: Vec<u8>,
    /// When it expires, in wall-clock milliseconds since the Unix epoch.
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
}

impl StoredEntry {
    /// The Bencode record, as serde writes it (an option is a one-element list), written
    /// by hand: one per change, on the broker's hottest path.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.value.len() + 40);
        out.extend_from_slice(b"d1:s");
        put_uint(&mut out, self.seq);
        out.extend_from_slice(b"1:v");
        put_bytes(&mut out, &self.value);
        if let Some(at) = self.expires_at_ms {
            out.extend_from_slice(b"1:xl");
            put_uint(&mut out, at);
            out.push(b'e');
        }
        out.push(b'e');
        out
    }

    /// Reads a Bencode record.
    pub fn decode(bytes: &[u8]) -> Result<StoredEntry, String> {
        bendy::serde::from_bytes(bytes).map_err(|e| e.to_string())
    }
}

/// A remembered write id as stored under `w/<id>` (the id is the key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct RememberedWrite {
    #[serde(rename = "s")]
    pub(super) seq: u64,
    #[serde(rename = "d")]
    pub(super) digest: u64,
    #[serde(rename = "a")]
    pub(super) at_ms: u64,
}

impl RememberedWrite {
    fn encode(&self) -> Vec<u8> {
        bendy::serde::to_bytes(self).unwrap_or_default()
    }
}

/// One step of a [`Batch`], already encoded so that the writer thread only copies bytes.
#[derive(Debug, Clone)]
pub(super) enum Op {
    Change {
        seq: u64,
        entry_key: Vec<u8>,
        entry: Option<Vec<u8>>,
        log: Option<Vec<u8>>,
        write: Option<(Vec<u8>, Vec<u8>)>,
    },
    Put(Vec<u8>, Vec<u8>),
    Remove(Vec<u8>),
    Conflict(Vec<u8>),
    ReplaceAll {
        seq: u64,
        records: Vec<(Vec<u8>, Vec<u8>)>,
    },
}

/// Writes to make together: [`Store::write`] applies a batch all or nothing, in the order
/// its steps were added (a later step on the same key wins).
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub(super) ops: Vec<Op>,
    /// The caller keeps no change log (its store's `log_keep` is 0): changes are not
    /// encoded for one.
    no_log: bool,
}

impl Batch {
    /// An empty batch for a store that keeps no change log (`log_keep` 0): its changes are
    /// not encoded for the log.
    pub fn without_log() -> Batch {
        Batch {
            ops: Vec::new(),
            no_log: true,
        }
    }

    /// Records a change: sets `k/<key>` (a change with a value) or removes it (a delete or
    /// an expiry), appends it to the log (trimming the change `log_keep` before it), and
    /// remembers its write id, if it has one.
    pub fn change(&mut self, change: &Change) {
        let entry = change.value.as_ref().map(|value| {
            StoredEntry {
                seq: change.seq,
                value: value.clone(),
                expires_at_ms: change.expires_at_ms,
            }
            .encode()
        });
        let write = change.write.as_ref().map(|tag| {
            let record = RememberedWrite {
                seq: change.seq,
                digest: tag.digest,
                at_ms: tag.at_ms,
            };
            (prefixed(WRITE_ID, &tag.id), record.encode())
        });
        self.ops.push(Op::Change {
            seq: change.seq,
            entry_key: prefixed(ENTRY, change.key.as_bytes()),
            entry,
            log: (!self.no_log).then(|| change.encode()),
            write,
        });
    }

    /// Sets the broker core's metadata `name` (any name but `format`, which the store owns
    /// and this ignores).
    pub fn put_meta(&mut self, name: &str, bytes: Vec<u8>) {
        if name != "format" {
            self.ops
                .push(Op::Put(prefixed(META, name.as_bytes()), bytes));
        }
    }

    /// Forgets remembered write ids (those whose time is up).
    pub fn forget_write_ids(&mut self, ids: &[Vec<u8>]) {
        self.ops
            .extend(ids.iter().map(|id| Op::Remove(prefixed(WRITE_ID, id))));
    }

    /// Appends a conflict record (numbered after every record already stored).
    pub fn add_conflict(&mut self, bytes: Vec<u8>) {
        self.ops.push(Op::Conflict(bytes));
    }

    /// Installs a snapshot taken from the peer at `seq`: every entry, log record and write
    /// id goes, the given ones come, and the log starts again after `seq`. Metadata and
    /// conflict records stay. `seq` is needed because the log is empty afterwards, and
    /// [`Store::changes_after`] must still know where the store stands.
    pub fn replace_all(
        &mut self,
        seq: u64,
        entries: impl IntoIterator<Item = (String, StoredEntry)>,
        write_ids: impl IntoIterator<Item = (u64, WriteTag)>,
    ) {
        let mut records: Vec<(Vec<u8>, Vec<u8>)> = entries
            .into_iter()
            .map(|(key, entry)| (prefixed(ENTRY, key.as_bytes()), entry.encode()))
            .collect();
        records.extend(write_ids.into_iter().map(|(seq, tag)| {
            let record = RememberedWrite {
                seq,
                digest: tag.digest,
                at_ms: tag.at_ms,
            };
            (prefixed(WRITE_ID, &tag.id), record.encode())
        }));
        self.ops.push(Op::ReplaceAll { seq, records });
    }

    /// Adds `other`'s steps after this batch's (the writer thread coalesces queued batches
    /// into one write this way).
    pub fn append(&mut self, mut other: Batch) {
        self.ops.append(&mut other.ops);
    }

    /// Whether the batch has no steps.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The number of steps: changes, metadata puts, forgotten ids, conflicts, snapshots.
    pub fn len(&self) -> usize {
        self.ops.len()
    }
}
