//! Reconnect delays: exponential from an initial to a maximum delay, with jitter so that
//! the workers of a home do not all knock on a restarted broker in the same millisecond.
//!
//! Pure arithmetic; the caller supplies the randomness, so the schedule is tested exactly.

use std::time::Duration;

/// The reconnect schedule of one broker connection.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// A schedule starting at `initial` and never exceeding `max`.
    pub(crate) fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            current: initial,
        }
    }

    /// The delay before the next attempt, then doubles the base. `jitter` in `[0, 1]` picks
    /// the delay between half the base and the full base ("equal jitter").
    pub(crate) fn next_delay(&mut self, jitter: f64) -> Duration {
        let base = self.current;
        let jitter = jitter.clamp(0.0, 1.0);
        let delay = base.mul_f64(0.5 + 0.5 * jitter);
        self.current = base.saturating_mul(2).min(self.max);
        delay
    }

    /// Back to the initial delay, after the broker was heard from.
    pub(crate) fn reset(&mut self) {
        self.current = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_max_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(500));
        let full: Vec<_> = (0..5).map(|_| b.next_delay(1.0)).collect();
        assert_eq!(full, vec![ms(100), ms(200), ms(400), ms(500), ms(500)]);
        assert_eq!(b.next_delay(0.0), ms(250));
        b.reset();
        assert_eq!(b.next_delay(0.5), ms(75));
    }
}
