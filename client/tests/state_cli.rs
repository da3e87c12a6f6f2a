//! The state model end to end: the `hearth state` commands (output, exit codes) and the
//! library's writes and change-feed follower, against real brokers run in-process on free
//! ports (a standalone one, and a Binary Star pair for failover), plus a scripted RFC 7
//! broker where the wire itself is under test.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use common::{hearth_at, mdp, text, TestBroker};
use hearth_broker::{BrokerConfig, BrokerHandle, Role};
use hearth_client::feed::{FeedEvent, Follower, FollowerConfig};
use hearth_client::state::{Value, Write};
use hearth_client::{Client, ClientConfig, ClientError};
use hearth_supervise::{wait_until, ScratchDir, Wait};
use serde_json::{json, Value as Json};

const T: Duration = Duration::from_secs(10);

/// A broker that keeps a state model in a temp dir and publishes its change feed.
struct Home {
    broker: BrokerHandle,
    _dir: ScratchDir,
}

fn broker(tweak: impl FnOnce(&mut BrokerConfig)) -> Home {
    let dir = ScratchDir::new("hearth-state").expect("a scratch dir");
    let mut config = BrokerConfig {
        frontend: "tcp://127.0.0.1:*".into(),
        publish: Some("tcp://127.0.0.1:*".into()),
        data_dir: Some(dir.path().to_path_buf()),
        heartbeat: Duration::from_millis(100),
        ..BrokerConfig::default()
    };
    tweak(&mut config);
    let broker = hearth_broker::spawn(config).expect("broker starts");
    Home { broker, _dir: dir }
}

fn standalone() -> Home {
    broker(|_| {})
}

fn hearth(home: &Home, args: &[&str]) -> Output {
    let mut all = vec!["--broker", home.broker.frontend(), "--timeout", "5s"];
    all.extend_from_slice(args);
    hearth_at(&all)
}

/// Runs `hearth` and checks the exit code; returns stdout.
fn ok(home: &Home, args: &[&str]) -> String {
    let out = hearth(home, args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn json_of(stdout: &str) -> Json {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout:?}"))
}

fn client(endpoints: &[&str]) -> Client {
    let mut config = ClientConfig::new(endpoints.iter().copied());
    config.timeout = T;
    config.attempt_timeout = Duration::from_millis(500);
    Client::new(config).expect("client")
}

#[test]
fn bad_values_and_flags_are_bad_usage() {
    let rows: [(&[&str], &str); 8] = [
        (&["state", "set", "k", "[1.5]"], "no floats"),
        (&["state", "set", "k", "{\"on\":true}"], "no booleans"),
        (&["state", "set", "k", "[null]"], "no null"),
        (&["state", "set", "k", "{on}"], "not JSON"),
        (&["state", "set", "k", "99999999999999999999"], "64-bit"),
        (&["state", "set", "k", "1", "--ttl", "0s"], "--ttl"),
        (&["state", "set", "k"], "VALUE"),
        (&["state", "del"], "KEY"),
    ];
    for (args, reason) in rows {
        let out = hearth_at(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(reason),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn a_retried_write_carries_the_same_write_id() {
    let silent = TestBroker::silent();
    let answering =
        TestBroker::start(|id, _| vec![(id.clone(), mdp("state.set", &[b"d3:seqi5ee"]))]);
    let mut client = client(&[&silent.endpoint, &answering.endpoint]);
    let seq = client.state().set([("k", Write::new(1))]).expect("set");
    assert_eq!(seq, 5);
    let first = silent.next_received(T).expect("first attempt");
    let retry = answering.next_received(T).expect("retry");
    assert_eq!(first, retry, "the retry resends the same frames");
    // ["", "MDPC01", "state.set", body, write id]
    assert_eq!(first.len(), 5, "{first:?}");
    assert_eq!(first[3], b"d1:kd5:valuei1eee");
    assert_eq!(first[4].len(), 16);
    // The next logical write has a new id.
    client.state().set([("k", Write::new(2))]).expect("set");
    let next = answering.next_received(T).expect("second write");
    assert_ne!(next[4], first[4]);
}

#[test]
fn a_refusal_is_exit_1_with_the_brokers_words() {
    let refusing = TestBroker::start(|id, frames| {
        let service = String::from_utf8_lossy(&frames[2]).into_owned();
        vec![(
            id.clone(),
            mdp(&service, &[b"d5:error21:if_seq 0 failed for ke"]),
        )]
    });
    let err = client(&[&refusing.endpoint])
        .state()
        .del(&["k"])
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Refused(t) if t == "if_seq 0 failed for k"),
        "{err:?}"
    );
    let out = hearth_at(&[
        "--broker",
        &refusing.endpoint,
        "state",
        "set",
        "k",
        "1",
        "--if-seq",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("setting k: refused: if_seq 0 failed for k"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn set_get_and_del_readable_and_json() {
    let home = standalone();
    let set = ok(&home, &["state", "set", "kitchen/temp", "215"]);
    let seq: u64 = set
        .trim()
        .strip_prefix("seq ")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{set:?}"));
    ok(&home, &["state", "set", "hall/light", "on"]);
    assert_eq!(
        ok(&home, &["state", "get", "kitchen/temp"]),
        format!("kitchen/temp  215  (seq {seq})\n")
    );
    assert_eq!(
        json_of(&ok(&home, &["state", "get", "kitchen/temp", "--json"])),
        json!({"kitchen/temp": {"seq": seq, "value": 215}})
    );
    let all = ok(&home, &["state", "get"]);
    assert_eq!(
        all,
        format!(
            "hall/light    on   (seq {})\nkitchen/temp  215  (seq {seq})\n",
            seq + 1
        )
    );
    let out = hearth(&home, &["state", "get", "kitchen/temp", "nowhere"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no such key: nowhere"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("kitchen/temp"),
        "present keys still print"
    );
    let del = json_of(&ok(&home, &["state", "del", "kitchen/temp", "--json"]));
    assert_eq!(del, json!({"seq": seq + 2}));
    assert_eq!(
        hearth(&home, &["state", "get", "kitchen/temp"])
            .status
            .code(),
        Some(1)
    );
    // Deleting an absent key is no change: it takes no seq.
    assert_eq!(
        ok(&home, &["state", "del", "kitchen/temp"]),
        format!("seq {}\n", seq + 2)
    );
}

#[test]
fn values_keep_their_shape_through_the_broker() {
    let home = standalone();
    let rows: [(&str, Json, &str); 7] = [
        ("-3", json!(-3), "-3"),
        ("hello world", json!("hello world"), "hello world"),
        ("\"215\"", json!("215"), "\"215\""),
        ("[1,\"a\"]", json!([1, "a"]), "[1, \"a\"]"),
        (
            "{\"on\":1,\"level\":40}",
            json!({"on": 1, "level": 40}),
            "{\"level\": 40, \"on\": 1}",
        ),
        // A dict with its own `value` key is stored as it is, not read as an entry.
        (
            "{\"value\":7,\"unit\":\"C\"}",
            json!({"value": 7, "unit": "C"}),
            "{\"unit\": \"C\", \"value\": 7}",
        ),
        ("", json!(""), "\"\""),
    ];
    for (typed, stored, shown) in rows {
        ok(&home, &["state", "set", "v", typed]);
        let got = json_of(&ok(&home, &["state", "get", "v", "--json"]));
        assert_eq!(got["v"]["value"], stored, "{typed:?}");
        let line = ok(&home, &["state", "get", "v"]);
        assert!(
            line.starts_with(&format!("v  {shown}  (seq ")),
            "{typed:?}: {line:?}"
        );
    }
    // Bytes that are not UTF-8 (written through the library) show as hex.
    client(&[home.broker.frontend()])
        .state()
        .set([("raw", Write::new(vec![0xffu8, 0x00]))])
        .expect("set");
    assert!(ok(&home, &["state", "get", "raw"]).starts_with("raw  0xff00  (seq "));
    let got = json_of(&ok(&home, &["state", "get", "raw", "--json"]));
    assert_eq!(got["raw"]["value"], json!({"$hex": "ff00"}));
}

#[test]
fn conditional_writes_and_ttls() {
    let home = standalone();
    ok(&home, &["state", "set", "door", "shut", "--if-seq", "0"]);
    let out = hearth(&home, &["state", "set", "door", "open", "--if-seq", "0"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("door"), "{}", text(&out.stderr));
    let seq = json_of(&ok(&home, &["state", "get", "door", "--json"]))["door"]["seq"].clone();
    let seq = seq.to_string();
    ok(&home, &["state", "set", "door", "open", "--if-seq", &seq]);
    assert!(ok(&home, &["state", "get", "door"]).starts_with("door  open  "));

    ok(
        &home,
        &["state", "set", "hall/motion", "1", "--ttl", "300ms"],
    );
    // Each look runs `hearth`: not too often.
    let expiry = Wait::new("hall/motion to expire", T).every(Duration::from_millis(50));
    let expired = expiry
        .until(|| {
            let last = hearth(&home, &["state", "get", "hall/motion"]);
            match last.status.code() {
                Some(0) => Err(format!("still there: {}", text(&last.stdout))),
                _ => Ok(last),
            }
        })
        .unwrap();
    assert_eq!(expired.status.code(), Some(1), "{}", text(&expired.stderr));
}

/// A running `hearth state watch` whose stdout lines arrive on a channel.
struct Watch {
    child: Child,
    lines: Receiver<String>,
}

impl Watch {
    fn start(home: &Home, args: &[&str]) -> Watch {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args(["--broker", home.broker.frontend(), "state", "watch"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start hearth state watch");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Watch { child, lines }
    }

    fn line(&self) -> String {
        self.lines
            .recv_timeout(T)
            .expect("a line from watch within the deadline")
    }

    /// Waits for the process to end on its own; its exit code.
    fn wait(mut self) -> Option<i32> {
        let ended = wait_until("watch to end", T, || match self.child.try_wait() {
            Ok(Some(status)) => Ok(status.code()),
            other => Err(format!("{other:?}")),
        });
        ended.unwrap_or_else(|e| {
            let _ = self.child.kill();
            panic!("{e}")
        })
    }
}

#[test]
fn watch_prints_the_snapshot_then_each_change_under_the_prefix() {
    let home = standalone();
    ok(&home, &["state", "set", "kitchen/temp", "215"]);
    ok(&home, &["state", "set", "hall/light", "on"]);
    let watch = Watch::start(
        &home,
        &["kitchen/", "--json", "--count", "3", "--for", "20s"],
    );
    let snapshot = json_of(&watch.line());
    assert_eq!(snapshot["event"], "snapshot");
    assert_eq!(snapshot["cause"], "start");
    assert_eq!(
        snapshot["entries"],
        json!({"kitchen/temp": {"seq": 1, "value": 215}})
    );
    assert_eq!(snapshot["seq"], 2);
    ok(&home, &["state", "set", "kitchen/light", "{\"on\":1}"]);
    ok(&home, &["state", "set", "hall/light", "off"]);
    ok(&home, &["state", "set", "kitchen/temp", "216"]);
    ok(&home, &["state", "del", "kitchen/light"]);
    let changes: Vec<Json> = (0..3).map(|_| json_of(&watch.line())).collect();
    assert_eq!(
        changes,
        [
            json!({"event": "change", "key": "kitchen/light", "seq": 3, "value": {"on": 1}}),
            json!({"event": "change", "key": "kitchen/temp", "seq": 5, "value": 216}),
            json!({"event": "change", "key": "kitchen/light", "seq": 6, "value": null}),
        ]
    );
    assert_eq!(watch.wait(), Some(0));
}

#[test]
fn watch_reads_readably_and_ends_after_for() {
    let home = standalone();
    ok(&home, &["state", "set", "a", "1"]);
    let started = Instant::now();
    let watch = Watch::start(&home, &["--for", "1500ms"]);
    assert_eq!(watch.line(), "snapshot at seq 1: 1 key");
    assert_eq!(watch.line(), "a  1  (seq 1)");
    ok(&home, &["state", "set", "b", "two words"]);
    ok(&home, &["state", "del", "a"]);
    assert_eq!(watch.line(), "b  two words  (seq 2)");
    assert_eq!(watch.line(), "a  (deleted)  (seq 3)");
    assert_eq!(watch.wait(), Some(0));
    assert!(started.elapsed() >= Duration::from_millis(1500));
}

fn pair_member(role: Role, own_peer: u16, other_peer: u16) -> Home {
    broker(|c| {
        c.role = role;
        c.peer_bind = Some(format!("tcp://127.0.0.1:{own_peer}"));
        c.peer_connect = Some(format!("tcp://127.0.0.1:{other_peer}"));
        c.peer_heartbeat = Duration::from_millis(250);
    })
}

fn free_port() -> u16 {
    hearth_supervise::free_port().expect("free port")
}

/// Reads events until the follower has accepted `seq`; checks that changes come in
/// order, each once; returns the view (key -> value) built from them.
fn follow_to(
    follower: &mut Follower,
    view: &mut std::collections::BTreeMap<String, Value>,
    seq: u64,
) {
    let deadline = Instant::now() + T;
    while follower.seq() != Some(seq) {
        assert!(
            Instant::now() < deadline,
            "follower at {:?}, waiting for {seq}",
            follower.seq()
        );
        let before = follower.seq();
        match follower
            .next(Instant::now() + Duration::from_millis(100))
            .expect("next")
        {
            Some(FeedEvent::Snapshot { snapshot, .. }) => {
                *view = snapshot
                    .entries
                    .into_iter()
                    .map(|(k, e)| (k, e.value))
                    .collect();
            }
            Some(FeedEvent::Change(change)) => {
                assert_eq!(Some(change.seq), before.map(|s| s + 1), "{change:?}");
                match change.value {
                    Some(value) => view.insert(change.key, value),
                    None => view.remove(&change.key),
                };
            }
            None => {}
        }
    }
}

#[test]
fn the_follower_sees_every_change_once_across_failover() {
    let (pp, bp) = (free_port(), free_port());
    let primary = pair_member(Role::Primary, pp, bp);
    let backup = pair_member(Role::Backup, bp, pp);
    let endpoints = [
        primary.broker.frontend().to_owned(),
        backup.broker.frontend().to_owned(),
    ];
    let endpoints: Vec<&str> = endpoints.iter().map(String::as_str).collect();
    let mut writer = client(&endpoints);
    let mut seq = 0;
    for i in 0..5 {
        seq = writer
            .state()
            .set([(format!("before/{i}"), Write::new(i))])
            .expect("set");
    }
    let mut follower =
        Follower::new(client(&endpoints), FollowerConfig::new("")).expect("follower");
    assert_eq!(follower.feeds().len(), 2, "{:?}", follower.feeds());
    let mut view = std::collections::BTreeMap::new();
    follow_to(&mut follower, &mut view, seq);
    for i in 0..5 {
        writer
            .state()
            .set([(format!("during/{i}"), Write::new(i))])
            .expect("set");
    }
    seq = writer.state().del(&["before/0"]).expect("del");
    follow_to(&mut follower, &mut view, seq);

    primary.broker.shutdown().expect("primary stops");
    for i in 0..5 {
        seq = writer
            .state()
            .set([(format!("after/{i}"), Write::new(i))])
            .expect("set after failover");
    }
    follow_to(&mut follower, &mut view, seq);
    // Duplicates from the other feed, if any, are dropped: nothing more comes.
    assert_eq!(
        follower
            .next(Instant::now() + Duration::from_millis(300))
            .expect("next"),
        None
    );
    assert_eq!(follower.resyncs(), 0);
    let truth: std::collections::BTreeMap<String, Value> = writer
        .state()
        .get(&[])
        .expect("get")
        .into_iter()
        .map(|(k, e)| (k, e.value))
        .collect();
    assert_eq!(view, truth);
    assert_eq!(view.len(), 14);
}
