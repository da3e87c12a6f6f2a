//! The store's start-up: what a data dir may hold, hearth's lock on it, opening sled
//! (its lock, its page cache), creating a fresh store, and the checks that refuse a store
//! of another format, a damaged one, or one that lost flushed batches.

use super::*;

/// Refuses an existing directory holding something else than a hearth store.
pub(super) fn check_contents(dir: &Path) -> Result<(), StoreError> {
    let entries = fs::read_dir(dir).map_err(|source| StoreError::Io {
        dir: dir.to_path_buf(),
        doing: "listing the directory".into(),
        source,
    })?;
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    if names.iter().any(|name| name == SLED_DIR) {
        return Ok(());
    }
    names.retain(|name| {
        ![LOCK_FILE, CREATING, FLUSHED].contains(&name.as_str())
            && !IGNORED.contains(&name.as_str())
    });
    if names.is_empty() {
        return Ok(());
    }
    names.sort();
    let shown = names.len().min(5);
    Err(StoreError::UnknownFormat {
        dir: dir.to_path_buf(),
        found: format!(
            "it holds {}{} and no {SLED_DIR}",
            names[..shown].join(", "),
            if names.len() > shown { ", ..." } else { "" }
        ),
    })
}

/// Takes the data dir's lock (`flock` on `hearth.lock`, released when the file closes,
/// also when the process dies) and writes this process's pid into it.
pub(super) fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    let io_err = |doing: &str| {
        let doing = doing.to_owned();
        move |source| StoreError::Io {
            dir: dir.to_path_buf(),
            doing,
            source,
        }
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(LOCK_FILE))
        .map_err(io_err("opening hearth.lock"))?;
    // SAFETY: flock on a file descriptor we own, for as long as `file` lives.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::WouldBlock {
            return Err(io_err("locking hearth.lock")(error));
        }
        let mut text = String::new();
        let holder = file
            .read_to_string(&mut text)
            .ok()
            .and_then(|_| text.trim().parse().ok());
        return Err(StoreError::Locked {
            dir: dir.to_path_buf(),
            holder,
        });
    }
    let write_pid = |file: &mut File| {
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())
    };
    write_pid(&mut file).map_err(io_err("writing hearth.lock"))?;
    Ok(file)
}

/// The page cache sled may use (its default is 1 GiB). The broker's own map holds the
/// model; sled's pages are read at start-up and written, rarely read again.
pub(super) const SLED_CACHE_BYTES: u64 = 4 << 20;

/// Opens sled's files, retrying sled's own lock for a moment: the caller holds hearth's
/// lock, so a busy sled lock is a store this process dropped an instant ago (or a process
/// that opened `state.sled` without hearth's lock, reported as `Locked` after the grace).
pub(super) fn open_sled(dir: &Path) -> Result<sled::Db, StoreError> {
    // A broker must stay small on a tiny box.
    let config = sled::Config::new()
        .path(dir.join(SLED_DIR))
        .cache_capacity(SLED_CACHE_BYTES);
    let deadline = Instant::now() + SLED_LOCK_GRACE;
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e)) if is_sled_lock_error(&e) => {
                if Instant::now() >= deadline {
                    return Err(StoreError::Locked {
                        dir: dir.to_path_buf(),
                        holder: None,
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(sled::Error::Unsupported(message)) => {
                return Err(StoreError::UnknownFormat {
                    dir: dir.to_path_buf(),
                    found: format!("sled cannot read {SLED_DIR}: {message}"),
                })
            }
            Err(e) => return Err(sled_err(dir, "opening sled's files")(e)),
        }
    }
}

/// sled 0.34 reports its `flock` failure as an `Other` io error with this text.
pub(super) fn is_sled_lock_error(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Other && e.to_string().contains("could not acquire lock")
}

/// Creates a fresh store: marker, sled files, `m/format`, flush, marker gone. A crash in
/// between leaves the marker, and the next open makes the store again.
pub(super) fn create(dir: &Path) -> Result<sled::Db, StoreError> {
    let io_err = |doing: &'static str| {
        move |source| StoreError::Io {
            dir: dir.to_path_buf(),
            doing: doing.into(),
            source,
        }
    };
    let marker = dir.join(CREATING);
    File::create(&marker)
        .and_then(|f| f.sync_all())
        .map_err(io_err("creating state.sled.creating"))?;
    sync_dir(dir).map_err(io_err("syncing the directory"))?;
    let sled_dir = dir.join(SLED_DIR);
    if sled_dir.exists() {
        fs::remove_dir_all(&sled_dir).map_err(io_err("removing an unfinished state.sled"))?;
    }
    let db = open_sled(dir)?;
    db.insert(FORMAT_KEY, FORMAT)
        .map_err(sled_err(dir, "writing the format marker"))?;
    db.flush().map_err(sled_err(dir, "flushing a new store"))?;
    fs::remove_file(&marker).map_err(io_err("removing state.sled.creating"))?;
    sync_dir(dir).map_err(io_err("syncing the directory"))?;
    Ok(db)
}

pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Accepts only a store whose `m/format` is [`FORMAT`].
pub(super) fn check_format(dir: &Path, db: &sled::Db) -> Result<(), StoreError> {
    let format = db
        .get(FORMAT_KEY)
        .map_err(sled_err(dir, "reading the format marker"))?;
    match format {
        Some(format) if format == FORMAT => Ok(()),
        Some(other) => Err(StoreError::UnknownFormat {
            dir: dir.to_path_buf(),
            found: format!(
                "its format is {:?}, this broker reads {:?}",
                String::from_utf8_lossy(&other),
                String::from_utf8_lossy(FORMAT)
            ),
        }),
        None => {
            let first = db
                .first()
                .map_err(sled_err(dir, "reading the first record"))?;
            // A finished creation always leaves m/format: an empty store is damage (sled
            // recovered nothing), records without the marker are somebody else's.
            match first {
                None => Err(StoreError::Corrupt {
                    dir: dir.to_path_buf(),
                    detail: format!(
                        "{SLED_DIR} holds no records at all, not even the format marker \
                         every store is created with"
                    ),
                }),
                Some(_) => Err(StoreError::UnknownFormat {
                    dir: dir.to_path_buf(),
                    found: format!("{SLED_DIR} is a sled database without hearth's format marker"),
                }),
            }
        }
    }
}

/// Removes log records older than the last `log_keep` (left over from a larger setting).
pub(super) fn trim_log(dir: &Path, db: &sled::Db, log_keep: u64) -> Result<(), StoreError> {
    let last = read_u64(dir, db, LAST_SEQ_KEY)?;
    let Some(keep_from) = last.checked_sub(log_keep).map(|s| s + 1) else {
        return Ok(());
    };
    let mut batch = sled::Batch::default();
    let mut any = false;
    for key in db.range(log_key(0)..log_key(keep_from)).keys() {
        batch.remove(key.map_err(sled_err(dir, "trimming the log"))?);
        any = true;
    }
    if any {
        db.apply_batch(batch)
            .map_err(sled_err(dir, "trimming the log"))?;
    }
    Ok(())
}

/// Reads one of the store's own 8-byte counters (absent: 0).
pub(super) fn read_u64(dir: &Path, db: &sled::Db, key: &[u8]) -> Result<u64, StoreError> {
    let name = String::from_utf8_lossy(key);
    match db
        .get(key)
        .map_err(sled_err(dir, "reading the store's counters"))?
    {
        None => Ok(0),
        Some(bytes) => be_u64(&bytes).ok_or_else(|| StoreError::Corrupt {
            dir: dir.to_path_buf(),
            detail: format!("{name} is {} bytes long, not 8", bytes.len()),
        }),
    }
}

/// Refuses a store that holds fewer batches than `hearth.flushed` says were flushed.
pub(super) fn check_flushed_mark(dir: &Path, batches: u64) -> Result<(), StoreError> {
    let text = match fs::read_to_string(dir.join(FLUSHED)) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(StoreError::Io {
                dir: dir.to_path_buf(),
                doing: "reading hearth.flushed".into(),
                source,
            })
        }
    };
    let Ok(flushed) = text.trim().parse::<u64>() else {
        return Err(StoreError::Corrupt {
            dir: dir.to_path_buf(),
            detail: format!(
                "{FLUSHED} should hold a number, not {:?} (it records how far {SLED_DIR} \
                 was flushed; if you trust {SLED_DIR}, delete it)",
                text.chars().take(40).collect::<String>()
            ),
        });
    };
    if batches < flushed {
        return Err(StoreError::Corrupt {
            dir: dir.to_path_buf(),
            detail: format!(
                "{SLED_DIR} opens with {batches} batches written, but {flushed} had been \
                 flushed: sled lost the end of its log (if you put back an older \
                 {SLED_DIR} on purpose, delete {FLUSHED} too)"
            ),
        });
    }
    Ok(())
}

pub(super) fn read_next_conflict(dir: &Path, db: &sled::Db) -> Result<u64, StoreError> {
    let last = db
        .scan_prefix(CONFLICT)
        .keys()
        .next_back()
        .transpose()
        .map_err(sled_err(dir, "reading the conflict records"))?;
    match last {
        None => Ok(0),
        Some(key) => be_u64(&key[CONFLICT.len()..])
            .map(|n| n + 1)
            .ok_or_else(|| StoreError::Corrupt {
                dir: dir.to_path_buf(),
                detail: format!("a conflict record has the malformed key {key:?}"),
            }),
    }
}
