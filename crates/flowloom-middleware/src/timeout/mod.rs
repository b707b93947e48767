//! Timeouts: per attempt, or overall, depending on where the layer sits.
//!
//! [`TimeoutLayer`] bounds how long its inner service may take; when time runs out the call
//! is dropped and the error is [`LlmError::Timeout`](flowloom_core::LlmError::Timeout)
//! (retryable) naming the provider the request was routed to (its `context.provider`, or
//! `timeout` when unset) and the time it ran.
//!
//! What it bounds depends only on where it sits:
//!
//! - **Per attempt**: *inside* a [`RetryLayer`](crate::retry::RetryLayer) (listed after it in
//!   a `ServiceBuilder`). Each attempt gets the full duration; a timed-out attempt is retried
//!   like any other retryable failure.
//! - **Overall**: *outside* the retry layer (listed before it). The duration covers every
//!   attempt, every backoff wait, and any wait in rate or concurrency limits below it. When it
//!   fires, the caller gets `Timeout` at once, whatever attempt was running.
//!
//! A [`RetryPolicyBuilder::deadline`](crate::retry::RetryPolicyBuilder::deadline) is a softer
//! overall bound: it stops the retry layer from starting a wait that would end too late, but
//! never cuts a running attempt.
//!
//! ```
//! use std::time::Duration;
//! use flowloom_core::{LlmRequest, LlmResponse, LlmError};
//! use flowloom_middleware::retry::{RetryLayer, RetryPolicy};
//! use flowloom_middleware::timeout::TimeoutLayer;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
//! let slow = tower::service_fn(|req: LlmRequest| async move {
//!     tokio::time::sleep(Duration::from_secs(10)).await;
//!     Ok::<_, LlmError>(LlmResponse::text("late", req.model, "slow"))
//! });
//! let svc = ServiceBuilder::new()
//!     .layer(TimeoutLayer::new(Duration::from_secs(30)))              // overall
//!     .layer(RetryLayer::new(RetryPolicy::default()))
//!     .layer(TimeoutLayer::new(Duration::from_secs(2)))               // per attempt
//!     .service(slow);
//! let err = svc.oneshot(LlmRequest::new("m", "hi")).await.unwrap_err();
//! assert!(err.is_timeout());
//! assert!(matches!(err, LlmError::RetriesExhausted { attempts: 3, .. }));
//! # });
//! ```

mod future;
mod layer;

pub use future::{ResponseFuture, Timeout};
pub use layer::TimeoutLayer;
