//! DESIGN.md's 4 MiB state request from the client side, with the library's default limits:
//! a `state.set` of exactly 4 MiB goes out and its reply, and the model read back, come in;
//! one byte more reaches the broker and comes back as its `{error}`; a body over the frame
//! limit is refused before it is sent. `hearth state get` reads the 4 MiB model too.

use std::process::{Command, Stdio};
use std::time::Duration;

use hearth_broker::BrokerConfig;
use hearth_client::state::{encode_set, Value, Write};
use hearth_client::{Client, ClientConfig, ClientError};
use hearth_proto::{Limits, DEFAULT_MAX_FRAME_SIZE};

/// DESIGN.md's request limit (the broker's default `[state] max_request_bytes`).
const MAX_REQUEST: usize = 4 << 20;
/// One value's Bencode at most (the `{value}` wrapper not counted).
const MAX_VALUE: usize = 64 << 10;
/// One entry's bytes besides its value: `5:k0000`, `d5:value` and `e`.
const ENTRY_BYTES: usize = 7 + 8 + 1;

/// Entries whose `state.set` body, as the library encodes it, is exactly `size` bytes:
/// keys `k0000`, `k0001`, ... with byte-string values within the value limit.
fn entries_of(size: usize) -> Vec<(String, Write)> {
    let inner = size - 2; // "d" ... "e"
    let count = inner.div_ceil(ENTRY_BYTES + MAX_VALUE);
    let per = inner / count;
    let extra = inner - per * count;
    let entries: Vec<(String, Write)> = (0..count)
        .map(|i| {
            let encoded = per + usize::from(i < extra) - ENTRY_BYTES;
            // A value of 10,000 to 99,999 bytes encodes as "NNNNN:" and the bytes.
            let len = encoded - 6;
            assert!((10_000..100_000).contains(&len) && encoded <= MAX_VALUE);
            let value = Value::Bytes(vec![b'a' + (i % 26) as u8; len]);
            (format!("k{i:04}"), Write::new(value))
        })
        .collect();
    assert_eq!(encode_set(&entries).expect("encode").len(), size);
    entries
}

#[test]
fn the_default_client_sends_a_4_mib_state_request_and_reads_the_model_back() {
    let broker = hearth_broker::spawn(BrokerConfig {
        frontend: "tcp://127.0.0.1:*".into(),
        heartbeat: Duration::from_millis(100),
        ..BrokerConfig::default()
    })
    .expect("broker starts");
    let mut config = ClientConfig::new([broker.frontend()]);
    // The default limits, only more patience: a 4 MiB write on a busy machine.
    assert_eq!(config.limits, Limits::default());
    assert_eq!(config.limits.max_frame_size, DEFAULT_MAX_FRAME_SIZE);
    config.timeout = Duration::from_secs(20);
    config.attempt_timeout = Duration::from_secs(10);
    let mut client = Client::new(config).expect("client");

    let entries = entries_of(MAX_REQUEST);
    let seq = client.state().set(entries.clone()).expect("a 4 MiB set");
    assert_eq!(seq, entries.len() as u64);
    let model = client.state().get(&[]).expect("the whole model back");
    assert_eq!(model.len(), entries.len());
    for ((key, write), ((read_key, entry), seq)) in entries.iter().zip(model.iter().zip(1..)) {
        assert_eq!(key, read_key);
        assert_eq!(entry.seq, seq, "{key}");
        assert!(
            entry.value == write.value,
            "{key}: the value read back differs"
        );
    }

    // One byte over: the broker's words, and nothing changed.
    let over = entries_of(MAX_REQUEST + 1);
    let err = client.state().set(over).unwrap_err();
    assert!(
        matches!(&err, ClientError::Refused(t)
            if t == "the request is 4194305 bytes, the limit is 4194304"),
        "{err:?}"
    );
    // Over the frame limit: refused before it is sent.
    let huge = vec![(
        "k".to_owned(),
        Write::new(Value::Bytes(vec![b'x'; DEFAULT_MAX_FRAME_SIZE])),
    )];
    let err = client.state().set(huge).unwrap_err();
    assert!(
        matches!(&err, ClientError::InvalidRequest(t) if t.contains("(limit 8388608)")),
        "{err:?}"
    );
    let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
    let again = client.state().get(&keys).expect("read again");
    assert!(again == model, "the refusals changed the model");

    // The CLI reads the same 4 MiB model.
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["--broker", broker.frontend(), "--timeout", "20s"])
        .args(["state", "get", "--json"])
        .stdin(Stdio::null())
        .output()
        .expect("run hearth");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let object = json.as_object().expect("an object of keys");
    assert_eq!(object.len(), entries.len());
    assert_eq!(object["k0063"]["seq"], 64);
}
