//! The state model through the broker's built-in services: `state.get`, `state.set`,
//! `state.del` and `state.snapshot`.
//!
//! ```no_run
//! use hearth_client::{Client, ClientConfig};
//! use hearth_client::state::{Value, Write};
//! let mut client = Client::new(ClientConfig::new(["tcp://127.0.0.1:5555"]))?;
//! let seq = client.state().set([("kitchen/temp", Write::new(215))])?;
//! let entries = client.state().get(&["kitchen/temp"])?;
//! assert_eq!(entries["kitchen/temp"].value, Value::Int(215));
//! assert_eq!(entries["kitchen/temp"].seq, seq);
//! # Ok::<(), hearth_client::ClientError>(())
//! ```
//!
//! Writes are exactly-once even though delivery is at least once: every `set`/`del` carries
//! a random [`WriteId`] as a second body frame, and the client's retries (after a timeout,
//! on the other broker of a pair) resend the very same frames, so the broker applies the
//! write once and answers a repeat with the original sequence number. A caller that retries
//! a failed write itself should reuse the id, with [`StateClient::set_as`] and
//! [`StateClient::del_as`].
//!
//! The request and reply shapes are pure functions ([`encode_set`], [`decode_entries`], ...)
//! so they are tested without a broker.

mod value;

use std::collections::BTreeMap;
use std::time::Duration;

use hearth_proto::state::{STATE_DEL, STATE_GET, STATE_SET};

pub use value::{Value, ValueError, MAX_DECODE_DEPTH};

use crate::{Client, ClientError};

/// hearth's own service for change-feed followers: the entries under a key prefix and the
/// global sequence number they are current at.
pub const STATE_SNAPSHOT: &str = "state.snapshot";

/// One key's entry as the broker holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The sequence number of the key's last change.
    pub seq: u64,
    /// The value.
    pub value: Value,
}

/// The state model under a prefix at one moment, for a change-feed follower to start from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The model's global sequence number when the snapshot was taken: every change up to
    /// it is in `entries`, none after it.
    pub seq: u64,
    /// The entries whose keys start with the prefix asked for.
    pub entries: BTreeMap<String, Entry>,
}

/// One key of a `state.set`: the value and the conditions of the write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The new value.
    pub value: Value,
    /// Remove the entry this long after the write is applied (rounded up to whole
    /// milliseconds). `None`: keep it, and clear a TTL an earlier write set.
    pub ttl: Option<Duration>,
    /// Apply only if the key's current seq is this (0: only if the key is absent); the
    /// broker refuses the whole write otherwise.
    pub if_seq: Option<u64>,
}

impl Write {
    /// An unconditional write of `value` with no TTL.
    pub fn new(value: impl Into<Value>) -> Write {
        Write {
            value: value.into(),
            ttl: None,
            if_seq: None,
        }
    }

    /// The same write, with a time to live.
    pub fn ttl(self, ttl: Duration) -> Write {
        Write {
            ttl: Some(ttl),
            ..self
        }
    }

    /// The same write, applied only if the key's seq is `seq` (0: only if absent).
    pub fn if_seq(self, seq: u64) -> Write {
        Write {
            if_seq: Some(seq),
            ..self
        }
    }
}

/// The opaque id that makes a write exactly-once: the broker applies a write id once and
/// answers a repeat with the original seq, across failover too.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WriteId(Vec<u8>);

impl WriteId {
    /// 16 random bytes: a new id for a new logical write.
    pub fn random() -> WriteId {
        WriteId(rand::random::<[u8; 16]>().to_vec())
    }

    /// An id of the caller's choosing, 1 to 64 bytes.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Result<WriteId, ClientError> {
        let bytes = bytes.into();
        if bytes.is_empty() || bytes.len() > 64 {
            return Err(ClientError::InvalidRequest(format!(
                "a write id has 1 to 64 bytes, not {}",
                bytes.len()
            )));
        }
        Ok(WriteId(bytes))
    }

    /// The id's bytes, as sent in the request's second body frame.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The state-model services of one [`Client`], borrowed: `client.state().get(...)`.
///
/// Every method is one request through [`Client::call`], so it fails over between the
/// brokers of a pair like any call, within the client's timeout.
pub struct StateClient<'a> {
    client: &'a mut Client,
}

impl Client {
    /// The state-model services through this client.
    pub fn state(&mut self) -> StateClient<'_> {
        StateClient { client: self }
    }
}

impl StateClient<'_> {
    /// The entries of `keys` that exist (absent keys are simply missing from the map);
    /// no keys: every entry of the model.
    pub fn get(&mut self, keys: &[&str]) -> Result<BTreeMap<String, Entry>, ClientError> {
        let reply = self.call(STATE_GET, vec![encode_keys(keys)])?;
        decode_entries(&reply, STATE_GET)
    }

    /// Writes every entry at once (all or nothing) under a fresh write id; returns the seq
    /// of the last change, which is the model's seq right after the write.
    pub fn set<K: Into<String>>(
        &mut self,
        entries: impl IntoIterator<Item = (K, Write)>,
    ) -> Result<u64, ClientError> {
        self.set_as(&WriteId::random(), entries)
    }

    /// [`StateClient::set`] under a write id of the caller's: sending the same write with
    /// the same id again (after a timeout, say) applies it at most once.
    pub fn set_as<K: Into<String>>(
        &mut self,
        id: &WriteId,
        entries: impl IntoIterator<Item = (K, Write)>,
    ) -> Result<u64, ClientError> {
        let entries: Vec<(String, Write)> =
            entries.into_iter().map(|(k, w)| (k.into(), w)).collect();
        let body = encode_set(&entries)?;
        let reply = self.call(STATE_SET, vec![body, id.as_bytes().to_vec()])?;
        decode_seq(&reply, STATE_SET)
    }

    /// Deletes `keys` under a fresh write id; returns the model's seq after the delete
    /// (deleting an absent key changes nothing and takes no seq).
    pub fn del(&mut self, keys: &[&str]) -> Result<u64, ClientError> {
        self.del_as(&WriteId::random(), keys)
    }

    /// [`StateClient::del`] under a write id of the caller's.
    pub fn del_as(&mut self, id: &WriteId, keys: &[&str]) -> Result<u64, ClientError> {
        let reply = self.call(STATE_DEL, vec![encode_keys(keys), id.as_bytes().to_vec()])?;
        decode_seq(&reply, STATE_DEL)
    }

    /// The entries under `prefix` (all of them for `None`) and the global seq they are
    /// current at: where a change-feed follower starts.
    pub fn snapshot(&mut self, prefix: Option<&str>) -> Result<Snapshot, ClientError> {
        let body = Value::List(prefix.into_iter().map(Value::from).collect()).to_bencode();
        let reply = self.call(STATE_SNAPSHOT, vec![body])?;
        decode_snapshot(&reply)
    }

    fn call(&mut self, service: &str, body: Vec<Vec<u8>>) -> Result<Value, ClientError> {
        let reply = self.client.call(service, body)?;
        let [frame] = reply.as_slice() else {
            return Err(ClientError::BadReply(format!(
                "{service}: a reply of {} frames (expected one)",
                reply.len()
            )));
        };
        let value = Value::from_bencode(frame)
            .map_err(|e| ClientError::BadReply(format!("{service}: {e}")))?;
        match refusal(&value) {
            Some(text) => Err(ClientError::Refused(text)),
            None => Ok(value),
        }
    }
}

/// A list of keys, as `state.get` and `state.del` take it.
pub fn encode_keys(keys: &[&str]) -> Vec<u8> {
    Value::List(keys.iter().map(|k| Value::from(*k)).collect()).to_bencode()
}

/// The `state.set` body: a dict key -> `{value, ttl_ms?, if_seq?}`. Every entry is sent in
/// the entry form, so a value that is itself a dict with a `value` key is stored as it is.
pub fn encode_set(entries: &[(String, Write)]) -> Result<Vec<u8>, ClientError> {
    let mut body = BTreeMap::new();
    for (key, write) in entries {
        let mut entry = BTreeMap::new();
        entry.insert(b"value".to_vec(), write.value.clone());
        if let Some(ttl) = write.ttl {
            let ms = ttl.as_nanos().div_ceil(1_000_000);
            let ms = i64::try_from(ms).ok().filter(|ms| *ms > 0).ok_or_else(|| {
                ClientError::InvalidRequest(format!("{key}: TTL must be above zero"))
            })?;
            entry.insert(b"ttl_ms".to_vec(), Value::Int(ms));
        }
        if let Some(seq) = write.if_seq {
            let seq = i64::try_from(seq).map_err(|_| {
                ClientError::InvalidRequest(format!("{key}: if_seq {seq} is out of range"))
            })?;
            entry.insert(b"if_seq".to_vec(), Value::Int(seq));
        }
        if body
            .insert(key.as_bytes().to_vec(), Value::Dict(entry))
            .is_some()
        {
            return Err(ClientError::InvalidRequest(format!(
                "{key} is written twice in one request"
            )));
        }
    }
    Ok(Value::Dict(body).to_bencode())
}

/// The text of an `{error: "..."}` reply. A reply is a refusal only when `error` holds a
/// byte string, so a `state.get` of a key named `error` (whose entry is a dict) is not one.
pub fn refusal(reply: &Value) -> Option<String> {
    match reply {
        Value::Dict(d) if d.len() == 1 => d
            .get(&b"error"[..])
            .and_then(Value::as_bytes)
            .map(|text| String::from_utf8_lossy(text).into_owned()),
        _ => None,
    }
}

/// A `state.get` reply (or a snapshot's `entries`): dict key -> `{seq, value}`.
pub fn decode_entries(
    reply: &Value,
    service: &str,
) -> Result<BTreeMap<String, Entry>, ClientError> {
    let bad = |what: String| ClientError::BadReply(format!("{service}: {what}"));
    let Value::Dict(entries) = reply else {
        return Err(bad("the reply is not a dict".into()));
    };
    let mut out = BTreeMap::new();
    for (key, entry) in entries {
        let key = String::from_utf8(key.clone()).map_err(|_| bad("a key is not UTF-8".into()))?;
        let seq = entry
            .get("seq")
            .and_then(Value::as_int)
            .and_then(|s| u64::try_from(s).ok())
            .ok_or_else(|| bad(format!("{key}: no seq")))?;
        let value = entry
            .get("value")
            .ok_or_else(|| bad(format!("{key}: no value")))?;
        out.insert(
            key,
            Entry {
                seq,
                value: value.clone(),
            },
        );
    }
    Ok(out)
}

/// A write's reply: `{seq}`.
pub fn decode_seq(reply: &Value, service: &str) -> Result<u64, ClientError> {
    seq_field(reply).ok_or_else(|| ClientError::BadReply(format!("{service}: no seq in the reply")))
}

/// A `state.snapshot` reply: `{entries: {key: {seq, value}}, seq}`.
pub fn decode_snapshot(reply: &Value) -> Result<Snapshot, ClientError> {
    let seq = decode_seq(reply, STATE_SNAPSHOT)?;
    let entries = reply.get("entries").ok_or_else(|| {
        ClientError::BadReply(format!("{STATE_SNAPSHOT}: no entries in the reply"))
    })?;
    Ok(Snapshot {
        seq,
        entries: decode_entries(entries, STATE_SNAPSHOT)?,
    })
}

fn seq_field(reply: &Value) -> Option<u64> {
    reply
        .get("seq")
        .and_then(Value::as_int)
        .and_then(|s| u64::try_from(s).ok())
}

#[cfg(test)]
mod tests;
