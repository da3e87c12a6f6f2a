//! Until when an active broker may say it is active ([`Pair::sure_until`]), on a fake
//! clock: always while it runs and beats, never once its peer could have replaced it.

use std::time::{Duration, Instant};

use super::super::*;

const HB: Duration = Duration::from_millis(1000);

fn ms(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

/// An active primary whose backup has acknowledged its beat sent at `t0`.
fn active_primary(t0: Instant) -> Pair<u32> {
    let mut p = Pair::new(PairRole::Primary, HB, t0, 0);
    p.peer_heartbeat(t0, State::Backup, 0, 1, 0).unwrap();
    let beat = p.tick(t0).unwrap();
    p.peer_heartbeat(t0, State::Passive, 1, 2, beat.beat)
        .unwrap();
    p
}

fn sure(p: &Pair<u32>, now: Instant) -> bool {
    p.sure_until(now).is_none_or(|until| now < until)
}

#[test]
fn a_running_active_stays_sure_whatever_the_phase_of_its_peer() {
    let t0 = Instant::now();
    for phase in [1, 100, 500, 900, 999] {
        let mut p = active_primary(t0);
        let mut peer_beat = 2;
        let mut last_sent = 1;
        // Our beats every second; the peer's `phase` ms before each of ours, acknowledging
        // the beat before (the worst case for acknowledgements).
        for step in 1..30u64 {
            let theirs = ms(t0, step * 1000 - phase);
            peer_beat += 1;
            p.peer_heartbeat(theirs, State::Passive, 1, peer_beat, last_sent)
                .unwrap();
            for at in (step * 1000 - 1000..step * 1000).step_by(10) {
                assert!(sure(&p, ms(t0, at)), "phase {phase} at {at} ms");
            }
            let now = ms(t0, step * 1000);
            p.observe(now);
            if let Some(beat) = p.tick(now) {
                last_sent = beat.beat;
            }
        }
    }
}

#[test]
fn a_frozen_active_is_unsure_until_the_peers_news() {
    let t0 = Instant::now();
    let mut p = active_primary(t0);
    assert!(sure(&p, ms(t0, 1800)));
    // Stopped right after its beat at 0: the peer may expire it from 2000 ms on.
    assert!(
        !sure(&p, ms(t0, 1900)),
        "unsure before the peer can take over"
    );
    let resumed = ms(t0, 5000);
    assert!(p.observe(resumed));
    // Its own beat after the gap does not make it sure again...
    let beat = p.tick(resumed).expect("a beat is overdue");
    assert!(!sure(&p, resumed));
    assert!(!sure(&p, ms(t0, 5500)));
    // ...nor news acknowledging a beat from before the gap...
    p.peer_heartbeat(ms(t0, 5010), State::Passive, 1, 7, 1)
        .unwrap();
    assert!(!sure(&p, ms(t0, 5010)));
    // ...the peer's acknowledgement of a beat after it does.
    p.peer_heartbeat(ms(t0, 5020), State::Passive, 1, 8, beat.beat)
        .unwrap();
    assert!(sure(&p, ms(t0, 5020)));
}

#[test]
fn a_frozen_active_replaced_meanwhile_steps_down_and_claims_nothing_more() {
    let t0 = Instant::now();
    let mut p = active_primary(t0);
    let resumed = ms(t0, 5000);
    p.observe(resumed);
    assert!(!sure(&p, resumed));
    p.peer_heartbeat(resumed, State::Active, 2, 9, 1).unwrap();
    assert_eq!(p.state(), State::Passive);
    assert_eq!(p.sure_until(resumed), None, "passive: nothing to limit");
}

#[test]
fn an_active_serving_on_its_peers_expiry_has_no_limit() {
    let t0 = Instant::now();
    let mut p = active_primary(t0);
    // The peer is silent (gone); this broker keeps beating into the void.
    for at in (1000..=4000).step_by(1000) {
        p.observe(ms(t0, at));
        p.tick(ms(t0, at));
    }
    assert!(p.serving(ms(t0, 4000)));
    assert_eq!(p.sure_until(ms(t0, 4000)), None);
}

/// Two drivers exchanging heartbeats on a fake clock (ticks of 100 µs), the backup started
/// `offset` after the primary; each wakes up to `slop` late for its deadlines, and each
/// heartbeat takes between `latency.0` and `latency.1`. Returns the share of the time after
/// the first ten heartbeats in which the primary is active but does not serve.
fn paused_share(
    seed: u64,
    offset: Duration,
    slop: Duration,
    latency: (Duration, Duration),
    beats: u32,
) -> (f64, f64) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let tick = Duration::from_micros(100);
    let t0 = Instant::now();
    let mut now = t0;
    let mut pairs: [Option<Pair<u32>>; 2] = [Some(Pair::new(PairRole::Primary, HB, t0, 0)), None];
    // Per driver: when it wakes next; heartbeats on their way to it (arrival, beat).
    let mut wake = [t0, t0 + offset];
    let mut inbox: [std::collections::VecDeque<(Instant, OutgoingBeat)>; 2] = Default::default();
    let (mut steps, mut paused) = (0u64, 0u64);
    let mut backup_beats = 0u32;
    let end = t0 + HB * beats;
    while now < end {
        now += tick;
        if pairs[1].is_none() && now >= t0 + offset {
            pairs[1] = Some(Pair::new(PairRole::Backup, HB, now, 1_000_000));
        }
        for i in 0..2 {
            let Some(p) = pairs[i].as_mut() else { continue };
            let arrived = inbox[i].front().is_some_and(|(at, _)| *at <= now);
            if !arrived && now < wake[i] {
                continue;
            }
            p.observe(now);
            while inbox[i].front().is_some_and(|(at, _)| *at <= now) {
                let (_, b) = inbox[i].pop_front().unwrap();
                let _ = p.peer_heartbeat(now, b.state, b.term, b.beat, b.heard);
            }
            if let Some(beat) = p.tick(now) {
                if i == 1 && now >= t0 + HB * 10 {
                    backup_beats += 1;
                }
                let lat = rng.gen_range(latency.0..=latency.1);
                let other = &mut inbox[1 - i];
                let at = other
                    .back()
                    .map_or(now + lat, |(last, _)| (now + lat).max(*last));
                other.push_back((at, beat));
            }
            let late = rng.gen_range(Duration::ZERO..=slop);
            wake[i] = p.next_deadline().max(now) + late;
        }
        if now >= t0 + HB * 10 {
            let p = pairs[0].as_ref().unwrap();
            assert_eq!(p.state(), State::Active);
            steps += 1;
            paused += u64::from(!p.serving(now));
        }
    }
    (
        paused as f64 / steps as f64,
        f64::from(backup_beats) / f64::from(beats - 10),
    )
}

#[test]
fn a_healthy_active_never_pauses_whatever_the_phase_of_its_peer() {
    // Realistic (late wake-ups up to 2 ms, trips of 0.1-1 ms) and harsh (50 ms, 1-100 ms).
    let ms = Duration::from_millis;
    for (slop, latency) in [
        (ms(2), (Duration::from_micros(100), ms(1))),
        (ms(50), (ms(1), ms(100))),
    ] {
        let (mut worst, mut sum, mut beats) = (0.0f64, 0.0, 0.0f64);
        let n = 50;
        for k in 0..n {
            let offset = HB * k / n;
            let (share, rate) = paused_share(k as u64, offset, slop, latency, 60);
            worst = worst.max(share);
            sum += share;
            beats = beats.max(rate);
        }
        println!(
            "slop {slop:?}, trips {latency:?}: paused {:.3}% on average, {:.3}% at worst; \
             the backup beats {beats:.3} times a heartbeat at most",
            sum / f64::from(n) * 100.0,
            worst * 100.0
        );
        assert_eq!(worst, 0.0, "a healthy active paused");
        assert!(beats < 1.05, "the backup beats too often: {beats}");
    }
}
