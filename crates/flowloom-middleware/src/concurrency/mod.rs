//! A limit on calls in flight at once.
//!
//! [`ConcurrencyLimitLayer`] lets at most `max` calls run through the wrapped service at the
//! same time; the others wait for a slot in arrival order (tokio's semaphore is fair). The
//! slot is held until the inner call ends (or its future is dropped). It is shared by every
//! service the layer builds and their clones.
//!
//! Tower's own `ConcurrencyLimit` takes its permit in `poll_ready`; this one takes it inside
//! the call's future, so a cloned-and-dropped service never holds a slot and the result stays
//! a plain [`LlmService`](flowloom_core::LlmService).
//!
//! ```
//! use flowloom_core::{LlmRequest, LlmResponse, LlmError};
//! use flowloom_middleware::concurrency::ConcurrencyLimitLayer;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let svc = ServiceBuilder::new()
//!     .layer(ConcurrencyLimitLayer::new(4).unwrap())
//!     .service(tower::service_fn(|r: LlmRequest| async move {
//!         Ok::<_, LlmError>(LlmResponse::text("ok", r.model, "p"))
//!     }));
//! assert_eq!(svc.oneshot(LlmRequest::new("m", "hi")).await.unwrap().content, "ok");
//! assert!(ConcurrencyLimitLayer::new(0).is_err());
//! # });
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};

use flowloom_core::LlmError;
use flowloom_core::provider::BoxFuture;
use tokio::sync::Semaphore;
use tower::{Layer, Service, ServiceExt};

use crate::error::ConfigError;

/// Lets at most `max` calls run at once; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ConcurrencyLimitLayer {
    max: usize,
    semaphore: Arc<Semaphore>,
}

impl ConcurrencyLimitLayer {
    /// A limit of `max` calls at once (1 to 1,000,000).
    pub fn new(max: usize) -> Result<Self, ConfigError> {
        if max == 0 || max > 1_000_000 {
            return Err(ConfigError::new(
                "concurrency limit",
                "max",
                max,
                "an integer from 1 to 1000000",
            ));
        }
        Ok(Self {
            max,
            semaphore: Arc::new(Semaphore::new(max)),
        })
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Free slots right now.
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }
}

impl<S> Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimit<S>;
    fn layer(&self, inner: S) -> ConcurrencyLimit<S> {
        ConcurrencyLimit {
            inner,
            semaphore: Arc::clone(&self.semaphore),
        }
    }
}

/// A service with a limit on calls in flight; made by [`ConcurrencyLimitLayer`].
#[derive(Debug, Clone)]
pub struct ConcurrencyLimit<S> {
    inner: S,
    semaphore: Arc<Semaphore>,
}

impl<S, R> Service<R> for ConcurrencyLimit<S>
where
    R: Send + 'static,
    S: Service<R, Error = LlmError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = LlmError;
    type Future = BoxFuture<Result<S::Response, LlmError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: R) -> Self::Future {
        let semaphore = Arc::clone(&self.semaphore);
        let mut svc = self.inner.clone();
        Box::pin(async move {
            // The semaphore is never closed, so acquiring only fails if it were.
            let _permit = semaphore
                .acquire_owned()
                .await
                .map_err(|_| LlmError::Cancelled)?;
            svc.ready().await?.call(req).await
        })
    }
}
