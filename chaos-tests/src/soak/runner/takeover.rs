//! The takeover after a kill of the active, and what the soak does when the passive does
//! not take over because hearth's restart rule holds it back.
//!
//! A passive that may have missed writes the active acknowledged alone must not serve when
//! the active falls silent (see the README's "The restart rule: never serve stale"): a
//! passive that was starved or just restarted when the active died says so in its `/status`
//! (`waiting_for_peer`) and waits for its peer. That is the designed behaviour, not a bug:
//! the soak records the event as a *takeover held back by the restart rule* (with the
//! reason), starts the killed broker again as the event says, and waits for the pair to
//! settle. A passive that neither takes over nor says that the restart rule holds it back
//! is still a failure.
//!
//! [`TakeoverJudge`] is the pure part: it decides from what the passive reports, poll
//! after poll, whether it took over, is held back (its `waiting_for_peer` reported for
//! [`HELD_FOR`] without a break, or still at the deadline), or neither.

use std::time::{Duration, Instant};

use crate::cluster::http_get_within;
use crate::pair::{Side, SAMPLE_TIMEOUT};
use crate::pair_scenario::EVENT_TIMEOUT;

use super::{HeldBack, Runner};

/// How long the passive must report `waiting_for_peer` without a break, with its active
/// peer dead, to count as held back by the restart rule (a takeover takes 2.5 peer
/// heartbeats, 750 ms in the soak).
pub const HELD_FOR: Duration = Duration::from_secs(3);

/// What the passive reported in one poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerSeen {
    /// It is active.
    Active,
    /// It is not active, and its `/status` says the restart rule holds it back.
    Waiting(String),
    /// It is not active (its state, or why it could not be read).
    Other(String),
}

/// What became of the takeover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Takeover {
    /// The passive took over.
    Done,
    /// The restart rule holds the passive back, for this reason.
    HeldBack(String),
}

/// Decides, poll after poll, whether the passive took over or is held back; see the module
/// documentation.
#[derive(Debug, Clone, Default)]
pub struct TakeoverJudge {
    /// The reason reported without a break, and since when.
    waiting: Option<(Instant, String)>,
    /// The last thing seen, for the error.
    last: Option<PeerSeen>,
}

impl TakeoverJudge {
    /// Takes in the poll made at `at`; the outcome once it is decided.
    pub fn see(&mut self, at: Instant, seen: PeerSeen) -> Option<Takeover> {
        self.last = Some(seen.clone());
        match seen {
            PeerSeen::Active => {
                self.waiting = None;
                Some(Takeover::Done)
            }
            PeerSeen::Waiting(reason) => {
                let since = match &self.waiting {
                    Some((since, _)) => *since,
                    None => at,
                };
                self.waiting = Some((since, reason.clone()));
                (at.saturating_duration_since(since) >= HELD_FOR)
                    .then_some(Takeover::HeldBack(reason))
            }
            PeerSeen::Other(_) => {
                self.waiting = None;
                None
            }
        }
    }

    /// The outcome at the deadline: held back if the last poll said so, else an error
    /// naming what was last seen.
    pub fn at_deadline(&self) -> Result<Takeover, String> {
        match &self.last {
            Some(PeerSeen::Active) => Ok(Takeover::Done),
            Some(PeerSeen::Waiting(reason)) => Ok(Takeover::HeldBack(reason.clone())),
            Some(PeerSeen::Other(what)) => Err(format!(
                "it did not take over, and the restart rule does not hold it back; last \
                 seen: {what}"
            )),
            None => Err("it was never seen".to_owned()),
        }
    }
}

/// What a broker's `/status` JSON says: `state` and `waiting_for_peer`.
pub fn peer_seen(status: &str) -> PeerSeen {
    let json: serde_json::Value = match serde_json::from_str(status) {
        Ok(json) => json,
        Err(e) => return PeerSeen::Other(format!("unreadable /status ({e}): {status}")),
    };
    let state = json.get("state").and_then(|s| s.as_str()).unwrap_or("?");
    if state == "active" {
        return PeerSeen::Active;
    }
    match json.get("waiting_for_peer").and_then(|w| w.as_str()) {
        Some(reason) if !reason.is_empty() => PeerSeen::Waiting(reason.to_owned()),
        _ => PeerSeen::Other(format!("state {state}, not waiting for its peer")),
    }
}

/// Reads `side`'s `/status` (a frozen or down broker is not asked).
pub(super) fn observe_peer(runner: &Runner, side: Side) -> PeerSeen {
    let pair = &runner.scenario.pair;
    if !pair.is_up(side) {
        return PeerSeen::Other("down".to_owned());
    }
    if pair.is_frozen(side) {
        return PeerSeen::Other("frozen".to_owned());
    }
    match http_get_within(pair.metrics_addr(side), "/status", SAMPLE_TIMEOUT) {
        Ok(status) => peer_seen(&status),
        Err(e) => PeerSeen::Other(format!("GET /status: {e:#}")),
    }
}

impl Runner {
    /// kill -9 of the active `victim` (the pair settled, its quiet periods ended by the
    /// caller); the passive must take over, or be held back by the restart rule; after
    /// `down` the victim is started again and the pair must settle.
    pub(super) fn kill_the_active(&mut self, victim: Side, down: Duration) -> anyhow::Result<()> {
        self.end_quiet();
        self.kill_active_now(victim);
        self.after_the_kill(victim, down)
    }

    /// The held-back takeover, forced (for `tests/soak.rs`): with the pair settled, the
    /// passive is SIGSTOPped, the active killed at once, and the passive thawed after
    /// `stall` (longer than a peer heartbeat: once thawed it knows it was not running and
    /// serves nothing until its peer's news arrives); the active is restarted after `down`. The
    /// passive must take over or be held back by the restart rule; either way the pair
    /// must settle again. Returns whether it was held back.
    pub fn kill_the_active_past_a_stalled_passive(
        &mut self,
        stall: Duration,
        down: Duration,
    ) -> anyhow::Result<bool> {
        let active = self.settle()?;
        let passive = active.other();
        self.end_quiet();
        self.scenario.pair.freeze_broker(passive)?;
        self.log(format!("SIGSTOP the passive {}", passive.role()));
        self.counts.kills_of_the_active += 1;
        self.kill_active_now(active);
        self.idle(stall)?;
        self.scenario.pair.thaw_broker(passive)?;
        self.log(format!("SIGCONT the {}", passive.role()));
        let before = self.counts.held_back.len();
        self.after_the_kill(active, down)?;
        Ok(self.counts.held_back.len() > before)
    }

    fn kill_active_now(&mut self, victim: Side) {
        let scenario = &mut self.scenario;
        scenario.watch.peer_event(victim);
        let what = format!("kill -9 the active {}", scenario.pair.describe(victim));
        scenario.pair.kill_broker(victim);
        scenario.watch.killed(victim, Instant::now(), what.clone());
        scenario.counts.broker_kills += 1;
        self.log(&what);
    }

    fn after_the_kill(&mut self, victim: Side, down: Duration) -> anyhow::Result<()> {
        let peer = victim.other();
        match self.await_takeover(peer)? {
            Takeover::Done => {
                self.log(format!("the {} is active", peer.role()));
                self.idle(down)?;
                self.restart(victim, true)
            }
            Takeover::HeldBack(reason) => {
                self.log(format!(
                    "takeover refused by the restart rule: the {} stays passive: {reason}",
                    peer.role()
                ));
                self.held_back(peer, "kill -9 of the active", reason);
                self.idle(down)?;
                self.restart(victim, false)
            }
        }
    }

    /// Polls `peer` until it is active or the restart rule is seen holding it back, up to
    /// [`EVENT_TIMEOUT`].
    fn await_takeover(&mut self, peer: Side) -> anyhow::Result<Takeover> {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        let mut judge = TakeoverJudge::default();
        loop {
            self.scenario.tick()?;
            let seen = observe_peer(self, peer);
            if let Some(outcome) = judge.see(Instant::now(), seen) {
                return Ok(outcome);
            }
            if Instant::now() >= deadline {
                return judge.at_deadline().map_err(|e| {
                    anyhow::anyhow!(
                        "timed out after {EVENT_TIMEOUT:?} waiting for the {} to take over: \
                         {e}; the brokers: {}",
                        peer.role(),
                        self.describe_brokers()
                    )
                });
            }
            std::thread::sleep(crate::POLL);
        }
    }

    /// Counts a takeover the restart rule held back (event `self.current`).
    pub(super) fn held_back(&mut self, peer: Side, event: &str, reason: String) {
        self.counts.held_back.push(HeldBack {
            number: self.current,
            event: format!("{event}; the {} held back", peer.role()),
            reason,
        });
    }

    /// Starts the killed `side` again. If its peer took over (`peer_took_over`), it must
    /// come back passive beside the active peer; if not (held back), no broker served
    /// meanwhile, so it is no longer deposed, and whichever side the pair settles on
    /// serves.
    pub(super) fn restart(&mut self, side: Side, peer_took_over: bool) -> anyhow::Result<()> {
        self.start_down_broker(side)?;
        if peer_took_over {
            self.scenario
                .wait_state(side, "passive")
                .map_err(|e| e.context("the restarted broker must come back passive"))?;
        }
        let active = self.settle()?;
        anyhow::ensure!(
            !peer_took_over || active == side.other(),
            "after the {} restarted, the {} is active",
            side.role(),
            active.role()
        );
        self.log(format!(
            "settled: {} active, {} passive",
            active.role(),
            active.other().role()
        ));
        Ok(())
    }

    /// Starts `side`, which is down, on its ports and data dir. If its peer is not active
    /// now, the peer never served in its stead, so nothing deposed it: the watch is told
    /// (it may become active without a failover).
    pub(super) fn start_down_broker(&mut self, side: Side) -> anyhow::Result<()> {
        let peer_serves = self
            .scenario
            .pair
            .sample(side.other())
            .is_ok_and(|s| s.is("active"));
        if !peer_serves {
            self.scenario.watch.no_peer_served(side);
        }
        self.scenario
            .pair
            .start_broker(side)
            .map_err(|e| e.context(format!("restarting the {}", side.role())))?;
        self.scenario.counts.broker_restarts += 1;
        self.log(format!("restarted {}", self.scenario.pair.describe(side)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELD: &str = r#"{"board_age_ms":17,"failovers":0,"paired":false,"peer":{"alive":false,"state":"active"},"peer_alive":false,"role":"backup","state":"passive","state_lag":0,"term":145,"waiting_for_peer":"the active peer fell silent before this broker was in sync with it: waiting for the peer (hearth-broker --force-active overrides, at the risk of losing its writes)"}"#;

    #[test]
    fn status_says_whether_the_restart_rule_holds_the_broker_back() {
        match peer_seen(HELD) {
            PeerSeen::Waiting(reason) => assert!(reason.starts_with("the active peer fell")),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            peer_seen(r#"{"state":"active","waiting_for_peer":null}"#),
            PeerSeen::Active
        );
        assert!(matches!(
            peer_seen(r#"{"state":"passive","waiting_for_peer":null}"#),
            PeerSeen::Other(_)
        ));
        assert!(matches!(
            peer_seen(r#"{"state":"passive"}"#),
            PeerSeen::Other(_)
        ));
        assert!(matches!(peer_seen("not json"), PeerSeen::Other(_)));
    }

    #[test]
    fn a_takeover_is_done_when_the_peer_is_active() {
        let t0 = Instant::now();
        let mut judge = TakeoverJudge::default();
        assert_eq!(judge.see(t0, PeerSeen::Other("passive".into())), None);
        assert_eq!(
            judge.see(t0 + Duration::from_millis(800), PeerSeen::Active),
            Some(Takeover::Done)
        );
    }

    #[test]
    fn held_back_only_once_the_reason_lasts_without_a_break() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let waiting = || PeerSeen::Waiting("not in sync".into());
        let mut judge = TakeoverJudge::default();
        assert_eq!(judge.see(at(0), waiting()), None);
        assert_eq!(judge.see(at(2_000), waiting()), None);
        // A break starts the wait over.
        assert_eq!(
            judge.see(at(2_100), PeerSeen::Other("passive".into())),
            None
        );
        assert_eq!(judge.see(at(3_500), waiting()), None);
        assert_eq!(judge.see(at(6_000), waiting()), None);
        assert_eq!(
            judge.see(at(6_500), waiting()),
            Some(Takeover::HeldBack("not in sync".into()))
        );
        // A transient reason that clears into a takeover is a takeover.
        let mut judge = TakeoverJudge::default();
        assert_eq!(judge.see(at(0), waiting()), None);
        assert_eq!(judge.see(at(500), PeerSeen::Active), Some(Takeover::Done));
    }

    #[test]
    fn at_the_deadline_only_the_restart_rule_excuses_a_missing_takeover() {
        let t0 = Instant::now();
        let mut judge = TakeoverJudge::default();
        assert!(judge.at_deadline().is_err());
        judge.see(t0, PeerSeen::Waiting("starved".into()));
        assert_eq!(
            judge.at_deadline(),
            Ok(Takeover::HeldBack("starved".into()))
        );
        judge.see(t0, PeerSeen::Other("state passive".into()));
        let err = judge.at_deadline().err().unwrap_or_default();
        assert!(err.contains("does not hold it back"), "{err}");
    }
}
