//! `hearth state get|set|del|watch`: the home's state model from the command line.
//!
//! Values go through the mapping in [`value`] both ways; `watch` follows the change feed
//! with [`hearth_client::feed::Follower`]. A refusal from the broker (`{error}`) is a
//! failed request: its text on stderr, exit 1.

mod value;
mod watch;

use std::collections::BTreeMap;
use std::time::Duration;

use clap::{Args, Subcommand};
use hearth_client::state::{Entry, Value, Write};
use hearth_client::Client;
use serde_json::json;

use super::{client_failure, Connection, Outcome, UsageError};

pub use value::VALUE_HELP;

/// Largest reply the state commands accept: `state get` of every key, or a snapshot, may be
/// far larger than one request.
const STATE_REPLY_LIMIT: usize = 64 << 20;

/// Flags of `hearth state`.
#[derive(Debug, Args)]
pub struct StateArgs {
    #[command(subcommand)]
    command: StateCommand,
}

#[derive(Debug, Subcommand)]
enum StateCommand {
    /// Print keys' values: `key  value  (seq N)` per line, every key if none is named
    /// (exit 1 if a named key is absent)
    #[command(after_long_help = VALUE_HELP)]
    Get(GetArgs),
    /// Set KEY to VALUE and print the seq the write took
    #[command(after_long_help = VALUE_HELP)]
    Set(SetArgs),
    /// Delete keys and print the model's seq after the delete
    Del(DelArgs),
    /// Print the keys under PREFIX, then every change as it comes, until Ctrl-C (or
    /// --count, --for)
    #[command(after_long_help = VALUE_HELP)]
    Watch(watch::WatchArgs),
}

/// Flags of `hearth state get`.
#[derive(Debug, Args)]
struct GetArgs {
    /// Keys to read; none: every key
    #[arg(value_name = "KEY")]
    keys: Vec<String>,
    /// Print one JSON object: {"key": {"seq": N, "value": ...}} for the keys present
    #[arg(long)]
    json: bool,
}

/// Flags of `hearth state set`.
#[derive(Debug, Args)]
struct SetArgs {
    /// Key to write (UTF-8, like kitchen/temp)
    key: String,
    /// Value: 215 (integer), hello (text), '"215"' (the text 215), [1,"a"] or {"on":1}
    /// (JSON list or dict); see below
    #[arg(allow_hyphen_values = true, value_parser = value::parse_value)]
    value: Value,
    /// Remove the key this long after the write (e.g. 30s, 5m)
    #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration)]
    ttl: Option<Duration>,
    /// Write only if the key's seq is N (0: only if the key is absent)
    #[arg(long, value_name = "N")]
    if_seq: Option<u64>,
    /// Print {"seq": N}
    #[arg(long)]
    json: bool,
}

/// Flags of `hearth state del`.
#[derive(Debug, Args)]
struct DelArgs {
    /// Keys to delete (an absent key is no change)
    #[arg(value_name = "KEY", required = true)]
    keys: Vec<String>,
    /// Print {"seq": N}
    #[arg(long)]
    json: bool,
}

/// Runs `hearth state ...`.
pub fn run(connection: &Connection, args: StateArgs) -> anyhow::Result<Outcome> {
    match args.command {
        StateCommand::Get(args) => get(connection, args),
        StateCommand::Set(args) => set(connection, args),
        StateCommand::Del(args) => del(connection, args),
        StateCommand::Watch(args) => watch::run(connection, args),
    }
}

/// A client whose reply limit admits a whole state model.
fn state_client(connection: &Connection) -> anyhow::Result<Client> {
    let mut config = connection.client_config();
    config.limits.max_frame_size = config.limits.max_frame_size.max(STATE_REPLY_LIMIT);
    Client::new(config).map_err(|e| client_failure(e, "creating the client"))
}

fn get(connection: &Connection, args: GetArgs) -> anyhow::Result<Outcome> {
    let keys: Vec<&str> = args.keys.iter().map(String::as_str).collect();
    let entries = state_client(connection)?
        .state()
        .get(&keys)
        .map_err(|e| client_failure(e, "reading the state model"))?;
    if args.json {
        println!("{}", entries_json(&entries));
    } else {
        print!("{}", entry_lines(&entries));
    }
    let absent: Vec<&str> = keys
        .iter()
        .filter(|k| !entries.contains_key(**k))
        .copied()
        .collect();
    if absent.is_empty() {
        return Ok(Outcome::Success);
    }
    eprintln!("hearth: no such key: {}", absent.join(", "));
    Ok(Outcome::Failed)
}

fn set(connection: &Connection, args: SetArgs) -> anyhow::Result<Outcome> {
    if args.ttl.is_some_and(|ttl| ttl.is_zero()) {
        return Err(UsageError("--ttl must be above zero".into()).into());
    }
    let mut write = Write::new(args.value);
    write.ttl = args.ttl;
    write.if_seq = args.if_seq;
    let seq = state_client(connection)?
        .state()
        .set([(args.key.as_str(), write)])
        .map_err(|e| client_failure(e, &format!("setting {}", args.key)))?;
    print_seq(seq, args.json);
    Ok(Outcome::Success)
}

fn del(connection: &Connection, args: DelArgs) -> anyhow::Result<Outcome> {
    let keys: Vec<&str> = args.keys.iter().map(String::as_str).collect();
    let seq = state_client(connection)?
        .state()
        .del(&keys)
        .map_err(|e| client_failure(e, &format!("deleting {}", keys.join(", "))))?;
    print_seq(seq, args.json);
    Ok(Outcome::Success)
}

fn print_seq(seq: u64, json: bool) {
    if json {
        println!("{}", json!({ "seq": seq }));
    } else {
        println!("seq {seq}");
    }
}

/// `{"key": {"seq": N, "value": ...}}`.
fn entries_json(entries: &BTreeMap<String, Entry>) -> serde_json::Value {
    serde_json::Value::Object(
        entries
            .iter()
            .map(|(key, e)| {
                let entry = json!({ "seq": e.seq, "value": value::to_json(&e.value) });
                (key.clone(), entry)
            })
            .collect(),
    )
}

/// One `key  value  (seq N)` line per entry, in aligned columns.
fn entry_lines(entries: &BTreeMap<String, Entry>) -> String {
    let shown: Vec<(&str, String, u64)> = entries
        .iter()
        .map(|(key, e)| (key.as_str(), value::show(&e.value), e.seq))
        .collect();
    let key_width = shown
        .iter()
        .map(|(k, ..)| k.chars().count())
        .max()
        .unwrap_or(0);
    let value_width = shown
        .iter()
        .map(|(_, v, _)| v.chars().count())
        .max()
        .unwrap_or(0);
    shown
        .iter()
        .map(|(key, value, seq)| format!("{key:<key_width$}  {value:<value_width$}  (seq {seq})\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_print_in_aligned_columns_and_as_json() {
        let entries: BTreeMap<String, Entry> = [
            ("kitchen/temp", 7, Value::Int(215)),
            ("hall/light", 12, Value::text("on")),
        ]
        .into_iter()
        .map(|(k, seq, value)| (k.to_owned(), Entry { seq, value }))
        .collect();
        assert_eq!(
            entry_lines(&entries),
            "hall/light    on   (seq 12)\nkitchen/temp  215  (seq 7)\n"
        );
        assert_eq!(
            entries_json(&entries),
            json!({
                "hall/light": {"seq": 12, "value": "on"},
                "kitchen/temp": {"seq": 7, "value": 215},
            })
        );
        assert_eq!(entry_lines(&BTreeMap::new()), "");
    }
}
