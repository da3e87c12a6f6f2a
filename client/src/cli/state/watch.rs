//! `hearth state watch`: the keys under a prefix, then each change as it comes.

use std::time::{Duration, Instant};

use clap::Args;
use hearth_client::feed::{Change, FeedEvent, Follower, FollowerConfig, ResyncReason};
use hearth_client::state::Snapshot;
use serde_json::json;

use super::{entries_json, entry_lines, state_client, value};
use crate::cli::{client_failure, Connection, Outcome};

/// How long one wait for the feed lasts when neither --for nor --count bounds the watch;
/// only sets how often the loop comes round.
const WAIT_SLICE: Duration = Duration::from_secs(1);

/// Flags of `hearth state watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Watch the keys that start with this (e.g. kitchen/); none: every key
    prefix: Option<String>,
    /// One JSON object per line: {"event":"snapshot","seq":N,"cause":"start","entries":{...}},
    /// then {"event":"change","key":K,"seq":N,"value":V} (value null: deleted or expired)
    #[arg(long)]
    json: bool,
    /// End after N changes (snapshots do not count)
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// End after this long (e.g. 30s)
    #[arg(long = "for", value_name = "DUR", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Change-feed endpoint to subscribe to instead of asking each broker (repeat for a
    /// pair's two feeds)
    #[arg(long = "feed", value_name = "ENDPOINT")]
    feeds: Vec<String>,
}

/// Follows the feed and prints what comes, until --count changes or --for have passed.
pub fn run(connection: &Connection, args: WatchArgs) -> anyhow::Result<Outcome> {
    let ends = args.duration.map(|d| Instant::now() + d);
    let mut config = FollowerConfig::new(args.prefix.clone().unwrap_or_default());
    config.feeds.clone_from(&args.feeds);
    let client = state_client(connection)?;
    let mut follower = Follower::new(client, config)
        .map_err(|e| client_failure(e, "subscribing to the change feed"))?;
    let mut changes = 0;
    let mut started = false;
    loop {
        if args.count.is_some_and(|n| changes >= n) && started {
            return Ok(Outcome::Success);
        }
        let now = Instant::now();
        if ends.is_some_and(|end| now >= end) {
            return Ok(Outcome::Success);
        }
        let deadline = ends.unwrap_or(now + WAIT_SLICE).min(now + WAIT_SLICE);
        match follower.next(deadline) {
            Ok(Some(FeedEvent::Snapshot { snapshot, cause })) => {
                started = true;
                print_snapshot(&snapshot, cause, args.json);
            }
            Ok(Some(FeedEvent::Change(change))) => {
                changes += 1;
                print_change(&change, args.json);
            }
            Ok(None) => {}
            Err(e) if !started => {
                return Err(client_failure(e, "taking the state snapshot"));
            }
            Err(e) => eprintln!("hearth: {e}; trying again"),
        }
    }
}

fn cause_name(cause: ResyncReason) -> &'static str {
    match cause {
        ResyncReason::Start => "start",
        ResyncReason::Gap { .. } => "gap",
        ResyncReason::Conflict { .. } => "conflict",
        ResyncReason::Overflow => "overflow",
    }
}

fn print_snapshot(snapshot: &Snapshot, cause: ResyncReason, json: bool) {
    if json {
        let line = json!({
            "event": "snapshot",
            "seq": snapshot.seq,
            "cause": cause_name(cause),
            "entries": entries_json(&snapshot.entries),
        });
        println!("{line}");
        return;
    }
    let why = match cause {
        ResyncReason::Start => String::new(),
        ResyncReason::Gap { last, known } => {
            format!("resync (changes after seq {last} were missed, seq {known} exists): ")
        }
        ResyncReason::Conflict { seq } => {
            format!("resync (the feeds disagree about seq {seq}): ")
        }
        ResyncReason::Overflow => "resync (too many changes held back): ".into(),
    };
    let keys = snapshot.entries.len();
    let plural = if keys == 1 { "" } else { "s" };
    println!("{why}snapshot at seq {}: {keys} key{plural}", snapshot.seq);
    print!("{}", entry_lines(&snapshot.entries));
}

fn print_change(change: &Change, json: bool) {
    if json {
        let value = change
            .value
            .as_ref()
            .map_or(serde_json::Value::Null, value::to_json);
        let line = json!({
            "event": "change",
            "key": change.key,
            "seq": change.seq,
            "value": value,
        });
        println!("{line}");
        return;
    }
    let shown = change
        .value
        .as_ref()
        .map_or_else(|| "(deleted)".to_owned(), value::show);
    println!("{}  {shown}  (seq {})", change.key, change.seq);
}
