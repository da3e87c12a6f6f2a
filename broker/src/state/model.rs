//! [`StateModel`]: the home's key/value map with one global sequence number, TTLs,
//! conditional writes and write ids, as DESIGN.md "The state model" specifies.
//!
//! It is pure: no sockets, no clock, no I/O. The caller passes the wall-clock time and the
//! Binary Star term, and gets back the [`Change`]s to persist, replicate and publish. A
//! second model fed those changes through [`StateModel::apply`] becomes identical to the
//! first: that is what replication and replaying the log at start-up rely on.

use std::collections::{BTreeMap, BTreeSet};

use hearth_proto::state::{Cause, Change, WriteTag, STATE_DEL, STATE_SET};
use thiserror::Error;

pub use super::limits::StateLimits;
use super::request::{self, BadRequest};
use super::value::{put_bytes, put_uint};
use super::write_ids::{Prior, WriteIds};

/// One key's entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The seq of the change that set it.
    pub seq: u64,
    /// Its value's canonical Bencode.
    pub value: Vec<u8>,
    /// When it expires, in wall-clock milliseconds since the Unix epoch.
    pub expires_at_ms: Option<u64>,
}

/// What a `state.set` or `state.del` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Applied: `changes` took seqs up to `seq` (the reply's); persist, replicate, publish.
    Applied {
        /// The last change's seq.
        seq: u64,
        /// The changes, in seq order; the last carries the write id, if any.
        changes: Vec<Change>,
    },
    /// A repeat of a write already applied: answer with its original `seq`, change nothing.
    Repeat {
        /// The original reply's seq.
        seq: u64,
    },
    /// A delete of keys that are all absent: answer with the current `seq`.
    NoChange {
        /// The model's seq.
        seq: u64,
    },
}

hearth_proto::label_enum! {
    /// How a write was answered: the `outcome` label of `hearth_state_writes_total`.
    pub enum WriteOutcomeKind {
        /// [`WriteOutcome::Applied`].
        Applied => "applied",
        /// [`WriteOutcome::Repeat`].
        Repeat => "repeat",
        /// [`WriteOutcome::NoChange`].
        Unchanged => "unchanged",
    }
}

impl WriteOutcome {
    /// Which outcome this is, as a metric label.
    pub fn kind(&self) -> WriteOutcomeKind {
        match self {
            WriteOutcome::Applied { .. } => WriteOutcomeKind::Applied,
            WriteOutcome::Repeat { .. } => WriteOutcomeKind::Repeat,
            WriteOutcome::NoChange { .. } => WriteOutcomeKind::Unchanged,
        }
    }

    /// The seq the reply `{seq}` carries.
    pub fn seq(&self) -> u64 {
        match self {
            WriteOutcome::Applied { seq, .. }
            | WriteOutcome::Repeat { seq }
            | WriteOutcome::NoChange { seq } => *seq,
        }
    }
}

/// A change from elsewhere that does not fit this model (it has diverged or missed changes).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ApplyError {
    /// Not the next seq.
    #[error("change {got} is out of order: the model is at seq {at}, so it expected {}", at + 1)]
    OutOfOrder {
        /// The model's seq.
        at: u64,
        /// The change's seq.
        got: u64,
    },
    /// A set without a value.
    #[error("change {seq} sets {key} but has no value")]
    NoValue {
        /// The change's seq.
        seq: u64,
        /// Its key.
        key: String,
    },
    /// A delete or expiry of a key the model does not hold.
    #[error("change {seq} removes {key}, which is absent")]
    Absent {
        /// The change's seq.
        seq: u64,
        /// Its key.
        key: String,
    },
}

/// The state model. See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateModel {
    limits: StateLimits,
    seq: u64,
    entries: BTreeMap<String, Entry>,
    /// Sum of the entries' key and value lengths.
    bytes: usize,
    /// (expires_at_ms, key) of every entry with a TTL, so expiry is not a scan.
    deadlines: BTreeSet<(u64, String)>,
    write_ids: WriteIds,
}

impl StateModel {
    /// An empty model at seq 0.
    pub fn new(limits: StateLimits) -> Self {
        StateModel {
            limits,
            seq: 0,
            entries: BTreeMap::new(),
            bytes: 0,
            deadlines: BTreeSet::new(),
            write_ids: WriteIds::default(),
        }
    }

    /// Rebuilds a model from a snapshot or the store: its seq, entries and write ids (each
    /// with the seq its write was answered with).
    pub fn restore(
        limits: StateLimits,
        seq: u64,
        entries: impl IntoIterator<Item = (String, Entry)>,
        write_ids: impl IntoIterator<Item = (u64, WriteTag)>,
    ) -> StateModel {
        let mut model = StateModel::new(limits);
        model.seq = seq;
        for (key, entry) in entries {
            model.put(key, entry);
        }
        for (seq, tag) in write_ids {
            model.write_ids.remember(tag, seq);
        }
        model
    }

    /// The limits the model enforces.
    pub fn limits(&self) -> &StateLimits {
        &self.limits
    }

    /// The seq of the last change.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds no key.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The sum of its keys' and values' lengths.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The entries, sorted by key (for snapshots).
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(k, e)| (k.as_str(), e))
    }

    /// The remembered write ids, each with the seq its write was answered with (for
    /// snapshots: [`StateModel::restore`] takes them back).
    pub fn write_tags(&self) -> impl Iterator<Item = (u64, WriteTag)> + '_ {
        self.write_ids.tags()
    }

    /// Answers a `state.get`: the reply body, a dict key -> `{seq, value}` of the keys asked
    /// for that are present (every key for an empty list), in key order.
    pub fn get(&self, body: &[u8]) -> Result<Vec<u8>, BadRequest> {
        let keys = request::parse_get(body, &self.limits)?;
        let found: Vec<(&str, &Entry)> = if keys.is_empty() {
            self.entries().collect()
        } else {
            let mut found: Vec<_> = keys
                .into_iter()
                .filter_map(|k| self.entries.get_key_value(k))
                .map(|(k, e)| (k.as_str(), e))
                .collect();
            found.sort_unstable_by_key(|&(k, _)| k);
            found.dedup_by_key(|&mut (k, _)| k);
            found
        };
        let size: usize = found
            .iter()
            .map(|(k, e)| k.len() + e.value.len() + 40)
            .sum();
        let mut reply = Vec::with_capacity(size + 2);
        reply.push(b'd');
        for (key, entry) in found {
            put_entry(&mut reply, key, entry);
        }
        reply.push(b'e');
        Ok(reply)
    }

    /// Applies a `state.set` body (see DESIGN.md): all entries or none, one seq each.
    pub fn set(
        &mut self,
        body: &[u8],
        write_id: Option<&[u8]>,
        now_ms: u64,
        term: u64,
    ) -> Result<WriteOutcome, BadRequest> {
        let digest = match self.check_write_id(STATE_SET, body, write_id)? {
            Prior::Repeat(seq) => return Ok(WriteOutcome::Repeat { seq }),
            Prior::Fresh(digest) => digest,
        };
        let entries = request::parse_set(body, &self.limits)?;
        let (mut keys, mut bytes) = (self.entries.len(), self.bytes);
        for entry in &entries {
            let current = self.entries.get(entry.key);
            if let Some(expected) = entry.if_seq {
                let actual = current.map_or(0, |e| e.seq);
                if actual != expected {
                    return Err(BadRequest::IfSeqFailed {
                        key: entry.key.into(),
                        expected,
                        actual,
                    });
                }
            }
            match current {
                Some(old) => bytes = bytes - old.value.len() + entry.value.len(),
                None => {
                    keys += 1;
                    bytes += entry.key.len() + entry.value.len();
                }
            }
        }
        // A write that does not grow the model is let through even if the model is over a
        // lowered cap, so the model can shrink back under it.
        let over_keys = keys > self.limits.max_keys && keys > self.entries.len();
        let over_bytes = bytes > self.limits.max_bytes && bytes > self.bytes;
        if over_keys || over_bytes {
            return Err(BadRequest::ModelFull {
                keys,
                bytes,
                max_keys: self.limits.max_keys,
                max_bytes: self.limits.max_bytes,
            });
        }
        let mut changes = Vec::with_capacity(entries.len());
        for entry in entries {
            self.seq += 1;
            let expires_at_ms = entry.ttl_ms.map(|ttl| now_ms.saturating_add(ttl));
            let stored = Entry {
                seq: self.seq,
                value: entry.value.to_vec(),
                expires_at_ms,
            };
            self.put_str(entry.key, stored);
            changes.push(Change {
                seq: self.seq,
                term,
                key: entry.key.to_owned(),
                cause: Cause::Set,
                value: Some(entry.value.to_vec()),
                expires_at_ms,
                write: None,
            });
        }
        Ok(self.finish_write(changes, write_id, digest, now_ms))
    }

    /// Applies a `state.del` body: each present key takes a seq; absent keys take none.
    pub fn del(
        &mut self,
        body: &[u8],
        write_id: Option<&[u8]>,
        now_ms: u64,
        term: u64,
    ) -> Result<WriteOutcome, BadRequest> {
        let digest = match self.check_write_id(STATE_DEL, body, write_id)? {
            Prior::Repeat(seq) => return Ok(WriteOutcome::Repeat { seq }),
            Prior::Fresh(digest) => digest,
        };
        let keys = request::parse_del(body, &self.limits)?;
        let mut changes = Vec::new();
        for key in keys {
            if self.remove(key).is_some() {
                self.seq += 1;
                changes.push(removal(self.seq, term, key, Cause::Delete));
            }
        }
        if changes.is_empty() {
            return Ok(WriteOutcome::NoChange { seq: self.seq });
        }
        Ok(self.finish_write(changes, write_id, digest, now_ms))
    }

    /// Applies a change made elsewhere (by the peer, or read back from the log): it must
    /// take the next seq. Its write id, if any, is remembered with its seq.
    pub fn apply(&mut self, change: &Change) -> Result<(), ApplyError> {
        if change.seq != self.seq.wrapping_add(1) {
            return Err(ApplyError::OutOfOrder {
                at: self.seq,
                got: change.seq,
            });
        }
        match change.cause {
            Cause::Set => {
                let Some(value) = &change.value else {
                    return Err(ApplyError::NoValue {
                        seq: change.seq,
                        key: change.key.clone(),
                    });
                };
                let entry = Entry {
                    seq: change.seq,
                    value: value.clone(),
                    expires_at_ms: change.expires_at_ms,
                };
                self.put_str(&change.key, entry);
            }
            Cause::Delete | Cause::Expire => {
                if self.remove(&change.key).is_none() {
                    return Err(ApplyError::Absent {
                        seq: change.seq,
                        key: change.key.clone(),
                    });
                }
            }
        }
        self.seq = change.seq;
        if let Some(tag) = &change.write {
            self.write_ids.remember(tag.clone(), change.seq);
        }
        Ok(())
    }

    /// Removes every entry whose TTL has run out (`expires_at_ms <= now_ms`), in deadline
    /// order, each as a [`Cause::Expire`] change with its own seq.
    pub fn expire(&mut self, now_ms: u64, term: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        while let Some((deadline, _)) = self.deadlines.first() {
            if *deadline > now_ms {
                break;
            }
            let Some((_, key)) = self.deadlines.pop_first() else {
                break;
            };
            if self.remove(&key).is_some() {
                self.seq += 1;
                changes.push(removal(self.seq, term, &key, Cause::Expire));
            }
        }
        changes
    }

    /// When the next entry expires, if any entry has a TTL.
    pub fn next_expiry_ms(&self) -> Option<u64> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    /// Forgets the write ids whose writes were applied more than `write_id_ttl_ms` ago and
    /// returns them, so the store can delete them too.
    pub fn forget_write_ids(&mut self, now_ms: u64) -> Vec<Vec<u8>> {
        self.write_ids.forget(now_ms, self.limits.write_id_ttl_ms)
    }

    /// The reply body of an applied or repeated write: exactly `{seq}`.
    pub fn write_reply(seq: u64) -> Vec<u8> {
        let mut reply = Vec::with_capacity(32);
        reply.extend_from_slice(b"d3:seq");
        put_uint(&mut reply, seq);
        reply.push(b'e');
        reply
    }

    /// Refuses an oversized body before hashing it, then asks the write ids.
    fn check_write_id(
        &self,
        service: &str,
        body: &[u8],
        write_id: Option<&[u8]>,
    ) -> Result<Prior, BadRequest> {
        if write_id.is_some() {
            request::check_size(body, &self.limits)?;
        }
        self.write_ids.check(service, body, write_id)
    }

    /// Tags the last change with the write id and remembers it.
    fn finish_write(
        &mut self,
        mut changes: Vec<Change>,
        write_id: Option<&[u8]>,
        digest: u64,
        now_ms: u64,
    ) -> WriteOutcome {
        if let (Some(id), Some(last)) = (write_id, changes.last_mut()) {
            let tag = WriteTag {
                id: id.to_vec(),
                digest,
                at_ms: now_ms,
            };
            self.write_ids.remember(tag.clone(), last.seq);
            last.write = Some(tag);
        }
        WriteOutcome::Applied {
            seq: self.seq,
            changes,
        }
    }

    /// Sets a key whose `String` the caller has not allocated.
    fn put_str(&mut self, key: &str, entry: Entry) {
        if self.entries.contains_key(key) {
            self.replace(key, entry);
        } else {
            self.put(key.to_owned(), entry);
        }
    }

    fn put(&mut self, key: String, entry: Entry) {
        if self.entries.contains_key(&key) {
            return self.replace(&key, entry);
        }
        if let Some(deadline) = entry.expires_at_ms {
            self.deadlines.insert((deadline, key.clone()));
        }
        self.bytes += key.len() + entry.value.len();
        self.entries.insert(key, entry);
    }

    fn replace(&mut self, key: &str, entry: Entry) {
        let Some(slot) = self.entries.get_mut(key) else {
            return;
        };
        let (new_len, new_deadline) = (entry.value.len(), entry.expires_at_ms);
        let old = std::mem::replace(slot, entry);
        self.bytes = self.bytes - old.value.len() + new_len;
        if old.expires_at_ms != new_deadline {
            if let Some(deadline) = old.expires_at_ms {
                self.deadlines.remove(&(deadline, key.to_owned()));
            }
            if let Some(deadline) = new_deadline {
                self.deadlines.insert((deadline, key.to_owned()));
            }
        }
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let (key, entry) = self.entries.remove_entry(key)?;
        self.bytes -= key.len() + entry.value.len();
        if let Some(deadline) = entry.expires_at_ms {
            self.deadlines.remove(&(deadline, key));
        }
        Some(entry)
    }
}

/// Appends `key` and its `{seq, value}` dict, as `state.get` and `state.snapshot` reply.
pub fn put_entry(out: &mut Vec<u8>, key: &str, entry: &Entry) {
    put_bytes(out, key.as_bytes());
    out.extend_from_slice(b"d3:seq");
    put_uint(out, entry.seq);
    out.extend_from_slice(b"5:value");
    out.extend_from_slice(&entry.value);
    out.push(b'e');
}

/// `{error: text}`: the reply body of a refused state request.
pub fn error_reply(text: &str) -> Vec<u8> {
    let mut reply = Vec::with_capacity(text.len() + 16);
    reply.extend_from_slice(b"d5:error");
    put_bytes(&mut reply, text.as_bytes());
    reply.push(b'e');
    reply
}

fn removal(seq: u64, term: u64, key: &str, cause: Cause) -> Change {
    Change {
        seq,
        term,
        key: key.to_owned(),
        cause,
        value: None,
        expires_at_ms: None,
        write: None,
    }
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
