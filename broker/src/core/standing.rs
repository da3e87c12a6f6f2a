//! What each broker of a pair knows of the other's state model, and what it may do about
//! it: the state-model news a heartbeat carries, the activation gate it feeds
//! (`crate::state::restart`), the *paired* lease, and the standing the active persists as
//! the pair goes in and out of sync.
//!
//! * **Heartbeats** carry this broker's seq and the term of its last change, and, from the
//!   active, whether it has durably counted its peer in sync (*paired*).
//! * **The gate** is recomputed before every decision of the pair driver; a broker whose
//!   data may be behind never becomes active, and an active that was stopped while paired
//!   waits for fresh news before serving on its peer's silence.
//! * **The standing**: the active writes *alone* the moment its peer is gone and a write
//!   waits for it (and answers nothing alone before its last *paired* has run out), and
//!   *paired* again once the follower holds every write it answered alone.

use std::time::Instant;

use hearth_proto::peer::PeerHeartbeat;
use hearth_proto::repl::History;
use hearth_proto::status::BStarState;
use tracing::{info, warn};

use super::replication::{Downstream, Replication, Upstream};
use super::Core;
use crate::pair::{Activation, DataOrder};
use crate::state::restart::{self, DataPoint, Gate, GateInput, PeerNews, Standing};

impl Replication {
    /// How long a heartbeat saying *paired* lets the passive take over after it: two
    /// heartbeats and a half. The passive counts the active expired two heartbeats after
    /// its last one, so a dead active's last *paired* is still valid then; and the active
    /// answers no write alone before its last *paired* has run out at the passive, so a
    /// passive that takes over on a valid one cannot miss an acknowledged write (short of
    /// a partition, where both sides go on).
    pub(super) fn lease(heartbeat: std::time::Duration) -> std::time::Duration {
        heartbeat * 5 / 2
    }
}

impl Core {
    /// Whether this broker, active, has durably recorded its peer as in sync.
    fn paired_durably(&self) -> bool {
        self.is_active() && self.state.durably(Standing::Paired)
    }

    /// Whether the pair counts the two state models in sync, as this broker knows it: the
    /// active has durably counted its peer in sync, or the passive heard *paired* in the
    /// active's last heartbeat (for `/status`).
    pub(super) fn paired(&self) -> bool {
        self.paired_durably()
            || (!self.is_active()
                && self.repl.paired_heard_at.is_some()
                && self.repl.peer.is_some_and(|p| p.paired))
    }

    /// What this broker's heartbeat, sent at `now`, says of its state model.
    pub(super) fn heartbeat_data(&mut self, now: Instant, hb: &mut PeerHeartbeat) {
        hb.state_seq = self.state.seq();
        hb.last_term = self.state.last_term();
        hb.paired = self.paired_durably();
        self.repl.paired_sent = hb.paired;
        if hb.paired {
            self.repl.paired_sent_at = Some(now);
        }
    }

    /// When the last *paired* this broker sent runs out at the peer (see
    /// [`Replication::lease`]): no write is answered alone before. None when the peer is
    /// known to be down.
    pub(super) fn paired_lease_end(&self) -> Option<Instant> {
        // A peer whose port refuses connections runs no process that could take over.
        if self.pair.as_ref().is_some_and(|p| p.peer_gone()) {
            return None;
        }
        self.repl
            .paired_sent_at
            .map(|at| at + Replication::lease(self.peer_heartbeat))
    }

    /// Tells the peer at once when this broker starts (or stops) counting it in sync, so
    /// that a passive may take over as soon as it is safe rather than a heartbeat later.
    pub(super) fn announce_pairing(&mut self) {
        if self.paired_durably() != self.repl.paired_sent {
            if let Some(side) = &mut self.pair {
                side.beat_now();
            }
        }
    }

    /// Notes what a heartbeat says of the peer's data (before the pair driver sees it, so
    /// the gate it consults is current).
    pub(super) fn heartbeat_news(&mut self, now: Instant, hb: &PeerHeartbeat) {
        self.repl.peer = Some(PeerNews {
            data: DataPoint {
                last_term: hb.last_term,
                seq: hb.state_seq,
            },
            active: hb.state == BStarState::Active,
            paired: hb.paired,
        });
        self.repl.paired_heard_at = hb.paired.then_some(now);
        self.update_activation_hearing(now, true);
    }

    /// After a stall, what the peer said of pairing is stale: it may have gone on alone;
    /// and an active that was paired may have been replaced meanwhile.
    pub(super) fn forget_pairing(&mut self) {
        if let Some(peer) = &mut self.repl.peer {
            peer.paired = false;
        }
        self.repl.paired_heard_at = None;
        if self.is_active() && self.state.durably(Standing::Paired) {
            self.repl.maybe_replaced = true;
        }
    }

    /// Recomputes the activation gate and tells the pair driver.
    pub(super) fn update_activation(&mut self, now: Instant) {
        self.update_activation_hearing(now, false);
    }

    /// The same, `hearing` the peer right now (its heartbeat is being handled).
    fn update_activation_hearing(&mut self, now: Instant, hearing: bool) {
        let Some(side) = &self.pair else { return };
        if self.repl.maybe_replaced && side.heard_since_resume() {
            self.repl.maybe_replaced = false;
        }
        // A *paired* counts only if the peer was lost while it was still valid: a peer
        // lost later may have answered writes alone first.
        let lease = Replication::lease(self.peer_heartbeat);
        let lost_at = side.peer_expiry();
        let lease_ok = self
            .repl
            .paired_heard_at
            .is_some_and(|heard| lost_at < heard + lease);
        let peer = self.repl.peer.map(|p| PeerNews {
            paired: p.paired && lease_ok,
            ..p
        });
        let input = GateInput {
            active: side.state() == BStarState::Active,
            force_active: self.repl.force_active,
            standing_at_start: self.state.standing_at_start,
            peer,
            peer_alive: hearing || side.peer_alive(now),
            maybe_replaced: self.repl.maybe_replaced,
            ours: self.ours(),
        };
        let gate = restart::activation(input);
        let lone_backup =
            matches!(self.state.standing_at_start, Some(Standing::Alone)) || self.repl.force_active;
        if self.repl.gate != Some(gate) {
            match gate.reason() {
                Some(reason) => warn!(reason, "this broker may not become active"),
                None if self.repl.gate.is_some() => {
                    info!("this broker may become active again")
                }
                None => {}
            }
            self.repl.gate = Some(gate);
        }
        let waiting = matches!(
            gate,
            Gate::WaitForPeer | Gate::NotInSync | Gate::MaybeReplaced
        );
        self.metrics.state_waiting.set(i64::from(waiting));
        let ours = self.ours();
        let data = match self.repl.peer.map(|p| p.data.cmp(&ours)) {
            Some(std::cmp::Ordering::Greater) => DataOrder::PeerNewer,
            Some(std::cmp::Ordering::Less) => DataOrder::OursNewer,
            _ => DataOrder::Same,
        };
        if let Some(side) = &mut self.pair {
            side.set_activation(Activation {
                may_activate: gate.is_open(),
                lone_backup_may_serve: lone_backup,
                data,
            });
        }
    }

    /// How far the passive's state model is behind the active's, as this broker sees it.
    pub(super) fn state_lag(&self) -> u64 {
        if self.is_active() {
            if self.repl.down.known {
                self.state.seq().saturating_sub(self.repl.down.acked)
            } else {
                0
            }
        } else {
            self.repl
                .peer
                .map_or(0, |p| p.data.seq.saturating_sub(self.state.seq()))
        }
    }

    /// Why this broker waits for its peer, for `/status` (none when it does not).
    pub(super) fn waiting_reason(&self) -> Option<&'static str> {
        match self.repl.gate {
            Some(Gate::MaybeReplaced) => Gate::MaybeReplaced.reason(),
            Some(gate @ (Gate::WaitForPeer | Gate::NotInSync | Gate::Behind))
                if !self.is_active() =>
            {
                gate.reason()
            }
            _ => None,
        }
    }

    /// The active answers writes alone from now on: the *alone* standing is written first.
    pub(super) fn go_alone(&mut self) {
        if self.state.standing_written.map(|(s, _)| s) != Some(Standing::Alone) {
            self.state.write_standing(Standing::Alone);
            info!("the peer is not in sync: this broker acknowledges writes alone");
        }
    }

    /// Called when the Binary Star state changes.
    pub(super) fn state_changed(&mut self, from: BStarState, to: BStarState, now: Instant) {
        if from == BStarState::Active && to != BStarState::Active {
            self.drop_pending();
            self.repl.down = Downstream::default();
        }
        if to == BStarState::Active {
            let term = self.current_term();
            self.state.write_term(term);
            if !self.peer_alive_now(now) {
                self.go_alone();
            }
            self.repl.up = Upstream::default();
        }
    }

    /// The active's standing follows the pair: *alone* the moment the peer is gone and a
    /// write waits for it, *paired* again once the follower holds every write answered
    /// alone.
    pub(super) fn standing_tick(&mut self, now: Instant) {
        if self.pair.is_none() {
            return;
        }
        let alive = self.peer_alive_now(now);
        if self.is_active() {
            let standing = self.state.standing_written.map(|(s, _)| s);
            // Alone only when a write needs it: a peer that merely looked silent for a
            // moment, with no write waiting, stays counted in sync (so it may still take
            // over if this broker dies).
            let waiting = self.state.seq() > self.repl.down.acked;
            if !alive && waiting {
                self.go_alone();
            } else if alive
                && self.repl.down.known
                && self.repl.down.acked >= self.state.alone_committed
                && standing != Some(Standing::Paired)
            {
                // Every write answered alone is on the follower now, and every later one
                // waits for its acknowledgement (the peer is alive): in sync.
                info!(
                    seq = self.state.seq(),
                    "the passive is in sync: writes wait for its acknowledgement"
                );
                self.state.write_standing(Standing::Paired);
            }
        }
    }
}

/// The standing and term stored in the metadata, as read at start-up.
pub fn read_meta(
    meta: &std::collections::BTreeMap<String, Vec<u8>>,
) -> Result<(Option<Standing>, u64, History), String> {
    let standing = match meta.get("standing") {
        None => None,
        Some(bytes) => Some(
            Standing::parse(bytes)
                .ok_or_else(|| format!("unknown standing {:?}", String::from_utf8_lossy(bytes)))?,
        ),
    };
    let term = match meta.get("term") {
        None => 0,
        Some(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| "unreadable term".to_owned())?,
    };
    let history = match meta.get("history") {
        None => History::default(),
        Some(bytes) => bendy::serde::from_bytes(bytes).map_err(|e| format!("history: {e}"))?,
    };
    Ok((standing, term, history))
}
