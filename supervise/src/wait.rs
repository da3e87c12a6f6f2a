//! Polling a condition until a deadline: the one way every supervisor and test here waits
//! for something (a broker to bind, a pair to settle, a worker to register), instead of
//! sleeping a guessed time.
//!
//! The check says either `Ok(value)`, done, or `Err(last)`, not yet, with what it saw; on
//! timeout the error carries `what` and the last thing seen, which is most of a diagnosis.
//! A check that meets something fatal (a child exited) returns `Ok(Err(fatal))` and the
//! caller applies `?` twice: the wait ends at once instead of running to its deadline.

use std::fmt::Display;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How often [`wait_until`] looks again unless told otherwise ([`Wait::every`]).
pub const POLL: Duration = Duration::from_millis(10);

/// Polls `check` every [`POLL`] until it returns `Ok`; fails after `timeout` with `what` and
/// the last `Err` it returned. `check` runs at least once, and once more at the deadline.
pub fn wait_until<T, L: Display>(
    what: &str,
    timeout: Duration,
    check: impl FnMut() -> Result<T, L>,
) -> Result<T> {
    Wait::new(what, timeout).until(check)
}

/// A wait with its own polling interval: `Wait::new(what, timeout).every(d).until(check)`.
#[derive(Debug, Clone, Copy)]
pub struct Wait<'a> {
    what: &'a str,
    timeout: Duration,
    every: Duration,
}

impl<'a> Wait<'a> {
    /// A wait for `what` of at most `timeout`, looking every [`POLL`].
    pub fn new(what: &'a str, timeout: Duration) -> Wait<'a> {
        Wait {
            what,
            timeout,
            every: POLL,
        }
    }

    /// Looks every `every` instead (a check that asks a broker over the network is spaced
    /// out more than one that reads a flag).
    pub fn every(self, every: Duration) -> Wait<'a> {
        Wait { every, ..self }
    }

    /// Polls `check` until it returns `Ok`, or fails with [`Error::Timeout`] naming the last
    /// `Err` it returned.
    pub fn until<T, L: Display>(self, mut check: impl FnMut() -> Result<T, L>) -> Result<T> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let last = match check() {
                Ok(value) => return Ok(value),
                Err(last) => last,
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout {
                    what: self.what.to_owned(),
                    timeout: self.timeout,
                    last: last.to_string(),
                });
            }
            std::thread::sleep(self.every.min(deadline - now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_ok() {
        let mut n = 0;
        let got = wait_until("three", Duration::from_secs(5), || {
            n += 1;
            if n >= 3 {
                Ok(n)
            } else {
                Err(format!("n = {n}"))
            }
        });
        assert_eq!(got.unwrap(), 3);
    }

    #[test]
    fn reports_what_and_the_last_value_seen() {
        let mut n = 0;
        let err = Wait::new("never", Duration::from_millis(30))
            .every(Duration::from_millis(1))
            .until(|| -> Result<(), String> {
                n += 1;
                Err(format!("try {n}"))
            })
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("waiting for never"), "{text}");
        assert!(text.ends_with(&format!("last seen: try {n}")), "{text}");
        assert!(n > 1, "looked more than once");
    }

    #[test]
    fn a_zero_timeout_checks_once() {
        let mut n = 0;
        let err = wait_until("once", Duration::ZERO, || -> Result<(), &str> {
            n += 1;
            Err("no")
        });
        assert!(matches!(err, Err(Error::Timeout { ref last, .. }) if last == "no"));
        assert_eq!(n, 1);
    }

    #[test]
    fn a_fatal_value_ends_the_wait_at_once() {
        let started = Instant::now();
        let outcome: Result<Result<(), String>> =
            wait_until("fatal", Duration::from_secs(30), || -> Result<_, String> {
                Ok(Err("the broker exited".to_owned()))
            });
        assert_eq!(outcome.unwrap().unwrap_err(), "the broker exited");
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
