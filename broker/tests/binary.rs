//! The `hearth-broker` binary from outside: SIGTERM/SIGINT shutdown, usage errors.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(10);
const BIN: &str = env!("CARGO_BIN_EXE_hearth-broker");

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(args: &[&str]) -> Broker {
    let child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn broker");
    Broker(child)
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    wait_for("broker exit", T, || match child.try_wait() {
        Ok(Some(status)) => Ok(status),
        other => Err(format!("{other:?}")),
    })
}

fn shutdown_on(signal: i32) {
    let endpoint = format!("tcp://127.0.0.1:{}", free_port());
    let mut broker = start(&["--frontend", &endpoint, "--heartbeat", "100ms"]);
    let ctx = zmq::Context::new();
    let worker = raw(&ctx, zmq::DEALER, &endpoint);
    send(&worker, &[b"", b"MDPW01", b"\x01", b"echo"]);
    // Registered once the broker heartbeats it.
    recv_until(&worker, T, |f| is_command(f, 0x04));
    let pid = broker.0.id() as i32;
    // SAFETY: kill(2) on the PID of a child this test started.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    recv_until(&worker, T, |f| is_command(f, 0x05));
    let status = wait_exit(&mut broker.0);
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn sigterm_disconnects_workers_and_exits_0() {
    shutdown_on(libc::SIGTERM);
}

#[test]
fn sigint_disconnects_workers_and_exits_0() {
    shutdown_on(libc::SIGINT);
}

#[test]
fn bad_usage_exits_2() {
    for args in [
        &["--no-such-flag"][..],
        &["--liveness", "zero"],
        &["--liveness", "0"],
        &["--heartbeat", "soon"],
        &["--role", "king"],
        &["--config", "/nonexistent/hearth.toml"],
    ] {
        let status = Command::new(BIN)
            .args(args)
            .stderr(Stdio::null())
            .status()
            .expect("run");
        assert_eq!(status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn busy_port_is_a_clear_failure() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("tcp://{}", listener.local_addr().unwrap());
    let output = Command::new(BIN)
        .args(["--frontend", &endpoint])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bind frontend"), "{stderr}");
}

#[test]
fn config_file_is_read() {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("hearth-broker-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broker.toml");
    std::fs::write(
        &path,
        format!("frontend = \"tcp://127.0.0.1:{port}\"\nheartbeat = \"100ms\"\n"),
    )
    .unwrap();
    let _broker = start(&["--config", path.to_str().unwrap()]);
    let ctx = zmq::Context::new();
    let client = raw(&ctx, zmq::REQ, &format!("tcp://127.0.0.1:{port}"));
    send(&client, &[b"MDPC01", b"mmi.service", b"echo"]);
    assert_eq!(recv(&client, T).expect("answer")[2], b"404");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn shipped_example_configs_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/config");
    for name in ["primary.toml", "backup.toml"] {
        let config = hearth_broker::BrokerConfig::from_file(&dir.join(name)).expect(name);
        config.validate().expect(name);
    }
}
