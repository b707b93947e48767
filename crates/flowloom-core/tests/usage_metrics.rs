//! Summing usage and building metrics: unreported usage stays distinct from zero.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use flowloom_core::{ExecutionMetrics, StepResult, StepStatus, TokenUsage};
use uuid::Uuid;

#[test]
fn sums_keep_names_or_say_mixed() {
    assert_eq!(TokenUsage::sum([]), None, "no usage is not zero usage");
    let a = TokenUsage::new(10, 2, "gpt-4o", "openai");
    let mut b = TokenUsage::new(5, 1, "gpt-4o", "openai");
    b.cached_prompt_tokens = Some(4);
    let s = TokenUsage::sum([&a, &b]).unwrap();
    assert_eq!(
        (s.prompt_tokens, s.completion_tokens, s.total_tokens),
        (15, 3, 18)
    );
    assert_eq!(
        (s.model.as_str(), s.provider.as_str()),
        ("gpt-4o", "openai")
    );
    assert_eq!(s.cached_prompt_tokens, Some(4));
    assert_eq!(s.reasoning_tokens, None);
    assert!(s.validate().is_ok());

    let c = TokenUsage::new(1, 1, "local", "mock");
    let mixed = TokenUsage::sum([&a, &c]).unwrap();
    assert_eq!(
        (mixed.model.as_str(), mixed.provider.as_str()),
        ("mixed", "mixed")
    );

    let mut big = TokenUsage::new(u64::MAX - 1, 0, "m", "p");
    big.accumulate(&TokenUsage::new(5, 0, "m", "p"));
    assert_eq!(
        big.prompt_tokens,
        u64::MAX,
        "saturates instead of overflowing"
    );
}

fn step(name: &str, status: StepStatus, usage: Option<TokenUsage>) -> StepResult {
    StepResult {
        step_id: Uuid::new_v4(),
        name: name.into(),
        status,
        output: None,
        error: None,
        duration_ms: 2.0,
        token_usage: usage,
    }
}

#[test]
fn metrics_from_steps() {
    let steps = vec![
        step(
            "a",
            StepStatus::Completed,
            Some(TokenUsage::new(3, 1, "m", "p")),
        ),
        step("b", StepStatus::Completed, None),
        step(
            "c",
            StepStatus::Failed,
            Some(TokenUsage::new(2, 0, "m", "p")),
        ),
        step("d", StepStatus::Skipped, None),
        step("e", StepStatus::Pending, None),
    ];
    let m = ExecutionMetrics::from_steps(&steps, 10.0);
    assert_eq!(
        (m.steps_completed, m.steps_failed, m.steps_skipped),
        (2, 1, 1)
    );
    assert_eq!(
        m.step_durations.keys().collect::<Vec<_>>(),
        ["a", "b", "c"],
        "skipped and pending steps did not run"
    );
    assert_eq!(m.step_token_usage.keys().collect::<Vec<_>>(), ["a", "c"]);
    assert_eq!(m.token_usage_total, Some(TokenUsage::new(5, 1, "m", "p")));
    assert_eq!(m.total_duration_ms, 10.0);

    let none = ExecutionMetrics::from_steps(&[step("x", StepStatus::Completed, None)], 1.0);
    assert_eq!(none.token_usage_total, None);
}
