//! Canonical Bencode: a strict validating reader and the few writers the state replies need.
//!
//! A value arrives as Bencode bytes inside a request body and is stored, replicated and
//! published as exactly those bytes, so the reader must accept only the one canonical
//! encoding of each value: dict keys sorted and unique, no leading zeros (`i03e`, `03:abc`),
//! no `i-0e`, integers that fit an `i64`, a bounded nesting depth and nothing after the value.
//!
//! Why not bendy's decoder: bendy 0.6 does reject unsorted and repeated keys, leading zeros
//! and `-0` (in integers and in string lengths), and has a nesting limit (default 2048, set
//! with `with_max_depth`). It does not check that an integer fits an `i64` (a `Token::Num` is
//! the digit string), does not reject bytes after the first value (its decoder reads a
//! stream of values; only its serde front end has an opt-in `forbid_trailing_bytes`), does
//! not tell where a string or integer starts (so the canonical sub-slice of a value cannot
//! be cut out without re-encoding), and allocates a 2048-entry state stack per decoder. The
//! grammar is tiny, so [`parse`] is written here: one validating pass over the whole body
//! that allocates nothing, then [`Node`]s that are sub-slices of it and are walked lazily.

use std::io::Write;

use thiserror::Error;

/// Why bytes are not one canonical Bencode value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NotBencode {
    /// The input ends inside a value (or is empty).
    #[error("it ends early at byte {0}")]
    UnexpectedEnd(usize),
    /// A byte that no Bencode value can have there.
    #[error("unexpected byte 0x{byte:02x} at byte {at}")]
    UnexpectedByte {
        /// Offset of the byte.
        at: usize,
        /// The byte.
        byte: u8,
    },
    /// A number with a leading zero or `-0`: Bencode has one spelling per number.
    #[error("non-canonical number at byte {0} (leading zero or -0)")]
    NonCanonicalNumber(usize),
    /// An integer outside `i64`, or a string length outside `usize`.
    #[error("number at byte {0} is too large")]
    NumberTooLarge(usize),
    /// A dict key not greater than the one before it (unsorted or repeated).
    #[error("dict key at byte {0} is unsorted or repeated")]
    UnsortedKeys(usize),
    /// Bytes after the value.
    #[error("{0} bytes follow the value")]
    TrailingBytes(usize),
    /// Lists and dicts nested deeper than the limit: the offset of the first one too deep.
    #[error("lists and dicts nest too deeply at byte {0}")]
    TooDeep(usize),
}

/// One validated Bencode value: a sub-slice of the parsed input, and so its canonical bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node<'a> {
    raw: &'a [u8],
    height: usize,
}

/// What a [`Node`] holds; lists and dicts are walked lazily, without allocating.
#[derive(Debug, Clone)]
pub enum Kind<'a> {
    /// An integer (it fits an `i64`: checked by [`parse`]).
    Int(i64),
    /// A byte string.
    Bytes(&'a [u8]),
    /// A list, as an iterator over its items.
    List(Items<'a>),
    /// A dict, as an iterator over its (key, value) pairs in key order.
    Dict(Pairs<'a>),
}

/// Reads `bytes` as exactly one canonical Bencode value with lists and dicts nested at most
/// `max_depth` levels (`le` is one level, `i1e` none).
pub fn parse(bytes: &[u8], max_depth: usize) -> Result<Node<'_>, NotBencode> {
    let (end, height) = scan(bytes, 0, max_depth)?;
    if end != bytes.len() {
        return Err(NotBencode::TrailingBytes(bytes.len() - end));
    }
    Ok(Node { raw: bytes, height })
}

impl<'a> Node<'a> {
    /// The value's canonical Bencode: the exact bytes of the input it was read from.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// How deeply lists and dicts nest in this value: 0 for a string or an integer.
    pub fn height(&self) -> usize {
        self.height
    }

    /// What the value is.
    pub fn kind(&self) -> Kind<'a> {
        let raw = self.raw;
        match raw.first() {
            Some(b'i') => Kind::Int(read_int(raw, 1).map_or(0, |(n, _)| n)),
            Some(b'l') => Kind::List(Items { raw, pos: 1 }),
            Some(b'd') => Kind::Dict(Pairs { raw, pos: 1 }),
            _ => Kind::Bytes(read_string(raw, 0).map_or(&[][..], |(s, _)| s)),
        }
    }

    /// The byte string, if this is one.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self.kind() {
            Kind::Bytes(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self.kind() {
            Kind::Int(n) => Some(n),
            _ => None,
        }
    }
}

/// The items of a validated list.
#[derive(Debug, Clone)]
pub struct Items<'a> {
    raw: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Items<'a> {
    type Item = Node<'a>;

    fn next(&mut self) -> Option<Node<'a>> {
        // The list was validated by `parse`, so rescanning cannot fail; stop if it did.
        let (end, height) = scan(self.raw, self.pos, usize::MAX).ok()?;
        let node = Node {
            raw: &self.raw[self.pos..end],
            height,
        };
        self.pos = end;
        Some(node)
    }
}

/// The (key, value) pairs of a validated dict, in key order.
#[derive(Debug, Clone)]
pub struct Pairs<'a> {
    raw: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a [u8], Node<'a>);

    fn next(&mut self) -> Option<(&'a [u8], Node<'a>)> {
        // Validated by `parse`, as for `Items`.
        let (key, start) = read_string(self.raw, self.pos).ok()?;
        let (end, height) = scan(self.raw, start, usize::MAX).ok()?;
        self.pos = end;
        let value = Node {
            raw: &self.raw[start..end],
            height,
        };
        Some((key, value))
    }
}

/// Validates the value starting at `pos`: returns where it ends and its height. Recursion is
/// bounded by `depth_left`, so hostile nesting cannot overflow the stack.
fn scan(bytes: &[u8], pos: usize, depth_left: usize) -> Result<(usize, usize), NotBencode> {
    match bytes.get(pos) {
        None => Err(NotBencode::UnexpectedEnd(pos)),
        Some(b'i') => read_int(bytes, pos + 1).map(|(_, end)| (end, 0)),
        Some(b'0'..=b'9') => read_string(bytes, pos).map(|(_, end)| (end, 0)),
        Some(&open @ (b'l' | b'd')) => {
            let depth_left = depth_left.checked_sub(1).ok_or(NotBencode::TooDeep(pos))?;
            let mut at = pos + 1;
            let mut height = 0;
            let mut last_key: Option<&[u8]> = None;
            loop {
                match bytes.get(at) {
                    None => return Err(NotBencode::UnexpectedEnd(at)),
                    Some(b'e') => return Ok((at + 1, height + 1)),
                    Some(&byte) if open == b'd' => {
                        if !byte.is_ascii_digit() {
                            return Err(NotBencode::UnexpectedByte { at, byte });
                        }
                        let (key, value_at) = read_string(bytes, at)?;
                        if last_key.is_some_and(|last| last >= key) {
                            return Err(NotBencode::UnsortedKeys(at));
                        }
                        last_key = Some(key);
                        let (end, h) = scan(bytes, value_at, depth_left)?;
                        height = height.max(h);
                        at = end;
                    }
                    Some(_) => {
                        let (end, h) = scan(bytes, at, depth_left)?;
                        height = height.max(h);
                        at = end;
                    }
                }
            }
        }
        Some(&byte) => Err(NotBencode::UnexpectedByte { at: pos, byte }),
    }
}

/// Reads the digits of an integer starting at `pos` (just after the `i`) up to and including
/// the `e`: returns the value and the offset after the `e`.
fn read_int(bytes: &[u8], pos: usize) -> Result<(i64, usize), NotBencode> {
    let negative = bytes.get(pos) == Some(&b'-');
    let digits_at = pos + usize::from(negative);
    let (magnitude, end) = read_digits(bytes, digits_at, b'e')?;
    if negative && magnitude == 0 {
        return Err(NotBencode::NonCanonicalNumber(pos));
    }
    let value = if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    };
    value
        .map(|v| (v, end))
        .ok_or(NotBencode::NumberTooLarge(pos))
}

/// Reads a byte string `<len>:<bytes>` at `pos`: returns its bytes and the offset after them.
fn read_string(bytes: &[u8], pos: usize) -> Result<(&[u8], usize), NotBencode> {
    let (len, start) = read_digits(bytes, pos, b':')?;
    let end = usize::try_from(len)
        .ok()
        .and_then(|len| start.checked_add(len))
        .ok_or(NotBencode::NumberTooLarge(pos))?;
    match bytes.get(start..end) {
        Some(content) => Ok((content, end)),
        None => Err(NotBencode::UnexpectedEnd(bytes.len())),
    }
}

/// Reads canonical decimal digits (at least one, no leading zero unless the number is 0)
/// ending in `terminator`: returns the number and the offset after the terminator.
fn read_digits(bytes: &[u8], pos: usize, terminator: u8) -> Result<(u64, usize), NotBencode> {
    let mut value: u64 = 0;
    let mut at = pos;
    loop {
        match bytes.get(at) {
            None => return Err(NotBencode::UnexpectedEnd(at)),
            Some(&b) if b == terminator && at > pos => return Ok((value, at + 1)),
            Some(&b @ b'0'..=b'9') => {
                if at > pos && bytes[pos] == b'0' {
                    return Err(NotBencode::NonCanonicalNumber(pos));
                }
                value = value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(u64::from(b - b'0')))
                    .ok_or(NotBencode::NumberTooLarge(pos))?;
            }
            Some(&byte) => return Err(NotBencode::UnexpectedByte { at, byte }),
        }
        at += 1;
    }
}

/// Appends a Bencode byte string.
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_decimal(out, bytes.len() as u64);
    out.push(b':');
    out.extend_from_slice(bytes);
}

/// Appends a Bencode integer (a sequence number or a count: never negative).
pub fn put_uint(out: &mut Vec<u8>, n: u64) {
    out.push(b'i');
    put_decimal(out, n);
    out.push(b'e');
}

fn put_decimal(out: &mut Vec<u8>, n: u64) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{n}");
}

#[cfg(test)]
#[path = "value_tests.rs"]
mod tests;
