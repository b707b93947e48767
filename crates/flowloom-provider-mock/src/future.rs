//! [`MockFuture`]: the future every mock service returns.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use flowloom_core::LlmError;

/// The future returned by [`MockProvider`](crate::MockProvider)'s services.
///
/// Without latency it is ready at once (no allocation, no timer). With latency it waits on
/// `tokio::time::sleep`, started at the first poll, so tests with paused time
/// (`#[tokio::test(start_paused = true)]`) run instantly. Polled outside a tokio runtime, a
/// delayed answer is an [`LlmError::Other`], not a panic.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct MockFuture<T> {
    state: State<T>,
}

#[derive(Debug)]
enum State<T> {
    Ready(Option<Result<T, LlmError>>),
    Delayed {
        delay: Duration,
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
        result: Option<Result<T, LlmError>>,
        provider: Arc<str>,
    },
}

impl<T> MockFuture<T> {
    pub(crate) fn ready(result: Result<T, LlmError>) -> Self {
        Self {
            state: State::Ready(Some(result)),
        }
    }

    pub(crate) fn after(delay: Duration, result: Result<T, LlmError>, provider: Arc<str>) -> Self {
        if delay.is_zero() {
            return Self::ready(result);
        }
        Self {
            state: State::Delayed {
                delay,
                sleep: None,
                result: Some(result),
                provider,
            },
        }
    }
}

fn polled_again(provider: &str) -> LlmError {
    LlmError::Other {
        provider: provider.to_owned(),
        message: "a mock future was polled after it completed".to_owned(),
    }
}

impl<T: Unpin> Future for MockFuture<T> {
    type Output = Result<T, LlmError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().state {
            State::Ready(result) => {
                Poll::Ready(result.take().unwrap_or_else(|| Err(polled_again("mock"))))
            }
            State::Delayed {
                delay,
                sleep,
                result,
                provider,
            } => {
                let sleep = match sleep {
                    Some(s) => s,
                    None => {
                        if tokio::runtime::Handle::try_current().is_err() {
                            return Poll::Ready(Err(LlmError::Other {
                                provider: provider.to_string(),
                                message: format!(
                                    "a mock answer with latency ({delay:?}) must be awaited inside a tokio runtime with time enabled; use BlockingClient or the BlockingProvider impl from blocking code"
                                ),
                            }));
                        }
                        sleep.insert(Box::pin(tokio::time::sleep(*delay)))
                    }
                };
                match sleep.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => {
                        Poll::Ready(result.take().unwrap_or_else(|| Err(polled_again(provider))))
                    }
                }
            }
        }
    }
}
