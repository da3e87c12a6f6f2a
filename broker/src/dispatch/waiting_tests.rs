//! The caps on what waits, forgetting services nobody serves, and the flood summary, on a
//! fake clock.

use std::time::Duration;

use hearth_proto::WorkerMessage;

use super::harness::Harness;
use super::waiting::{FloodCounts, FloodLog, FORGET_AFTER};
use super::*;

const EXPIRY: Duration = Duration::from_secs(1);

impl Harness {
    fn capped(per_service: usize, in_all: usize) -> Harness {
        Harness::with(DispatchConfig {
            heartbeat: Duration::from_millis(100),
            request_expiry: EXPIRY,
            max_waiting_per_service: per_service,
            max_waiting: in_all,
            prefetch: 1,
            ..DispatchConfig::default()
        })
    }

    fn dropped(&self, reason: DropReason) -> f64 {
        self.sample("hearth_dropped_messages_total", "reason", reason.as_str())
    }

    fn waiting(&self) -> u64 {
        self.d.service_status().iter().map(|s| s.queue_depth).sum()
    }
}

fn ready(service: &str) -> WorkerMessage {
    WorkerMessage::Ready {
        service: service.into(),
    }
}

#[test]
fn one_service_holds_at_most_its_cap() {
    let mut h = Harness::capped(3, 100);
    for i in 0..10 {
        h.request(i, &format!("C{i}"), "lights", "x");
    }
    assert_eq!(h.d.service_status()[0].queue_depth, 3);
    assert_eq!(h.dropped(DropReason::ServiceQueueFull), 7.0);
    assert_eq!(h.dropped(DropReason::QueueFull), 0.0);
    // Every request is counted as received, dropped or not.
    assert_eq!(h.sample("hearth_requests_total", "service", "lights"), 10.0);
}

#[test]
fn invented_names_wait_at_most_the_cap_in_all() {
    let mut h = Harness::capped(2, 5);
    for i in 0..20 {
        h.request(i, &format!("C{i}"), &format!("invented-{i}"), "x");
    }
    assert_eq!(h.waiting(), 5);
    assert_eq!(h.d.service_status().len(), 5, "no entry for a dropped name");
    assert_eq!(h.dropped(DropReason::QueueFull), 15.0);
    assert_eq!(
        h.series("hearth_queue_depth", "service", "invented-19"),
        None,
        "no series for a dropped name"
    );
    // A waiting name costs no latency histogram; a served service has one from its first
    // worker, before any reply.
    let histogram = |h: &Harness, service: &str| {
        h.registry
            .gather()
            .iter()
            .filter(|f| f.name() == "hearth_request_duration_seconds")
            .flat_map(|f| f.get_metric())
            .any(|m| m.get_label().iter().any(|l| l.value() == service))
    };
    assert!(!histogram(&h, "invented-0"));
    h.worker(30, "W1", ready("echo"));
    assert!(histogram(&h, "echo"));
}

#[test]
fn a_served_service_still_queues_when_invented_names_filled_the_cap() {
    let mut h = Harness::capped(10, 3);
    h.worker(0, "W1", ready("echo"));
    // The one worker is busy with the first request.
    let out = h.request(1, "C0", "echo", "x");
    assert_eq!(out.len(), 1, "{out:?}");
    for i in 0..10 {
        h.request(2, &format!("J{i}"), &format!("junk-{i}"), "x");
    }
    assert_eq!(h.dropped(DropReason::QueueFull), 7.0);
    // Requests for the served service queue behind the busy worker, up to their own cap.
    for i in 1..4 {
        h.request(3, &format!("C{i}"), "echo", "x");
    }
    let echo = |h: &Harness| {
        h.d.service_status()
            .into_iter()
            .find(|s| s.name == "echo")
            .map(|s| s.queue_depth)
    };
    assert_eq!(echo(&h), Some(3));
    // And they are served in turn.
    let out = h.worker(
        4,
        "W1",
        WorkerMessage::Reply {
            client: b"C0".to_vec(),
            body: vec![b"x".to_vec()],
        },
    );
    assert_eq!(out.len(), 2, "the reply and the next request: {out:?}");
    assert_eq!(echo(&h), Some(2));
}

#[test]
fn the_count_follows_workers_that_come_and_go() {
    let mut h = Harness::capped(10, 4);
    for i in 0..3 {
        h.request(i, &format!("C{i}"), "lights", "x");
    }
    h.request(3, "C3", "other", "x");
    assert_eq!(h.d.unserved_recount().0, 4);
    assert_eq!(h.request(4, "C4", "more", "x"), vec![]);
    assert_eq!(h.dropped(DropReason::QueueFull), 1.0);
    // A worker for lights takes one request; the other two now wait for a served
    // service, which frees room for names nobody serves.
    h.worker(5, "W1", ready("lights"));
    assert_eq!(h.d.unserved_recount().0, 1);
    h.request(6, "C5", "more", "x");
    assert_eq!(h.d.unserved_recount().0, 2);
    // The worker leaves: its request goes back, and the queue waits for no worker again.
    h.worker(7, "W1", WorkerMessage::Disconnect);
    assert_eq!(h.d.unserved_recount().0, 5);
    assert_eq!(h.waiting(), 5);
}

#[test]
fn invented_names_are_forgotten_soon_after_they_expire() {
    let mut h = Harness::capped(10, 100);
    h.worker(0, "W1", ready("echo"));
    h.worker(1, "W1", WorkerMessage::Disconnect);
    for i in 0..50 {
        h.request(10, &format!("C{i}"), &format!("invented-{i}"), "x");
    }
    h.request(10, "C", "echo", "x");
    assert_eq!(h.d.service_status().len(), 51);
    let expiry_ms = EXPIRY.as_millis() as u64;
    h.tick(10 + expiry_ms);
    assert_eq!(h.waiting(), 0);
    assert_eq!(h.dropped(DropReason::Expired), 51.0);
    // Kept a while, so a scrape can still see the last counts.
    assert_eq!(
        h.series("hearth_expired_requests_total", "service", "invented-7"),
        Some(1.0)
    );
    let forget_ms = FORGET_AFTER.as_millis() as u64;
    assert!(h.d.next_deadline() <= h.at(10 + expiry_ms + forget_ms));
    let out = h.tick(10 + expiry_ms + forget_ms);
    assert!(
        out.contains(&Effect::ReleaseMemory),
        "50 services forgotten: the memory goes back ({out:?})"
    );
    let names: Vec<String> = h.d.service_status().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["echo"], "a service that had a worker is kept");
    assert_eq!(
        h.series("hearth_expired_requests_total", "service", "invented-7"),
        None
    );
    assert_eq!(
        h.series("hearth_expired_requests_total", "service", "echo"),
        Some(1.0)
    );
}

#[test]
fn a_name_asked_again_while_kept_is_not_forgotten_under_its_requests() {
    let mut h = Harness::capped(10, 100);
    let forget_ms = FORGET_AFTER.as_millis() as u64;
    h.request(0, "C1", "typo", "x");
    h.tick(1000);
    assert_eq!(h.waiting(), 0);
    h.request(forget_ms + 500, "C2", "typo", "x");
    h.tick(1000 + forget_ms);
    assert_eq!(h.waiting(), 1, "the second request still waits");
    h.tick(1500 + forget_ms);
    assert_eq!(h.waiting(), 0);
    h.tick(1000 + 2 * forget_ms);
    assert_eq!(
        h.d.service_status().len(),
        1,
        "kept a while after its last request"
    );
    h.tick(1500 + 2 * forget_ms);
    assert!(h.d.service_status().is_empty());
}

#[test]
fn more_names_kept_than_may_wait_are_forgotten_at_once() {
    // A short expiry lets many names through the waiting room in little time: however
    // many, no more than `max_waiting` are kept once empty.
    let mut h = Harness::capped(10, 20);
    for round in 0..3u64 {
        for i in 0..20 {
            h.request(
                round * 1000,
                &format!("C{i}"),
                &format!("r{round}-{i}"),
                "x",
            );
        }
        h.tick(round * 1000 + 1000);
        assert!(h.d.service_status().len() <= 20, "round {round}");
    }
    assert_eq!(h.dropped(DropReason::Expired), 60.0);
}

#[test]
fn a_broker_that_steps_down_forgets_what_waited_and_the_names() {
    let mut h = Harness::capped(10, 100);
    for i in 0..5 {
        h.request(i, &format!("C{i}"), &format!("invented-{i}"), "x");
    }
    let mut out = Vec::new();
    h.d.set_mode(Mode::Passive, h.at(10), &mut out);
    h.check_count();
    assert_eq!(h.waiting(), 0);
    assert_eq!(h.dropped(DropReason::NotActive), 5.0);
    h.tick(10 + FORGET_AFTER.as_millis() as u64);
    assert!(h.d.service_status().is_empty());
}

#[test]
fn expiry_passes_are_spaced_however_many_deadlines_there_are() {
    let mut h = Harness::capped(10, 1000);
    // Requests one millisecond apart would each make a pass over every service.
    for i in 0..200 {
        h.request(i, &format!("C{i}"), &format!("n{i}"), "x");
    }
    h.tick(1000);
    let first = h.d.next_deadline();
    assert!(
        first >= h.at(1000) + EXPIRY / 64,
        "the next pass waits at least 1/64 of the expiry"
    );
}

#[test]
fn the_flood_log_says_it_once_per_interval() {
    let t0 = Instant::now();
    let s = |n| t0 + Duration::from_secs(n);
    let interval = Duration::from_secs(10);
    let mut log = FloodLog::default();
    assert_eq!(log.due(interval), None);
    for i in 0..5000 {
        log.record(s(0), &format!("name-{i}"), 1, |c| &mut c.queue_full);
    }
    log.record(s(0), "name-1", 3, |c| &mut c.expired);
    assert_eq!(log.due(interval), Some(s(0)), "the first line goes at once");
    let first = log.take_due(s(0), interval).expect("a summary");
    assert_eq!(
        first.counts,
        FloodCounts {
            queue_full: 5000,
            expired: 3,
            ..FloodCounts::default()
        }
    );
    assert_eq!(first.examples, ["name-0", "name-1", "name-2"]);
    assert!(first.more_services, "more names than counted");
    let text = first.to_string();
    assert!(text.contains("5000 dropped"), "{text}");
    assert!(text.contains("3 expired"), "{text}");
    assert!(text.contains("e.g. name-0, name-1, name-2"), "{text}");
    // What comes next waits for the interval.
    log.record(s(1), "name-9", 1, |c| &mut c.service_queue_full);
    assert_eq!(log.take_due(s(5), interval), None);
    assert_eq!(log.due(interval), Some(s(10)));
    let second = log.take_due(s(10), interval).expect("a summary");
    assert_eq!(second.counts.service_queue_full, 1);
    assert_eq!((second.services, second.more_services), (1, false));
    assert_eq!(log.take_due(s(30), interval), None, "nothing to say");
}

#[test]
fn expiries_and_drops_are_logged_as_one_summary() {
    let mut h = Harness::capped(1, 3);
    for i in 0..10 {
        h.request(0, &format!("C{i}"), &format!("n{}", i % 5), "x");
    }
    // The first drop makes a summary due at once; the tick takes it.
    assert_eq!(h.d.next_deadline(), h.at(0));
    h.tick(0);
    assert_eq!(h.d.flood.due(h.d.config.flood_log_interval), None);
    h.tick(1000);
    let due = h.d.flood.due(h.d.config.flood_log_interval);
    assert_eq!(
        due,
        Some(h.at(10_000)),
        "the expiries wait for the interval"
    );
}
