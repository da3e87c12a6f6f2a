//! Broker processes for tests: the real `hearth-broker` binary as a `hearth_supervise::Proc`
//! (signalled only by the PID of a child not yet reaped, killed on drop so a failing test
//! leaves nothing behind), with the endpoints it was given.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use hearth_supervise::{free_ports, Launch, Output, Proc};

use super::wait_for;

/// A `hearth-broker` child process and its endpoints.
pub struct BrokerProc {
    pub proc: Proc,
    pub frontend: String,
    pub metrics: SocketAddr,
    args: Vec<String>,
}

impl BrokerProc {
    /// Starts `hearth-broker` with `args` plus a frontend and metrics address on two
    /// different free ports.
    pub fn start(args: &[String]) -> BrokerProc {
        let [frontend_port, metrics_port] = free_ports().expect("two free ports");
        let frontend = format!("tcp://127.0.0.1:{frontend_port}");
        let metrics = SocketAddr::from(([127, 0, 0, 1], metrics_port));
        let mut all = args.to_vec();
        all.extend([
            "--frontend".into(),
            frontend.clone(),
            "--metrics".into(),
            metrics.to_string(),
        ]);
        BrokerProc {
            proc: spawn(&all),
            frontend,
            metrics,
            args: all,
        }
    }

    /// The arguments it runs with (frontend and metrics included).
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// Starts the same broker again with the same arguments (killing it first if it runs).
    pub fn restart(&mut self) {
        self.kill9();
        self.proc = spawn(&self.args);
    }

    /// Starts the broker again with other arguments (killing it first if it runs).
    pub fn restart_with(&mut self, args: Vec<String>) {
        self.args = args;
        self.restart();
    }

    /// Sends `signal` to the process; panics if it has been reaped.
    pub fn signal(&self, signal: i32) {
        self.proc
            .signal(signal)
            .unwrap_or_else(|e| panic!("signal {signal}: {e}"));
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) -> ExitStatus {
        self.proc.kill9().expect("kill -9 and reap")
    }

    /// How it ended, if it has.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.proc.exit_status()
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

fn spawn(args: &[String]) -> Proc {
    Proc::spawn(
        "hearth-broker",
        Path::new(env!("CARGO_BIN_EXE_hearth-broker")),
        args,
        &Launch::harness(Output::Inherit),
    )
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
