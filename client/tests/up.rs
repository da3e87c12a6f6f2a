//! `hearth up` with the real sibling binaries (`hearth-broker`, `hearth-worker`), when they
//! have been built into the same target directory; skipped (with a note) otherwise. Build
//! them with `cargo build --bins` to run it.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn siblings_built() -> bool {
    let dir = Path::new(env!("CARGO_BIN_EXE_hearth")).parent().unwrap();
    ["hearth-broker", "hearth-worker"]
        .iter()
        .all(|b| dir.join(b).is_file())
}

#[test]
fn up_starts_a_cluster_answers_echo_and_stops_cleanly() {
    if !siblings_built() {
        eprintln!("skipped: hearth-broker and hearth-worker are not built (cargo build --bins)");
        return;
    }
    let frontend = format!("tcp://127.0.0.1:{}", free_port());
    let metrics = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args([
            "up",
            "--frontend",
            &frontend,
            "--metrics",
            &metrics,
            "--for",
            "500ms",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("frontend  {frontend}")),
        "{stdout}"
    );
    assert_eq!(stdout.matches("hearth-worker echo#").count(), 2, "{stdout}");
    assert!(
        stdout.contains(r#"echo "hello from hearth" -> "hello from hearth""#),
        "{stdout}"
    );
    assert!(stdout.contains("cluster stopped"), "{stdout}");
    assert!(started.elapsed() < Duration::from_secs(15));
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
    assert!(String::from_utf8_lossy(&out.stderr).contains("cargo build --release --bins"));
}
