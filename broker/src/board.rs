//! The status board: the broker's status as the reactor last published it, with how fresh
//! it is, for the HTTP side (`/status`, `/healthz`, the Binary Star gauges of `/metrics`).
//!
//! The reactor publishes the status (at once when the Binary Star state changes, else at
//! most every 100 ms) and, every time round its loop, *confirms* the board: it says when
//! it will look again at the latest (its poll deadline) and until when the broker may say
//! it is active. The HTTP side reads the board on its own thread, so it may read it while
//! the reactor is not running: a broker frozen by SIGSTOP (or a VM pause) and just resumed
//! would otherwise show, for the moment before its reactor runs, the `active` it published
//! before the freeze, beside the peer that took over meanwhile.
//!
//! So the board is *stale*, and vouches for no Binary Star state, when:
//! * the reactor is late: more than `stale_after` past the deadline it gave (times are
//!   `Instant`s, CLOCK_MONOTONIC on Linux, which keeps counting while a process is
//!   stopped). A frozen active's peer takes over no sooner than two peer heartbeats after
//!   the active's last heartbeat, and the reactor is due at least once a heartbeat, so
//!   `stale_after` is kept under one peer heartbeat; or
//! * the broker is active but past the moment until which it is sure that its peer cannot
//!   have replaced it (see [`crate::core::Core::sure_until`]): a broker whose own
//!   heartbeats stopped for a while (a freeze) is unsure from when its peer could have
//!   expired it until the peer's news, also once its reactor runs again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hearth_proto::status::{BStarState, BrokerStatus};

/// How late the reactor may be for the deadline it gave before the board counts as stale,
/// at most (a few of its refresh periods).
pub const STALE_AFTER: Duration = Duration::from_millis(300);

/// The board the reactor writes and the HTTP side reads; clones share it.
#[derive(Clone, Default)]
pub struct StatusBoard {
    inner: Arc<Mutex<Board>>,
}

#[derive(Default)]
struct Board {
    status: BrokerStatus,
    /// When the reactor last confirmed the board (None: not yet; the board is then taken
    /// as it is).
    confirmed: Option<Instant>,
    /// The reactor's poll deadline as of its last confirmation.
    due: Option<Instant>,
    /// Until when the broker may claim to be active (None: no limit).
    sure_until: Option<Instant>,
    stale_after: Duration,
}

/// Why the board claims no Binary Star state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staleness {
    /// The reactor is late for its own deadline by this much (stopped, or starved).
    Late(Duration),
    /// The broker is active but unsure that its peer has not replaced it.
    Unsure,
}

impl Staleness {
    /// Why, in words, for `/status` and `/healthz`.
    pub fn describe(&self) -> String {
        match self {
            Staleness::Late(by) => format!(
                "the broker's reactor is {} ms late (stopped or starved)",
                by.as_millis()
            ),
            Staleness::Unsure => {
                "active but unsure whether the peer took over; serving nothing until the peer's news"
                    .to_owned()
            }
        }
    }
}

/// How fresh the board is at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Time since the reactor last confirmed the board.
    pub age: Duration,
    /// Why the board is stale, if it is.
    pub stale: Option<Staleness>,
}

/// The board as the HTTP side reads it at one moment.
#[derive(Debug, Clone)]
pub struct BoardView {
    /// The status as last published.
    pub status: BrokerStatus,
    /// How fresh it is.
    pub freshness: Freshness,
}

impl BoardView {
    /// The Binary Star state the board vouches for: none while it is stale.
    pub fn state(&self) -> Option<BStarState> {
        self.freshness.stale.is_none().then_some(self.status.state)
    }
}

impl StatusBoard {
    /// A board holding `status`, stale once the reactor is more than `stale_after` late.
    pub fn new(status: BrokerStatus, stale_after: Duration) -> StatusBoard {
        StatusBoard {
            inner: Arc::new(Mutex::new(Board {
                status,
                stale_after,
                ..Board::default()
            })),
        }
    }

    /// Sets how late the reactor may be before the board counts as stale.
    pub fn set_stale_after(&self, stale_after: Duration) {
        if let Ok(mut board) = self.inner.lock() {
            board.stale_after = stale_after;
        }
    }

    /// Replaces the status.
    pub fn publish(&self, status: BrokerStatus) {
        if let Ok(mut board) = self.inner.lock() {
            board.status = status;
        }
    }

    /// The reactor, at `now`, vouches for the board until `due` (when it looks again at the
    /// latest), and for an `active` state until `sure_until` (see
    /// [`crate::core::Core::sure_until`]; None: no limit).
    pub fn confirm(&self, now: Instant, due: Instant, sure_until: Option<Instant>) {
        if let Ok(mut board) = self.inner.lock() {
            board.confirmed = Some(now);
            board.due = Some(due);
            board.sure_until = sure_until;
        }
    }

    /// The status as last published, whatever its freshness.
    pub fn status(&self) -> BrokerStatus {
        self.inner
            .lock()
            .map(|b| b.status.clone())
            .unwrap_or_default()
    }

    /// The status with its freshness as of `now`.
    pub fn view(&self, now: Instant) -> Option<BoardView> {
        let board = self.inner.lock().ok()?;
        Some(BoardView {
            status: board.status.clone(),
            freshness: board.freshness(now),
        })
    }

    /// How fresh the board is as of `now` (a poisoned board counts as stale).
    pub fn freshness(&self, now: Instant) -> Freshness {
        match self.inner.lock() {
            Ok(board) => board.freshness(now),
            Err(_) => Freshness {
                age: Duration::ZERO,
                stale: Some(Staleness::Late(Duration::ZERO)),
            },
        }
    }

    /// The Binary Star state the board vouches for as of `now`, and its freshness.
    pub fn state(&self, now: Instant) -> (BStarState, Freshness) {
        match self.inner.lock() {
            Ok(board) => (board.status.state, board.freshness(now)),
            Err(_) => (BStarState::default(), self.freshness(now)),
        }
    }
}

impl Board {
    fn freshness(&self, now: Instant) -> Freshness {
        let age = self
            .confirmed
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
        let late = self
            .due
            .map_or(Duration::ZERO, |due| now.saturating_duration_since(due));
        let stale = if late > self.stale_after {
            Some(Staleness::Late(late))
        } else if self.sure_until.is_some_and(|until| now >= until) {
            Some(Staleness::Unsure)
        } else {
            None
        };
        Freshness { age, stale }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active() -> BrokerStatus {
        BrokerStatus {
            state: BStarState::Active,
            ..BrokerStatus::default()
        }
    }

    #[test]
    fn a_board_is_fresh_until_its_reactor_is_late() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let board = StatusBoard::new(active(), Duration::from_millis(300));
        board.confirm(t0, ms(1000), None);
        let at = |n| board.view(ms(n)).expect("board");
        assert_eq!(at(500).state(), Some(BStarState::Active));
        assert_eq!(at(1300).state(), Some(BStarState::Active));
        assert_eq!(at(1300).freshness.age, Duration::from_millis(1300));
        // A reactor stopped in its poll wakes after the deadline: stale from 300 ms late.
        let late = at(1301);
        assert_eq!(late.state(), None);
        assert_eq!(
            late.freshness.stale,
            Some(Staleness::Late(Duration::from_millis(301)))
        );
        board.confirm(ms(1400), ms(2400), None);
        assert_eq!(at(1400).state(), Some(BStarState::Active));
    }

    #[test]
    fn an_active_claims_its_state_only_while_sure_of_its_peer() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let board = StatusBoard::new(active(), Duration::from_millis(300));
        // Sure until 200 ms (the peer's acknowledgement runs out), the reactor due at 1 s:
        // even a reactor stopped meanwhile claims nothing after 200 ms.
        board.confirm(t0, ms(1000), Some(ms(200)));
        assert_eq!(
            board.view(ms(199)).expect("board").state(),
            Some(BStarState::Active)
        );
        let view = board.view(ms(200)).expect("board");
        assert_eq!(view.state(), None);
        assert_eq!(view.freshness.stale, Some(Staleness::Unsure));
        assert_eq!(
            view.status.state,
            BStarState::Active,
            "kept as the last state"
        );
    }

    #[test]
    fn an_unconfirmed_board_is_taken_as_it_is() {
        let board = StatusBoard::new(active(), Duration::from_millis(300));
        let far = Instant::now() + Duration::from_secs(3600);
        assert_eq!(
            board.view(far).expect("board").state(),
            Some(BStarState::Active)
        );
    }
}
