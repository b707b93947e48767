use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use flowloom_core::LlmError;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::Service;

use crate::call::ModelRequest;

/// A service whose calls fail with [`LlmError::Timeout`] after a set time; made by
/// [`TimeoutLayer`](super::TimeoutLayer).
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    pub(super) inner: S,
    pub(super) duration: Duration,
}

impl<S> Timeout<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, R> Service<R> for Timeout<S>
where
    R: ModelRequest,
    S: Service<R, Error = LlmError>,
{
    type Response = S::Response;
    type Error = LlmError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let provider = req.context().provider.clone();
        ResponseFuture {
            inner: self.inner.call(req),
            sleep: tokio::time::sleep(self.duration),
            duration: self.duration,
            provider,
        }
    }
}

pin_project! {
    /// The future of a [`Timeout`] call.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Sleep,
        duration: Duration,
        provider: Option<Arc<str>>,
    }
}

impl<F, T> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, LlmError>>,
{
    type Output = Result<T, LlmError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(r) = this.inner.poll(cx) {
            return Poll::Ready(r);
        }
        match this.sleep.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(LlmError::Timeout {
                provider: this.provider.as_deref().unwrap_or("timeout").to_owned(),
                elapsed: *this.duration,
            })),
            Poll::Pending => Poll::Pending,
        }
    }
}
