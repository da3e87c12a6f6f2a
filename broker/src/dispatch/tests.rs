//! The dispatcher's rules on a fake clock: no sockets, no sleeping.

use std::time::Duration;

use hearth_proto::{ClientMessage, Inbound, WorkerMessage};

use super::harness::Harness;
use super::*;

const HB: Duration = Duration::from_millis(100);

impl Harness {
    fn new() -> Harness {
        Harness::with(DispatchConfig {
            heartbeat: HB,
            liveness: 3,
            request_expiry: Duration::from_secs(1),
            ..DispatchConfig::default()
        })
    }

    fn ready(&mut self, ms: u64, id: &str, service: &str) -> Vec<Effect> {
        self.worker(
            ms,
            id,
            WorkerMessage::Ready {
                service: service.into(),
            },
        )
    }

    fn reply(&mut self, ms: u64, worker: &str, client: &str, body: &str) -> Vec<Effect> {
        let msg = WorkerMessage::Reply {
            client: client.as_bytes().to_vec(),
            body: vec![body.as_bytes().to_vec()],
        };
        self.worker(ms, worker, msg)
    }
}

fn to_worker(id: &str, msg: WorkerMessage) -> Effect {
    Effect::ToWorker {
        worker: id.as_bytes().to_vec(),
        msg,
    }
}

fn request_to(worker: &str, client: &str, body: &str) -> Effect {
    to_worker(
        worker,
        WorkerMessage::Request {
            client: client.as_bytes().to_vec(),
            body: vec![body.as_bytes().to_vec()],
        },
    )
}

fn reply_to(client: &str, service: &str, body: &str) -> Effect {
    Effect::ToClient {
        client: client.as_bytes().to_vec(),
        msg: ClientMessage::new(service, body.as_bytes().to_vec()),
    }
}

fn disconnect(id: &str) -> Effect {
    to_worker(id, WorkerMessage::Disconnect)
}

#[test]
fn request_waits_for_a_worker_then_goes_to_it() {
    let mut h = Harness::new();
    assert_eq!(h.request(0, "C1", "echo", "hi"), vec![]);
    assert_eq!(h.d.service_status()[0].queue_depth, 1);
    assert_eq!(
        h.ready(10, "W1", "echo"),
        vec![request_to("W1", "C1", "hi")]
    );
    assert_eq!(
        h.reply(20, "W1", "C1", "hi"),
        vec![reply_to("C1", "echo", "hi")]
    );
    assert_eq!(h.sample("hearth_replies_total", "service", "echo"), 1.0);
    assert_eq!(h.sample("hearth_requests_total", "service", "echo"), 1.0);
}

#[test]
fn longest_idle_worker_gets_the_request() {
    let mut h = Harness::new();
    h.ready(0, "W1", "echo");
    h.ready(1, "W2", "echo");
    assert_eq!(
        h.request(2, "C1", "echo", "a"),
        vec![request_to("W1", "C1", "a")]
    );
    assert_eq!(
        h.request(3, "C2", "echo", "b"),
        vec![request_to("W2", "C2", "b")]
    );
    // W2 finishes first, then W1: W2 has been idle longer.
    h.reply(4, "W2", "C2", "b");
    h.reply(5, "W1", "C1", "a");
    assert_eq!(
        h.request(6, "C3", "echo", "c"),
        vec![request_to("W2", "C3", "c")]
    );
}

#[test]
fn one_request_at_a_time_per_worker() {
    let mut h = Harness::new();
    h.ready(0, "W1", "echo");
    assert_eq!(h.request(1, "C1", "echo", "a").len(), 1);
    assert_eq!(h.request(2, "C2", "echo", "b"), vec![]);
    let out = h.reply(3, "W1", "C1", "a");
    assert_eq!(
        out,
        vec![reply_to("C1", "echo", "a"), request_to("W1", "C2", "b")]
    );
}

#[test]
fn heartbeats_go_to_idle_and_busy_workers() {
    let mut h = Harness::new();
    h.ready(0, "W1", "echo");
    h.ready(0, "W2", "echo");
    h.request(1, "C1", "echo", "a");
    assert_eq!(h.tick(50), vec![]);
    let mut out = h.tick(100);
    out.sort_by_key(|a| format!("{a:?}"));
    assert_eq!(
        out,
        vec![
            to_worker("W1", WorkerMessage::Heartbeat),
            to_worker("W2", WorkerMessage::Heartbeat)
        ]
    );
    assert_eq!(h.d.next_deadline(), h.at(200));
}

#[test]
fn busy_worker_that_heartbeats_stays() {
    let mut h = Harness::new();
    h.ready(0, "W1", "slow");
    h.request(1, "C1", "slow", "a");
    for ms in (100..=1000).step_by(100) {
        h.worker(ms - 50, "W1", WorkerMessage::Heartbeat);
        assert!(!h.tick(ms).contains(&disconnect("W1")), "dropped at {ms}");
    }
    assert_eq!(
        h.reply(1001, "W1", "C1", "done"),
        vec![reply_to("C1", "slow", "done")]
    );
}

#[test]
fn silent_worker_is_dropped_and_its_request_goes_to_another() {
    let mut h = Harness::new();
    h.ready(0, "W1", "echo");
    h.request(1, "C1", "echo", "a");
    h.ready(2, "W2", "echo");
    h.request(3, "C2", "echo", "b");
    // Only W2 keeps heartbeating; it answers C2 and is idle when W1 expires.
    h.worker(250, "W2", WorkerMessage::Heartbeat);
    h.reply(260, "W2", "C2", "b");
    let out = h.tick(300);
    assert!(out.contains(&disconnect("W1")), "{out:?}");
    assert!(out.contains(&request_to("W2", "C1", "a")), "{out:?}");
    assert_eq!(h.sample("hearth_requeued_total", "service", "echo"), 1.0);
    assert_eq!(h.sample("hearth_workers", "service", "echo"), 1.0);
    // A late reply from the dropped worker is refused.
    assert_eq!(h.reply(310, "W1", "C1", "a"), vec![disconnect("W1")]);
}

#[test]
fn requeued_request_goes_to_the_head_of_the_queue() {
    let mut h = Harness::new();
    h.ready(0, "W1", "echo");
    h.request(1, "C1", "echo", "first");
    h.request(2, "C2", "echo", "second");
    h.worker(3, "W1", WorkerMessage::Disconnect);
    assert_eq!(
        h.ready(4, "W2", "echo"),
        vec![request_to("W2", "C1", "first")]
    );
}

#[test]
fn unreachable_worker_is_dropped_at_once() {
    let mut h = Harness::new();
    h.ready(0, "W1", "echo");
    h.ready(1, "W2", "echo");
    let sent = h.request(2, "C1", "echo", "a");
    assert_eq!(sent, vec![request_to("W1", "C1", "a")]);
    let mut out = Vec::new();
    h.d.unreachable(sent[0].clone(), &mut out);
    assert_eq!(out, vec![request_to("W2", "C1", "a")]);
    assert_eq!(h.d.worker_count(), 1);
}

#[test]
fn requests_expire_only_without_workers() {
    let mut h = Harness::new();
    h.request(0, "C1", "nobody", "a");
    assert_eq!(h.d.next_deadline(), h.at(100));
    h.tick(999);
    assert_eq!(
        h.d.service_status()
            .iter()
            .map(|s| s.queue_depth)
            .sum::<u64>(),
        1
    );
    h.tick(1000);
    assert_eq!(
        h.sample("hearth_expired_requests_total", "service", "nobody"),
        1.0
    );
    assert_eq!(h.d.service_status()[0].queue_depth, 0);

    // With a (busy) worker alive, requests wait however long.
    h.ready(1000, "W1", "busy");
    h.request(1001, "C1", "busy", "a");
    h.request(1002, "C2", "busy", "b");
    for ms in (1100..=4000).step_by(100) {
        h.worker(ms - 1, "W1", WorkerMessage::Heartbeat);
        h.tick(ms);
    }
    assert_eq!(
        h.sample("hearth_expired_requests_total", "service", "busy"),
        0.0
    );
    assert_eq!(
        h.reply(4001, "W1", "C1", "a"),
        vec![reply_to("C1", "busy", "a"), request_to("W1", "C2", "b")]
    );
}

#[test]
fn request_expires_after_its_service_loses_the_last_worker() {
    let mut h = Harness::new();
    h.ready(0, "W1", "echo");
    h.request(1, "C1", "echo", "a");
    h.request(2, "C2", "echo", "b");
    h.worker(500, "W1", WorkerMessage::Disconnect);
    // Both requests are older than the expiry once the worker is gone.
    h.tick(1002);
    assert_eq!(
        h.sample("hearth_expired_requests_total", "service", "echo"),
        2.0
    );
}

#[test]
fn ready_for_reserved_service_gets_disconnect() {
    let mut h = Harness::new();
    assert_eq!(h.ready(0, "W1", "mmi.service"), vec![disconnect("W1")]);
    assert_eq!(h.ready(0, "W2", "mmi.other"), vec![disconnect("W2")]);
    assert_eq!(h.ready(0, "W3", "hearth.status"), vec![disconnect("W3")]);
    assert_eq!(h.d.worker_count(), 0);
}

#[test]
fn second_ready_gets_disconnect() {
    let mut h = Harness::new();
    h.ready(0, "W1", "echo");
    h.request(1, "C1", "echo", "a");
    assert_eq!(h.ready(2, "W1", "echo"), vec![disconnect("W1")]);
    assert_eq!(h.d.worker_count(), 0);
    // The request it held waits for the next worker.
    assert_eq!(h.ready(3, "W2", "echo"), vec![request_to("W2", "C1", "a")]);
}

#[test]
fn reply_or_heartbeat_from_unknown_worker_gets_disconnect() {
    let mut h = Harness::new();
    assert_eq!(h.reply(0, "W9", "C1", "x"), vec![disconnect("W9")]);
    assert_eq!(
        h.worker(0, "W9", WorkerMessage::Heartbeat),
        vec![disconnect("W9")]
    );
    assert_eq!(h.worker(0, "W9", WorkerMessage::Disconnect), vec![]);
}

#[test]
fn reply_for_a_request_the_worker_does_not_hold_gets_disconnect() {
    let mut h = Harness::new();
    h.ready(0, "W1", "echo");
    assert_eq!(h.reply(1, "W1", "C1", "x"), vec![disconnect("W1")]);
    h.ready(2, "W2", "echo");
    h.request(3, "C1", "echo", "a");
    let out = h.reply(4, "W2", "C-other", "a");
    assert_eq!(out, vec![disconnect("W2")]);
}

#[test]
fn mmi_service_answers_200_only_while_a_worker_is_registered() {
    let mut h = Harness::new();
    let ask = |h: &mut Harness, ms| {
        let mut out = Vec::new();
        let msg = ClientMessage::new("mmi.service", b"echo".to_vec());
        h.d.handle(h.at(ms), b"C1".to_vec(), Inbound::Client(msg), &mut out);
        out
    };
    assert_eq!(ask(&mut h, 0), vec![reply_to("C1", "mmi.service", "404")]);
    h.ready(1, "W1", "echo");
    assert_eq!(ask(&mut h, 2), vec![reply_to("C1", "mmi.service", "200")]);
    h.worker(3, "W1", WorkerMessage::Disconnect);
    assert_eq!(ask(&mut h, 4), vec![reply_to("C1", "mmi.service", "404")]);
}

#[test]
fn other_mmi_services_answer_501() {
    let mut h = Harness::new();
    assert_eq!(
        h.request(0, "C1", "mmi.workers", "echo"),
        vec![reply_to("C1", "mmi.workers", "501")]
    );
}

#[test]
fn shutdown_disconnects_every_worker() {
    let mut h = Harness::new();
    h.ready(0, "W1", "a");
    h.ready(0, "W2", "b");
    let mut out = Vec::new();
    h.d.shutdown(&mut out);
    out.sort_by_key(|a| format!("{a:?}"));
    assert_eq!(out, vec![disconnect("W1"), disconnect("W2")]);
    assert_eq!(h.d.worker_count(), 0);
}

#[test]
fn malformed_input_is_counted_by_reason() {
    let mut h = Harness::new();
    h.d.malformed(b"P1", &DecodeError::WrongHeader);
    h.d.malformed(b"P1", &DecodeError::WrongHeader);
    h.d.malformed(b"P2", &DecodeError::MissingBody);
    assert_eq!(
        h.sample("hearth_malformed_messages_total", "reason", "wrong_header"),
        2.0
    );
    assert_eq!(
        h.sample("hearth_malformed_messages_total", "reason", "missing_body"),
        1.0
    );
}

#[test]
fn queue_is_bounded() {
    let mut h = Harness::new();
    h.d.config.max_waiting_per_service = 2;
    for i in 0..5 {
        h.request(i, &format!("C{i}"), "echo", "x");
    }
    assert_eq!(h.d.service_status()[0].queue_depth, 2);
    assert_eq!(
        h.sample(
            "hearth_dropped_messages_total",
            "reason",
            "service_queue_full"
        ),
        3.0
    );
}

#[test]
fn passive_dispatcher_keeps_workers_but_dispatches_nothing() {
    let mut h = Harness::new();
    let mut out = Vec::new();
    h.d.set_mode(Mode::Passive, h.at(0), &mut out);
    h.ready(0, "W1", "echo");
    assert_eq!(h.request(1, "C1", "echo", "a"), vec![]);
    assert_eq!(h.d.worker_count(), 1);
    // Becoming active sends the waiting request out at once.
    h.d.set_mode(Mode::Active, h.at(2), &mut out);
    assert_eq!(out, vec![request_to("W1", "C1", "a")]);
}

#[test]
fn deactivated_dispatcher_forgets_requests_and_forwards_no_reply() {
    let mut h = Harness::new();
    h.ready(0, "W1", "echo");
    h.request(1, "C1", "echo", "a");
    h.request(2, "C2", "echo", "b");
    let mut out = Vec::new();
    h.d.set_mode(Mode::Passive, h.at(3), &mut out);
    assert_eq!(out, vec![]);
    assert_eq!(h.d.service_status()[0].queue_depth, 0);
    // The worker's late reply is not forwarded, and the worker is idle again.
    assert_eq!(h.reply(3, "W1", "C1", "a"), vec![]);
    assert_eq!(h.d.service_status()[0].idle_workers, 1);
    assert_eq!(
        h.sample("hearth_dropped_messages_total", "reason", "not_active"),
        2.0
    );
}

#[test]
fn paused_dispatcher_holds_replies_and_sends_them_when_active_again() {
    let mut h = Harness::new();
    h.ready(0, "W1", "echo");
    h.request(1, "C1", "echo", "a");
    h.request(2, "C2", "echo", "b");
    let mut out = Vec::new();
    h.d.set_mode(Mode::Paused, h.at(3), &mut out);
    // The reply is held and nothing new is dispatched.
    assert_eq!(h.reply(4, "W1", "C1", "a"), vec![]);
    assert_eq!(h.sample("hearth_replies_total", "service", "echo"), 0.0);
    h.d.set_mode(Mode::Active, h.at(5), &mut out);
    assert_eq!(
        out,
        vec![reply_to("C1", "echo", "a"), request_to("W1", "C2", "b")]
    );
    assert_eq!(h.sample("hearth_replies_total", "service", "echo"), 1.0);
}

#[test]
fn paused_then_passive_drops_held_replies() {
    let mut h = Harness::new();
    h.ready(0, "W1", "echo");
    h.request(1, "C1", "echo", "a");
    let mut out = Vec::new();
    h.d.set_mode(Mode::Paused, h.at(2), &mut out);
    h.reply(3, "W1", "C1", "a");
    h.d.set_mode(Mode::Passive, h.at(4), &mut out);
    h.d.set_mode(Mode::Active, h.at(5), &mut out);
    assert_eq!(out, vec![]);
    assert_eq!(h.sample("hearth_replies_total", "service", "echo"), 0.0);
}

#[test]
fn quick_service_gets_requests_ahead_slow_one_does_not() {
    let mut h = Harness::new();
    h.ready(0, "W1", "quick");
    h.request(0, "C0", "quick", "warm-up");
    h.reply(1, "W1", "C0", "warm-up"); // 1 ms: two fit in the 2 ms budget
    let mut out = Vec::new();
    for i in 1..=6 {
        out.extend(h.request(3, &format!("C{i}"), "quick", "x"));
    }
    // One to run and one ahead.
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(h.d.service_status()[0].queue_depth, 4);

    h.ready(10, "W2", "slow");
    h.request(10, "D0", "slow", "warm-up");
    h.reply(60, "W2", "D0", "warm-up"); // 50 ms: slow
    let mut out = Vec::new();
    for i in 1..=3 {
        out.extend(h.request(61, &format!("D{i}"), "slow", "x"));
    }
    assert_eq!(out.len(), 1, "one at a time for a slow service: {out:?}");
}

#[test]
fn idle_workers_come_before_busy_ones() {
    let mut h = Harness::new();
    h.ready(0, "W1", "quick");
    h.ready(0, "W2", "quick");
    h.request(0, "C0", "quick", "warm-up");
    h.reply(1, "W1", "C0", "warm-up");
    // W2 has been idle longest, then W1; only then does W2 get a second request.
    assert_eq!(
        h.request(2, "C1", "quick", "a"),
        vec![request_to("W2", "C1", "a")]
    );
    assert_eq!(
        h.request(2, "C2", "quick", "b"),
        vec![request_to("W1", "C2", "b")]
    );
    assert_eq!(
        h.request(2, "C3", "quick", "c"),
        vec![request_to("W2", "C3", "c")]
    );
}

#[test]
fn every_request_a_lost_worker_held_is_dispatched_again_in_order() {
    let mut h = Harness::new();
    h.ready(0, "W1", "quick");
    h.request(0, "C0", "quick", "warm-up");
    h.reply(0, "W1", "C0", "warm-up"); // too quick to measure: the deepest prefetch
    for (i, body) in ["a", "b", "c"].iter().enumerate() {
        h.request(2, &format!("C{i}"), "quick", body);
    }
    h.worker(3, "W1", WorkerMessage::Disconnect);
    assert_eq!(h.sample("hearth_requeued_total", "service", "quick"), 3.0);
    // The service is known to be quick, so the next worker gets all three, in order.
    let out = h.ready(4, "W2", "quick");
    assert_eq!(
        out,
        vec![
            request_to("W2", "C0", "a"),
            request_to("W2", "C1", "b"),
            request_to("W2", "C2", "c")
        ]
    );
}

#[test]
fn replies_to_prefetched_requests_are_matched_by_client() {
    let mut h = Harness::new();
    h.ready(0, "W1", "quick");
    h.request(0, "C0", "quick", "warm-up");
    h.reply(1, "W1", "C0", "warm-up");
    h.request(2, "C1", "quick", "a");
    h.request(2, "C2", "quick", "b");
    assert_eq!(
        h.reply(3, "W1", "C1", "a"),
        vec![reply_to("C1", "quick", "a")]
    );
    assert_eq!(
        h.reply(4, "W1", "C2", "b"),
        vec![reply_to("C2", "quick", "b")]
    );
    assert_eq!(h.d.service_status()[0].idle_workers, 1);
}

#[test]
fn requests_workers_held_when_the_broker_stepped_down_never_run_again() {
    let mut h = Harness::new();
    h.ready(0, "W1", "echo");
    h.ready(0, "W2", "slow");
    h.request(1, "C1", "echo", "old");
    h.request(1, "C2", "slow", "old-slow");
    let mut out = Vec::new();
    // Passive while the workers hold the requests, then active again (a later failover).
    h.d.set_mode(Mode::Passive, h.at(2), &mut out);
    h.d.set_mode(Mode::Active, h.at(3), &mut out);
    assert_eq!(out, vec![]);
    // W1 dies: its request is not requeued to a new worker...
    h.worker(4, "W1", WorkerMessage::Disconnect);
    assert_eq!(h.ready(5, "W3", "echo"), vec![]);
    // ...and W2's late reply goes nowhere, while W2 takes new work at once.
    assert_eq!(h.reply(6, "W2", "C2", "old-slow"), vec![]);
    assert_eq!(
        h.request(7, "C3", "slow", "new"),
        vec![request_to("W2", "C3", "new")]
    );
    assert_eq!(h.sample("hearth_requeued_total", "service", "echo"), 0.0);
    assert_eq!(h.sample("hearth_replies_total", "service", "slow"), 0.0);
}
