//! Retry with exponential backoff, jitter, `Retry-After` and a retry budget (FR-012).
//!
//! [`RetryLayer`] retries a call that failed with a retryable [`LlmError`]
//! ([`LlmError::is_retryable`]: timeouts, 429 rate limits, 5xx, connection failures,
//! unavailability). Everything else (400, 401/403, 404, quota, guards, budgets) is returned at
//! once, unwrapped.
//!
//! - **Attempts**: at most [`RetryPolicy::max_attempts`] calls in all, 3 by default (1 = no
//!   retry).
//! - **Backoff**: before retry *n* (n = 1 for the second attempt) the layer waits
//!   `min(max_delay, base_delay × factor^(n-1))`, then takes a random part off it: with
//!   jitter *j* the wait is `d × (1 − j·u)` for a uniform `u` in `[0, 1)`. Defaults: base
//!   500 ms, factor 2.0, cap 30 s, jitter 0.5 ("equal jitter": between half and all of `d`).
//!   The random numbers come from a seedable generator ([`RetryPolicyBuilder::seed`]), so tests
//!   can predict every wait.
//! - **`Retry-After`**: when the error carries [`LlmError::retry_after`] (the provider's
//!   `Retry-After` header, parsed by [`parse_retry_after`] in seconds or as an HTTP date), the
//!   layer waits exactly that long instead of the backoff. A `Retry-After` longer than
//!   [`RetryPolicy::max_retry_after`] (60 s by default) ends the retries at once: the caller
//!   learns now rather than after a minute.
//! - **Budget**: a [`RetryBudget`] shared by every service the layer builds lets retries add at
//!   most a fraction of the traffic (20 % by default, plus one retry per second), so a provider
//!   that is down is not hit three times as hard. When the budget is empty the call gives up.
//! - **Deadline** (optional): the layer does not start a wait that would end after the
//!   deadline, counted from the call's start. It does not cut a running attempt; put a
//!   [`TimeoutLayer`](crate::timeout::TimeoutLayer) outside the retry layer for that.
//! - **Failure**: when attempts, budget or deadline run out the error is
//!   [`LlmError::RetriesExhausted`] with the number of attempts, the total time waited between
//!   them and the last error (its `status()` is the last attempt's).
//! - **Success** after failures: the response's `attempts` lists each failed attempt (provider,
//!   model, error, status, duration), oldest first.
//!
//! ```
//! use std::time::Duration;
//! use flowloom_core::{LlmError, LlmRequest, LlmResponse, provider};
//! use flowloom_middleware::retry::{RetryLayer, RetryPolicy};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
//! let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let seen = calls.clone();
//! let flaky = tower::service_fn(move |req: LlmRequest| {
//!     let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!     async move {
//!         if n == 0 {
//!             Err(LlmError::Server { provider: "p".into(), status: 503, message: "busy".into(), retry_after: None })
//!         } else {
//!             Ok(LlmResponse::text("ok", req.model, "p"))
//!         }
//!     }
//! });
//! let policy = RetryPolicy::builder().base_delay(Duration::from_millis(100)).seed(7).build().unwrap();
//! let svc = ServiceBuilder::new().layer(RetryLayer::new(policy)).service(flaky);
//! let res = svc.oneshot(LlmRequest::new("m", "hi")).await.unwrap();
//! assert_eq!(res.content, "ok");
//! assert_eq!(res.attempts.len(), 1);
//! assert_eq!(res.attempts[0].status, Some(503));
//! # });
//! ```

mod budget;
mod future;
mod layer;

use std::time::{Duration, SystemTime};

use flowloom_core::{FrameworkConfig, LlmError};

pub use budget::RetryBudget;
pub use future::Retry;
pub use layer::RetryLayer;

use crate::error::ConfigError;

/// Default number of attempts (the first call included).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Default wait before the first retry.
pub const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(500);
/// Default backoff multiplier.
pub const DEFAULT_FACTOR: f64 = 2.0;
/// Default longest backoff wait.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(30);
/// Default jitter fraction.
pub const DEFAULT_JITTER: f64 = 0.5;
/// Default longest `Retry-After` the layer will wait.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How a [`RetryLayer`] retries. Build with [`RetryPolicy::builder`]; a policy that exists is
/// valid.
///
/// ```
/// use std::time::Duration;
/// use flowloom_middleware::retry::RetryPolicy;
/// let p = RetryPolicy::builder().max_attempts(5).factor(3.0).jitter(0.0).build().unwrap();
/// assert_eq!(p.backoff(1, 0.0), Duration::from_millis(500));
/// assert_eq!(p.backoff(2, 0.0), Duration::from_millis(1500));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    max_attempts: u32,
    base_delay: Duration,
    factor: f64,
    max_delay: Duration,
    jitter: f64,
    honor_retry_after: bool,
    max_retry_after: Duration,
    deadline: Option<Duration>,
    budget: Option<(f64, f64, f64)>,
    seed: Option<u64>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            base_delay: DEFAULT_BASE_DELAY,
            factor: DEFAULT_FACTOR,
            max_delay: DEFAULT_MAX_DELAY,
            jitter: DEFAULT_JITTER,
            honor_retry_after: true,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            deadline: None,
            budget: Some((
                budget::DEFAULT_RETRY_RATIO,
                budget::DEFAULT_MIN_PER_SEC,
                budget::DEFAULT_MAX_BALANCE,
            )),
            seed: None,
        }
    }
}

impl RetryPolicy {
    /// A builder starting from the defaults.
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder {
            policy: RetryPolicy::default(),
        }
    }

    /// The policy a [`FrameworkConfig`] asks for: `max_retry_attempts` attempts and
    /// `retry_backoff_factor` as the multiplier, other settings at their defaults.
    ///
    /// ```
    /// use flowloom_core::FrameworkConfig;
    /// use flowloom_middleware::retry::RetryPolicy;
    /// let p = RetryPolicy::from_config(&FrameworkConfig::default()).unwrap();
    /// assert_eq!(p.max_attempts(), 3);
    /// ```
    pub fn from_config(config: &FrameworkConfig) -> Result<Self, ConfigError> {
        Self::builder()
            .max_attempts(config.max_retry_attempts)
            .factor(config.retry_backoff_factor)
            .build()
    }

    /// Most calls in all, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }
    /// The wait before the first retry, before jitter.
    pub fn base_delay(&self) -> Duration {
        self.base_delay
    }
    /// The backoff multiplier.
    pub fn factor(&self) -> f64 {
        self.factor
    }
    /// The longest backoff wait.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }
    /// The jitter fraction, 0.0–1.0.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }
    /// Whether a provider's `Retry-After` replaces the backoff.
    pub fn honors_retry_after(&self) -> bool {
        self.honor_retry_after
    }
    /// The longest `Retry-After` worth waiting for.
    pub fn max_retry_after(&self) -> Duration {
        self.max_retry_after
    }
    /// The overall deadline, if any.
    pub fn deadline(&self) -> Option<Duration> {
        self.deadline
    }

    /// The wait before retry number `retry` (1 = the second attempt), for a random draw `u` in
    /// `[0, 1)`: `min(max_delay, base × factor^(retry-1)) × (1 − jitter·u)`.
    pub fn backoff(&self, retry: u32, u: f64) -> Duration {
        let exp = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let raw = self.base_delay.as_secs_f64() * self.factor.powi(exp);
        let capped = if raw.is_finite() {
            raw.min(self.max_delay.as_secs_f64())
        } else {
            self.max_delay.as_secs_f64()
        };
        let u = u.clamp(0.0, 1.0);
        Duration::from_secs_f64((capped * (1.0 - self.jitter * u)).max(0.0))
    }

    pub(crate) fn new_budget(&self) -> Option<RetryBudget> {
        self.budget
            .map(|(ratio, per_sec, max)| RetryBudget::new_unchecked(ratio, per_sec, max))
    }

    pub(crate) fn rng(&self) -> fastrand::Rng {
        match self.seed {
            Some(s) => fastrand::Rng::with_seed(s),
            None => fastrand::Rng::new(),
        }
    }
}

/// Builds a [`RetryPolicy`]; [`build`](Self::build) checks every value.
#[derive(Debug, Clone)]
pub struct RetryPolicyBuilder {
    policy: RetryPolicy,
}

impl RetryPolicyBuilder {
    /// Most calls in all, the first included (≥ 1; 1 = no retry). Default 3.
    #[must_use]
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.policy.max_attempts = n;
        self
    }
    /// The wait before the first retry. Default 500 ms.
    #[must_use]
    pub fn base_delay(mut self, d: Duration) -> Self {
        self.policy.base_delay = d;
        self
    }
    /// The backoff multiplier (≥ 1.0). Default 2.0.
    #[must_use]
    pub fn factor(mut self, f: f64) -> Self {
        self.policy.factor = f;
        self
    }
    /// The longest backoff wait (≥ base delay). Default 30 s.
    #[must_use]
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.policy.max_delay = d;
        self
    }
    /// The jitter fraction, 0.0 (none) to 1.0 (anywhere from 0 to the full delay). Default 0.5.
    #[must_use]
    pub fn jitter(mut self, j: f64) -> Self {
        self.policy.jitter = j;
        self
    }
    /// Whether a provider's `Retry-After` replaces the backoff. Default true.
    #[must_use]
    pub fn honor_retry_after(mut self, yes: bool) -> Self {
        self.policy.honor_retry_after = yes;
        self
    }
    /// The longest `Retry-After` worth waiting for; a longer one ends the retries. Default 60 s.
    #[must_use]
    pub fn max_retry_after(mut self, d: Duration) -> Self {
        self.policy.max_retry_after = d;
        self
    }
    /// An overall deadline from the call's start: no wait is started that would end after it.
    #[must_use]
    pub fn deadline(mut self, d: Duration) -> Self {
        self.policy.deadline = Some(d);
        self
    }
    /// The retry budget: retries may add `ratio` of the requests (0.0–1.0; default 0.2), plus
    /// `min_per_sec` retries per second whatever the traffic (default 1.0), saving up at most
    /// `max_balance` retries (≥ 1; default 10).
    #[must_use]
    pub fn budget(mut self, ratio: f64, min_per_sec: f64, max_balance: f64) -> Self {
        self.policy.budget = Some((ratio, min_per_sec, max_balance));
        self
    }
    /// No retry budget: every retryable failure is retried up to `max_attempts`.
    #[must_use]
    pub fn no_budget(mut self) -> Self {
        self.policy.budget = None;
        self
    }
    /// Seeds the jitter's random numbers, so the waits are the same on every run.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.policy.seed = Some(seed);
        self
    }

    /// Checks the values and returns the policy.
    pub fn build(self) -> Result<RetryPolicy, ConfigError> {
        let p = self.policy;
        if p.max_attempts == 0 {
            return Err(ConfigError::new(
                "retry",
                "max_attempts",
                0,
                "an integer ≥ 1 (1 = no retry)",
            ));
        }
        if !(p.factor >= 1.0 && p.factor.is_finite()) {
            return Err(ConfigError::new(
                "retry",
                "factor",
                p.factor,
                "a finite number ≥ 1.0, e.g. 2.0",
            ));
        }
        if p.max_delay < p.base_delay {
            return Err(ConfigError::new(
                "retry",
                "max_delay",
                format!("{:?}", p.max_delay),
                format!("at least base_delay ({:?})", p.base_delay),
            ));
        }
        if !(0.0..=1.0).contains(&p.jitter) {
            return Err(ConfigError::new(
                "retry",
                "jitter",
                p.jitter,
                "a fraction from 0.0 to 1.0",
            ));
        }
        if let Some((ratio, per_sec, max)) = p.budget {
            RetryBudget::new(ratio, per_sec, max)?;
        }
        Ok(p)
    }
}

/// Parses an HTTP `Retry-After` value: a number of seconds (`"2"`, also `"1.5"`) or an HTTP
/// date (`"Wed, 21 Oct 2015 07:28:00 GMT"`), the latter measured from `now`. A date in the past
/// gives zero. Anything else gives `None`. The same rule as [`flowloom_core::retry_after::parse`],
/// which this calls.
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use flowloom_middleware::retry::parse_retry_after;
/// let now = UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 07:27:50 GMT
/// assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
/// assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now), Some(Duration::from_secs(10)));
/// assert_eq!(parse_retry_after("soon", now), None);
/// ```
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    flowloom_core::retry_after::parse(value, now)
}

/// How long to wait before the next attempt, or why not to retry.
pub(crate) enum Decision {
    Wait(Duration),
    GiveUp(&'static str),
}

impl RetryPolicy {
    pub(crate) fn decide(
        &self,
        error: &LlmError,
        retry: u32,
        elapsed: Duration,
        rng: impl FnOnce() -> f64,
    ) -> Decision {
        let wait = match error.retry_after() {
            Some(after) if self.honor_retry_after => {
                if after > self.max_retry_after {
                    return Decision::GiveUp("the provider's Retry-After exceeds max_retry_after");
                }
                after
            }
            _ => self.backoff(retry, rng()),
        };
        if let Some(deadline) = self.deadline
            && elapsed.saturating_add(wait) > deadline
        {
            return Decision::GiveUp("the next wait would end past the deadline");
        }
        Decision::Wait(wait)
    }
}
