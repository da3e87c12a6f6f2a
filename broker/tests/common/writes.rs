//! A Lazy Pirate writer of the state model for the pair tests: each write carries a write
//! id and is retried, with the same id, on the other broker until answered; every answer
//! is logged with its seq, so a test can check that each acknowledged write survived.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{raw, recv, send};

/// What a writer did.
#[derive(Debug, Default)]
pub struct WriteLog {
    /// Writes sent (each once, however often retried).
    pub sent: u64,
    /// Acknowledged writes: key -> (value, seq of the reply).
    pub acked: BTreeMap<String, (i64, u64)>,
    /// Writes never answered within their deadline.
    pub unanswered: Vec<String>,
    /// Refusals (`{error}` replies), with their text.
    pub refused: Vec<String>,
}

/// Parses `d3:seqi<N>ee`.
pub fn reply_seq(body: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(body).ok()?;
    text.strip_prefix("d3:seqi")?
        .strip_suffix("ee")?
        .parse()
        .ok()
}

/// One state request with Lazy Pirate retries across `brokers`: the reply body, if any
/// came within `deadline`.
pub fn state_call(
    ctx: &zmq::Context,
    brokers: &[String],
    target: &mut usize,
    service: &str,
    frames: &[&[u8]],
    attempt: Duration,
    deadline: Duration,
) -> Option<Vec<u8>> {
    let started = Instant::now();
    while started.elapsed() < deadline {
        let s = raw(ctx, zmq::REQ, &brokers[*target]);
        let mut all: Vec<&[u8]> = vec![b"MDPC01", service.as_bytes()];
        all.extend_from_slice(frames);
        send(&s, &all);
        if let Some(reply) = recv(&s, attempt) {
            return reply.get(2).cloned();
        }
        *target = (*target + 1) % brokers.len();
    }
    None
}

/// Writes `{prefix}/{i} = i` for i = 1, 2, ... until `stop` (or `limit` writes), one at a
/// time, each with its own write id.
pub fn writer(
    prefix: &'static str,
    brokers: Vec<String>,
    limit: u64,
    stop: Arc<AtomicBool>,
) -> JoinHandle<WriteLog> {
    std::thread::spawn(move || {
        let ctx = zmq::Context::new();
        let mut log = WriteLog::default();
        let mut target = 0;
        for i in 1..=limit {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let key = format!("{prefix}/{i}");
            let body = format!("d{}:{key}i{i}ee", key.len());
            let id = format!("{prefix}-{i}-{}", std::process::id());
            log.sent += 1;
            let reply = state_call(
                &ctx,
                &brokers,
                &mut target,
                "state.set",
                &[body.as_bytes(), id.as_bytes()],
                Duration::from_millis(500),
                Duration::from_secs(20),
            );
            match reply {
                Some(body) => match reply_seq(&body) {
                    Some(seq) => {
                        log.acked.insert(key, (i as i64, seq));
                    }
                    None => log
                        .refused
                        .push(String::from_utf8_lossy(&body).into_owned()),
                },
                None => log.unanswered.push(key),
            }
        }
        log
    })
}

/// Every key of the model as (value as an integer, seq), read from whichever broker
/// answers.
pub fn read_all(brokers: &[String]) -> BTreeMap<String, (i64, u64)> {
    let ctx = zmq::Context::new();
    let mut target = 0;
    let body = state_call(
        &ctx,
        brokers,
        &mut target,
        "state.get",
        &[b"le"],
        Duration::from_millis(500),
        Duration::from_secs(20),
    )
    .expect("state.get answered");
    parse_get_reply(&body)
}

/// Reads a `state.get` reply whose values are all integers.
pub fn parse_get_reply(body: &[u8]) -> BTreeMap<String, (i64, u64)> {
    use bendy::decoding::{Decoder, FromBencode};
    let mut decoder = Decoder::new(body).with_max_depth(8);
    let object = decoder
        .next_object()
        .ok()
        .flatten()
        .expect("a Bencode reply");
    let value = bendy::value::Value::decode_bencode_object(object)
        .unwrap_or_else(|e| panic!("a Bencode reply: {e}"));
    let bendy::value::Value::Dict(map) = value else {
        panic!("a dict reply")
    };
    let mut out = BTreeMap::new();
    for (key, entry) in map {
        let bendy::value::Value::Dict(entry) = entry else {
            panic!("an entry dict")
        };
        let int = |name: &[u8]| match entry.get(name) {
            Some(bendy::value::Value::Integer(n)) => *n,
            other => panic!("{name:?}: {other:?}"),
        };
        out.insert(
            String::from_utf8_lossy(&key).into_owned(),
            (int(b"value"), int(b"seq") as u64),
        );
    }
    out
}

/// Checks every acknowledged write against what the model holds now: each key written once
/// must hold its value with the seq its reply carried. Returns the number missing.
pub fn missing(log: &WriteLog, found: &BTreeMap<String, (i64, u64)>) -> Vec<String> {
    log.acked
        .iter()
        .filter(|(key, acked)| found.get(*key) != Some(acked))
        .map(|(key, acked)| format!("{key}: acked {acked:?}, found {:?}", found.get(key)))
        .collect()
}
