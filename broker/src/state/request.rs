//! The bodies of `state.get`, `state.set` and `state.del`, read and checked against the
//! limits before the model is touched, and [`BadRequest`]: every reason a request is refused.
//!
//! Reading borrows from the body: keys are `&str` and values are the canonical sub-slices of
//! the request, so a write copies each value once, into the model.

use hearth_proto::state::{STATE_DEL, STATE_GET, STATE_SET};
use thiserror::Error;

use super::limits::StateLimits;
use super::value::{self, Kind, Node, NotBencode};

/// Why a state request is refused. Nothing changes and no sequence number is taken; the
/// client gets `{error: <Display text>}` and a metric counts [`BadRequest::reason`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BadRequest {
    /// The body is not one canonical Bencode value.
    #[error("not Bencode: {0}")]
    NotBencode(NotBencode),
    /// A value nests lists and dicts deeper than the limit.
    #[error("a value nests lists and dicts deeper than {max} levels")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// Bencode, but not the shape the service reads.
    #[error("{service} takes {expected}")]
    WrongShape {
        /// The service asked.
        service: &'static str,
        /// What its body must be.
        expected: &'static str,
    },
    /// A key that is empty, too long or not UTF-8.
    #[error("bad key {key:?}: {why}")]
    BadKey {
        /// The key as far as it can be shown.
        key: String,
        /// What is wrong with it.
        why: String,
    },
    /// A value whose Bencode encoding is over the limit.
    #[error("the value of {key} is {size} bytes, the limit is {max}")]
    ValueTooLarge {
        /// Its key.
        key: String,
        /// Its encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// More keys in one request than the limit.
    #[error("more than {max} keys in one request")]
    TooManyKeys {
        /// The limit.
        max: usize,
    },
    /// `state.set {}` or `state.del []`.
    #[error("{service} needs at least one key")]
    Empty {
        /// The service asked.
        service: &'static str,
    },
    /// A field other than `value`, `ttl_ms` and `if_seq` in an entry `{value, ...}`.
    #[error("unknown field {field:?} in the entry for {key} (the fields are value, ttl_ms and if_seq; wrap a dict that has a value key as {{value: <dict>}})")]
    UnknownField {
        /// The entry's key.
        key: String,
        /// The field.
        field: String,
    },
    /// A `ttl_ms` that is not an integer > 0.
    #[error("ttl_ms of {key} must be an integer > 0")]
    BadTtl {
        /// The entry's key.
        key: String,
    },
    /// An `if_seq` that is not an integer >= 0.
    #[error("if_seq of {key} must be an integer >= 0")]
    BadIfSeq {
        /// The entry's key.
        key: String,
    },
    /// An `if_seq` that does not match the key's current seq.
    #[error("if_seq {expected} failed for {key}: its seq is {actual}")]
    IfSeqFailed {
        /// The key.
        key: String,
        /// The seq the request expected.
        expected: u64,
        /// The key's seq (0: absent).
        actual: u64,
    },
    /// The write would take the model over its cap on keys or bytes.
    #[error("the state model is full: this write makes {keys} keys and {bytes} bytes, the limits are {max_keys} keys and {max_bytes} bytes")]
    ModelFull {
        /// Keys after the write.
        keys: usize,
        /// Key and value bytes after the write.
        bytes: usize,
        /// The cap on keys.
        max_keys: usize,
        /// The cap on bytes.
        max_bytes: usize,
    },
    /// The body is over the request size limit.
    #[error("the request is {size} bytes, the limit is {max}")]
    RequestTooLarge {
        /// The body's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A write id already used for a different request.
    #[error("write id {id} was used for a different request")]
    WriteIdReused {
        /// The id as far as it can be shown.
        id: String,
    },
    /// A write id that is not 1-64 bytes.
    #[error("a write id is 1-64 bytes, this one is {len}")]
    BadWriteId {
        /// Its length.
        len: usize,
    },
}

hearth_proto::label_enum! {
    /// Why a state request was refused: the `reason` label of
    /// `hearth_state_bad_requests_total`, one value per [`BadRequest`] variant and one for
    /// a `state.*` name that is no state service.
    pub enum BadRequestReason {
        /// [`BadRequest::NotBencode`].
        NotBencode => "not_bencode",
        /// [`BadRequest::TooDeep`].
        TooDeep => "too_deep",
        /// [`BadRequest::WrongShape`].
        WrongShape => "wrong_shape",
        /// [`BadRequest::BadKey`].
        BadKey => "bad_key",
        /// [`BadRequest::ValueTooLarge`].
        ValueTooLarge => "value_too_large",
        /// [`BadRequest::TooManyKeys`].
        TooManyKeys => "too_many_keys",
        /// [`BadRequest::Empty`].
        Empty => "empty",
        /// [`BadRequest::UnknownField`].
        UnknownField => "unknown_field",
        /// [`BadRequest::BadTtl`].
        BadTtl => "bad_ttl",
        /// [`BadRequest::BadIfSeq`].
        BadIfSeq => "bad_if_seq",
        /// [`BadRequest::IfSeqFailed`].
        IfSeqFailed => "if_seq_failed",
        /// [`BadRequest::ModelFull`].
        ModelFull => "model_full",
        /// [`BadRequest::RequestTooLarge`].
        RequestTooLarge => "request_too_large",
        /// [`BadRequest::WriteIdReused`].
        WriteIdReused => "write_id_reused",
        /// [`BadRequest::BadWriteId`].
        BadWriteId => "bad_write_id",
        /// A `state.*` service name that is none of the state services.
        UnknownService => "unknown_service",
    }
}

impl BadRequest {
    /// Why, as a metric label value.
    pub fn kind(&self) -> BadRequestReason {
        match self {
            BadRequest::NotBencode(_) => BadRequestReason::NotBencode,
            BadRequest::TooDeep { .. } => BadRequestReason::TooDeep,
            BadRequest::WrongShape { .. } => BadRequestReason::WrongShape,
            BadRequest::BadKey { .. } => BadRequestReason::BadKey,
            BadRequest::ValueTooLarge { .. } => BadRequestReason::ValueTooLarge,
            BadRequest::TooManyKeys { .. } => BadRequestReason::TooManyKeys,
            BadRequest::Empty { .. } => BadRequestReason::Empty,
            BadRequest::UnknownField { .. } => BadRequestReason::UnknownField,
            BadRequest::BadTtl { .. } => BadRequestReason::BadTtl,
            BadRequest::BadIfSeq { .. } => BadRequestReason::BadIfSeq,
            BadRequest::IfSeqFailed { .. } => BadRequestReason::IfSeqFailed,
            BadRequest::ModelFull { .. } => BadRequestReason::ModelFull,
            BadRequest::RequestTooLarge { .. } => BadRequestReason::RequestTooLarge,
            BadRequest::WriteIdReused { .. } => BadRequestReason::WriteIdReused,
            BadRequest::BadWriteId { .. } => BadRequestReason::BadWriteId,
        }
    }

    /// A short stable label for a metric (`hearth_state_bad_requests_total{reason}`).
    pub fn reason(&self) -> &'static str {
        self.kind().as_str()
    }
}

/// One entry of a `state.set`, borrowed from the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetEntry<'a> {
    /// The key.
    pub key: &'a str,
    /// The value's canonical Bencode (the entry wrapper, if any, taken off).
    pub value: &'a [u8],
    /// Time to live from when the change is applied, if any.
    pub ttl_ms: Option<u64>,
    /// Apply only if the key's seq is this (0: only if absent).
    pub if_seq: Option<u64>,
}

/// Reads a `state.set` body: a dict key -> value or `{value, ttl_ms?, if_seq?}`, in key order.
pub fn parse_set<'a>(
    body: &'a [u8],
    limits: &StateLimits,
) -> Result<Vec<SetEntry<'a>>, BadRequest> {
    let Kind::Dict(pairs) = parse_body(body, limits)?.kind() else {
        return Err(BadRequest::WrongShape {
            service: STATE_SET,
            expected: "a dict key -> value",
        });
    };
    let mut entries = Vec::new();
    for (key, node) in pairs {
        if entries.len() == limits.max_keys_per_request {
            return Err(BadRequest::TooManyKeys {
                max: limits.max_keys_per_request,
            });
        }
        let key = check_key(key, limits)?;
        entries.push(read_entry(key, node, limits)?);
    }
    if entries.is_empty() {
        return Err(BadRequest::Empty { service: STATE_SET });
    }
    Ok(entries)
}

/// Reads a `state.get` body: a list of keys; empty means every key.
pub fn parse_get<'a>(body: &'a [u8], limits: &StateLimits) -> Result<Vec<&'a str>, BadRequest> {
    parse_keys(STATE_GET, body, limits)
}

/// Reads a `state.del` body: a list of at least one key.
pub fn parse_del<'a>(body: &'a [u8], limits: &StateLimits) -> Result<Vec<&'a str>, BadRequest> {
    let keys = parse_keys(STATE_DEL, body, limits)?;
    if keys.is_empty() {
        return Err(BadRequest::Empty { service: STATE_DEL });
    }
    Ok(keys)
}

/// Refuses a body over the request size limit (before anything reads or hashes it).
pub fn check_size(body: &[u8], limits: &StateLimits) -> Result<(), BadRequest> {
    if body.len() > limits.max_request_bytes {
        return Err(BadRequest::RequestTooLarge {
            size: body.len(),
            max: limits.max_request_bytes,
        });
    }
    Ok(())
}

/// Shows bytes from a request in an error text: lossy UTF-8, at most 64 characters.
pub fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    match text.char_indices().nth(64) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.into_owned(),
    }
}

fn parse_body<'a>(body: &'a [u8], limits: &StateLimits) -> Result<Node<'a>, BadRequest> {
    check_size(body, limits)?;
    // Two levels above a stored value: the request's dict and an entry `{value, ...}`. A
    // plain value's own depth is checked in `read_entry`.
    value::parse(body, limits.max_depth.saturating_add(2)).map_err(|e| match e {
        NotBencode::TooDeep(_) => BadRequest::TooDeep {
            max: limits.max_depth,
        },
        e => BadRequest::NotBencode(e),
    })
}

fn parse_keys<'a>(
    service: &'static str,
    body: &'a [u8],
    limits: &StateLimits,
) -> Result<Vec<&'a str>, BadRequest> {
    let wrong_shape = BadRequest::WrongShape {
        service,
        expected: "a list of keys",
    };
    let Kind::List(items) = parse_body(body, limits)?.kind() else {
        return Err(wrong_shape);
    };
    let mut keys = Vec::new();
    for item in items {
        if keys.len() == limits.max_keys_per_request {
            return Err(BadRequest::TooManyKeys {
                max: limits.max_keys_per_request,
            });
        }
        let Some(key) = item.as_bytes() else {
            return Err(wrong_shape);
        };
        keys.push(check_key(key, limits)?);
    }
    Ok(keys)
}

fn check_key<'a>(key: &'a [u8], limits: &StateLimits) -> Result<&'a str, BadRequest> {
    let bad = |why: String| BadRequest::BadKey {
        key: shown(key),
        why,
    };
    if key.is_empty() {
        return Err(bad("a key is 1 or more bytes".into()));
    }
    if key.len() > limits.max_key_bytes {
        return Err(bad(format!(
            "{} bytes, the limit is {}",
            key.len(),
            limits.max_key_bytes
        )));
    }
    std::str::from_utf8(key).map_err(|_| bad("not UTF-8".into()))
}

/// Reads one value of a `state.set` dict: the entry form if it is a dict with a `value` key,
/// else the value itself.
fn read_entry<'a>(
    key: &'a str,
    node: Node<'a>,
    limits: &StateLimits,
) -> Result<SetEntry<'a>, BadRequest> {
    let mut entry = SetEntry {
        key,
        value: node.raw(),
        ttl_ms: None,
        if_seq: None,
    };
    if let Kind::Dict(fields) = node.kind() {
        let (mut value, mut ttl_ms, mut if_seq, mut unknown) = (None, None, None, None);
        for (field, field_value) in fields {
            match field {
                b"value" => value = Some(field_value),
                b"ttl_ms" => ttl_ms = Some(field_value),
                b"if_seq" => if_seq = Some(field_value),
                other => unknown = unknown.or(Some(other)),
            }
        }
        if let Some(value) = value {
            if let Some(field) = unknown {
                return Err(BadRequest::UnknownField {
                    key: key.into(),
                    field: shown(field),
                });
            }
            entry.value = value.raw();
            entry.ttl_ms = match ttl_ms.map(|t| t.as_int()) {
                None => None,
                Some(Some(ms)) if ms > 0 => Some(ms.unsigned_abs()),
                Some(_) => return Err(BadRequest::BadTtl { key: key.into() }),
            };
            entry.if_seq = match if_seq.map(|s| s.as_int()) {
                None => None,
                Some(Some(seq)) if seq >= 0 => Some(seq.unsigned_abs()),
                Some(_) => return Err(BadRequest::BadIfSeq { key: key.into() }),
            };
            return check_value_size(entry, limits);
        }
    }
    // The entry form's value is within the depth limit by `parse_body`'s limit; a plain value
    // could be one level deeper than the limit.
    if node.height() > limits.max_depth {
        return Err(BadRequest::TooDeep {
            max: limits.max_depth,
        });
    }
    check_value_size(entry, limits)
}

fn check_value_size<'a>(
    entry: SetEntry<'a>,
    limits: &StateLimits,
) -> Result<SetEntry<'a>, BadRequest> {
    if entry.value.len() > limits.max_value_bytes {
        return Err(BadRequest::ValueTooLarge {
            key: entry.key.into(),
            size: entry.value.len(),
            max: limits.max_value_bytes,
        });
    }
    Ok(entry)
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
