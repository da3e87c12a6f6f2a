//! The `hearth` binary end to end against the test RFC 7 broker: output, exit codes (0
//! success, 1 request failed, 2 bad usage) and deadlines.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{mdp, text, TestBroker};

fn hearth(args: &[&str]) -> Output {
    hearth_with_stdin(args, b"")
}

fn hearth_with_stdin(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hearth");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().expect("wait for hearth")
}

#[test]
fn bad_usage_exits_2() {
    for args in [
        &["frobnicate"][..],
        &["call"],
        &["--timeout", "soon", "call", "echo"],
        &["bench", "--clients", "0"],
        &["--broker", "nonsense://nowhere", "call", "echo"],
    ] {
        let out = hearth(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn bench_rejects_a_body_smaller_than_its_id() {
    let out = hearth(&["bench", "--size", "4"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--size"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn unreadable_config_is_bad_usage() {
    let out = hearth(&["--config", "/nonexistent/hearth.toml", "status"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn call_prints_the_reply_and_exits_0() {
    let broker = TestBroker::echo();
    let out = hearth(&["--broker", &broker.endpoint, "call", "echo", "hello"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(out.stdout, b"hello", "piped output is the exact body");
    assert_eq!(
        broker.next_received(Duration::from_secs(1)),
        Some(mdp("echo", &[b"hello"]))
    );
}

#[test]
fn call_reads_the_body_from_stdin_and_joins_frames_with_newlines() {
    let broker = TestBroker::start(|id, frames| {
        let mut reply = frames.to_vec();
        reply.push(b"second".to_vec());
        vec![(id.clone(), reply)]
    });
    let out = hearth_with_stdin(
        &["--broker", &broker.endpoint, "call", "echo", "-"],
        b"from\0stdin",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(out.stdout, b"from\0stdin\nsecond");
}

#[test]
fn call_without_body_sends_one_empty_frame() {
    let broker = TestBroker::echo();
    let out = hearth(&["--broker", &broker.endpoint, "call", "echo"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        broker.next_received(Duration::from_secs(1)),
        Some(mdp("echo", &[b""]))
    );
}

#[test]
fn call_to_a_silent_broker_exits_1_within_the_timeout() {
    let broker = TestBroker::silent();
    let started = Instant::now();
    let out = hearth(&[
        "--broker",
        &broker.endpoint,
        "--timeout",
        "800ms",
        "call",
        "echo",
        "x",
    ]);
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    // The call's deadline, then at most as long again for the mmi.service diagnosis.
    assert!(elapsed >= Duration::from_millis(800), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(3000), "{elapsed:?}");
    assert!(
        text(&out.stderr).contains("unreachable"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn call_timeout_says_when_no_worker_offers_the_service() {
    // Answers mmi.service (404 for anything but echo) and nothing else.
    let broker = TestBroker::start(|id, frames| {
        if frames.get(2).map(Vec::as_slice) == Some(b"mmi.service") {
            vec![(id.clone(), common::echo_answer(frames))]
        } else {
            Vec::new()
        }
    });
    let out = hearth(&[
        "--broker",
        &broker.endpoint,
        "--timeout",
        "500ms",
        "call",
        "lights",
        "on",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no worker offers service lights"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn services_by_name_print_mmi_codes_and_fail_on_404() {
    let broker = TestBroker::echo();
    let out = hearth(&["--broker", &broker.endpoint, "services", "echo"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "echo 200\n");
    let out = hearth(&["--broker", &broker.endpoint, "services", "echo", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "echo 200\nnope 404\n");
}

#[test]
fn services_lists_from_hearth_status() {
    let broker = TestBroker::echo();
    let out = hearth(&["--broker", &broker.endpoint, "services"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("SERVICE"), "{stdout}");
    let row: Vec<&str> = stdout.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row, ["echo", "2", "1", "0"]);
}

#[test]
fn status_json_prints_one_line_per_broker() {
    let up = TestBroker::echo();
    let down = TestBroker::silent();
    let out = hearth(&[
        "--broker",
        &up.endpoint,
        "--broker",
        &down.endpoint,
        "--timeout",
        "500ms",
        "status",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "one broker is down");
    let stdout = text(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0]["broker"], up.endpoint.as_str());
    assert_eq!(lines[0]["status"]["role"], "standalone");
    assert_eq!(lines[0]["status"]["services"][0]["name"], "echo");
    assert!(lines[1]["error"].is_string(), "{stdout}");
}

#[test]
fn status_shows_two_brokers_side_by_side() {
    let up = TestBroker::echo();
    let down = TestBroker::silent();
    let out = hearth(&[
        "--broker",
        &up.endpoint,
        "--broker",
        &down.endpoint,
        "--timeout",
        "500ms",
        "status",
    ]);
    assert_eq!(out.status.code(), Some(1), "one broker is down");
    let stdout = text(&out.stdout);
    let mut lines = stdout.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [up.endpoint.as_str(), down.endpoint.as_str()],
        "{stdout}"
    );
    let cells = |label: &str| -> Vec<String> {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{label}  ")))
            .unwrap_or_else(|| panic!("no {label} row in\n{stdout}"));
        line[label.len()..]
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(cells("role"), ["standalone", "-"], "{stdout}");
    assert_eq!(cells("state"), ["active", "unreachable"], "{stdout}");
    assert_eq!(cells("uptime"), ["1m 1s", "-"], "{stdout}");
    assert_eq!(
        cells("service echo"),
        ["2 workers (1 idle), 0 queued", "-"],
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{}: unreachable:", down.endpoint)),
        "{stdout}"
    );
}

#[test]
fn status_prints_a_readable_block() {
    let broker = TestBroker::echo();
    let out = hearth(&["--broker", &broker.endpoint, "status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("broker {}", broker.endpoint)),
        "{stdout}"
    );
    assert!(
        stdout.contains("service echo: 2 workers (1 idle), 0 queued"),
        "{stdout}"
    );
}

#[test]
fn bench_against_an_echo_broker_verifies_every_reply() {
    let broker = TestBroker::echo();
    let out = hearth(&[
        "--broker",
        &broker.endpoint,
        "bench",
        "--clients",
        "2",
        "--inflight",
        "4",
        "--size",
        "100",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(report["requests"].as_u64().unwrap() > 0, "{stdout}");
    assert_eq!(report["lost"], 0);
    assert_eq!(report["mismatched"], 0);
    for key in ["throughput", "p50_ms", "p99_ms", "max_ms"] {
        assert!(report[key].is_number(), "{key}: {stdout}");
    }
}

#[test]
fn bench_counts_corrupted_replies_and_exits_1() {
    // Flips the last byte of every body.
    let broker = TestBroker::start(|id, frames| {
        let mut reply = frames.to_vec();
        if let Some(body) = reply.last_mut() {
            if let Some(b) = body.last_mut() {
                *b ^= 1;
            }
        }
        vec![(id.clone(), reply)]
    });
    let out = hearth(&[
        "--broker",
        &broker.endpoint,
        "bench",
        "--clients",
        "1",
        "--inflight",
        "2",
        "--duration",
        "300ms",
        "--warmup",
        "0s",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert!(report["mismatched"].as_u64().unwrap() > 0);
    assert_eq!(report["requests"], 0);
}

#[test]
fn bench_counts_unanswered_requests_as_lost() {
    let broker = TestBroker::silent();
    let out = hearth(&[
        "--broker",
        &broker.endpoint,
        "bench",
        "--clients",
        "1",
        "--inflight",
        "3",
        "--duration",
        "200ms",
        "--warmup",
        "0s",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(report["lost"], 3);
}
