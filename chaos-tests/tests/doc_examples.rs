//! The documentation's examples and procedures, run against the built binaries.
//!
//! * `docs/protocol.md`: every `transcript` block (the exact frames of MDP/0.1, MMI, the
//!   state services and the change feed) replayed against a fresh broker;
//! * `docs/examples/worker.py` (pyzmq): serves, and comes back by itself after its broker
//!   is killed and started again on the same port, both soon (DISCONNECT) and late (silence);
//! * `docs/examples/exec-worker.sh` under `hearth-worker --exec`: each documented answer;
//! * `docs/examples/state-export.py`: a model exported from one broker and imported into
//!   another reads back the same;
//! * `docs/backup.md`: a copy of the stopped passive's data dir, restored onto the primary
//!   with the backup's dir emptied, brings back exactly the keys of the moment of the copy;
//! * `docs/upgrade.md`: the brokers stopped and started one at a time, as in an upgrade,
//!   lose no acknowledged write;
//! * `docs/restart-rule.md`: after both brokers died, one restarted alone waits for its
//!   peer and answers nothing; `--force-active` makes it serve.
//!
//! Python with pyzmq is needed for the two Python examples: missing, those tests print
//! SKIPPED and pass, unless `CI` is set (then they fail).

#[path = "doc_examples/pair.rs"]
mod pair;
#[path = "doc_examples/transcript.rs"]
mod transcript;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use hearth_chaos_tests::{
    bin_path, free_port, tools, wait_for, BrokerOptions, Cluster, LogDir, Proc, WorkerKind,
};
use hearth_proto::mmi::STATUS_SERVICE;
use hearth_proto::status::{BStarState, BrokerStatus};
use hearth_proto::{ClientMessage, Limits};

use pair::{hearth, ok, sh, DocPair, BACKUP, PRIMARY};

/// The repository's `docs/` directory.
fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .join("docs")
}

/// A file of `docs/examples/`, as a string for a command line.
fn example(name: &str) -> String {
    docs().join("examples").join(name).display().to_string()
}

/// One request on a fresh DEALER socket; the reply's body frames.
fn ask(endpoint: &str, service: &str, body: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
    let ctx = zmq::Context::new();
    let socket = ctx.socket(zmq::DEALER)?;
    socket.set_linger(0)?;
    socket.connect(endpoint)?;
    socket.send_multipart(ClientMessage::new(service, body.to_vec()).frames(), 0)?;
    if socket.poll(zmq::POLLIN, 5000)? == 0 {
        bail!("no reply from {endpoint} to {service} within 5 s");
    }
    let reply = ClientMessage::decode(socket.recv_multipart(0)?, &Limits::default())
        .map_err(|e| anyhow!("a reply that is not MDP/0.1: {e}"))?;
    Ok(reply.body)
}

/// A broker's `hearth.status` (answered in every state).
fn status_of(endpoint: &str) -> anyhow::Result<BrokerStatus> {
    let ctx = zmq::Context::new();
    let socket = ctx.socket(zmq::DEALER)?;
    socket.set_linger(0)?;
    socket.connect(endpoint)?;
    socket.send_multipart(ClientMessage::new(STATUS_SERVICE, Vec::new()).frames(), 0)?;
    if socket.poll(zmq::POLLIN, 500)? == 0 {
        bail!("no status from {endpoint}");
    }
    let reply = ClientMessage::decode(socket.recv_multipart(0)?, &Limits::default())
        .map_err(|e| anyhow!("{e}"))?;
    let body = reply.body.first().map(Vec::as_slice).unwrap_or_default();
    BrokerStatus::from_bencode(body).map_err(|e| anyhow!("bad hearth.status reply: {e}"))
}

/// A standalone broker with a change feed, on free loopback ports.
pub struct ExampleBroker {
    /// The process.
    pub proc: Proc,
    /// Its frontend.
    pub frontend: String,
    /// Its change feed.
    pub feed: String,
}

/// Starts `hearth-broker --frontend .. --publish ..` on free ports and waits until it
/// answers.
pub fn start_standalone(logs: &LogDir, name: &str) -> anyhow::Result<ExampleBroker> {
    let frontend = format!("tcp://127.0.0.1:{}", free_port());
    let feed = format!("tcp://127.0.0.1:{}", free_port());
    start_standalone_on(logs, name, frontend, feed)
}

/// Starts `hearth-broker --frontend FRONTEND --publish FEED` and waits until it answers.
pub fn start_standalone_on(
    logs: &LogDir,
    name: &str,
    frontend: String,
    feed: String,
) -> anyhow::Result<ExampleBroker> {
    let args = vec![
        "--frontend".to_owned(),
        frontend.clone(),
        "--publish".to_owned(),
        feed.clone(),
    ];
    let mut proc = Proc::spawn(name, &bin_path("hearth-broker"), &args, logs)?;
    let up = wait_for(
        &format!("{name} to answer"),
        Duration::from_secs(10),
        || {
            if let Some(status) = proc.try_status() {
                return Ok(Err(anyhow!("{name} exited with {status}")));
            }
            status_of(&frontend).map(Ok).map_err(|e| format!("{e:#}"))
        },
    )?;
    up?;
    Ok(ExampleBroker {
        proc,
        frontend,
        feed,
    })
}

/// python3 with pyzmq, or `None` where the machine lacks either: the test then prints
/// SKIPPED and passes, except under `CI`, where it fails (`hearth_chaos_tests::tools`).
fn python_with_pyzmq() -> Option<PathBuf> {
    let python = tools::require("python3")?;
    let pyzmq = python.display().to_string();
    tools::require_probe(
        "pyzmq (the Python module zmq)",
        &pyzmq,
        &["-c", "import zmq"],
    )
    .then_some(python)
}

#[test]
fn protocol_transcripts_are_what_the_broker_sends() -> anyhow::Result<()> {
    let path = docs().join("protocol.md");
    let doc = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let blocks = transcript::parse(&doc)?;
    assert!(blocks.len() >= 5, "docs/protocol.md lost its transcripts");
    let logs = LogDir::new("doc-transcripts")?;
    for block in &blocks {
        transcript::run("docs/protocol.md", block, &logs)?;
    }
    eprintln!("{} transcripts of docs/protocol.md replayed", blocks.len());
    logs.mark_passed();
    Ok(())
}

#[test]
fn python_worker_serves_and_comes_back_after_its_broker_restarts() -> anyhow::Result<()> {
    let Some(python) = python_with_pyzmq() else {
        return Ok(());
    };
    let options = BrokerOptions {
        heartbeat: Duration::from_millis(500),
        ..BrokerOptions::default()
    };
    let mut cluster = Cluster::start("doc-python-worker", options)?;
    let frontend = cluster.frontend();
    let args = [
        example("worker.py"),
        "--heartbeat".into(),
        "0.5".into(),
        frontend.clone(),
    ];
    let mut worker = Proc::spawn("worker-py", &python, &args, cluster.logs())?;
    let call = |body: &str| {
        ok(hearth(
            std::slice::from_ref(&frontend),
            "5s",
            &["call", "py.upper", body],
        )?)
    };

    cluster.wait_workers(&[("py.upper", 1)], Duration::from_secs(10))?;
    assert_eq!(call("hello, world")?, "HELLO, WORLD");

    // Back at once: its next heartbeat reaches a broker that does not know it, which
    // answers DISCONNECT; the worker connects afresh and sends READY.
    cluster.kill_broker();
    cluster.start_broker()?;
    cluster.wait_workers(&[("py.upper", 1)], Duration::from_secs(10))?;
    assert_eq!(call("again")?, "AGAIN");

    // Away for longer than three heartbeats: the worker reconnects on the silence.
    cluster.kill_broker();
    let log = worker.log_path().to_path_buf();
    wait_for(
        "worker.py to notice the silence",
        Duration::from_secs(10),
        || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("silent for 3 heartbeats: reconnecting") {
                Ok(())
            } else {
                Err(text)
            }
        },
    )?;
    cluster.start_broker()?;
    cluster.wait_workers(&[("py.upper", 1)], Duration::from_secs(10))?;
    assert_eq!(call("third time")?, "THIRD TIME");

    // SIGTERM: DISCONNECT to the broker and exit 0.
    let status = worker.stop(Duration::from_secs(5));
    assert!(status.success(), "worker.py stopped with {status}");
    cluster.passed();
    Ok(())
}

#[test]
fn exec_worker_script_answers_as_documented() -> anyhow::Result<()> {
    let mut cluster = Cluster::start("doc-exec-worker", BrokerOptions::default())?;
    let sensor = cluster.logs().path().join("thermal_zone0_temp");
    std::fs::write(&sensor, "21540\n")?;
    let command = format!("'{}' '{}'", example("exec-worker.sh"), sensor.display());
    cluster.add_worker("home.info", &WorkerKind::Exec(command))?;
    cluster.wait_workers(&[("home.info", 1)], Duration::from_secs(10))?;
    let frontend = cluster.frontend();
    let one = |request: &str| -> anyhow::Result<Vec<u8>> {
        Ok(ask(&frontend, "home.info", request.as_bytes())?.concat())
    };

    assert_eq!(one("ping")?, b"pong");
    assert_eq!(one("temp\n")?, b"215");
    let uptime = String::from_utf8(one("uptime")?)?;
    assert!(
        uptime.parse::<u64>().is_ok_and(|s| s > 0),
        "uptime answered {uptime:?}"
    );
    assert_eq!(
        String::from_utf8(one("lights")?)?,
        "d5:error45:unknown request \"lights\" (ping, uptime, temp)e"
    );
    std::fs::remove_file(&sensor)?;
    let text = format!(
        "exec: exited with status 1: no temperature sensor at {}",
        sensor.display()
    );
    assert_eq!(
        String::from_utf8(one("temp")?)?,
        format!("d5:error{}:{text}e", text.len())
    );
    // The documented call, through the command-line client.
    assert_eq!(
        ok(hearth(
            std::slice::from_ref(&frontend),
            "5s",
            &["call", "home.info", "ping"]
        )?)?,
        "pong"
    );
    cluster.passed();
    Ok(())
}

#[test]
fn state_export_then_import_reads_back_the_same() -> anyhow::Result<()> {
    let Some(python) = python_with_pyzmq() else {
        return Ok(());
    };
    let logs = LogDir::new("doc-state-export")?;
    let from = start_standalone(&logs, "broker-from")?;
    let to = start_standalone(&logs, "broker-to")?;
    let writes: [(&str, &str); 5] = [
        ("kitchen/temp", "215"),
        ("hall/light", r#"{"on":1,"level":40}"#),
        ("note", "hello world"),
        ("scenes", r#"[1,"evening",[2]]"#),
        // A dict with a `value` key: the import must wrap it to store it as it is.
        ("meter", r#"{"value":{"value":1,"unit":"kWh"}}"#),
    ];
    for (key, value) in writes {
        ok(hearth(
            std::slice::from_ref(&from.frontend),
            "5s",
            &["state", "set", key, value],
        )?)?;
    }
    let file = logs.path().join("state.bencode");
    let script = example("state-export.py");
    let run = |verb: &str, broker: &str, stdin: std::fs::File, stdout: std::process::Stdio| {
        Command::new(&python)
            .args([script.as_str(), verb, broker])
            .stdin(stdin)
            .stdout(stdout)
            .output()
    };
    let exported = run(
        "export",
        &from.frontend,
        std::fs::File::open("/dev/null")?,
        std::fs::File::create(&file)?.into(),
    )?;
    assert!(exported.status.success(), "{exported:?}");
    let imported = run(
        "import",
        &to.frontend,
        std::fs::File::open(&file)?,
        std::process::Stdio::piped(),
    )?;
    assert!(imported.status.success(), "{imported:?}");
    assert_eq!(
        String::from_utf8_lossy(&imported.stderr).trim(),
        "imported 5 keys, model seq now 5"
    );
    // Values equal, key by key (the seqs are the importing broker's own).
    let values = |broker: &str| -> anyhow::Result<Vec<String>> {
        let text = ok(hearth(&[broker.to_owned()], "5s", &["state", "get"])?)?;
        Ok(text
            .lines()
            .map(|l| {
                l.rsplit_once("(seq")
                    .map_or(l, |(v, _)| v)
                    .trim()
                    .to_owned()
            })
            .collect())
    };
    assert_eq!(values(&from.frontend)?, values(&to.frontend)?);
    assert_eq!(values(&to.frontend)?.len(), 5);
    logs.mark_passed();
    Ok(())
}

/// `hearth state get` of a pair: the lines `key  value  (seq N)`.
fn state_lines(pair: &DocPair) -> anyhow::Result<Vec<String>> {
    let text = ok(pair.hearth(&["state", "get"])?)?;
    Ok(text.lines().map(str::to_owned).collect())
}

/// The keys of a `hearth state get` listing.
fn keys(lines: &[String]) -> Vec<&str> {
    lines
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

#[test]
fn backup_of_the_stopped_passive_restores_the_moment_of_the_copy() -> anyhow::Result<()> {
    let mut pair = DocPair::new("doc-backup")?;
    pair.start(PRIMARY, &[])?;
    pair.start(BACKUP, &[])?;
    assert_eq!(pair.wait_settled(Duration::from_secs(15))?, PRIMARY);
    ok(pair.hearth(&["state", "set", "kitchen/temp", "215"])?)?;
    ok(pair.hearth(&["state", "set", "hall/light", r#"{"on":1,"level":40}"#])?)?;
    let before = state_lines(&pair)?;

    // docs/backup.md: stop the passive, copy its data dir, start it again.
    let copy = pair.dir().join("hearth-backup");
    let passive = pair.data_dir(BACKUP).to_path_buf();
    assert!(pair.stop(BACKUP).success());
    sh(&format!(
        "cp -a '{}' '{}'",
        passive.display(),
        copy.display()
    ))?;
    pair.start(BACKUP, &[])?;
    pair.wait_settled(Duration::from_secs(15))?;

    // Life goes on after the copy.
    ok(pair.hearth(&["state", "set", "kitchen/temp", "230"])?)?;
    ok(pair.hearth(&["state", "set", "door", "open"])?)?;

    // docs/backup.md, restore: both stopped, both data dirs moved aside, the copy put in
    // place on one machine (here the primary's), the other left to start empty.
    assert!(pair.stop(PRIMARY).success());
    assert!(pair.stop(BACKUP).success());
    for side in [PRIMARY, BACKUP] {
        let dir = pair.data_dir(side).display().to_string();
        sh(&format!("mv '{dir}' '{dir}.before-restore'"))?;
    }
    let restored = pair.data_dir(PRIMARY).display().to_string();
    sh(&format!("cp -a '{}' '{restored}'", copy.display()))?;
    pair.start(PRIMARY, &[])?;
    let waiting = pair.status(PRIMARY)?;
    assert!(
        waiting.waiting_for_peer.is_some(),
        "a restored copy of a paired broker waits for its peer: {waiting:?}"
    );
    pair.start(BACKUP, &[])?;
    assert_eq!(pair.wait_settled(Duration::from_secs(15))?, PRIMARY);
    assert_eq!(state_lines(&pair)?, before);
    let backup = pair.status(BACKUP)?;
    assert_eq!(
        backup.state_keys, 2,
        "the emptied broker caught up: {backup:?}"
    );
    pair.passed();
    Ok(())
}

#[test]
fn upgrading_one_broker_at_a_time_loses_no_write() -> anyhow::Result<()> {
    let mut pair = DocPair::new("doc-upgrade")?;
    pair.start(PRIMARY, &[])?;
    pair.start(BACKUP, &[])?;
    assert_eq!(pair.wait_settled(Duration::from_secs(15))?, PRIMARY);
    ok(pair.hearth(&["state", "set", "step/1", "before"])?)?;

    // docs/upgrade.md step 1: the passive first. The active answers alone meanwhile.
    assert!(pair.stop(BACKUP).success());
    ok(pair.hearth(&["state", "set", "step/2", "passive-away"])?)?;
    pair.start(BACKUP, &[])?;
    assert_eq!(pair.wait_settled(Duration::from_secs(15))?, PRIMARY);

    // Step 2: stop the active; the passive takes over at the next request.
    assert!(pair.stop(PRIMARY).success());
    ok(pair.hearth(&["state", "set", "step/3", "failed-over"])?)?;
    assert_eq!(pair.status(BACKUP)?.state, BStarState::Active);

    // Step 3: the old active comes back passive and catches up.
    pair.start(PRIMARY, &[])?;
    assert_eq!(pair.wait_settled(Duration::from_secs(15))?, BACKUP);
    let lines = state_lines(&pair)?;
    assert_eq!(keys(&lines), ["step/1", "step/2", "step/3"], "{lines:?}");
    assert_eq!(pair.status(PRIMARY)?.state_keys, 3);
    pair.passed();
    Ok(())
}

#[test]
fn after_both_die_one_waits_until_forced_active() -> anyhow::Result<()> {
    let mut pair = DocPair::new("doc-restart-rule")?;
    pair.start(PRIMARY, &[])?;
    pair.start(BACKUP, &[])?;
    assert_eq!(pair.wait_settled(Duration::from_secs(15))?, PRIMARY);
    ok(pair.hearth(&["state", "set", "kitchen/temp", "215"])?)?;

    // A power cut: both die at once, both paired. The backup's machine does not come back.
    pair.kill(PRIMARY);
    pair.kill(BACKUP);
    pair.start(PRIMARY, &[])?;
    let status = pair.status(PRIMARY)?;
    assert!(
        status.waiting_for_peer.is_some() && status.state != BStarState::Active,
        "{status:?}"
    );
    let refused = hearth(&[pair.frontend(PRIMARY)], "2s", &["state", "get"])?;
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");

    // docs/restart-rule.md: forced promotion, once the peer is known to be lost.
    assert!(pair.stop(PRIMARY).success());
    pair.start(PRIMARY, &["--force-active"])?;
    let primary = [pair.frontend(PRIMARY)];
    let lines = ok(hearth(&primary, "5s", &["state", "get", "kitchen/temp"])?)?;
    assert!(lines.starts_with("kitchen/temp  215"), "{lines}");
    let status = pair.status(PRIMARY)?;
    assert!(
        status.state == BStarState::Active && status.waiting_for_peer.is_none(),
        "{status:?}"
    );

    // Its standing is now *alone*: restarted without the flag, it serves at once.
    assert!(pair.stop(PRIMARY).success());
    pair.start(PRIMARY, &[])?;
    ok(hearth(
        &primary,
        "5s",
        &["state", "set", "kitchen/temp", "216"],
    )?)?;

    // The peer, back (here with its old data dir), follows.
    pair.start(BACKUP, &[])?;
    assert_eq!(pair.wait_settled(Duration::from_secs(15))?, PRIMARY);
    pair.passed();
    Ok(())
}
