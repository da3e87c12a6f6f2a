//! The soak's seeded random schedule: a pure function of (seed, duration, worker layout) to
//! a list of failures, so that `hearth-soak --seed N --schedule-only` prints exactly what a
//! run with that seed will try, and a failing run can be replayed event for event.
//!
//! Each [`Planned`] event follows a calm spell and is carried out whole (the failure, the
//! takeover it causes, the restart, the pair settling) before the next one. Its nominal
//! start ([`Planned::at`]) adds up the calm spells and the event's own waits (how long a
//! broker stays down, a freeze lasts, …), which is a lower bound of the real time: the
//! settling after each event is not counted, so a run always ends, on its clock, before its
//! schedule does. The first events are one of each kind, in a seeded order, so that even a
//! short run (the CI's) meets every kind of failure once; after that, kinds are drawn by
//! weight ([`EventKind::weight`]).

use std::fmt;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::cluster::WorkerKind;
use crate::pair::{Reach, Side, WorkerSpec};

/// The command of the soak's `slow` workers: 0.1 s per request, reply = request. A slow
/// worker holds a request most of the time, so that it can be hung in the middle of one.
pub const SLOW_CMD: &str = "sleep 0.1; cat";

/// Most events one schedule holds, whatever its duration.
pub const MAX_EVENTS: usize = 100_000;

/// One failure of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// kill -9 of `side` (the active or the passive, whichever it is then); started again
    /// after `down`.
    KillBroker {
        /// The broker killed.
        side: Side,
        /// How long it stays down.
        down: Duration,
    },
    /// SIGSTOP of the active or the passive for `hold`, then SIGCONT. A freeze of the
    /// active longer than the peer's expiry (two peer heartbeats) lets the peer take over; a
    /// shorter one may not.
    FreezeBroker {
        /// Which broker is frozen: the active (true) or the passive.
        active: bool,
        /// How long it stays frozen.
        hold: Duration,
    },
    /// Both brokers killed at once (a power cut); after `down`, `first` is started again,
    /// and the other `gap` later. The restart rule decides who may serve first.
    PowerCut {
        /// How long both stay down.
        down: Duration,
        /// The broker started again first.
        first: Side,
        /// How long the other stays down after `first` is back.
        gap: Duration,
    },
    /// kill -9 of the worker in slot `slot`; its replacement starts after `down`.
    KillWorker {
        /// The worker's slot in the layout.
        slot: usize,
        /// How long until its replacement starts.
        down: Duration,
    },
    /// SIGSTOP of the (slow) worker in slot `slot` while it holds a request, SIGCONT after
    /// `hold`: longer than the brokers' liveness, it is dropped and its request requeued.
    HangWorker {
        /// The worker's slot in the layout (always a slow worker's).
        slot: usize,
        /// How long it stays frozen.
        hold: Duration,
    },
}

/// The kinds of [`Event`], as counted in the soak's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// [`Event::KillBroker`] of the primary.
    KillPrimary,
    /// [`Event::KillBroker`] of the backup.
    KillBackup,
    /// [`Event::FreezeBroker`] for less than a second.
    FreezeShort,
    /// [`Event::FreezeBroker`] for a second or more.
    FreezeLong,
    /// [`Event::PowerCut`].
    PowerCut,
    /// [`Event::KillWorker`].
    KillWorker,
    /// [`Event::HangWorker`].
    HangWorker,
}

/// Freezes of a broker this long or longer are [`EventKind::FreezeLong`].
const LONG_FREEZE: Duration = Duration::from_secs(1);

impl EventKind {
    /// Every kind, in the table's order.
    pub const ALL: [EventKind; 7] = [
        EventKind::KillPrimary,
        EventKind::KillBackup,
        EventKind::FreezeShort,
        EventKind::FreezeLong,
        EventKind::PowerCut,
        EventKind::KillWorker,
        EventKind::HangWorker,
    ];

    /// The kind's name in logs and in the table.
    pub fn label(self) -> &'static str {
        match self {
            EventKind::KillPrimary => "kill -9 + restart of the primary",
            EventKind::KillBackup => "kill -9 + restart of the backup",
            EventKind::FreezeShort => "SIGSTOP/SIGCONT of a broker, < 1 s",
            EventKind::FreezeLong => "SIGSTOP/SIGCONT of a broker, >= 1 s",
            EventKind::PowerCut => "both brokers killed at once",
            EventKind::KillWorker => "kill -9 + restart of a worker",
            EventKind::HangWorker => "a worker hung mid-request",
        }
    }

    /// Its share (in percent) of the events drawn after the opening round.
    pub fn weight(self) -> u32 {
        match self {
            EventKind::KillPrimary | EventKind::KillBackup => 14,
            EventKind::FreezeShort => 9,
            EventKind::FreezeLong => 11,
            EventKind::PowerCut => 8,
            EventKind::KillWorker => 28,
            EventKind::HangWorker => 16,
        }
    }
}

impl Event {
    /// The event's kind.
    pub fn kind(&self) -> EventKind {
        match *self {
            Event::KillBroker {
                side: Side::Primary,
                ..
            } => EventKind::KillPrimary,
            Event::KillBroker { .. } => EventKind::KillBackup,
            Event::FreezeBroker { hold, .. } if hold < LONG_FREEZE => EventKind::FreezeShort,
            Event::FreezeBroker { .. } => EventKind::FreezeLong,
            Event::PowerCut { .. } => EventKind::PowerCut,
            Event::KillWorker { .. } => EventKind::KillWorker,
            Event::HangWorker { .. } => EventKind::HangWorker,
        }
    }

    /// The event's own waits: a lower bound of how long carrying it out takes.
    pub fn nominal(&self) -> Duration {
        match *self {
            Event::KillBroker { down, .. } | Event::KillWorker { down, .. } => down,
            Event::FreezeBroker { hold, .. } | Event::HangWorker { hold, .. } => hold,
            Event::PowerCut { down, gap, .. } => down + gap,
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Event::KillBroker { side, down } => {
                write!(f, "kill -9 the {}, restart after {down:?}", side.role())
            }
            Event::FreezeBroker { active, hold } => write!(
                f,
                "SIGSTOP the {}, SIGCONT after {hold:?}",
                if active { "active" } else { "passive" }
            ),
            Event::PowerCut { down, first, gap } => write!(
                f,
                "kill -9 both brokers, restart the {} after {down:?}, the {} {gap:?} later",
                first.role(),
                first.other().role()
            ),
            Event::KillWorker { slot, down } => {
                write!(f, "kill -9 worker slot {slot}, replace after {down:?}")
            }
            Event::HangWorker { slot, hold } => write!(
                f,
                "SIGSTOP worker slot {slot} mid-request, SIGCONT after {hold:?}"
            ),
        }
    }
}

/// One event of a schedule and when it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// The calm spell before it.
    pub calm: Duration,
    /// Its nominal start from the beginning of the chaos: the calm spells and the events'
    /// own waits before it, settling not counted.
    pub at: Duration,
    /// What happens.
    pub event: Event,
}

/// The soak's workers for `n` slots (at least 2): a third (at least one) `slow` workers
/// (`sh -c` [`SLOW_CMD`], the ones that can be hung mid-request), from 6 slots on one `echo`
/// worker on each broker alone, and `echo` workers on both brokers for the rest.
pub fn worker_layout(n: usize) -> Vec<WorkerSpec> {
    let n = n.max(2);
    let slow = (n / 3).max(1);
    let alone = if n >= 6 { 2 } else { 0 };
    let echo_both = n - slow - alone;
    let mut layout = Vec::with_capacity(n);
    for _ in 0..echo_both {
        layout.push(WorkerSpec::new("echo", WorkerKind::Echo, Reach::Both));
    }
    if alone > 0 {
        layout.push(WorkerSpec::new(
            "echo",
            WorkerKind::Echo,
            Reach::Only(Side::Primary),
        ));
        layout.push(WorkerSpec::new(
            "echo",
            WorkerKind::Echo,
            Reach::Only(Side::Backup),
        ));
    }
    for _ in 0..slow {
        layout.push(WorkerSpec::new(
            "slow",
            WorkerKind::Exec(SLOW_CMD.to_owned()),
            Reach::Both,
        ));
    }
    layout
}

/// The slots of `layout` whose workers can be hung mid-request (the exec workers).
pub fn hang_slots(layout: &[WorkerSpec]) -> Vec<usize> {
    layout
        .iter()
        .enumerate()
        .filter(|(_, w)| matches!(w.kind, WorkerKind::Exec(_)))
        .map(|(slot, _)| slot)
        .collect()
}

/// The schedule of a soak of `duration` with `seed` over the workers of `layout`: events
/// whose nominal start is before `duration`, [`MAX_EVENTS`] at most.
pub fn schedule(seed: u64, duration: Duration, layout: &[WorkerSpec]) -> Vec<Planned> {
    let mut rng = StdRng::seed_from_u64(seed);
    let hangable = hang_slots(layout);
    let possible: Vec<EventKind> = EventKind::ALL
        .into_iter()
        .filter(|k| match k {
            EventKind::KillWorker => !layout.is_empty(),
            EventKind::HangWorker => !hangable.is_empty(),
            _ => true,
        })
        .collect();
    let mut opening = possible.clone();
    opening.shuffle(&mut rng);
    let opening_len = opening.len();
    let total_weight: u32 = possible.iter().map(|k| k.weight()).sum();

    let mut plan = Vec::new();
    let mut at = Duration::ZERO;
    while plan.len() < MAX_EVENTS {
        let calm = between(&mut rng, 300, 2_000);
        at += calm;
        if at >= duration {
            break;
        }
        let kind = match opening.get(plan.len()) {
            Some(kind) => *kind,
            None => by_weight(&mut rng, &possible, total_weight),
        };
        let mut event = draw_event(&mut rng, kind, layout.len(), &hangable);
        if let Event::FreezeBroker { active, .. } = &mut event {
            // The opening round freezes the active: one takeover in every run.
            *active |= plan.len() < opening_len;
        }
        plan.push(Planned { calm, at, event });
        at += event.nominal();
    }
    plan
}

/// A kind drawn from `kinds` by weight.
fn by_weight(rng: &mut StdRng, kinds: &[EventKind], total: u32) -> EventKind {
    let mut roll = rng.gen_range(0..total.max(1));
    for kind in kinds {
        if roll < kind.weight() {
            return *kind;
        }
        roll -= kind.weight();
    }
    kinds[0]
}

/// An event of `kind` with its parameters drawn.
fn draw_event(rng: &mut StdRng, kind: EventKind, slots: usize, hangable: &[usize]) -> Event {
    let side = |rng: &mut StdRng| {
        if rng.gen_bool(0.5) {
            Side::Primary
        } else {
            Side::Backup
        }
    };
    match kind {
        EventKind::KillPrimary => Event::KillBroker {
            side: Side::Primary,
            down: between(rng, 300, 3_000),
        },
        EventKind::KillBackup => Event::KillBroker {
            side: Side::Backup,
            down: between(rng, 300, 3_000),
        },
        EventKind::FreezeShort => Event::FreezeBroker {
            active: rng.gen_bool(0.75),
            hold: between(rng, 100, 900),
        },
        EventKind::FreezeLong => Event::FreezeBroker {
            active: rng.gen_bool(0.75),
            hold: between(rng, 1_000, 4_000),
        },
        EventKind::PowerCut => Event::PowerCut {
            down: between(rng, 300, 3_000),
            first: side(rng),
            gap: between(rng, 0, 3_000),
        },
        EventKind::KillWorker => Event::KillWorker {
            slot: rng.gen_range(0..slots.max(1)),
            down: between(rng, 0, 1_500),
        },
        EventKind::HangWorker => Event::HangWorker {
            slot: hangable.choose(rng).copied().unwrap_or(0),
            hold: between(rng, 200, 4_000),
        },
    }
}

/// A duration drawn uniformly from `[lo_ms, hi_ms]` milliseconds.
fn between(rng: &mut StdRng, lo_ms: u64, hi_ms: u64) -> Duration {
    Duration::from_millis(rng.gen_range(lo_ms..=hi_ms.max(lo_ms)))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn minutes(m: u64) -> Duration {
        Duration::from_secs(60 * m)
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_another() {
        let layout = worker_layout(7);
        let a = schedule(42, minutes(5), &layout);
        assert_eq!(a, schedule(42, minutes(5), &layout));
        assert_ne!(a, schedule(43, minutes(5), &layout));
        // A longer run with the same seed starts with the same events.
        let longer = schedule(42, minutes(30), &layout);
        assert_eq!(&longer[..a.len()], &a[..]);
    }

    #[test]
    fn every_event_is_due_within_the_duration_and_in_order() {
        let layout = worker_layout(7);
        for seed in 0..20 {
            let plan = schedule(seed, minutes(3), &layout);
            assert!(!plan.is_empty());
            let mut previous_end = Duration::ZERO;
            for p in &plan {
                assert!(p.at < minutes(3), "{p:?}");
                assert_eq!(p.at, previous_end + p.calm, "{p:?}");
                previous_end = p.at + p.event.nominal();
            }
        }
    }

    #[test]
    fn the_opening_round_has_one_event_of_each_kind() {
        let layout = worker_layout(7);
        for seed in 0..20 {
            let plan = schedule(seed, minutes(2), &layout);
            let kinds: BTreeSet<EventKind> = plan[..7].iter().map(|p| p.event.kind()).collect();
            assert_eq!(kinds.len(), 7, "seed {seed}: {plan:?}");
            for p in &plan[..7] {
                if let Event::FreezeBroker { active, .. } = p.event {
                    assert!(active, "seed {seed}: the opening round freezes the active");
                }
            }
        }
    }

    #[test]
    fn parameters_stay_in_their_ranges_and_hangs_hit_slow_workers() {
        let layout = worker_layout(7);
        let slow = hang_slots(&layout);
        assert_eq!(slow, vec![5, 6]);
        let plan = schedule(7, minutes(60), &layout);
        for p in &plan {
            assert!(p.calm >= Duration::from_millis(300) && p.calm <= Duration::from_secs(2));
            match p.event {
                Event::KillBroker { down, .. } => assert!(down <= Duration::from_secs(3)),
                Event::FreezeBroker { hold, .. } => assert!(hold <= Duration::from_secs(4)),
                Event::PowerCut { down, gap, .. } => {
                    assert!(down >= Duration::from_millis(300) && gap <= Duration::from_secs(3))
                }
                Event::KillWorker { slot, .. } => assert!(slot < layout.len()),
                Event::HangWorker { slot, .. } => assert!(slow.contains(&slot)),
            }
        }
        // Over an hour, every kind comes up many times.
        for kind in EventKind::ALL {
            let n = plan.iter().filter(|p| p.event.kind() == kind).count();
            assert!(n >= 20, "{kind:?}: {n}");
        }
    }

    #[test]
    fn schedules_are_bounded_and_a_zero_duration_is_empty() {
        let layout = worker_layout(3);
        assert!(schedule(1, Duration::ZERO, &layout).is_empty());
        let huge = schedule(1, Duration::from_secs(10_000_000), &layout);
        assert_eq!(huge.len(), MAX_EVENTS);
    }

    #[test]
    fn the_layout_has_slow_workers_and_both_reaches() {
        let layout = worker_layout(7);
        let count = |f: &dyn Fn(&WorkerSpec) -> bool| layout.iter().filter(|w| f(w)).count();
        assert_eq!(layout.len(), 7);
        assert_eq!(count(&|w| w.service == "slow"), 2);
        assert_eq!(count(&|w| w.reach == Reach::Only(Side::Primary)), 1);
        assert_eq!(count(&|w| w.reach == Reach::Only(Side::Backup)), 1);
        let small = worker_layout(2);
        assert_eq!(
            small.iter().map(|w| w.service.as_str()).collect::<Vec<_>>(),
            ["echo", "slow"]
        );
        assert!(hang_slots(&worker_layout(1)).len() == 1);
    }
}
