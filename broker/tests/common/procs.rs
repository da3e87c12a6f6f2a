//! Broker processes for tests: start the real `hearth-broker` binary, signal it by PID,
//! and kill it on drop so a failing test leaves nothing behind.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, wait_for};

/// A `hearth-broker` child process and its endpoints.
pub struct BrokerProc {
    pub child: Child,
    pub frontend: String,
    pub metrics: std::net::SocketAddr,
    args: Vec<String>,
}

impl BrokerProc {
    /// Starts `hearth-broker` with `args` plus a frontend and metrics address on free ports.
    pub fn start(args: &[String]) -> BrokerProc {
        // Two free ports picked one after the other can be the same one: pick again.
        let frontend_port = free_port();
        let metrics_port = std::iter::repeat_with(free_port)
            .find(|&p| p != frontend_port)
            .expect("a second free port");
        let frontend = format!("tcp://127.0.0.1:{frontend_port}");
        let metrics: std::net::SocketAddr =
            format!("127.0.0.1:{metrics_port}").parse().expect("addr");
        let mut all = args.to_vec();
        all.extend([
            "--frontend".into(),
            frontend.clone(),
            "--metrics".into(),
            metrics.to_string(),
        ]);
        let child = spawn(&all);
        BrokerProc {
            child,
            frontend,
            metrics,
            args: all,
        }
    }

    /// Starts the same broker again with the same arguments (after a kill).
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.args);
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the PID of a child this test started and has not reaped.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.child.id());
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// The broker's `/status`, if it answers.
    pub fn status(&self) -> Option<serde_json::Value> {
        let (code, body) = super::try_http_get(self.metrics, "/status")?;
        if code != 200 {
            return None;
        }
        serde_json::from_str(&body).ok()
    }

    /// The broker's Binary Star state per `/status`.
    pub fn state(&self) -> Option<String> {
        self.status()
            .and_then(|s| s["state"].as_str().map(str::to_owned))
    }

    /// Waits until `/status` says `state`.
    pub fn wait_state(&self, state: &str, timeout: Duration) {
        wait_for(
            &format!("{} to be {state}", self.frontend),
            timeout,
            || match self.state() {
                Some(s) if s == state => Ok(()),
                other => Err(other),
            },
        );
    }
}

impl Drop for BrokerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_hearth-broker"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn hearth-broker")
}

/// Arguments for one broker of a pair on the given peer ports.
pub fn pair_args(
    role: &str,
    own_peer: u16,
    other_peer: u16,
    peer_heartbeat_ms: u64,
) -> Vec<String> {
    vec![
        "--role".into(),
        role.into(),
        "--peer-bind".into(),
        format!("tcp://127.0.0.1:{own_peer}"),
        "--peer-connect".into(),
        format!("tcp://127.0.0.1:{other_peer}"),
        "--peer-heartbeat".into(),
        format!("{peer_heartbeat_ms}ms"),
        "--heartbeat".into(),
        "200ms".into(),
    ]
}
