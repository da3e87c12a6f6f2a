//! The write ids the state model remembers, so a write resent after a lost reply or a
//! failover is applied once and answered with its original `{seq}`.
//!
//! Kept apart from the map itself: ids are global and live for `write_id_ttl_ms` after their
//! write was applied. Each id is held once (a busy broker remembers hundreds of thousands);
//! forgetting is a scan, done every few seconds and skipped while the oldest id is young.
//! The digest
//! of a request is persisted and replicated with its id, so it is a fixed hash (FNV-1a),
//! never std's `DefaultHasher`, which may change between builds.

use std::collections::HashMap;

use hearth_proto::state::WriteTag;

use super::request::{shown, BadRequest};

/// Longest write id, in bytes.
pub const MAX_WRITE_ID_BYTES: usize = 64;

/// What a write id says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prior {
    /// Already applied: answer with this seq and change nothing.
    Repeat(u64),
    /// Not seen (or no id): apply it, remembering the id with this digest.
    Fresh(u64),
}

/// What is remembered of one id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct WriteRecord {
    seq: u64,
    digest: u64,
    at_ms: u64,
}

/// The remembered write ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteIds {
    by_id: HashMap<Box<[u8]>, WriteRecord>,
    /// No id was applied before this (a lower bound): forgetting scans only once the
    /// oldest could be due.
    oldest_at_ms: u64,
}

impl WriteIds {
    /// Refuses an id that is not 1-64 bytes or that was used for another request; answers
    /// a repeat; else the digest to remember with the id.
    pub fn check(
        &self,
        service: &str,
        body: &[u8],
        id: Option<&[u8]>,
    ) -> Result<Prior, BadRequest> {
        let Some(id) = id else {
            return Ok(Prior::Fresh(0));
        };
        if id.is_empty() || id.len() > MAX_WRITE_ID_BYTES {
            return Err(BadRequest::BadWriteId { len: id.len() });
        }
        let digest = write_digest(service, body);
        match self.by_id.get(id) {
            None => Ok(Prior::Fresh(digest)),
            Some(known) if known.digest == digest => Ok(Prior::Repeat(known.seq)),
            Some(_) => Err(BadRequest::WriteIdReused { id: shown(id) }),
        }
    }

    /// Remembers an id whose write was answered with `seq`.
    pub fn remember(&mut self, tag: WriteTag, seq: u64) {
        let record = WriteRecord {
            seq,
            digest: tag.digest,
            at_ms: tag.at_ms,
        };
        if self.by_id.is_empty() || tag.at_ms < self.oldest_at_ms {
            self.oldest_at_ms = tag.at_ms;
        }
        self.by_id.insert(tag.id.into_boxed_slice(), record);
    }

    /// Forgets the ids applied more than `ttl_ms` before `now_ms` and returns them.
    pub fn forget(&mut self, now_ms: u64, ttl_ms: u64) -> Vec<Vec<u8>> {
        let mut forgotten = Vec::new();
        if self.by_id.is_empty() || self.oldest_at_ms.saturating_add(ttl_ms) >= now_ms {
            return forgotten;
        }
        let mut oldest = u64::MAX;
        self.by_id.retain(|id, r| {
            let keep = r.at_ms.saturating_add(ttl_ms) >= now_ms;
            if keep {
                oldest = oldest.min(r.at_ms);
            } else {
                forgotten.push(id.to_vec());
            }
            keep
        });
        self.oldest_at_ms = oldest;
        forgotten
    }

    /// Every remembered id as a tag, with the seq its write was answered with.
    pub fn tags(&self) -> impl Iterator<Item = (u64, WriteTag)> + '_ {
        self.by_id.iter().map(|(id, r)| {
            let tag = WriteTag {
                id: id.to_vec(),
                digest: r.digest,
                at_ms: r.at_ms,
            };
            (r.seq, tag)
        })
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// The digest remembered with a write id: 64-bit FNV-1a of the service name, a zero byte and
/// the body. It is persisted and replicated, so it must never change between builds.
pub fn write_digest(service: &str, body: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let bytes = service.as_bytes().iter().chain([0u8].iter()).chain(body);
    bytes.fold(OFFSET, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(PRIME))
}
