//! The `hearth-worker` binary: usage errors exit 2; a running worker serves, and SIGTERM
//! makes it say DISCONNECT and exit 0.

mod common;

use std::process::{Child, Command, Stdio};

use common::*;
use hearth_supervise::wait_until;

const BIN: &str = env!("CARGO_BIN_EXE_hearth-worker");

fn usage_error(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "args {args:?}: {stderr}");
    stderr
}

#[test]
fn usage_errors_exit_2() {
    assert!(usage_error(&[]).contains("--echo or --exec"));
    assert!(usage_error(&["--echo"]).contains("--service"));
    usage_error(&["--service", "s", "--echo", "--exec", "cat"]);
    usage_error(&["--service", "s", "--echo", "--concurrency", "0"]);
    usage_error(&["--service", "s", "--echo", "--liveness", "0"]);
    usage_error(&["--service", "s", "--exec", "cat", "--timeout", "soon"]);
    usage_error(&["--service", "s", "--echo", "--heartbeat", "0ms"]);
    assert!(usage_error(&["--service", "mmi.service", "--echo"]).contains("reserved"));
    assert!(usage_error(&[
        "--service",
        "s",
        "--echo",
        "--config",
        "/nonexistent/hearth.toml"
    ])
    .contains("cannot read"));
    usage_error(&["--service", "s", "--echo", "--broker", "nonsense"]);
    usage_error(&["--bogus"]);
}

#[test]
fn bad_config_file_exits_2() {
    let path = std::env::temp_dir().join(format!("hearth-worker-cli-{}.toml", std::process::id()));
    std::fs::write(&path, "service = \"s\"\necho = true\nheartbeet = \"1s\"\n").unwrap();
    let err = usage_error(&["--config", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    assert!(err.contains("heartbeet"), "{err}");
}

fn start(args: &[&str]) -> Child {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let exit = wait_until("hearth-worker to exit", T, || match child.try_wait() {
        Ok(Some(status)) => Ok(status),
        other => Err(format!("{other:?}")),
    });
    exit.unwrap_or_else(|e| {
        let _ = child.kill();
        panic!("{e}")
    })
}

#[test]
fn sigterm_sends_disconnect_and_exits_0() {
    let broker = TestBroker::bind();
    let mut child = start(&[
        "--broker",
        &broker.endpoint,
        "--service",
        "echo",
        "--echo",
        "--heartbeat",
        "100ms",
    ]);
    let id = broker.expect_ready("echo");
    broker.request(&id, b"c", &[b"a", b"b"]);
    let reply = broker.recv_until("REPLY", T, |m| m.is(REPLY));
    assert_eq!(reply.frames, reply_frames(b"c", &[b"a", b"b"]));
    // SAFETY: plain kill(2) to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let bye = broker.recv_until("DISCONNECT", T, |m| m.is(DISCONNECT));
    assert_eq!(
        (bye.id, bye.frames),
        (id, frames(&[b"", b"MDPW01", &[DISCONNECT]]))
    );
    assert_eq!(wait_exit(&mut child).code(), Some(0));
}

#[test]
fn exec_mode_from_a_config_file_serves_requests() {
    let broker = TestBroker::bind();
    let path = std::env::temp_dir().join(format!("hearth-worker-exec-{}.toml", std::process::id()));
    let toml = format!(
        "brokers = [\"{}\"]\nservice = \"upper\"\nexec = \"tr a-z A-Z\"\ntimeout = \"5s\"\nheartbeat = \"100ms\"\nconcurrency = 2\n",
        broker.endpoint
    );
    std::fs::write(&path, toml).unwrap();
    let mut child = start(&["--config", path.to_str().unwrap()]);
    let a = broker.expect_ready("upper");
    let b = broker.expect_ready("upper");
    assert_ne!(a, b);
    let _ = std::fs::remove_file(&path);
    broker.request(&b, b"c", &[b"lights ", b"on"]);
    let reply = broker.recv_until("REPLY", T, |m| m.is(REPLY));
    assert_eq!(reply.frames, reply_frames(b"c", &[b"LIGHTS ON"]));
    // SAFETY: plain kill(2) to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(wait_exit(&mut child).code(), Some(0));
}
