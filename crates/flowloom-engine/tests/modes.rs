//! Execution modes: async, start/handle, blocking, timeouts, cancellation, many runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Timed;
use flowloom_core::{StepStatus, WorkflowStatus};
use flowloom_engine::prelude::*;
use flowloom_provider_mock::MockProvider;
use tokio::time::Instant;

fn timed_engine(t: &Timed) -> Engine {
    Engine::builder()
        .provider("timed", t.clone())
        .build()
        .unwrap()
}

/// Three model steps of 4 s, 4 s and 7 s: 15 s in all.
fn fifteen_seconds() -> Workflow {
    Workflow::builder("slow")
        .llm("one", "4000ms:first")
        .llm("two", "4000ms:second {{ one }}")
        .llm("three", "7000ms:third {{ two }}")
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_15s_workflow_with_a_10s_timeout_returns_timeout_at_10s_with_completed_steps() {
    let t = Timed::new();
    let engine = timed_engine(&t);
    let start = Instant::now();
    let err = engine
        .run_with(
            &fifteen_seconds(),
            RunOptions::new("x").timeout(Duration::from_secs(10)),
        )
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    assert!(err.is_timeout());
    let r = err.result().unwrap();
    assert_eq!(r.status, WorkflowStatus::Timeout);
    assert_eq!(r.step("one").unwrap().status, StepStatus::Completed);
    assert_eq!(r.step_output("one"), Some("first"));
    assert_eq!(r.step_output("two"), Some("second first"));
    let three = r.step("three").unwrap();
    assert_eq!(three.status, StepStatus::Failed);
    assert!(
        three.error.as_ref().unwrap().contains("timeout"),
        "{three:?}"
    );
    assert_eq!(r.metrics.steps_completed, 2);
    assert_eq!(r.metrics.llm_calls, 2);
    assert_eq!(
        r.metrics.token_usage_total.as_ref().unwrap().total_tokens,
        30
    );
    assert_eq!(r.metrics.step_durations["one"], 4000.0);
    assert!(
        r.error.as_ref().unwrap().contains("timed out after 10s"),
        "{:?}",
        r.error
    );
    assert!(err.to_string().contains("timed out"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_10s_workflow_with_a_30s_timeout_returns_its_result_at_10s() {
    let t = Timed::new();
    let engine = timed_engine(&t);
    let wf = Workflow::builder("ten")
        .llm("a", "5000ms:a")
        .llm("b", "5000ms:b {{ a }}")
        .build()
        .unwrap();
    let start = Instant::now();
    let r = engine
        .run_with(&wf, RunOptions::new("x").timeout(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    assert_eq!(r.output_text(), Some("b a"));
}

#[test]
fn run_blocking_returns_the_result_without_a_runtime() {
    let engine = Engine::builder()
        .provider("mock", MockProvider::echo())
        .build()
        .unwrap();
    let wf = Workflow::builder("b")
        .llm("a", "Hi {{ input }}")
        .transform("up", |c| Ok(c.output("a")?.to_uppercase().into()))
        .build()
        .unwrap();
    let r = engine
        .run_blocking(&wf, "you", Some(Duration::from_secs(30)))
        .unwrap();
    assert_eq!(r.output_text(), Some("HI YOU"));
    // From many threads at once, on one engine.
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let engine = engine.clone();
            let wf = wf.clone();
            std::thread::spawn(move || engine.run_blocking(&wf, format!("t{i}"), None).unwrap())
        })
        .collect();
    for (i, h) in threads.into_iter().enumerate() {
        assert_eq!(
            h.join().unwrap().output_text(),
            Some(format!("HI T{i}").as_str())
        );
    }
}

#[test]
fn run_blocking_times_out_with_the_state_it_had() {
    // Small real durations: the first step answers at once, the second would take 30 s.
    let mock = MockProvider::from_yaml_str(
        r#"
rules:
  - match: "^slow"
    respond: "late"
    latency: 30s
"#,
    )
    .unwrap();
    let engine = Engine::builder().provider("mock", mock).build().unwrap();
    let wf = Workflow::builder("b")
        .llm("fast", "quick")
        .llm("slow", "slow {{ fast }}")
        .build()
        .unwrap();
    let err = engine
        .run_blocking(&wf, "x", Some(Duration::from_millis(200)))
        .unwrap_err();
    let r = err.result().unwrap();
    assert_eq!(r.status, WorkflowStatus::Timeout);
    assert_eq!(r.step_output("fast"), Some("quick"));
    assert_eq!(r.step("slow").unwrap().status, StepStatus::Failed);
    assert_eq!(r.metrics.steps_completed, 1);
}

#[tokio::test]
async fn run_blocking_inside_a_runtime_is_an_error_not_a_panic() {
    let engine = Engine::builder().build().unwrap();
    let wf = Workflow::builder("b")
        .transform("t", |_| Ok(1.into()))
        .build()
        .unwrap();
    let err = engine.run_blocking(&wf, "x", None).unwrap_err();
    assert!(matches!(err, RunError::BlockingInAsync), "{err}");
    assert!(err.to_string().contains(".await"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn start_returns_at_once_with_a_handle_and_keeps_the_result_until_taken() {
    let t = Timed::new();
    let engine = timed_engine(&t);
    let wf = Workflow::builder("h")
        .llm("a", "1000ms:done")
        .build()
        .unwrap();
    let handle = engine.start(&wf, "x");
    assert_eq!(handle.status(), WorkflowStatus::Pending);
    assert!(!handle.is_finished());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(handle.status(), WorkflowStatus::Running);
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Finished long ago; the result is still there.
    assert_eq!(handle.status(), WorkflowStatus::Completed);
    assert!(handle.is_finished());
    let id = handle.id();
    let r = handle.result().await.unwrap();
    assert_eq!(r.workflow_id, id);
    assert_eq!(r.output_text(), Some("done"));
}

#[tokio::test(start_paused = true)]
async fn try_result_takes_the_result_once() {
    let engine = Engine::builder().build().unwrap();
    let wf = Workflow::builder("h")
        .transform("a", |_| Ok("v".into()))
        .build()
        .unwrap();
    let handle = engine.start(&wf, "x");
    handle.wait().await;
    assert_eq!(
        handle.try_result().unwrap().unwrap().output_text(),
        Some("v")
    );
    assert!(handle.try_result().is_none());
}

#[test]
fn start_works_without_a_runtime() {
    let engine = Engine::builder()
        .provider("mock", MockProvider::echo())
        .build()
        .unwrap();
    let wf = Workflow::builder("h")
        .llm("a", "x {{ input }}")
        .build()
        .unwrap();
    let handle = engine.start(&wf, "y");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let r = rt.block_on(handle.result()).unwrap();
    assert_eq!(r.output_text(), Some("x y"));
}

#[tokio::test(start_paused = true)]
async fn cancel_in_the_middle_lets_in_flight_calls_finish_and_starts_nothing_new() {
    let t = Timed::new();
    let engine = timed_engine(&t);
    let wf = Workflow::builder("c")
        .llm("one", "1000ms:1")
        .llm("two", "1000ms:2")
        .llm("three", "1000ms:3")
        .build()
        .unwrap();
    let start = Instant::now();
    let handle = engine.start(&wf, "x");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    handle.cancel();
    let err = handle.result().await.unwrap_err();
    // "two" was in flight at 1.5 s and finished at 2 s; "three" never started.
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert!(err.is_cancelled());
    let r = err.result().unwrap();
    assert_eq!(r.status, WorkflowStatus::Cancelled);
    assert_eq!(r.step("two").unwrap().status, StepStatus::Completed);
    assert_eq!(r.step("three").unwrap().status, StepStatus::Pending);
    assert_eq!(r.metrics.llm_calls, 2);
    assert_eq!(
        r.metrics.token_usage_total.as_ref().unwrap().total_tokens,
        30
    );
    assert_eq!(t.calls().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_cancel_token_in_run_options_cancels_an_awaited_run() {
    let t = Timed::new();
    let engine = timed_engine(&t);
    let wf = Workflow::builder("c")
        .llm("one", "1000ms:1")
        .llm("two", "1000ms:2")
        .build()
        .unwrap();
    let token = tokio_util::sync::CancellationToken::new();
    let t2 = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        t2.cancel();
    });
    let err = engine
        .run_with(&wf, RunOptions::new("x").cancel_token(token))
        .await
        .unwrap_err();
    assert_eq!(err.result().unwrap().metrics.steps_completed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_engine_serves_1000_concurrent_runs() {
    let mock = MockProvider::echo();
    let engine = Engine::builder()
        .provider("mock", mock.clone())
        .build()
        .unwrap();
    let wf = Workflow::builder("many")
        .llm("a", "A {{ input }}")
        .llm("b", "B {{ a }}")
        .transform("t", |c| Ok(c.output("b")?.to_uppercase().into()))
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let engine = engine.clone();
            let wf = wf.clone();
            tokio::spawn(async move { engine.run(&wf, format!("n{i}")).await })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let r = t.await.unwrap().unwrap();
        assert_eq!(r.output_text(), Some(format!("B A N{i}").as_str()));
    }
    assert_eq!(mock.request_count(), 2000);
    assert_eq!(engine.runs_in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn past_the_run_limit_new_runs_are_refused_when_so_configured() {
    let t = Timed::new();
    let engine = Engine::builder()
        .provider("timed", t.clone())
        .max_runs_in_flight(1, OverflowPolicy::Reject)
        .build()
        .unwrap();
    let wf = Workflow::builder("l").llm("a", "1000ms:a").build().unwrap();
    let first = engine.start(&wf, "x");
    tokio::time::sleep(Duration::from_millis(10)).await;
    let err = engine.run(&wf, "y").await.unwrap_err();
    assert!(matches!(err, RunError::AtCapacity { limit: 1 }), "{err}");
    assert!(err.to_string().contains("max_runs_in_flight"), "{err}");
    first.result().await.unwrap();
    engine.run(&wf, "z").await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn past_the_run_limit_new_runs_wait_by_default() {
    let t = Timed::new();
    let engine = Engine::builder()
        .provider("timed", t.clone())
        .max_runs_in_flight(2, OverflowPolicy::Wait)
        .build()
        .unwrap();
    let wf = Workflow::builder("l").llm("a", "1000ms:a").build().unwrap();
    let start = Instant::now();
    let handles: Vec<_> = (0..6).map(|_| engine.start(&wf, "x")).collect();
    for h in handles {
        h.result().await.unwrap();
    }
    // Six 1 s runs, two at a time.
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert_eq!(t.max_in_flight(), 2);
    // A wait longer than the run's timeout ends it before it starts.
    let _busy: Vec<_> = (0..2).map(|_| engine.start(&wf, "x")).collect();
    tokio::time::sleep(Duration::from_millis(1)).await;
    let err = engine
        .run_with(
            &wf,
            RunOptions::new("x").timeout(Duration::from_millis(500)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::QueueTimeout { .. }), "{err}");
}

#[tokio::test]
async fn the_config_default_timeout_applies_when_the_run_sets_none() {
    let mock =
        MockProvider::from_yaml_str("rules:\n  - respond: late\n    latency: 60s\n").unwrap();
    let cfg = flowloom_core::FrameworkConfig {
        default_timeout_seconds: Some(0.05),
        ..Default::default()
    };
    let engine = Engine::builder()
        .provider("mock", mock)
        .config(cfg)
        .build()
        .unwrap();
    let wf = Workflow::builder("t").llm("a", "x").build().unwrap();
    let err = engine.run(&wf, "x").await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn results_carry_ids_and_the_given_correlation_id() {
    let engine = Engine::builder().build().unwrap();
    let wf = Workflow::builder("ids")
        .transform("a", |c| Ok(c.correlation_id.to_string().into()))
        .build()
        .unwrap();
    let cid = uuid::Uuid::new_v4();
    let r = engine
        .run_with(&wf, RunOptions::new("x").correlation_id(cid))
        .await
        .unwrap();
    assert_eq!(r.correlation_id, cid);
    assert_eq!(r.output_text(), Some(cid.to_string().as_str()));
    let r2 = engine.run(&wf, "x").await.unwrap();
    assert_ne!(r.workflow_id, r2.workflow_id);
    assert!(r.completed_at.is_some());
    let _ = Arc::new(Mutex::new(()));
}

#[tokio::test(start_paused = true)]
async fn a_step_timeout_fails_that_step_at_its_limit() {
    let t = Timed::new();
    let engine = timed_engine(&t);
    let wf = Workflow::builder("st")
        .llm("quick", "100ms:ok")
        .step(
            Step::llm("slow", "5000ms:late")
                .timeout(Duration::from_secs(1))
                .critical(false),
        )
        .llm("after", "100ms:after {{ quick }}")
        .build()
        .unwrap();
    let start = Instant::now();
    let r = engine.run(&wf, "x").await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(1200));
    let slow = r.step("slow").unwrap();
    assert_eq!(slow.status, StepStatus::Failed);
    assert!(
        slow.error
            .as_ref()
            .unwrap()
            .contains(r#"step "slow" failed: timed out after 1s"#),
        "{slow:?}"
    );
    assert_eq!(r.output_text(), Some("after ok"));
}
