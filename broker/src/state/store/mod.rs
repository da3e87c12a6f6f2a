//! The state model's durable store: one sled tree under `--data-dir`.
//!
//! Everything a broker must find again after kill -9 lives in one sled `Tree`, told apart by
//! key prefix so that every [`Batch`] lands with one atomic `Tree::apply_batch`:
//!
//! | key | value |
//! |---|---|
//! | `k/<key>` | the entry, a [`StoredEntry`] (Bencode) |
//! | `l/<seq, 8 bytes big-endian>` | the change log: the encoded [`Change`], the last `log_keep` of them |
//! | `w/<write id>` | a remembered write id: `{seq, digest, at_ms}` (Bencode) |
//! | `m/<name>` | metadata the broker core owns, opaque here; `m/format` = [`FORMAT`] |
//! | `c/<counter, 8 bytes big-endian>` | conflict records, opaque, in the order they were added |
//! | `s/last-seq` | the store's own bookkeeping: the seq of the last change it holds |
//! | `s/batches` | the store's own bookkeeping: how many batches were ever written |
//! | `s/digest` | the store's own bookkeeping: the XOR of a hash of each `k/`, `w/`, `m/` record |
//!
//! On disk, `<data dir>` holds `state.sled/` (sled's files), `hearth.lock` (a `flock`ed
//! file naming the pid of the broker using the dir), `hearth.flushed` (see below) and, only
//! while a new store is being created, `state.sled.creating`. [`Store::open`] refuses a
//! dir in use, a damaged store and a dir that is not hearth's with a [`StoreError`] that
//! names the dir and says what to do; it never panics and never takes an empty or partial
//! store for the one that was written.
//!
//! sled treats a damaged end of its log like a write torn by a crash: it opens the store as
//! it was before, without an error (cutting `db` in half loses every entry silently). So
//! after each flush the store writes the number of batches flushed to `hearth.flushed`
//! (outside sled, no fsync of its own: it only ever claims what sled already fsynced), and
//! [`Store::open`] refuses a store whose `s/batches` is lower: flushed writes are missing.
//! Damage in the middle of the log can also make sled recover older versions of some
//! pages and not others, so every batch also updates `s/digest`, and [`Store::load`]
//! refuses records that do not add up to it.
//!
//! sled 0.34 can panic on some damaged files; every call into it here runs under
//! `catch_unwind`, which turns the panic into [`StoreError::Corrupt`]. The process's panic
//! hook still runs first: the default hook prints `thread '<name>' panicked at <sled source
//! file>:<line>: <message>` (and a note about `RUST_BACKTRACE`) to stderr before the error
//! is reported. sled also stops on the first unreadable page, so every scan here stops at
//! its first error (a sled iterator keeps yielding the same error if asked again).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::io::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hearth_proto::state::{Change, WriteTag};

use thiserror::Error;

mod batch;
mod startup;

pub use batch::{Batch, StoredEntry};
use batch::{Op, RememberedWrite};
use startup::*;

/// The value of `m/format` in every store this code writes.
pub const FORMAT: &[u8] = b"hearth-state/1";
/// How many changes the log keeps by default.
pub const DEFAULT_LOG_KEEP: u64 = 100_000;

/// sled's files, inside the data dir.
const SLED_DIR: &str = "state.sled";
/// Present only while a new store is created: a store found next to it never finished
/// being created, held nothing yet, and is made again.
const CREATING: &str = "state.sled.creating";
/// The `flock`ed file that keeps two brokers off one data dir.
const LOCK_FILE: &str = "hearth.lock";
/// How many batches sled had flushed, as a decimal number: a floor for `s/batches`.
const FLUSHED: &str = "hearth.flushed";
/// What a mount point may hold besides hearth's files.
const IGNORED: &[&str] = &["lost+found"];

const ENTRY: &[u8] = b"k/";
const LOG: &[u8] = b"l/";
const WRITE_ID: &[u8] = b"w/";
const META: &[u8] = b"m/";
const CONFLICT: &[u8] = b"c/";
const FORMAT_KEY: &[u8] = b"m/format";
const LAST_SEQ_KEY: &[u8] = b"s/last-seq";
const BATCHES_KEY: &[u8] = b"s/batches";
const DIGEST_KEY: &[u8] = b"s/digest";

/// How long [`Store::open`] retries sled's own file lock when hearth's lock is already
/// held by this process: sled's background threads may keep a just-dropped store's file
/// open for a moment.
const SLED_LOCK_GRACE: Duration = Duration::from_secs(2);

/// Why the store cannot be used. Every message names the data dir and says what to do;
/// the broker prints it and exits with status 1.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Another process (another broker) has the data dir open.
    #[error(
        "the data dir {} is in use by another process{}: stop it first, or give this broker \
         its own --data-dir",
        dir.display(),
        holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    Locked {
        /// The data dir.
        dir: PathBuf,
        /// The pid the holder wrote into `hearth.lock`, if it could be read.
        holder: Option<u32>,
    },
    /// The store's files are damaged. (sled may already have rewritten parts of them while
    /// opening them: it has no read-only mode.)
    #[error(
        "the state store in {} is damaged: {detail}. Keep a copy of the directory, then \
         restore it from a backup, or move it aside and start with an empty --data-dir",
        dir.display()
    )]
    Corrupt {
        /// The data dir.
        dir: PathBuf,
        /// What was found, and where.
        detail: String,
    },
    /// The data dir holds something that is not a hearth state store (or a newer one).
    #[error(
        "{} is not a hearth state store: {found}. Point --data-dir at a hearth data dir, or \
         at a new or empty directory for a fresh store",
        dir.display()
    )]
    UnknownFormat {
        /// The data dir.
        dir: PathBuf,
        /// What is there instead.
        found: String,
    },
    /// A file system call failed.
    #[error(
        "{doing} in the data dir {}: {source}. Check the path, the disk and this user's \
         permissions on it",
        dir.display()
    )]
    Io {
        /// The data dir.
        dir: PathBuf,
        /// What the store was doing.
        doing: String,
        /// The error.
        source: io::Error,
    },
    /// sled failed in some other way.
    #[error(
        "the sled database in {} failed while {doing}: {source}. Check the disk; if it \
         keeps failing, move the directory aside and start with an empty --data-dir",
        dir.display()
    )]
    Sled {
        /// The data dir.
        dir: PathBuf,
        /// What the store was doing.
        doing: String,
        /// The error.
        source: sled::Error,
    },
}

/// Everything [`Store::load`] reads back at start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// The entries, sorted by key.
    pub entries: Vec<(String, StoredEntry)>,
    /// The remembered write ids with the seq of the change that carried them, sorted by id.
    pub write_ids: Vec<(u64, WriteTag)>,
    /// The broker core's metadata (`m/<name>`), without `format`.
    pub meta: BTreeMap<String, Vec<u8>>,
    /// The seq of the last change the store holds (0 for none): that of the last change
    /// written, or the seq a snapshot installed with [`Batch::replace_all`] was taken at.
    pub last_seq: u64,
}

/// The store's counters, advanced only after a write succeeded.
#[derive(Debug)]
struct Tally {
    next_conflict: u64,
    batches: u64,
    digest: u64,
}

/// The durable store of one broker. `Send + Sync`: the writer thread writes and flushes
/// through an `Arc<Store>` while the reactor reads the log with [`Store::changes_after`].
pub struct Store {
    dir: PathBuf,
    db: sled::Db,
    log_keep: u64,
    last_seq: AtomicU64,
    /// Batches written so far (`s/batches`), and how many of them `hearth.flushed` claims.
    written: AtomicU64,
    marked: AtomicU64,
    flushed_mark: File,
    /// Serialises writes: [`Batch::replace_all`] scans the keys it removes under it.
    writing: Mutex<Tally>,
    /// Held (`flock`ed) for as long as the store is open; declared after `db` so that sled
    /// closes first.
    _lock: File,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("log_keep", &self.log_keep)
            .field("last_seq", &self.last_seq())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store in `dir`, creating `dir` (and its parents) and a fresh store if it
    /// does not exist or is empty. The log keeps the last `log_keep` changes; a log longer
    /// than that (`log_keep` was lowered) is trimmed here.
    pub fn open(dir: &Path, log_keep: u64) -> Result<Store, StoreError> {
        let dir = dir.to_path_buf();
        let io_err = |doing: &str| {
            let dir = dir.clone();
            let doing = doing.to_owned();
            move |source| StoreError::Io { dir, doing, source }
        };
        match fs::metadata(&dir) {
            Ok(meta) if !meta.is_dir() => {
                return Err(StoreError::UnknownFormat {
                    dir,
                    found: "it is a file, not a directory".into(),
                })
            }
            Ok(_) => check_contents(&dir)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&dir).map_err(io_err("creating the directory"))?
            }
            Err(e) => return Err(io_err("reading the directory")(e)),
        }
        let lock = lock_dir(&dir)?;
        let sled_dir = dir.join(SLED_DIR);
        let creating = dir
            .join(CREATING)
            .try_exists()
            .map_err(io_err("looking for an unfinished creation"))?;
        let fresh = match fs::metadata(&sled_dir) {
            Ok(meta) if !meta.is_dir() => {
                return Err(StoreError::UnknownFormat {
                    dir,
                    found: format!("{SLED_DIR} is a file, not sled's directory"),
                })
            }
            Ok(_) => creating,
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(e) => return Err(io_err("reading state.sled")(e)),
        };
        let db = guarded(&dir, "opening", || {
            if fresh {
                create(&dir)
            } else {
                // sled would make a new, empty db here: that is no store of ours.
                if !dir.join(SLED_DIR).join("db").exists() {
                    return Err(StoreError::Corrupt {
                        dir: dir.clone(),
                        detail: format!("{SLED_DIR} has no db file (sled's data)"),
                    });
                }
                let db = open_sled(&dir)?;
                check_format(&dir, &db)?;
                Ok(db)
            }
        })?;
        let (last_seq, tally) = guarded(&dir, "opening", || {
            let batches = read_u64(&dir, &db, BATCHES_KEY)?;
            check_flushed_mark(&dir, batches)?;
            trim_log(&dir, &db, log_keep)?;
            let tally = Tally {
                next_conflict: read_next_conflict(&dir, &db)?,
                batches,
                digest: read_u64(&dir, &db, DIGEST_KEY)?,
            };
            Ok((read_u64(&dir, &db, LAST_SEQ_KEY)?, tally))
        })?;
        let batches = tally.batches;
        let flushed_mark = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(FLUSHED))
            .map_err(io_err("opening hearth.flushed"))?;
        let store = Store {
            dir,
            db,
            log_keep,
            last_seq: AtomicU64::new(last_seq),
            written: AtomicU64::new(batches),
            marked: AtomicU64::new(0),
            flushed_mark,
            writing: Mutex::new(tally),
            _lock: lock,
        };
        store.mark_flushed(batches)?;
        Ok(store)
    }

    /// Reads every entry, remembered write id and metadata, for the broker to rebuild its
    /// model at start-up. A record that cannot be read is [`StoreError::Corrupt`] naming it.
    ///
    /// Meant for start-up: it holds off writes while it reads, so that it can check the
    /// records against the digest written with them.
    pub fn load(&self) -> Result<Loaded, StoreError> {
        let dir = &self.dir;
        let tally = self
            .writing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guarded(dir, "loading", || {
            let mut digest = 0;
            let mut loaded = Loaded {
                last_seq: self.last_seq(),
                ..Loaded::default()
            };
            for record in self.db.scan_prefix(ENTRY) {
                let (key, value) = record.map_err(sled_err(dir, "loading the entries"))?;
                digest ^= record_hash(&key, &value);
                let key = utf8(dir, "an entry key", &key[ENTRY.len()..])?;
                let entry = StoredEntry::decode(&value).map_err(|e| StoreError::Corrupt {
                    dir: dir.clone(),
                    detail: format!("the entry of key {key:?} cannot be read ({e})"),
                })?;
                loaded.entries.push((key, entry));
            }
            for record in self.db.scan_prefix(WRITE_ID) {
                let (key, value) = record.map_err(sled_err(dir, "loading the write ids"))?;
                digest ^= record_hash(&key, &value);
                let id = key[WRITE_ID.len()..].to_vec();
                let write: RememberedWrite =
                    bendy::serde::from_bytes(&value).map_err(|e| StoreError::Corrupt {
                        dir: dir.clone(),
                        detail: format!(
                            "the record of write id {:?} cannot be read ({e})",
                            String::from_utf8_lossy(&id)
                        ),
                    })?;
                let tag = WriteTag {
                    id,
                    digest: write.digest,
                    at_ms: write.at_ms,
                };
                loaded.write_ids.push((write.seq, tag));
            }
            for record in self.db.scan_prefix(META) {
                let (key, value) = record.map_err(sled_err(dir, "loading the metadata"))?;
                if &key[..] != FORMAT_KEY {
                    digest ^= record_hash(&key, &value);
                    let name = utf8(dir, "a metadata name", &key[META.len()..])?;
                    loaded.meta.insert(name, value.to_vec());
                }
            }
            if digest != tally.digest {
                return Err(StoreError::Corrupt {
                    dir: dir.clone(),
                    detail: format!(
                        "the {} entries, {} write ids and {} metadata records read back do \
                         not add up to the digest written with them: sled lost or rolled \
                         back some of them",
                        loaded.entries.len(),
                        loaded.write_ids.len(),
                        loaded.meta.len()
                    ),
                });
            }
            Ok(loaded)
        })
    }

    /// Applies `batch` with one sled `apply_batch`: after a crash, all of it or none of it
    /// is there. Not durable until [`Store::flush`].
    pub fn write(&self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tally = self
            .writing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let dir = &self.dir;
        let batches = tally.batches + 1;
        let (last_seq, next_conflict, digest) = guarded(dir, "writing", || {
            let mut staged: BTreeMap<Cow<'_, [u8]>, Option<&[u8]>> = BTreeMap::new();
            let mut last_seq = None;
            let mut next_conflict = tally.next_conflict;
            for op in &batch.ops {
                match op {
                    Op::Change {
                        seq,
                        entry_key,
                        entry,
                        log,
                        write,
                    } => {
                        staged.insert(Cow::Borrowed(entry_key), entry.as_deref());
                        // `log_keep` 0: no change log at all.
                        if let Some(log) = log.as_ref().filter(|_| self.log_keep > 0) {
                            staged.insert(Cow::Owned(log_key(*seq)), Some(log));
                            if let Some(gone) = seq.checked_sub(self.log_keep) {
                                staged.insert(Cow::Owned(log_key(gone)), None);
                            }
                        }
                        if let Some((key, record)) = write {
                            staged.insert(Cow::Borrowed(key), Some(record));
                        }
                        last_seq = Some(*seq);
                    }
                    Op::Put(key, value) => {
                        staged.insert(Cow::Borrowed(key), Some(value));
                    }
                    Op::Remove(key) => {
                        staged.insert(Cow::Borrowed(key), None);
                    }
                    Op::Conflict(bytes) => {
                        staged.insert(
                            Cow::Owned(prefixed(CONFLICT, &next_conflict.to_be_bytes())),
                            Some(bytes),
                        );
                        next_conflict += 1;
                    }
                    Op::ReplaceAll { seq, records } => {
                        staged.retain(|key, _| !replaced_by_snapshot(key));
                        for prefix in [ENTRY, LOG, WRITE_ID] {
                            for key in self.db.scan_prefix(prefix).keys() {
                                let key = key.map_err(sled_err(dir, "listing the old keys"))?;
                                staged.insert(Cow::Owned(key.to_vec()), None);
                            }
                        }
                        for (key, value) in records {
                            staged.insert(Cow::Borrowed(key), Some(value));
                        }
                        last_seq = Some(*seq);
                    }
                }
            }
            let last_seq_bytes = last_seq.map(u64::to_be_bytes);
            if let Some(bytes) = &last_seq_bytes {
                staged.insert(Cow::Borrowed(LAST_SEQ_KEY), Some(bytes));
            }
            let batches_bytes = batches.to_be_bytes();
            staged.insert(Cow::Borrowed(BATCHES_KEY), Some(&batches_bytes));
            let mut digest = tally.digest;
            for (key, new) in &staged {
                if digested(key) {
                    let old = self
                        .db
                        .get(key)
                        .map_err(sled_err(dir, "reading a record"))?;
                    if let Some(old) = old {
                        digest ^= record_hash(key, &old);
                    }
                    if let Some(new) = new {
                        digest ^= record_hash(key, new);
                    }
                }
            }
            let digest_bytes = digest.to_be_bytes();
            staged.insert(Cow::Borrowed(DIGEST_KEY), Some(&digest_bytes));
            let mut sled_batch = sled::Batch::default();
            for (key, value) in staged {
                match value {
                    Some(value) => sled_batch.insert(&*key, value),
                    None => sled_batch.remove(&*key),
                }
            }
            self.db
                .apply_batch(sled_batch)
                .map_err(sled_err(dir, "writing a batch"))?;
            Ok((last_seq, next_conflict, digest))
        })?;
        tally.digest = digest;
        tally.next_conflict = next_conflict;
        tally.batches = batches;
        self.written.store(batches, Ordering::Release);
        if let Some(seq) = last_seq {
            self.last_seq.store(seq, Ordering::Release);
        }
        Ok(())
    }

    /// Makes everything written so far durable (sled's flush: write and fsync).
    pub fn flush(&self) -> Result<(), StoreError> {
        // Every batch counted here was applied before sled's flush starts, so it is in it.
        let written = self.written.load(Ordering::Acquire);
        guarded(&self.dir, "flushing", || {
            self.db
                .flush()
                .map(drop)
                .map_err(sled_err(&self.dir, "flushing"))
        })?;
        self.mark_flushed(written)
    }

    /// Records in `hearth.flushed` that `batches` batches are durable in sled. Written
    /// without an fsync of its own: after a power cut it may claim less than sled holds,
    /// never more.
    fn mark_flushed(&self, batches: u64) -> Result<(), StoreError> {
        use std::os::unix::fs::FileExt;
        if self.marked.fetch_max(batches, Ordering::AcqRel) >= batches && batches > 0 {
            return Ok(());
        }
        // Fixed width, so a larger number always overwrites a smaller one whole.
        self.flushed_mark
            .write_all_at(format!("{batches:020}\n").as_bytes(), 0)
            .map_err(|source| StoreError::Io {
                dir: self.dir.clone(),
                doing: "writing hearth.flushed".into(),
                source,
            })
    }

    /// The log from `seq + 1` on, at most `limit` changes (at least one): what a peer at
    /// `seq` is missing. `Some(vec![])` if the peer is at the store's last seq. `None` if the
    /// log cannot bring it up to date: `seq + 1` was trimmed away already, or `seq` is past
    /// the last change here (the peer went on without us); the caller sends a snapshot.
    pub fn changes_after(&self, seq: u64, limit: usize) -> Result<Option<Vec<Change>>, StoreError> {
        let last = self.last_seq();
        if seq >= last {
            return Ok((seq == last).then(Vec::new));
        }
        let dir = &self.dir;
        guarded(dir, "reading the log", || {
            let mut changes = Vec::new();
            let wanted = (seq + 1..=last).take(limit.max(1));
            let log = self.db.range(log_key(seq + 1)..=log_key(last));
            for (next, record) in wanted.zip(log) {
                let (key, value) = record.map_err(sled_err(dir, "reading the log"))?;
                if key[LOG.len()..] != next.to_be_bytes() {
                    break;
                }
                let change = Change::decode(&value).map_err(|e| StoreError::Corrupt {
                    dir: dir.clone(),
                    detail: format!("change {next} of the log cannot be read ({e})"),
                })?;
                changes.push(change);
            }
            Ok((!changes.is_empty()).then_some(changes))
        })
    }

    /// The conflict records, oldest first.
    pub fn conflicts(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        guarded(&self.dir, "reading the conflict records", || {
            self.db
                .scan_prefix(CONFLICT)
                .values()
                .map(|value| {
                    value
                        .map(|v| v.to_vec())
                        .map_err(sled_err(&self.dir, "reading the conflict records"))
                })
                .collect()
        })
    }

    /// The seq of the last change the store holds (see [`Loaded::last_seq`]).
    pub fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::Acquire)
    }

    /// The data dir.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

/// Runs `f`, turning a panic inside sled into [`StoreError::Corrupt`].
fn guarded<T>(
    dir: &Path,
    doing: &str,
    f: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(StoreError::Corrupt {
            dir: dir.to_path_buf(),
            detail: format!("sled panicked while {doing} ({message})"),
        })
    })
}

/// Maps a sled error: damage it found is [`StoreError::Corrupt`].
fn sled_err<'a>(dir: &'a Path, doing: &'a str) -> impl FnOnce(sled::Error) -> StoreError + 'a {
    move |source| match source {
        sled::Error::Corruption { at, .. } => StoreError::Corrupt {
            dir: dir.to_path_buf(),
            detail: match at {
                Some(at) => format!("sled found a damaged record at {at:?} while {doing}"),
                None => format!("sled found a damaged file while {doing}"),
            },
        },
        sled::Error::Io(source) => StoreError::Io {
            dir: dir.to_path_buf(),
            doing: doing.to_owned(),
            source,
        },
        source => StoreError::Sled {
            dir: dir.to_path_buf(),
            doing: doing.to_owned(),
            source,
        },
    }
}

fn be_u64(bytes: &[u8]) -> Option<u64> {
    bytes.try_into().ok().map(u64::from_be_bytes)
}

fn utf8(dir: &Path, what: &str, bytes: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| StoreError::Corrupt {
        dir: dir.to_path_buf(),
        detail: format!("{what} is not UTF-8: {:?}", String::from_utf8_lossy(bytes)),
    })
}

fn prefixed(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + rest.len());
    key.extend_from_slice(prefix);
    key.extend_from_slice(rest);
    key
}

fn log_key(seq: u64) -> Vec<u8> {
    prefixed(LOG, &seq.to_be_bytes())
}

/// The records `s/digest` covers: those [`Store::load`] returns.
fn digested(key: &[u8]) -> bool {
    key.starts_with(ENTRY)
        || key.starts_with(WRITE_ID)
        || (key.starts_with(META) && key != FORMAT_KEY)
}

/// A 64-bit hash of one record, key and value, for `s/digest`. Part of the on-disk
/// format: changing it makes every existing store look damaged.
fn record_hash(key: &[u8], value: &[u8]) -> u64 {
    // splitmix64's finaliser over the lengths and little-endian 8-byte words.
    fn mix(mut x: u64) -> u64 {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }
    let mut hash = 0;
    for part in [key, value] {
        hash = mix(hash ^ part.len() as u64);
        let mut words = part.chunks_exact(8);
        for word in &mut words {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(word);
            hash = mix(hash ^ u64::from_le_bytes(bytes));
        }
        let mut last = [0; 8];
        last[..words.remainder().len()].copy_from_slice(words.remainder());
        hash = mix(hash ^ u64::from_le_bytes(last));
    }
    hash
}

/// The keys [`Batch::replace_all`] replaces.
fn replaced_by_snapshot(key: &[u8]) -> bool {
    [ENTRY, LOG, WRITE_ID].iter().any(|p| key.starts_with(p))
}

#[cfg(test)]
pub(crate) mod tests;
