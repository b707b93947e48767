//! The retry budget: a token bucket of retries against requests, after tower's.

use std::sync::Mutex;

use tokio::time::Instant;

use crate::error::ConfigError;

pub(crate) const DEFAULT_RETRY_RATIO: f64 = 0.2;
pub(crate) const DEFAULT_MIN_PER_SEC: f64 = 1.0;
pub(crate) const DEFAULT_MAX_BALANCE: f64 = 10.0;

/// Limits retries to a share of the traffic, so a failing provider is not hammered.
///
/// Every first attempt deposits `ratio` of a retry; the balance also grows by `min_per_sec`
/// each second; every retry withdraws one. The balance never exceeds `max_balance` and starts
/// full. When it is below one, a failed call is not retried.
///
/// One budget is shared by every service a [`RetryLayer`](super::RetryLayer) builds; pass the
/// same `Arc` to several layers ([`RetryLayer::with_budget`](super::RetryLayer::with_budget))
/// to share one across them.
///
/// ```
/// use flowloom_middleware::retry::RetryBudget;
/// let b = RetryBudget::new(0.5, 0.0, 1.0).unwrap();
/// assert!(b.try_withdraw());   // starts full: one retry
/// assert!(!b.try_withdraw());  // then empty
/// b.deposit();
/// b.deposit();                 // two requests make one retry at 50 %
/// assert!(b.try_withdraw());
/// ```
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    min_per_sec: f64,
    max_balance: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    balance: f64,
    last: Instant,
}

impl RetryBudget {
    /// A budget letting retries add `ratio` (0.0–1.0) of the requests plus `min_per_sec`
    /// (≥ 0) per second, saving up at most `max_balance` (≥ 1) retries.
    pub fn new(ratio: f64, min_per_sec: f64, max_balance: f64) -> Result<Self, ConfigError> {
        if !(0.0..=1.0).contains(&ratio) {
            return Err(ConfigError::new(
                "retry budget",
                "ratio",
                ratio,
                "a fraction from 0.0 to 1.0, e.g. 0.2 for 20 % extra load",
            ));
        }
        if !(min_per_sec >= 0.0 && min_per_sec.is_finite()) {
            return Err(ConfigError::new(
                "retry budget",
                "min_per_sec",
                min_per_sec,
                "a finite number ≥ 0",
            ));
        }
        if !(max_balance >= 1.0 && max_balance.is_finite()) {
            return Err(ConfigError::new(
                "retry budget",
                "max_balance",
                max_balance,
                "a finite number ≥ 1",
            ));
        }
        Ok(Self::new_unchecked(ratio, min_per_sec, max_balance))
    }

    pub(crate) fn new_unchecked(ratio: f64, min_per_sec: f64, max_balance: f64) -> Self {
        Self {
            ratio,
            min_per_sec,
            max_balance,
            state: Mutex::new(State {
                balance: max_balance,
                last: Instant::now(),
            }),
        }
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State, f64) -> T) -> T {
        let mut st = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let now = Instant::now();
        let secs = now.saturating_duration_since(st.last).as_secs_f64();
        st.last = now;
        st.balance = (st.balance + secs * self.min_per_sec).min(self.max_balance);
        f(&mut st, self.max_balance)
    }

    /// Records a first attempt. (The time-based refill is added when a retry is asked for,
    /// so recording a request does not read the clock.)
    pub fn deposit(&self) {
        let mut st = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        st.balance = (st.balance + self.ratio).min(self.max_balance);
    }

    /// Takes one retry from the budget; false when it is empty.
    pub fn try_withdraw(&self) -> bool {
        self.with_state(|st, _| {
            if st.balance >= 1.0 {
                st.balance -= 1.0;
                true
            } else {
                false
            }
        })
    }

    /// The retries available now.
    pub fn balance(&self) -> f64 {
        self.with_state(|st, _| st.balance)
    }
}
