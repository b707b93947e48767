//! Scheduling: sequence by default, `needs` for a DAG, no barrier between branches, the
//! concurrency bound, conditions and the skip rule.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::time::Duration;

use common::Timed;
use flowloom_core::StepStatus;
use flowloom_engine::prelude::*;
use flowloom_provider_mock::MockProvider;
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn a_fast_branch_finishes_before_an_unrelated_slow_branch() {
    let t = Timed::new();
    let engine = Engine::builder()
        .provider("timed", t.clone())
        .build()
        .unwrap();
    let wf = Workflow::builder("branches")
        .step(Step::llm("slow", "5000ms:slow").needs([] as [&str; 0]))
        .step(Step::llm("fast", "1000ms:fast").needs([] as [&str; 0]))
        .step(Step::llm("after_fast", "1000ms:after {{ fast }}").needs(["fast"]))
        .step(Step::llm("join", "0ms:{{ slow }}+{{ after_fast }}").needs(["slow", "after_fast"]))
        .build()
        .unwrap();
    let start = Instant::now();
    let r = engine.run(&wf, "x").await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(r.output_text(), Some("slow+after fast"));
    // "after_fast" started the moment "fast" ended (1 s) and ended at 2 s, while "slow" ran
    // until 5 s: no barrier between the branches.
    let after = t.call("after fast");
    assert_eq!(after.start, Duration::from_secs(1));
    assert_eq!(after.end, Duration::from_secs(2));
    assert_eq!(t.call("slow").end, Duration::from_secs(5));
    assert_eq!(t.call("slow+after fast").start, Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn the_concurrency_bound_per_run_is_respected() {
    let t = Timed::new();
    let engine = Engine::builder()
        .provider("timed", t.clone())
        .max_concurrent_steps(2)
        .build()
        .unwrap();
    let mut b = Workflow::builder("wide");
    for i in 0..6 {
        b = b.step(Step::llm(format!("s{i}"), format!("1000ms:{i}")).needs([] as [&str; 0]));
    }
    let start = Instant::now();
    let r = engine.run(&b.build().unwrap(), "x").await.unwrap();
    assert_eq!(r.metrics.steps_completed, 6);
    assert_eq!(t.max_in_flight(), 2);
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    // Unbounded (well, 32): all six at once.
    let t2 = Timed::new();
    let engine = Engine::builder()
        .provider("timed", t2.clone())
        .build()
        .unwrap();
    let mut b = Workflow::builder("wide");
    for i in 0..6 {
        b = b.step(Step::llm(format!("s{i}"), format!("1000ms:{i}")).needs([] as [&str; 0]));
    }
    let start = Instant::now();
    engine.run(&b.build().unwrap(), "x").await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(t2.max_in_flight(), 6);
}

#[tokio::test(start_paused = true)]
async fn steps_without_needs_run_in_declaration_order() {
    let t = Timed::new();
    let engine = Engine::builder()
        .provider("timed", t.clone())
        .build()
        .unwrap();
    let wf = Workflow::builder("seq")
        .llm("a", "100ms:a")
        .llm("b", "100ms:b")
        .llm("c", "100ms:c")
        .build()
        .unwrap();
    engine.run(&wf, "x").await.unwrap();
    let calls = t.calls();
    assert_eq!(
        calls.iter().map(|c| c.prompt.as_str()).collect::<Vec<_>>(),
        ["100ms:a", "100ms:b", "100ms:c"]
    );
    assert_eq!(calls[1].start, calls[0].end);
    assert_eq!(calls[2].start, calls[1].end);
    assert_eq!(wf.dependencies("c").unwrap(), ["b"]);
}

fn check_engine(answer: &str) -> (Engine, MockProvider) {
    let mock = MockProvider::from_yaml_str(&format!(
        "rules:\n  - match: '^Is it'\n    respond: \"{answer}\"\n"
    ))
    .unwrap();
    (
        Engine::builder()
            .provider("mock", mock.clone())
            .build()
            .unwrap(),
        mock,
    )
}

fn conditional() -> Workflow {
    Workflow::builder("cond")
        .llm("draft", "Draft about {{ input }}")
        .llm("check", "Is it good? {{ draft }}")
        .step(Step::llm("fix", "Fix: {{ draft }}").when("{{ check == 'NO' }}"))
        .step(Step::llm("polish", "Polish: {{ fix }}").needs(["fix"]))
        .step(
            Step::llm("either", "Best: {{ fix if fix is defined else draft }}")
                .needs(["fix", "draft"])
                .when("true"),
        )
        .llm("publish", "Publish: {{ draft }}")
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_false_condition_skips_the_step_and_its_dependents_unless_they_have_a_condition() {
    let (engine, _) = check_engine("YES");
    let r = engine.run(&conditional(), "cats").await.unwrap();
    let fix = r.step("fix").unwrap();
    assert_eq!(fix.status, StepStatus::Skipped);
    assert!(fix.error.as_ref().unwrap().contains("condition is false"));
    // Needs the skipped step, no condition of its own: skipped.
    let polish = r.step("polish").unwrap();
    assert_eq!(polish.status, StepStatus::Skipped);
    assert!(
        polish
            .error
            .as_ref()
            .unwrap()
            .contains(r#"needs "fix", which was skipped"#)
    );
    // Needs it but has its own condition: the condition decides, and it can test `defined`.
    assert_eq!(r.step_output("either"), Some("Best: Draft about cats"));
    // Follows only by declaration order: runs.
    assert_eq!(r.step_output("publish"), Some("Publish: Draft about cats"));
    assert_eq!(r.metrics.steps_skipped, 2);
    assert_eq!(r.output_text(), Some("Publish: Draft about cats"));
}

#[tokio::test]
async fn a_true_condition_runs_the_step() {
    let (engine, _) = check_engine("NO");
    let r = engine.run(&conditional(), "cats").await.unwrap();
    assert_eq!(r.step_output("fix"), Some("Fix: Draft about cats"));
    assert_eq!(
        r.step_output("polish"),
        Some("Polish: Fix: Draft about cats")
    );
    assert_eq!(r.step_output("either"), Some("Best: Fix: Draft about cats"));
    assert_eq!(r.metrics.steps_skipped, 0);
}

#[tokio::test]
async fn bare_and_braced_conditions_are_both_expressions() {
    let engine = Engine::builder().build().unwrap();
    let wf = Workflow::builder("c")
        .transform("n", |_| Ok(3.into()))
        .step(
            Step::transform("big", |_| Ok("big".into()))
                .when("n > 2")
                .needs(["n"]),
        )
        .step(
            Step::transform("small", |_| Ok("small".into()))
                .when("{{ n <= 2 }}")
                .needs(["n"]),
        )
        // A non-empty string is not "true" by itself: the expression is evaluated.
        .step(
            Step::transform("strcmp", |_| Ok("x".into()))
                .when("{{ 'NO' == 'YES' }}")
                .needs(["n"]),
        )
        .build()
        .unwrap();
    let r = engine.run(&wf, "x").await.unwrap();
    assert_eq!(r.step("big").unwrap().status, StepStatus::Completed);
    assert_eq!(r.step("small").unwrap().status, StepStatus::Skipped);
    assert_eq!(r.step("strcmp").unwrap().status, StepStatus::Skipped);
}

#[tokio::test]
async fn a_template_using_a_skipped_steps_output_fails_naming_the_variable() {
    let (engine, _) = check_engine("YES");
    let wf = Workflow::builder("c")
        .llm("check", "Is it good?")
        .step(Step::llm("fix", "Fix").when("check == 'NO'"))
        .llm("use", "Use {{ fix }}")
        .build()
        .unwrap();
    let err = engine.run(&wf, "x").await.unwrap_err();
    assert!(
        err.to_string().contains(
            r#"step "use" failed: the prompt of step "use" uses `fix`, which is not defined"#
        ),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_critical_failure_lets_steps_in_flight_finish_and_starts_nothing_new() {
    let t = Timed::new();
    let engine = Engine::builder()
        .provider("timed", t.clone())
        .no_default_stack()
        .build()
        .unwrap();
    let wf = Workflow::builder("f")
        .step(Step::llm("slow", "3000ms:slow").needs([] as [&str; 0]))
        .step(Step::transform("bad", |_| Err("broken".into())).needs([] as [&str; 0]))
        .step(Step::llm("after_slow", "10ms:x").needs(["slow"]))
        .build()
        .unwrap();
    let start = Instant::now();
    let err = engine.run(&wf, "x").await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    let r = err.result().unwrap();
    assert_eq!(r.failed_step.as_deref(), Some("bad"));
    assert_eq!(r.step("slow").unwrap().status, StepStatus::Completed);
    assert_eq!(r.step("after_slow").unwrap().status, StepStatus::Pending);
    assert!(
        err.to_string()
            .contains(r#"step "bad" failed: transform error: broken"#),
        "{err}"
    );
}
