//! Two broker cores as a pair on a fake clock, with real sled stores in temp dirs: kills,
//! restarts, freezes, power cuts and the death orders of the restart rule, under Lazy
//! Pirate writers that retry with their write id on the other broker.
//!
//! Asserted throughout: two brokers never serve at once; a broker that serves holds every
//! write acknowledged so far, with the seq its reply carried (so no broker ever serves
//! stale state and no acknowledged write is ever lost or applied twice). At the end both
//! brokers run and agree.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hearth_proto::peer::PeerMessage;
use hearth_proto::status::{BStarState, Role};
use hearth_proto::{ClientMessage, Inbound};
use prometheus::Registry;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::bstar::PairRole;
use crate::dispatch::DispatchConfig;
use crate::pair::Pair;
use crate::peer_link::LinkEvent;
use crate::state::open;
use crate::state::store::Store;

const HB: Duration = Duration::from_millis(100);
const STEP: Duration = Duration::from_millis(5);
const WALL0: u64 = 1_800_000_000_000;

/// One simulated broker: its core (none while dead), its store, and what is in flight to
/// it.
struct Node {
    role: Role,
    dir: PathBuf,
    core: Option<Core>,
    store: Option<std::sync::Arc<Store>>,
    frozen_until: Option<Instant>,
    /// Peer messages on their way to this node, with the step they arrive at (in order).
    inbox: VecDeque<(u64, PeerMessage)>,
    /// Link events for this node.
    events: VecDeque<LinkEvent>,
    /// Rounds handed to the writer, not flushed yet: (round, batch, due step).
    writes: VecDeque<(u64, crate::state::store::Batch, u64)>,
    epoch: u64,
}

impl Node {
    fn new(role: Role, dir: PathBuf) -> Node {
        Node {
            role,
            dir,
            core: None,
            store: None,
            frozen_until: None,
            inbox: VecDeque::new(),
            events: VecDeque::new(),
            writes: VecDeque::new(),
            epoch: 0,
        }
    }

    fn start(&mut self, now: Instant, force_active: bool) {
        self.epoch += 1000;
        let opened =
            open::open(Some(&self.dir), Default::default(), false, now).expect("the store opens");
        let pair_role = if self.role == Role::Primary {
            PairRole::Primary
        } else {
            PairRole::Backup
        };
        let mut pair = Pair::new(pair_role, HB, now, self.epoch);
        pair.restore_term(opened.term);
        let metrics = Metrics::new(&Registry::new(), hearth_proto::status::Role::Standalone)
            .expect("metrics");
        let dispatcher = Dispatcher::new(DispatchConfig::default(), metrics.clone(), now);
        let side = PairSide::new(pair, pair_role, self.epoch, "sim");
        let mut core = Core::new(CoreParts {
            dispatcher,
            pair: Some(side),
            metrics,
            id: Identification {
                role: self.role,
                frontend: "sim".into(),
                publish: None,
                started: now,
            },
            state: opened.state,
            peer_heartbeat: HB,
            force_active,
        });
        core.set_wall_clock(now, WALL0);
        self.core = Some(core);
        self.store = opened.store;
        self.inbox.clear();
        self.events.clear();
        self.writes.clear();
        self.frozen_until = None;
    }

    fn kill(&mut self) {
        self.core = None;
        self.store = None;
        self.writes.clear();
        self.inbox.clear();
        self.events.clear();
    }

    fn alive(&self) -> bool {
        self.core.is_some()
    }

    fn running(&self, now: Instant) -> bool {
        self.alive() && self.frozen_until.is_none_or(|t| now >= t)
    }
}

/// A write in flight from a Lazy Pirate client.
struct Write {
    key: String,
    value: i64,
    id: Vec<u8>,
    target: usize,
    sent_at: Instant,
    started: Instant,
}

struct Sim {
    rng: StdRng,
    t0: Instant,
    now: Instant,
    step: u64,
    nodes: [Node; 2],
    writes: BTreeMap<Vec<u8>, Write>,
    acked: BTreeMap<String, (i64, u64)>,
    next_write: u64,
    log: Vec<String>,
    /// Kill the broker that answers the next write, right after its answer (the window
    /// where a write is acknowledged but may not have reached the peer yet).
    kill_on_ack: bool,
    /// Heartbeats are never lost (for measurements of a healthy pair).
    lossless: bool,
    watch_last: [String; 2],
    _dirs: Vec<TempDir>,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut sim = Sim::unstarted(seed);
        for i in 0..2 {
            sim.start(i, false);
        }
        sim
    }

    /// Two nodes, neither started yet.
    fn unstarted(seed: u64) -> Sim {
        let base = std::env::temp_dir().join(format!(
            "hearth-sim-{}-{seed}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let dirs = vec![TempDir(base.join("primary")), TempDir(base.join("backup"))];
        let t0 = Instant::now();
        Sim {
            rng: StdRng::seed_from_u64(seed),
            t0,
            now: t0,
            step: 0,
            nodes: [
                Node::new(Role::Primary, dirs[0].0.clone()),
                Node::new(Role::Backup, dirs[1].0.clone()),
            ],
            writes: BTreeMap::new(),
            acked: BTreeMap::new(),
            next_write: 0,
            log: Vec::new(),
            kill_on_ack: false,
            lossless: false,
            watch_last: Default::default(),
            _dirs: dirs,
        }
    }

    fn note(&mut self, what: String) {
        let ms = self.now.duration_since(self.t0).as_millis();
        self.log.push(format!("{ms:>6} ms  {what}"));
    }

    fn start(&mut self, i: usize, force: bool) {
        let now = self.now;
        self.nodes[i].start(now, force);
        self.nodes[1 - i].events.push_back(LinkEvent::Ready);
        let role = self.nodes[i].role;
        let found = self.nodes[i].core.as_ref().map(|c| {
            (
                c.state.standing_at_start,
                c.state.seq(),
                c.state.last_term(),
            )
        });
        self.note(format!(
            "start {role}{} (standing, seq, last term: {found:?})",
            if force { " --force-active" } else { "" }
        ));
    }

    fn kill(&mut self, i: usize) {
        let was = self.nodes[i].core.as_ref().map(|c| {
            (
                c.state(),
                c.state.standing_written,
                c.state.flushed_round,
                c.state.seq(),
            )
        });
        self.note(format!("  before the kill: {was:?}"));
        self.nodes[i].kill();
        let step = self.step;
        let other = &mut self.nodes[1 - i];
        // What the dead broker sent that had not arrived yet dies with it.
        other.inbox.retain(|(at, _)| *at <= step);
        if other.alive() {
            other.events.push_back(LinkEvent::Disconnected);
            other.events.push_back(LinkEvent::Gone);
        }
        let role = self.nodes[i].role;
        self.note(format!("kill -9 {role}"));
    }

    fn freeze(&mut self, i: usize, for_: Duration) {
        self.nodes[i].frozen_until = Some(self.now + for_);
        let role = self.nodes[i].role;
        self.note(format!("SIGSTOP {role} for {for_:?}"));
    }

    fn serving(&self) -> Vec<usize> {
        (0..2)
            .filter(|&i| {
                self.nodes[i].running(self.now)
                    && self.nodes[i]
                        .core
                        .as_ref()
                        .is_some_and(|c| c.serving(self.now))
            })
            .collect()
    }

    /// One step of the clock for every node, then the clients.
    fn advance(&mut self) {
        self.step += 1;
        self.now += STEP;
        for i in 0..2 {
            self.run_node(i);
        }
        self.clients();
        let serving = self.serving();
        assert!(
            serving.len() <= 1,
            "two brokers serve at once\n{}",
            self.log.join("\n")
        );
        if self.step.is_multiple_of(10) {
            for i in serving {
                self.check_holds_acked(i);
            }
        }
        if std::env::var_os("HEARTH_SIM_TRACE").is_some() {
            for i in 0..2 {
                self.check_store_matches_model(i);
            }
            if let Ok(key) = std::env::var("HEARTH_SIM_WATCH") {
                for i in 0..2 {
                    let seen = self.nodes[i].core.as_ref().map(|c| {
                        let e = c
                            .state
                            .model()
                            .entries()
                            .find(|(k, _)| *k == key)
                            .map(|(_, e)| e.seq);
                        (
                            c.state(),
                            c.serving(self.now),
                            e,
                            c.state.seq(),
                            c.repl.gate,
                        )
                    });
                    let line = format!("{} {key}: {seen:?}", self.nodes[i].role);
                    if self.watch_last[i] != line {
                        self.watch_last[i] = line.clone();
                        self.note(line);
                    }
                }
            }
        }
    }

    fn run_node(&mut self, i: usize) {
        let now = self.now;
        if !self.nodes[i].running(now) {
            return;
        }
        if self.nodes[i].frozen_until.is_some() {
            self.nodes[i].frozen_until = None;
        }
        let step = self.step;
        let node = &mut self.nodes[i];
        let Some(core) = node.core.as_mut() else {
            return;
        };
        core.set_wall_clock(now, WALL0 + now.duration_since(self.t0).as_millis() as u64);
        core.observe(now);
        // The writer: rounds due by now are written and flushed.
        let mut flushed = None;
        while node.writes.front().is_some_and(|w| w.2 <= step) {
            let Some((round, batch, _)) = node.writes.pop_front() else {
                break;
            };
            if let Some(store) = &node.store {
                store.write(&batch).expect("write");
                store.flush().expect("flush");
            }
            flushed = Some(round);
        }
        if let Some(round) = flushed {
            core.flushed(now, round);
        }
        while let Some(event) = node.events.pop_front() {
            core.link_event(now, event);
        }
        while node.inbox.front().is_some_and(|(at, _)| *at <= step) {
            let Some((_, msg)) = node.inbox.pop_front() else {
                break;
            };
            core.peer_message(now, Ok(msg));
        }
        core.tick(now);
        core.end_round(now);
        let mut out = Vec::new();
        core.take_effects(now, &mut out);
        let delay = self.rng.gen_range(0..3);
        let mut to_peer = Vec::new();
        let mut replies = Vec::new();
        for effect in out {
            match effect {
                Effect::ToPeer(msg) => to_peer.push(msg),
                Effect::Persist(p) => {
                    self.nodes[i]
                        .writes
                        .push_back((p.round, p.batch, step + delay))
                }
                Effect::ToClient { client, msg } => replies.push((client, msg)),
                _ => {}
            }
        }
        // Messages take 1-3 steps; heartbeats are sometimes lost; replication is not (its
        // own connection), but what is in flight when the sender dies is.
        let arrive = step + self.rng.gen_range(1..4);
        for msg in to_peer {
            let lost = !msg.is_replication() && !self.lossless && self.rng.gen_bool(0.02);
            if self.nodes[1 - i].alive() && !lost {
                if std::env::var_os("HEARTH_SIM_TRACE").is_some() {
                    if let PeerMessage::Heartbeat(hb) = &msg {
                        let to = self.nodes[1 - i].role;
                        self.note(format!(
                            "hb to {to}: {} term {} paired {}",
                            hb.state, hb.term, hb.paired
                        ));
                    }
                }
                let inbox = &mut self.nodes[1 - i].inbox;
                let at = inbox.back().map_or(arrive, |(last, _)| arrive.max(*last));
                inbox.push_back((at, msg));
            }
        }
        for (client, msg) in replies {
            self.reply(i, client, msg);
        }
    }

    fn reply(&mut self, from: usize, client: Vec<u8>, msg: ClientMessage) {
        let Some(write) = self.writes.get(&client) else {
            return;
        };
        if write.target != from {
            return; // an attempt the client gave up on
        }
        let body = msg.body.first().cloned().unwrap_or_default();
        let text = String::from_utf8_lossy(&body).into_owned();
        let seq: u64 = text
            .strip_prefix("d3:seqi")
            .and_then(|s| s.strip_suffix("ee"))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not a write reply: {text}\n{}", self.log.join("\n")));
        let Some(write) = self.writes.remove(&client) else {
            return;
        };
        if std::env::var_os("HEARTH_SIM_TRACE").is_some() {
            let role = self.nodes[from].role;
            self.note(format!(
                "ack {} = {} seq {seq} by {role}",
                write.key, write.value
            ));
        }
        self.acked.insert(write.key, (write.value, seq));
        if std::env::var_os("HEARTH_SIM_NOKILL").is_none() && std::mem::take(&mut self.kill_on_ack)
        {
            self.note(format!(
                "(right after it answered {})",
                String::from_utf8_lossy(&client)
            ));
            self.kill(from);
        }
    }

    /// Lazy Pirate clients: a few writes in flight, each retried on the other broker after
    /// 300 ms without an answer.
    fn clients(&mut self) {
        while self.writes.len() < 4 {
            self.next_write += 1;
            let n = self.next_write;
            let id = format!("w{n}").into_bytes();
            let target = self.rng.gen_range(0..2);
            self.writes.insert(
                id.clone(),
                Write {
                    key: format!("k/{n}"),
                    value: n as i64,
                    id,
                    target,
                    sent_at: self.now - Duration::from_secs(1),
                    started: self.now,
                },
            );
        }
        let now = self.now;
        let due: Vec<Vec<u8>> = self
            .writes
            .iter()
            .filter(|(_, w)| now >= w.sent_at + Duration::from_millis(300))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some(w) = self.writes.get_mut(&id) else {
                continue;
            };
            let first = w.sent_at < w.started;
            if !first {
                w.target = 1 - w.target;
            }
            w.sent_at = now;
            let body = format!("d{}:{}i{}ee", w.key.len(), w.key, w.value).into_bytes();
            let (target, wid) = (w.target, w.id.clone());
            let node = &mut self.nodes[target];
            if node.running(now) {
                if let Some(core) = node.core.as_mut() {
                    core.frontend(
                        now,
                        wid.clone(),
                        Inbound::Client(ClientMessage {
                            service: "state.set".into(),
                            body: vec![body, wid],
                        }),
                    );
                }
            }
        }
    }

    /// With nothing in flight to its store, a broker's store holds exactly its model.
    fn check_store_matches_model(&self, i: usize) {
        let node = &self.nodes[i];
        let (Some(core), Some(store)) = (&node.core, &node.store) else {
            return;
        };
        if !node.writes.is_empty() || !core.state.idle() {
            return;
        }
        let loaded = store.load().expect("load");
        let on_disk: BTreeMap<String, u64> = loaded
            .entries
            .iter()
            .map(|(k, e)| (k.clone(), e.seq))
            .collect();
        let in_memory: BTreeMap<String, u64> = core
            .state
            .model()
            .entries()
            .map(|(k, e)| (k.to_owned(), e.seq))
            .collect();
        if on_disk != in_memory {
            let missing: Vec<_> = in_memory
                .iter()
                .filter(|(k, v)| on_disk.get(*k) != Some(v))
                .collect();
            let extra: Vec<_> = on_disk
                .iter()
                .filter(|(k, v)| in_memory.get(*k) != Some(v))
                .collect();
            panic!(
                "the {}'s store differs from its model (seq {} vs {}): not on disk {missing:?}, only on disk {extra:?}\n{}",
                node.role,
                loaded.last_seq,
                core.state.seq(),
                self.log.join("\n")
            );
        }
    }

    /// A serving broker holds every acknowledged write with its seq.
    fn check_holds_acked(&self, i: usize) {
        let Some(core) = &self.nodes[i].core else {
            return;
        };
        let model = core.state.model();
        let entries: BTreeMap<&str, &crate::state::Entry> = model.entries().collect();
        for (key, (value, seq)) in &self.acked {
            let found = entries.get(key.as_str());
            let ok = found
                .is_some_and(|e| e.seq == *seq && e.value == format!("i{value}e").into_bytes());
            assert!(
                ok,
                "the {} serves without acknowledged write {key} = {value} (seq {seq}); it has {:?}\n{}",
                self.nodes[i].role,
                found,
                self.log.join("\n")
            );
        }
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        while self.now < until {
            self.advance();
        }
    }

    fn state_of(&self, i: usize) -> Option<BStarState> {
        self.nodes[i].core.as_ref().map(|c| c.state())
    }

    /// Runs until `done` holds, at most `limit` of simulated time.
    fn run_until(&mut self, what: &str, limit: Duration, done: impl Fn(&Sim) -> bool) {
        let until = self.now + limit;
        while !done(self) {
            assert!(self.now < until, "never: {what}\n{}", self.log.join("\n"));
            self.advance();
        }
    }

    fn settled(&self) -> bool {
        let states = [self.state_of(0), self.state_of(1)];
        let seqs = [0, 1].map(|i| self.nodes[i].core.as_ref().map(|c| c.state.seq()));
        matches!(
            states,
            [Some(BStarState::Active), Some(BStarState::Passive)]
                | [Some(BStarState::Passive), Some(BStarState::Active)]
        ) && seqs[0] == seqs[1]
    }

    fn finish(&mut self) {
        self.kill_on_ack = false;
        for i in 0..2 {
            if !self.nodes[i].alive() {
                self.start(i, false);
            }
            self.nodes[i].frozen_until = None;
        }
        self.run_until(
            "the pair settles with equal seqs",
            Duration::from_secs(30),
            Sim::settled,
        );
        self.run_for(Duration::from_secs(1));
        // A lost heartbeat can leave the active unsure for a moment: wait until it serves.
        self.run_until("one broker serves", Duration::from_secs(5), |s| {
            s.serving().len() == 1
        });
        let active = self.serving();
        self.check_holds_acked(active[0]);
        assert!(
            self.acked.len() > 10,
            "writes were acknowledged: {}",
            self.acked.len()
        );
    }
}

#[test]
fn random_kills_freezes_and_restarts_lose_no_acknowledged_write() {
    let seeds = match std::env::var("HEARTH_SIM_SEED") {
        Ok(seed) => seed.parse().map(|s: u64| s..s + 1).unwrap_or(0..16),
        Err(_) => 0..16u64,
    };
    if std::env::var_os("HEARTH_SIM_TRACE").is_some() {
        let _ = tracing_subscriber::fmt().with_env_filter("info").try_init();
    }
    for seed in seeds {
        let mut sim = Sim::new(seed);
        println!("seed {seed}");
        sim.run_until("the pair settles", Duration::from_secs(10), Sim::settled);
        for _ in 0..16 {
            let pause = Duration::from_millis(sim.rng.gen_range(100..1500));
            sim.run_for(pause);
            let i = sim.rng.gen_range(0..2);
            match sim.rng.gen_range(0..8) {
                0 | 1 if sim.nodes[i].alive() => sim.kill(i),
                0..=3 if !sim.nodes[i].alive() => sim.start(i, false),
                2 | 3 if sim.nodes[i].running(sim.now) => {
                    let ms = sim.rng.gen_range(50..800);
                    sim.freeze(i, Duration::from_millis(ms));
                }
                5 | 6 if sim.nodes[i].alive() => sim.kill_on_ack = true,
                4 if sim.nodes[0].alive() && sim.nodes[1].alive() => {
                    sim.note("power cut".into());
                    sim.kill(0);
                    sim.kill(1);
                }
                _ => {
                    // Nobody left running: bring one back, so the run goes on.
                    if !sim.nodes[0].alive() && !sim.nodes[1].alive() {
                        sim.start(i, false);
                    }
                }
            }
        }
        sim.finish();
        println!(
            "seed {seed}: {} writes acknowledged, {} events",
            sim.acked.len(),
            sim.log.len()
        );
    }
}

/// The three death orders of the restart rule, and a power cut.
#[test]
fn death_orders_of_the_restart_rule() {
    let active = |s: &Sim, i: usize| s.state_of(i) == Some(BStarState::Active);
    // 1. The active dies, then the passive: the passive (which went on alone) serves at
    //    once when restarted alone; the old active restarted alone would wait.
    let mut sim = Sim::new(100);
    sim.run_until("settled", Duration::from_secs(10), Sim::settled);
    sim.run_for(Duration::from_secs(1));
    sim.kill(0);
    sim.run_until("the backup takes over", Duration::from_secs(5), |s| {
        active(s, 1)
    });
    sim.run_for(Duration::from_secs(1));
    sim.kill(1);
    sim.start(0, false);
    sim.run_for(Duration::from_secs(2));
    assert!(
        !active(&sim, 0),
        "the old active must wait\n{}",
        sim.log.join("\n")
    );
    sim.kill(0);
    sim.start(1, false);
    sim.run_until("the backup serves alone", Duration::from_secs(5), |s| {
        active(s, 1)
    });
    sim.finish();

    // 2. A power cut: both wait alone, and settle together.
    let mut sim = Sim::new(101);
    sim.run_until("settled", Duration::from_secs(10), Sim::settled);
    sim.run_for(Duration::from_secs(1));
    sim.kill(0);
    sim.kill(1);
    for i in 0..2 {
        sim.start(i, false);
        sim.run_for(Duration::from_secs(2));
        assert!(
            !active(&sim, i),
            "must wait after a power cut\n{}",
            sim.log.join("\n")
        );
        sim.kill(i);
    }
    sim.finish();

    // 3. The passive dies, the active goes on alone and dies, the old passive restarts
    //    first: it waits; --force-active overrides.
    let mut sim = Sim::new(102);
    sim.run_until("settled", Duration::from_secs(10), Sim::settled);
    sim.run_for(Duration::from_secs(1));
    sim.kill(1);
    sim.run_for(Duration::from_secs(1));
    sim.kill(0);
    sim.start(1, false);
    sim.run_for(Duration::from_secs(2));
    assert!(
        !active(&sim, 1),
        "the old passive must wait\n{}",
        sim.log.join("\n")
    );
    sim.start(0, false);
    sim.finish();
}

/// A healthy pair (no faults, no lost heartbeat), the backup started `offset` after the
/// primary: the share of steps in which the active is active but does not serve.
fn paused_share(seed: u64, offset: Duration, run: Duration) -> (u64, u64) {
    let mut sim = Sim::unstarted(seed);
    sim.lossless = true;
    sim.start(0, false);
    sim.run_for(offset);
    sim.start(1, false);
    sim.run_until("the pair settles", Duration::from_secs(10), Sim::settled);
    sim.run_for(Duration::from_secs(1));
    let until = sim.now + run;
    let (mut steps, mut paused) = (0, 0);
    while sim.now < until {
        sim.advance();
        let active: Vec<usize> = (0..2)
            .filter(|&i| sim.state_of(i) == Some(BStarState::Active))
            .collect();
        assert_eq!(active.len(), 1, "{}", sim.log.join("\n"));
        steps += 1;
        if sim.serving().is_empty() {
            paused += 1;
        }
    }
    (paused, steps)
}

/// A healthy pair's active never holds client requests, whatever the phase of its peer's
/// heartbeats (the peer acknowledges the active's beats promptly, so the lease never lapses
/// between two acknowledgements).
#[test]
fn a_healthy_pairs_active_never_pauses() {
    let mut total = (0, 0);
    for k in 0..10u64 {
        let offset = STEP * (2 * k) as u32;
        let (paused, steps) = paused_share(k, offset, Duration::from_secs(10));
        println!("backup started {offset:?} after the primary: paused {paused}/{steps} steps");
        total.0 += paused;
        total.1 += steps;
    }
    assert_eq!(
        total.0, 0,
        "the active paused {}/{} steps",
        total.0, total.1
    );
}
