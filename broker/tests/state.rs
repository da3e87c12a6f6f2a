//! The state services of a standalone broker over real sockets, byte for byte as DESIGN.md
//! fixes them: get/set/del, write ids, refusals, TTL expiry, the change feed, and a restart
//! from the data dir.

mod common;

use common::pair_state::DataDir;
use std::time::Duration;

use common::*;
use hearth_broker::BrokerHandle;

const T: Duration = Duration::from_secs(5);

/// One request, one reply body frame (the reply must name the service).
fn call(ctx: &zmq::Context, broker: &BrokerHandle, service: &str, body: &[&[u8]]) -> Vec<u8> {
    let client = raw(ctx, zmq::DEALER, broker.frontend());
    let mut frames: Vec<&[u8]> = vec![b"", b"MDPC01", service.as_bytes()];
    frames.extend_from_slice(body);
    send(&client, &frames);
    let reply = recv(&client, T).unwrap_or_else(|| panic!("no reply to {service}"));
    assert_eq!(reply.len(), 4, "one body frame: {reply:?}");
    assert_eq!(reply[1], b"MDPC01");
    assert_eq!(reply[2], service.as_bytes());
    reply[3].clone()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn set_get_del_are_exact_and_seqs_follow_the_design() {
    let dir = DataDir::new("exact");
    let broker = start_broker(|c| c.data_dir = Some(dir.0.clone()));
    let ctx = zmq::Context::new();
    // Two keys take two seqs; the reply carries the last.
    let reply = call(
        &ctx,
        &broker,
        "state.set",
        &[b"d10:hall/lighti1e12:kitchen/tempi215ee"],
    );
    assert_eq!(text(&reply), "d3:seqi2ee");
    let reply = call(&ctx, &broker, "state.get", &[b"l12:kitchen/temp7:missinge"]);
    assert_eq!(text(&reply), "d12:kitchen/tempd3:seqi2e5:valuei215eee");
    let reply = call(&ctx, &broker, "state.get", &[b"le"]);
    assert_eq!(
        text(&reply),
        "d10:hall/lightd3:seqi1e5:valuei1ee12:kitchen/tempd3:seqi2e5:valuei215eee"
    );
    // Deleting an absent key takes no seq.
    let reply = call(&ctx, &broker, "state.del", &[b"l7:missinge"]);
    assert_eq!(text(&reply), "d3:seqi2ee");
    let reply = call(&ctx, &broker, "state.del", &[b"l10:hall/light7:missinge"]);
    assert_eq!(text(&reply), "d3:seqi3ee");
    assert!(!broker.registry().gather().is_empty());
    wait_for("status shows seq 3", T, || {
        let status = broker.status();
        if status.state_seq == 3 && status.state_keys == 1 {
            Ok(())
        } else {
            Err((status.state_seq, status.state_keys))
        }
    });
}

#[test]
fn a_write_id_applies_once_and_refusals_change_nothing() {
    let broker = start_broker(|_| {});
    let ctx = zmq::Context::new();
    let body: &[u8] = b"d1:ai1ee";
    assert_eq!(
        text(&call(&ctx, &broker, "state.set", &[body, b"w-1"])),
        "d3:seqi1ee"
    );
    assert_eq!(
        text(&call(&ctx, &broker, "state.set", &[body, b"w-1"])),
        "d3:seqi1ee"
    );
    let reused = call(&ctx, &broker, "state.set", &[b"d1:ai2ee", b"w-1"]);
    assert!(text(&reused).starts_with("d5:error"), "{}", text(&reused));
    for bad in [
        &b"not bencode"[..],
        b"de",
        b"d1:ai01ee",
        b"li1ee",
        b"d1:ad5:valuei1e3:ttli1eee",
    ] {
        let reply = call(&ctx, &broker, "state.set", &[bad]);
        assert!(
            text(&reply).starts_with("d5:error"),
            "{bad:?}: {}",
            text(&reply)
        );
    }
    let reply = call(&ctx, &broker, "state.get", &[b"le"]);
    assert_eq!(text(&reply), "d1:ad3:seqi1e5:valuei1eee");
    let reply = call(&ctx, &broker, "state.nope", &[b"le"]);
    assert!(text(&reply).starts_with("d5:error"), "{}", text(&reply));
    let http = broker.metrics_addr().expect("metrics");
    assert!(
        metric(
            http,
            "hearth_state_bad_requests_total{reason=\"not_bencode\"}"
        ) >= 1.0
    );
}

#[test]
fn entries_with_a_ttl_expire_as_changes_with_their_own_seq() {
    let broker = start_broker(|_| {});
    let ctx = zmq::Context::new();
    let reply = call(
        &ctx,
        &broker,
        "state.set",
        &[b"d11:hall/motiond6:ttl_msi150e5:valuei1eee"],
    );
    assert_eq!(text(&reply), "d3:seqi1ee");
    wait_for("the entry expires", T, || {
        let reply = call(&ctx, &broker, "state.get", &[b"le"]);
        if reply == b"de" {
            Ok(())
        } else {
            Err(text(&reply))
        }
    });
    // The expiry took seq 2: the next write takes 3.
    assert_eq!(
        text(&call(&ctx, &broker, "state.set", &[b"d1:ai1ee"])),
        "d3:seqi3ee"
    );
}

#[test]
fn a_restarted_broker_answers_from_its_data_dir() {
    let dir = DataDir::new("restart");
    let broker = start_broker(|c| c.data_dir = Some(dir.0.clone()));
    let ctx = zmq::Context::new();
    call(
        &ctx,
        &broker,
        "state.set",
        &[b"d12:kitchen/tempi215ee", b"id-1"],
    );
    call(&ctx, &broker, "state.set", &[b"d10:hall/lighti1ee"]);
    call(&ctx, &broker, "state.del", &[b"l10:hall/lighte"]);
    broker.shutdown().expect("clean stop");
    let broker = start_broker(|c| c.data_dir = Some(dir.0.clone()));
    let reply = call(&ctx, &broker, "state.get", &[b"le"]);
    assert_eq!(text(&reply), "d12:kitchen/tempd3:seqi1e5:valuei215eee");
    // The write id survived the restart too.
    let again = call(
        &ctx,
        &broker,
        "state.set",
        &[b"d12:kitchen/tempi215ee", b"id-1"],
    );
    assert_eq!(text(&again), "d3:seqi1ee");
    assert_eq!(
        text(&call(&ctx, &broker, "state.set", &[b"d1:ai1ee"])),
        "d3:seqi4ee"
    );
}

#[test]
fn a_locked_data_dir_is_a_clear_error() {
    let dir = DataDir::new("locked");
    let _first = start_broker(|c| c.data_dir = Some(dir.0.clone()));
    let config = hearth_broker::BrokerConfig {
        frontend: "tcp://127.0.0.1:*".into(),
        data_dir: Some(dir.0.clone()),
        ..hearth_broker::BrokerConfig::default()
    };
    let err = hearth_broker::spawn(config)
        .err()
        .expect("the second broker fails");
    let text = err.to_string();
    assert!(text.contains(&dir.0.display().to_string()), "{text}");
}

#[test]
fn the_feed_publishes_each_committed_change() {
    let port = free_port();
    let broker = start_broker(|c| c.publish = Some(format!("tcp://127.0.0.1:{port}")));
    let ctx = zmq::Context::new();
    let sub = ctx.socket(zmq::SUB).expect("sub");
    sub.set_subscribe(b"kitchen/").expect("subscribe");
    sub.connect(&format!("tcp://127.0.0.1:{port}"))
        .expect("connect");
    // A slow joiner misses what is sent before its subscription is in place: write until
    // the first update arrives, then check the ones after it.
    let first = wait_for("the subscription to take", T, || {
        call(&ctx, &broker, "state.set", &[b"d12:kitchen/tempi1ee"]);
        recv(&sub, Duration::from_millis(50)).ok_or(())
    });
    assert_eq!(first[0], b"kitchen/temp");
    let seq: u64 = text(&first[1]).parse().expect("decimal seq");
    call(
        &ctx,
        &broker,
        "state.set",
        &[b"d10:hall/lighti1e12:kitchen/tempi2ee"],
    );
    call(&ctx, &broker, "state.del", &[b"l12:kitchen/tempe"]);
    let mut seen = Vec::new();
    while let Some(frames) = recv(&sub, Duration::from_millis(300)) {
        seen.push(frames);
    }
    // Any further "i1e" sets from the wait loop come first; then the two changes.
    let tail: Vec<_> = seen.iter().rev().take(2).rev().cloned().collect();
    assert_eq!(tail[0][2], b"i2e");
    assert_eq!(tail[1][2], b"", "a delete publishes an empty value");
    let last: u64 = text(&tail[1][1]).parse().expect("seq");
    let before: u64 = text(&tail[0][1]).parse().expect("seq");
    assert_eq!(last, before + 1);
    assert!(before > seq);
}

/// Runs `hearth-broker` with `args` until it exits (it must, within the deadline): its exit
/// code and stderr.
fn broker_exit(args: &[&str]) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hearth-broker"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn hearth-broker");
    let status = wait_for("hearth-broker to exit", T, || match child.try_wait() {
        Ok(Some(status)) => Ok(status),
        other => Err(format!("{other:?}")),
    });
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut stderr);
    }
    (status.code(), stderr)
}

#[test]
fn a_damaged_or_foreign_data_dir_stops_the_binary_with_exit_code_1() {
    // Written by a broker, then damaged: sled's files overwritten with garbage.
    let damaged = DataDir::new("damaged");
    let broker = start_broker(|c| c.data_dir = Some(damaged.0.clone()));
    let ctx = zmq::Context::new();
    call(&ctx, &broker, "state.set", &[b"d1:ai1ee"]);
    broker.shutdown().expect("clean stop");
    let sled_dir = damaged.0.join("state.sled");
    let mut damaged_any = false;
    for entry in std::fs::read_dir(&sled_dir).expect("sled's dir").flatten() {
        let path = entry.path();
        if path.is_file() {
            let len = std::fs::metadata(&path)
                .map(|m| m.len())
                .unwrap_or(0)
                .max(64);
            std::fs::write(&path, vec![0xA5u8; len as usize]).expect("damage");
            damaged_any = true;
        }
    }
    assert!(damaged_any, "sled wrote files in {}", sled_dir.display());
    // A directory full of somebody else's files.
    let foreign = DataDir::new("foreign");
    std::fs::create_dir_all(&foreign.0).expect("dir");
    std::fs::write(foreign.0.join("photos.db"), b"not hearth's").expect("file");
    for dir in [&damaged, &foreign] {
        let path = dir.0.display().to_string();
        let (code, stderr) = broker_exit(&["--frontend", "tcp://127.0.0.1:*", "--data-dir", &path]);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.contains(&path),
            "the message names the dir: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // Nothing was reset: the damaged files are still there as they were left.
    assert!(sled_dir.exists());
}
