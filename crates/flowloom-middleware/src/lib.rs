//! # flowloom-middleware
//!
//! `tower` layers around any flowloom provider: retry with backoff, timeouts, rate and
//! concurrency limits, failover chains, guards (PII, input validation) and a response cache.
//!
//! Every layer wraps the provider contract,
//! `Service<LlmRequest, Response = LlmResponse, Error = LlmError>`, and gives back a service of
//! the same contract (`Clone + Send + Sync + 'static`, `Send` futures), so layers stack in
//! any order with `ServiceBuilder` and the result can be boxed into a
//! [`BoxLlmService`](flowloom_core::BoxLlmService). Retry, timeout, rate limit, concurrency,
//! failover and guard also serve the embeddings contract (`EmbeddingRequest`).
//!
//! | module | layer | does |
//! | --- | --- | --- |
//! | [`retry`] | [`RetryLayer`] | exponential backoff with jitter, `Retry-After`, a retry budget |
//! | [`timeout`] | [`TimeoutLayer`] | per attempt (inside retry) or overall (outside retry) |
//! | [`rate_limit`] | [`RateLimitLayer`] | requests and tokens per minute; callers wait in order |
//! | [`concurrency`] | [`ConcurrencyLimitLayer`] | calls in flight at once |
//! | [`failover`] | [`Failover`], [`FailoverLayer`] | the YAML `providers:` chain |
//! | [`guard`] | [`GuardLayer`] | PII detect / redact / block, input validation |
//! | [`cache`] | [`CacheLayer`] | in-memory responses, TTL and LRU bound, opt-in |
//!
//! ## The recommended order
//!
//! Outermost (first in a `ServiceBuilder`) to innermost:
//!
//! 1. **[`GuardLayer`]** — checks the request before anything else happens to it. A blocked
//!    request costs nothing (no rate-limit tokens, no cache entry), and a redacted request is
//!    what the cache keys on, so personal data never sits in the cache.
//! 2. **[`CacheLayer`]** (opt-in) — a hit skips everything below: no slot, no tokens, no
//!    retries, no timeouts.
//! 3. **[`TimeoutLayer`], overall** — bounds everything the caller waits for: every attempt,
//!    every backoff, every wait for a rate-limit or concurrency slot.
//! 4. **[`RetryLayer`]** — retries below this point are invisible to the layers above.
//! 5. **[`ConcurrencyLimitLayer`]** — inside retry, so a call sleeping between attempts does
//!    not hold a slot.
//! 6. **[`RateLimitLayer`]** — inside retry, because every attempt is a request the provider
//!    counts; innermost of the waiting layers, so the spacing it makes is the spacing the
//!    provider sees.
//! 7. **[`TimeoutLayer`], per attempt** — innermost, so it measures only the provider's time,
//!    not time spent waiting in the limits above; a timed-out attempt is retried.
//! 8. the provider.
//!
//! A failover chain puts one such stack (from retry down) around each provider and the chain
//! inside the overall timeout: a provider's transient errors are retried on it first, and only
//! when its retries are exhausted does the chain move on.
//!
//! Token accounting (in `flowloom-observability`) sits outside the cache if cache hits should
//! be visible, in which case it must count `cached` responses as zero tokens (see [`cache`]).
//!
//! [`ProviderStack`] builds this order with each layer optional.
//!
//! ```
//! use std::time::Duration;
//! use flowloom_core::{LlmRequest, LlmResponse, LlmError, provider};
//! use flowloom_middleware::{
//!     CacheLayer, ConcurrencyLimitLayer, GuardLayer, RateLimitLayer, RetryLayer, TimeoutLayer,
//!     cache::CacheConfig, rate_limit::RateLimit, retry::RetryPolicy,
//! };
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let provider = tower::service_fn(|r: LlmRequest| async move {
//!     Ok::<_, LlmError>(LlmResponse::text("hello", r.model, "mock"))
//! });
//! let svc = ServiceBuilder::new()
//!     .layer(GuardLayer::redact())
//!     .layer(CacheLayer::new(CacheConfig::default()))
//!     .layer(TimeoutLayer::new(Duration::from_secs(300)))
//!     .layer(RetryLayer::new(RetryPolicy::default()))
//!     .layer(ConcurrencyLimitLayer::new(8).unwrap())
//!     .layer(RateLimitLayer::new(RateLimit::builder().requests_per_minute(500).tokens_per_minute(200_000).build().unwrap()))
//!     .layer(TimeoutLayer::new(Duration::from_secs(60)))
//!     .service(provider);
//! let svc: flowloom_core::BoxLlmService = provider::boxed(svc);
//! assert_eq!(svc.oneshot(LlmRequest::new("m", "hi")).await.unwrap().content, "hello");
//! # });
//! ```

pub mod cache;
pub mod call;
pub mod concurrency;
pub mod error;
pub mod failover;
pub mod guard;
pub mod rate_limit;
pub mod retry;
pub mod stack;
pub mod timeout;

pub use cache::{CacheConfig, CacheLayer};
pub use concurrency::ConcurrencyLimitLayer;
pub use error::ConfigError;
pub use failover::{Failover, FailoverEntry, FailoverLayer};
pub use guard::{GuardConfig, GuardLayer, PiiAction};
pub use rate_limit::{RateLimit, RateLimitLayer};
pub use retry::{RetryBudget, RetryLayer, RetryPolicy, parse_retry_after};
pub use stack::{ProviderStack, recommended_stack};
pub use timeout::TimeoutLayer;
