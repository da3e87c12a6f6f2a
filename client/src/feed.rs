//! Following the state model's change feed: a snapshot, then every change, in order, once.
//!
//! This is the ZeroMQ guide's Clone pattern. A [`Follower`] subscribes to the change feed
//! (the PUB socket each broker binds with `--publish`) of *every* broker it is given, then
//! takes a `state.snapshot` through its [`Client`] (which fails over between the brokers of
//! a pair), drops the updates the snapshot already covers, and accepts each further update
//! iff its seq is the next one. Both brokers of a pair publish every change with the same
//! global seq, so most updates arrive twice; the copy is dropped. A gap that the other feed
//! does not fill within a grace period, or two feeds that disagree about one seq, make the
//! follower take a new snapshot and go on from it ([`FeedEvent::Snapshot`] says why).
//!
//! The feed has no heartbeat, so a lost *last* change would show only with the next one;
//! when the feeds have been quiet for [`FollowerConfig::idle_check`], the follower asks the
//! broker's seq (`hearth.status`) and resyncs if it is ahead for longer than the grace.
//!
//! ```no_run
//! use std::time::{Duration, Instant};
//! use hearth_client::{Client, ClientConfig};
//! use hearth_client::feed::{FeedEvent, Follower, FollowerConfig};
//! let client = Client::new(ClientConfig::new(["tcp://a:5555", "tcp://b:5555"]))?;
//! let mut follower = Follower::new(client, FollowerConfig::new("kitchen/"))?;
//! while let Some(event) = follower.next(Instant::now() + Duration::from_secs(1))? {
//!     match event {
//!         FeedEvent::Snapshot { snapshot, .. } => println!("{} keys", snapshot.entries.len()),
//!         FeedEvent::Change(change) => println!("{} changed (seq {})", change.key, change.seq),
//!     }
//! }
//! # Ok::<(), hearth_client::ClientError>(())
//! ```

mod seq;
mod sockets;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use hearth_proto::state::FeedUpdate;
use tracing::{debug, info};

pub use seq::{digest, judge, ResyncReason, SeqTracker, Verdict, MAX_HELD, RECENT_WINDOW};
pub use sockets::feed_endpoint;

use crate::state::{Snapshot, Value};
use crate::{Client, ClientError};
use sockets::Feeds;

/// Default [`FollowerConfig::gap_grace`].
pub const DEFAULT_GAP_GRACE: Duration = Duration::from_millis(300);
/// Default [`FollowerConfig::idle_check`].
pub const DEFAULT_IDLE_CHECK: Duration = Duration::from_secs(5);

/// What to follow and how patiently.
#[derive(Debug, Clone)]
pub struct FollowerConfig {
    /// Follow the keys that start with this (empty: every key). The feeds are still read
    /// whole, since only the unfiltered seqs are gap-free; the filter applies on arrival.
    pub prefix: String,
    /// Feed endpoints to subscribe to. Empty: ask each broker of the client for its own
    /// (`hearth.status` → `publish`, a wildcard host replaced by the broker's).
    pub feeds: Vec<String>,
    /// How long a gap in the seqs may stay open, waiting for the other feed, before the
    /// follower takes a new snapshot.
    pub gap_grace: Duration,
    /// After this long with no feed message, ask the broker's seq to catch a lost last
    /// change (and retry brokers whose feed is not known yet). `None`: never.
    pub idle_check: Option<Duration>,
}

impl FollowerConfig {
    /// Follow `prefix` on the feeds the brokers announce, with the default grace and check.
    pub fn new(prefix: impl Into<String>) -> FollowerConfig {
        FollowerConfig {
            prefix: prefix.into(),
            feeds: Vec::new(),
            gap_grace: DEFAULT_GAP_GRACE,
            idle_check: Some(DEFAULT_IDLE_CHECK),
        }
    }
}

/// One change of a followed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The key.
    pub key: String,
    /// The global seq the change took.
    pub seq: u64,
    /// The new value; `None` when the key was deleted or expired.
    pub value: Option<Value>,
}

/// What [`Follower::next`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// The followed keys as a whole: first at the start, then after each resync. Replace
    /// any view built so far with it.
    Snapshot {
        /// The entries and the seq they are current at.
        snapshot: Snapshot,
        /// Why it was taken: [`ResyncReason::Start`] the first time.
        cause: ResyncReason,
    },
    /// The next change of a followed key.
    Change(Change),
}

/// A change-feed follower: see the [module documentation](self).
pub struct Follower {
    feeds: Feeds,
    client: Client,
    config: FollowerConfig,
    tracker: SeqTracker,
    ready: VecDeque<Change>,
    resyncs: u64,
    next_check: Option<Instant>,
    /// The seq of the last event yielded.
    told: Option<u64>,
}

impl Follower {
    /// Subscribes to the feeds (given, or discovered from each broker's status) and waits,
    /// up to the client's attempt timeout, for the subscriptions to reach them. The first
    /// snapshot is taken by the first [`Follower::next`].
    ///
    /// Fails when no feed is known: [`ClientError::Timeout`] if no broker answered,
    /// [`ClientError::Config`] if the brokers publish no feed.
    pub fn new(client: Client, config: FollowerConfig) -> Result<Follower, ClientError> {
        let feeds = Feeds::open(&client, &config.feeds)?;
        let mut follower = Follower {
            feeds,
            client,
            tracker: SeqTracker::new(config.gap_grace),
            ready: VecDeque::new(),
            resyncs: 0,
            next_check: None,
            told: None,
            config,
        };
        follower.schedule_check(Instant::now());
        Ok(follower)
    }

    /// The next event, or `None` if none came by `deadline`.
    ///
    /// Waits for feed messages no longer than `deadline`, but a snapshot or a check of
    /// the broker's seq is one request through the client, which may take up to the
    /// client's timeout whatever the deadline. An error (no broker answered the snapshot)
    /// leaves the follower as it was: the next call tries again.
    pub fn next(&mut self, deadline: Instant) -> Result<Option<FeedEvent>, ClientError> {
        loop {
            if let Some(change) = self.ready.pop_front() {
                self.told = Some(change.seq);
                return Ok(Some(FeedEvent::Change(change)));
            }
            if let Some(cause) = self.tracker.resync_due() {
                return self.resync(cause).map(Some);
            }
            let now = Instant::now();
            self.tracker.tick(now);
            if self.tracker.resync_due().is_some() {
                continue;
            }
            if self.next_check.is_some_and(|at| now >= at) {
                self.check(now);
                continue;
            }
            if now >= deadline {
                return Ok(None);
            }
            let wake = [self.next_check, self.tracker.deadline()]
                .into_iter()
                .flatten()
                .fold(deadline, Instant::min);
            let polled = self.feeds.poll(wake, |update| {
                let now = Instant::now();
                for accepted in self.tracker.offer(update, now) {
                    if let Some(change) = change_of(accepted, &self.config.prefix) {
                        self.ready.push_back(change);
                    }
                }
            })?;
            let now = Instant::now();
            if polled.reconnected {
                // A feed came back: what it published meanwhile is lost; ask at once.
                self.next_check = self.config.idle_check.map(|_| now);
            } else if polled.heard {
                self.schedule_check(now);
            }
        }
    }

    /// How far the caller has been told: every change up to this seq has been yielded (or
    /// was for a key outside the prefix). `None` before the first snapshot.
    pub fn seq(&self) -> Option<u64> {
        match self.ready.front() {
            Some(next) => Some(next.seq.saturating_sub(1)),
            None => self.tracker.last().or(self.told),
        }
    }

    /// How many snapshots were taken after the first.
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// The feed endpoints subscribed to so far.
    pub fn feeds(&self) -> Vec<String> {
        self.feeds.endpoints()
    }

    fn resync(&mut self, cause: ResyncReason) -> Result<FeedEvent, ClientError> {
        let prefix = (!self.config.prefix.is_empty()).then_some(self.config.prefix.as_str());
        let snapshot = self.client.state().snapshot(prefix)?;
        if cause != ResyncReason::Start {
            self.resyncs += 1;
            info!(
                ?cause,
                seq = snapshot.seq,
                "change feed: resynchronised from a snapshot"
            );
        }
        self.tracker.reset(snapshot.seq);
        self.ready.clear();
        self.told = Some(snapshot.seq);
        self.schedule_check(Instant::now());
        Ok(FeedEvent::Snapshot { snapshot, cause })
    }

    /// Asks the broker's seq; retries discovering feeds that are not known yet.
    fn check(&mut self, now: Instant) {
        match self.client.status() {
            Ok(status) => self.tracker.learn(status.state_seq, now),
            Err(e) => debug!(error = %e, "change feed: cannot read the broker's seq"),
        }
        if let Err(e) = self.feeds.rediscover(&self.client) {
            debug!(error = %e, "change feed: cannot subscribe to a rediscovered feed");
        }
        self.schedule_check(Instant::now());
    }

    fn schedule_check(&mut self, now: Instant) {
        self.next_check = self.config.idle_check.map(|every| now + every);
    }
}

/// A feed update as a change of a followed key, or `None` for another key's.
fn change_of(update: FeedUpdate, prefix: &str) -> Option<Change> {
    if !update.key.starts_with(prefix) {
        return None;
    }
    // The value was checked before the update was offered (see `Feeds::poll`).
    let value = match update.value {
        Some(bytes) => Some(Value::from_bencode(&bytes).ok()?),
        None => None,
    };
    Some(Change {
        key: update.key,
        seq: update.seq,
        value,
    })
}
