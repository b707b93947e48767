//! Observability of whole engine runs: every state transition with its ids, the span tree
//! workflow → step → model call with GenAI attributes, budgets failing a run, and a canary API
//! key that never reaches the logs of a run at TRACE level.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::io;
use std::sync::{Arc, Mutex};

use flowloom::core::{FrameworkConfig, LogLevel, Secret};
use flowloom::engine::prelude::*;
use flowloom::mock::MockProvider;
use flowloom::openai::OpenAiProvider;
use flowloom::testkit::server::{MockConfig, MockOpenAiServer};
use flowloom_observability::budget::{Budget, BudgetLayer, BudgetLimits};
use flowloom_observability::capture::CaptureLayer;
use flowloom_observability::redact::RedactErrorsLayer;
use flowloom_observability::semconv::*;
use flowloom_observability::{
    GenAiTraceLayer, LogFormat, ObservabilityConfig, TokenAccountingLayer, UsageLedger,
};
use tracing_subscriber::prelude::*;

fn three_steps() -> Workflow {
    Workflow::builder("three-steps")
        .llm("draft", "Write about {{ input }}")
        .llm("refine", "Tighten this: {{ draft }}")
        .llm("title", "Title for: {{ refine }}")
        .build()
        .unwrap()
}

#[tokio::test]
async fn every_transition_of_a_run_is_emitted_with_its_ids() {
    let capture = CaptureLayer::new();
    let _g = tracing_subscriber::registry()
        .with(capture.clone())
        .set_default();
    let ledger = UsageLedger::new();
    let engine = Engine::builder()
        .provider("mock", MockProvider::echo())
        .layer(GenAiTraceLayer::new())
        .layer(TokenAccountingLayer::new(ledger.clone()))
        .build()
        .unwrap();
    let result = engine.run(&three_steps(), "rivers").await.unwrap();
    assert_eq!(result.status, WorkflowStatus::Completed);
    let run_id = result.workflow_id.to_string();
    let correlation = result.correlation_id.to_string();

    let transitions = capture.events_with_target(TARGET_TRANSITION);
    let seen: Vec<(Option<&str>, &str)> = transitions
        .iter()
        .map(|e| {
            let status = e.field(STEP_STATUS).or(e.field(WORKFLOW_STATUS)).unwrap();
            (e.field(STEP_NAME), status)
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (None, "PENDING"),
            (Some("draft"), "PENDING"),
            (Some("refine"), "PENDING"),
            (Some("title"), "PENDING"),
            (None, "RUNNING"),
            (Some("draft"), "RUNNING"),
            (Some("draft"), "COMPLETED"),
            (Some("refine"), "RUNNING"),
            (Some("refine"), "COMPLETED"),
            (Some("title"), "RUNNING"),
            (Some("title"), "COMPLETED"),
            (None, "COMPLETED"),
        ]
    );
    for e in &transitions {
        assert_eq!(e.field(WORKFLOW_ID), Some(run_id.as_str()), "{e:?}");
        assert_eq!(e.field(WORKFLOW_NAME), Some("three-steps"), "{e:?}");
        assert_eq!(e.field(CORRELATION_ID), Some(correlation.as_str()), "{e:?}");
    }

    // Spans: workflow → step → model call, with their attributes.
    let wf = &capture.spans_named(SPAN_WORKFLOW)[0];
    assert_eq!(wf.field(WORKFLOW_ID), Some(run_id.as_str()));
    assert_eq!(wf.field(WORKFLOW_STATUS), Some("COMPLETED"));
    let steps = capture.spans_named(SPAN_STEP);
    assert_eq!(steps.len(), 3);
    for s in &steps {
        assert_eq!(s.parent, Some(wf.id));
        assert_eq!(s.field(STEP_STATUS), Some("COMPLETED"));
        assert!(s.field(STEP_DURATION_MS).is_some());
    }
    let calls = capture.spans_named(SPAN_GEN_AI);
    assert_eq!(calls.len(), 3);
    for (call, step) in calls.iter().zip(&steps) {
        let parent = capture.span(call.parent.unwrap()).unwrap();
        assert_eq!(
            parent.id, step.id,
            "the model call runs inside its step's span"
        );
        assert_eq!(call.field(STEP_NAME), step.field(STEP_NAME));
        assert_eq!(call.field(OTEL_NAME), Some("chat gpt-4o-mini"));
        assert_eq!(call.field(GEN_AI_PROVIDER_NAME), Some("mock"));
        assert_eq!(call.field(WORKFLOW_ID), Some(run_id.as_str()));
        assert_eq!(
            call.field(GEN_AI_CONVERSATION_ID),
            Some(correlation.as_str())
        );
        let name = step.field(STEP_NAME).unwrap();
        let usage = &result.metrics.step_token_usage[name];
        assert_eq!(
            call.field(GEN_AI_USAGE_INPUT_TOKENS),
            Some(usage.prompt_tokens.to_string().as_str())
        );
        assert_eq!(
            call.field(GEN_AI_USAGE_OUTPUT_TOKENS),
            Some(usage.completion_tokens.to_string().as_str())
        );
    }
    // The ledger agrees with the run's own metrics, exactly.
    assert_eq!(
        ledger.run(result.workflow_id).tokens.total_tokens,
        result.metrics.token_usage_total.unwrap().total_tokens
    );
}

#[tokio::test]
async fn a_failing_step_and_run_are_reported_with_their_ids() {
    let capture = CaptureLayer::new();
    let _g = tracing_subscriber::registry()
        .with(capture.clone())
        .set_default();
    let mock =
        MockProvider::from_yaml_str("rules:\n  - match: \"Tighten\"\n    error: auth\n").unwrap();
    let engine = Engine::builder()
        .provider("mock", mock)
        .layer(GenAiTraceLayer::new())
        .build()
        .unwrap();
    let result = engine
        .run(&three_steps(), "x")
        .await
        .unwrap_err()
        .into_result()
        .unwrap();
    assert_eq!(result.status, WorkflowStatus::Failed);
    let run_id = result.workflow_id.to_string();
    let statuses: Vec<(Option<String>, String)> = capture
        .events_with_target(TARGET_TRANSITION)
        .iter()
        .inspect(|e| assert_eq!(e.field(WORKFLOW_ID), Some(run_id.as_str())))
        .map(|e| {
            (
                e.field(STEP_NAME).map(str::to_owned),
                e.field(STEP_STATUS)
                    .or(e.field(WORKFLOW_STATUS))
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    assert!(
        statuses.contains(&(Some("refine".into()), "FAILED".into())),
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&(None, "FAILED".into())));
    let failed_call = capture
        .spans_named(SPAN_GEN_AI)
        .into_iter()
        .find(|s| s.field(STEP_NAME) == Some("refine"))
        .unwrap();
    assert_eq!(failed_call.field(ERROR_TYPE), Some("authentication"));
}

#[tokio::test]
async fn a_run_past_its_budget_fails_with_the_reason() {
    let budget = Budget::new(BudgetLimits::new().per_run_tokens(1_040));
    let engine = Engine::builder()
        .provider("mock", MockProvider::echo())
        .layer(BudgetLayer::new(budget.clone()))
        .build()
        .unwrap();
    // Each call is estimated at its prompt + max_tokens (1024 by default): the first
    // (9 + 1024) fits in 1,040 tokens; the second (10 spent + 12 + 1024) would not.
    let result = engine
        .run(&three_steps(), "rivers")
        .await
        .unwrap_err()
        .into_result()
        .unwrap();
    assert_eq!(result.status, WorkflowStatus::Failed);
    assert_eq!(result.failed_step.as_deref(), Some("refine"));
    let error = result.error.unwrap();
    assert!(error.contains("budget exceeded"), "{error}");
    assert!(error.contains("1040 tokens"), "{error}");
    assert!(error.contains("spent so far"), "{error}");
    let spent = budget.spent_run(result.workflow_id);
    assert_eq!(spent.calls, 1);
    assert_eq!(
        spent.tokens,
        result.metrics.token_usage_total.unwrap().total_tokens
    );
}

/// A writer collecting everything written.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

const CANARY: &str = "sk-canary-1234567890abcdef";

#[tokio::test]
async fn a_canary_api_key_never_appears_in_trace_level_json_logs() {
    // The local OpenAI-compatible server only answers requests carrying the canary key, so
    // a completed run proves the key was sent in the Authorization header.
    let server = MockOpenAiServer::start_with(MockConfig::default().with_api_key(CANARY))
        .await
        .unwrap();
    let framework = FrameworkConfig {
        openai_api_key: Secret::new(CANARY),
        openai_base_url: Some(server.base_url()),
        log_level: LogLevel::Trace,
        log_prompts: true,
        ..FrameworkConfig::default()
    };
    let obs = ObservabilityConfig::from_framework_config(&framework).with_format(LogFormat::Json);
    let out = Captured::default();
    let (dispatch, _guard) = flowloom_observability::build(&obs, out.clone()).unwrap();
    let _d = tracing::dispatcher::set_default(&dispatch);

    let openai = OpenAiProvider::builder()
        .api_key_secret(framework.openai_api_key.clone())
        .base_url(server.base_url())
        .build()
        .unwrap();
    let ledger = UsageLedger::new();
    let engine = Engine::builder()
        .config(framework.clone())
        .provider("openai", openai)
        .layer(GenAiTraceLayer::from_config(&obs))
        .layer(TokenAccountingLayer::new(ledger.clone()))
        .layer(RedactErrorsLayer::new(obs.redactor.clone()))
        .build()
        .unwrap();
    tracing::trace!(config = ?framework, "engine configured");
    let result = engine
        .run(
            &three_steps(),
            format!("a note that quotes the key {CANARY}"),
        )
        .await
        .unwrap();
    assert_eq!(
        result.status,
        WorkflowStatus::Completed,
        "{:?}",
        result.error
    );
    assert_eq!(ledger.run(result.workflow_id).calls_with_usage, 3);

    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    assert!(text.lines().count() >= 15, "{text}");
    assert!(
        text.contains("\"level\":\"TRACE\""),
        "TRACE lines are written"
    );
    assert!(
        text.contains("a note that quotes the key"),
        "prompts are logged"
    );
    assert!(text.contains("[REDACTED]"));
    assert!(!text.contains(CANARY), "the canary leaked:\n{text}");
    assert!(
        !text.contains("1234567890abcdef"),
        "part of the canary leaked:\n{text}"
    );
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap();
    }
    // The run's transitions are all in the log, each with the run id.
    let run_id = result.workflow_id.to_string();
    let transitions = text
        .lines()
        .filter(|l| l.contains("\"target\":\"flowloom::transition\""))
        .inspect(|l| assert!(l.contains(&run_id), "{l}"))
        .count();
    // PENDING, RUNNING, COMPLETED for the run; PENDING, RUNNING, COMPLETED for each step.
    assert_eq!(transitions, 12);
}
