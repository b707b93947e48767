//! Rate limits by requests per minute and tokens per minute; callers wait, in order.
//!
//! [`RateLimitLayer`] holds calls back so that the provider sees no more than the configured
//! requests and tokens per minute. A call over the limit is never refused: it waits, and the
//! waits are handed out in arrival order (first come, first served), so no caller starves.
//!
//! **Requests per minute** are a token bucket refilled at `rpm / 60` per second holding
//! [`burst`](RateLimitBuilder::request_burst) requests (1 by default): with a burst of 1, calls
//! are spaced exactly `60 / rpm` seconds apart.
//!
//! **Tokens per minute** are a bucket refilled at `tpm / 60` per second holding a full
//! minute's `tpm`. A call reserves its *estimate* before it is made ([`estimate_tokens`]:
//! the shared prompt estimate [`LlmRequest::estimated_prompt_tokens`], i.e. the characters of
//! every message divided by 4, rounded up, plus 4 per message for the chat framing, plus the
//! tool definitions; then `max_tokens`, the most the answer may use; this is how providers
//! themselves count a request against a token limit). Characters, not UTF-8 bytes, are
//! counted, the same rule as the budget layer's, so both layers reserve the same prompt
//! estimate for a call. After the call, the estimate is
//! **corrected** from the usage the provider reported (`total_tokens`): unused tokens go back
//! to the bucket, extra tokens are taken (the bucket may go into debt, which delays later
//! callers). A call without reported usage, or that failed, keeps its estimate. A call whose
//! estimate exceeds the whole bucket waits for a full bucket and then goes.
//!
//! Place it *inside* the retry layer, so every attempt counts against the limit, and close to
//! the provider, so the spacing it makes is the spacing the provider sees.
//!
//! ```
//! use std::time::Duration;
//! use flowloom_core::{LlmRequest, LlmResponse, LlmError};
//! use flowloom_middleware::rate_limit::{RateLimit, RateLimitLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
//! let limit = RateLimit::builder().requests_per_minute(60).build().unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(RateLimitLayer::new(limit))
//!     .service(tower::service_fn(|r: LlmRequest| async move {
//!         Ok::<_, LlmError>(LlmResponse::text("ok", r.model, "p"))
//!     }));
//! let start = tokio::time::Instant::now();
//! svc.clone().oneshot(LlmRequest::new("m", "a")).await.unwrap();
//! svc.clone().oneshot(LlmRequest::new("m", "b")).await.unwrap();
//! assert_eq!(start.elapsed(), Duration::from_secs(1)); // 60 rpm: one per second
//! # });
//! ```

mod bucket;
mod service;

pub use service::{RateLimitLayer, RateLimited};

use flowloom_core::{EmbeddingRequest, LlmRequest};

use crate::error::ConfigError;

/// The estimated tokens of a chat request before it is made: the prompt estimate
/// ([`LlmRequest::estimated_prompt_tokens`]: `ceil(characters / 4)` over every message's text,
/// plus 4 per message, plus the tool definitions) and `max_tokens`.
///
/// ```
/// use flowloom_core::LlmRequest;
/// let req = LlmRequest::new("m", "12345678").with_max_tokens(100);
/// assert_eq!(flowloom_middleware::rate_limit::estimate_tokens(&req), 2 + 4 + 100);
/// ```
pub fn estimate_tokens(req: &LlmRequest) -> u64 {
    req.estimated_prompt_tokens() + u64::from(req.max_tokens)
}

/// The estimated tokens of an embedding request: `ceil(characters / 4)` over every input
/// ([`flowloom_core::estimate_text_tokens`], as for chat messages and the budget layer).
pub fn estimate_embedding_tokens(req: &EmbeddingRequest) -> u64 {
    req.input
        .iter()
        .map(|t| flowloom_core::estimate_text_tokens(t))
        .sum()
}

/// Limits for a [`RateLimitLayer`]; build with [`RateLimit::builder`].
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    requests_per_minute: Option<u32>,
    request_burst: u32,
    tokens_per_minute: Option<u64>,
}

impl RateLimit {
    /// A builder with no limits set.
    pub fn builder() -> RateLimitBuilder {
        RateLimitBuilder {
            limit: RateLimit {
                requests_per_minute: None,
                request_burst: 1,
                tokens_per_minute: None,
            },
        }
    }
    /// Requests per minute, if limited.
    pub fn requests_per_minute(&self) -> Option<u32> {
        self.requests_per_minute
    }
    /// Requests that may go at once after a quiet spell.
    pub fn request_burst(&self) -> u32 {
        self.request_burst
    }
    /// Tokens per minute, if limited.
    pub fn tokens_per_minute(&self) -> Option<u64> {
        self.tokens_per_minute
    }
}

/// Builds a [`RateLimit`]; [`build`](Self::build) checks the values.
#[derive(Debug, Clone)]
pub struct RateLimitBuilder {
    limit: RateLimit,
}

impl RateLimitBuilder {
    /// At most `rpm` requests per minute (≥ 1).
    #[must_use]
    pub fn requests_per_minute(mut self, rpm: u32) -> Self {
        self.limit.requests_per_minute = Some(rpm);
        self
    }
    /// How many requests may go at once after a quiet spell (≥ 1; default 1, which spaces
    /// calls evenly). At most `rpm`.
    #[must_use]
    pub fn request_burst(mut self, burst: u32) -> Self {
        self.limit.request_burst = burst;
        self
    }
    /// At most `tpm` tokens per minute (≥ 1), estimated before and corrected after each call.
    #[must_use]
    pub fn tokens_per_minute(mut self, tpm: u64) -> Self {
        self.limit.tokens_per_minute = Some(tpm);
        self
    }
    /// Checks the values: at least one limit, each ≥ 1, burst from 1 to rpm.
    pub fn build(self) -> Result<RateLimit, ConfigError> {
        let l = self.limit;
        if l.requests_per_minute.is_none() && l.tokens_per_minute.is_none() {
            return Err(ConfigError::new(
                "rate limit",
                "limits",
                "none",
                "requests_per_minute, tokens_per_minute or both",
            ));
        }
        if l.requests_per_minute == Some(0) {
            return Err(ConfigError::new(
                "rate limit",
                "requests_per_minute",
                0,
                "an integer ≥ 1 (leave it unset for no request limit)",
            ));
        }
        if l.tokens_per_minute == Some(0) {
            return Err(ConfigError::new(
                "rate limit",
                "tokens_per_minute",
                0,
                "an integer ≥ 1 (leave it unset for no token limit)",
            ));
        }
        let rpm = l.requests_per_minute.unwrap_or(u32::MAX);
        if l.request_burst == 0 || l.request_burst > rpm {
            return Err(ConfigError::new(
                "rate limit",
                "request_burst",
                l.request_burst,
                format!("an integer from 1 to requests_per_minute ({rpm})"),
            ));
        }
        Ok(l)
    }
}
