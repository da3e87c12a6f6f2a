//! Until when an active broker may say it is active (for its status board): as long as
//! its peer cannot have replaced it. Apart from the driver's decisions, which it only reads.

use std::time::Instant;

use super::{safety_margin, Pair, State};

impl<T> Pair<T> {
    /// Until when this broker may say it is active: as long as its peer cannot have
    /// replaced it, which takes two heartbeats of silence at the peer. So: two heartbeats
    /// (less the margin) after the latest beat the peer acknowledged, or after our latest
    /// beat if our beats have flowed without such a gap since the peer last acknowledged
    /// one (a running broker beating every heartbeat stays sure; one that was frozen,
    /// whose beats stopped, is unsure from the moment the peer could have expired it until
    /// the peer's news). None when there is no limit: not active, or serving on the
    /// peer's expiry. (Serving asks more, a fresh acknowledgement: see [`Pair::serving`].)
    pub fn sure_until(&self, now: Instant) -> Option<Instant> {
        if self.node.state != State::Active
            || (now >= self.peer_expiry() && self.activation.may_activate)
        {
            return None;
        }
        let lease = self.heartbeat * 2 - safety_margin(self.heartbeat);
        let acknowledged = self.acked_at.map(|sent| sent + lease);
        let beats_heard = self
            .acked_at
            .is_some_and(|acked| self.resumed_beats_at.is_none_or(|gap| acked >= gap));
        let beating = self
            .sent
            .back()
            .filter(|_| beats_heard)
            .map(|&(_, sent)| sent + lease);
        Some(acknowledged.max(beating).unwrap_or(now))
    }
}

#[cfg(test)]
#[path = "pair_claim_tests.rs"]
mod tests;
