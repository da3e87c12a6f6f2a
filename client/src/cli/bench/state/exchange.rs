//! The two request kinds of `hearth bench state` as [`InOrder`] exchanges for the load
//! generator: a `state.set` of one key with a fresh write id, and a `state.get` of one key.
//!
//! Every client of a run shares one [`Book`]: the next write (or read) number, which picks
//! the key (`bench/<n mod keys>`) and the value, and, per key, the highest seq a write of it
//! was acknowledged with. A read must see at least that seq (no acknowledged write may be
//! missing from a read), and after the broker's restart every key must still hold it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hearth_proto::state::{STATE_GET, STATE_SET};

use super::super::load::{InOrder, Verdict};
use super::wire::{self, Reply};

/// What every client of the benchmark shares.
#[derive(Debug)]
pub struct Book {
    /// Keys the writes cycle over.
    keys: u64,
    /// Bytes of each value's string (its encoding is `--size` bytes).
    value_len: usize,
    /// This run's random prefix of every write id.
    run: [u8; 8],
    /// The next write's number.
    next_write: AtomicU64,
    /// The next read's number.
    next_read: AtomicU64,
    /// Per key, the highest seq a write of it was acknowledged with (0: none).
    acked: Vec<AtomicU64>,
    /// Writes acknowledged, at any time: each left a write id the broker remembers.
    writes_acked: AtomicU64,
    /// The first refusal's text, to show.
    first_error: Mutex<Option<String>>,
}

impl Book {
    /// A book for `keys` keys and values of `value_len` bytes of string.
    pub fn new(keys: u64, value_len: usize, run: [u8; 8]) -> Book {
        Book {
            keys,
            value_len,
            run,
            next_write: AtomicU64::new(0),
            next_read: AtomicU64::new(0),
            acked: (0..keys).map(|_| AtomicU64::new(0)).collect(),
            writes_acked: AtomicU64::new(0),
            first_error: Mutex::new(None),
        }
    }

    /// Keys the writes cycle over.
    pub fn keys(&self) -> u64 {
        self.keys
    }

    /// Bytes of each value's string.
    pub fn value_len(&self) -> usize {
        self.value_len
    }

    /// A fresh write number, for a write outside the load (the fill).
    pub fn take_write(&self) -> u64 {
        self.next_write.fetch_add(1, Ordering::Relaxed)
    }

    /// The highest seq a write of key `key` was acknowledged with (0: none).
    pub fn acked(&self, key: u64) -> u64 {
        self.acked
            .get(key as usize)
            .map_or(0, |seq| seq.load(Ordering::Relaxed))
    }

    /// Records that a write of `key` was acknowledged with `seq`.
    pub fn acknowledged(&self, key: u64, seq: u64) {
        if let Some(acked) = self.acked.get(key as usize) {
            acked.fetch_max(seq, Ordering::Relaxed);
        }
        self.writes_acked.fetch_add(1, Ordering::Relaxed);
    }

    /// This run's write id of write number `write`.
    pub fn write_id(&self, write: u64) -> [u8; wire::WRITE_ID_LEN] {
        wire::write_id(self.run, write)
    }

    /// Writes with a write id acknowledged so far.
    pub fn writes_acked(&self) -> u64 {
        self.writes_acked.load(Ordering::Relaxed)
    }

    /// The text of the first refusal, if there was one.
    pub fn first_error(&self) -> Option<String> {
        self.first_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn refused(&self, text: String) -> Verdict {
        let mut first = self
            .first_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        first.get_or_insert(text);
        Verdict::Refused
    }
}

/// One writer: `state.set {bench/<k>: value}` with a fresh write id each.
#[derive(Debug)]
pub struct Writes {
    book: Arc<Book>,
    /// The last seq this client was answered with: one connection's writes are applied in
    /// order, so each answer's seq must be higher.
    last_seq: u64,
}

impl Writes {
    /// A writer on `book`.
    pub fn new(book: Arc<Book>) -> Writes {
        Writes { book, last_seq: 0 }
    }
}

impl InOrder for Writes {
    type Ticket = u64;

    fn service(&self) -> &str {
        STATE_SET
    }

    fn request(&mut self, frames: &mut Vec<Vec<u8>>) -> u64 {
        let n = self.book.next_write.fetch_add(1, Ordering::Relaxed);
        let key = n % self.book.keys;
        frames.resize_with(2, Vec::new);
        wire::set_body(&mut frames[0], &[key], n, self.book.value_len);
        frames[1].clear();
        frames[1].extend_from_slice(&self.book.write_id(n));
        key
    }

    fn judge(&mut self, key: u64, body: &[Vec<u8>]) -> Verdict {
        let [body] = body else {
            return Verdict::Mismatched;
        };
        match wire::read_reply(body) {
            Some(Reply::Seq(seq)) if seq > self.last_seq => {
                self.last_seq = seq;
                self.book.acknowledged(key, seq);
                Verdict::Answered
            }
            Some(Reply::Error(text)) => self.book.refused(text),
            _ => Verdict::Mismatched,
        }
    }
}

/// One reader: `state.get [bench/<k>]`, which must answer that key with one of the
/// benchmark's values and a seq no lower than its last acknowledged write's.
#[derive(Debug)]
pub struct Reads {
    book: Arc<Book>,
}

impl Reads {
    /// A reader on `book`.
    pub fn new(book: Arc<Book>) -> Reads {
        Reads { book }
    }
}

impl InOrder for Reads {
    type Ticket = u64;

    fn service(&self) -> &str {
        STATE_GET
    }

    fn request(&mut self, frames: &mut Vec<Vec<u8>>) -> u64 {
        let n = self.book.next_read.fetch_add(1, Ordering::Relaxed);
        let key = n % self.book.keys;
        frames.resize_with(1, Vec::new);
        wire::get_body(&mut frames[0], &[key]);
        key
    }

    fn judge(&mut self, key: u64, body: &[Vec<u8>]) -> Verdict {
        let [body] = body else {
            return Verdict::Mismatched;
        };
        match wire::read_reply(body) {
            Some(Reply::Entries(entries)) => match entries.as_slice() {
                [entry]
                    if entry.key == wire::key(key).as_bytes()
                        && entry.seq >= self.book.acked(key)
                        && wire::is_bench_value(entry.value, self.book.value_len) =>
                {
                    Verdict::Answered
                }
                _ => Verdict::Mismatched,
            },
            Some(Reply::Error(text)) => self.book.refused(text),
            _ => Verdict::Mismatched,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_cycle_over_the_keys_with_fresh_ids_and_rising_seqs() {
        let book = Arc::new(Book::new(3, 61, [9; 8]));
        let mut writes = Writes::new(book.clone());
        let mut frames = Vec::new();
        let keys: Vec<u64> = (0..4).map(|_| writes.request(&mut frames)).collect();
        assert_eq!(keys, [0, 1, 2, 0]);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1], wire::write_id([9; 8], 3));
        assert!(frames[0].starts_with(b"d7:bench/061:"), "{:?}", frames[0]);
        assert_eq!(frames[0].len(), 1 + 9 + 64 + 1);

        assert_eq!(
            writes.judge(1, &[b"d3:seqi5ee".to_vec()]),
            Verdict::Answered
        );
        assert_eq!(book.acked(1), 5);
        assert_eq!(
            writes.judge(2, &[b"d3:seqi5ee".to_vec()]),
            Verdict::Mismatched,
            "a seq that does not rise"
        );
        assert_eq!(
            writes.judge(2, &[b"d5:error4:fulle".to_vec()]),
            Verdict::Refused
        );
        assert_eq!(book.first_error().as_deref(), Some("full"));
        assert_eq!(writes.judge(2, &[b"junk".to_vec()]), Verdict::Mismatched);
        assert_eq!(book.writes_acked(), 1);
    }

    #[test]
    fn a_read_must_see_the_acknowledged_write() {
        let book = Arc::new(Book::new(2, 3, [0; 8]));
        let mut writes = Writes::new(book.clone());
        assert_eq!(
            writes.judge(1, &[b"d3:seqi7ee".to_vec()]),
            Verdict::Answered
        );
        let mut reads = Reads::new(book.clone());
        let mut frames = Vec::new();
        assert_eq!(reads.request(&mut frames), 0);
        assert_eq!(frames, [b"l7:bench/0e".to_vec()]);
        let reply = |seq: u64, value: &str| {
            vec![format!("d7:bench/1d3:seqi{seq}e5:value{value}ee").into_bytes()]
        };
        assert_eq!(reads.judge(1, &reply(7, "3:abc")), Verdict::Answered);
        assert_eq!(reads.judge(1, &reply(9, "3:abc")), Verdict::Answered);
        assert_eq!(
            reads.judge(1, &reply(6, "3:abc")),
            Verdict::Mismatched,
            "stale"
        );
        assert_eq!(reads.judge(1, &reply(7, "2:ab")), Verdict::Mismatched);
        assert_eq!(reads.judge(0, &reply(7, "3:abc")), Verdict::Mismatched);
        assert_eq!(reads.judge(0, &[b"de".to_vec()]), Verdict::Mismatched);
    }
}
