use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use flowloom_core::LlmError;
use flowloom_core::provider::BoxFuture;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use super::RateLimit;
use super::bucket::Bucket;
use crate::call::{ModelRequest, ModelResponse};

/// Holds calls back to stay within a [`RateLimit`]; see the [module docs](super).
///
/// The limit is shared by every service the layer builds (and their clones): one layer per
/// provider account.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    limit: RateLimit,
    buckets: Mutex<Buckets>,
}

#[derive(Debug)]
struct Buckets {
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
}

impl RateLimitLayer {
    /// A layer enforcing `limit`.
    pub fn new(limit: RateLimit) -> Self {
        let now = Instant::now();
        let requests = limit
            .requests_per_minute
            .map(|rpm| Bucket::new(f64::from(limit.request_burst), f64::from(rpm) / 60.0, now));
        let tokens = limit
            .tokens_per_minute
            .map(|tpm| Bucket::new(tpm as f64, tpm as f64 / 60.0, now));
        Self {
            shared: Arc::new(Shared {
                limit,
                buckets: Mutex::new(Buckets { requests, tokens }),
            }),
        }
    }

    /// The limit enforced.
    pub fn limit(&self) -> &RateLimit {
        &self.shared.limit
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;
    fn layer(&self, inner: S) -> RateLimited<S> {
        RateLimited {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// A service held to a rate limit; made by [`RateLimitLayer`].
#[derive(Debug, Clone)]
pub struct RateLimited<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets> {
        match self.buckets.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

impl<S, R> Service<R> for RateLimited<S>
where
    R: ModelRequest,
    S: Service<R, Error = LlmError> + Clone + Send + 'static,
    S::Response: ModelResponse,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = LlmError;
    type Future = BoxFuture<Result<S::Response, LlmError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        // Readiness of the inner service is awaited in the call, after the wait for a slot.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: R) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        let mut svc = self.inner.clone();
        // Reserve now, in call order: the wait is decided by arrival, not by polling.
        let now = Instant::now();
        let (wait, reserved) = {
            let mut b = shared.lock();
            let mut wait = b
                .requests
                .as_mut()
                .map(|r| r.reserve(1.0, now))
                .unwrap_or_default();
            let mut reserved = 0.0;
            if let Some(t) = b.tokens.as_mut() {
                let estimate = req.estimated_tokens() as f64;
                reserved = estimate.min(t_capacity(&shared.limit));
                wait = wait.max(t.reserve(reserved, now));
            }
            (wait, reserved)
        };
        Box::pin(async move {
            if !wait.is_zero() {
                tokio::time::sleep_until(now + wait).await;
            }
            let result = svc.ready().await?.call(req).await;
            if reserved > 0.0
                && let Ok(resp) = &result
                && let Some(usage) = resp.usage()
            {
                let delta = reserved - usage.total_tokens as f64;
                if delta != 0.0
                    && let Some(t) = shared.lock().tokens.as_mut()
                {
                    t.adjust(delta, Instant::now());
                }
            }
            result
        })
    }
}

fn t_capacity(limit: &RateLimit) -> f64 {
    limit.tokens_per_minute.map(|t| t as f64).unwrap_or(0.0)
}
