//! [`GenAiTraceLayer`]: a span per model call following the OpenTelemetry GenAI semantic
//! conventions, and the `gen_ai.client.*` histograms.
//!
//! The span is named [`SPAN_GEN_AI`] in `tracing` (span names are static there) and carries
//! `otel.name = "{operation} {model}"` (e.g. `chat gpt-4o-mini`), which is the name it is
//! exported under. Its fields: `gen_ai.operation.name`, `gen_ai.provider.name`,
//! `gen_ai.request.model`, `gen_ai.request.temperature`, `gen_ai.request.max_tokens`,
//! `gen_ai.response.model`, `gen_ai.response.id`, `gen_ai.response.finish_reasons` (a JSON
//! array as text: `tracing` fields cannot hold arrays), `gen_ai.usage.input_tokens`,
//! `gen_ai.usage.output_tokens`, `error.type`, and the run's ids. Prompt and completion
//! text (`gen_ai.input.messages`, `gen_ai.output.messages`) are recorded only when
//! [`GenAiTraceLayer::log_prompts`] is on (`FLOWLOOM_LOG_PROMPTS=true`), and pass through the
//! layer's [`Redactor`] first.
//!
//! When a call ends, an event is logged inside its span (`model call finished` at INFO,
//! `model call failed` at WARN), so JSON logs carry every attribute once per call.
//!
//! Metrics go through the `opentelemetry` API: with no meter provider installed they cost
//! next to nothing. Build the layer after [`crate::init`] (which installs the provider when
//! OTLP is on), or hand it a meter with [`GenAiTraceLayer::with_meter`].
//!
//! ```
//! use flowloom_core::{LlmRequest, LlmResponse};
//! use flowloom_observability::GenAiTraceLayer;
//! use tower::{Layer, ServiceExt};
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let echo = tower::service_fn(|r: LlmRequest| async move {
//!     Ok::<_, flowloom_core::LlmError>(LlmResponse::text("ok", r.model, "echo"))
//! });
//! let svc = GenAiTraceLayer::new().layer(echo);
//! let res = svc.oneshot(LlmRequest::new("gpt-4o-mini", "hi")).await.unwrap();
//! assert_eq!(res.content, "ok");
//! # });
//! ```

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use flowloom_core::provider::BoxFuture;
use flowloom_core::{
    EmbeddingRequest, EmbeddingResponse, LlmError, LlmRequest, LlmResponse, LlmStream, StreamEvent,
    StreamRequest, TokenUsage,
};
use futures_util::Stream;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter};
use tower::{Layer, Service};
use tracing::field::{Empty, Field, Value};
use tracing::{Instrument, Span};

use crate::ledger::intern;
use crate::redact::Redactor;
use crate::semconv::*;

/// The `gen_ai.client.token.usage` and `gen_ai.client.operation.duration` histograms.
#[derive(Debug, Clone)]
pub struct GenAiMetrics {
    token_usage: Histogram<u64>,
    duration: Histogram<f64>,
}

impl GenAiMetrics {
    /// Instruments from the global meter provider (no-ops when none is installed).
    pub fn global() -> Self {
        Self::from_meter(&crate::meter())
    }

    /// Instruments from `meter`.
    pub fn from_meter(meter: &Meter) -> Self {
        Self {
            token_usage: meter
                .u64_histogram(METRIC_TOKEN_USAGE)
                .with_unit("{token}")
                .with_description("Number of input and output tokens used")
                .with_boundaries(vec![
                    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0,
                    1048576.0, 4194304.0, 16777216.0, 67108864.0,
                ])
                .build(),
            duration: meter
                .f64_histogram(METRIC_OPERATION_DURATION)
                .with_unit("s")
                .with_description("GenAI operation duration")
                .with_boundaries(vec![
                    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                    40.96, 81.92,
                ])
                .build(),
        }
    }

    /// Records a finished call: `attrs` are the call's attributes (operation, provider,
    /// models); the token type and error type are added in place, so one vector serves
    /// every instrument.
    fn record(
        &self,
        mut attrs: Vec<KeyValue>,
        usage: Option<&TokenUsage>,
        seconds: f64,
        error_type: Option<&'static str>,
    ) {
        if let Some(u) = usage {
            attrs.push(KeyValue::new(GEN_AI_TOKEN_TYPE, TOKEN_TYPE_INPUT));
            self.token_usage.record(u.prompt_tokens, &attrs);
            if let Some(last) = attrs.last_mut() {
                *last = KeyValue::new(GEN_AI_TOKEN_TYPE, TOKEN_TYPE_OUTPUT);
            }
            self.token_usage.record(u.completion_tokens, &attrs);
            attrs.pop();
        }
        if let Some(e) = error_type {
            attrs.push(KeyValue::new(ERROR_TYPE, e));
        }
        self.duration.record(seconds, &attrs);
    }
}

/// Opens a GenAI span per model call and records the GenAI histograms.
#[derive(Debug, Clone)]
pub struct GenAiTraceLayer {
    log_prompts: bool,
    redactor: Redactor,
    metrics: GenAiMetrics,
}

impl Default for GenAiTraceLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl GenAiTraceLayer {
    /// A layer without prompt logging, with the built-in redaction patterns, and metrics
    /// through the global meter provider.
    pub fn new() -> Self {
        Self {
            log_prompts: false,
            redactor: Redactor::new(),
            metrics: GenAiMetrics::global(),
        }
    }

    /// A layer set up from `config` (prompt logging and redactor).
    pub fn from_config(config: &crate::ObservabilityConfig) -> Self {
        Self::new()
            .log_prompts(config.log_prompts)
            .with_redactor(config.redactor.clone())
    }

    /// Records prompt and completion text on the span (off by default).
    #[must_use]
    pub fn log_prompts(mut self, on: bool) -> Self {
        self.log_prompts = on;
        self
    }

    /// Scrubs recorded prompt, completion and error text with `redactor`.
    #[must_use]
    pub fn with_redactor(mut self, redactor: Redactor) -> Self {
        self.redactor = redactor;
        self
    }

    /// Records metrics with `meter` instead of the global one.
    #[must_use]
    pub fn with_meter(mut self, meter: &Meter) -> Self {
        self.metrics = GenAiMetrics::from_meter(meter);
        self
    }
}

impl<S> Layer<S> for GenAiTraceLayer {
    type Service = GenAiTrace<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GenAiTrace {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`GenAiTraceLayer`].
#[derive(Debug, Clone)]
pub struct GenAiTrace<S> {
    inner: S,
    layer: GenAiTraceLayer,
}

/// What is known about a call before it is made (names shared, not copied).
struct CallInfo {
    operation: &'static str,
    model: Arc<str>,
    provider: Option<Arc<str>>,
}

impl CallInfo {
    fn new(operation: &'static str, model: &str, provider: Option<&Arc<str>>) -> Self {
        Self {
            operation,
            model: intern(model),
            provider: provider.cloned(),
        }
    }

    fn attrs(&self, response_model: Option<&str>, provider: Option<&str>) -> Vec<KeyValue> {
        // Room for the token type or the error type.
        let mut a = Vec::with_capacity(5);
        a.push(KeyValue::new(GEN_AI_OPERATION_NAME, self.operation));
        let p = match (provider, &self.provider) {
            (Some(p), Some(mine)) if p == &**mine => Arc::clone(mine),
            (Some(p), _) => intern(p),
            (None, Some(mine)) => Arc::clone(mine),
            (None, None) => intern("unknown"),
        };
        a.push(KeyValue::new(GEN_AI_PROVIDER_NAME, p));
        a.push(KeyValue::new(GEN_AI_REQUEST_MODEL, Arc::clone(&self.model)));
        if let Some(m) = response_model {
            let m = if m == &*self.model {
                Arc::clone(&self.model)
            } else {
                intern(m)
            };
            a.push(KeyValue::new(GEN_AI_RESPONSE_MODEL, m));
        }
        a
    }
}

fn chat_span(req: &LlmRequest, log_prompts: bool, redactor: &Redactor) -> Span {
    let ctx = &req.context;
    tracing::info_span!(
        target: TARGET_GEN_AI,
        SPAN_GEN_AI,
        { OTEL_NAME } = format!("{OPERATION_CHAT} {}", req.model),
        { OTEL_KIND } = "client",
        { OTEL_STATUS_CODE } = Empty,
        { OTEL_STATUS_DESCRIPTION } = Empty,
        { GEN_AI_OPERATION_NAME } = OPERATION_CHAT,
        { GEN_AI_PROVIDER_NAME } = ctx.provider.as_deref(),
        { GEN_AI_REQUEST_MODEL } = req.model.as_str(),
        { GEN_AI_REQUEST_TEMPERATURE } = req.temperature,
        { GEN_AI_REQUEST_MAX_TOKENS } = u64::from(req.max_tokens),
        { GEN_AI_RESPONSE_MODEL } = Empty,
        { GEN_AI_RESPONSE_ID } = Empty,
        { GEN_AI_RESPONSE_FINISH_REASONS } = Empty,
        { GEN_AI_USAGE_INPUT_TOKENS } = Empty,
        { GEN_AI_USAGE_OUTPUT_TOKENS } = Empty,
        { GEN_AI_USAGE_CACHED_INPUT_TOKENS } = Empty,
        { GEN_AI_CONVERSATION_ID } = ctx.correlation_id.map(tracing::field::display),
        // Evaluated only when the span is enabled.
        { GEN_AI_INPUT_MESSAGES } = log_prompts.then(|| {
            let json = serde_json::to_string(&req.messages).unwrap_or_default();
            redactor.redact(&json).into_owned()
        }),
        { GEN_AI_OUTPUT_MESSAGES } = Empty,
        { ERROR_TYPE } = Empty,
        { WORKFLOW_ID } = ctx.run_id.map(tracing::field::display),
        { WORKFLOW_NAME } = ctx.workflow.as_deref(),
        { STEP_NAME } = ctx.step.as_deref(),
    )
}

/// Records several fields in one go: each `record` call makes the JSON formatter re-parse and
/// re-serialize every field of the span, so one call instead of eight matters.
fn record_many<const N: usize>(span: &Span, values: [(&str, Option<&dyn Value>); N]) {
    let Some(meta) = span.metadata() else {
        return;
    };
    let fields = meta.fields();
    let Some(any) = fields.iter().next() else {
        return;
    };
    let resolved: [(Field, Option<&dyn Value>); N] =
        values.map(|(name, v)| match fields.field(name) {
            Some(f) => (f, v),
            None => (any.clone(), None),
        });
    let refs: [(&Field, Option<&dyn Value>); N] =
        std::array::from_fn(|i| (&resolved[i].0, resolved[i].1));
    span.record_all(&fields.value_set(&refs));
}

fn finish_chat(
    span: &Span,
    info: &CallInfo,
    metrics: &GenAiMetrics,
    started: Instant,
    result: Result<&LlmResponse, &LlmError>,
    log_prompts: bool,
    redactor: &Redactor,
) {
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(res) => {
            if !span.is_disabled() {
                let reasons = format!("[\"{}\"]", res.finish_reason.as_str().escape_default());
                let usage = res.usage.as_ref();
                let input = usage.map(|u| u.prompt_tokens);
                let output = usage.map(|u| u.completion_tokens);
                let cached = usage.and_then(|u| u.cached_prompt_tokens);
                let completion = log_prompts.then(|| {
                    let out = serde_json::json!([{
                        "role": "assistant",
                        "content": res.content,
                        "finish_reason": res.finish_reason.as_str(),
                    }]);
                    redactor.redact(&out.to_string()).into_owned()
                });
                let provider = info.provider.is_none().then_some(res.provider.as_str());
                record_many(
                    span,
                    [
                        (
                            GEN_AI_PROVIDER_NAME,
                            provider.as_ref().map(|v| v as &dyn Value),
                        ),
                        (
                            GEN_AI_RESPONSE_MODEL,
                            Some(&res.model.as_str() as &dyn Value),
                        ),
                        (
                            GEN_AI_RESPONSE_ID,
                            res.response_id.as_ref().map(|v| v as &dyn Value),
                        ),
                        (GEN_AI_RESPONSE_FINISH_REASONS, Some(&reasons as &dyn Value)),
                        (
                            GEN_AI_USAGE_INPUT_TOKENS,
                            input.as_ref().map(|v| v as &dyn Value),
                        ),
                        (
                            GEN_AI_USAGE_OUTPUT_TOKENS,
                            output.as_ref().map(|v| v as &dyn Value),
                        ),
                        (
                            GEN_AI_USAGE_CACHED_INPUT_TOKENS,
                            cached.as_ref().map(|v| v as &dyn Value),
                        ),
                        (
                            GEN_AI_OUTPUT_MESSAGES,
                            completion.as_ref().map(|v| v as &dyn Value),
                        ),
                    ],
                );
            }
            span.in_scope(|| {
                tracing::event!(target: TARGET_GEN_AI, tracing::Level::INFO, "model call finished");
            });
            // A cache hit spent no provider tokens: only its duration is measured.
            let usage = if res.cached { None } else { res.usage.as_ref() };
            metrics.record(
                info.attrs(Some(&res.model), Some(&res.provider)),
                usage,
                seconds,
                None,
            );
        }
        Err(e) => {
            record_error(span, e, redactor);
            metrics.record(
                info.attrs(None, e.provider()),
                None,
                seconds,
                Some(e.kind().as_str()),
            );
        }
    }
}

fn record_error(span: &Span, e: &LlmError, redactor: &Redactor) {
    if span.is_disabled() {
        return;
    }
    let description = redactor.redact(&e.to_string()).into_owned();
    let provider = e.provider();
    record_many(
        span,
        [
            (
                GEN_AI_PROVIDER_NAME,
                provider.as_ref().map(|v| v as &dyn Value),
            ),
            (ERROR_TYPE, Some(&e.kind().as_str() as &dyn Value)),
            (OTEL_STATUS_CODE, Some(&"error" as &dyn Value)),
            (OTEL_STATUS_DESCRIPTION, Some(&description as &dyn Value)),
        ],
    );
    span.in_scope(|| {
        tracing::event!(target: TARGET_GEN_AI, tracing::Level::WARN, "model call failed");
    });
}

impl<S> Service<LlmRequest> for GenAiTrace<S>
where
    S: Service<LlmRequest, Response = LlmResponse, Error = LlmError>,
    S::Future: Send + 'static,
{
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = BoxFuture<Result<LlmResponse, LlmError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: LlmRequest) -> Self::Future {
        let l = self.layer.clone();
        let span = chat_span(&req, l.log_prompts, &l.redactor);
        let info = CallInfo::new(OPERATION_CHAT, &req.model, req.context.provider.as_ref());
        let started = Instant::now();
        let fut = {
            let _enter = span.enter();
            self.inner.call(req)
        };
        let inner_span = span.clone();
        Box::pin(
            async move {
                let result = fut.await;
                finish_chat(
                    &span,
                    &info,
                    &l.metrics,
                    started,
                    result.as_ref(),
                    l.log_prompts,
                    &l.redactor,
                );
                result
            }
            .instrument(inner_span),
        )
    }
}

impl<S> Service<EmbeddingRequest> for GenAiTrace<S>
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
        let l = self.layer.clone();
        let ctx = &req.context;
        let span = tracing::info_span!(
            target: TARGET_GEN_AI,
            SPAN_GEN_AI,
            { OTEL_NAME } = format!("{OPERATION_EMBEDDINGS} {}", req.model),
            { OTEL_KIND } = "client",
            { OTEL_STATUS_CODE } = Empty,
            { OTEL_STATUS_DESCRIPTION } = Empty,
            { GEN_AI_OPERATION_NAME } = OPERATION_EMBEDDINGS,
            { GEN_AI_PROVIDER_NAME } = ctx.provider.as_deref(),
            { GEN_AI_REQUEST_MODEL } = req.model.as_str(),
            { GEN_AI_EMBEDDINGS_DIMENSION_COUNT } = req.dimensions.map(u64::from),
            { GEN_AI_RESPONSE_MODEL } = Empty,
            { GEN_AI_USAGE_INPUT_TOKENS } = Empty,
            { ERROR_TYPE } = Empty,
            { GEN_AI_CONVERSATION_ID } = ctx.correlation_id.map(tracing::field::display),
            { WORKFLOW_ID } = ctx.run_id.map(tracing::field::display),
            { WORKFLOW_NAME } = ctx.workflow.as_deref(),
            { STEP_NAME } = ctx.step.as_deref(),
        );
        let info = CallInfo::new(OPERATION_EMBEDDINGS, &req.model, ctx.provider.as_ref());
        let started = Instant::now();
        let fut = {
            let _enter = span.enter();
            self.inner.call(req)
        };
        let inner_span = span.clone();
        Box::pin(
            async move {
                let result = fut.await;
                let seconds = started.elapsed().as_secs_f64();
                match &result {
                    Ok(res) => {
                        let provider = info.provider.is_none().then_some(res.provider.as_str());
                        let input = res.usage.as_ref().map(|u| u.prompt_tokens);
                        record_many(
                            &span,
                            [
                                (
                                    GEN_AI_PROVIDER_NAME,
                                    provider.as_ref().map(|v| v as &dyn Value),
                                ),
                                (
                                    GEN_AI_RESPONSE_MODEL,
                                    Some(&res.model.as_str() as &dyn Value),
                                ),
                                (
                                    GEN_AI_USAGE_INPUT_TOKENS,
                                    input.as_ref().map(|v| v as &dyn Value),
                                ),
                            ],
                        );
                        tracing::event!(
                            target: TARGET_GEN_AI,
                            tracing::Level::INFO,
                            "model call finished"
                        );
                        // Embeddings have input tokens only.
                        let usage = res.usage.as_ref().map(|u| TokenUsage {
                            completion_tokens: 0,
                            ..u.clone()
                        });
                        let attrs = info.attrs(Some(&res.model), Some(&res.provider));
                        if let Some(u) = &usage {
                            let mut a = attrs.clone();
                            a.push(KeyValue::new(GEN_AI_TOKEN_TYPE, TOKEN_TYPE_INPUT));
                            l.metrics.token_usage.record(u.prompt_tokens, &a);
                        }
                        l.metrics.record(attrs, None, seconds, None);
                    }
                    Err(e) => {
                        record_error(&span, e, &l.redactor);
                        l.metrics.record(
                            info.attrs(None, e.provider()),
                            None,
                            seconds,
                            Some(e.kind().as_str()),
                        );
                    }
                }
                result
            }
            .instrument(inner_span),
        )
    }
}

impl<S> Service<StreamRequest> for GenAiTrace<S>
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
        let l = self.layer.clone();
        let span = chat_span(&req.0, l.log_prompts, &l.redactor);
        let info = CallInfo::new(
            OPERATION_CHAT,
            &req.0.model,
            req.0.context.provider.as_ref(),
        );
        let started = Instant::now();
        let fut = {
            let _enter = span.enter();
            self.inner.call(req)
        };
        let inner_span = span.clone();
        Box::pin(
            async move {
                match fut.await {
                    Ok(stream) => {
                        let s: LlmStream = Box::pin(TracedStream {
                            inner: stream,
                            span,
                            info,
                            layer: l,
                            started,
                            done: false,
                        });
                        Ok(s)
                    }
                    Err(e) => {
                        finish_chat(
                            &span,
                            &info,
                            &l.metrics,
                            started,
                            Err(&e),
                            l.log_prompts,
                            &l.redactor,
                        );
                        Err(e)
                    }
                }
            }
            .instrument(inner_span),
        )
    }
}

/// A stream that keeps its call's span open until `Done` (or an error) and then records it.
struct TracedStream {
    inner: LlmStream,
    span: Span,
    info: CallInfo,
    layer: GenAiTraceLayer,
    started: Instant,
    done: bool,
}

impl Stream for TracedStream {
    type Item = Result<StreamEvent, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let item = {
            let _enter = this.span.enter();
            this.inner.as_mut().poll_next(cx)
        };
        if !this.done {
            let result = match &item {
                Poll::Ready(Some(Ok(StreamEvent::Done(res)))) => Some(Ok(res)),
                Poll::Ready(Some(Err(e))) => Some(Err(e)),
                _ => None,
            };
            if let Some(result) = result {
                this.done = true;
                finish_chat(
                    &this.span,
                    &this.info,
                    &this.layer.metrics,
                    this.started,
                    result,
                    this.layer.log_prompts,
                    &this.layer.redactor,
                );
            }
        }
        item
    }
}
