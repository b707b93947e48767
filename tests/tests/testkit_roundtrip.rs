//! Cassettes and budgets at the workflow level: a workflow recorded through the OpenAI provider
//! against the testkit's mock server replays — with the server stopped — to the same
//! `WorkflowResult`, from async and from blocking code; a changed prompt fails replay with a
//! readable diff; a cost budget fails when exceeded and passes under its limit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use flowloom::WorkflowResult;
use flowloom::engine::{Engine, Workflow};
use flowloom::openai::OpenAiProvider;
use flowloom::testkit::assert;
use flowloom::testkit::budget::{CostBudget, PriceTable};
use flowloom::testkit::cassette::{Cassette, CassetteMode};
use flowloom::testkit::server::MockOpenAiServer;
use tower::Layer;

const KEY: &str = "sk-roundtrip-canary-0123456789";
const INPUT: &str = "Rust is a systems programming language focused on safety and speed.";

fn workflow(draft_prompt: &str) -> Workflow {
    Workflow::builder("summarize")
        .model("gpt-4o-mini")
        .temperature(0.0)
        .max_tokens(60)
        .llm("draft", draft_prompt)
        .llm("refine", "Make this shorter: {{ draft }}")
        .build()
        .unwrap()
}

fn provider(server: &MockOpenAiServer) -> OpenAiProvider {
    OpenAiProvider::builder()
        .api_key(KEY)
        .base_url(server.base_url())
        .build()
        .unwrap()
}

/// Records the workflow into `path` against a fresh mock server, then stops the server.
/// Returns the result and a provider still pointing at the (now stopped) server.
async fn record(path: &Path) -> (WorkflowResult, OpenAiProvider) {
    let server = MockOpenAiServer::start().await.unwrap();
    let provider = provider(&server);
    let cassette = Cassette::builder(path)
        .mode(CassetteMode::Record)
        .secret(KEY)
        .build()
        .unwrap();
    let engine = Engine::builder()
        .provider("openai", cassette.layer().layer(provider.clone()))
        .build()
        .unwrap();
    let result = engine
        .run(&workflow("Summarize in one sentence: {{ input }}"), INPUT)
        .await
        .unwrap();
    assert_eq!(cassette.finish().unwrap().interactions, 2);
    assert_eq!(server.requests_to("/v1/chat/completions").len(), 2);
    server.shutdown().await;
    (result, provider)
}

#[tokio::test]
async fn a_recorded_workflow_replays_to_the_same_result_with_the_server_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("summarize.yaml");
    let (recorded, provider) = record(&path).await;
    assert!(recorded.is_success(), "{recorded:?}");
    assert!(
        recorded
            .output_text()
            .unwrap()
            .contains("Rust is a systems")
    );

    // The server is gone: the provider itself can no longer answer.
    let direct = tower::ServiceExt::oneshot(
        provider.clone(),
        flowloom::LlmRequest::new("gpt-4o-mini", "hi"),
    )
    .await;
    assert!(direct.is_err(), "the mock server should be stopped");

    let cassette = Cassette::builder(&path)
        .mode(CassetteMode::Replay)
        .secret(KEY)
        .build()
        .unwrap();
    let engine = Engine::builder()
        .provider("openai", cassette.layer().layer(provider))
        .build()
        .unwrap();
    let replayed = engine
        .run(&workflow("Summarize in one sentence: {{ input }}"), INPUT)
        .await
        .unwrap();
    assert::same_result(&replayed, &recorded).unwrap();
    assert_eq!(replayed.output, recorded.output);
    assert_eq!(
        replayed.metrics.token_usage_total,
        recorded.metrics.token_usage_total
    );
    assert_ne!(replayed.workflow_id, recorded.workflow_id);
    cassette.finish().unwrap();

    // The key never reached the file.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(KEY), "{text}");
    assert!(
        text.contains("step: draft") && text.contains("step: refine"),
        "{text}"
    );
}

#[tokio::test]
async fn a_changed_prompt_fails_replay_with_a_readable_diff() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("summarize.yaml");
    let (_, provider) = record(&path).await;

    let cassette = Cassette::builder(&path)
        .mode(CassetteMode::Replay)
        .build()
        .unwrap();
    let engine = Engine::builder()
        .provider("openai", cassette.layer().layer(provider))
        .build()
        .unwrap();
    let err = engine
        .run(&workflow("Summarize in two sentences: {{ input }}"), INPUT)
        .await
        .unwrap_err();
    let result = err.result().expect("a failed run carries its result");
    assert_eq!(result.failed_step.as_deref(), Some("draft"));
    let step_error = result.step("draft").unwrap().error.clone().unwrap();
    for want in [
        "call 1 (chat) matches no recorded request",
        "Nearest recorded: interaction 0 (chat, step `draft`)",
        "messages[0].content: (- recorded, + now)",
        "- Summarize in one sentence: Rust is a systems programming language",
        "+ Summarize in two sentences: Rust is a systems programming language",
        "FLOWLOOM_CASSETTE=record",
    ] {
        assert!(
            step_error.contains(want),
            "missing {want:?} in:\n{step_error}"
        );
    }
    // And the cassette's own report says the same, plus what was never asked for.
    let report = cassette.finish().unwrap_err().to_string();
    assert!(report.contains("matches no recorded request"), "{report}");
    assert!(
        report.contains("was recorded but never requested"),
        "{report}"
    );
}

#[test]
fn replay_is_the_same_from_blocking_code() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("summarize.yaml");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (recorded, provider) = rt.block_on(record(&path));
    drop(rt);

    let cassette = Cassette::builder(&path)
        .mode(CassetteMode::Replay)
        .build()
        .unwrap();
    let engine = Engine::builder()
        .provider("openai", cassette.layer().layer(provider))
        .build()
        .unwrap();
    let replayed = engine
        .run_blocking(
            &workflow("Summarize in one sentence: {{ input }}"),
            INPUT,
            None,
        )
        .unwrap();
    assert::same_result(&replayed, &recorded).unwrap();
    cassette.finish().unwrap();
}

/// $1 per million input tokens, $2 per million output: the mock server counts words as tokens.
fn prices() -> PriceTable {
    PriceTable::from_yaml("as_of: 2025-01-01\nmodels:\n  gpt-4o-mini: { input: 1, output: 2 }\n")
        .unwrap()
}

#[tokio::test]
async fn a_budget_passes_under_its_limit_and_fails_when_exceeded_with_a_report() {
    let server = MockOpenAiServer::start().await.unwrap();
    let wf = workflow("Summarize in one sentence: {{ input }}");

    // Under the limit: both steps run, the report lists each step with its model.
    let roomy = CostBudget::new("roomy", 0.01).with_prices(prices());
    let engine = Engine::builder()
        .provider("openai", roomy.layer().layer(provider(&server)))
        .build()
        .unwrap();
    let result = engine.run(&wf, INPUT).await.unwrap();
    let report = roomy.check().unwrap();
    let usage = result.metrics.token_usage_total.clone().unwrap();
    let expected = (usage.prompt_tokens as f64 + 2.0 * usage.completion_tokens as f64) / 1e6;
    assert!((report.spent_usd - expected).abs() < 1e-12, "{report}");
    let steps: Vec<&str> = report.lines.iter().map(|l| l.step.as_str()).collect();
    assert_eq!(steps, ["draft", "refine"]);
    assert!(
        report
            .lines
            .iter()
            .all(|l| l.model == "gpt-4o-mini" && l.calls == 1)
    );
    assert!(report.to_string().contains("within budget"), "{report}");

    // A limit below one step's cost: the first call goes over, the second is refused, the run
    // fails, and the budget check fails with the report of what was spent where.
    let tight = CostBudget::new("tight", expected / 4.0).with_prices(prices());
    let engine = Engine::builder()
        .provider("openai", tight.layer().layer(provider(&server)))
        .build()
        .unwrap();
    let err = engine.run(&wf, INPUT).await.unwrap_err();
    let failed = err.result().unwrap();
    assert_eq!(failed.failed_step.as_deref(), Some("refine"));
    let step_error = failed.step("refine").unwrap().error.clone().unwrap();
    assert!(step_error.contains("budget exceeded"), "{step_error}");
    let exceeded = tight.check().unwrap_err();
    let text = exceeded.to_string();
    assert!(
        text.contains("cost budget `tight`") && text.contains("EXCEEDED"),
        "{text}"
    );
    let draft_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("draft"))
        .unwrap();
    assert!(draft_line.contains("gpt-4o-mini"), "{draft_line}");
    assert!(
        !text.lines().any(|l| l.trim_start().starts_with("refine")),
        "refine was never charged:\n{text}"
    );
    assert_eq!(
        server.requests_to("/v1/chat/completions").len(),
        3,
        "the refused call never left"
    );
    server.shutdown().await;
}
