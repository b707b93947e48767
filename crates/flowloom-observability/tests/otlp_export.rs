//! End to end over OTLP/HTTP: spans and metrics reach a receiver started on 127.0.0.1, with
//! the GenAI attributes and the workflow → step → model call structure.
//!
//! The workflow and step spans here are built like the engine's (same names and fields from
//! `semconv`); the workflow-level test in the top-level `tests/` package runs the engine.
#![cfg(feature = "otlp")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

#[path = "common/otlp_receiver.rs"]
mod otlp_receiver;

use common::{Mock, ctx, req};
use flowloom_observability::semconv::*;
use flowloom_observability::{GenAiTraceLayer, LogFormat, ObservabilityConfig};
use opentelemetry_proto::tonic::trace::v1::Span;
use otlp_receiver::{Receiver, attr};
use tower::{Layer, ServiceExt};
use tracing::Instrument;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_metrics_arrive_over_otlp_http() {
    let receiver = Receiver::start().await;
    let config = ObservabilityConfig::default()
        .with_format(LogFormat::Json)
        .with_otlp_endpoint(receiver.endpoint.clone());
    let (dispatch, guard) = flowloom_observability::build(&config, std::io::sink).unwrap();
    let run = uuid::Uuid::new_v4();
    {
        let _d = tracing::dispatcher::set_default(&dispatch);
        // Built after `build`, so its histograms go to the installed meter provider.
        let svc = GenAiTraceLayer::from_config(&config).layer(Mock::new());
        let workflow = tracing::info_span!(
            SPAN_WORKFLOW,
            { WORKFLOW_NAME } = "summarize",
            { WORKFLOW_ID } = %run,
            { CORRELATION_ID } = %run,
            { WORKFLOW_STATUS } = tracing::field::Empty,
        );
        async {
            tracing::event!(target: TARGET_TRANSITION, tracing::Level::INFO, { WORKFLOW_ID } = %run, { WORKFLOW_STATUS } = "RUNNING");
            let step = tracing::info_span!(
                SPAN_STEP,
                { STEP_NAME } = "draft",
                { STEP_KIND } = "llm",
                { STEP_STATUS } = tracing::field::Empty,
                { STEP_DURATION_MS } = tracing::field::Empty,
            );
            async {
                svc.oneshot(req("gpt-4o-mini", 5, ctx(run, "draft")).with_max_tokens(99))
                    .await
                    .unwrap();
                tracing::Span::current().record(STEP_STATUS, "COMPLETED");
                tracing::Span::current().record(STEP_DURATION_MS, 1.5);
            }
            .instrument(step)
            .await;
            tracing::Span::current().record(WORKFLOW_STATUS, "COMPLETED");
            tracing::event!(target: TARGET_TRANSITION, tracing::Level::INFO, { WORKFLOW_ID } = %run, { WORKFLOW_STATUS } = "COMPLETED");
        }
        .instrument(workflow)
        .await;
    }
    // Shutting down flushes both exporters (blocking: run it off the runtime's threads).
    tokio::task::spawn_blocking(move || guard.shutdown())
        .await
        .unwrap()
        .unwrap();

    let spans: Vec<Span> = receiver.spans();
    let by_name = |n: &str| {
        spans
            .iter()
            .find(|s| s.name == n)
            .unwrap_or_else(|| {
                panic!(
                    "no span {n} in {:?}",
                    spans.iter().map(|s| &s.name).collect::<Vec<_>>()
                )
            })
            .clone()
    };
    let wf = by_name(SPAN_WORKFLOW);
    let step = by_name(SPAN_STEP);
    let call = by_name("chat gpt-4o-mini");

    // Structure: workflow → step → model call, one trace.
    assert!(wf.parent_span_id.is_empty());
    assert_eq!(step.parent_span_id, wf.span_id);
    assert_eq!(call.parent_span_id, step.span_id);
    assert_eq!(call.trace_id, wf.trace_id);
    assert_eq!(step.trace_id, wf.trace_id);

    // Attributes.
    assert_eq!(attr(&wf, WORKFLOW_NAME).as_deref(), Some("summarize"));
    assert_eq!(attr(&wf, WORKFLOW_ID), Some(run.to_string()));
    assert_eq!(attr(&wf, WORKFLOW_STATUS).as_deref(), Some("COMPLETED"));
    assert_eq!(attr(&step, STEP_NAME).as_deref(), Some("draft"));
    assert_eq!(attr(&step, STEP_STATUS).as_deref(), Some("COMPLETED"));
    assert_eq!(attr(&step, STEP_DURATION_MS).as_deref(), Some("1.5"));
    for (k, v) in [
        (GEN_AI_OPERATION_NAME, "chat"),
        (GEN_AI_PROVIDER_NAME, "mock"),
        (GEN_AI_REQUEST_MODEL, "gpt-4o-mini"),
        (GEN_AI_REQUEST_TEMPERATURE, "0.7"),
        (GEN_AI_REQUEST_MAX_TOKENS, "99"),
        (GEN_AI_RESPONSE_MODEL, "gpt-4o-mini"),
        (GEN_AI_RESPONSE_ID, "resp-1"),
        (GEN_AI_RESPONSE_FINISH_REASONS, "[\"stop\"]"),
        (GEN_AI_USAGE_INPUT_TOKENS, "5"),
        (GEN_AI_USAGE_OUTPUT_TOKENS, "7"),
    ] {
        assert_eq!(
            attr(&call, k).as_deref(),
            Some(v),
            "{k}: {:?}",
            call.attributes
        );
    }
    // SpanKind::Client = 3 in the protocol.
    assert_eq!(call.kind, 3);
    assert!(attr(&call, ERROR_TYPE).is_none());

    // Metrics: the GenAI histograms and the run counter.
    let names = receiver.metric_names();
    for m in [METRIC_TOKEN_USAGE, METRIC_OPERATION_DURATION, METRIC_RUNS] {
        assert!(names.iter().any(|n| n == m), "{m} missing from {names:?}");
    }
}
