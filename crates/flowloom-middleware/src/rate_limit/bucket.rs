//! A token bucket that may go into debt: a reservation is granted at once and the caller
//! waits until the debt would be repaid, which hands out waits in arrival order.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct Bucket {
    capacity: f64,
    per_sec: f64,
    level: f64,
    last: Instant,
}

impl Bucket {
    pub(crate) fn new(capacity: f64, per_sec: f64, now: Instant) -> Self {
        Self {
            capacity,
            per_sec,
            level: capacity,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let secs = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.level = (self.level + secs * self.per_sec).min(self.capacity);
    }

    /// Takes `amount` (at most the capacity) and returns how long the caller must wait.
    pub(crate) fn reserve(&mut self, amount: f64, now: Instant) -> Duration {
        self.refill(now);
        self.level -= amount.min(self.capacity);
        if self.level >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.level / self.per_sec)
        }
    }

    /// Gives back (positive) or takes more (negative) after the fact.
    pub(crate) fn adjust(&mut self, delta: f64, now: Instant) {
        self.refill(now);
        self.level = (self.level + delta).min(self.capacity);
    }
}
