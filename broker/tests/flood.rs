//! A flood of requests for service names nobody serves, against the real `hearth-broker`:
//! what waits stays within `--max-waiting-per-service` and `--max-waiting` (watched on
//! `/metrics` throughout), the rest is dropped and counted by reason, a real service is
//! answered all along, and once the waiting requests have expired the invented names are
//! forgotten with their series.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::load::tagged_worker;
use common::procs::BrokerProc;
use common::*;

const T: Duration = Duration::from_secs(30);

/// Requests in the flood: `NAMES` invented names, `PER_NAME` requests each, in a row.
const NAMES: usize = 4000;
const PER_NAME: usize = 5;
const PER_SERVICE_CAP: usize = 3;
const WAITING_CAP: usize = 300;

/// `hearth_queue_depth` per service, from one exposition.
fn queue_depths(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("hearth_queue_depth{service=\"")?;
            let (service, value) = rest.split_once("\"} ")?;
            Some((service.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The largest queue of one invented name and the most waiting for them in all, seen on
/// `/metrics` until `stop`.
fn watch_queues(
    metrics: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
) -> JoinHandle<(f64, f64, usize)> {
    std::thread::spawn(move || {
        let (mut one, mut all, mut scrapes) = (0f64, 0f64, 0);
        while !stop.load(Ordering::Relaxed) {
            let Some((200, text)) = try_http_get(metrics, "/metrics") else {
                continue;
            };
            let depths = queue_depths(&text);
            let invented = depths
                .iter()
                .filter(|(name, _)| name.starts_with("invented-"));
            one = invented.clone().map(|(_, d)| *d).fold(one, f64::max);
            all = all.max(invented.map(|(_, d)| *d).sum());
            scrapes += 1;
        }
        (one, all, scrapes)
    })
}

/// Calls `echo` one request at a time until `stop`; returns (sent, answered, slowest).
fn prober(endpoint: String, stop: Arc<AtomicBool>) -> JoinHandle<(u64, u64, Duration)> {
    std::thread::spawn(move || {
        let ctx = zmq::Context::new();
        let client = raw(&ctx, zmq::DEALER, &endpoint);
        let (mut sent, mut answered, mut slowest) = (0, 0, Duration::ZERO);
        while !stop.load(Ordering::Relaxed) {
            let id = format!("probe-{sent}");
            let at = Instant::now();
            send(&client, &[b"", b"MDPC01", b"echo", id.as_bytes()]);
            sent += 1;
            let expected = format!("{id}@broker");
            while let Some(reply) = recv(&client, Duration::from_secs(2)) {
                if reply.get(3).is_some_and(|b| *b == expected.as_bytes()) {
                    answered += 1;
                    slowest = slowest.max(at.elapsed());
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        (sent, answered, slowest)
    })
}

#[test]
fn a_flood_of_invented_names_is_capped_counted_and_forgotten() {
    let broker = BrokerProc::start(&[
        "--heartbeat".into(),
        "200ms".into(),
        "--request-expiry".into(),
        "3s".into(),
        "--max-waiting-per-service".into(),
        PER_SERVICE_CAP.to_string(),
        "--max-waiting".into(),
        WAITING_CAP.to_string(),
    ]);
    broker.wait_state("active", T);
    let stop_worker = Arc::new(AtomicBool::new(false));
    let worker = tagged_worker(
        broker.frontend.clone(),
        "broker",
        Arc::new(Mutex::new(Vec::new())),
        stop_worker.clone(),
    );
    wait_for("the echo worker", T, || {
        let status = broker.status();
        match status.as_ref().map(|s| s["services"][0]["workers"].clone()) {
            Some(w) if w == 1 => Ok(()),
            _ => Err(status),
        }
    });
    let rss_before = metric(broker.metrics, "process_resident_memory_bytes");

    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_queues(broker.metrics, stop.clone());
    let prober = prober(broker.frontend.clone(), stop.clone());
    let ctx = zmq::Context::new();
    let flood = raw(&ctx, zmq::DEALER, &broker.frontend);
    flood.set_sndhwm(0).expect("no send limit");
    let total = NAMES * PER_NAME;
    for i in 0..total {
        let name = format!("invented-{}", i / PER_NAME);
        send(&flood, &[b"", b"MDPC01", name.as_bytes(), b"x"]);
    }
    // The first WAITING_CAP / PER_SERVICE_CAP names fill the waiting room, PER_SERVICE_CAP
    // each, and drop the rest of their requests as their queue is full; every request for
    // a later name finds the room full.
    let filled = WAITING_CAP / PER_SERVICE_CAP;
    let want_service_full = (filled * (PER_NAME - PER_SERVICE_CAP)) as f64;
    let want_queue_full = ((NAMES - filled) * PER_NAME) as f64;
    let counted = |reason: &str| {
        metric(
            broker.metrics,
            &format!("hearth_dropped_messages_total{{reason=\"{reason}\"}}"),
        )
    };
    wait_for("the flood counted", T, || {
        let seen = (counted("service_queue_full"), counted("queue_full"));
        if seen == (want_service_full, want_queue_full) {
            Ok(())
        } else {
            Err(seen)
        }
    });
    let rss_peak = metric(broker.metrics, "process_resident_memory_bytes");
    let status = broker.status().expect("/status");
    let waiting: u64 = status["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter(|s| {
            s["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("invented-"))
        })
        .map(|s| s["queue_depth"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(waiting, WAITING_CAP as u64, "waiting per /status");

    // Expired after 3 s, forgotten 10 s later.
    wait_for("the waiting requests expired", T, || {
        let expired = counted("expired");
        if expired == WAITING_CAP as f64 {
            Ok(())
        } else {
            Err(expired)
        }
    });
    wait_for("the invented names forgotten", T, || {
        let status = broker.status().ok_or(None)?;
        let names: Vec<String> = status["services"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["name"].as_str().map(str::to_owned))
            .collect();
        if names == ["echo"] {
            Ok(())
        } else {
            Err(Some(names.len()))
        }
    });
    let (_, text) = http_get(broker.metrics, "/metrics");
    assert!(
        !text.contains("invented-"),
        "series of a forgotten name remain"
    );
    let rss_after = metric(broker.metrics, "process_resident_memory_bytes");
    stop.store(true, Ordering::Relaxed);
    let (sent, answered, slowest) = prober.join().expect("prober");
    let (one, all, scrapes) = watcher.join().expect("watcher");
    stop_worker.store(true, Ordering::Relaxed);
    worker.join().expect("worker");
    println!(
        "flood of {total}: {} dropped (service queue full), {} dropped (waiting room full), \
         {WAITING_CAP} expired; most waiting for one name {one}, in all {all} ({scrapes} \
         scrapes); echo {answered}/{sent} answered, slowest {slowest:?}; RSS {:.1} MB before, \
         {:.1} MB after the flood, {:.1} MB once forgotten",
        want_service_full,
        want_queue_full,
        rss_before / 1e6,
        rss_peak / 1e6,
        rss_after / 1e6
    );
    assert!(scrapes > 0, "the queues were watched");
    assert!(one <= PER_SERVICE_CAP as f64, "one name held {one}");
    assert!(all <= WAITING_CAP as f64, "{all} waited in all");
    assert!(sent > 0);
    assert_eq!(answered, sent, "echo went unanswered during the flood");
    // What the flood took is given back (loosely: the allocator and libzmq keep some).
    assert!(
        rss_after < rss_before + 8e6,
        "RSS {rss_before} before, {rss_after} once the names were forgotten"
    );
}
