//! Failure attribution, panics, validation before running, registry and configuration errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::io::Write;
use std::time::Duration;

use flowloom_core::{
    FrameworkConfig, LlmError, LlmRequest, LlmResponse, StepStatus, WorkflowStatus,
};
use flowloom_engine::prelude::*;
use flowloom_engine::{BuildError, ConfigLoader, WorkflowIssue};
use flowloom_provider_mock::MockProvider;

const RATE_LIMITED: &str = r#"
rules:
  - match: "^Tighten"
    error: rate_limit
    message: "slow down"
"#;

#[tokio::test]
async fn a_failing_step_is_named_with_its_provider_and_cause() {
    let mock = MockProvider::from_yaml_str(RATE_LIMITED).unwrap();
    let engine = Engine::builder()
        .provider("openai", mock.clone())
        .no_default_stack()
        .build()
        .unwrap();
    let wf = Workflow::builder("summarize")
        .llm("draft", "Summarize: {{ input }}")
        .llm("refine", "Tighten this: {{ draft }}")
        .llm("never", "{{ refine }}")
        .build()
        .unwrap();
    let err = engine.run(&wf, "text").await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(r#"step "refine" failed: provider "openai": rate limited"#),
        "{msg}"
    );
    assert!(msg.contains("slow down"), "{msg}");
    assert_eq!(err.failed_step(), Some("refine"));
    let r = err.result().unwrap();
    assert_eq!(r.status, WorkflowStatus::Failed);
    assert_eq!(r.step("draft").unwrap().status, StepStatus::Completed);
    assert_eq!(r.step("refine").unwrap().status, StepStatus::Failed);
    assert_eq!(r.step("never").unwrap().status, StepStatus::Pending);
    assert_eq!(r.metrics.llm_calls, 2);
    assert_eq!(mock.request_count(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_default_stack_retries_with_the_configured_attempts() {
    let mock = MockProvider::from_yaml_str(
        r#"
rules:
  - match: "flaky"
    sequence:
      - { error: server }
      - { error: rate_limit }
      - { respond: "recovered" }
"#,
    )
    .unwrap();
    let engine = Engine::builder()
        .provider("mock", mock.clone())
        .build()
        .unwrap();
    let wf = Workflow::builder("r").llm("a", "flaky").build().unwrap();
    let r = engine.run(&wf, "x").await.unwrap();
    assert_eq!(r.output_text(), Some("recovered"));
    assert_eq!(mock.request_count(), 3);

    // With max_retry_attempts = 1 there is no retry.
    let mock = MockProvider::from_yaml_str("rules:\n  - match: flaky\n    sequence:\n      - { error: server }\n      - { respond: ok }\n").unwrap();
    let cfg = FrameworkConfig {
        max_retry_attempts: 1,
        ..Default::default()
    };
    let engine = Engine::builder()
        .provider("mock", mock.clone())
        .config(cfg)
        .build()
        .unwrap();
    let err = engine.run(&wf, "x").await.unwrap_err();
    assert!(
        err.to_string()
            .contains(r#"step "a" failed: provider "mock": server error"#),
        "{err}"
    );
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test]
async fn a_non_critical_step_lets_the_run_go_on_and_its_dependents_are_skipped() {
    let mock =
        MockProvider::from_yaml_str("rules:\n  - match: '^bad'\n    error: server\n").unwrap();
    let engine = Engine::builder()
        .provider("mock", mock)
        .no_default_stack()
        .build()
        .unwrap();
    let wf = Workflow::builder("nc")
        .llm("a", "good")
        .step(Step::llm("b", "bad").critical(false))
        .step(Step::llm("uses_b", "{{ b }}").needs(["b"]))
        .llm("after", "after {{ a }}")
        .build()
        .unwrap();
    let r = engine.run(&wf, "x").await.unwrap();
    assert_eq!(r.status, WorkflowStatus::Completed);
    assert_eq!(r.step("b").unwrap().status, StepStatus::Failed);
    assert!(
        r.step("b")
            .unwrap()
            .error
            .as_ref()
            .unwrap()
            .contains(r#"step "b" failed"#)
    );
    let skipped = r.step("uses_b").unwrap();
    assert_eq!(skipped.status, StepStatus::Skipped);
    assert!(
        skipped
            .error
            .as_ref()
            .unwrap()
            .contains(r#"needs "b", which failed"#)
    );
    assert_eq!(r.step_output("after"), Some("after good"));
    assert_eq!(r.metrics.steps_failed, 1);
    assert_eq!(r.metrics.steps_skipped, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_transform_fails_its_own_step_and_nothing_else() {
    let engine = Engine::builder()
        .provider("mock", MockProvider::echo())
        .build()
        .unwrap();
    let bad = Workflow::builder("bad")
        .llm("a", "x")
        .transform("boom", |_| panic!("kaboom"))
        .build()
        .unwrap();
    let good = Workflow::builder("good")
        .llm("a", "fine {{ input }}")
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (e, b, g) = (engine.clone(), bad.clone(), good.clone());
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let err = e.run(&b, "x").await.unwrap_err();
                assert!(
                    err.to_string()
                        .contains(r#"step "boom" failed: transform panicked: kaboom"#),
                    "{err}"
                );
                assert_eq!(err.result().unwrap().step_output("a"), Some("x"));
            } else {
                assert_eq!(e.run(&g, "y").await.unwrap().output_text(), Some("fine y"));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        engine.run(&good, "z").await.unwrap().output_text(),
        Some("fine z")
    );
}

#[tokio::test]
async fn a_transform_error_names_the_step() {
    let engine = Engine::builder().build().unwrap();
    let wf = Workflow::builder("t")
        .transform("parse", |c| Ok(c.output("missing")?.into()))
        .build()
        .unwrap();
    let err = engine.run(&wf, "x").await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(r#"step "parse" failed: transform error: no output from step `missing`"#),
        "{msg}"
    );
}

#[tokio::test]
async fn a_panicking_provider_fails_its_step() {
    let svc = tower::service_fn(|_r: LlmRequest| async move {
        if true {
            panic!("provider exploded");
        }
        Ok::<LlmResponse, LlmError>(LlmResponse::text("", "", ""))
    });
    let engine = Engine::builder()
        .provider("p", svc)
        .no_default_stack()
        .build()
        .unwrap();
    let wf = Workflow::builder("t").llm("a", "x").build().unwrap();
    let err = engine.run(&wf, "x").await.unwrap_err();
    assert!(err.to_string().contains("provider exploded"), "{err}");
    assert!(err.to_string().contains(r#"step "a" failed"#), "{err}");
}

#[test]
fn cycles_are_rejected_with_their_path() {
    let err = Workflow::builder("cyc")
        .llm("start", "go")
        .step(Step::llm("a", "{{ c }}").needs(["c"]))
        .step(Step::llm("b", "{{ a }}").needs(["a"]))
        .step(Step::llm("c", "{{ b }}").needs(["b", "start"]))
        .build()
        .unwrap_err();
    assert!(err.issues.iter().any(|i| matches!(i, WorkflowIssue::Cycle { path } if path.join(" -> ") == "a -> c -> b -> a")), "{err}");
    assert!(err.to_string().contains("a -> c -> b -> a"), "{err}");
    let self_loop = Workflow::builder("s")
        .step(Step::llm("a", "x").needs(["a"]))
        .build()
        .unwrap_err();
    assert!(self_loop.to_string().contains("a -> a"), "{self_loop}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = Workflow::builder("many")
        .llm("a", "Use {{ topic }}")
        .llm("a", "dup")
        .step(Step::llm("b", "x").needs(["nope"]))
        .step(Step::llm("c", "{{ unclosed").temperature(3.0))
        .step(Step::llm("input", "reserved"))
        .step(Step::llm("d", "{{ later }}").needs([] as [&str; 0]))
        .llm("later", "z")
        .build()
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("uses `topic`, which nothing provides"),
        "{text}"
    );
    assert!(text.contains(r#"two steps are named "a""#), "{text}");
    assert!(
        text.contains(r#"step "b" needs "nope", which is not a step"#),
        "{text}"
    );
    assert!(text.contains("does not parse"), "{text}");
    assert!(text.contains("temperature 3 is out of range"), "{text}");
    assert!(
        text.contains(r#"step name "input" cannot be used"#),
        "{text}"
    );
    assert!(
        text.contains(r#"step "d" uses the output of "later", but does not run after it"#),
        "{text}"
    );
    assert!(err.issues.len() >= 7, "{text}");
    assert!(
        Workflow::builder("empty")
            .build()
            .unwrap_err()
            .to_string()
            .contains("no steps")
    );
}

#[test]
fn undefined_variables_in_conditions_and_sub_workflow_values_are_found_at_build() {
    let err = Workflow::builder("u")
        .step(Step::llm("a", "x").when("verdict == 'YES'"))
        .step(Step::workflow("w", "other").with("code", "{{ nothing }}"))
        .build()
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("`when` condition uses `verdict`"), "{text}");
    assert!(text.contains("uses `nothing`"), "{text}");
}

#[tokio::test]
async fn an_undefined_variable_at_run_time_names_the_step_and_the_variable() {
    let engine = Engine::builder()
        .provider("mock", MockProvider::echo())
        .build()
        .unwrap();
    let wf = Workflow::builder("open")
        .open_variables(true)
        .llm("greet", "Hello {{ who }}")
        .build()
        .unwrap();
    let err = engine.run(&wf, "x").await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(r#"step "greet" failed"#), "{msg}");
    assert!(msg.contains("uses `who`, which is not defined"), "{msg}");
    // Given at run time, it renders.
    let r = engine
        .run_with(&wf, RunOptions::new("x").var("who", "Ada"))
        .await
        .unwrap();
    assert_eq!(r.output_text(), Some("Hello Ada"));
    // Nested lookups that miss are errors too.
    let wf2 = Workflow::builder("nested")
        .llm("a", "{{ input.missing }}")
        .build()
        .unwrap();
    let err = engine.run(&wf2, json!({"name": "x"})).await.unwrap_err();
    assert!(
        err.to_string().contains(r#"the prompt of step "a""#),
        "{err}"
    );
}

#[tokio::test]
async fn an_unregistered_provider_fails_before_the_run_listing_the_registered_ones() {
    let mock = MockProvider::echo();
    let engine = Engine::builder()
        .provider("mock", mock.clone())
        .provider("local", MockProvider::echo())
        .default_provider("mock")
        .build()
        .unwrap();
    let wf = Workflow::builder("p")
        .llm("a", "x")
        .step(Step::llm("b", "y").provider("anthropic"))
        .build()
        .unwrap();
    let err = engine.run(&wf, "x").await.unwrap_err();
    assert!(err.is_before_start());
    let msg = err.to_string();
    assert!(
        msg.contains(r#"step "b" uses provider "anthropic", which is not registered"#),
        "{msg}"
    );
    assert!(msg.contains("registered providers: local, mock"), "{msg}");
    assert_eq!(mock.request_count(), 0, "nothing ran");
}

#[tokio::test]
async fn an_engine_without_provider_builds_but_a_model_step_fails_before_running() {
    let engine = Engine::builder().build().unwrap();
    let wf = Workflow::builder("p")
        .transform("t", |_| Ok("ok".into()))
        .llm("a", "x")
        .build()
        .unwrap();
    let err = engine.run(&wf, "x").await.unwrap_err();
    assert!(matches!(err, RunError::NoProvider { .. }), "{err}");
    assert!(
        err.to_string().contains("the engine has no provider"),
        "{err}"
    );
    assert!(err.to_string().contains(".provider("), "{err}");
    // A workflow without model steps runs.
    let wf = Workflow::builder("q")
        .transform("t", |_| Ok("ok".into()))
        .build()
        .unwrap();
    assert_eq!(
        engine.run(&wf, "x").await.unwrap().output_text(),
        Some("ok")
    );
}

#[tokio::test]
async fn several_providers_without_a_default_is_a_clear_error() {
    let engine = Engine::builder()
        .provider("a", MockProvider::echo())
        .provider("b", MockProvider::echo())
        .build()
        .unwrap();
    let wf = Workflow::builder("p").llm("s", "x").build().unwrap();
    let err = engine.run(&wf, "x").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("names no provider and the engine has several (a, b)"),
        "{err}"
    );
}

#[test]
fn engine_build_errors_say_what_to_do() {
    let err = Engine::builder()
        .provider("mock", MockProvider::echo())
        .default_provider("openai")
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::UnknownDefaultProvider { .. }));
    assert!(
        err.to_string().contains(
            r#"the default provider "openai" is not registered (registered providers: mock)"#
        ),
        "{err}"
    );
    let err = Engine::builder()
        .provider("m", MockProvider::echo())
        .provider("m", MockProvider::echo())
        .build()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(r#"provider "m" is registered twice"#),
        "{err}"
    );
    let bad = FrameworkConfig {
        default_temperature: 5.0,
        ..Default::default()
    };
    let err = Engine::builder().config(bad).build().unwrap_err();
    assert!(err.to_string().contains("default_temperature"), "{err}");
    let err = Engine::builder()
        .max_concurrent_steps(0)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("max_concurrent_steps"), "{err}");
}

#[test]
fn bad_config_values_say_what_was_found_and_how_to_fix_it() {
    let err = ConfigLoader::new()
        .env_var("FLOWLOOM_DEFAULT_TEMPERATURE", "hot")
        .env_var("FLOWLOOM_DEFAULT_MAX_TOKENS", "500000")
        .env_var("FLOWLOOM_MAX_RETRIES", "lots")
        .env_var("FLOWLOOM_RETRY_BACKOFF", "0.5")
        .env_var("FLOWLOOM_DEFAULT_MODE", "fast")
        .env_var("FLOWLOOM_DEFAULT_TIMEOUT", "-3")
        .env_var("FLOWLOOM_LOG_LEVEL", "loud")
        .env_var("FLOWLOOM_LOG_PROMPTS", "maybe")
        .env_var("OPENAI_API_KEY", "sk-secret-value")
        .load()
        .unwrap_err();
    let text = err.to_string();
    for expected in [
        r#"FLOWLOOM_DEFAULT_TEMPERATURE="hot": expected a number from 0.0 to 2.0, e.g. 0.7"#,
        r#"FLOWLOOM_DEFAULT_MAX_TOKENS="500000": expected an integer from 1 to 128000"#,
        r#"FLOWLOOM_MAX_RETRIES="lots": expected an integer from 1 to 10"#,
        r#"FLOWLOOM_RETRY_BACKOFF="0.5": expected a number from 1.0 to 10.0"#,
        r#"FLOWLOOM_DEFAULT_MODE="fast": expected `async` or `sync`"#,
        r#"FLOWLOOM_DEFAULT_TIMEOUT="-3""#,
        r#"FLOWLOOM_LOG_LEVEL="loud""#,
        r#"FLOWLOOM_LOG_PROMPTS="maybe""#,
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert_eq!(err.problems().len(), 8, "{text}");
    assert!(!text.contains("sk-secret-value"));
}

#[test]
fn env_overrides_the_file_which_overrides_defaults() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        f,
        "default_model: from-file\ndefault_temperature: 0.2\nmax_retry_attempts: 5"
    )
    .unwrap();
    let cfg = ConfigLoader::new()
        .file(f.path())
        .env_var("FLOWLOOM_DEFAULT_MODEL", "from-env")
        .env_var("FLOWLOOM_DEFAULT_TIMEOUT", "5m")
        .load()
        .unwrap();
    assert_eq!(cfg.default_model, "from-env");
    assert_eq!(cfg.default_temperature, 0.2);
    assert_eq!(cfg.max_retry_attempts, 5);
    assert_eq!(cfg.default_timeout(), Some(Duration::from_secs(300)));
    assert_eq!(cfg.default_max_tokens, 1024);

    let mut bad = tempfile::NamedTempFile::new().unwrap();
    writeln!(bad, "default_model: x\ntemprature: 0.2").unwrap();
    let err = ConfigLoader::new().file(bad.path()).load().unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
    assert!(err.to_string().contains("temprature"), "{err}");

    let mut range = tempfile::NamedTempFile::new().unwrap();
    writeln!(range, "default_temperature: 7").unwrap();
    let err = ConfigLoader::new().file(range.path()).load().unwrap_err();
    assert!(
        err.to_string()
            .contains(": default_temperature=7: expected a number from 0.0 to 2.0"),
        "{err}"
    );
}

#[tokio::test]
async fn config_defaults_apply_to_every_model_request() {
    let mock = MockProvider::echo();
    let cfg = ConfigLoader::new()
        .env_var("FLOWLOOM_DEFAULT_MODEL", "gpt-test")
        .env_var("FLOWLOOM_DEFAULT_TEMPERATURE", "0.3")
        .env_var("FLOWLOOM_DEFAULT_MAX_TOKENS", "77")
        .load()
        .unwrap();
    let engine = Engine::builder()
        .provider("mock", mock.clone())
        .config(cfg)
        .build()
        .unwrap();
    let wf = Workflow::builder("d").llm("a", "x").build().unwrap();
    engine.run(&wf, "x").await.unwrap();
    let req = mock.last_request().unwrap();
    assert_eq!(
        (req.model.as_str(), req.temperature, req.max_tokens),
        ("gpt-test", 0.3, 77)
    );
}
