//! Raw RFC 7 workers and Lazy Pirate clients for the pair tests: workers tag each reply
//! with the broker they serve, so every reply can be traced to the broker that sent it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{is_command, raw, recv, send};

/// A raw echo worker for one broker: replies `body@tag`, re-registers after DISCONNECT or
/// silence, records every request id it ran.
pub fn tagged_worker(
    endpoint: String,
    tag: &'static str,
    ran: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let ctx = zmq::Context::new();
        while !stop.load(Ordering::Relaxed) {
            let w = raw(&ctx, zmq::DEALER, &endpoint);
            send(&w, &[b"", b"MDPW01", b"\x01", b"echo"]);
            let mut heard = Instant::now();
            let mut beat = Instant::now();
            while !stop.load(Ordering::Relaxed) && heard.elapsed() < Duration::from_secs(1) {
                if beat.elapsed() >= Duration::from_millis(200) {
                    send(&w, &[b"", b"MDPW01", b"\x04"]);
                    beat = Instant::now();
                }
                let Some(f) = recv(&w, Duration::from_millis(50)) else {
                    continue;
                };
                heard = Instant::now();
                if is_command(&f, 0x02) && f.len() >= 6 {
                    ran.lock().unwrap().push(f[5].clone());
                    let mut body = f[5].clone();
                    body.extend_from_slice(format!("@{tag}").as_bytes());
                    send(&w, &[b"", b"MDPW01", b"\x03", &f[3], b"", &body]);
                } else if is_command(&f, 0x05) {
                    break;
                }
            }
        }
    })
}

/// One answered request as a client saw it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub id: String,
    pub tag: String,
    pub at: Instant,
}

/// What a Lazy Pirate client saw.
#[derive(Debug, Default)]
pub struct ClientLog {
    pub sent: u64,
    pub answers: Vec<Answer>,
    pub unanswered: Vec<String>,
    /// The longest time between two answers.
    pub longest_gap: Duration,
}

/// A Lazy Pirate client: sends requests one after another until `stop`; each is retried on
/// the other broker (fresh socket) after `attempt` without an answer, for up to `deadline`.
pub fn lazy_pirate(
    name: &'static str,
    brokers: Vec<String>,
    attempt: Duration,
    deadline: Duration,
    stop: Arc<AtomicBool>,
) -> JoinHandle<ClientLog> {
    std::thread::spawn(move || {
        let ctx = zmq::Context::new();
        let mut log = ClientLog::default();
        let mut target = 0;
        let mut seq = 0u64;
        let mut last_answer = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            seq += 1;
            let id = format!("{name}-{seq}");
            log.sent += 1;
            let started = Instant::now();
            let mut answered = false;
            while started.elapsed() < deadline {
                let s = raw(&ctx, zmq::REQ, &brokers[target]);
                send(&s, &[b"MDPC01", b"echo", id.as_bytes()]);
                if let Some(reply) = recv(&s, attempt) {
                    let body = String::from_utf8_lossy(&reply[2]).into_owned();
                    let (rid, tag) = body.split_once('@').unwrap_or((&body, "?"));
                    assert_eq!(rid, id, "reply for another request");
                    let now = Instant::now();
                    log.longest_gap = log.longest_gap.max(now - last_answer);
                    last_answer = now;
                    log.answers.push(Answer {
                        id: id.clone(),
                        tag: tag.to_owned(),
                        at: now,
                    });
                    answered = true;
                    break;
                }
                target = (target + 1) % brokers.len();
            }
            if !answered {
                log.unanswered.push(id);
            }
        }
        log
    })
}
