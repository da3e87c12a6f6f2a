//! The pair driver on a fake clock: unit cases, then a simulated two-broker run with
//! kills, freezes, restarts, delayed and lost heartbeats, and Lazy Pirate clients, asserting
//! that two brokers never serve at the same time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

const HB: Duration = Duration::from_millis(1000);

fn ms(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

fn passive_backup(t0: Instant) -> Pair<u32> {
    let mut b = Pair::new(PairRole::Backup, HB, t0, 1000);
    b.peer_heartbeat(t0, State::Active, 1, 1, 0).unwrap();
    assert_eq!(b.state(), State::Passive);
    b
}

/// An active primary whose backup has acknowledged its beat sent at `t0`.
fn active_primary(t0: Instant) -> Pair<u32> {
    let mut p = Pair::new(PairRole::Primary, HB, t0, 0);
    assert_eq!(
        p.peer_heartbeat(t0, State::Backup, 0, 1, 0),
        Ok(Verdict::Activated)
    );
    let beat = p.tick(t0).unwrap();
    assert_eq!(beat.state, State::Active);
    p.peer_heartbeat(t0, State::Passive, 1, 2, beat.beat)
        .unwrap();
    assert!(p.serving(t0));
    p
}

#[test]
fn primary_becomes_active_on_seeing_the_backup_and_serves_once_acknowledged() {
    let t0 = Instant::now();
    let mut p: Pair<u32> = Pair::new(PairRole::Primary, HB, t0, 0);
    assert_eq!(
        p.peer_heartbeat(t0, State::Backup, 0, 1, 0),
        Ok(Verdict::Activated)
    );
    // Not yet acknowledged by the backup: held, not refused.
    assert_eq!(p.client_request(t0, 7), Gate::Held);
    let beat = p.tick(t0).unwrap();
    p.peer_heartbeat(ms(t0, 50), State::Passive, 1, 2, beat.beat)
        .unwrap();
    assert_eq!(p.take_released(), vec![7]);
    assert_eq!(p.client_request(ms(t0, 60), 8), Gate::Serve(8));
}

#[test]
fn active_without_fresh_acknowledgement_holds_until_it_comes() {
    let t0 = Instant::now();
    let mut p = active_primary(t0);
    // Regular heartbeats, acknowledged late but within two heartbeats: serving throughout.
    let b1 = p.tick(ms(t0, 1000)).unwrap();
    assert!(p.serving(ms(t0, 1800)));
    // 1.9 s after the last acknowledged beat: the peer might expire us soon; hold.
    assert!(!p.serving(ms(t0, 1900)));
    assert_eq!(p.client_request(ms(t0, 1900), 1), Gate::Held);
    p.peer_heartbeat(ms(t0, 1950), State::Passive, 1, 3, b1.beat)
        .unwrap();
    assert_eq!(p.take_released(), vec![1]);
}

#[test]
fn passive_holds_a_request_then_drops_it_when_the_peer_proves_alive() {
    let t0 = Instant::now();
    let mut b = passive_backup(t0);
    assert_eq!(b.client_request(ms(t0, 100), 1), Gate::Held);
    assert_eq!(
        b.tick(ms(t0, 500)).map(|beat| beat.state),
        Some(State::Passive)
    );
    assert!(b.take_dropped().is_empty());
    b.peer_heartbeat(ms(t0, 1000), State::Active, 1, 2, 1001)
        .unwrap();
    assert_eq!(b.take_dropped(), vec![1]);
    assert!(b.take_released().is_empty());
    assert_eq!(b.state(), State::Passive);
}

#[test]
fn passive_holds_a_request_and_serves_it_when_the_peer_expires() {
    let t0 = Instant::now();
    let mut b = passive_backup(t0);
    assert_eq!(b.client_request(ms(t0, 1500), 1), Gate::Held);
    assert_eq!(b.next_deadline(), ms(t0, 0));
    b.tick(ms(t0, 0));
    assert_eq!(b.next_deadline(), ms(t0, 1000));
    b.observe(ms(t0, 1000));
    b.tick(ms(t0, 1000));
    b.observe(ms(t0, 1999));
    b.tick(ms(t0, 1999));
    assert!(b.take_released().is_empty());
    b.observe(ms(t0, 2000));
    b.tick(ms(t0, 2000));
    assert_eq!(b.take_released(), vec![1]);
    assert_eq!(b.state(), State::Active);
    assert_eq!(b.term(), 2);
    assert_eq!(b.failovers, 1);
    assert!(
        b.serving(ms(t0, 2000)),
        "a peer that expired cannot be serving"
    );
}

#[test]
fn closed_peer_connection_means_takeover_on_the_next_request() {
    let t0 = Instant::now();
    let mut b = passive_backup(t0);
    b.peer_disconnected(ms(t0, 300));
    assert_eq!(b.client_request(ms(t0, 310), 1), Gate::Serve(1));
    assert_eq!(b.state(), State::Active);
}

#[test]
fn heartbeat_after_the_disconnect_revives_the_peer() {
    let t0 = Instant::now();
    let mut b = passive_backup(t0);
    b.peer_disconnected(ms(t0, 300));
    // The peer restarted at once and says so: it is a primary waiting, so we take over.
    b.peer_heartbeat(ms(t0, 350), State::Primary, 0, 1, 0)
        .unwrap();
    assert_eq!(b.state(), State::Active);
    assert!(b.peer_alive(ms(t0, 360)));
}

#[test]
fn lone_backup_never_serves() {
    let t0 = Instant::now();
    let mut b: Pair<u32> = Pair::new(PairRole::Backup, HB, t0, 0);
    assert_eq!(b.client_request(t0, 1), Gate::Refuse(1));
    assert_eq!(b.client_request(ms(t0, 60_000), 2), Gate::Refuse(2));
    assert_eq!(b.state(), State::Backup);
}

#[test]
fn lone_primary_serves_after_peer_expiry() {
    let t0 = Instant::now();
    let mut p: Pair<u32> = Pair::new(PairRole::Primary, HB, t0, 0);
    assert_eq!(p.client_request(ms(t0, 100), 1), Gate::Held);
    for at in [0, 1000, 1999] {
        p.observe(ms(t0, at));
        p.tick(ms(t0, at));
    }
    assert!(p.take_released().is_empty());
    p.observe(ms(t0, 2000));
    p.tick(ms(t0, 2000));
    assert_eq!(p.take_released(), vec![1]);
    assert_eq!(p.state(), State::Active);
}

#[test]
fn frozen_active_steps_down_and_answers_nothing() {
    let t0 = Instant::now();
    let mut p = active_primary(t0);
    // Frozen for 5 s: the first reading after it reveals the stall.
    let resumed = ms(t0, 5000);
    assert!(p.observe(resumed));
    assert!(!p.serving(resumed));
    assert_eq!(p.client_request(resumed, 1), Gate::Held);
    // News queued while we were away: a passive heartbeat acknowledging an old beat does
    // not make us serve; the newer active term makes us step down.
    p.peer_heartbeat(resumed, State::Passive, 1, 3, 1).unwrap();
    assert!(!p.serving(resumed));
    assert!(p.take_released().is_empty());
    assert_eq!(
        p.peer_heartbeat(resumed, State::Active, 2, 4, 1),
        Ok(Verdict::SteppedDown)
    );
    assert_eq!(p.state(), State::Passive);
    assert!(p.take_released().is_empty());
    assert_eq!(p.take_dropped(), vec![1]);
    assert_eq!(p.step_downs, 1);
}

#[test]
fn frozen_active_whose_peer_stayed_passive_carries_on() {
    let t0 = Instant::now();
    let mut p = active_primary(t0);
    let resumed = ms(t0, 2600);
    assert!(p.observe(resumed));
    assert_eq!(p.client_request(resumed, 1), Gate::Held);
    let beat = p.tick(resumed).unwrap();
    // A heartbeat acknowledging an old beat does not end the wait; a fresh one does.
    p.peer_heartbeat(ms(t0, 2610), State::Passive, 1, 3, 1)
        .unwrap();
    assert!(p.take_released().is_empty());
    p.peer_heartbeat(ms(t0, 2620), State::Passive, 1, 4, beat.beat)
        .unwrap();
    assert_eq!(p.take_released(), vec![1]);
    assert!(p.serving(ms(t0, 2620)));
}

#[test]
fn frozen_active_with_a_silent_peer_carries_on_after_an_expiry_while_awake() {
    let t0 = Instant::now();
    let mut p = active_primary(t0);
    let resumed = ms(t0, 3000);
    assert!(p.observe(resumed));
    assert_eq!(p.client_request(resumed, 1), Gate::Held);
    // Silence counts from the moment we resumed, not from the last heartbeat before.
    assert_eq!(p.peer_expiry(), ms(t0, 5000));
    for at in [3000, 4000, 4999] {
        p.observe(ms(t0, at));
        p.tick(ms(t0, at));
    }
    assert!(p.take_released().is_empty());
    p.observe(ms(t0, 5000));
    p.tick(ms(t0, 5000));
    assert_eq!(p.take_released(), vec![1]);
}

#[test]
fn regular_wakeups_are_not_a_stall() {
    let t0 = Instant::now();
    let mut p = active_primary(t0);
    for step in 1..20u64 {
        let now = ms(t0, step * 1000 + 20);
        assert!(!p.observe(now), "at step {step}");
        if let Some(beat) = p.tick(now) {
            p.peer_heartbeat(now, State::Passive, 1, step + 2, beat.beat)
                .unwrap();
        }
        assert!(p.serving(now));
    }
}

// ---- simulation ------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Msg {
    Beat(OutgoingBeat),
    Disconnected,
    /// The outbound peer-link connection's handshake succeeded (the peer process runs).
    LinkReady,
    Request {
        client: usize,
        id: u64,
    },
}

struct SimNode {
    role: PairRole,
    pair: Option<Pair<(usize, u64)>>,
    frozen_until: Option<Instant>,
    inbox: VecDeque<(Instant, Msg)>,
    /// Consecutive heartbeats dropped on the way out (never two in a row).
    dropped_last: bool,
}

struct SimClient {
    target: usize,
    pending: Option<(u64, Instant)>,
    next_id: u64,
    answered: u64,
}

/// A request served: when, by which broker, in which of its segments (a segment ends when
/// the broker is killed or frozen: it serves nothing until the next one), in which term.
type Serve = (Instant, usize, u32, u64);

/// One run: returns the serve events and how many requests were answered.
fn simulate(seed: u64, secs: u64) -> (Vec<Serve>, u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let t0 = Instant::now();
    let step = Duration::from_millis(10);
    let mut nodes = [PairRole::Primary, PairRole::Backup].map(|role| SimNode {
        role,
        pair: None,
        frozen_until: None,
        inbox: VecDeque::new(),
        dropped_last: false,
    });
    // Start order: either first, or both at once.
    let start_gap = Duration::from_millis(rng.gen_range(0..4000));
    let first = rng.gen_range(0..2);
    let mut starts = [t0, t0];
    starts[1 - first] = t0 + start_gap;
    let mut clients: Vec<SimClient> = (0..3)
        .map(|i| SimClient {
            target: i % 2,
            pending: None,
            next_id: 0,
            answered: 0,
        })
        .collect();
    let mut serves = Vec::new();
    let mut answers: VecDeque<(Instant, usize, u64)> = VecDeque::new();
    let mut next_fault = t0 + Duration::from_secs(5);
    let mut restart_at: [Option<Instant>; 2] = [None, None];
    // A broker's serving segment: bumped at every restart and every thaw.
    let mut segment = [0u32; 2];
    let end = t0 + Duration::from_secs(secs);
    let quiet_from = end - Duration::from_secs(15);
    let mut now = t0;
    while now < end {
        now += step;
        for i in 0..2 {
            if nodes[i].pair.is_none()
                && now >= starts[i]
                && restart_at[i].is_none()
                && starts[i] != t0 - step
            {
                nodes[i].pair = Some(Pair::new(nodes[i].role, HB, now, rng.gen()));
                starts[i] = t0 - step;
            }
            if restart_at[i].is_some_and(|at| now >= at) {
                restart_at[i] = None;
                segment[i] += 1;
                nodes[i].pair = Some(Pair::new(nodes[i].role, HB, now, rng.gen()));
                nodes[i].inbox.clear();
                // Its connection to the running peer is made at once; the peer's reconnect
                // finds it within a quarter heartbeat.
                if nodes[1 - i].pair.is_some() {
                    let at = now + Duration::from_millis(rng.gen_range(1..20));
                    nodes[i].inbox.push_back((at, Msg::LinkReady));
                    let at = now + Duration::from_millis(rng.gen_range(10..250));
                    nodes[1 - i].inbox.push_back((at, Msg::LinkReady));
                }
            }
        }
        // Faults, seeded, none in the final quiet period.
        if now >= next_fault && now < quiet_from {
            next_fault = now + Duration::from_millis(rng.gen_range(3000..8000));
            let victim = rng.gen_range(0..2);
            let other = 1 - victim;
            let both_up = nodes
                .iter()
                .all(|n| n.pair.is_some() && n.frozen_until.is_none());
            if both_up {
                let trace = std::env::var("HEARTH_SIM_TRACE").is_ok();
                if rng.gen_bool(0.5) {
                    if trace {
                        eprintln!("{:?} kill {victim}", now.duration_since(t0));
                    }
                    nodes[victim].pair = None;
                    nodes[victim].inbox.clear();
                    restart_at[victim] =
                        Some(now + Duration::from_millis(rng.gen_range(100..4000)));
                    let at = now + Duration::from_millis(rng.gen_range(1..30));
                    nodes[other].inbox.push_back((at, Msg::Disconnected));
                } else {
                    nodes[victim].frozen_until =
                        Some(now + Duration::from_millis(rng.gen_range(1200..6000)));
                    if trace {
                        eprintln!(
                            "{:?} freeze {victim} for {:?}",
                            now.duration_since(t0),
                            nodes[victim].frozen_until.map(|u| u.duration_since(now))
                        );
                    }
                }
            }
        }
        // Clients: Lazy Pirate, switching broker after 1 s without an answer.
        while let Some(&(at, client, id)) = answers.front() {
            if at > now {
                break;
            }
            answers.pop_front();
            let c = &mut clients[client];
            if c.pending.is_some_and(|(pid, _)| pid == id) {
                c.pending = None;
                c.answered += 1;
            }
        }
        for (ci, c) in clients.iter_mut().enumerate() {
            let resend = match c.pending {
                None => {
                    c.next_id += 1;
                    true
                }
                Some((_, sent)) if now.duration_since(sent) >= Duration::from_secs(1) => {
                    c.target = 1 - c.target;
                    true
                }
                Some(_) => false,
            };
            if resend {
                c.pending = Some((c.next_id, now));
                let at = now + Duration::from_millis(rng.gen_range(1..20));
                nodes[c.target].inbox.push_back((
                    at,
                    Msg::Request {
                        client: ci,
                        id: c.next_id,
                    },
                ));
            }
        }
        // Brokers.
        let mut outgoing: Vec<(usize, OutgoingBeat)> = Vec::new();
        for i in 0..2 {
            let node = &mut nodes[i];
            let Some(pair) = node.pair.as_mut() else {
                continue;
            };
            if node.frozen_until.is_some_and(|until| now < until) {
                continue;
            }
            if node.frozen_until.take().is_some() {
                segment[i] += 1;
            }
            if pair.observe(now) && std::env::var("HEARTH_SIM_TRACE").is_ok() {
                eprintln!("{:?} node {i} detects a freeze", now.duration_since(t0));
            }
            // Adversarial order: client requests before peer news.
            let (mut due, rest): (Vec<_>, Vec<_>) =
                node.inbox.drain(..).partition(|(at, _)| *at <= now);
            node.inbox = rest.into();
            due.sort_by_key(|(_, m)| !matches!(m, Msg::Request { .. }));
            for (_, msg) in due {
                match msg {
                    Msg::Request { client, id } => {
                        if let Gate::Serve((c, id)) = pair.client_request(now, (client, id)) {
                            serves.push((now, i, segment[i], pair.term()));
                            answers.push_back((now + Duration::from_millis(5), c, id));
                        }
                    }
                    Msg::Beat(b) => {
                        if std::env::var("HEARTH_SIM_TRACE").is_ok() {
                            eprintln!("{:?} node {i} hears {:?}", now.duration_since(t0), b);
                        }
                        let _ = pair.peer_heartbeat(now, b.state, b.term, b.beat, b.heard);
                    }
                    Msg::Disconnected => pair.peer_disconnected(now),
                    Msg::LinkReady => pair.peer_link_ready(now),
                }
                for (c, id) in pair.take_released() {
                    serves.push((now, i, segment[i], pair.term()));
                    answers.push_back((now + Duration::from_millis(5), c, id));
                }
                pair.take_dropped();
            }
            if std::env::var("HEARTH_SIM_TRACE").is_ok() {
                eprintln!(
                    "{:?} node {i} {:?} term {} held {}",
                    now.duration_since(t0),
                    pair.state(),
                    pair.term(),
                    pair.held()
                );
            }
            if let Some(beat) = pair.tick(now) {
                outgoing.push((i, beat));
            }
            for (c, id) in pair.take_released() {
                serves.push((now, i, segment[i], pair.term()));
                answers.push_back((now + Duration::from_millis(5), c, id));
            }
            pair.take_dropped();
        }
        // Never two brokers serving at the same instant (a frozen or dead one serves nothing).
        let serving: Vec<bool> = nodes
            .iter()
            .map(|n| n.frozen_until.is_none() && n.pair.as_ref().is_some_and(|p| p.serving(now)))
            .collect();
        assert!(
            !(serving[0] && serving[1]),
            "seed {seed}: both brokers serving at {:?}",
            now.duration_since(t0)
        );
        for (from, beat) in outgoing {
            let to = 1 - from;
            // Lose an isolated heartbeat now and then, never two in a row (that would be a
            // partition, the documented limit of Binary Star). On the real link a heartbeat
            // is lost only when the connection resets (TCP loses nothing otherwise, and the
            // PUSH drops only while it has no connection): the sender's reconnect to the
            // live peer succeeds within a quarter heartbeat, and its handshake sends the
            // next heartbeat at once.
            if now < quiet_from && !nodes[from].dropped_last && rng.gen_bool(0.05) {
                if std::env::var("HEARTH_SIM_TRACE").is_ok() {
                    eprintln!(
                        "{:?} lost beat from {from} {:?}",
                        now.duration_since(t0),
                        beat
                    );
                }
                nodes[from].dropped_last = true;
                let at = now + Duration::from_millis(rng.gen_range(10..250));
                nodes[from].inbox.push_back((at, Msg::LinkReady));
                continue;
            }
            nodes[from].dropped_last = false;
            if nodes[to].pair.is_some() {
                // Delayed, but in order: the peer link is one TCP connection. (Heartbeats
                // overtaking each other would replay a peer's old state, e.g. PRIMARY after
                // ACTIVE, which a real link never does.)
                let mut at = now + Duration::from_millis(rng.gen_range(1..300));
                if let Some(last) = nodes[to]
                    .inbox
                    .iter()
                    .filter(|(_, m)| matches!(m, Msg::Beat(_)))
                    .map(|(t, _)| *t)
                    .max()
                {
                    at = at.max(last);
                }
                nodes[to].inbox.push_back((at, Msg::Beat(beat)));
            }
        }
    }
    let answered = clients.iter().map(|c| c.answered).sum();
    // Liveness: in the quiet period every client is answered.
    for (i, c) in clients.iter().enumerate() {
        if let Some((id, sent)) = c.pending {
            assert!(
                now.duration_since(sent) < Duration::from_secs(10),
                "seed {seed}: client {i} stuck on request {id}"
            );
        }
    }
    (serves, answered)
}

#[test]
fn simulated_pair_never_has_two_actives_serving() {
    let runs: u64 = std::env::var("HEARTH_SIM_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let first: u64 = std::env::var("HEARTH_SIM_FIRST")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for seed in first..first + runs {
        let (serves, answered) = simulate(seed, 120);
        assert!(answered > 100, "seed {seed}: only {answered} answered");
        // Each term is served by one broker only.
        let mut owner: std::collections::HashMap<u64, usize> = Default::default();
        for &(at, node, _, term) in &serves {
            let first = *owner.entry(term).or_insert(node);
            assert_eq!(
                first, node,
                "seed {seed}: term {term} served by both brokers (at {at:?})"
            );
        }
    }
}

#[test]
fn a_ready_link_sends_the_next_heartbeat_at_once() {
    let t0 = Instant::now();
    let mut b = passive_backup(t0);
    assert!(b.tick(t0).is_some());
    // Mid-interval, nothing is due...
    assert_eq!(b.tick(ms(t0, 300)), None);
    // ...until the peer (say a primary that just restarted) completes its handshake: it
    // must hear this broker's state now, not up to a heartbeat later.
    b.peer_link_ready(ms(t0, 310));
    assert!(b.next_deadline() <= ms(t0, 310));
    let beat = b.tick(ms(t0, 310)).expect("a heartbeat at once");
    assert_eq!(beat.state, State::Passive);
    // And the interval starts again from there.
    assert_eq!(b.tick(ms(t0, 1000)), None);
    assert!(b.tick(ms(t0, 1310)).is_some());
}

#[test]
fn a_backup_acknowledges_the_active_at_once_so_the_active_pauses_only_a_round_trip() {
    let t0 = Instant::now();
    let mut p = active_primary(t0);
    // The backup dies; once it has been silent for a full expiry the primary serves alone.
    assert!(!p.serving(ms(t0, 1950)));
    for at in [1000, 2000, 2100] {
        p.observe(ms(t0, at));
        p.tick(ms(t0, at));
    }
    assert!(p.serving(ms(t0, 2100)));
    // A new backup starts and speaks before it has heard the primary: the primary is no
    // longer sure and holds requests...
    let mut b: Pair<u32> = Pair::new(PairRole::Backup, HB, ms(t0, 2200), 5000);
    let hello = b.tick(ms(t0, 2200)).expect("the backup's first beat");
    p.peer_heartbeat(
        ms(t0, 2210),
        hello.state,
        hello.term,
        hello.beat,
        hello.heard,
    )
    .unwrap();
    assert_eq!(p.client_request(ms(t0, 2220), 1), Gate::Held);
    // ...until its beat (sent at once when its reconnect is ready) reaches the backup, which
    // answers at once with its new state and the acknowledgement.
    p.peer_link_ready(ms(t0, 2300));
    let beat = p.tick(ms(t0, 2300)).expect("a beat at once");
    b.peer_heartbeat(ms(t0, 2301), beat.state, beat.term, beat.beat, beat.heard)
        .unwrap();
    assert_eq!(b.state(), State::Passive);
    let ack = b.tick(ms(t0, 2301)).expect("the backup answers at once");
    assert_eq!(ack.heard, beat.beat);
    p.peer_heartbeat(ms(t0, 2302), ack.state, ack.term, ack.beat, ack.heard)
        .unwrap();
    assert_eq!(p.take_released(), vec![1]);
    assert!(p.serving(ms(t0, 2302)));
}
