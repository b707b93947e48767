//! JSON and pretty logs: structure, levels, transition counts, and redaction of secrets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io;
use std::sync::{Arc, Mutex};

use common::{Mock, ctx, req};
use flowloom_core::{LlmError, LogLevel};
use flowloom_observability::redact::{RedactErrorsLayer, Redactor};
use flowloom_observability::semconv::*;
use flowloom_observability::{
    GenAiTraceLayer, LogFormat, ObservabilityConfig, TokenAccountingLayer, UsageLedger,
};
use tower::{ServiceBuilder, ServiceExt};
use tracing::Instrument;

/// A writer collecting everything written.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

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

/// Emits what an engine run would, with the canary in every place a careless program might
/// put it, through the layers a user would stack.
async fn run_with_canary(config: &ObservabilityConfig) {
    let run = uuid::Uuid::new_v4();
    let wf = tracing::info_span!(
        SPAN_WORKFLOW,
        { WORKFLOW_NAME } = "canary",
        { WORKFLOW_ID } = %run,
        { CORRELATION_ID } = %uuid::Uuid::new_v4(),
        { WORKFLOW_STATUS } = tracing::field::Empty,
    );
    async {
        tracing::event!(target: TARGET_TRANSITION, tracing::Level::INFO, { WORKFLOW_ID } = %run, { WORKFLOW_STATUS } = "RUNNING", "run started");
        tracing::debug!(api_key = CANARY, "configured provider");
        tracing::trace!(headers = ?[("Authorization", format!("Bearer {CANARY}"))], "request headers");
        tracing::trace!(config = ?serde_json::json!({"openai_api_key": CANARY}), "config dump");
        let ledger = UsageLedger::new();
        let stack = |inner: Mock| {
            ServiceBuilder::new()
                .layer(GenAiTraceLayer::from_config(config))
                .layer(TokenAccountingLayer::new(ledger.clone()))
                .layer(RedactErrorsLayer::new(config.redactor.clone()))
                .service(inner)
        };
        let step = tracing::info_span!(SPAN_STEP, { STEP_NAME } = "ask", { STEP_KIND } = "llm");
        async {
            let mut r = req("gpt-4o-mini", 3, ctx(run, "ask"));
            r.messages[0].content = format!("my key is {CANARY}, keep it");
            let mut answering = Mock::new();
            answering.answer = format!("you said {CANARY}");
            stack(answering).oneshot(r).await.unwrap();
            let auth = LlmError::Authentication {
                provider: "openai".into(),
                status: 401,
                message: format!("Incorrect API key provided: {CANARY}"),
            };
            let err = stack(Mock::failing(auth))
                .oneshot(req("gpt-4o-mini", 3, ctx(run, "ask")))
                .await
                .unwrap_err();
            assert!(!err.to_string().contains(CANARY), "error text is scrubbed: {err}");
            tracing::error!(error = %err, "step failed");
        }
        .instrument(step)
        .await;
        tracing::Span::current().record(WORKFLOW_STATUS, "FAILED");
        tracing::event!(target: TARGET_TRANSITION, tracing::Level::INFO, { WORKFLOW_ID } = %run, { WORKFLOW_STATUS } = "FAILED", "run ended");
    }
    .instrument(wf)
    .await;
}

#[tokio::test]
async fn canary_key_never_appears_in_json_trace_logs() {
    let out = Captured::default();
    let config = ObservabilityConfig {
        level: LogLevel::Trace,
        format: LogFormat::Json,
        log_prompts: true,
        ..ObservabilityConfig::default()
    }
    .with_secret(CANARY);
    let (dispatch, _guard) = flowloom_observability::build(&config, out.clone()).unwrap();
    let _d = tracing::dispatcher::set_default(&dispatch);
    run_with_canary(&config).await;

    let text = out.text();
    assert!(text.lines().count() >= 8, "{text}");
    assert!(!text.contains(CANARY), "canary leaked:\n{text}");
    assert!(
        !text.contains("1234567890abcdef"),
        "part of the canary leaked:\n{text}"
    );
    assert!(text.contains("[REDACTED]"));
    assert!(
        !text.contains("[REDACTED]]"),
        "redaction is applied once:\n{text}"
    );
    // Every line is one JSON object (FR-015).
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            v.get("timestamp").is_some() && v.get("level").is_some(),
            "{line}"
        );
    }
    // The prompt text was logged (prompt logging is on), scrubbed.
    assert!(text.contains("keep it"), "{text}");
}

#[tokio::test]
async fn canary_key_never_appears_in_pretty_logs() {
    let out = Captured::default();
    let config = ObservabilityConfig {
        level: LogLevel::Trace,
        format: LogFormat::Pretty,
        log_prompts: true,
        ..ObservabilityConfig::default()
    }
    .with_secret(CANARY);
    let (dispatch, _guard) = flowloom_observability::build(&config, out.clone()).unwrap();
    let _d = tracing::dispatcher::set_default(&dispatch);
    run_with_canary(&config).await;
    let text = out.text();
    assert!(text.contains("configured provider"), "{text}");
    assert!(!text.contains(CANARY), "canary leaked:\n{text}");
}

#[tokio::test]
async fn patterns_hold_even_without_configured_secrets() {
    let out = Captured::default();
    let config = ObservabilityConfig {
        level: LogLevel::Trace,
        format: LogFormat::Json,
        redactor: Redactor::new(),
        ..ObservabilityConfig::default()
    };
    let (dispatch, _guard) = flowloom_observability::build(&config, out.clone()).unwrap();
    tracing::dispatcher::with_default(&dispatch, || {
        tracing::info!(header = "Authorization: Bearer abc123def456ghi", "sending");
        tracing::info!(unexpected_field = "sk-proj-unexpected0000key", "oops");
    });
    let text = out.text();
    assert!(!text.contains("abc123def456ghi"), "{text}");
    assert!(!text.contains("sk-proj-unexpected0000key"), "{text}");
}

#[tokio::test]
async fn json_lines_carry_span_context_and_level_filters() {
    let out = Captured::default();
    let config = ObservabilityConfig::default()
        .with_format(LogFormat::Json)
        .with_level(LogLevel::Info);
    let (dispatch, guard) = flowloom_observability::build(&config, out.clone()).unwrap();
    let _d = tracing::dispatcher::set_default(&dispatch);
    let run = uuid::Uuid::new_v4();
    async {
        tracing::debug!("hidden at INFO");
        tracing::event!(target: TARGET_TRANSITION, tracing::Level::INFO, { WORKFLOW_ID } = %run, { WORKFLOW_NAME } = "wf", { WORKFLOW_STATUS } = "COMPLETED", "run ended");
    }
    .instrument(tracing::info_span!(SPAN_WORKFLOW, { WORKFLOW_ID } = %run, { WORKFLOW_NAME } = "wf"))
    .await;
    let text = out.text();
    assert!(!text.contains("hidden at INFO"));
    let line = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["target"] == TARGET_TRANSITION)
        .unwrap();
    assert_eq!(line["fields"][WORKFLOW_STATUS], "COMPLETED");
    assert_eq!(line["fields"]["message"], "run ended");
    assert_eq!(line["level"], "INFO");
    assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(line["spans"].as_array().unwrap().len(), 1);
    assert_eq!(line["spans"][0]["name"], SPAN_WORKFLOW);
    assert_eq!(line["spans"][0][WORKFLOW_ID], run.to_string());
    assert_eq!(guard.transition_counts().runs("COMPLETED"), 1);
}

#[tokio::test]
async fn transitions_are_counted_even_when_logs_are_quiet() {
    let config = ObservabilityConfig::default()
        .with_format(LogFormat::Json)
        .with_level(LogLevel::Error);
    let (dispatch, guard) = flowloom_observability::build(&config, io::sink).unwrap();
    tracing::dispatcher::with_default(&dispatch, || {
        for (status, step) in [
            ("RUNNING", None),
            ("RUNNING", Some("a")),
            ("COMPLETED", Some("a")),
            ("RUNNING", Some("b")),
            ("FAILED", Some("b")),
            ("SKIPPED", Some("c")),
            ("FAILED", None),
        ] {
            match step {
                Some(s) => {
                    tracing::event!(target: TARGET_TRANSITION, tracing::Level::INFO, { WORKFLOW_NAME } = "wf", { STEP_NAME } = s, { STEP_STATUS } = status)
                }
                None => {
                    tracing::event!(target: TARGET_TRANSITION, tracing::Level::INFO, { WORKFLOW_NAME } = "wf", { WORKFLOW_STATUS } = status)
                }
            }
        }
        // Not a transition: ignored.
        tracing::event!(target: "elsewhere", tracing::Level::INFO, { WORKFLOW_STATUS } = "COMPLETED");
    });
    let c = guard.transition_counts().snapshot();
    assert_eq!(c.runs.get("RUNNING"), Some(&1));
    assert_eq!(c.runs.get("FAILED"), Some(&1));
    assert_eq!(c.runs.get("COMPLETED"), None);
    assert_eq!(c.steps.get("RUNNING"), Some(&2));
    assert_eq!(c.steps.get("COMPLETED"), Some(&1));
    assert_eq!(c.steps.get("FAILED"), Some(&1));
    assert_eq!(c.steps.get("SKIPPED"), Some(&1));
}

#[tokio::test]
async fn debug_formatted_statuses_are_normalized() {
    let (dispatch, guard) =
        flowloom_observability::build(&ObservabilityConfig::default(), io::sink).unwrap();
    tracing::dispatcher::with_default(&dispatch, || {
        let s = flowloom_core::WorkflowStatus::Completed;
        tracing::event!(target: TARGET_TRANSITION, tracing::Level::INFO, { WORKFLOW_STATUS } = ?s);
        tracing::event!(target: TARGET_TRANSITION, tracing::Level::INFO, { WORKFLOW_STATUS } = %s);
    });
    assert_eq!(guard.transition_counts().runs("COMPLETED"), 2);
}

#[test]
fn layer_composes_into_a_users_subscriber() {
    use tracing_subscriber::prelude::*;
    let out = Captured::default();
    let config = ObservabilityConfig::default().with_format(LogFormat::Json);
    let (layer, counts) = flowloom_observability::layer(&config, out.clone()).unwrap();
    let capture = flowloom_observability::capture::CaptureLayer::new();
    let subscriber = tracing_subscriber::registry()
        .with(layer)
        .with(capture.clone());
    tracing::subscriber::with_default(subscriber, || {
        tracing::event!(target: TARGET_TRANSITION, tracing::Level::INFO, { WORKFLOW_STATUS } = "RUNNING", "hello");
    });
    assert_eq!(counts.runs("RUNNING"), 1);
    assert_eq!(capture.events().len(), 1);
    assert!(out.text().contains("hello"));
}
