//! The bodies `hearth bench state` sends and the replies it reads, as plain functions over
//! bytes so they are tested without a broker: `state.set` and `state.get` bodies for the
//! benchmark's keys (`bench/<n>`) and values (a Bencode byte string of exactly `--size`
//! bytes), and a small reader of the replies (`{seq}`, `{error}`, key -> `{seq, value}`).
//!
//! The reader only walks what the broker sends: it checks the shape the benchmark relies on
//! and skips values, it is not a validating Bencode parser.

use super::super::payload;

/// The prefix of every benchmark key.
pub const KEY_PREFIX: &str = "bench/";
/// Bytes of a write id: the run's 8 random bytes, then the write's number.
pub const WRITE_ID_LEN: usize = 16;

/// The key of key number `n`.
pub fn key(n: u64) -> String {
    format!("{KEY_PREFIX}{n}")
}

/// The length of the byte string whose Bencode encoding (`<len>:<bytes>`) is exactly `size`
/// bytes, if there is one (some sizes fall between two: 12 is neither `9:` + 9 nor
/// `10:` + 10).
pub fn string_len_for(size: usize) -> Option<usize> {
    (1..=20).find_map(|digits| {
        let len = size.checked_sub(digits + 1)?;
        (len.to_string().len() == digits).then_some(len)
    })
}

/// Appends `<len>:<bytes>`.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(bytes);
}

/// Appends the value of write number `write`: a byte string of `len` bytes derived from
/// `write`, so that every write changes its key.
fn put_value(out: &mut Vec<u8>, write: u64, len: usize) {
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b':');
    let start = out.len();
    out.resize(start + len, 0);
    payload::fill(write, &mut out[start..]);
}

/// The `state.set` body that writes `keys` (any order), each with the value of `write`
/// (`value_len` bytes of string), into `out`: a dict, so its keys go sorted.
pub fn set_body(out: &mut Vec<u8>, keys: &[u64], write: u64, value_len: usize) {
    let mut names: Vec<String> = keys.iter().map(|&k| key(k)).collect();
    names.sort_unstable();
    names.dedup();
    out.clear();
    out.push(b'd');
    for name in &names {
        put_bytes(out, name.as_bytes());
        put_value(out, write, value_len);
    }
    out.push(b'e');
}

/// The `state.get` body that reads `keys`: a list.
pub fn get_body(out: &mut Vec<u8>, keys: &[u64]) {
    out.clear();
    out.push(b'l');
    for &k in keys {
        put_bytes(out, key(k).as_bytes());
    }
    out.push(b'e');
}

/// The write id of write number `write` in the run `run`.
pub fn write_id(run: [u8; 8], write: u64) -> [u8; WRITE_ID_LEN] {
    let mut id = [0; WRITE_ID_LEN];
    id[..8].copy_from_slice(&run);
    id[8..].copy_from_slice(&write.to_be_bytes());
    id
}

/// What a state service answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<'a> {
    /// A write's `{seq}`.
    Seq(u64),
    /// `{error: text}`: the request was refused.
    Error(String),
    /// A read's entries, in the reply's (sorted) order.
    Entries(Vec<Entry<'a>>),
}

/// One key of a `state.get` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The seq of its last change.
    pub seq: u64,
    /// Its value's Bencode encoding.
    pub value: &'a [u8],
}

/// Reads a reply body: `{error}` is an error whatever else it holds; `{seq}` (exactly, as
/// a write's reply is) a seq; otherwise a dict of `{seq, value}` entries. `None` if it is
/// none of these.
pub fn read_reply(body: &[u8]) -> Option<Reply<'_>> {
    let mut r = Reader { bytes: body, at: 0 };
    r.expect(b'd')?;
    if body.starts_with(b"d5:error") {
        r.string()?;
        let text = r.string()?;
        return Some(Reply::Error(String::from_utf8_lossy(text).into_owned()));
    }
    if body.starts_with(b"d3:seqi") {
        r.string()?;
        let seq = r.uint()?;
        r.expect(b'e')?;
        return r.end().then_some(Reply::Seq(seq));
    }
    let mut entries = Vec::new();
    while r.peek()? != b'e' {
        let key = r.string()?;
        r.expect(b'd')?;
        (r.string()? == b"seq").then_some(())?;
        let seq = r.uint()?;
        (r.string()? == b"value").then_some(())?;
        let value = r.value()?;
        r.expect(b'e')?;
        entries.push(Entry { key, seq, value });
    }
    r.expect(b'e')?;
    r.end().then_some(Reply::Entries(entries))
}

/// Whether `value` is a value this benchmark writes: a byte string of `value_len` bytes.
pub fn is_bench_value(value: &[u8], value_len: usize) -> bool {
    let mut r = Reader {
        bytes: value,
        at: 0,
    };
    r.string().is_some_and(|s| s.len() == value_len) && r.end()
}

/// A cursor over Bencode bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn end(&self) -> bool {
        self.at == self.bytes.len()
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// Digits up to `stop`, as a number.
    fn number(&mut self, stop: u8) -> Option<u64> {
        let rest = &self.bytes[self.at..];
        let len = rest.iter().position(|&b| b == stop)?;
        let digits = std::str::from_utf8(&rest[..len]).ok()?;
        let n = digits.parse().ok()?;
        self.at += len + 1;
        Some(n)
    }

    fn string(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.number(b':')?).ok()?;
        let end = self.at.checked_add(len)?;
        let s = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(s)
    }

    /// A non-negative integer `i<n>e`.
    fn uint(&mut self) -> Option<u64> {
        self.expect(b'i')?;
        self.number(b'e')
    }

    /// Any one value, skipped; its bytes.
    fn value(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        self.skip(0)?;
        Some(&self.bytes[start..self.at])
    }

    fn skip(&mut self, depth: usize) -> Option<()> {
        if depth > 64 {
            return None;
        }
        match self.peek()? {
            b'i' => {
                self.at += 1;
                let rest = &self.bytes[self.at..];
                self.at += rest.iter().position(|&b| b == b'e')? + 1;
            }
            b'l' | b'd' => {
                self.at += 1;
                while self.peek()? != b'e' {
                    self.skip(depth + 1)?;
                }
                self.at += 1;
            }
            b'0'..=b'9' => {
                self.string()?;
            }
            _ => return None,
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_encodes_to_exactly_the_size_asked() {
        assert_eq!(string_len_for(64), Some(61));
        assert_eq!(string_len_for(2), Some(0));
        assert_eq!(string_len_for(11), Some(9));
        assert_eq!(string_len_for(12), None, "9: + 9 is 11, 10: + 10 is 13");
        assert_eq!(string_len_for(13), Some(10));
        assert_eq!(string_len_for(1), None);
        for size in (2..70_000).filter(|&s| string_len_for(s).is_some()) {
            let len = string_len_for(size).unwrap();
            let mut out = Vec::new();
            put_value(&mut out, 7, len);
            assert_eq!(out.len(), size);
            assert!(is_bench_value(&out, len));
        }
    }

    #[test]
    fn set_and_get_bodies_are_canonical() {
        let mut out = Vec::new();
        set_body(&mut out, &[10, 2, 1], 5, 3);
        let value = {
            let mut v = Vec::new();
            put_value(&mut v, 5, 3);
            v
        };
        let mut expected = b"d7:bench/1".to_vec();
        expected.extend_from_slice(&value);
        expected.extend_from_slice(b"8:bench/10");
        expected.extend_from_slice(&value);
        expected.extend_from_slice(b"7:bench/2");
        expected.extend_from_slice(&value);
        expected.push(b'e');
        assert_eq!(out, expected, "keys sorted as bytes");
        get_body(&mut out, &[3, 12]);
        assert_eq!(out, b"l7:bench/38:bench/12e");
        let id = write_id([1; 8], 258);
        assert_eq!(id[..8], [1; 8]);
        assert_eq!(id[8..], [0, 0, 0, 0, 0, 0, 1, 2]);
    }

    #[test]
    fn replies_are_read() {
        assert_eq!(read_reply(b"d3:seqi42ee"), Some(Reply::Seq(42)));
        assert_eq!(read_reply(b"d3:seqi42ee "), None);
        assert_eq!(
            read_reply(b"d5:error7:too bige"),
            Some(Reply::Error("too big".into()))
        );
        assert_eq!(read_reply(b"de"), Some(Reply::Entries(Vec::new())));
        let reply = b"d7:bench/1d3:seqi9e5:value3:abce7:bench/2d3:seqi4e5:valueli1eeee";
        let Some(Reply::Entries(entries)) = read_reply(reply) else {
            panic!("{:?}", read_reply(reply));
        };
        assert_eq!(
            entries,
            [
                Entry {
                    key: b"bench/1",
                    seq: 9,
                    value: b"3:abc"
                },
                Entry {
                    key: b"bench/2",
                    seq: 4,
                    value: b"li1ee"
                }
            ]
        );
        assert!(is_bench_value(b"3:abc", 3));
        assert!(!is_bench_value(b"li1ee", 3));
        for bad in [
            &b""[..],
            b"d",
            b"d3:seqi4e",
            b"d7:bench/1d3:seqi9ee",
            b"l1:ae",
            b"x",
        ] {
            assert_eq!(read_reply(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
