//! Sequences, variables, data between steps, sub-workflows.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use flowloom_core::{LlmRequest, StepStatus, WorkflowStatus};
use flowloom_engine::prelude::*;
use flowloom_provider_mock::MockProvider;
use serde_json::Map;

fn engine(mock: &MockProvider) -> Engine {
    Engine::builder()
        .provider("mock", mock.clone())
        .build()
        .unwrap()
}

#[tokio::test]
async fn three_step_workflow_runs_in_sequence_and_passes_outputs() {
    let mock = MockProvider::echo();
    let engine = engine(&mock);
    let wf = Workflow::builder("summarize")
        .llm("draft", "Summarize: {{ input }}")
        .llm("refine", "Tighten this: {{ draft }}")
        .transform("shout", |ctx| {
            Ok(ctx.output("refine")?.to_uppercase().into())
        })
        .build()
        .unwrap();
    let r = engine.run(&wf, "some text").await.unwrap();
    assert_eq!(r.status, WorkflowStatus::Completed);
    assert_eq!(r.step_output("draft"), Some("Summarize: some text"));
    assert_eq!(
        r.step_output("refine"),
        Some("Tighten this: Summarize: some text")
    );
    assert_eq!(r.output_text(), Some("TIGHTEN THIS: SUMMARIZE: SOME TEXT"));
    let prompts: Vec<String> = mock
        .requests()
        .iter()
        .map(|r: &LlmRequest| r.prompt().unwrap().to_owned())
        .collect();
    assert_eq!(
        prompts,
        ["Summarize: some text", "Tighten this: Summarize: some text"]
    );
    assert_eq!(r.metrics.steps_completed, 3);
    assert_eq!(r.metrics.llm_calls, 2);
    assert_eq!(r.metrics.step_durations.len(), 3);
    let total = r.metrics.token_usage_total.as_ref().unwrap();
    let draft = &r.metrics.step_token_usage["draft"];
    let refine = &r.metrics.step_token_usage["refine"];
    assert_eq!(total.total_tokens, draft.total_tokens + refine.total_tokens);
    assert!(r.steps.iter().all(|s| s.status == StepStatus::Completed));
}

#[tokio::test]
async fn two_step_prompt_then_llm_returns_the_llm_response() {
    // US1 scenario 1: "generate prompt" step, then "call LLM" step.
    let engine = Engine::builder()
        .provider("mock", MockProvider::fixed("the answer"))
        .build()
        .unwrap();
    let wf = Workflow::builder("two")
        .transform("prompt", |ctx| {
            Ok(format!("Question: {}", ctx.input()).into())
        })
        .llm("ask", "{{ prompt }}")
        .build()
        .unwrap();
    let r = engine.run(&wf, "why?").await.unwrap();
    assert_eq!(r.output_text(), Some("the answer"));
    assert_eq!(r.steps[0].name, "prompt");
}

#[tokio::test]
async fn variables_are_substituted_from_input_vars_env_and_steps() {
    let mock = MockProvider::echo();
    let engine = engine(&mock);
    let wf = Workflow::builder("vars")
        .var("tone")
        .var_default("lang", "French")
        .env("TEAM", "core")
        .llm(
            "a",
            "Write {{ tone }} {{ lang }} for {{ input.name }} ({{ env.TEAM }})",
        )
        .llm("b", "Again: {{ steps.a.output }}")
        .build()
        .unwrap();
    let r = engine
        .run_with(
            &wf,
            RunOptions::new(json!({"name": "Ada"})).var("tone", "formal"),
        )
        .await
        .unwrap();
    assert_eq!(
        r.step_output("a"),
        Some("Write formal French for Ada (core)")
    );
    assert_eq!(
        r.output_text(),
        Some("Again: Write formal French for Ada (core)")
    );
}

#[tokio::test]
async fn a_required_variable_missing_fails_before_the_run() {
    let mock = MockProvider::echo();
    let engine = engine(&mock);
    let wf = Workflow::builder("vars")
        .var("tone")
        .llm("a", "{{ tone }}")
        .build()
        .unwrap();
    let err = engine.run(&wf, "x").await.unwrap_err();
    assert!(err.is_before_start());
    assert!(err.to_string().contains("needs the variable tone"), "{err}");
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test]
async fn inserted_values_are_never_rendered_again() {
    // The first answer contains template markup; the second prompt inserts it, and the echo
    // provider returns that prompt verbatim: the markup must arrive literally.
    let mock = MockProvider::from_yaml_str(
        r#"
rules:
  - match: "^anything$"
    respond: "{{ input }} and {% if true %}x{% endif %} {{ 7 * 6 }}"
"#,
    )
    .unwrap();
    let engine = engine(&mock);
    let wf = Workflow::builder("literal")
        .llm("a", "anything")
        .llm("b", "Echo: {{ a }}")
        .build()
        .unwrap();
    let r = engine.run(&wf, "{{ SECRET }}").await.unwrap();
    assert_eq!(
        r.output_text(),
        Some("Echo: {{ input }} and {% if true %}x{% endif %} {{ 7 * 6 }}")
    );
    // The input is data too.
    let wf2 = Workflow::builder("input")
        .llm("a", "In: {{ input }}")
        .build()
        .unwrap();
    let r2 = engine.run(&wf2, "{{ 7 * 6 }}").await.unwrap();
    assert_eq!(r2.output_text(), Some("In: {{ 7 * 6 }}"));
}

#[tokio::test]
async fn per_step_settings_override_workflow_and_config_defaults() {
    let mock = MockProvider::echo();
    let engine = engine(&mock);
    let wf = Workflow::builder("settings")
        .temperature(0.1)
        .llm("a", "one")
        .step(
            Step::llm("b", "two")
                .system("Be brief.")
                .model("gpt-4o")
                .temperature(1.5)
                .max_tokens(50),
        )
        .build()
        .unwrap();
    engine.run(&wf, "x").await.unwrap();
    let reqs = mock.requests();
    assert_eq!(reqs[0].model, "gpt-4o-mini");
    assert_eq!(reqs[0].temperature, 0.1);
    assert_eq!(reqs[0].max_tokens, 1024);
    assert_eq!(reqs[1].model, "gpt-4o");
    assert_eq!(reqs[1].temperature, 1.5);
    assert_eq!(reqs[1].max_tokens, 50);
    assert_eq!(reqs[1].system_prompt(), Some("Be brief."));
    let ctx = &reqs[1].context;
    assert_eq!(ctx.step.as_deref(), Some("b"));
    assert_eq!(ctx.workflow.as_deref(), Some("settings"));
    assert_eq!(ctx.provider.as_deref(), Some("mock"));
    assert!(ctx.run_id.is_some() && ctx.correlation_id.is_some());
}

#[tokio::test]
async fn a_sub_workflow_call_passes_variables() {
    let mock = MockProvider::echo();
    let reviewer = Workflow::builder("code_reviewer")
        .var("code")
        .var("language")
        .llm(
            "review",
            "Review this {{ language }} code: {{ code }} (strict={{ strict }})",
        )
        .var("strict")
        .build()
        .unwrap();
    let engine = Engine::builder()
        .provider("mock", mock.clone())
        .workflow(reviewer)
        .build()
        .unwrap();
    let mut with = Map::new();
    with.insert("code".into(), json!("{{ draft }}"));
    with.insert("language".into(), json!("go"));
    with.insert("strict".into(), json!("yes"));
    let wf = Workflow::builder("main")
        .llm("draft", "func {{ input }}()")
        .workflow_call("review", "code_reviewer", with)
        .build()
        .unwrap();
    let r = engine.run(&wf, "main").await.unwrap();
    assert_eq!(
        r.output_text(),
        Some("Review this go code: func main() (strict=yes)")
    );
    assert_eq!(r.metrics.llm_calls, 2);
    assert!(r.metrics.step_token_usage.contains_key("review"));
}

#[tokio::test]
async fn a_sub_workflow_by_value_keeps_types_of_single_expressions() {
    let inner = Workflow::builder("count")
        .var("items")
        .transform("n", |ctx| {
            Ok(ctx.variables["items"]
                .as_array()
                .map(|a| a.len())
                .unwrap_or(0)
                .into())
        })
        .build()
        .unwrap();
    let engine = Engine::builder().build().unwrap();
    let wf = Workflow::builder("outer")
        .transform("list", |_| Ok(json!(["a", "b", "c"])))
        .step(Step::workflow("count", &inner).with("items", "{{ list }}"))
        .build()
        .unwrap();
    let r = engine.run(&wf, Value::Null).await.unwrap();
    assert_eq!(r.output, Some(json!(3)));
}

#[tokio::test]
async fn a_workflow_calling_itself_is_refused_before_it_runs() {
    let a = Workflow::builder("a")
        .step(Step::workflow("call_b", "b"))
        .build()
        .unwrap();
    let b = Workflow::builder("b")
        .step(Step::workflow("call_a", "a"))
        .build()
        .unwrap();
    let engine = Engine::builder()
        .workflow(a.clone())
        .workflow(b)
        .build()
        .unwrap();
    let err = engine.run(&a, "x").await.unwrap_err();
    assert!(err.to_string().contains("a -> b -> a"), "{err}");
    assert!(err.is_before_start());
}
