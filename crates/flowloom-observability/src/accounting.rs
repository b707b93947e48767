//! [`TokenAccountingLayer`]: a tower layer that records every model call in a
//! [`UsageLedger`], for chat, embeddings and streamed chat.
//!
//! Each call is attributed by its request's `CallContext` (run, workflow, step, correlation
//! id) and by the model and provider that answered. A streamed call is recorded from its
//! final `StreamEvent::Done`; a stream that fails, or is dropped before `Done`, is recorded
//! as failed.
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

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use flowloom_core::provider::BoxFuture;
use flowloom_core::{
    CallContext, EmbeddingRequest, EmbeddingResponse, LlmError, LlmRequest, LlmResponse, LlmStream,
    StreamEvent, StreamRequest, TokenUsage,
};
use futures_util::Stream;
use tower::{Layer, Service};

use crate::ledger::{CallOutcome, TokenCounts, UsageLedger, UsageRecord};
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

fn provider_of(ctx: &CallContext, answered: Option<&str>, err: Option<&LlmError>) -> String {
    answered
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .or_else(|| ctx.provider.as_deref().map(str::to_owned))
        .or_else(|| err.and_then(|e| e.provider()).map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The ledger record of a finished chat call.
pub(crate) fn chat_record(
    ctx: &CallContext,
    requested_model: &str,
    result: Result<&LlmResponse, &LlmError>,
) -> UsageRecord {
    match result {
        Ok(res) => {
            let model = if res.model.is_empty() {
                requested_model
            } else {
                &res.model
            };
            let outcome = outcome_of(res.cached, res.usage.as_ref());
            UsageRecord::new(
                ctx,
                OPERATION_CHAT,
                model,
                provider_of(ctx, Some(&res.provider), None),
                outcome,
            )
        }
        Err(e) => failed(ctx, OPERATION_CHAT, requested_model, e),
    }
}

fn outcome_of(cached: bool, usage: Option<&TokenUsage>) -> CallOutcome {
    match (cached, usage) {
        (true, u) => CallOutcome::CacheHit {
            tokens: u.map(TokenCounts::from_usage),
        },
        (false, Some(u)) => CallOutcome::Usage {
            tokens: TokenCounts::from_usage(u),
        },
        (false, None) => CallOutcome::NoUsage,
    }
}

fn failed(ctx: &CallContext, op: &'static str, model: &str, e: &LlmError) -> UsageRecord {
    UsageRecord::new(
        ctx,
        op,
        model,
        provider_of(ctx, None, Some(e)),
        CallOutcome::Failed {
            error_type: e.kind().as_str().to_owned(),
        },
    )
}

pin_project_lite::pin_project! {
    /// The future of a chat call through [`TokenAccounting`]: records the call when it ends.
    pub struct AccountingFuture<F> {
        #[pin]
        inner: F,
        ctx: CallContext,
        model: String,
        ledger: UsageLedger,
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
        this.ledger
            .record(chat_record(this.ctx, this.model, result.as_ref()));
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
        let ctx = req.context.clone();
        let model = req.model.clone();
        AccountingFuture {
            inner: self.inner.call(req),
            ctx,
            model,
            ledger: self.ledger.clone(),
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
        let ctx = req.context.clone();
        let model = req.model.clone();
        let ledger = self.ledger.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await;
            let record = match &result {
                Ok(res) => UsageRecord::new(
                    &ctx,
                    OPERATION_EMBEDDINGS,
                    if res.model.is_empty() {
                        &model
                    } else {
                        &res.model
                    },
                    provider_of(&ctx, Some(&res.provider), None),
                    outcome_of(false, res.usage.as_ref()),
                ),
                Err(e) => failed(&ctx, OPERATION_EMBEDDINGS, &model, e),
            };
            ledger.record(record);
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
        let ctx = req.0.context.clone();
        let model = req.0.model.clone();
        let ledger = self.ledger.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            match fut.await {
                Ok(stream) => {
                    let s: LlmStream = Box::pin(AccountedStream {
                        inner: stream,
                        ctx,
                        model,
                        ledger,
                        done: false,
                    });
                    Ok(s)
                }
                Err(e) => {
                    ledger.record(failed(&ctx, OPERATION_CHAT, &model, &e));
                    Err(e)
                }
            }
        })
    }
}

/// A stream that records its call when `Done` arrives, when it fails, or when it is dropped
/// unfinished.
struct AccountedStream {
    inner: LlmStream,
    ctx: CallContext,
    model: String,
    ledger: UsageLedger,
    done: bool,
}

impl Stream for AccountedStream {
    type Item = Result<StreamEvent, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let item = this.inner.as_mut().poll_next(cx);
        if !this.done {
            match &item {
                Poll::Ready(Some(Ok(StreamEvent::Done(res)))) => {
                    this.done = true;
                    this.ledger
                        .record(chat_record(&this.ctx, &this.model, Ok(res)));
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    this.ledger
                        .record(failed(&this.ctx, OPERATION_CHAT, &this.model, e));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    let e = LlmError::other(
                        provider_of(&this.ctx, None, None),
                        "the stream ended without a final Done event",
                    );
                    this.ledger
                        .record(failed(&this.ctx, OPERATION_CHAT, &this.model, &e));
                }
                _ => {}
            }
        }
        item
    }
}

impl Drop for AccountedStream {
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            self.ledger.record(failed(
                &self.ctx,
                OPERATION_CHAT,
                &self.model,
                &LlmError::Cancelled,
            ));
        }
    }
}
