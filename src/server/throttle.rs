//! Keeping a repeated warning from flooding the log.
//!
//! A full connection table or an exhausted descriptor table produces the
//! same event thousands of times a second. The first one is logged at once;
//! after that, at most one line per interval, saying how many were folded in.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often the echo path's warnings (refusals, accept errors, PROXY
/// protocol failures, UDP drops) may each log a line.
pub(crate) const WARNING_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(crate) struct Throttle {
    interval: Duration,
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    pub(crate) fn new(interval: Duration) -> Throttle {
        Throttle {
            interval,
            last_logged: None,
            suppressed: 0,
        }
    }

    /// Records one event. Returns `Some(n)` when it should be logged now,
    /// where `n` is how many earlier events went unlogged since the last line.
    pub(crate) fn event(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last_logged {
            Some(last) if now.duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last_logged = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// A daemon-wide count of one kind of failure, with the throttle of its
/// warning: one line per interval for all workers together. Only a failure
/// takes the lock, never the echo.
#[derive(Debug)]
pub(crate) struct Failures {
    total: AtomicU64,
    warnings: Mutex<Throttle>,
}

impl Failures {
    pub(crate) fn new(interval: Duration) -> Failures {
        Failures {
            total: AtomicU64::new(0),
            warnings: Mutex::new(Throttle::new(interval)),
        }
    }

    /// Counts one. Returns how many there have been, and, when this one is
    /// to be logged, how many went unlogged since the last line.
    pub(crate) fn count(&self) -> (u64, Option<u64>) {
        let total = self.total.fetch_add(1, Ordering::Relaxed) + 1;
        let logged = self
            .warnings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .event();
        (total, logged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_the_first_event_then_folds_the_rest() {
        let mut throttle = Throttle::new(Duration::from_secs(3600));
        assert_eq!(throttle.event(), Some(0));
        assert_eq!(throttle.event(), None);
        assert_eq!(throttle.event(), None);
        throttle.last_logged = Some(Instant::now() - Duration::from_secs(3601));
        assert_eq!(throttle.event(), Some(2));
    }
}
