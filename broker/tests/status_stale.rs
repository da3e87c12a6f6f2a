//! A frozen active resumed beside the peer that took over must never say it is active: not
//! in `/status`, not in `hearth_bstar_state`, not even in the moment after SIGCONT before
//! its reactor has run (the HTTP side would otherwise serve the board published before
//! the freeze). Real `hearth-broker` processes; the resumed broker's `/status` and
//! `/metrics` are asked by several threads whose requests are already waiting when it
//! resumes, then as fast as they are answered.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::procs::{pair_args, BrokerProc};
use common::*;

const T: Duration = Duration::from_secs(15);
const PEER_HB: u64 = 200;

/// One answer of the resumed broker.
#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    path: &'static str,
    /// What it says its Binary Star state is: `/status` `state`, or the state whose
    /// `hearth_bstar_state` is 1 (`none` if none is).
    state: String,
    stale: Option<bool>,
}

/// The state `/metrics` says is current, and whether it says the board is stale.
fn metrics_state(body: &str) -> (String, Option<bool>) {
    let state = ["primary", "backup", "active", "passive"]
        .into_iter()
        .find(|s| body.contains(&format!("hearth_bstar_state{{state=\"{s}\"}} 1")))
        .unwrap_or("none");
    let stale = body
        .lines()
        .find_map(|l| l.strip_prefix("hearth_status_stale "))
        .map(|v| v.trim() == "1");
    (state.to_owned(), stale)
}

/// Threads asking `broker`'s `/status` and `/metrics` over and over until `stop`.
fn pollers(
    metrics: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
) -> Vec<JoinHandle<()>> {
    (0..4)
        .map(|i| {
            let (stop, samples) = (stop.clone(), samples.clone());
            let path = if i % 2 == 0 { "/status" } else { "/metrics" };
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some((200, body)) = try_http_get(metrics, path) else {
                        continue;
                    };
                    let (state, stale) = if path == "/status" {
                        let json: serde_json::Value =
                            serde_json::from_str(&body).expect("/status is JSON");
                        (
                            json["state"].as_str().unwrap_or("?").to_owned(),
                            json["stale"].as_bool(),
                        )
                    } else {
                        metrics_state(&body)
                    };
                    samples.lock().unwrap().push(Sample {
                        at: Instant::now(),
                        path,
                        state,
                        stale,
                    });
                }
            })
        })
        .collect()
}

/// A client sending a request to `endpoint` every 20 ms until `stop`, so that a passive
/// takes over as soon as its peer has expired.
fn prodder(endpoint: String, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let ctx = zmq::Context::new();
        let client = raw(&ctx, zmq::DEALER, &endpoint);
        while !stop.load(Ordering::Relaxed) {
            send(&client, &[b"", b"MDPC01", b"echo", b"ping"]);
            while recv(&client, Duration::from_millis(20)).is_some() {}
        }
    })
}

/// Freezes `frozen` (the active), lets `other` take over, resumes `frozen` with its HTTP
/// side already being asked, and checks every answer until it says passive.
fn freeze_and_resume(frozen: &BrokerProc, other: &BrokerProc, what: &str) {
    // The peer may take over only once it is in sync (the restart rule).
    wait_for(&format!("the peer of {what} in sync"), T, || {
        let status = other.status().ok_or(None)?;
        if status["state"] == "passive" && status["paired"] == true {
            Ok(())
        } else {
            Err(Some(status))
        }
    });
    let stop_prodding = Arc::new(AtomicBool::new(false));
    let prodder = prodder(other.frontend.clone(), stop_prodding.clone());
    let step_downs = metric(other.metrics, "hearth_split_brain_total");
    frozen.signal(libc::SIGSTOP);
    other.wait_state("active", T);
    // Frozen a while longer, as an operator's SIGCONT would come.
    std::thread::sleep(Duration::from_millis(3 * PEER_HB));
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let threads = pollers(frozen.metrics, stop.clone(), samples.clone());
    // Let the pollers' first requests reach the frozen broker's listen queue.
    std::thread::sleep(Duration::from_millis(100));
    let resumed_at = Instant::now();
    frozen.signal(libc::SIGCONT);
    wait_for(&format!("{what} passive again"), T, || {
        let seen = samples.lock().unwrap();
        let passive = |path| seen.iter().any(|s| s.path == path && s.state == "passive");
        if passive("/status") && passive("/metrics") {
            Ok(())
        } else {
            Err(seen.len())
        }
    });
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("poller");
    }
    stop_prodding.store(true, Ordering::Relaxed);
    prodder.join().expect("prodder");
    // The peer stayed active throughout: it took over and never stepped down.
    assert_eq!(other.state().as_deref(), Some("active"), "{what}: the peer");
    assert_eq!(
        metric(other.metrics, "hearth_split_brain_total"),
        step_downs,
        "{what}: the peer stepped down"
    );
    let samples = samples.lock().unwrap().clone();
    let first = samples.iter().map(|s| s.at).min().expect("samples");
    let active: Vec<_> = samples.iter().filter(|s| s.state == "active").collect();
    let stale = samples.iter().filter(|s| s.stale == Some(true)).count();
    println!(
        "{what}: {} answers in the {:?} after SIGCONT (first after {:?}), {stale} of them stale",
        samples.len(),
        samples.iter().map(|s| s.at).max().unwrap_or(first) - resumed_at,
        first - resumed_at,
    );
    assert!(
        active.is_empty(),
        "{what} said active after it was resumed beside the active peer: {active:?}"
    );
    for s in &samples {
        assert_eq!(
            s.stale,
            Some(!matches!(
                s.state.as_str(),
                "passive" | "active" | "primary" | "backup"
            )),
            "a stale answer claims no state, a fresh one does: {s:?}"
        );
    }
    // Stale no more once it has stepped down.
    assert_eq!(metric(frozen.metrics, "hearth_status_stale"), 0.0);
    assert_eq!(frozen.state().as_deref(), Some("passive"));
    assert_eq!(
        try_http_get(frozen.metrics, "/healthz").map(|r| r.0),
        Some(200)
    );
}

#[test]
fn a_resumed_active_never_says_active_beside_the_peer_that_took_over() {
    let (pp, bp) = (free_port(), free_port());
    let primary = BrokerProc::start(&pair_args("primary", pp, bp, PEER_HB));
    let backup = BrokerProc::start(&pair_args("backup", bp, pp, PEER_HB));
    primary.wait_state("active", T);
    backup.wait_state("passive", T);
    freeze_and_resume(&primary, &backup, "the primary");
    // And the other way round, now that the backup is the active.
    freeze_and_resume(&backup, &primary, "the backup");
}

#[test]
fn a_frozen_brokers_http_side_says_stale_until_its_reactor_runs() {
    // A standalone broker frozen, then resumed: /healthz and /status answer at once on
    // resumption, and what they answer before the reactor ran is marked stale.
    let broker = BrokerProc::start(&["--heartbeat".into(), "100ms".into()]);
    broker.wait_state("active", T);
    assert_eq!(metric(broker.metrics, "hearth_status_stale"), 0.0);
    let (code, _) = http_get(broker.metrics, "/healthz");
    assert_eq!(code, 200);
    broker.signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(600));
    // The HTTP thread is frozen too: run its request across the resumption.
    let metrics = broker.metrics;
    let asked = std::thread::spawn(move || try_http_get(metrics, "/healthz"));
    std::thread::sleep(Duration::from_millis(50));
    broker.signal(libc::SIGCONT);
    let answer = asked.join().expect("healthz");
    println!("/healthz across SIGCONT: {answer:?}");
    assert!(
        answer.as_ref().is_some_and(|(code, body)| match code {
            200 => body == "ok\n",
            503 => body.starts_with("stale: "),
            _ => false,
        }),
        "{answer:?}"
    );
    wait_for("fresh again", T, || {
        let status = broker.status().ok_or(None)?;
        if status["stale"] == false && status["state"] == "active" {
            Ok(())
        } else {
            Err(Some(status))
        }
    });
    assert_eq!(http_get(broker.metrics, "/healthz").0, 200);
}
