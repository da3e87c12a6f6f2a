//! DESIGN.md's request size, to the letter, on the real `hearth-broker` binary with its
//! default limits: "a request ≤ 4 MiB (the frontend's frame limit admits it) ... Each breach
//! is an `{error}`, the broker keeps serving." A `state.set` of exactly 4 MiB is applied and
//! reads back; one byte more, and anything up to the frontend's frame limit (8 MiB), is
//! answered with the state model's `{error}`; a frame over the frame limit is counted as
//! `frame_too_large` and dropped; the broker serves on after each. A frame limit that would
//! not admit a state request at its limit stops the broker at start with exit code 2.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::pair_state::{start_broker, DataDir};
use common::{metric, raw, recv, send, wait_for};
use hearth_supervise::{Launch, Output, Proc, ScratchDir};

/// Generous: a 4 MiB write goes through sled's fsync, on a machine that may be busy.
const T: Duration = Duration::from_secs(15);
/// DESIGN.md's request limit, the default `[state] max_request_bytes`.
const MAX_REQUEST: usize = 4 << 20;
/// The default `max_frame_size` of the frontend.
const MAX_FRAME: usize = 8 << 20;
/// The default limit of one value's Bencode.
const MAX_VALUE: usize = 64 << 10;
/// One key of [`set_body`] in Bencode: `5:k0000`.
const KEY_BYTES: usize = 7;

const TOO_LARGE: &str = "hearth_state_bad_requests_total{reason=\"request_too_large\"}";
const FRAME_TOO_LARGE: &str = "hearth_malformed_messages_total{reason=\"frame_too_large\"}";

#[test]
fn the_defaults_are_the_ones_under_test() {
    let defaults = hearth_broker::BrokerConfig::default();
    assert_eq!(defaults.state.max_request_bytes, MAX_REQUEST);
    assert_eq!(defaults.state.max_value_bytes, MAX_VALUE);
    assert_eq!(defaults.max_frame_size, MAX_FRAME);
    // libzmq takes in frames up to twice the limit, so one just over it is counted.
    assert!(hearth_broker::frontend_hard_cap(MAX_FRAME) >= 2 * MAX_FRAME as i64);
}

/// The entries of a `state.set` body of exactly `size` bytes: keys `k0000`, `k0001`, ...
/// (sorted, as canonical Bencode wants) with byte-string values each within the 64 KiB
/// value limit, as evenly sized as the bytes allow.
fn entries_of(size: usize) -> Vec<(String, Vec<u8>)> {
    let inner = size - 2; // "d" ... "e"
    let count = inner.div_ceil(KEY_BYTES + MAX_VALUE);
    let per = inner / count;
    let extra = inner - per * count;
    (0..count)
        .map(|i| {
            let encoded = per + usize::from(i < extra) - KEY_BYTES;
            // A value of 10,000 to 99,999 bytes encodes as "NNNNN:" and the bytes.
            let len = encoded - 6;
            assert!((10_000..100_000).contains(&len) && encoded <= MAX_VALUE);
            (format!("k{i:04}"), vec![b'a' + (i % 26) as u8; len])
        })
        .collect()
}

fn bytes(s: &[u8]) -> Vec<u8> {
    let mut out = s.len().to_string().into_bytes();
    out.push(b':');
    out.extend_from_slice(s);
    out
}

/// The `state.set` body of these entries.
fn set_body(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut body = b"d".to_vec();
    for (key, value) in entries {
        body.extend(bytes(key.as_bytes()));
        body.extend(bytes(value));
    }
    body.push(b'e');
    body
}

/// The `state.get` reply for these entries, written by one set into an empty model (so the
/// n keys took seqs 1 to n in key order).
fn get_reply(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut reply = b"d".to_vec();
    for (seq, (key, value)) in (1..).zip(entries) {
        reply.extend(bytes(key.as_bytes()));
        reply.extend(format!("d3:seqi{seq}e5:value").into_bytes());
        reply.extend(bytes(value));
        reply.push(b'e');
    }
    reply.push(b'e');
    reply
}

/// The state model's refusal of a body of `size` bytes, as request.rs words it.
fn too_large_reply(size: usize) -> Vec<u8> {
    let text = format!("the request is {size} bytes, the limit is {MAX_REQUEST}");
    let mut reply = b"d5:error".to_vec();
    reply.extend(bytes(text.as_bytes()));
    reply.push(b'e');
    reply
}

/// Sends one request on `client` and returns the body of the next message it receives,
/// which must be the reply to it.
fn call(client: &zmq::Socket, service: &str, body: &[&[u8]]) -> Vec<u8> {
    let mut frames: Vec<&[u8]> = vec![b"", b"MDPC01", service.as_bytes()];
    frames.extend_from_slice(body);
    send(client, &frames);
    let reply = recv(client, T).unwrap_or_else(|| panic!("no reply to {service}"));
    assert_eq!(reply.len(), 4, "one reply body frame");
    assert_eq!(reply[1], b"MDPC01");
    assert_eq!(reply[2], service.as_bytes());
    reply[3].clone()
}

/// Compares large byte strings without printing megabytes on a failure.
fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    if got != want {
        let at = got.iter().zip(want).take_while(|(a, b)| a == b).count();
        let shown = |b: &[u8]| String::from_utf8_lossy(&b[at..b.len().min(at + 80)]).into_owned();
        panic!(
            "{what}: {} bytes, expected {}; they differ at byte {at}: {:?} against {:?}",
            got.len(),
            want.len(),
            shown(got),
            shown(want)
        );
    }
}

fn count(metrics: SocketAddr, series: &str) -> f64 {
    metric(metrics, series)
}

#[test]
fn a_4_mib_state_request_is_taken_and_up_to_the_frame_limit_refused_with_an_error() {
    let dir = DataDir::new("sizes-4mib");
    let broker = start_broker(&["--data-dir".into(), dir.arg()]);
    let ctx = zmq::Context::new();
    let client = raw(&ctx, zmq::DEALER, &broker.frontend);

    // Exactly the limit, with a write id as hearth_client sends: applied, all 64 keys.
    let at_limit = entries_of(MAX_REQUEST);
    let body = set_body(&at_limit);
    assert_eq!(body.len(), MAX_REQUEST);
    let seq = at_limit.len();
    let reply = call(&client, "state.set", &[&body, b"write-4mib"]);
    assert_same("set of 4 MiB", &reply, format!("d3:seqi{seq}ee").as_bytes());
    // The same write again is answered from its write id, and applied once.
    let reply = call(&client, "state.set", &[&body, b"write-4mib"]);
    assert_same("the retry", &reply, format!("d3:seqi{seq}ee").as_bytes());
    let everything = get_reply(&at_limit);
    let reply = call(&client, "state.get", &[b"le"]);
    assert_same("read back", &reply, &everything);

    // One byte over, a well-formed body otherwise: the state model's {error}.
    let over = set_body(&entries_of(MAX_REQUEST + 1));
    assert_eq!(over.len(), MAX_REQUEST + 1);
    let reply = call(&client, "state.set", &[&over]);
    assert_same("4 MiB + 1", &reply, &too_large_reply(MAX_REQUEST + 1));
    // With a write id, too (the id is never looked at for a body over the limit).
    let reply = call(&client, "state.set", &[&over, b"write-over"]);
    assert_same(
        "4 MiB + 1 with an id",
        &reply,
        &too_large_reply(MAX_REQUEST + 1),
    );
    // Anything up to the frame limit reaches the state model, whatever it holds.
    for service in ["state.set", "state.get", "state.del"] {
        let reply = call(&client, service, &[&vec![b'x'; MAX_FRAME]]);
        assert_same(service, &reply, &too_large_reply(MAX_FRAME));
    }

    // Nothing changed, nothing was dropped as malformed, and the broker serves on.
    assert_eq!(count(broker.metrics, TOO_LARGE), 5.0);
    assert_eq!(count(broker.metrics, FRAME_TOO_LARGE), 0.0);
    let reply = call(&client, "state.get", &[b"le"]);
    assert_same("read back after the refusals", &reply, &everything);
    let reply = call(&client, "state.set", &[b"d4:zzzzi1ee"]);
    assert_same(
        "a small write",
        &reply,
        format!("d3:seqi{}ee", seq + 1).as_bytes(),
    );
}

#[test]
fn a_frame_over_the_limit_is_counted_and_dropped_and_the_broker_serves_on() {
    let broker = start_broker(&[]);
    let ctx = zmq::Context::new();
    let client = raw(&ctx, zmq::DEALER, &broker.frontend);
    let oversized = vec![b'x'; MAX_FRAME + 1];
    send(&client, &[b"", b"MDPC01", b"state.set", &oversized]);
    wait_for(
        "the frame to be counted as frame_too_large",
        T,
        || match count(broker.metrics, FRAME_TOO_LARGE) {
            v if v >= 1.0 => Ok(v),
            v => Err(v),
        },
    );
    // The next message on the same connection is the reply to the next request: the
    // oversized one was never answered, and the broker still serves this connection.
    let reply = call(&client, "state.set", &[b"d1:ai1ee"]);
    assert_same("a write after the dropped frame", &reply, b"d3:seqi1ee");
    let reply = call(&client, "state.get", &[b"le"]);
    assert_same("read back", &reply, b"d1:ad3:seqi1e5:valuei1eee");
    assert_eq!(count(broker.metrics, FRAME_TOO_LARGE), 1.0);
    assert_eq!(count(broker.metrics, TOO_LARGE), 0.0);
    // And a request at the limit still passes after it.
    let body = set_body(&entries_of(MAX_REQUEST));
    let reply = call(&client, "state.set", &[&body]);
    assert_same("set of 4 MiB", &reply, b"d3:seqi65ee");
}

/// Runs `hearth-broker` with `args` until it exits, within the deadline (killed on drop if
/// it does not): its exit code and what it wrote.
fn broker_exit(args: &[String], logs: &Path) -> (Option<i32>, String) {
    let mut proc = Proc::spawn(
        "hearth-broker",
        Path::new(env!("CARGO_BIN_EXE_hearth-broker")),
        args,
        &Launch::harness(Output::Dir(logs.to_path_buf())),
    )
    .expect("spawn hearth-broker");
    let status = wait_for("hearth-broker to exit", T, || match proc.exit_status() {
        Some(status) => Ok(status),
        None => Err("still running"),
    });
    let log = proc
        .log_path()
        .map(|path| std::fs::read_to_string(path).unwrap_or_default())
        .unwrap_or_default();
    (status.code(), log)
}

#[test]
fn a_frame_limit_that_does_not_exceed_the_request_limit_is_refused_at_start() {
    let scratch = ScratchDir::new("hearth-sizes-config").expect("a scratch dir");
    let frontend = ["--frontend".to_owned(), "tcp://127.0.0.1:*".to_owned()];
    let refused = |extra: &[&str], size: usize, request: usize| {
        let mut args: Vec<String> = frontend.to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        let (code, log) = broker_exit(&args, scratch.path());
        assert_eq!(code, Some(2), "{extra:?}: {log}");
        let expected = format!(
            "invalid configuration: max_frame_size ({size}) must be more than [state] \
             max_request_bytes ({request})"
        );
        assert!(log.contains(&expected), "{extra:?}: {log}");
        assert!(
            log.contains("raise max_frame_size (default 8388608)"),
            "{log}"
        );
        assert!(!log.contains("panicked"), "{log}");
    };
    // The flag: equal to the request limit is not enough.
    refused(&["--max-frame-size", "4194304"], MAX_REQUEST, MAX_REQUEST);
    // An older configuration file with the former 1 MiB default.
    let old = scratch.of("old.toml");
    std::fs::write(&old, "max_frame_size = 1048576\n").expect("write a config");
    refused(
        &["--config", &old.display().to_string()],
        1 << 20,
        MAX_REQUEST,
    );
    // A request limit raised past the default frame limit.
    let raised = scratch.of("raised.toml");
    std::fs::write(&raised, "[state]\nmax_request_bytes = 16777216\n").expect("write a config");
    refused(
        &["--config", &raised.display().to_string()],
        MAX_FRAME,
        16 << 20,
    );
}
