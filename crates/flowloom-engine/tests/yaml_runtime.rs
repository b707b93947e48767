//! Run-time options of YAML workflows: `execution.parallel`, `on_error`, `on_failure`, step
//! and workflow timeouts, `if` expressions, `env`, and providers that are not registered.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use flowloom_core::WorkflowResult;
use flowloom_core::{StepStatus, WorkflowStatus};
use flowloom_engine::yaml::{self, Library, WorkflowSet};
use flowloom_engine::{Engine, RunError};
use flowloom_provider_mock::MockProvider;

/// Runs the set's root workflow on an engine whose one provider, `mock`, is `mock`.
async fn run_on(s: &WorkflowSet, mock: MockProvider) -> Result<WorkflowResult, RunError> {
    let engine = s
        .register(Engine::builder().provider("mock", mock))
        .build()
        .unwrap();
    engine.run_named(s.root_name(), s.run_options("")).await
}

fn set(text: &str) -> WorkflowSet {
    let wf = yaml::load_str(text).unwrap_or_else(|e| panic!("{e}"));
    WorkflowSet::from_library(wf, &Library::new()).unwrap()
}

const HEAD: &str =
    "$schema: workflow/v2.0\nname: rt\nversion: 1.0.0\ndescription: runtime options\n";

#[test]
fn parallel_false_chains_every_step_after_the_one_before() {
    let text = format!(
        "{HEAD}execution:\n  provider: mock\n  model: m\n  parallel: false\nsteps:\n  - {{name: a, run: a}}\n  - {{name: b, needs: [], run: b}}\n  - {{name: c, needs: [a], run: c}}\n"
    );
    let s = set(&text);
    let wf = s.root().unwrap();
    assert_eq!(wf.dependencies("b").unwrap(), vec!["a"]);
    let mut c = wf.dependencies("c").unwrap();
    c.sort_unstable();
    assert_eq!(c, vec!["a", "b"]);
    // Without it, `needs: []` starts at once.
    let s = set(&text.replace("  parallel: false\n", ""));
    assert!(s.root().unwrap().dependencies("b").unwrap().is_empty());
}

#[tokio::test]
async fn on_error_continue_and_on_failure_decide_whether_the_run_goes_on() {
    let script = "rules:\n  - match: \"^boom\"\n    error: invalid_request\n";
    let text = format!(
        "{HEAD}execution:\n  provider: mock\n  model: m\n  on_error: continue\nsteps:\n  - {{name: a, run: boom}}\n  - {{name: b, run: fine}}\n"
    );
    let s = set(&text);
    let r = run_on(&s, MockProvider::from_yaml_str(script).unwrap())
        .await
        .unwrap();
    assert_eq!(r.step("a").unwrap().status, StepStatus::Failed);
    assert_eq!(r.step_output("b"), Some("fine"));
    // A step's own `on_failure: fail` wins over `on_error: continue`.
    let s = set(&text.replace(
        "{name: a, run: boom}",
        "{name: a, run: boom, on_failure: fail}",
    ));
    let err = run_on(&s, MockProvider::from_yaml_str(script).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.result().unwrap().status, WorkflowStatus::Failed);
    assert_eq!(err.failed_step(), Some("a"));
    // Without either, a failing step stops the run; with `on_failure: continue` it does not.
    let plain = text.replace("  on_error: continue\n", "");
    let s = set(&plain.replace(
        "{name: a, run: boom}",
        "{name: a, run: boom, on_failure: continue}",
    ));
    let r = run_on(&s, MockProvider::from_yaml_str(script).unwrap())
        .await
        .unwrap();
    assert_eq!(r.step_output("b"), Some("fine"));
}

#[tokio::test(start_paused = true)]
async fn step_timeouts_come_from_execution_or_the_step() {
    let slow = "rules:\n  - match: \"^slow\"\n    respond: late\n    latency: 1h\n";
    let text = format!(
        "{HEAD}execution:\n  provider: mock\n  model: m\n  timeout: 5m\nsteps:\n  - {{name: a, run: quick}}\n  - {{name: b, timeout: 30s, run: slow}}\n"
    );
    let s = set(&text);
    let started = tokio::time::Instant::now();
    let err = run_on(&s, MockProvider::from_yaml_str(slow).unwrap())
        .await
        .unwrap_err();
    let b = err.result().unwrap().step("b").unwrap().clone();
    assert_eq!(b.status, StepStatus::Failed);
    assert!(b.error.unwrap().contains("timed out after 30s"));
    assert_eq!(started.elapsed().as_secs(), 30);
}

#[tokio::test(start_paused = true)]
async fn workflow_timeout_ends_the_run_as_timeout() {
    let slow = "default: { respond: late, latency: 1h }\n";
    let text = format!(
        "{HEAD}execution:\n  provider: mock\n  model: m\n  workflow_timeout: 2m\nsteps:\n  - {{name: a, run: slow}}\n"
    );
    let s = set(&text);
    assert_eq!(s.workflow_timeout().unwrap().as_secs(), 120);
    let err = run_on(&s, MockProvider::from_yaml_str(slow).unwrap())
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
}

#[tokio::test]
async fn if_expressions_are_evaluated_not_truthy_strings() {
    let text = format!(
        "{HEAD}execution:\n  provider: mock\n  model: m\nsteps:\n  - {{name: check, run: \"NO\"}}\n  - name: fix\n    needs: [check]\n    if: \"check == 'YES'\"\n    run: fix it\n  - name: report\n    needs: [check]\n    if: \"{{{{ check | lower == 'no' }}}}\"\n    run: report\n"
    );
    let s = set(&text);
    let r = run_on(&s, MockProvider::echo()).await.unwrap();
    assert_eq!(
        r.step("fix").unwrap().status,
        StepStatus::Skipped,
        "\"check == 'YES'\" is a non-empty string but false"
    );
    assert_eq!(r.step_output("report"), Some("report"));
}

#[tokio::test]
async fn an_unregistered_provider_fails_before_anything_runs() {
    let text = format!(
        "{HEAD}execution:\n  provider: mock\n  model: m\nsteps:\n  - {{name: a, run: one}}\n  - {{name: b, provider: nowhere, run: two}}\n"
    );
    let s = set(&text);
    let m = MockProvider::echo();
    let err = run_on(&s, m.clone()).await.unwrap_err();
    assert!(err.to_string().contains("nowhere"), "{err}");
    assert_eq!(m.request_count(), 0, "nothing ran");
}

#[tokio::test]
async fn env_values_of_any_scalar_type_are_text() {
    let text = format!(
        "{HEAD}execution:\n  provider: mock\n  model: m\nenv:\n  PORT: 8080\n  DEBUG: true\n  NAME: api\nsteps:\n  - {{name: a, run: \"{{{{ env.NAME }}}}:{{{{ env.PORT }}}} debug={{{{ env.DEBUG }}}}\"}}\n"
    );
    let s = set(&text);
    let r = run_on(&s, MockProvider::echo()).await.unwrap();
    assert_eq!(r.output_text(), Some("api:8080 debug=true"));
}

fn loop_set(on_failure: &str) -> WorkflowSet {
    let called = yaml::load_str(&format!(
        "{}execution:\n  provider: mock\n  model: m\nsteps:\n  - {{name: work, run: \"boom {{{{ attempt }}}}\"}}\n",
        HEAD.replace("name: rt", "name: flaky")
    ))
    .unwrap();
    let mut lib = Library::new();
    lib.register(called);
    let root = yaml::load_str(&format!(
        "{HEAD}execution:\n  provider: mock\n  model: m\nsteps:\n  - {{name: start, run: go}}\nloops:\n  - name: again\n    workflow: flaky\n    with: {{attempt: \"{{{{ loop.iteration }}}}\"}}\n    max_iterations: 3\n    until: it works\n    on_failure: {on_failure}\n"
    ))
    .unwrap();
    WorkflowSet::from_library(root, &lib).unwrap()
}

#[tokio::test]
async fn loop_retries_never_pass_max_iterations() {
    let script = "rules:\n  - match: \"^boom\"\n    error: invalid_request\n";
    let s = loop_set("retry");
    let m = MockProvider::from_yaml_str(script).unwrap();
    let r = run_on(&s, m.clone()).await.unwrap();
    let out = r.step("again").unwrap().output.clone().unwrap();
    assert_eq!(out["iterations"], 3);
    assert_eq!(out["failures"], 3);
    assert_eq!(out["until_met"], false);
    let boom: Vec<String> = m
        .requests()
        .iter()
        .filter_map(|q| {
            q.prompt()
                .filter(|p| p.starts_with("boom"))
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        boom,
        vec!["boom 1", "boom 2", "boom 3"],
        "three attempts, no more"
    );
    // `fail` stops at the first failed iteration, naming it.
    let s = loop_set("fail");
    let err = run_on(&s, MockProvider::from_yaml_str(script).unwrap())
        .await
        .unwrap_err();
    let msg = err
        .result()
        .unwrap()
        .step("again")
        .unwrap()
        .error
        .clone()
        .unwrap();
    assert!(msg.contains("iteration 1 of loop `again` failed"), "{msg}");
}

fn configured() -> flowloom_core::FrameworkConfig {
    flowloom_core::FrameworkConfig {
        default_model: "configured-model".into(),
        default_temperature: 0.25,
        default_max_tokens: 333,
        ..Default::default()
    }
}

#[tokio::test]
async fn failover_and_consensus_calls_get_the_configured_defaults() {
    let text = r#"$schema: workflow/v2.0
name: defaults
version: 1.0.0
description: unset settings come from the engine's configuration
execution:
  providers:
    - {provider: a, model: ma}
steps:
  - name: chained
    run: chained
  - name: vote
    consensus:
      prompt: vote
      executions:
        - {provider: b, model: mb}
        - {provider: b, model: mb2, temperature: 1.5, max_tokens: 7}
      require: majority
"#;
    let s = set(text);
    let (a, b) = (MockProvider::fixed("yes"), MockProvider::fixed("yes"));
    let engine = s
        .register(
            Engine::builder()
                .config(configured())
                .provider("a", a.clone())
                .provider("b", b.clone()),
        )
        .build()
        .unwrap();
    engine
        .run_named(s.root_name(), s.run_options(""))
        .await
        .unwrap();
    let chained = a.last_request().unwrap();
    assert_eq!(chained.model, "ma");
    assert_eq!(
        (chained.temperature, chained.max_tokens),
        (0.25, 333),
        "a failover call without its own values uses the configured defaults"
    );
    let mut votes = b.requests();
    votes.sort_by(|x, y| x.model.cmp(&y.model));
    assert_eq!(
        (
            votes[0].model.as_str(),
            votes[0].temperature,
            votes[0].max_tokens
        ),
        ("mb", 0.25, 333)
    );
    assert_eq!(
        (
            votes[1].model.as_str(),
            votes[1].temperature,
            votes[1].max_tokens
        ),
        ("mb2", 1.5, 7),
        "an execution's own values still win"
    );
}

/// `CARGO_PKG_NAME` is set in the test process by cargo (and nextest), never in the file.
const PKG: &str = env!("CARGO_PKG_NAME");

#[tokio::test]
async fn env_in_loop_with_values_falls_back_to_the_process_environment() {
    let called = yaml::load_str(
        "$schema: workflow/v2.0\nname: callee\nversion: 1.0.0\ndescription: c\nexecution:\n  provider: mock\n  model: m\nsteps:\n  - {name: w, run: \"got {{ what }}\"}\n",
    )
    .unwrap();
    let mut lib = Library::new();
    lib.register(called);
    let root = yaml::load_str(
        r#"$schema: workflow/v2.0
name: envloops
version: 1.0.0
description: env in loop with values
execution:
  provider: mock
  model: m
env:
  MINE: from-file
steps:
  - name: each
    loop:
      mode: iterate
      items: [1]
      workflow: callee
      with: {what: "{{ env.CARGO_PKG_NAME }}/{{ env.MINE }}"}
loops:
  - name: again
    workflow: callee
    with: {what: "{{ env.CARGO_PKG_NAME }}/{{ env.MINE }}"}
    max_iterations: 1
    until: done
"#,
    )
    .unwrap();
    let s = WorkflowSet::from_library(root, &lib).unwrap();
    let r = run_on(&s, MockProvider::echo()).await.unwrap();
    let want = format!("got {PKG}/from-file");
    assert_eq!(
        r.step("each").unwrap().output.clone().unwrap(),
        serde_json::json!([want])
    );
    assert_eq!(
        r.step("again").unwrap().output.clone().unwrap()["output"],
        want
    );
}

#[tokio::test]
async fn steps_name_output_works_inside_a_step_loop() {
    let called = yaml::load_str(
        "$schema: workflow/v2.0\nname: callee\nversion: 1.0.0\ndescription: c\nexecution:\n  provider: mock\n  model: m\nsteps:\n  - {name: w, run: \"got {{ what }}\"}\n",
    )
    .unwrap();
    let mut lib = Library::new();
    lib.register(called);
    let root = yaml::load_str(
        r#"$schema: workflow/v2.0
name: outer
version: 1.0.0
description: steps.NAME.output in step loops
execution:
  provider: mock
  model: m
steps:
  - name: topic
    run: rust
  - name: own
    needs: [topic]
    run: "{{ item }} on {{ steps.topic.output }} = {{ topic }} ({{ steps['topic']['output'] | upper }}); plain steps.topic.output; {{ 'steps' }}"
    loop:
      mode: iterate
      items: [a, b]
  - name: called
    needs: [topic]
    loop:
      mode: iterate
      items: [c]
      workflow: callee
      with: {what: "{{ item }} {{ steps.topic.output }}"}
"#,
    )
    .unwrap();
    let s = WorkflowSet::from_library(root, &lib).unwrap();
    let engine = s
        .register(Engine::builder().provider("mock", MockProvider::echo()))
        .build()
        .unwrap();
    let r = engine
        .run_named(s.root_name(), s.run_options(""))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        r.step("own").unwrap().output.clone().unwrap(),
        serde_json::json!([
            "a on rust = rust (RUST); plain steps.topic.output; steps",
            "b on rust = rust (RUST); plain steps.topic.output; steps"
        ])
    );
    assert_eq!(
        r.step("called").unwrap().output.clone().unwrap(),
        serde_json::json!(["got c rust"])
    );
}

#[tokio::test]
async fn logging_and_no_color_are_accepted_and_change_nothing() {
    let base = format!(
        "{HEAD}execution:\n  provider: mock\n  model: m\nsteps:\n  - {{name: a, run: hi}}\n"
    );
    let with = base.replace(
        "  model: m\n",
        "  model: m\n  logging: noisy\n  no_color: true\n",
    );
    let (plain, quiet) = (set(&base), set(&with));
    for s in [&plain, &quiet] {
        let r = run_on(s, MockProvider::echo()).await.unwrap();
        assert_eq!(r.output_text(), Some("hi"));
    }
    // Still validated: a bad value is an error naming the field.
    let bad = yaml::load_str(&base.replace("  model: m\n", "  model: m\n  logging: loud\n"))
        .unwrap_err()
        .to_string();
    assert!(bad.contains("logging"), "{bad}");
}

#[tokio::test]
async fn embeddings_output_file_is_relative_to_the_workflow_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("emb.yaml");
    std::fs::write(
        &path,
        format!("{HEAD}execution:\n  provider: mock\n  model: m\nsteps:\n  - name: e\n    embeddings:\n      input: hello there\n      output_format: csv\n      output_file: out.csv\n"),
    )
    .unwrap();
    let s = WorkflowSet::load(&path).unwrap();
    let m = MockProvider::echo();
    let engine = s
        .register(
            Engine::builder()
                .provider("mock", m.clone())
                .embedding_provider("mock", m),
        )
        .build()
        .unwrap();
    engine
        .run_named(s.root_name(), s.run_options(""))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let written = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
    assert!(
        written.starts_with("input,index,tokens,text,d0,"),
        "{written}"
    );
    assert!(
        !Path::new("out.csv").exists(),
        "not in the working directory"
    );
}

#[tokio::test(start_paused = true)]
async fn steps_have_no_time_limit_unless_set_but_consensus_defaults_to_60s() {
    let slow = "rules:\n  - match: \"^slow\"\n    respond: late\n    latency: 2m\n";
    let text = format!(
        "{HEAD}execution:\n  provider: mock\n  model: m\n  on_error: continue\nsteps:\n  - {{name: a, run: slow}}\n  - name: v\n    consensus:\n      prompt: slow vote\n      executions:\n        - {{provider: mock, model: x}}\n        - {{provider: mock, model: y}}\n      require: majority\n"
    );
    let s = set(&text);
    let r = run_on(&s, MockProvider::from_yaml_str(slow).unwrap())
        .await
        .unwrap();
    assert_eq!(r.step_output("a"), Some("late"), "two minutes, no limit");
    let v = r.step("v").unwrap();
    assert_eq!(v.status, StepStatus::Failed);
    let e = v.error.clone().unwrap();
    assert!(e.contains("timed out after 60s"), "{e}");
}
