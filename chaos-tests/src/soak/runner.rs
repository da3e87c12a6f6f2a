//! Carrying out the soak's events on a running pair.
//!
//! [`Runner`] wraps a [`PairScenario`] (the pair, its dual-active watch, the worker
//! replacements due) and adds what the soak needs beyond the pair test's events: worker
//! *slots* (the layout's workers, each slot naming the worker that now fills it, so that a
//! schedule can say "worker slot 3" before any worker exists), freezes of either broker for
//! any time (short ones may cause no takeover), the power cut, the hung worker, the brokers'
//! peak memory, and what each event led to.
//!
//! Every broker event starts once the pair has settled (one active, one passive, every
//! worker registered with both); before the active is killed or frozen, the passive is given
//! a moment to catch up with its state model, so that it may take over (a passive that is
//! not in sync must not). Signals go only to processes this harness started: brokers through
//! [`crate::Pair`], workers through the process guard [`hearth_supervise::Pair::workers`]
//! still holds (an unreaped child, so the PID cannot have been reused).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::cluster::http_get_within;
use crate::metrics;
use crate::pair::{Side, WorkerSpec, SAMPLE_TIMEOUT};
use crate::pair_scenario::{PairScenario, EVENT_TIMEOUT};
use crate::POLL;

mod takeover;
mod workers;

pub use takeover::{peer_seen, PeerSeen, Takeover, TakeoverJudge, HELD_FOR};

use super::rss::PeakMemory;
use super::schedule::{Event, EventKind, Planned};

/// How often the brokers' memory is read while the soak idles.
const MEMORY_EVERY: Duration = Duration::from_secs(1);
/// How long the passive may take to catch up before the active is killed or frozen.
const CATCH_UP: Duration = Duration::from_secs(5);

/// One worker of the layout and the worker that now fills its slot.
#[derive(Debug, Clone)]
struct Slot {
    spec: WorkerSpec,
    id: Option<usize>,
}

/// One event carried out: its kind, its number in the schedule, and when it began and the
/// pair had settled again.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    /// The event's kind.
    pub kind: EventKind,
    /// Its index in the schedule.
    pub number: usize,
    /// When it began.
    pub from: Instant,
    /// When it was over.
    pub until: Instant,
}

/// A takeover the restart rule held back: the active was killed (or frozen) and the
/// passive, which might have missed writes the active acknowledged alone, did not serve;
/// the event went on with the killed broker's restart (or the thaw).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBack {
    /// The event's number in the schedule.
    pub number: usize,
    /// What happened.
    pub event: String,
    /// The passive's `waiting_for_peer`.
    pub reason: String,
}

/// What the events did and led to.
#[derive(Debug, Clone, Default)]
pub struct EventCounts {
    /// Events carried out, by kind.
    pub done: BTreeMap<EventKind, u64>,
    /// Events skipped (a worker slot whose replacement had not started yet), by kind.
    pub skipped: BTreeMap<EventKind, u64>,
    /// The longest an event of each kind took, from its start to the pair settled again.
    pub longest: BTreeMap<EventKind, Duration>,
    /// Broker kills that hit the active (the rest hit the passive).
    pub kills_of_the_active: u64,
    /// Freezes of the active (the rest froze the passive).
    pub freezes_of_the_active: u64,
    /// Freezes of the active during which the peer took over.
    pub freeze_takeovers: u64,
    /// Takeovers the restart rule held back (designed behaviour, counted, not a failure).
    pub held_back: Vec<HeldBack>,
    /// Power cuts after which the broker started first served at once (standing *alone*).
    pub cut_first_served: u64,
    /// Power cuts after which the broker started first waited for its peer.
    pub cut_first_waited: u64,
    /// Worker hangs that caught the worker holding a request.
    pub hangs_mid_request: u64,
    /// Worker hangs longer than the brokers' liveness (the worker is dropped, its request
    /// requeued).
    pub hangs_past_liveness: u64,
}

/// The pair under the soak's events; see the module documentation.
pub struct Runner {
    /// The pair, its watch and the pending worker replacements.
    pub scenario: PairScenario,
    /// The brokers' peak memory.
    pub memory: PeakMemory,
    /// What the events did.
    pub counts: EventCounts,
    /// Every event carried out.
    pub spans: Vec<Span>,
    /// Dual answers the runner found itself (beyond the watch's).
    pub violations: Vec<String>,
    /// How often the active side differed from the one seen at the settle before.
    pub active_changes: u64,
    slots: Vec<Slot>,
    last_active: Option<Side>,
    last_memory: Option<Instant>,
    /// The number of the event being carried out.
    current: usize,
    /// A worker SIGSTOPped by a hang and not thawed yet.
    hung: Option<usize>,
}

impl Runner {
    /// Starts a worker for every slot of `layout` and waits until the pair has settled.
    pub fn start(mut scenario: PairScenario, layout: &[WorkerSpec]) -> anyhow::Result<Runner> {
        let mut slots = Vec::new();
        for spec in layout {
            let id = scenario.pair.add_worker(spec)?;
            slots.push(Slot {
                spec: spec.clone(),
                id: Some(id),
            });
        }
        let mut runner = Runner {
            scenario,
            memory: PeakMemory::default(),
            counts: EventCounts::default(),
            spans: Vec::new(),
            violations: Vec::new(),
            active_changes: 0,
            slots,
            last_active: None,
            last_memory: None,
            current: 0,
            hung: None,
        };
        runner.settle()?;
        Ok(runner)
    }

    /// Prints `what` with the time since the soak began.
    pub fn log(&self, what: impl AsRef<str>) {
        self.scenario.log(what);
    }

    /// Lets `how_long` pass: crashes checked, replacements started, brokers sampled (for the
    /// dual-active watch, and their memory every second).
    pub fn idle(&mut self, how_long: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + how_long;
        loop {
            self.scenario.tick()?;
            if self
                .last_memory
                .map_or(true, |t| t.elapsed() >= MEMORY_EVERY)
            {
                self.last_memory = Some(Instant::now());
                self.memory.sample_both(&self.scenario.pair);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(POLL.min(left));
        }
    }

    /// Waits until the pair has settled (see [`PairScenario::settle`]); returns the active.
    pub fn settle(&mut self) -> anyhow::Result<Side> {
        let active = self.scenario.settle()?;
        if self.last_active.is_some_and(|last| last != active) {
            self.active_changes += 1;
        }
        self.last_active = Some(active);
        Ok(active)
    }

    /// Carries out event `number` of the schedule, whole.
    pub fn execute(&mut self, number: usize, planned: &Planned) -> anyhow::Result<()> {
        let kind = planned.event.kind();
        let from = Instant::now();
        self.current = number;
        self.log(format!("event {number}: {}", planned.event));
        let done = match planned.event {
            Event::KillBroker { side, down } => self.kill_broker(side, down).map(|()| true),
            Event::FreezeBroker { active, hold } => self.freeze_broker(active, hold).map(|()| true),
            Event::PowerCut { down, first, gap } => self.power_cut(down, first, gap).map(|()| true),
            Event::KillWorker { slot, down } => self.kill_worker(slot, down),
            Event::HangWorker { slot, hold } => self.hang_worker(slot, hold),
        }?;
        let until = Instant::now();
        if done {
            *self.counts.done.entry(kind).or_default() += 1;
            // A worker kill is over at once; its replacement starts later, on its own.
            if kind != EventKind::KillWorker {
                let longest = self.counts.longest.entry(kind).or_default();
                *longest = (*longest).max(until - from);
            }
            self.spans.push(Span {
                kind,
                number,
                from,
                until,
            });
        } else {
            *self.counts.skipped.entry(kind).or_default() += 1;
        }
        Ok(())
    }

    fn kill_broker(&mut self, side: Side, down: Duration) -> anyhow::Result<()> {
        let active = self.settle()?;
        if side == active {
            self.catch_up(active);
        }
        self.memory.sample(&self.scenario.pair, side);
        if side == active {
            self.counts.kills_of_the_active += 1;
            self.kill_the_active(side, down)?;
        } else {
            self.scenario.kill_passive(down)?;
        }
        self.settle().map(drop)
    }

    /// SIGSTOP of the active (or the passive) for `hold`, SIGCONT, and the pair settled
    /// again. If the peer took over meanwhile, the frozen broker is deposed from the moment
    /// of the freeze (it must answer nothing sent after it until it fails over itself); if
    /// not, it was the only active all along. The passive's reply count is watched through
    /// the event.
    fn freeze_broker(&mut self, freeze_active: bool, hold: Duration) -> anyhow::Result<()> {
        let active = self.settle()?;
        let side = if freeze_active {
            active
        } else {
            active.other()
        };
        let was_active = freeze_active;
        let peer = side.other();
        if was_active {
            self.catch_up(active);
        }
        let before = self.scenario.pair.sample(side)?;
        let peer_before = self.scenario.pair.sample(peer)?;
        self.memory.sample(&self.scenario.pair, side);
        self.scenario.watch.peer_event(side);
        let what = format!(
            "SIGSTOP the {} {}",
            if was_active { "active" } else { "passive" },
            self.scenario.pair.describe(side)
        );
        self.scenario.pair.freeze_broker(side)?;
        let frozen_at = Instant::now();
        self.log(&what);
        self.idle(hold)?;
        // Past a takeover's time, a peer still passive may be held back by the restart rule.
        let peer_seen = (was_active && hold >= self.scenario.pair.options().peer_heartbeat * 3)
            .then(|| takeover::observe_peer(self, peer));
        self.scenario.pair.thaw_broker(side)?;
        self.log(format!(
            "SIGCONT the {} after {:?}",
            side.role(),
            frozen_at.elapsed()
        ));
        self.end_quiet();
        let now_active = self
            .scenario
            .wait("the pair to settle", EVENT_TIMEOUT, |s| {
                s.pair.settled().ok_or_else(|| "not settled".to_owned())
            })?;
        let peer_after = self.scenario.pair.sample(peer)?;
        let took_over = was_active && peer_after.failovers > peer_before.failovers;
        if was_active {
            self.counts.freezes_of_the_active += 1;
        }
        if took_over {
            self.counts.freeze_takeovers += 1;
            self.scenario.watch.frozen(side, frozen_at, &before, what);
        } else if let Some(PeerSeen::Waiting(reason)) = peer_seen {
            self.log(format!(
                "takeover refused by the restart rule during the freeze: {reason}"
            ));
            self.held_back(peer, "SIGSTOP of the active", reason);
        }
        self.log(format!(
            "{}; the {} is active",
            if took_over {
                "the peer took over during the freeze"
            } else {
                "no takeover"
            },
            now_active.role()
        ));
        self.settle().map(drop)
    }

    /// Both brokers killed at once, `first` started again after `down`, the other `gap`
    /// later; the pair must settle by itself (the restart rule decides who serves). The
    /// broker that comes back passive must not have answered a request.
    fn power_cut(&mut self, down: Duration, first: Side, gap: Duration) -> anyhow::Result<()> {
        let active = self.settle()?;
        self.memory.sample_both(&self.scenario.pair);
        self.end_quiet();
        let what = format!(
            "kill -9 both brokers: {} and {}",
            self.scenario.pair.describe(active),
            self.scenario.pair.describe(active.other())
        );
        self.scenario.pair.kill_broker(active);
        self.scenario.pair.kill_broker(active.other());
        self.scenario.watch.power_cut();
        self.log(what);
        self.idle(down)?;
        self.scenario.pair.start_broker(first)?;
        self.log(format!("restarted {}", self.scenario.pair.describe(first)));
        self.idle(gap)?;
        let state = self.scenario.pair.sample(first).ok().and_then(|s| s.state);
        if state.as_deref() == Some("active") {
            self.counts.cut_first_served += 1;
        } else {
            self.counts.cut_first_waited += 1;
        }
        let second = first.other();
        self.scenario.pair.start_broker(second)?;
        self.log(format!(
            "the {} is {state:?}; restarted {}",
            first.role(),
            self.scenario.pair.describe(second)
        ));
        let active = self.settle()?;
        let passive = self.scenario.pair.sample(active.other())?;
        if passive.failovers == 0 && passive.replies > 0 {
            self.violations.push(format!(
                "after a power cut the {} came back passive, beside the active {}, having \
                 sent {} replies to clients without a failover",
                active.other().role(),
                active.role(),
                passive.replies
            ));
        }
        self.log(format!(
            "settled after the power cut: the {} is active",
            active.role()
        ));
        Ok(())
    }

    /// Gives the passive up to [`CATCH_UP`] to reach the seq the active has now, then two
    /// peer heartbeats for the active to tell it that it counts it in sync; logs (and goes
    /// on) if it does not.
    fn catch_up(&mut self, active: Side) {
        let Some(target) = self.state_seq(active) else {
            return;
        };
        let passive = active.other();
        if self.state_seq(passive).is_some_and(|seq| seq >= target) {
            return;
        }
        let waited = self
            .scenario
            .wait("the passive to catch up", CATCH_UP, |s| {
                let seq = state_seq_of(s, passive);
                match seq {
                    Some(seq) if seq >= target => Ok(()),
                    other => Err(format!("at seq {other:?}, the active was at {target}")),
                }
            });
        match waited {
            Ok(()) => {
                let beats = self.scenario.pair.options().peer_heartbeat * 2;
                if let Err(e) = self.idle(beats) {
                    self.log(format!("{e:#}"));
                }
            }
            Err(e) => self.log(format!("going on: {e:#}")),
        }
    }

    fn state_seq(&mut self, side: Side) -> Option<u64> {
        state_seq_of(&mut self.scenario, side)
    }

    /// Ends the passive's quiet period (its reply count must not have moved unless it
    /// failed over) with two samples of each running broker; a broker that does not answer
    /// is logged and left unchecked.
    pub fn end_quiet(&mut self) {
        for side in Side::BOTH {
            if !self.scenario.pair.is_up(side) || self.scenario.pair.is_frozen(side) {
                continue;
            }
            let first = self.scenario.pair.sample(side);
            let later = self.scenario.pair.sample(side);
            match (first, later) {
                (Ok(first), Ok(later)) => self.scenario.watch.quiet_end(side, &first, &later),
                (Err(e), _) | (_, Err(e)) => self.log(format!(
                    "the {} did not answer; its quiet period goes unchecked: {e:#}",
                    side.role()
                )),
            }
        }
    }

    /// Brings back whatever the chaos phase left down, however it stopped: a frozen broker
    /// thawed and a killed one started again (by the harness's own processes), every
    /// worker slot filled; then waits until the pair has settled. Says precisely what
    /// failed, with both brokers' `/status`.
    pub fn recover(&mut self) -> anyhow::Result<Side> {
        let mut problems = Vec::new();
        // Crashes were reported when the chaos phase stopped; reap any since, so that the
        // restarts below are not refused for them.
        if let Err(e) = self.scenario.pair.check_alive() {
            problems.push(format!("{e:#}"));
        }
        for side in Side::BOTH {
            if self.scenario.pair.is_frozen(side) {
                match self.scenario.pair.thaw_broker(side) {
                    Ok(()) => self.log(format!("recovery: SIGCONT the {}", side.role())),
                    Err(e) => problems.push(format!("thawing the {}: {e:#}", side.role())),
                }
            }
        }
        for side in Side::BOTH {
            if !self.scenario.pair.is_up(side) {
                self.log(format!("recovery: the {} is down", side.role()));
                if let Err(e) = self.start_down_broker(side) {
                    problems.push(format!("{e:#}"));
                }
            }
        }
        if let Err(e) = self.recover_workers() {
            problems.push(format!("bringing the workers back: {e:#}"));
        }
        match self.settle() {
            Ok(active) if problems.is_empty() => Ok(active),
            Ok(_) => anyhow::bail!("the pair settled, but: {}", problems.join("; ")),
            Err(e) => {
                problems.push(format!("{e:#}"));
                anyhow::bail!(
                    "{}; the brokers: {}",
                    problems.join("; "),
                    self.describe_brokers()
                )
            }
        }
    }

    /// Where the brokers stand, for error messages: each one's `/status`.
    pub fn describe_brokers(&self) -> String {
        describe(&self.scenario)
    }
}

/// `hearth_state_seq` of `side`, if it runs unfrozen and answers.
fn state_seq_of(scenario: &mut PairScenario, side: Side) -> Option<u64> {
    let pair = &scenario.pair;
    if !pair.is_up(side) || pair.is_frozen(side) {
        return None;
    }
    let text = http_get_within(pair.metrics_addr(side), "/metrics", SAMPLE_TIMEOUT).ok()?;
    Some(metrics::sum(&metrics::parse(&text), "hearth_state_seq") as u64)
}

/// Each broker's `/status`, or why it could not be read.
pub fn describe(scenario: &PairScenario) -> String {
    let pair = &scenario.pair;
    Side::BOTH
        .map(|side| {
            let status = if pair.is_frozen(side) {
                "frozen".to_owned()
            } else {
                http_get_within(pair.metrics_addr(side), "/status", SAMPLE_TIMEOUT)
                    .unwrap_or_else(|e| format!("{e:#}"))
            };
            format!("{}: {status}", side.role())
        })
        .join("; ")
}
