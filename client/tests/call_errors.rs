//! `hearth call` against the real binaries: a `hearth-broker` and `hearth-worker --exec`
//! workers whose commands fail or run over their `--timeout`. hearth's error reply (the
//! Bencode dict `{error: ...}`) is a failed call: `error from SERVICE: TEXT` on stderr,
//! exit 1; `--raw` prints it as received, exit 0; any other reply prints as it is.
//!
//! The sibling binaries must be built first (`cargo build --workspace --bins`).

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{hearth_at, text};

/// A built binary beside `hearth`.
fn sibling(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_hearth"))
        .parent()
        .expect("the target directory");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build --workspace --bins` before the tests",
        path.display()
    );
    path
}

/// A child process killed when the test ends, pass or fail.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(program: &Path, args: &[&str]) -> Running {
    Running(
        Command::new(program)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display())),
    )
}

fn hearth(endpoint: &str, args: &[&str]) -> Output {
    hearth_at(&[&["--broker", endpoint, "--timeout", "10s"], args].concat())
}

/// A broker and one `--exec` worker per service, all registered.
struct Cluster {
    endpoint: String,
    _processes: Vec<Running>,
}

impl Cluster {
    fn start(services: &[(&str, &str)]) -> Cluster {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let endpoint = format!("tcp://127.0.0.1:{port}");
        let mut processes = vec![spawn(&sibling("hearth-broker"), &["--frontend", &endpoint])];
        for (service, command) in services {
            processes.push(spawn(
                &sibling("hearth-worker"),
                &[
                    "--broker",
                    &endpoint,
                    "--service",
                    service,
                    "--exec",
                    command,
                    "--timeout",
                    "1s",
                ],
            ));
        }
        // `hearth services NAME...` exits 0 once every one has a worker.
        let names: Vec<&str> = services.iter().map(|(name, _)| *name).collect();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let out = hearth(&endpoint, &[&["services"], &names[..]].concat());
            if out.status.code() == Some(0) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "workers never registered: {}{}",
                text(&out.stdout),
                text(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Cluster {
            endpoint,
            _processes: processes,
        }
    }

    fn call(&self, args: &[&str]) -> Output {
        hearth(&self.endpoint, &[&["call"], args].concat())
    }
}

#[test]
fn error_replies_fail_the_call_with_a_readable_message() {
    let cluster = Cluster::start(&[
        ("fails", "echo 'no such lamp' >&2; exit 3"),
        ("hangs", "sleep 5"),
        ("upper", "tr a-z A-Z"),
        ("looks-like-one", "printf 'd5:errori3ee'"),
    ]);

    let out = cluster.call(&["fails", "kitchen"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(out.stdout, b"", "nothing on stdout");
    assert_eq!(
        text(&out.stderr),
        "hearth: error from fails: exec: exited with status 3: no such lamp\n"
    );

    let out = cluster.call(&["hangs"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "hearth: error from hangs: exec: timed out after 1s\n"
    );

    // --raw: the body as received, exit 0.
    let out = cluster.call(&["--raw", "hangs"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(out.stdout, b"d5:error24:exec: timed out after 1se");
    assert_eq!(out.stderr, b"");

    // Replies that are not hearth's error convention print as they are.
    let out = cluster.call(&["upper", "hello"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(out.stdout, b"HELLO");
    let out = cluster.call(&["looks-like-one"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        out.stdout, b"d5:errori3ee",
        "an error that is no byte string"
    );
}

#[test]
fn a_refusal_from_the_broker_itself_fails_the_call_too() {
    let cluster = Cluster::start(&[]);
    // The state services answer a bad request with {error: ...}.
    let out = cluster.call(&["state.set", "not bencode"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("hearth: error from state.set: not Bencode"),
        "{stderr}"
    );
}
