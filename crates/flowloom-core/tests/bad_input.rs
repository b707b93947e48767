//! Bad input anywhere gives a typed error, never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use flowloom_core::{
    EmbeddingRequest, FrameworkConfig, LlmRequest, LlmResponse, StepContext, StepResult,
    TokenUsage, WorkflowResult, WorkflowStatus,
};
use serde::de::DeserializeOwned;
use serde_json::json;

fn rejects<T: DeserializeOwned + std::fmt::Debug>(input: &str) -> String {
    match serde_json::from_str::<T>(input) {
        Ok(v) => panic!("{input:?} was accepted as {v:?}"),
        Err(e) => e.to_string(),
    }
}

const GARBAGE: &[&str] = &[
    "",
    "null",
    "42",
    "\"text\"",
    "[]",
    "{",
    "{}",
    "{\"messages\": 5}",
    "\u{0}\u{ff}",
    "{\"model\": \"m\", \"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}",
];

#[test]
fn garbage_json_into_every_type_is_an_error() {
    for g in GARBAGE {
        rejects::<LlmRequest>(g);
        rejects::<LlmResponse>(g);
        rejects::<TokenUsage>(g);
        rejects::<WorkflowResult>(g);
        rejects::<StepResult>(g);
        rejects::<StepContext>(g);
        rejects::<EmbeddingRequest>(g);
    }
}

#[test]
fn errors_name_the_problem() {
    let e =
        rejects::<LlmRequest>(r#"{"model": "m", "messages": [{"role": "robot", "content": "x"}]}"#);
    assert!(e.contains("robot") && e.contains("user"), "{e}");
    let e = rejects::<LlmRequest>(r#"{"model": "m"}"#);
    assert!(e.contains("messages"), "{e}");
    let e = rejects::<LlmRequest>(r#"{"messages": [], "max_tokens": -1}"#);
    assert!(e.contains("-1"), "{e}");
    let e = rejects::<LlmRequest>(r#"{"messages": [], "max_tokens": 99999999999}"#);
    assert!(e.contains("99999999999"), "{e}");
    let e = rejects::<TokenUsage>(r#"{"prompt_tokens": "many"}"#);
    assert!(e.contains("many"), "{e}");
    let e = rejects::<WorkflowStatus>(r#""DONE""#);
    assert!(e.contains("DONE") && e.contains("COMPLETED"), "{e}");
}

#[test]
fn bad_timestamps_and_ids_are_errors() {
    let good = json!({
        "workflow_id": "00000000-0000-4000-8000-000000000000",
        "workflow_name": "w",
        "correlation_id": "00000000-0000-4000-8000-000000000001",
        "status": "COMPLETED",
        "output": null,
        "error": null,
        "steps": [],
        "metrics": {
            "total_duration_ms": 1.0, "step_durations": {}, "token_usage_total": null,
            "step_token_usage": {}, "steps_completed": 0, "steps_failed": 0, "steps_skipped": 0
        },
        "created_at": "2026-01-02T03:04:05Z",
        "completed_at": null
    });
    let parsed: WorkflowResult = serde_json::from_value(good.clone()).unwrap();
    assert_eq!(parsed.metrics.llm_calls, 0);

    let mut bad_time = good.clone();
    bad_time["created_at"] = json!("yesterday");
    assert!(serde_json::from_value::<WorkflowResult>(bad_time).is_err());
    let mut bad_time = good.clone();
    bad_time["created_at"] = json!("2026-13-45T99:00:00Z");
    assert!(serde_json::from_value::<WorkflowResult>(bad_time).is_err());
    let mut bad_id = good;
    bad_id["workflow_id"] = json!("not-a-uuid");
    let e = serde_json::from_value::<WorkflowResult>(bad_id).unwrap_err();
    assert!(
        e.to_string().contains("not-a-uuid") || e.to_string().contains("UUID"),
        "{e}"
    );
}

#[test]
fn unknown_config_fields_are_errors() {
    let e = rejects::<FrameworkConfig>(r#"{"default_modle": "gpt-4o"}"#);
    assert!(
        e.contains("default_modle") && e.contains("default_model"),
        "{e}"
    );
    let e = rejects::<FrameworkConfig>(r#"{"log_level": "LOUD"}"#);
    assert!(e.contains("LOUD"), "{e}");
    let e = rejects::<FrameworkConfig>(r#"{"default_execution_mode": "parallel"}"#);
    assert!(e.contains("parallel"), "{e}");
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = format!("{{\"messages\": {}", "[".repeat(100_000));
    rejects::<LlmRequest>(&deep);
    let deep_extra = format!(
        "{{\"messages\": [], \"extra_params\": {{\"x\": {}}}}}",
        "[".repeat(100_000)
    );
    rejects::<LlmRequest>(&deep_extra);
}

#[test]
fn out_of_range_values_parse_but_do_not_validate() {
    let req: LlmRequest = serde_json::from_str(
        r#"{"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 5.5}"#,
    )
    .unwrap();
    let e = req.validate().unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid `temperature`: found 5.5, expected a number from 0.0 to 2.0"
    );
    let usage: TokenUsage = serde_json::from_str(
        r#"{"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 5, "model": "m", "provider": "p"}"#,
    )
    .unwrap();
    assert!(usage.validate().is_err());
}

#[test]
fn step_outputs_missing_or_not_text_are_errors() {
    let mut ctx = StepContext::new("s", json!(null));
    ctx.previous_outputs.insert("data".into(), json!({"a": 1}));
    ctx.previous_outputs.insert("text".into(), json!("hi"));
    assert_eq!(ctx.output("text").unwrap(), "hi");
    assert_eq!(
        ctx.output("nope").unwrap_err().to_string(),
        "no output from step `nope`: it is not a step this one can see (visible: data, text)"
    );
    assert!(
        ctx.output("data")
            .unwrap_err()
            .to_string()
            .contains("output_value")
    );
    assert_eq!(ctx.input(), "");
}
