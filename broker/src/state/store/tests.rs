//! The store on real files in temp dirs: round trips, the log, snapshots, conflicts, and
//! every way start-up can find a data dir it must refuse.

use std::io::{BufRead, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicUsize;

use hearth_proto::state::Cause;
use rand::{Rng, RngCore, SeedableRng};

use super::*;

/// A directory of its own under the temp dir, removed when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::var_os("HEARTH_BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!(
            "hearth-store-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        TempDir(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// The data dir's sled directory.
    fn sled(&self) -> PathBuf {
        self.0.join(SLED_DIR)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn set(seq: u64, key: &str, value: &[u8]) -> Change {
    Change {
        seq,
        term: 2,
        key: key.into(),
        cause: Cause::Set,
        value: Some(value.to_vec()),
        expires_at_ms: None,
        write: None,
    }
}

fn gone(seq: u64, key: &str, cause: Cause) -> Change {
    Change {
        value: None,
        cause,
        ..set(seq, key, b"")
    }
}

fn tag(id: &[u8], digest: u64) -> WriteTag {
    WriteTag {
        id: id.to_vec(),
        digest,
        at_ms: 1_700_000_000_000 + digest,
    }
}

fn entry(seq: u64, value: &[u8], expires_at_ms: Option<u64>) -> StoredEntry {
    StoredEntry {
        seq,
        value: value.to_vec(),
        expires_at_ms,
    }
}

fn write_changes(store: &Store, changes: &[Change]) {
    let mut batch = Batch::default();
    for change in changes {
        batch.change(change);
    }
    store.write(&batch).expect("write");
    store.flush().expect("flush");
}

/// `seq`s 1..=n setting `key{seq % keys}` to a 64-byte Bencode string.
fn numbered(n: u64, keys: u64) -> Vec<Change> {
    (1..=n)
        .map(|seq| set(seq, &format!("key{}", seq % keys), &value64(seq)))
        .collect()
}

fn value64(seq: u64) -> Vec<u8> {
    format!("61:{seq:061}").into_bytes()
}

fn log_seqs(store: &Store) -> Vec<u64> {
    store
        .db
        .scan_prefix(LOG)
        .keys()
        .map(|key| be_u64(&key.expect("key")[LOG.len()..]).expect("8 bytes"))
        .collect()
}

fn seqs(changes: &[Change]) -> Vec<u64> {
    changes.iter().map(|c| c.seq).collect()
}

/// The error of opening and then loading `dir` (an open that fails stops there).
fn open_and_load(dir: &Path) -> Result<Loaded, StoreError> {
    Store::open(dir, DEFAULT_LOG_KEEP)?.load()
}

fn assert_names_dir(error: &StoreError, dir: &Path) {
    let message = error.to_string();
    assert!(
        message.contains(&dir.display().to_string()),
        "the message does not name {}: {message}",
        dir.display()
    );
}

#[test]
fn changes_round_trip_through_a_reopen() {
    let tmp = TempDir::new("round-trip");
    let store = Store::open(tmp.path(), DEFAULT_LOG_KEEP).expect("open");
    assert_eq!(store.load().expect("load"), Loaded::default());
    let mut temp = set(1, "kitchen/temp", b"i215e");
    temp.expires_at_ms = Some(1_800_000_000_000);
    let mut light = set(2, "hall/light", b"2:on");
    light.write = Some(tag(b"w-1", 11));
    let motion = set(3, "hall/motion", b"i1e");
    let door = set(4, "front/door", b"4:open");
    write_changes(&store, &[temp.clone(), light, motion, door]);
    let mut batch = Batch::default();
    let mut delete = gone(5, "hall/motion", Cause::Delete);
    delete.write = Some(tag(b"w-2", 22));
    batch.change(&delete);
    batch.change(&gone(6, "front/door", Cause::Expire));
    batch.change(&set(7, "hall/light", b"3:off"));
    batch.put_meta("seq", b"7".to_vec());
    batch.put_meta("terms", b"li1ei2ee".to_vec());
    batch.put_meta("format", b"not mine".to_vec());
    store.write(&batch).expect("write");
    store.flush().expect("flush");
    let before = store.load().expect("load");
    drop(store);

    let store = Store::open(tmp.path(), DEFAULT_LOG_KEEP).expect("reopen");
    let loaded = store.load().expect("load");
    assert_eq!(loaded, before);
    assert_eq!(
        loaded.entries,
        [
            ("hall/light".to_string(), entry(7, b"3:off", None)),
            (
                "kitchen/temp".to_string(),
                entry(1, b"i215e", Some(1_800_000_000_000))
            ),
        ]
    );
    assert_eq!(
        loaded.write_ids,
        [(2, tag(b"w-1", 11)), (5, tag(b"w-2", 22))]
    );
    assert_eq!(
        loaded.meta,
        BTreeMap::from([
            ("seq".to_string(), b"7".to_vec()),
            ("terms".to_string(), b"li1ei2ee".to_vec()),
        ])
    );
    assert_eq!(loaded.last_seq, 7);
    assert_eq!(
        store
            .changes_after(0, 100)
            .expect("log")
            .map(|c| c[0].clone()),
        Some(temp)
    );

    let mut batch = Batch::default();
    batch.forget_write_ids(&[b"w-1".to_vec(), b"never-seen".to_vec()]);
    store.write(&batch).expect("write");
    assert_eq!(
        store.load().expect("load").write_ids,
        [(5, tag(b"w-2", 22))]
    );
    assert_eq!(store.path(), tmp.path());
}

#[test]
fn the_log_keeps_exactly_the_last_log_keep_changes() {
    let tmp = TempDir::new("trim");
    let store = Store::open(tmp.path(), 10).expect("open");
    let changes = numbered(25, 7);
    write_changes(&store, &changes[..3]);
    assert_eq!(log_seqs(&store), [1, 2, 3]);
    // One change at a time, and several in one batch.
    for change in &changes[3..12] {
        write_changes(&store, std::slice::from_ref(change));
    }
    assert_eq!(log_seqs(&store), (3..=12).collect::<Vec<_>>());
    write_changes(&store, &changes[12..]);
    assert_eq!(log_seqs(&store), (16..=25).collect::<Vec<_>>());
    drop(store);

    // A lower log_keep trims at open; a higher one keeps what is there.
    let store = Store::open(tmp.path(), 4).expect("reopen");
    assert_eq!(log_seqs(&store), [22, 23, 24, 25]);
    drop(store);
    let store = Store::open(tmp.path(), 50).expect("reopen");
    assert_eq!(log_seqs(&store), [22, 23, 24, 25]);
    drop(store);

    // log_keep 0 keeps no log at all.
    let store = Store::open(tmp.path(), 0).expect("reopen");
    assert_eq!(log_seqs(&store), Vec::<u64>::new());
    write_changes(&store, &numbered(27, 7)[25..]);
    assert_eq!(log_seqs(&store), Vec::<u64>::new());
    assert_eq!(store.last_seq(), 27);
}

#[test]
fn changes_after_returns_the_tail_or_none_when_trimmed() {
    let tmp = TempDir::new("changes-after");
    let store = Store::open(tmp.path(), 10).expect("open");
    assert_eq!(store.changes_after(0, 5).expect("read"), Some(vec![]));
    assert_eq!(store.changes_after(1, 5).expect("read"), None);
    let changes = numbered(30, 100);
    write_changes(&store, &changes);
    let tail = store
        .changes_after(25, 100)
        .expect("read")
        .expect("in the log");
    assert_eq!(tail, changes[25..]);
    let first = store
        .changes_after(20, 3)
        .expect("read")
        .expect("in the log");
    assert_eq!(seqs(&first), [21, 22, 23]);
    assert_eq!(
        seqs(&store.changes_after(29, 0).expect("read").expect("log")),
        [30]
    );
    assert_eq!(store.changes_after(30, 10).expect("read"), Some(vec![]));
    // seq 20 is the oldest kept: a peer at 19 can still catch up, one at 18 cannot.
    assert_eq!(
        seqs(&store.changes_after(20, 1).expect("read").expect("log")),
        [21]
    );
    assert_eq!(store.changes_after(19, 10).expect("read"), None);
    assert_eq!(store.changes_after(0, 10).expect("read"), None);
    // A peer past our last change went on without us: it needs a snapshot.
    assert_eq!(store.changes_after(31, 10).expect("read"), None);
}

#[test]
fn replace_all_replaces_entries_log_and_write_ids_at_once() {
    let tmp = TempDir::new("replace-all");
    let store = Store::open(tmp.path(), 100).expect("open");
    let mut changes = numbered(20, 5);
    changes[19].write = Some(tag(b"old-id", 1));
    write_changes(&store, &changes);
    let mut batch = Batch::default();
    batch.put_meta("standing", b"1".to_vec());
    batch.add_conflict(b"conflict 0".to_vec());
    store.write(&batch).expect("write");

    let mut batch = Batch::default();
    // A change before the snapshot in the same batch is replaced by it, like the rest.
    batch.change(&set(21, "before/snapshot", b"i1e"));
    batch.replace_all(
        500,
        [
            ("a".to_string(), entry(400, b"i1e", None)),
            ("b".to_string(), entry(500, b"i2e", Some(9))),
        ],
        [(450, tag(b"new-id", 2))],
    );
    batch.change(&set(501, "c", b"i3e"));
    batch.put_meta("seq", b"501".to_vec());
    store.write(&batch).expect("write");
    store.flush().expect("flush");
    drop(store);

    let store = Store::open(tmp.path(), 100).expect("reopen");
    let loaded = store.load().expect("load");
    assert_eq!(
        loaded.entries,
        [
            ("a".to_string(), entry(400, b"i1e", None)),
            ("b".to_string(), entry(500, b"i2e", Some(9))),
            ("c".to_string(), entry(501, b"i3e", None)),
        ]
    );
    assert_eq!(loaded.write_ids, [(450, tag(b"new-id", 2))]);
    assert_eq!(loaded.last_seq, 501);
    assert_eq!(
        loaded.meta,
        BTreeMap::from([
            ("seq".to_string(), b"501".to_vec()),
            ("standing".to_string(), b"1".to_vec()),
        ])
    );
    assert_eq!(log_seqs(&store), [501]);
    assert_eq!(
        seqs(&store.changes_after(500, 10).expect("read").expect("log")),
        [501]
    );
    assert_eq!(store.changes_after(499, 10).expect("read"), None);
    assert_eq!(
        store.conflicts().expect("conflicts"),
        [b"conflict 0".to_vec()]
    );

    // A snapshot at a lower seq (stepping down after a partition) is taken as it is.
    let mut batch = Batch::default();
    batch.replace_all(7, [("z".to_string(), entry(7, b"i0e", None))], []);
    store.write(&batch).expect("write");
    assert_eq!(store.last_seq(), 7);
    assert_eq!(store.changes_after(7, 10).expect("read"), Some(vec![]));
    assert_eq!(log_seqs(&store), Vec::<u64>::new());
    assert_eq!(store.load().expect("load").entries.len(), 1);
}

#[test]
fn conflicts_append_and_list_in_order_across_reopens() {
    let tmp = TempDir::new("conflicts");
    let store = Store::open(tmp.path(), 100).expect("open");
    assert_eq!(store.conflicts().expect("conflicts"), Vec::<Vec<u8>>::new());
    let mut batch = Batch::default();
    batch.add_conflict(b"first".to_vec());
    batch.add_conflict(b"second".to_vec());
    store.write(&batch).expect("write");
    drop(store);
    let store = Store::open(tmp.path(), 100).expect("reopen");
    let mut batch = Batch::default();
    batch.add_conflict(b"third".to_vec());
    store.write(&batch).expect("write");
    assert_eq!(
        store.conflicts().expect("conflicts"),
        [b"first".to_vec(), b"second".to_vec(), b"third".to_vec()]
    );
    assert!(store.load().expect("load").meta.is_empty());
}

#[test]
fn a_batch_counts_its_steps() {
    let mut batch = Batch::default();
    assert!(batch.is_empty());
    batch.change(&set(1, "k", b"i1e"));
    batch.forget_write_ids(&[b"a".to_vec(), b"b".to_vec()]);
    let mut other = Batch::default();
    other.add_conflict(vec![]);
    batch.append(other);
    assert_eq!(batch.len(), 4);
    assert!(!batch.is_empty());
}

// ---- start-up ----------------------------------------------------------------------------

#[test]
fn a_missing_dir_and_its_parents_are_created_and_an_empty_one_is_fresh() {
    let tmp = TempDir::new("fresh");
    let nested = tmp.path().join("a/b/data");
    let store = Store::open(&nested, 10).expect("open a new dir");
    assert_eq!(store.load().expect("load"), Loaded::default());
    drop(store);
    assert!(!nested.join(CREATING).exists());

    let empty = tmp.path().join("empty");
    fs::create_dir_all(empty.join("lost+found")).expect("mkdir");
    Store::open(&empty, 10).expect("open an empty dir (a mount point)");
}

#[test]
fn a_second_open_in_this_process_is_locked() {
    let tmp = TempDir::new("locked-here");
    let store = Store::open(tmp.path(), 10).expect("open");
    let error = Store::open(tmp.path(), 10).expect_err("a second open");
    assert!(
        matches!(error, StoreError::Locked { holder: Some(pid), .. } if pid == std::process::id()),
        "{error:?}"
    );
    assert_names_dir(&error, tmp.path());
    assert!(error
        .to_string()
        .contains(&format!("pid {}", std::process::id())));
    drop(store);
    Store::open(tmp.path(), 10).expect("open after the first closed");
}

const CHILD_DIR: &str = "HEARTH_STORE_TEST_LOCK_CHILD";

/// Not a test by itself: the child process of `another_process_holding_the_dir_is_locked`
/// opens the store, says so, and keeps it open until its stdin closes.
#[test]
fn lock_holding_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let store = Store::open(Path::new(&dir), 10).expect("child: open");
    println!("child-holds-the-lock");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(store);
}

#[test]
fn another_process_holding_the_dir_is_locked() {
    let tmp = TempDir::new("locked-there");
    let exe = std::env::current_exe().expect("the test binary");
    let mut child = Command::new(exe)
        .args([
            "state::store::tests::lock_holding_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, tmp.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut stdout = BufReader::new(stdout).lines();
    let ready = stdout
        .by_ref()
        .map_while(Result::ok)
        .any(|line| line.contains("child-holds-the-lock"));
    assert!(ready, "the child never opened the store");

    let error = Store::open(tmp.path(), 10).expect_err("open while the child holds it");
    assert!(
        matches!(error, StoreError::Locked { holder: Some(pid), .. } if pid == child.id()),
        "{error:?}"
    );
    assert_names_dir(&error, tmp.path());
    println!("{error}");

    drop(child.stdin.take());
    // Read the child's remaining output, so that it is not cut off by a broken pipe.
    stdout.for_each(drop);
    let status = child.wait().expect("the child ends");
    assert!(status.success(), "child: {status}");
    Store::open(tmp.path(), 10).expect("open after the child ended");
}

#[test]
fn sleds_own_lock_held_elsewhere_is_locked_too() {
    let tmp = TempDir::new("sled-lock");
    drop(Store::open(tmp.path(), 10).expect("create"));
    // As a process that opened state.sled with sled itself (no hearth.lock) would.
    let db_file = File::open(tmp.sled().join("db")).expect("open sled's db file");
    // SAFETY: flock on a descriptor this test owns.
    let locked = unsafe { libc::flock(db_file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(locked, 0, "lock sled's db file");
    let error = Store::open(tmp.path(), 10).expect_err("open while sled's file is locked");
    assert!(
        matches!(error, StoreError::Locked { holder: None, .. }),
        "{error:?}"
    );
    assert_names_dir(&error, tmp.path());
    drop(db_file);
    Store::open(tmp.path(), 10).expect("open after the lock is gone");
}

fn expect_unknown(dir: &Path, found: &str) {
    let error = Store::open(dir, 10).expect_err("an unknown dir");
    match &error {
        StoreError::UnknownFormat { found: what, .. } => {
            assert!(what.contains(found), "{what:?} does not say {found:?}")
        }
        other => panic!("not UnknownFormat: {other:?}"),
    }
    assert_names_dir(&error, dir);
}

#[test]
fn a_dir_that_is_not_ours_is_an_unknown_format() {
    let tmp = TempDir::new("unknown");
    fs::create_dir_all(tmp.path()).expect("mkdir");

    let file = tmp.path().join("a-file");
    fs::write(&file, b"hello").expect("write");
    expect_unknown(&file, "is a file");

    let foreign = tmp.path().join("foreign");
    fs::create_dir_all(foreign.join("pg_wal")).expect("mkdir");
    fs::write(foreign.join("PG_VERSION"), b"16").expect("write");
    expect_unknown(&foreign, "PG_VERSION, pg_wal");
    assert!(
        !foreign.join(LOCK_FILE).exists(),
        "a foreign dir is left alone"
    );

    let sled_file = tmp.path().join("sled-file");
    fs::create_dir_all(&sled_file).expect("mkdir");
    fs::write(sled_file.join(SLED_DIR), b"").expect("write");
    expect_unknown(&sled_file, "is a file");

    // Somebody else's sled database.
    let other = tmp.path().join("other-sled");
    let db = sled::open(other.join(SLED_DIR)).expect("sled");
    db.insert(b"users/1", b"alice").expect("insert");
    db.flush().expect("flush");
    drop(db);
    expect_unknown(&other, "without hearth's format marker");

    // A later format of ours.
    let later = tmp.path().join("later");
    drop(Store::open(&later, 10).expect("create"));
    let db = raw_sled(&later.join(SLED_DIR));
    db.insert(FORMAT_KEY, b"hearth-state/2").expect("insert");
    db.flush().expect("flush");
    drop(db);
    expect_unknown(&later, "hearth-state/2");
}

#[test]
fn an_unfinished_creation_is_made_again_but_an_empty_store_is_corrupt() {
    let tmp = TempDir::new("creating");
    drop(Store::open(tmp.path(), 10).expect("create"));
    // A creation killed before it finished: the marker is still there.
    fs::write(tmp.path().join(CREATING), b"").expect("marker");
    fs::remove_dir_all(tmp.sled()).expect("rm");
    fs::create_dir_all(tmp.sled()).expect("a half-made state.sled");
    let store = Store::open(tmp.path(), 10).expect("made again");
    assert_eq!(store.load().expect("load"), Loaded::default());
    drop(store);
    assert!(!tmp.path().join(CREATING).exists());

    // Without the marker, a state.sled without records is damage, not a fresh store.
    fs::remove_dir_all(tmp.sled()).expect("rm");
    fs::create_dir_all(tmp.sled()).expect("an empty state.sled");
    let error = Store::open(tmp.path(), 10).expect_err("an empty store");
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error:?}");
    assert_names_dir(&error, tmp.path());
}

#[test]
fn a_record_that_does_not_decode_is_corrupt_naming_its_key() {
    let tmp = TempDir::new("bad-record");
    let store = Store::open(tmp.path(), 10).expect("open");
    write_changes(&store, &numbered(3, 10));
    drop(store);
    let db = raw_sled(&tmp.sled());
    db.insert(b"k/hall/light", b"not bencode").expect("insert");
    db.flush().expect("flush");
    drop(db);
    let error = open_and_load(tmp.path()).expect_err("a bad entry");
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error:?}");
    assert!(error.to_string().contains("\"hall/light\""), "{error}");
    assert_names_dir(&error, tmp.path());

    let db = raw_sled(&tmp.sled());
    db.remove(b"k/hall/light").expect("remove");
    db.insert(b"k/\xff\xfe", StoredEntry::encode(&entry(1, b"i1e", None)))
        .expect("insert");
    db.insert(b"l/\0\0\0\0\0\0\0\x02", b"not a change")
        .expect("insert");
    db.flush().expect("flush");
    drop(db);
    let error = open_and_load(tmp.path()).expect_err("a key that is not UTF-8");
    assert!(error.to_string().contains("not UTF-8"), "{error}");

    let db = raw_sled(&tmp.sled());
    db.remove(b"k/\xff\xfe").expect("remove");
    db.flush().expect("flush");
    drop(db);
    let store = Store::open(tmp.path(), 10).expect("open");
    let error = store.changes_after(1, 10).expect_err("a bad log record");
    assert!(error.to_string().contains("change 2 of the log"), "{error}");
}

#[test]
fn records_that_do_not_add_up_to_the_digest_are_corrupt() {
    let tmp = TempDir::new("digest");
    let store = Store::open(tmp.path(), 10).expect("open");
    let mut changes = numbered(5, 10);
    changes[4].write = Some(tag(b"id", 1));
    write_changes(&store, &changes);
    let mut batch = Batch::default();
    batch.put_meta("seq", b"5".to_vec());
    batch.forget_write_ids(&[b"id".to_vec()]);
    batch.change(&gone(6, "key1", Cause::Delete));
    store.write(&batch).expect("write");
    store.flush().expect("flush");
    drop(store);
    assert_eq!(open_and_load(tmp.path()).expect("load").entries.len(), 4);

    // An older version of one entry, as sled recovers when newer log records are damaged.
    let db = raw_sled(&tmp.sled());
    db.insert(b"k/key2", entry(1, b"i0e", None).encode())
        .expect("insert");
    db.flush().expect("flush");
    drop(db);
    let error = open_and_load(tmp.path()).expect_err("a rolled-back entry");
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error:?}");
    assert!(error.to_string().contains("do not add up"), "{error}");
    assert_names_dir(&error, tmp.path());
}

/// sled's own handle on `state.sled`, once the store's background threads let go of it.
fn raw_sled(path: &Path) -> sled::Db {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(sled::Error::Io(e)) if is_sled_lock_error(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("sled: {e:?}"),
        }
    }
}

#[test]
fn a_panic_inside_sled_is_a_corrupt_store() {
    let dir = Path::new("/some/data");
    let error = guarded::<()>(dir, "loading", || panic!("page table mismatch")).expect_err("panic");
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error:?}");
    assert!(error.to_string().contains("page table mismatch"), "{error}");
    assert_names_dir(&error, dir);
}

// ---- damaged files -----------------------------------------------------------------------

/// A flushed store with small entries and some large ones (which sled keeps in `blobs/`);
/// `reopened`: opened once more, which makes sled write its snapshot file.
fn damaged_fixture(name: &str, reopened: bool) -> (TempDir, Loaded) {
    let tmp = TempDir::new(name);
    let store = Store::open(tmp.path(), 1_000).expect("open");
    let mut changes = numbered(3_000, 2_000);
    let big = format!("60000:{}", "b".repeat(60_000)).into_bytes();
    for seq in 3_001..=3_006 {
        changes.push(set(seq, &format!("big{seq}"), &big));
    }
    write_changes(&store, &changes);
    let mut loaded = store.load().expect("load");
    if reopened {
        drop(store);
        let store = Store::open(tmp.path(), 1_000).expect("reopen");
        loaded = store.load().expect("load");
    }
    (tmp, loaded)
}

fn overwrite(path: &Path, at: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open to damage");
    file.write_all_at(bytes, at).expect("damage");
}

fn random_bytes(rng: &mut impl RngCore, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    rng.fill_bytes(&mut bytes);
    bytes
}

fn len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).expect("file size")
}

fn seeded() -> rand::rngs::StdRng {
    let seed = std::env::var("HEARTH_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    println!("seed {seed} (HEARTH_TEST_SEED={seed} replays it)");
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// The damage must be an error naming the dir; never a panic, never an empty or partial
/// store. `may_survive`: damage sled can legitimately ignore (it hit bytes no longer in
/// use), where an identical load is fine too.
fn expect_damage_detected(case: &str, tmp: &TempDir, before: &Loaded, may_survive: bool) {
    let result = std::panic::catch_unwind(|| open_and_load(tmp.path()));
    match result {
        Err(_) => panic!("{case}: open/load panicked"),
        Ok(Err(error)) => {
            assert!(
                matches!(
                    error,
                    StoreError::Corrupt { .. } | StoreError::UnknownFormat { .. }
                ),
                "{case}: {error:?}"
            );
            assert_names_dir(&error, tmp.path());
            println!("{case}: {error}");
        }
        Ok(Ok(loaded)) => {
            assert!(
                loaded == *before,
                "{case}: a store that differs from the one written ({} of {} entries)",
                loaded.entries.len(),
                before.entries.len()
            );
            assert!(may_survive, "{case}: unnoticed, though everything loaded");
            println!("{case}: unharmed, everything loaded");
        }
    }
}

#[test]
fn damaged_files_are_errors_never_panics_nor_an_empty_store() {
    let mut rng = seeded();
    type Damage = fn(&TempDir, &mut rand::rngs::StdRng);
    let cases: &[(&str, bool, Damage)] = &[
        ("garbage over the whole db file", false, |t, r| {
            let db = t.sled().join("db");
            let bytes = random_bytes(r, len(&db) as usize);
            overwrite(&db, 0, &bytes);
        }),
        ("zeros over the whole db file", false, |t, _| {
            let db = t.sled().join("db");
            overwrite(&db, 0, &vec![0; len(&db) as usize]);
        }),
        ("a zero-length db file", false, |t, _| {
            fs::write(t.sled().join("db"), b"").expect("truncate");
        }),
        ("a db file cut in half", false, |t, _| {
            let db = t.sled().join("db");
            let file = OpenOptions::new().write(true).open(&db).expect("open");
            file.set_len(len(&db) / 2).expect("truncate");
        }),
        ("random bytes over the blobs", false, |t, r| {
            let blobs: Vec<_> = fs::read_dir(t.sled().join("blobs"))
                .expect("blobs")
                .map(|e| e.expect("entry").path())
                .collect();
            assert!(!blobs.is_empty(), "the fixture has no blobs");
            for blob in blobs {
                let bytes = random_bytes(r, len(&blob) as usize);
                overwrite(&blob, 0, &bytes);
            }
        }),
        ("conf cut to 20 bytes", false, |t, _| {
            let conf = t.sled().join("conf");
            let file = OpenOptions::new().write(true).open(&conf).expect("open");
            file.set_len(20).expect("truncate");
        }),
        ("garbage in conf", false, |t, r| {
            let conf = t.sled().join("conf");
            let bytes = random_bytes(r, len(&conf) as usize);
            overwrite(&conf, 0, &bytes);
        }),
        ("garbage in the snapshot", false, |t, r| {
            let snapshots: Vec<_> = fs::read_dir(t.sled())
                .expect("sled dir")
                .map(|e| e.expect("entry").path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("snap."))
                })
                .collect();
            assert!(
                !snapshots.is_empty(),
                "the fixture has no snapshot: {:?}",
                fs::read_dir(t.sled())
                    .expect("dir")
                    .map(|e| e.expect("e").file_name())
                    .collect::<Vec<_>>()
            );
            for path in snapshots {
                let bytes = random_bytes(r, 64);
                overwrite(&path, len(&path) / 2, &bytes);
            }
        }),
        // sled ignores a conf of 8 bytes or less and writes it again: the data is intact.
        ("conf cut to 4 bytes", true, |t, _| {
            let conf = t.sled().join("conf");
            let file = OpenOptions::new().write(true).open(&conf).expect("open");
            file.set_len(4).expect("truncate");
        }),
        ("4 KiB of garbage somewhere in the db file", true, |t, r| {
            let db = t.sled().join("db");
            let at = r.gen_range(0..len(&db).saturating_sub(4096).max(1));
            let bytes = random_bytes(r, 4096);
            overwrite(&db, at, &bytes);
        }),
    ];
    // A store written once has no snapshot file yet, one reopened since has: sled reads
    // them differently (without a snapshot, damage often looks like a torn write to it).
    for reopened in [false, true] {
        for (case, may_survive, damage) in cases {
            if case.contains("snapshot") && !reopened {
                continue;
            }
            let (tmp, before) = damaged_fixture("damage", reopened);
            damage(&tmp, &mut rng);
            let case = format!("{case}{}", if reopened { ", reopened" } else { "" });
            expect_damage_detected(&case, &tmp, &before, *may_survive);
        }
    }
    // Random damage to the db file, several times.
    for round in 0..8 {
        let (tmp, before) = damaged_fixture("damage-random", round % 2 == 1);
        let db = tmp.sled().join("db");
        let at = rng.gen_range(0..len(&db));
        let how_many = rng.gen_range(1..20_000);
        let bytes = random_bytes(&mut rng, how_many);
        overwrite(&db, at, &bytes);
        let case = format!("{} random bytes at {at} of the db file", bytes.len());
        expect_damage_detected(&format!("round {round}: {case}"), &tmp, &before, true);
    }
}

/// Random damage to the db file, many times:
/// `HEARTH_DAMAGE_ROUNDS=500 cargo test --release -p hearth-broker --lib damage_soak -- --ignored --nocapture`.
#[test]
#[ignore = "a soak; run it by hand"]
fn damage_soak() {
    let mut rng = seeded();
    let rounds: u64 = std::env::var("HEARTH_DAMAGE_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut outcomes = BTreeMap::<&str, u64>::new();
    for round in 0..rounds {
        let (tmp, before) = damaged_fixture("soak", round % 2 == 1);
        let db = tmp.sled().join("db");
        let at = rng.gen_range(0..len(&db));
        let how_many = rng.gen_range(1..20_000);
        let bytes = random_bytes(&mut rng, how_many);
        overwrite(&db, at, &bytes);
        let case = format!(
            "round {round}: {how_many} random bytes at {at} of {} ({})",
            len(&db),
            if round % 2 == 1 {
                "reopened"
            } else {
                "written once"
            }
        );
        match std::panic::catch_unwind(|| open_and_load(tmp.path())) {
            Err(_) => panic!("{case}: panicked"),
            Ok(Err(error)) => {
                let message = error.to_string();
                let how = [
                    ("sled panicked", "a sled panic, caught"),
                    ("lost the end", "hearth.flushed"),
                    ("do not add up", "s/digest"),
                    ("no records at all", "an empty store"),
                    ("sled found", "sled's own checks"),
                ]
                .iter()
                .find(|(text, _)| message.contains(text))
                .map_or("other errors", |(_, how)| how);
                *outcomes.entry(how).or_insert(0) += 1;
            }
            Ok(Ok(loaded)) if loaded == before => *outcomes.entry("unharmed").or_insert(0) += 1,
            Ok(Ok(loaded)) => {
                let missing: Vec<_> = before
                    .entries
                    .iter()
                    .filter(|e| !loaded.entries.contains(e))
                    .map(|(k, e)| (k.clone(), e.seq))
                    .take(5)
                    .collect();
                println!(
                    "{case}: DIFFERS: {} of {} entries, last_seq {} of {}, meta {:?}, e.g. missing {missing:?}",
                    loaded.entries.len(),
                    before.entries.len(),
                    loaded.last_seq,
                    before.last_seq,
                    loaded.meta,
                );
                let kept = std::env::temp_dir().join(format!("hearth-differs-{round}"));
                copy_dir(tmp.path(), &kept);
                println!("kept a copy in {}", kept.display());
                *outcomes.entry("DIFFERS").or_insert(0) += 1;
            }
        }
    }
    println!("{rounds} rounds, detected by: {outcomes:?}");
    assert!(!outcomes.contains_key("DIFFERS"), "{outcomes:?}");
}

#[test]
fn an_older_state_sled_than_was_flushed_is_refused() {
    let tmp = TempDir::new("older");
    let store = Store::open(tmp.path(), 100).expect("open");
    write_changes(&store, &numbered(10, 10));
    drop(store);
    let backup = tmp.path().join("backup.sled");
    copy_dir(&tmp.sled(), &backup);
    let store = Store::open(tmp.path(), 100).expect("reopen");
    write_changes(&store, &numbered(20, 10)[10..]);
    drop(store);
    // As if sled had lost its last batch, or somebody put back an older copy.
    fs::remove_dir_all(tmp.sled()).expect("rm");
    fs::rename(&backup, tmp.sled()).expect("put back");
    let error = Store::open(tmp.path(), 100).expect_err("an older state.sled");
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error:?}");
    assert!(
        error.to_string().contains("delete hearth.flushed"),
        "{error}"
    );
    assert_names_dir(&error, tmp.path());
    // The operator's way out, if the older copy is what they want.
    fs::remove_file(tmp.path().join(FLUSHED)).expect("rm hearth.flushed");
    let store = Store::open(tmp.path(), 100).expect("open the older copy");
    assert_eq!(store.last_seq(), 10);

    fs::write(tmp.path().join(FLUSHED), b"garbage").expect("write");
    drop(store);
    let error = Store::open(tmp.path(), 100).expect_err("a garbled hearth.flushed");
    assert!(
        error.to_string().contains("should hold a number"),
        "{error}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).expect("copy");
        }
    }
}

// ---- measurements ------------------------------------------------------------------------

/// `open` + `load` of 100,000 keys of 64-byte values; prints, asserts nothing. Run with
/// `cargo test --release -p hearth-broker --lib state::store -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a test; run it by hand"]
fn open_and_load_100k_keys() {
    const KEYS: u64 = 100_000;
    let tmp = TempDir::new("load-100k");
    let store = Store::open(tmp.path(), DEFAULT_LOG_KEEP).expect("open");
    let started = Instant::now();
    let changes: Vec<Change> = (1..=KEYS)
        .map(|seq| {
            set(
                seq,
                &format!("room{:03}/sensor{seq:06}", seq % 300),
                &value64(seq),
            )
        })
        .collect();
    for chunk in changes.chunks(1_000) {
        write_changes(&store, chunk);
    }
    println!(
        "wrote {KEYS} changes (1,000 a batch) in {:?}",
        started.elapsed()
    );
    drop(store);

    for attempt in 1..=3 {
        let started = Instant::now();
        let store = Store::open(tmp.path(), DEFAULT_LOG_KEEP).expect("open");
        let opened = started.elapsed();
        let loaded = store.load().expect("load");
        let total = started.elapsed();
        assert_eq!(loaded.entries.len(), KEYS as usize);
        println!(
            "attempt {attempt}: open {opened:?}, load {:?}, open+load {total:?} for {} keys",
            total - opened,
            loaded.entries.len()
        );
        // Where the time goes: sled's scan alone, then the Bencode decoding alone.
        let started = Instant::now();
        let raw: Vec<(sled::IVec, sled::IVec)> = store
            .db
            .scan_prefix(ENTRY)
            .map(|r| r.expect("scan"))
            .collect();
        let scanned = started.elapsed();
        let started = Instant::now();
        for (_, value) in &raw {
            StoredEntry::decode(value).expect("decode");
        }
        println!(
            "attempt {attempt}: of which a bare sled scan {scanned:?}, Bencode decoding {:?}",
            started.elapsed()
        );
        let started = Instant::now();
        drop(store);
        println!("attempt {attempt}: close {:?}", started.elapsed());
    }

    // A snapshot of 100k keys installed in one batch over the 100k there.
    let store = Store::open(tmp.path(), DEFAULT_LOG_KEEP).expect("open");
    let entries: Vec<(String, StoredEntry)> = (1..=KEYS)
        .map(|seq| (format!("snap/{seq:06}"), entry(seq, &value64(seq), None)))
        .collect();
    let started = Instant::now();
    let mut batch = Batch::default();
    batch.replace_all(KEYS, entries, []);
    store.write(&batch).expect("replace_all");
    store.flush().expect("flush");
    println!(
        "replace_all of {KEYS} keys over {KEYS}: {:?}",
        started.elapsed()
    );
    assert_eq!(store.load().expect("load").entries.len(), KEYS as usize);
}

#[test]
fn stored_entries_are_written_as_serde_writes_them() {
    for expires_at_ms in [None, Some(1_800_000_000_000)] {
        let entry = StoredEntry {
            seq: 7,
            value: b"i215e".to_vec(),
            expires_at_ms,
        };
        assert_eq!(entry.encode(), bendy::serde::to_bytes(&entry).unwrap());
        assert_eq!(StoredEntry::decode(&entry.encode()), Ok(entry));
    }
}
