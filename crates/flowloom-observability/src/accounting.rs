//! [`TokenAccountingLayer`]: a tower layer that records every model call in a
//! [`UsageLedger`], for chat, embeddings and streamed chat.
//!
//! Each call is attributed by its request's `CallContext` (run, workflow, step, correlation
//! id) and by the model and provider that answered. A streamed call is recorded from its
//! final `StreamEvent::Done`; a stream that fails is recorded as failed. A call dropped before
//! it ends (a chat or embedding future, or a stream before `Done`: a timeout, a cancelled run)
//! is recorded as failed with error type `cancelled`: the provider may have billed it, so it
//! is never lost, and never counted as usage.
//!
//! ```
//! use flowloom_core::{LlmRequest, LlmResponse, TokenUsage, provider};
//! use flowloom_observability::{TokenAccountingLayer, UsageLedger};
//! use tower::{Layer, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let echo = tower::service_fn(|r: LlmRequest| async move {
//!     Ok::<_, flowloom_core::LlmError>(LlmResponse::text("ok", r.model.clone(), "echo")
//!         .with_usage(TokenUsage::new(12, 3, r.model, "echo")))
//! });
//! let ledger = UsageLedger::new();
//! let svc = TokenAccountingLayer::new(ledger.clone()).layer(echo);
//! svc.oneshot(LlmRequest::new("gpt-4o-mini", "hi")).await.unwrap();
//! assert_eq!(ledger.totals().tokens.total_tokens, 15);
//! # });
//! ```

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use flowloom_core::provider::BoxFuture;
use flowloom_core::{
    EmbeddingRequest, EmbeddingResponse, LlmError, LlmRequest, LlmResponse, LlmStream, StreamEvent,
    StreamRequest, TokenUsage,
};
use futures_util::Stream;
use tower::{Layer, Service};

use crate::ledger::{Entry, Outcome, PendingCall, TokenCounts, UsageLedger};
use crate::semconv::{OPERATION_CHAT, OPERATION_EMBEDDINGS};

/// Records every call of the wrapped service in a [`UsageLedger`].
#[derive(Debug, Clone)]
pub struct TokenAccountingLayer {
    ledger: UsageLedger,
}

impl TokenAccountingLayer {
    /// A layer writing to `ledger`.
    pub fn new(ledger: UsageLedger) -> Self {
        Self { ledger }
    }
    /// The ledger written to.
    pub fn ledger(&self) -> &UsageLedger {
        &self.ledger
    }
}

impl<S> Layer<S> for TokenAccountingLayer {
    type Service = TokenAccounting<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TokenAccounting {
            inner,
            ledger: self.ledger.clone(),
        }
    }
}

/// The service of [`TokenAccountingLayer`].
#[derive(Debug, Clone)]
pub struct TokenAccounting<S> {
    inner: S,
    ledger: UsageLedger,
}

/// The stored call of a finished chat call.
fn chat_entry(call: PendingCall, result: Result<&LlmResponse, &LlmError>) -> Entry {
    match result {
        Ok(res) => call.finish(
            Some(&res.model),
            Some(&res.provider),
            None,
            outcome_of(res.cached, res.usage.as_ref()),
        ),
        Err(e) => failed(call, e),
    }
}

fn outcome_of(cached: bool, usage: Option<&TokenUsage>) -> Outcome {
    match (cached, usage) {
        (true, u) => Outcome::CacheHit(u.map(TokenCounts::from_usage)),
        (false, Some(u)) => Outcome::Usage(TokenCounts::from_usage(u)),
        (false, None) => Outcome::NoUsage,
    }
}

fn failed(call: PendingCall, e: &LlmError) -> Entry {
    call.finish(
        None,
        None,
        e.provider(),
        Outcome::Failed(Cow::Borrowed(e.kind().as_str())),
    )
}

/// A call not yet recorded: recorded once, when it ends, or as cancelled when it is dropped
/// unfinished (a timeout, a cancelled run), so no call the provider may have billed is lost.
struct Unrecorded {
    call: Option<PendingCall>,
    ledger: UsageLedger,
}

impl Unrecorded {
    fn new(call: PendingCall, ledger: UsageLedger) -> Self {
        Self {
            call: Some(call),
            ledger,
        }
    }

    /// Records the call with the entry `entry` makes of it (once; later calls do nothing).
    fn record(&mut self, entry: impl FnOnce(PendingCall) -> Entry) {
        if let Some(c) = self.call.take() {
            self.ledger.record_entry(entry(c));
        }
    }

    fn routed_provider(&self) -> &str {
        self.call
            .as_ref()
            .and_then(PendingCall::routed_provider)
            .unwrap_or("unknown")
    }
}

impl Drop for Unrecorded {
    fn drop(&mut self) {
        self.record(|c| failed(c, &LlmError::Cancelled));
    }
}

pin_project_lite::pin_project! {
    /// The future of a chat call through [`TokenAccounting`]: records the call when it ends,
    /// or as cancelled when it is dropped first.
    pub struct AccountingFuture<F> {
        #[pin]
        inner: F,
        call: Unrecorded,
    }
}

impl<F> Future for AccountingFuture<F>
where
    F: Future<Output = Result<LlmResponse, LlmError>>,
{
    type Output = Result<LlmResponse, LlmError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        this.call.record(|c| chat_entry(c, result.as_ref()));
        Poll::Ready(result)
    }
}

impl<S> Service<LlmRequest> for TokenAccounting<S>
where
    S: Service<LlmRequest, Response = LlmResponse, Error = LlmError>,
{
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = AccountingFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: LlmRequest) -> Self::Future {
        let call = PendingCall::new(&req.context, OPERATION_CHAT, &req.model);
        AccountingFuture {
            inner: self.inner.call(req),
            call: Unrecorded::new(call, self.ledger.clone()),
        }
    }
}

impl<S> Service<EmbeddingRequest> for TokenAccounting<S>
where
    S: Service<EmbeddingRequest, Response = EmbeddingResponse, Error = LlmError>,
    S::Future: Send + 'static,
{
    type Response = EmbeddingResponse;
    type Error = LlmError;
    type Future = BoxFuture<Result<EmbeddingResponse, LlmError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: EmbeddingRequest) -> Self::Future {
        let mut call = Unrecorded::new(
            PendingCall::new(&req.context, OPERATION_EMBEDDINGS, &req.model),
            self.ledger.clone(),
        );
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await;
            call.record(|c| match &result {
                Ok(res) => c.finish(
                    Some(&res.model),
                    Some(&res.provider),
                    None,
                    outcome_of(false, res.usage.as_ref()),
                ),
                Err(e) => failed(c, e),
            });
            result
        })
    }
}

impl<S> Service<StreamRequest> for TokenAccounting<S>
where
    S: Service<StreamRequest, Response = LlmStream, Error = LlmError>,
    S::Future: Send + 'static,
{
    type Response = LlmStream;
    type Error = LlmError;
    type Future = BoxFuture<Result<LlmStream, LlmError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: StreamRequest) -> Self::Future {
        let mut call = Unrecorded::new(
            PendingCall::new(&req.0.context, OPERATION_CHAT, &req.0.model),
            self.ledger.clone(),
        );
        let fut = self.inner.call(req);
        Box::pin(async move {
            match fut.await {
                Ok(stream) => {
                    let s: LlmStream = Box::pin(AccountedStream {
                        inner: stream,
                        call,
                    });
                    Ok(s)
                }
                Err(e) => {
                    call.record(|c| failed(c, &e));
                    Err(e)
                }
            }
        })
    }
}

/// A stream that records its call when `Done` arrives, when it fails, or (as cancelled) when
/// it is dropped unfinished.
struct AccountedStream {
    inner: LlmStream,
    call: Unrecorded,
}

impl Stream for AccountedStream {
    type Item = Result<StreamEvent, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let item = this.inner.as_mut().poll_next(cx);
        match &item {
            Poll::Ready(Some(Ok(StreamEvent::Done(res)))) => {
                this.call.record(|c| chat_entry(c, Ok(res)));
            }
            Poll::Ready(Some(Err(e))) => this.call.record(|c| failed(c, e)),
            Poll::Ready(None) => {
                let e = LlmError::other(
                    this.call.routed_provider(),
                    "the stream ended without a final Done event",
                );
                this.call.record(|c| failed(c, &e));
            }
            _ => {}
        }
        item
    }
}
