//! `hearth bench state` with the real sibling `hearth-broker`, when it has been built into
//! the same target directory; skipped (with a note) otherwise. Build it with
//! `cargo build --workspace --bins` to run this. The figures are not checked against their
//! targets (tests never assert on wall-clock speed), only that each was measured and that
//! nothing was lost, refused or mismatched.

use std::path::Path;
use std::process::Command;

fn broker_built() -> bool {
    let dir = Path::new(env!("CARGO_BIN_EXE_hearth")).parent().unwrap();
    dir.join("hearth-broker").is_file()
}

/// The hearth-bench-state-* data dirs in the temp dir that belong to `pid`.
fn data_dirs_of(pid: u32) -> Vec<String> {
    let prefix = format!("hearth-bench-state-{pid}-");
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(&prefix))
        .collect()
}

#[test]
fn a_short_run_loses_nothing_reports_every_figure_and_cleans_up() {
    if !broker_built() {
        eprintln!("skipped: hearth-broker is not built (cargo build --workspace --bins)");
        return;
    }
    let child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args([
            "bench",
            "state",
            "--duration",
            "300ms",
            "--warmup",
            "300ms",
            "--keys",
            "2000",
            "--writers",
            "4",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();

    for phase in ["writes_paired", "writes_alone", "reads"] {
        let p = &report[phase];
        assert_eq!(p["lost"], 0, "{phase}: {stdout}");
        assert_eq!(p["errors"], 0, "{phase}: {stdout}");
        assert_eq!(p["mismatched"], 0, "{phase}: {stdout}");
        assert!(p["requests"].as_u64().unwrap() > 0, "{phase}: {stdout}");
        assert!(p["throughput"].as_f64().unwrap() > 0.0, "{phase}: {stdout}");
        for figure in ["p50_ms", "p99_ms", "max_ms"] {
            assert!(p[figure].is_f64(), "{phase}.{figure}: {stdout}");
        }
        for figure in ["active_us_per_op", "clients_us_per_op"] {
            assert!(p["cpu"][figure].is_f64(), "{phase}.cpu.{figure}: {stdout}");
        }
    }
    let paired = &report["writes_paired"];
    assert!(paired["cpu"]["passive_us_per_op"].is_f64(), "{stdout}");
    assert!(paired["flush"]["rounds"].as_u64().unwrap() > 0, "{stdout}");
    assert!(
        paired["passive_flush"]["rounds"].as_u64().unwrap() > 0,
        "{stdout}"
    );
    assert!(
        report["writes_alone"]["cpu"]["passive_us_per_op"].is_null(),
        "the passive is down: {stdout}"
    );

    let after = &report["after_load"];
    assert_eq!(after["keys"], 2000, "{stdout}");
    assert_eq!(after["found"], 2000, "{stdout}");
    assert_eq!(after["lost"], 0, "{stdout}");
    for figure in [
        "primary_ms",
        "standalone_ms",
        "rss_mb",
        "rss_after_restart_mb",
    ] {
        assert!(after[figure].as_f64().unwrap() > 0.0, "{figure}: {stdout}");
    }
    assert!(after["write_ids"].as_u64().unwrap() > 0, "{stdout}");
    let model = &report["model_only"];
    assert_eq!(model["keys"], 2000, "{stdout}");
    assert_eq!(model["found"], 2000, "{stdout}");
    assert_eq!(model["lost"], 0, "{stdout}");
    for figure in ["restart_ms", "rss_mb", "rss_after_restart_mb"] {
        assert!(model[figure].as_f64().unwrap() > 0.0, "{figure}: {stdout}");
    }

    let targets = report["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 6, "{stdout}");
    assert!(targets.iter().all(|t| t["pass"].is_boolean()), "{stdout}");
    assert!(!report["bound"].as_str().unwrap().is_empty(), "{stdout}");
    assert!(report["first_error"].is_null(), "{stdout}");
    assert!(
        report["first_write_alone_ms"].as_f64().unwrap() > 0.0,
        "{stdout}"
    );

    assert!(
        data_dirs_of(pid).is_empty(),
        "the data dirs were not removed: {:?}",
        data_dirs_of(pid)
    );
}

#[test]
fn a_size_no_byte_string_encodes_to_is_bad_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["bench", "state", "--size", "12"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--size 12"), "{stderr}");
}
