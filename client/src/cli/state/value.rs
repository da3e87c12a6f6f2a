//! State-model values as a person types and reads them: the command line's VALUE, the
//! readable output, and the `--json` output.
//!
//! Bencode has integers, byte strings, lists and dicts, nothing else; the mapping from and
//! to text is in [`VALUE_HELP`], which `--help` shows, and in the README.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hearth_client::state::Value;
use serde_json::Value as Json;

/// How values are typed and shown, for `--help`.
pub const VALUE_HELP: &str = "\
Values (Bencode has integers, byte strings, lists and dicts only):
  215, -3            an integer (64-bit)
  [1,\"a\"]            a JSON list -> a list; {\"on\":1,\"level\":40} a JSON dict -> a dict
                     (inside JSON: strings are byte strings, integers are integers;
                     floats, true/false and null are refused: Bencode has none, so store
                     a string (\"21.5\") or a scaled integer (215))
  '\"215\"'            a JSON string in quotes -> the string 215 (also for text that
                     would otherwise read as a number or as JSON, like '\"[x\"')
  hello              anything else -> that text, as bytes
Output: text is shown as text, integers as integers, lists and dicts as JSON; a
string that would read back as something else (\"215\", \"\", one with a newline) is
shown JSON-quoted. Bytes that are not UTF-8 are shown as 0x and their hex digits
(readable output) or as {\"$hex\": \"ff00\"} (--json; as a dict key, \"$hex:ff00\").";

/// Reads a VALUE from the command line (see [`VALUE_HELP`]); the error says why not.
pub fn parse_value(text: &str) -> Result<Value, String> {
    if looks_like_integer(text) {
        return text.parse::<i64>().map(Value::Int).map_err(|_| {
            format!("{text} does not fit a 64-bit integer; to store the digits as text, quote them: '\"{text}\"'")
        });
    }
    match text.trim_start().chars().next() {
        Some('[' | '{' | '"') => {
            let json: Json = serde_json::from_str(text).map_err(|e| {
                format!("{text:?} starts like JSON but is not JSON ({e}); to store it as text, give it as a JSON string, e.g. '\"[x\"'")
            })?;
            from_json(&json)
        }
        _ => Ok(Value::text(text)),
    }
}

/// Canonical decimal: `0` or an optional minus and digits without a leading zero, so that
/// `007` and `+5` stay text.
fn looks_like_integer(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" && text == "0" || !digits.starts_with('0'))
}

fn from_json(json: &Json) -> Result<Value, String> {
    Ok(match json {
        Json::String(s) => Value::text(s.as_str()),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None if n.is_u64() => return Err(format!("{n} does not fit a 64-bit integer")),
            None => {
                return Err(format!(
                    "{n}: Bencode has no floats; store a string (\"{n}\") or a scaled integer"
                ))
            }
        },
        Json::Bool(b) => {
            return Err(format!(
                "{b}: Bencode has no booleans; store an integer (1 or 0) or a string"
            ))
        }
        Json::Null => {
            return Err(
                "null: Bencode has no null; delete the key, or store an empty string".into(),
            )
        }
        Json::Array(items) => Value::List(items.iter().map(from_json).collect::<Result<_, _>>()?),
        Json::Object(map) => Value::Dict(
            map.iter()
                .map(|(k, v)| Ok((k.as_bytes().to_vec(), from_json(v)?)))
                .collect::<Result<BTreeMap<_, _>, String>>()?,
        ),
    })
}

/// A value as one line of readable output: text as text, unless it would read back as
/// something else; lists and dicts as JSON (non-UTF-8 bytes as `0x...`).
pub fn show(value: &Value) -> String {
    match value {
        Value::Bytes(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) if reads_back_as_itself(text) => text.to_owned(),
            _ => show_nested(value),
        },
        _ => show_nested(value),
    }
}

/// Whether `text`, shown bare, is unambiguous: it parses back to the same string, and has
/// nothing a reader could miss (empty, control characters, spaces at the ends).
fn reads_back_as_itself(text: &str) -> bool {
    !text.is_empty()
        && !text.chars().any(char::is_control)
        && text.trim() == text
        && parse_value(text).ok().as_ref().and_then(Value::as_str) == Some(text)
}

fn show_nested(value: &Value) -> String {
    let mut out = String::new();
    write_nested(value, &mut out);
    out
}

fn write_nested(value: &Value, out: &mut String) {
    match value {
        Value::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Bytes(bytes) => out.push_str(&show_bytes(bytes)),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_nested(item, out);
            }
            out.push(']');
        }
        Value::Dict(entries) => {
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&show_bytes(key));
                out.push_str(": ");
                write_nested(item, out);
            }
            out.push('}');
        }
    }
}

/// A JSON string for UTF-8, `0x` and hex digits otherwise.
fn show_bytes(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => Json::from(text).to_string(),
        Err(_) => format!("0x{}", hex(bytes)),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// A value as JSON: integers as numbers, UTF-8 as strings, other bytes as
/// `{"$hex": "..."}` (`"$hex:..."` as a dict key).
pub fn to_json(value: &Value) -> Json {
    match value {
        Value::Int(n) => Json::from(*n),
        Value::Bytes(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => Json::from(text),
            Err(_) => serde_json::json!({ "$hex": hex(bytes) }),
        },
        Value::List(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Dict(entries) => Json::Object(
            entries
                .iter()
                .map(|(key, item)| {
                    let key = match std::str::from_utf8(key) {
                        Ok(text) => text.to_owned(),
                        Err(_) => format!("$hex:{}", hex(key)),
                    };
                    (key, to_json(item))
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests;
