//! `hearth bench failover` with the real sibling binaries (`hearth-broker`, `hearth-worker`),
//! when they have been built into the same target directory; skipped (with a note)
//! otherwise. Build them with `cargo build --workspace --bins` to run it. The figures are not checked
//! against their targets (tests never assert on wall-clock speed), only that each was
//! measured and that nothing was lost or answered by a replaced broker.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn siblings_built() -> bool {
    let dir = Path::new(env!("CARGO_BIN_EXE_hearth")).parent().unwrap();
    ["hearth-broker", "hearth-worker"]
        .iter()
        .all(|b| dir.join(b).is_file())
}

#[test]
fn one_round_of_each_kind_loses_nothing_and_reports_every_figure() {
    if !siblings_built() {
        eprintln!("skipped: hearth-broker and hearth-worker are not built (cargo build --workspace --bins)");
        return;
    }
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args([
            "bench",
            "failover",
            "--rounds",
            "1",
            "--heartbeat",
            "500ms",
            "--load-duration",
            "1s",
            "--load-clients",
            "2",
            "--load-runs",
            "1",
            "--json",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["stream"]["lost"], 0, "{stdout}");
    assert_eq!(report["stream"]["mismatched"], 0, "{stdout}");
    assert_eq!(report["dual_active"], 0, "{stdout}");
    assert!(
        report["stream"]["answered"].as_u64().unwrap() > 0,
        "{stdout}"
    );
    for kind in ["kill9", "sigstop"] {
        let k = &report[kind];
        assert_eq!(k["rounds"], 1, "{kind}: {stdout}");
        assert_eq!(k["lost"], 0, "{kind}: {stdout}");
        assert_eq!(k["dual_active"], 0, "{kind}: {stdout}");
        for figure in ["p50_ms", "p99_ms", "max_ms", "target_p99_ms"] {
            let v = k[figure]
                .as_f64()
                .unwrap_or_else(|| panic!("{kind}.{figure}: {stdout}"));
            assert!(v > 0.0, "{kind}.{figure} = {v}: {stdout}");
        }
        assert!(k["pass"].is_boolean(), "{kind}: {stdout}");
    }
    let throughput = &report["throughput"];
    for target in ["standalone", "pair"] {
        assert!(
            throughput[target].as_f64().unwrap() > 0.0,
            "{target}: {stdout}"
        );
    }
    assert_eq!(throughput["runs"].as_array().unwrap().len(), 2, "{stdout}");
    assert!(throughput["ratio"].as_f64().unwrap() > 0.0, "{stdout}");
    let rounds = report["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2, "{stdout}");
    assert_eq!(rounds[0]["kind"], "kill -9");
    assert_eq!(rounds[1]["kind"], "SIGSTOP");
    assert_ne!(
        rounds[1]["stopped"], rounds[0]["stopped"],
        "the second round stops the broker that took over in the first: {stdout}"
    );
    // One progress line per round on stderr.
    assert!(stderr.contains("kill -9 1/1:"), "{stderr}");
    assert!(stderr.contains("SIGSTOP 1/1:"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn failover_without_sibling_binaries_exits_1_with_a_hint() {
    let empty =
        std::env::temp_dir().join(format!("hearth-no-bins-failover-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["bench", "failover", "--rounds", "1"])
        .env("HEARTH_BIN_DIR", &empty)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir(&empty);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found; build them first"));
}

#[test]
fn a_freeze_shorter_than_the_expiry_is_bad_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["bench", "failover", "--freeze", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--freeze"));
}
