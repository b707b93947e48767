use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use flowloom_core::LlmError;
use flowloom_core::provider::BoxFuture;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use super::Decision;
use super::layer::Shared;
use crate::call::{ModelRequest, ModelResponse, failed_attempt};

/// A service that retries its inner service's retryable failures; made by
/// [`RetryLayer`](super::RetryLayer).
#[derive(Debug, Clone)]
pub struct Retry<S> {
    pub(super) inner: S,
    pub(super) shared: Arc<Shared>,
}

impl<S> Retry<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, R> Service<R> for Retry<S>
where
    R: ModelRequest,
    S: Service<R, Error = LlmError> + Clone + Send + 'static,
    S::Response: ModelResponse,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = LlmError;
    type Future = BoxFuture<Result<S::Response, LlmError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        // Use the instance that was polled ready; leave a fresh clone behind.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(run(inner, req, Arc::clone(&self.shared)))
    }
}

async fn run<S, R>(mut svc: S, req: R, shared: Arc<Shared>) -> Result<S::Response, LlmError>
where
    R: ModelRequest,
    S: Service<R, Error = LlmError> + Send,
    S::Response: ModelResponse,
    S::Future: Send,
{
    let policy = &shared.policy;
    if let Some(b) = &shared.budget {
        b.deposit();
    }
    let max = policy.max_attempts;
    if max <= 1 {
        return svc.ready().await?.call(req).await;
    }
    let start = Instant::now();
    let mut waited = Duration::ZERO;
    let mut failed = Vec::new();
    let mut attempt: u32 = 1;
    let mut req = Some(req);
    loop {
        let Some(this) = (if attempt < max {
            req.clone()
        } else {
            req.take()
        }) else {
            // Unreachable: the request is only moved out on the last attempt, after which
            // the loop always returns.
            return Err(LlmError::Cancelled);
        };
        let t0 = Instant::now();
        let result = match svc.ready().await {
            Ok(s) => s.call(this).await,
            Err(e) => Err(e),
        };
        let error = match result {
            Ok(mut resp) => {
                resp.prepend_attempts(failed);
                return Ok(resp);
            }
            Err(e) => e,
        };
        if !error.is_retryable() {
            return Err(error);
        }
        let took = t0.elapsed();
        let give_up = |reason: &str, attempts: u32, waited: Duration, last: LlmError| {
            tracing::warn!(attempts, waited_ms = waited.as_millis() as u64, error = %last, reason, "model call failed, not retrying");
            Err(LlmError::RetriesExhausted {
                attempts,
                waited,
                last: Box::new(last),
            })
        };
        if attempt >= max {
            return give_up("max_attempts reached", attempt, waited, error);
        }
        let decision = policy.decide(&error, attempt, start.elapsed(), || {
            match shared.rng.lock() {
                Ok(mut r) => r.f64(),
                Err(p) => p.into_inner().f64(),
            }
        });
        let wait = match decision {
            Decision::Wait(w) => w,
            Decision::GiveUp(reason) => return give_up(reason, attempt, waited, error),
        };
        if let Some(b) = &shared.budget
            && !b.try_withdraw()
        {
            return give_up("the retry budget is empty", attempt, waited, error);
        }
        if let Some(r) = req.as_ref() {
            let provider = r.provider_or("unknown");
            failed.push(failed_attempt(provider, r.model(), &error, took));
        }
        tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, error = %error, "retrying model call");
        tokio::time::sleep(wait).await;
        waited += wait;
        attempt += 1;
    }
}
