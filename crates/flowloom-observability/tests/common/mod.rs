//! Test helpers: scripted model services.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flowloom_core::provider::BoxFuture;
use flowloom_core::{
    CallContext, EmbeddingRequest, EmbeddingResponse, FinishReason, LlmError, LlmRequest,
    LlmResponse, LlmStream, StreamEvent, StreamRequest, TokenUsage,
};
use std::task::{Context, Poll};

/// A zero-latency chat/embedding/stream service. Usage: prompt tokens = words in the prompt,
/// completion tokens = `completion`; `None` usage when `report_usage` is off.
#[derive(Clone)]
pub struct Mock {
    pub provider: &'static str,
    pub completion: u64,
    pub report_usage: bool,
    pub fail: Option<LlmError>,
    pub answer: String,
    pub calls: Arc<AtomicU64>,
}

impl Mock {
    pub fn new() -> Self {
        Self {
            provider: "mock",
            completion: 7,
            report_usage: true,
            fail: None,
            answer: "the answer".into(),
            calls: Arc::new(AtomicU64::new(0)),
        }
    }
    pub fn failing(e: LlmError) -> Self {
        Self {
            fail: Some(e),
            ..Self::new()
        }
    }
    pub fn without_usage() -> Self {
        Self {
            report_usage: false,
            ..Self::new()
        }
    }
    fn respond(&self, req: &LlmRequest) -> Result<LlmResponse, LlmError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if let Some(e) = &self.fail {
            return Err(e.clone());
        }
        let prompt = req.prompt().unwrap_or_default();
        let words = prompt.split_whitespace().count() as u64;
        let mut r = LlmResponse::text(self.answer.clone(), req.model.clone(), self.provider);
        r.response_id = Some(format!("resp-{}", self.calls.load(Ordering::Relaxed)));
        r.finish_reason = FinishReason::Stop;
        if self.report_usage {
            r = r.with_usage(TokenUsage::new(
                words,
                self.completion,
                req.model.clone(),
                self.provider,
            ));
        }
        Ok(r)
    }
}

impl tower::Service<LlmRequest> for Mock {
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = BoxFuture<Result<LlmResponse, LlmError>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: LlmRequest) -> Self::Future {
        let r = self.respond(&req);
        Box::pin(async move { r })
    }
}

impl tower::Service<EmbeddingRequest> for Mock {
    type Response = EmbeddingResponse;
    type Error = LlmError;
    type Future = BoxFuture<Result<EmbeddingResponse, LlmError>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: EmbeddingRequest) -> Self::Future {
        let fail = self.fail.clone();
        let provider = self.provider;
        let report = self.report_usage;
        Box::pin(async move {
            if let Some(e) = fail {
                return Err(e);
            }
            let tokens: u64 = req
                .input
                .iter()
                .map(|t| t.split_whitespace().count() as u64)
                .sum();
            Ok(EmbeddingResponse {
                embeddings: req.input.iter().map(|_| vec![0.0, 1.0]).collect(),
                model: req.model.clone(),
                provider: provider.into(),
                usage: report.then(|| TokenUsage::new(tokens, 0, req.model.clone(), provider)),
                latency_ms: 0.0,
            })
        })
    }
}

impl tower::Service<StreamRequest> for Mock {
    type Response = LlmStream;
    type Error = LlmError;
    type Future = BoxFuture<Result<LlmStream, LlmError>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: StreamRequest) -> Self::Future {
        let r = self.respond(&req.0);
        Box::pin(async move {
            let done = r?;
            let mut events: Vec<Result<StreamEvent, LlmError>> = done
                .content
                .split(' ')
                .map(|w| Ok(StreamEvent::Delta(w.to_owned())))
                .collect();
            events.push(Ok(StreamEvent::Done(done)));
            let s: LlmStream = Box::pin(futures_util::stream::iter(events));
            Ok(s)
        })
    }
}

/// A context for run `run`, step `step`.
pub fn ctx(run: uuid::Uuid, step: &str) -> CallContext {
    CallContext {
        run_id: Some(run),
        workflow: Some("wf".into()),
        step: Some(step.into()),
        correlation_id: Some(uuid::Uuid::new_v4()),
        provider: Some("mock".into()),
    }
}

/// A request of `words` words to `model` in `ctx`.
pub fn req(model: &str, words: usize, ctx: CallContext) -> LlmRequest {
    let prompt = vec!["word"; words].join(" ");
    LlmRequest::new(model, prompt).with_context(ctx)
}
