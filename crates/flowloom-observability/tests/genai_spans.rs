//! Model-call spans carry the GenAI attributes; histograms are recorded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Mock, ctx, req};
use flowloom_core::{EmbeddingRequest, LlmError, StreamEvent, StreamRequest};
use flowloom_observability::GenAiTraceLayer;
use flowloom_observability::capture::CaptureLayer;
use flowloom_observability::semconv::*;
use futures_util::StreamExt;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use tower::{Layer, ServiceExt};
use tracing::Instrument;
use tracing_subscriber::prelude::*;

fn capture() -> (CaptureLayer, tracing::subscriber::DefaultGuard) {
    let capture = CaptureLayer::new();
    let guard = tracing_subscriber::registry()
        .with(capture.clone())
        .set_default();
    (capture, guard)
}

#[tokio::test]
async fn chat_span_has_every_genai_attribute() {
    let (cap, _g) = capture();
    let run = uuid::Uuid::new_v4();
    let svc = GenAiTraceLayer::new().layer(Mock::new());
    let request = req("gpt-4o-mini", 3, ctx(run, "draft"))
        .with_temperature(0.2)
        .with_max_tokens(64);
    let step = tracing::info_span!(SPAN_STEP, { STEP_NAME } = "draft");
    svc.oneshot(request).instrument(step).await.unwrap();

    let spans = cap.spans_named(SPAN_GEN_AI);
    assert_eq!(spans.len(), 1);
    let s = &spans[0];
    assert_eq!(s.target, TARGET_GEN_AI);
    for (k, v) in [
        (OTEL_NAME, "chat gpt-4o-mini"),
        (GEN_AI_OPERATION_NAME, "chat"),
        (GEN_AI_PROVIDER_NAME, "mock"),
        (GEN_AI_REQUEST_MODEL, "gpt-4o-mini"),
        (GEN_AI_REQUEST_TEMPERATURE, "0.2"),
        (GEN_AI_REQUEST_MAX_TOKENS, "64"),
        (GEN_AI_RESPONSE_MODEL, "gpt-4o-mini"),
        (GEN_AI_RESPONSE_ID, "resp-1"),
        (GEN_AI_RESPONSE_FINISH_REASONS, "[\"stop\"]"),
        (GEN_AI_USAGE_INPUT_TOKENS, "3"),
        (GEN_AI_USAGE_OUTPUT_TOKENS, "7"),
        (STEP_NAME, "draft"),
        (WORKFLOW_NAME, "wf"),
    ] {
        assert_eq!(s.field(k), Some(v), "{k} in {:?}", s.fields);
    }
    assert_eq!(s.field(WORKFLOW_ID), Some(run.to_string().as_str()));
    assert!(s.field(ERROR_TYPE).is_none());
    // No prompt text unless asked for.
    assert!(s.field(GEN_AI_INPUT_MESSAGES).is_none());
    assert!(s.field(GEN_AI_OUTPUT_MESSAGES).is_none());
    // The model-call span is a child of the step span it ran in.
    let parent = cap.span(s.parent.unwrap()).unwrap();
    assert_eq!(parent.name, SPAN_STEP);
    assert!(s.closed);
}

#[tokio::test]
async fn failed_call_records_error_type_and_status() {
    let (cap, _g) = capture();
    let err = LlmError::RateLimited {
        provider: "mock".into(),
        message: "slow down".into(),
        retry_after: None,
    };
    let svc = GenAiTraceLayer::new().layer(Mock::failing(err.clone()));
    let got = svc
        .oneshot(req("gpt-4o", 2, ctx(uuid::Uuid::new_v4(), "s")))
        .await
        .unwrap_err();
    assert_eq!(got, err);
    let s = &cap.spans_named(SPAN_GEN_AI)[0];
    assert_eq!(s.field(ERROR_TYPE), Some("rate_limited"));
    assert_eq!(s.field(OTEL_STATUS_CODE), Some("error"));
    assert!(s.field(GEN_AI_RESPONSE_MODEL).is_none());
    assert!(s.field(GEN_AI_USAGE_INPUT_TOKENS).is_none());
}

#[tokio::test]
async fn prompts_only_when_asked_and_redacted() {
    let (cap, _g) = capture();
    let svc = GenAiTraceLayer::new()
        .log_prompts(true)
        .with_redactor(flowloom_observability::Redactor::new().with_secret("s3cr3t-value"));
    let svc = svc.layer(Mock::new());
    let request = flowloom_core::LlmRequest::new("m", "tell me about s3cr3t-value please");
    svc.oneshot(request).await.unwrap();
    let s = &cap.spans_named(SPAN_GEN_AI)[0];
    let input = s.field(GEN_AI_INPUT_MESSAGES).unwrap();
    assert!(input.contains("tell me about") && input.contains("\"role\":\"user\""));
    assert!(!input.contains("s3cr3t-value"));
    let output = s.field(GEN_AI_OUTPUT_MESSAGES).unwrap();
    assert!(output.contains("the answer"), "{output}");
}

#[tokio::test]
async fn provider_is_taken_from_the_answer_when_the_context_has_none() {
    let (cap, _g) = capture();
    let svc = GenAiTraceLayer::new().layer(Mock::new());
    svc.oneshot(flowloom_core::LlmRequest::new("m", "hi"))
        .await
        .unwrap();
    let s = &cap.spans_named(SPAN_GEN_AI)[0];
    assert_eq!(s.field(GEN_AI_PROVIDER_NAME), Some("mock"));
}

#[tokio::test]
async fn embeddings_span() {
    let (cap, _g) = capture();
    let svc = GenAiTraceLayer::new().layer(Mock::new());
    let mut request = EmbeddingRequest::new("text-embedding-3-small", vec!["a b c".into()]);
    request.dimensions = Some(256);
    svc.oneshot(request).await.unwrap();
    let s = &cap.spans_named(SPAN_GEN_AI)[0];
    assert_eq!(
        s.field(OTEL_NAME),
        Some("embeddings text-embedding-3-small")
    );
    assert_eq!(s.field(GEN_AI_OPERATION_NAME), Some("embeddings"));
    assert_eq!(s.field(GEN_AI_USAGE_INPUT_TOKENS), Some("3"));
    assert_eq!(s.field(GEN_AI_EMBEDDINGS_DIMENSION_COUNT), Some("256"));
}

#[tokio::test]
async fn stream_span_is_completed_at_done() {
    let (cap, _g) = capture();
    let svc = GenAiTraceLayer::new().layer(Mock::new());
    let stream = svc
        .oneshot(StreamRequest(req(
            "gpt-4o-mini",
            4,
            ctx(uuid::Uuid::new_v4(), "s"),
        )))
        .await
        .unwrap();
    // Before the stream is read, the span has no answer yet.
    assert!(
        cap.spans_named(SPAN_GEN_AI)[0]
            .field(GEN_AI_USAGE_OUTPUT_TOKENS)
            .is_none()
    );
    let events: Vec<_> = stream.collect().await;
    assert!(matches!(events.last(), Some(Ok(StreamEvent::Done(_)))));
    let s = &cap.spans_named(SPAN_GEN_AI)[0];
    assert_eq!(s.field(GEN_AI_USAGE_INPUT_TOKENS), Some("4"));
    assert_eq!(s.field(GEN_AI_USAGE_OUTPUT_TOKENS), Some("7"));
    assert!(s.closed);
}

#[tokio::test]
async fn histograms_record_tokens_by_type_and_duration() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let meter = provider.meter("test");
    let layer = GenAiTraceLayer::new().with_meter(&meter);
    layer
        .layer(Mock::new())
        .oneshot(req("gpt-4o-mini", 5, ctx(uuid::Uuid::new_v4(), "s")))
        .await
        .unwrap();
    let err = LlmError::Timeout {
        provider: "mock".into(),
        elapsed: std::time::Duration::from_secs(1),
    };
    let _ = layer
        .layer(Mock::failing(err))
        .oneshot(req("gpt-4o-mini", 5, ctx(uuid::Uuid::new_v4(), "s")))
        .await;
    provider.force_flush().unwrap();

    let mut token_points = Vec::new();
    let mut duration_points = Vec::new();
    for rm in exporter.get_finished_metrics().unwrap() {
        for sm in rm.scope_metrics() {
            for m in sm.metrics() {
                match (m.name(), m.data()) {
                    (METRIC_TOKEN_USAGE, AggregatedMetrics::U64(MetricData::Histogram(h))) => {
                        for p in h.data_points() {
                            let attrs: Vec<(String, String)> = p
                                .attributes()
                                .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                                .collect();
                            token_points.push((attrs, p.sum(), p.count()));
                        }
                    }
                    (
                        METRIC_OPERATION_DURATION,
                        AggregatedMetrics::F64(MetricData::Histogram(h)),
                    ) => {
                        for p in h.data_points() {
                            let attrs: Vec<(String, String)> = p
                                .attributes()
                                .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                                .collect();
                            duration_points.push((attrs, p.count()));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    let find = |ty: &str| {
        token_points
            .iter()
            .find(|(a, _, _)| a.contains(&(GEN_AI_TOKEN_TYPE.into(), ty.into())))
            .cloned()
            .unwrap()
    };
    let (attrs, sum, count) = find(TOKEN_TYPE_INPUT);
    assert_eq!((sum, count), (5, 1));
    assert!(attrs.contains(&(GEN_AI_OPERATION_NAME.into(), "chat".into())));
    assert!(attrs.contains(&(GEN_AI_PROVIDER_NAME.into(), "mock".into())));
    assert!(attrs.contains(&(GEN_AI_REQUEST_MODEL.into(), "gpt-4o-mini".into())));
    let (_, sum, _) = find(TOKEN_TYPE_OUTPUT);
    assert_eq!(sum, 7);
    assert_eq!(duration_points.iter().map(|(_, c)| c).sum::<u64>(), 2);
    assert!(
        duration_points
            .iter()
            .any(|(a, _)| a.contains(&(ERROR_TYPE.into(), "timeout".into())))
    );
}
