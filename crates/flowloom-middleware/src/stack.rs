//! [`ProviderStack`]: the layers in the recommended order, each optional.
//!
//! Outermost first: guard → cache → overall timeout → retry → concurrency limit → rate limit →
//! per-attempt timeout → provider. See the [crate docs](crate) for why.
//!
//! ```
//! use std::time::Duration;
//! use flowloom_core::{FrameworkConfig, LlmRequest, LlmResponse, LlmError};
//! use flowloom_middleware::ProviderStack;
//! use flowloom_middleware::rate_limit::{RateLimit, RateLimitLayer};
//! use tower::ServiceExt;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let provider = tower::service_fn(|r: LlmRequest| async move {
//!     Ok::<_, LlmError>(LlmResponse::text("ok", r.model, "p"))
//! });
//! let stack = ProviderStack::recommended(&FrameworkConfig::default()).unwrap()
//!     .rate_limit(RateLimitLayer::new(RateLimit::builder().requests_per_minute(500).build().unwrap()));
//! let svc = stack.service(provider); // a BoxLlmService
//! assert_eq!(svc.oneshot(LlmRequest::new("m", "hi")).await.unwrap().content, "ok");
//! # });
//! ```

use std::time::Duration;

use flowloom_core::provider::{boxed, boxed_embedding};
use flowloom_core::{
    BoxEmbeddingService, BoxLlmService, EmbeddingService, FrameworkConfig, LlmService,
};
use tower::ServiceBuilder;

use crate::cache::CacheLayer;
use crate::concurrency::ConcurrencyLimitLayer;
use crate::error::ConfigError;
use crate::guard::GuardLayer;
use crate::rate_limit::RateLimitLayer;
use crate::retry::{RetryLayer, RetryPolicy};
use crate::timeout::TimeoutLayer;

/// The per-attempt timeout [`ProviderStack::recommended`] sets.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(120);

/// The layers of a provider, each optional, applied in the recommended order.
///
/// The layers inside keep their shared state (retry budget, rate-limit buckets, semaphore,
/// cache) across every service built from one stack: build one stack per provider account.
#[derive(Debug, Clone, Default)]
pub struct ProviderStack {
    guard: Option<GuardLayer>,
    cache: Option<CacheLayer>,
    overall_timeout: Option<Duration>,
    retry: Option<RetryLayer>,
    concurrency: Option<ConcurrencyLimitLayer>,
    rate_limit: Option<RateLimitLayer>,
    attempt_timeout: Option<Duration>,
}

impl ProviderStack {
    /// An empty stack: `service` returns the provider as it is (boxed).
    pub fn new() -> Self {
        Self::default()
    }

    /// Retry as the configuration says (`max_retry_attempts`, `retry_backoff_factor`, the
    /// other retry settings at their defaults) and a per-attempt timeout of
    /// [`DEFAULT_ATTEMPT_TIMEOUT`]. No guard, cache or limits: add them as needed.
    pub fn recommended(config: &FrameworkConfig) -> Result<Self, ConfigError> {
        Ok(Self::new()
            .retry(RetryLayer::new(RetryPolicy::from_config(config)?))
            .attempt_timeout(DEFAULT_ATTEMPT_TIMEOUT))
    }

    /// Sets the guard (outermost).
    #[must_use]
    pub fn guard(mut self, layer: GuardLayer) -> Self {
        self.guard = Some(layer);
        self
    }
    /// Sets the response cache (inside the guard; chat only).
    #[must_use]
    pub fn cache(mut self, layer: CacheLayer) -> Self {
        self.cache = Some(layer);
        self
    }
    /// Sets the overall timeout, covering every attempt and wait.
    #[must_use]
    pub fn overall_timeout(mut self, d: Duration) -> Self {
        self.overall_timeout = Some(d);
        self
    }
    /// Sets the retry layer.
    #[must_use]
    pub fn retry(mut self, layer: RetryLayer) -> Self {
        self.retry = Some(layer);
        self
    }
    /// Removes the retry layer.
    #[must_use]
    pub fn no_retry(mut self) -> Self {
        self.retry = None;
        self
    }
    /// Sets the concurrency limit (each attempt holds a slot).
    #[must_use]
    pub fn concurrency(mut self, layer: ConcurrencyLimitLayer) -> Self {
        self.concurrency = Some(layer);
        self
    }
    /// Sets the rate limit (each attempt counts).
    #[must_use]
    pub fn rate_limit(mut self, layer: RateLimitLayer) -> Self {
        self.rate_limit = Some(layer);
        self
    }
    /// Sets the per-attempt timeout (innermost).
    #[must_use]
    pub fn attempt_timeout(mut self, d: Duration) -> Self {
        self.attempt_timeout = Some(d);
        self
    }
    /// Removes the per-attempt timeout.
    #[must_use]
    pub fn no_attempt_timeout(mut self) -> Self {
        self.attempt_timeout = None;
        self
    }

    /// Wraps a chat provider in the stack, then boxes the result once (the layers inside are
    /// composed without boxing, so cloning the service between layers costs no allocation).
    pub fn service<S: LlmService>(&self, provider: S) -> BoxLlmService {
        boxed(
            ServiceBuilder::new()
                .option_layer(self.guard.clone())
                .option_layer(self.cache.clone())
                .option_layer(self.overall_timeout.map(TimeoutLayer::new))
                .option_layer(self.retry.clone())
                .option_layer(self.concurrency.clone())
                .option_layer(self.rate_limit.clone())
                .option_layer(self.attempt_timeout.map(TimeoutLayer::new))
                .service(provider),
        )
    }

    /// Wraps an embedding provider in the stack (the cache does not apply to embeddings).
    pub fn embedding_service<S: EmbeddingService>(&self, provider: S) -> BoxEmbeddingService {
        boxed_embedding(
            ServiceBuilder::new()
                .option_layer(self.guard.clone())
                .option_layer(self.overall_timeout.map(TimeoutLayer::new))
                .option_layer(self.retry.clone())
                .option_layer(self.concurrency.clone())
                .option_layer(self.rate_limit.clone())
                .option_layer(self.attempt_timeout.map(TimeoutLayer::new))
                .service(provider),
        )
    }
}

/// The recommended stack for `config` around `provider`: see [`ProviderStack::recommended`].
pub fn recommended_stack<S: LlmService>(
    config: &FrameworkConfig,
    provider: S,
) -> Result<BoxLlmService, ConfigError> {
    Ok(ProviderStack::recommended(config)?.service(provider))
}
