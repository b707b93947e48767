//! A whole engine run exported over OTLP/HTTP to a receiver on 127.0.0.1: the spans arrive
//! as one trace, workflow → step → model call, with the GenAI attributes, and the run, step
//! and GenAI metrics arrive too.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

#[path = "../../crates/flowloom-observability/tests/common/otlp_receiver.rs"]
mod otlp_receiver;

use flowloom::engine::prelude::*;
use flowloom::mock::MockProvider;
use flowloom_observability::semconv::*;
use flowloom_observability::{GenAiTraceLayer, LogFormat, ObservabilityConfig};
use opentelemetry_proto::tonic::trace::v1::Span;
use otlp_receiver::{Receiver, attr};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_run_arrives_over_otlp_as_one_trace() {
    let receiver = Receiver::start().await;
    let config = ObservabilityConfig::default()
        .with_format(LogFormat::Json)
        .with_otlp_endpoint(receiver.endpoint.clone());
    let (dispatch, guard) = flowloom_observability::build(&config, std::io::sink).unwrap();
    let result = {
        let _d = tracing::dispatcher::set_default(&dispatch);
        let engine = Engine::builder()
            .provider("mock", MockProvider::echo())
            .layer(GenAiTraceLayer::from_config(&config))
            .build()
            .unwrap();
        let wf = Workflow::builder("two-steps")
            .llm("draft", "Write about {{ input }}")
            .llm("refine", "Tighten this: {{ draft }}")
            .build()
            .unwrap();
        engine.run(&wf, "rivers").await.unwrap()
    };
    assert_eq!(guard.transition_counts().runs("COMPLETED"), 1);
    assert_eq!(guard.transition_counts().steps("COMPLETED"), 2);
    tokio::task::spawn_blocking(move || guard.shutdown())
        .await
        .unwrap()
        .unwrap();

    let spans: Vec<Span> = receiver.spans();
    let named = |n: &str| {
        spans
            .iter()
            .filter(|s| s.name == n)
            .cloned()
            .collect::<Vec<_>>()
    };
    let wf = named(SPAN_WORKFLOW);
    assert_eq!(
        wf.len(),
        1,
        "{:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let wf = &wf[0];
    assert_eq!(attr(wf, WORKFLOW_ID), Some(result.workflow_id.to_string()));
    assert_eq!(attr(wf, WORKFLOW_NAME).as_deref(), Some("two-steps"));
    assert_eq!(
        attr(wf, CORRELATION_ID),
        Some(result.correlation_id.to_string())
    );
    assert_eq!(attr(wf, WORKFLOW_STATUS).as_deref(), Some("COMPLETED"));
    let steps = named(SPAN_STEP);
    let calls = named("chat gpt-4o-mini");
    assert_eq!((steps.len(), calls.len()), (2, 2));
    for step in &steps {
        assert_eq!(step.parent_span_id, wf.span_id);
        assert_eq!(step.trace_id, wf.trace_id);
        assert_eq!(attr(step, STEP_STATUS).as_deref(), Some("COMPLETED"));
        assert!(attr(step, STEP_DURATION_MS).is_some());
        let name = attr(step, STEP_NAME).unwrap();
        let call = calls
            .iter()
            .find(|c| c.parent_span_id == step.span_id)
            .unwrap_or_else(|| panic!("no model call under step {name}"));
        assert_eq!(call.trace_id, wf.trace_id);
        assert_eq!(attr(call, STEP_NAME), Some(name.clone()));
        let usage = &result.metrics.step_token_usage[&name];
        for (k, v) in [
            (GEN_AI_OPERATION_NAME, "chat".to_owned()),
            (GEN_AI_PROVIDER_NAME, "mock".to_owned()),
            (GEN_AI_REQUEST_MODEL, "gpt-4o-mini".to_owned()),
            (GEN_AI_RESPONSE_MODEL, "gpt-4o-mini".to_owned()),
            (GEN_AI_REQUEST_MAX_TOKENS, "1024".to_owned()),
            (GEN_AI_RESPONSE_FINISH_REASONS, "[\"stop\"]".to_owned()),
            (GEN_AI_USAGE_INPUT_TOKENS, usage.prompt_tokens.to_string()),
            (
                GEN_AI_USAGE_OUTPUT_TOKENS,
                usage.completion_tokens.to_string(),
            ),
        ] {
            assert_eq!(attr(call, k), Some(v), "{k} on {name}");
        }
        assert!(attr(call, GEN_AI_REQUEST_TEMPERATURE).is_some());
    }

    let names = receiver.metric_names();
    for m in [
        METRIC_TOKEN_USAGE,
        METRIC_OPERATION_DURATION,
        METRIC_RUNS,
        METRIC_STEPS,
    ] {
        assert!(names.iter().any(|n| n == m), "{m} missing from {names:?}");
    }
}
