//! [`Value`]: a state-model value, which is any Bencode value, and its canonical encoding.
//!
//! The broker stores values as their canonical Bencode and hands them back byte for byte,
//! so the client needs exactly Bencode's four shapes and nothing more: no floats, no
//! booleans, no null. Encoding is canonical by construction (dict keys live in a
//! `BTreeMap`, so they come out sorted and unique); decoding goes through `bendy`'s strict
//! decoder, which refuses unsorted or repeated keys, leading zeros and trailing bytes.

use std::collections::BTreeMap;

use bendy::decoding::{Decoder, Object};
use thiserror::Error;

/// Deepest nesting of lists and dicts a decoded document may have. The broker keeps a value
/// to 32 levels; its replies wrap values in up to three more.
pub const MAX_DECODE_DEPTH: usize = 64;

/// One Bencode value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    /// An integer (Bencode integers are arbitrary-precision; hearth's fit `i64`).
    Int(i64),
    /// A byte string: often UTF-8 text, but any bytes are allowed.
    Bytes(Vec<u8>),
    /// A list of values.
    List(Vec<Value>),
    /// A dict with byte-string keys, kept sorted as canonical Bencode requires.
    Dict(BTreeMap<Vec<u8>, Value>),
}

/// A document that is not a canonical Bencode value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("not canonical Bencode: {0}")]
pub struct ValueError(pub String);

impl Value {
    /// The canonical Bencode encoding.
    pub fn to_bencode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(n) => out.extend_from_slice(format!("i{n}e").as_bytes()),
            Value::Bytes(bytes) => encode_bytes(bytes, out),
            Value::List(items) => {
                out.push(b'l');
                items.iter().for_each(|item| item.encode_into(out));
                out.push(b'e');
            }
            Value::Dict(entries) => {
                out.push(b'd');
                for (key, value) in entries {
                    encode_bytes(key, out);
                    value.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Reads one canonical Bencode value that fills all of `bytes`.
    pub fn from_bencode(bytes: &[u8]) -> Result<Value, ValueError> {
        let bad = |e: bendy::decoding::Error| ValueError(e.to_string());
        let mut decoder = Decoder::new(bytes).with_max_depth(MAX_DECODE_DEPTH);
        let value = match decoder.next_object().map_err(bad)? {
            Some(object) => decode_object(object).map_err(bad)?,
            None => return Err(ValueError("empty document".into())),
        };
        let trailing = !matches!(decoder.next_object(), Ok(None));
        if trailing {
            return Err(ValueError("trailing bytes after the value".into()));
        }
        Ok(value)
    }

    /// A byte string holding `text`.
    pub fn text(text: impl Into<String>) -> Value {
        Value::Bytes(text.into().into_bytes())
    }

    /// A dict of text keys: `Value::dict([("on", Value::Int(1))])`.
    pub fn dict<'a>(pairs: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
        Value::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The bytes, if this is a byte string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// The text, if this is a byte string that is valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The entry under `key`, if this is a dict that has one.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(entries) => entries.get(key.as_bytes()),
            _ => None,
        }
    }
}

fn encode_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(bytes.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(bytes);
}

fn decode_object(object: Object<'_, '_>) -> Result<Value, bendy::decoding::Error> {
    Ok(match object {
        Object::Integer(text) => Value::Int(text.parse().map_err(|_| {
            bendy::decoding::Error::malformed_content(ValueError(format!(
                "integer {text} does not fit 64 bits"
            )))
        })?),
        Object::Bytes(bytes) => Value::Bytes(bytes.to_vec()),
        Object::List(mut list) => {
            let mut items = Vec::new();
            while let Some(item) = list.next_object()? {
                items.push(decode_object(item)?);
            }
            Value::List(items)
        }
        Object::Dict(mut dict) => {
            let mut entries = BTreeMap::new();
            while let Some((key, value)) = dict.next_pair()? {
                entries.insert(key.to_vec(), decode_object(value)?);
            }
            Value::Dict(entries)
        }
    })
}

impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Int(n)
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Value {
        Value::text(text)
    }
}

impl From<String> for Value {
    fn from(text: String) -> Value {
        Value::text(text)
    }
}

impl From<Vec<u8>> for Value {
    fn from(bytes: Vec<u8>) -> Value {
        Value::Bytes(bytes)
    }
}

impl From<Vec<Value>> for Value {
    fn from(items: Vec<Value>) -> Value {
        Value::List(items)
    }
}

impl From<BTreeMap<Vec<u8>, Value>> for Value {
    fn from(entries: BTreeMap<Vec<u8>, Value>) -> Value {
        Value::Dict(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict(pairs: &[(&str, Value)]) -> Value {
        Value::dict(pairs.iter().cloned())
    }

    #[test]
    fn encodes_canonically_and_round_trips() {
        let cases: [(Value, &[u8]); 7] = [
            (Value::Int(215), b"i215e"),
            (Value::Int(-3), b"i-3e"),
            (Value::Int(0), b"i0e"),
            (Value::text("hello"), b"5:hello"),
            (Value::Bytes(vec![]), b"0:"),
            (
                Value::List(vec![Value::Int(1), Value::text("a")]),
                b"li1e1:ae",
            ),
            (
                dict(&[("on", Value::Int(1)), ("level", Value::Int(40))]),
                b"d5:leveli40e2:oni1ee",
            ),
        ];
        for (value, bytes) in cases {
            assert_eq!(value.to_bencode(), bytes, "{value:?}");
            assert_eq!(Value::from_bencode(bytes), Ok(value));
        }
    }

    #[test]
    fn refuses_what_is_not_canonical_bencode() {
        for bytes in [
            &b""[..],
            b"i1",
            b"i01e",
            b"i-0e",
            b"i1ei2e",
            b"i1ee",
            b"d1:bi1e1:ai2ee",
            b"d1:ai1e1:ai2ee",
            b"5:abc",
            b"x",
            b"i99999999999999999999e",
        ] {
            assert!(
                Value::from_bencode(bytes).is_err(),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn depth_is_bounded() {
        let deep = |n: usize| [vec![b'l'; n], vec![b'e'; n]].concat();
        assert!(Value::from_bencode(&deep(MAX_DECODE_DEPTH)).is_ok());
        assert!(Value::from_bencode(&deep(MAX_DECODE_DEPTH + 1)).is_err());
    }

    #[test]
    fn accessors() {
        let v = dict(&[("value", Value::Int(3))]);
        assert_eq!(v.get("value").and_then(Value::as_int), Some(3));
        assert_eq!(Value::text("hi").as_str(), Some("hi"));
        assert_eq!(Value::Bytes(vec![0xff]).as_str(), None);
        assert_eq!(Value::Int(1).as_bytes(), None);
    }
}
