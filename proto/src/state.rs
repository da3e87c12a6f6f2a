//! The state model's records on the wire and on disk.
//!
//! * [`Change`]: one change of the state model (a set, a delete or a TTL expiry) with the
//!   global sequence number it took and the Binary Star term of the broker that made it. The
//!   same Bencode record is replicated to the passive broker and kept in each broker's sled
//!   change log, so a change means the same thing wherever it is read.
//! * [`FeedUpdate`]: one message of the change feed (the broker's `--publish` PUB socket):
//!   `[key, seq as decimal ASCII, value as Bencode]`, an empty value frame for a delete or an
//!   expiry. Subscribers filter by key prefix (ZeroMQ matches the first frame).
//!
//! Values are carried as their canonical Bencode encoding (the broker validated it on the
//! way in), never re-interpreted: a value read back is byte for byte the value written.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::Frame;

/// Read keys of the state model: body is a Bencode list of keys (empty: every key).
pub const STATE_GET: &str = "state.get";
/// Write keys: body is a Bencode dict key -> value (or `{value, ttl_ms?, if_seq?}`).
pub const STATE_SET: &str = "state.set";
/// Delete keys: body is a Bencode list of keys.
pub const STATE_DEL: &str = "state.del";

/// What made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Cause {
    /// A `state.set` entry.
    #[serde(rename = "set")]
    Set,
    /// A `state.del` of a present key.
    #[serde(rename = "del")]
    Delete,
    /// The entry's TTL ran out.
    #[serde(rename = "exp")]
    Expire,
}

impl Cause {
    /// The name in the record.
    pub fn name(self) -> &'static str {
        match self {
            Cause::Set => "set",
            Cause::Delete => "del",
            Cause::Expire => "exp",
        }
    }
}

/// Appends a Bencode byte string.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    use std::io::Write;
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{}:", bytes.len());
    out.extend_from_slice(bytes);
}

/// Appends a Bencode integer.
fn put_int(out: &mut Vec<u8>, n: u64) {
    use std::io::Write;
    let _ = write!(out, "i{n}e");
}

/// The write id a client sent with a write, carried on the last change of that write so the
/// passive and a restarted broker remember it too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WriteTag {
    /// The opaque id (1-64 bytes).
    #[serde(rename = "i", with = "serde_bytes")]
    pub id: Vec<u8>,
    /// A digest of the request (service and body), so a repeat with another body is refused.
    #[serde(rename = "d")]
    pub digest: u64,
    /// Wall-clock milliseconds since the Unix epoch when the write was applied; ids are
    /// forgotten some minutes after this.
    #[serde(rename = "a")]
    pub at_ms: u64,
}

/// One change of the state model.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Change {
    /// The global sequence number this change took.
    #[serde(rename = "s")]
    pub seq: u64,
    /// The Binary Star term of the broker that made the change (0 for a standalone broker).
    #[serde(rename = "t")]
    pub term: u64,
    /// The key.
    #[serde(rename = "k")]
    pub key: String,
    /// What made it.
    #[serde(rename = "c")]
    pub cause: Cause,
    /// The new value's canonical Bencode (a set), or none (a delete or an expiry).
    #[serde(
        rename = "v",
        default,
        skip_serializing_if = "Option::is_none",
        with = "serde_bytes"
    )]
    pub value: Option<Vec<u8>>,
    /// When the entry expires, in wall-clock milliseconds since the Unix epoch (a set with a
    /// TTL). Absolute, so the broker that holds the entry after failover expires it on time.
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
    /// The write id of the request this change ends, if it carried one.
    #[serde(rename = "w", default, skip_serializing_if = "Option::is_none")]
    pub write: Option<WriteTag>,
}

/// A record that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    /// Not the Bencode the record type needs.
    #[error("bad state record: {0}")]
    Bencode(String),
    /// A change-feed message without exactly three frames.
    #[error("a feed message has 3 frames, this one has {0}")]
    FeedFrames(usize),
    /// A feed key that is not UTF-8.
    #[error("feed key is not UTF-8")]
    FeedKey,
    /// A feed sequence number that is not decimal ASCII.
    #[error("feed sequence number is not decimal ASCII")]
    FeedSeq,
}

impl Change {
    /// The Bencode record (canonical: keys in order). Written by hand rather than through
    /// serde: every change is encoded for the log and for replication, and this is the
    /// broker's hottest path; [`Change::decode`] reads it back through serde, and the tests
    /// check both agree.
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(64 + self.key.len() + self.value.as_ref().map_or(0, Vec::len));
        self.encode_into(&mut out);
        out
    }

    /// Appends the Bencode record to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(b'd');
        put_bytes(out, b"c");
        put_bytes(out, self.cause.name().as_bytes());
        put_bytes(out, b"k");
        put_bytes(out, self.key.as_bytes());
        put_bytes(out, b"s");
        put_int(out, self.seq);
        put_bytes(out, b"t");
        put_int(out, self.term);
        // An option is a one-element list, as bendy's serde writes (and reads) it.
        if let Some(value) = &self.value {
            put_bytes(out, b"v");
            out.push(b'l');
            put_bytes(out, value);
            out.push(b'e');
        }
        if let Some(tag) = &self.write {
            put_bytes(out, b"w");
            out.extend_from_slice(b"ld");
            put_bytes(out, b"a");
            put_int(out, tag.at_ms);
            put_bytes(out, b"d");
            put_int(out, tag.digest);
            put_bytes(out, b"i");
            put_bytes(out, &tag.id);
            out.extend_from_slice(b"ee");
        }
        if let Some(at) = self.expires_at_ms {
            put_bytes(out, b"x");
            out.push(b'l');
            put_int(out, at);
            out.push(b'e');
        }
        out.push(b'e');
    }

    /// Reads a Bencode record.
    pub fn decode(bytes: &[u8]) -> Result<Change, RecordError> {
        bendy::serde::from_bytes(bytes).map_err(|e| RecordError::Bencode(e.to_string()))
    }

    /// The change-feed message for this change.
    pub fn feed_update(&self) -> FeedUpdate {
        FeedUpdate {
            key: self.key.clone(),
            seq: self.seq,
            value: self.value.clone(),
        }
    }
}

/// One message of the change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedUpdate {
    /// The key that changed.
    pub key: String,
    /// The sequence number the change took.
    pub seq: u64,
    /// The new value's Bencode, or none for a delete or an expiry.
    pub value: Option<Vec<u8>>,
}

impl FeedUpdate {
    /// `[key, seq, value]`; an empty value frame for a delete or an expiry.
    pub fn encode(&self) -> Vec<Frame> {
        vec![
            self.key.as_bytes().to_vec(),
            self.seq.to_string().into_bytes(),
            self.value.clone().unwrap_or_default(),
        ]
    }

    /// Reads a feed message.
    pub fn decode(frames: &[Frame]) -> Result<FeedUpdate, RecordError> {
        let [key, seq, value] = frames else {
            return Err(RecordError::FeedFrames(frames.len()));
        };
        let key = String::from_utf8(key.clone()).map_err(|_| RecordError::FeedKey)?;
        let seq = std::str::from_utf8(seq)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .ok_or(RecordError::FeedSeq)?;
        let value = (!value.is_empty()).then(|| value.clone());
        Ok(FeedUpdate { key, seq, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(write: Option<WriteTag>) -> Change {
        Change {
            seq: 42,
            term: 3,
            key: "kitchen/temp".into(),
            cause: Cause::Set,
            value: Some(b"i215e".to_vec()),
            expires_at_ms: Some(1_800_000_000_000),
            write,
        }
    }

    #[test]
    fn change_round_trips_with_and_without_optional_fields() {
        let tagged = change(Some(WriteTag {
            id: b"w-1".to_vec(),
            digest: 99,
            at_ms: 5,
        }));
        assert_eq!(Change::decode(&tagged.encode()), Ok(tagged));
        let deleted = Change {
            cause: Cause::Delete,
            value: None,
            expires_at_ms: None,
            ..change(None)
        };
        let bytes = deleted.encode();
        assert!(!bytes.windows(3).any(|w| w == b"1:v"), "{bytes:?}");
        assert_eq!(Change::decode(&bytes), Ok(deleted));
    }

    #[test]
    fn the_hand_written_encoding_is_what_serde_writes() {
        let tagged = change(Some(WriteTag {
            id: vec![0, 1, 255],
            digest: u64::MAX,
            at_ms: 5,
        }));
        let bare = Change {
            cause: Cause::Expire,
            value: None,
            expires_at_ms: None,
            ..change(None)
        };
        for c in [tagged, bare, change(None)] {
            assert_eq!(c.encode(), bendy::serde::to_bytes(&c).unwrap(), "{c:?}");
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Change::decode(b"").is_err());
        assert!(Change::decode(b"d1:si1ee").is_err());
    }

    #[test]
    fn feed_round_trips() {
        let set = change(None).feed_update();
        let frames = set.encode();
        assert_eq!(frames[0], b"kitchen/temp");
        assert_eq!(frames[1], b"42");
        assert_eq!(frames[2], b"i215e");
        assert_eq!(FeedUpdate::decode(&frames), Ok(set));
        let gone = FeedUpdate {
            key: "hall/motion".into(),
            seq: 7,
            value: None,
        };
        let frames = gone.encode();
        assert!(frames[2].is_empty());
        assert_eq!(FeedUpdate::decode(&frames), Ok(gone));
    }

    #[test]
    fn bad_feed_messages() {
        assert_eq!(
            FeedUpdate::decode(&[b"k".to_vec()]),
            Err(RecordError::FeedFrames(1))
        );
        for seq in [&b""[..], b"-1", b"1x", b"99999999999999999999999"] {
            assert_eq!(
                FeedUpdate::decode(&[b"k".to_vec(), seq.to_vec(), vec![]]),
                Err(RecordError::FeedSeq),
                "{seq:?}"
            );
        }
        assert_eq!(
            FeedUpdate::decode(&[vec![0xff], b"1".to_vec(), vec![]]),
            Err(RecordError::FeedKey)
        );
    }
}
