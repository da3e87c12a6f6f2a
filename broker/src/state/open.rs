//! Start-up of the state model: the store opened and read back, the model restored, and
//! what the core needs to know of the last run (standing, term, history, recent changes).

use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hearth_proto::repl::History;
use tracing::info;

use super::store::{Store, StoreError};
use super::{Entry, StateLimits, StateModel};
use crate::core::{read_meta, StateSide, StateStart};

/// Changes of the log kept in sled (0: none). A persisted change log would let a restarted
/// broker serve a follower's catch-up from it instead of a snapshot, and keep whole changes
/// rather than final values in a conflict record after a restart; it costs two more sled
/// records per change, about a third of a write's CPU (`hearth bench state`: 22 against 31
/// µs per write on the active). Followers catch up from the in-memory tail of recent
/// changes, or from a snapshot, either way.
pub const LOG_KEEP: u64 = 0;
/// Recent changes read back into memory at start-up, for followers to catch up from.
const TAIL_AT_START: u64 = 20_000;

/// Why the state model could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The store: locked, corrupt, of an unknown format, unreadable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store opened but its metadata makes no sense.
    #[error("{dir}: unreadable state metadata ({detail}); the data dir is damaged or was written by another program: restore it from a backup or move it aside")]
    Meta {
        /// The data dir.
        dir: String,
        /// What was wrong.
        detail: String,
    },
}

/// The state model as found at start-up.
pub struct Opened {
    /// The core's state side.
    pub state: StateSide,
    /// The store, if there is a data dir.
    pub store: Option<Arc<Store>>,
    /// The highest Binary Star term the broker knew.
    pub term: u64,
}

/// Returns to the system the memory the load used and freed (the records read from sled),
/// which the allocator would otherwise keep: a broker on a small box should weigh what its
/// model weighs.
fn give_back_load_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The Unix time in ms now.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Opens the data dir (if any) and restores the model from it.
pub fn open(
    data_dir: Option<&Path>,
    limits: StateLimits,
    feed: bool,
    now: Instant,
) -> Result<Opened, OpenError> {
    let start = |durable, standing, term| StateStart {
        durable,
        feed,
        standing,
        term,
        now,
        wall_ms: unix_ms(),
    };
    let Some(dir) = data_dir else {
        let model = StateModel::new(limits);
        return Ok(Opened {
            state: StateSide::new(model, History::default(), start(false, None, 0)),
            store: None,
            term: 0,
        });
    };
    let store = Store::open(dir, LOG_KEEP)?;
    let loaded = store.load()?;
    let (standing, term, history) = read_meta(&loaded.meta).map_err(|detail| OpenError::Meta {
        dir: dir.display().to_string(),
        detail,
    })?;
    let keys = loaded.entries.len();
    let model = StateModel::restore(
        limits,
        loaded.last_seq,
        loaded.entries.into_iter().map(|(key, e)| {
            (
                key,
                Entry {
                    seq: e.seq,
                    value: e.value,
                    expires_at_ms: e.expires_at_ms,
                },
            )
        }),
        loaded.write_ids,
    );
    // Without a change log there is no tail to read back.
    let tail = if LOG_KEEP == 0 {
        Vec::new()
    } else {
        let from = loaded.last_seq.saturating_sub(TAIL_AT_START);
        store
            .changes_after(from, TAIL_AT_START as usize)?
            .unwrap_or_default()
    };
    info!(
        dir = %dir.display(),
        seq = loaded.last_seq,
        keys,
        ?standing,
        term,
        "state model restored from the data dir"
    );
    let mut state = StateSide::new(model, history, start(true, standing, term));
    state.remember_tail(tail);
    give_back_load_memory();
    Ok(Opened {
        state,
        store: Some(Arc::new(store)),
        term,
    })
}
