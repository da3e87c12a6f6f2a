//! `hearth up` with the real sibling binaries (`hearth-broker`, `hearth-worker`), when they
//! have been built into the same target directory; skipped (with a note) otherwise. Build
//! them with `cargo build --workspace --bins` to run it.
//!
//! Every test gives each endpoint a port that was free a moment ago, reads `hearth up`'s
//! output as it comes, and waits on lines with a deadline.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use hearth_supervise::{free_ports, wait_until};

fn siblings_built() -> bool {
    let dir = Path::new(env!("CARGO_BIN_EXE_hearth")).parent().unwrap();
    let built = ["hearth-broker", "hearth-worker"]
        .iter()
        .all(|b| dir.join(b).is_file());
    if !built {
        eprintln!("skipped: hearth-broker and hearth-worker are not built (cargo build --bins)");
    }
    built
}

/// The endpoints of one `hearth up`, on ports free a moment ago.
struct Ports {
    frontend: String,
    backup_frontend: String,
    flags: Vec<String>,
}

impl Ports {
    fn new() -> Ports {
        // Eight different ports.
        let ports = free_ports::<8>().unwrap();
        let port = |i: usize| ports[i];
        let tcp = |i: usize| format!("tcp://127.0.0.1:{}", port(i));
        let http = |i: usize| format!("127.0.0.1:{}", port(i));
        let flags = [
            ("--frontend", tcp(0)),
            ("--peer", tcp(1)),
            ("--metrics", http(2)),
            ("--backup-frontend", tcp(3)),
            ("--backup-peer", tcp(4)),
            ("--backup-metrics", http(5)),
            ("--feed", tcp(6)),
            ("--backup-feed", tcp(7)),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_owned(), value])
        .collect();
        Ports {
            frontend: tcp(0),
            backup_frontend: tcp(3),
            flags,
        }
    }
}

/// A running `hearth up`: its output line by line as it comes; SIGKILLed if the test ends
/// before it does (its children then get SIGTERM from the kernel).
struct Up {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Receiver<String>,
}

impl Up {
    /// Starts `hearth up` with `args` on `ports`; its stdin a pipe kept open (for `k`) when
    /// `keep_stdin`, else closed at once (end of input must not stop it).
    fn start(args: &[&str], ports: &Ports, keep_stdin: bool) -> Up {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .arg("up")
            .args(args)
            .args(&ports.flags)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hearth up");
        let (tx, lines) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let (tx, stderr) = mpsc::channel();
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            let _ = tx.send(text);
        });
        let stdin = child.stdin.take().filter(|_| keep_stdin);
        Up {
            child,
            stdin,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Waits for a line containing `needle`; panics with everything seen after `timeout`.
    fn wait_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {needle:?} within {timeout:?}; output so far:\n{}\nstderr:\n{}",
                    self.output(),
                    self.stderr_now(Duration::from_millis(100))
                ),
            }
        }
    }

    /// Waits for the process to exit by itself, then collects the rest of its output.
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let exited = wait_until("hearth up to exit", timeout, || {
            match self.child.try_wait() {
                Ok(Some(status)) => Ok(status),
                other => Err(format!("{other:?}")),
            }
        });
        let status = exited.unwrap_or_else(|e| panic!("{e}; output:\n{}", self.output()));
        // The rest of stdout, until the pipe closes (the children are gone too).
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        status
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin kept open");
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    fn sigterm(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: our own, not yet reaped, child.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    }

    fn output(&self) -> String {
        self.seen.join("\n")
    }

    /// Everything on stderr, once the pipe has closed (the process and its children have
    /// exited) within `timeout`; empty otherwise.
    fn stderr_now(&self, timeout: Duration) -> String {
        self.stderr.recv_timeout(timeout).unwrap_or_default()
    }

    fn count(&self, needle: &str) -> usize {
        self.seen.iter().filter(|l| l.contains(needle)).count()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `hearth status` against the given brokers.
fn status(brokers: &[&str]) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hearth"));
    for broker in brokers {
        command.args(["--broker", broker]);
    }
    let out = command
        .args(["--timeout", "2s", "status"])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The cells of the table row whose label is `label`.
fn row(table: &str, label: &str) -> Vec<String> {
    let line = table
        .lines()
        .find(|l| l.starts_with(&format!("{label}  ")))
        .unwrap_or_else(|| panic!("no {label} row in\n{table}"));
    line[label.len()..]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn up_runs_the_pair_answers_echo_shows_status_side_by_side_and_stops_cleanly() {
    if !siblings_built() {
        return;
    }
    let ports = Ports::new();
    let started = Instant::now();
    let mut up = Up::start(&["--for", "4s"], &ports, false);
    up.wait_line("pair settled", Duration::from_secs(15));
    let greeting = up.wait_line("echo \"hello from hearth\"", Duration::from_secs(10));
    assert!(
        greeting.contains(r#"-> "hello from hearth" (answered by primary"#),
        "{greeting}"
    );
    up.wait_line("cluster up", Duration::from_secs(5));

    let (code, table) = status(&[&ports.frontend, &ports.backup_frontend]);
    assert_eq!(code, Some(0), "{table}");
    assert_eq!(row(&table, "role"), ["primary", "backup"], "{table}");
    assert_eq!(row(&table, "state"), ["active", "passive"], "{table}");
    assert_eq!(
        row(&table, "service echo"),
        ["2 workers (2 idle), 0 queued"; 2],
        "{table}"
    );

    let status = up.wait_exit(Duration::from_secs(15));
    assert_eq!(
        status.code(),
        Some(0),
        "{}\n{}",
        up.output(),
        up.stderr_now(Duration::from_secs(5))
    );
    assert!(
        up.count(&format!("primary    frontend {}", ports.frontend)) == 1,
        "{}",
        up.output()
    );
    assert!(
        up.count(&format!("backup     frontend {}", ports.backup_frontend)) == 1,
        "{}",
        up.output()
    );
    assert_eq!(up.count("hearth-broker "), 2, "{}", up.output());
    assert_eq!(up.count("hearth-worker echo#"), 2, "{}", up.output());
    assert_eq!(up.count("cluster stopped"), 1, "{}", up.output());
    assert!(started.elapsed() < Duration::from_secs(25));
}

#[test]
fn killing_the_active_fails_over_the_killed_broker_comes_back_passive_and_k_kills_again() {
    if !siblings_built() {
        return;
    }
    let ports = Ports::new();
    let mut up = Up::start(
        &[
            "--kill-active-after",
            "1s",
            "--restart-after",
            "1s",
            "--for",
            "25s",
        ],
        &ports,
        true,
    );
    up.wait_line("cluster up", Duration::from_secs(15));
    up.wait_line("primary: active -> (killed)", Duration::from_secs(5));
    up.wait_line("backup: passive -> active", Duration::from_secs(10));
    up.wait_line("restarting primary: pid", Duration::from_secs(10));
    up.wait_line("primary is back as passive", Duration::from_secs(10));
    let summary = up.wait_line("echo calls since the kill:", Duration::from_secs(10));
    assert!(
        up.count("answered by backup in") >= 1,
        "no echo call answered after the kill:\n{}",
        up.output()
    );
    assert!(!summary.contains(" 0 answered"), "{summary}");

    // The pair as it now stands, from the real brokers.
    let (code, table) = status(&[&ports.frontend, &ports.backup_frontend]);
    assert_eq!(code, Some(0), "{table}");
    assert_eq!(row(&table, "state"), ["passive", "active"], "{table}");
    assert_eq!(row(&table, "failovers")[1], "1", "{table}");

    // k and Enter kills the active broker, now the backup.
    up.type_line("k");
    up.wait_line("kill -9 backup (pid", Duration::from_secs(5));
    up.wait_line("backup: active -> (killed)", Duration::from_secs(5));
    up.sigterm();
    let status = up.wait_exit(Duration::from_secs(15));
    assert_eq!(
        status.code(),
        Some(0),
        "{}\n{}",
        up.output(),
        up.stderr_now(Duration::from_secs(5))
    );
    assert_eq!(up.count("cluster stopped"), 1, "{}", up.output());
}

#[test]
fn standalone_answers_and_a_worker_dying_fails_the_run() {
    if !siblings_built() {
        return;
    }
    let ports = Ports::new();
    let mut up = Up::start(&["--standalone", "--for", "20s"], &ports, false);
    up.wait_line(
        &format!("standalone frontend {}", ports.frontend),
        Duration::from_secs(5),
    );
    let greeting = up.wait_line("echo \"hello from hearth\"", Duration::from_secs(15));
    assert!(greeting.contains("(answered by standalone"), "{greeting}");
    up.wait_line("cluster up", Duration::from_secs(5));
    assert_eq!(up.count("hearth-broker "), 1, "{}", up.output());

    let (code, block) = status(&[&ports.frontend]);
    assert_eq!(code, Some(0), "{block}");
    assert!(block.contains("role standalone, state active"), "{block}");

    let worker = up.wait_line("hearth-worker echo#2", Duration::ZERO);
    let pid: libc::pid_t = worker
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {worker:?}"));
    // SAFETY: a child of `hearth up`, which has not reaped it while it runs.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let status = up.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{}", up.output());
    let stderr = up.stderr_now(Duration::from_secs(5));
    assert!(
        stderr.contains(&format!("hearth-worker echo#2 (pid {pid}) exited")),
        "{stderr}"
    );
    assert_eq!(up.count("cluster stopped"), 1, "{}", up.output());
}

#[test]
fn up_rejects_bad_usage_with_exit_2() {
    for args in [
        // `--for` only in case one of them were accepted: it must not run on.
        &[
            "up",
            "--for",
            "1s",
            "--standalone",
            "--kill-active-after",
            "1s",
        ][..],
        &["up", "--for", "1s", "--frontend", "tcp://127.0.0.1:5565"],
        &["up", "--for", "1s", "--base-port", "65530"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn up_without_sibling_binaries_exits_1_with_a_hint() {
    let empty = std::env::temp_dir().join(format!("hearth-no-bins-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["up", "--for", "1s"])
        .env("HEARTH_BIN_DIR", &empty)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir(&empty);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cargo build --release --workspace --bins")
    );
}
