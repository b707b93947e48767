//! Every example in `fixtures/workflows/` runs on scripted mock providers, and its outputs,
//! the requests the models got (inheritance) and the step statuses are asserted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use flowloom_core::{StepStatus, WorkflowResult};
use flowloom_engine::yaml::{self, EffectiveConfig, LowerError, WorkflowSet};
use flowloom_engine::{Engine, EngineBuilder, RunError};
use flowloom_provider_mock::MockProvider;
use serde_json::{Value, json};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/workflows")
}

fn mock(name: &str, script: &str) -> MockProvider {
    MockProvider::from_yaml_str(script)
        .unwrap_or_else(|e| panic!("script for {name}: {e}"))
        .with_name(name)
}

async fn run_set(
    set: &WorkflowSet,
    builder: EngineBuilder,
    input: &str,
) -> Result<WorkflowResult, RunError> {
    let engine = set.register(builder).build().unwrap();
    engine
        .run_named(set.root_name(), set.run_options(input))
        .await
}

fn load(name: &str) -> WorkflowSet {
    WorkflowSet::load(fixtures().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_fixture_validates() {
    let mut n = 0;
    for e in std::fs::read_dir(fixtures()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let d = yaml::validate_file(&p);
            assert!(!d.has_errors(), "{}: {d}", p.display());
            n += 1;
        }
    }
    assert!(n >= 8, "{n} fixtures");
}

#[tokio::test]
async fn hello() {
    let set = load("hello.yaml");
    let m = MockProvider::echo();
    let r = run_set(&set, Engine::builder().provider("mock", m.clone()), "world")
        .await
        .unwrap();
    assert_eq!(r.output_text(), Some("Say hello to world"));
    let req = m.last_request().unwrap();
    assert_eq!(req.model, "gpt-4o-mini");
    assert_eq!(req.temperature, 0.7);
}

#[tokio::test]
async fn code_review_dag() {
    let set = load("code_review.yaml");
    let m = mock(
        "mock",
        r#"
rules:
  - match: "^Review this code"
    respond: "no bugs"
  - match: "^Scan for security"
    respond: "no vulnerabilities"
  - match: "^Check the style"
    respond: "style ok"
  - match: "^Summarize the review"
    respond: "LGTM"
"#,
    );
    let r = run_set(
        &set,
        Engine::builder().provider("mock", m.clone()),
        "fn main() {}",
    )
    .await
    .unwrap();
    assert_eq!(r.output_text(), Some("LGTM"));
    assert_eq!(r.step_output("initial_review"), Some("no bugs"));
    assert_eq!(r.step_output("security_scan"), Some("no vulnerabilities"));
    let reqs = m.requests();
    assert_eq!(reqs.len(), 4);
    let find = |p: &str| {
        reqs.iter()
            .find(|r| r.prompt().unwrap().starts_with(p))
            .unwrap()
            .clone()
    };
    let first = find("Review this code");
    assert!(
        first.prompt().unwrap().contains("(strict style)"),
        "env is interpolated"
    );
    assert_eq!(first.temperature, 0.7);
    assert_eq!(find("Scan for security").temperature, 0.2, "step override");
    assert_eq!(
        find("Check the style").model,
        "gpt-4o-mini",
        "step model override"
    );
    let summary = find("Summarize the review");
    assert_eq!(summary.max_tokens, 300);
    assert_eq!(summary.model, "gpt-4o");
    assert!(summary.prompt().unwrap().contains("Bugs: no bugs"));
    assert!(
        summary
            .prompt()
            .unwrap()
            .contains("Security: no vulnerabilities")
    );
    assert!(summary.prompt().unwrap().contains("Style: style ok"));
    // The summary is last: it needs security_scan and style_check.
    assert!(
        reqs.last()
            .unwrap()
            .prompt()
            .unwrap()
            .starts_with("Summarize")
    );
}

fn voters(a: &str, o: &str, d: &str) -> (MockProvider, MockProvider, MockProvider, EngineBuilder) {
    let ma = mock(
        "anthropic",
        &format!(
            "default: {{ respond: \"{a}\" }}\nrules:\n  - match: \"^Write release notes\"\n    respond: \"notes\"\n"
        ),
    );
    let mo = mock("openai", &format!("default: {{ {o} }}\n"));
    let md = mock("deepseek", &format!("default: {{ {d} }}\n"));
    let b = Engine::builder()
        .provider("anthropic", ma.clone())
        .provider("openai", mo.clone())
        .provider("deepseek", md.clone());
    (ma, mo, md, b)
}

#[tokio::test]
async fn consensus_gate_passes_two_of_three_and_records_every_vote() {
    let set = load("consensus_gate.yaml");
    let (ma, mo, md, b) = voters("**YES**", "respond: \"Yes.\"", "respond: \"NO\"");
    let r = run_set(&set, b, "x = 1").await.unwrap();
    let gate = r.step("gate").unwrap().output.clone().unwrap();
    assert_eq!(gate["passed"], json!(true));
    assert_eq!(gate["normalized"], json!("yes"));
    assert_eq!(gate["answer"], json!("**YES**"));
    assert_eq!(gate["agreeing"], json!(2));
    assert_eq!(gate["total"], json!(3));
    assert_eq!(gate["require"], json!("2/3"));
    assert_eq!(gate["tie"], json!(false));
    assert!((gate["agreement"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);
    let ex = gate["executions"].as_array().unwrap();
    assert_eq!(ex.len(), 3);
    assert_eq!(ex[1]["provider"], json!("openai"));
    assert_eq!(ex[1]["model"], json!("gpt-4o"));
    assert_eq!(ex[1]["answer"], json!("Yes."));
    assert_eq!(ex[2]["normalized"], json!("no"));
    assert!(ex[0]["usage"]["total_tokens"].as_u64().unwrap() > 0);
    // Inheritance: the step's 0.2 reaches executions 1 and 3; execution 2 overrides 0.1.
    assert_eq!(ma.requests()[0].temperature, 0.2);
    assert_eq!(mo.last_request().unwrap().temperature, 0.1);
    assert_eq!(md.last_request().unwrap().temperature, 0.2);
    assert_eq!(md.last_request().unwrap().model, "deepseek-chat");
    // The gated step ran.
    assert_eq!(r.output_text(), Some("notes"));
}

#[tokio::test]
async fn consensus_gate_skips_release_notes_when_the_vote_says_no() {
    let set = load("consensus_gate.yaml");
    let (_, _, _, b) = voters("NO", "respond: \"no\"", "respond: \"YES\"");
    let r = run_set(&set, b, "rm -rf /").await.unwrap();
    assert_eq!(
        r.step("gate").unwrap().output.as_ref().unwrap()["normalized"],
        json!("no")
    );
    assert_eq!(r.step("release_notes").unwrap().status, StepStatus::Skipped);
}

#[tokio::test(start_paused = true)]
async fn consensus_with_too_few_successes_fails_the_step_with_the_reason() {
    let set = load("consensus_gate.yaml");
    let (_, _, _, b) = voters("YES", "error: server", "error: rate_limit");
    let err = run_set(&set, b, "x").await.unwrap_err();
    let r = err.result().unwrap();
    let gate = r.step("gate").unwrap();
    assert_eq!(gate.status, StepStatus::Failed);
    let why = gate.error.clone().unwrap();
    assert!(why.contains("only 1 of 3 executions succeeded"), "{why}");
    assert!(why.contains("`2/3` needs 2"), "{why}");
    assert!(why.contains("openai/gpt-4o"), "{why}");
}

#[tokio::test(start_paused = true)]
async fn consensus_executions_share_one_timeout() {
    let set = load("consensus_gate.yaml");
    let (_, _, _, b) = voters("YES", "respond: \"YES\"", "respond: \"NO\", latency: 1h");
    let r = run_set(&set, b, "x").await.unwrap();
    let gate = r.step("gate").unwrap().output.clone().unwrap();
    assert_eq!(gate["passed"], json!(true));
    let slow = &gate["executions"][2];
    assert!(
        slow["error"].as_str().unwrap().contains("timed out"),
        "{slow}"
    );
    assert!(slow["answer"].is_null());
}

#[tokio::test(start_paused = true)]
async fn iterate_loops_keep_item_order() {
    let set = load("iterate_topics.yaml");
    let m = mock(
        "mock",
        r#"
rules:
  - match: "rust"
    respond: "Rust: fast"
    latency: 30ms
  - match: "yaml"
    respond: "YAML: data"
  - match: "tokio"
    respond: "Tokio: async"
    latency: 10ms
"#,
    );
    let r = run_set(&set, Engine::builder().provider("mock", m.clone()), "")
        .await
        .unwrap();
    let slogans = r.step("slogans").unwrap().output.clone().unwrap();
    assert_eq!(slogans, json!(["Rust: fast", "YAML: data", "Tokio: async"]));
    assert!(
        m.requests()
            .iter()
            .any(|q| q.prompt().unwrap() == "Write a slogan about yaml (item 2 of 3)"),
        "item and loop variables reach the prompt"
    );
    let summaries = r.step("summaries").unwrap().output.clone().unwrap();
    assert_eq!(
        summaries,
        json!([
            "Summarize (brief): ownership",
            "Summarize (brief): borrowing"
        ])
    );
}

#[tokio::test]
async fn template_composition_passes_with_values_as_variables() {
    let set = load("composed.yaml");
    assert_eq!(set.names(), vec!["composed", "summarize_text"]);
    let m = MockProvider::echo();
    let r = run_set(&set, Engine::builder().provider("mock", m.clone()), "rust")
        .await
        .unwrap();
    assert_eq!(
        r.output_text(),
        Some("Summarize (one line): Draft an article about rust")
    );
    // The called workflow used its own execution model; the template step's own
    // `temperature` was passed through to it.
    let called = m.last_request().unwrap();
    assert_eq!(called.model, "gpt-4o-mini");
    assert_eq!(called.temperature, 0.1);
    assert_eq!(
        m.requests()[0].temperature,
        0.7,
        "the caller's own step keeps the default"
    );
}

#[tokio::test]
async fn embeddings_chunk_embed_and_write_outputs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::copy(
        fixtures().join("embeddings.yaml"),
        dir.path().join("embeddings.yaml"),
    )
    .unwrap();
    std::fs::copy(
        fixtures().join("data/notes.txt"),
        dir.path().join("data/notes.txt"),
    )
    .unwrap();
    let set = WorkflowSet::load(dir.path().join("embeddings.yaml")).unwrap();
    let m = MockProvider::echo();
    let b = Engine::builder()
        .provider("mock", m.clone())
        .embedding_provider("mock", m.clone());
    let r = run_set(&set, b, "").await.unwrap();
    let docs = r.step("embed_docs").unwrap().output.clone().unwrap();
    let chunks = docs["chunks"].as_array().unwrap();
    // "Rust is fast. Rust is safe." is 8 tokens with the joining space: 2 chunks of 4; and 1.
    let texts: Vec<&str> = chunks.iter().map(|c| c["text"].as_str().unwrap()).collect();
    assert_eq!(
        texts,
        vec!["Rust is fast.", "Rust is safe.", "YAML is data."]
    );
    assert_eq!(chunks[2]["input"], json!(1));
    assert!(chunks.iter().all(|c| c["tokens"].as_u64().unwrap() <= 8));
    assert!(
        chunks
            .iter()
            .all(|c| c["embedding"].as_array().unwrap().len() == 4)
    );
    assert_eq!(docs["dimensions"], json!(4));
    assert_eq!(docs["model"], json!("text-embedding-3-small"));
    let reqs = m.embedding_requests();
    assert_eq!(reqs[0].dimensions, Some(4));
    assert_eq!(reqs[0].input.len(), 3);
    // The file: fixed 16-token windows with 4 tokens of overlap, CSV written next to the file.
    let csv = r.step("embed_file").unwrap().output.clone().unwrap();
    let csv = csv.as_str().unwrap();
    let written = std::fs::read_to_string(dir.path().join("notes-embeddings.csv")).unwrap();
    assert_eq!(csv, written);
    let mut lines = written.lines();
    assert_eq!(lines.next(), Some("input,index,tokens,text,d0,d1,d2"));
    // Records start with `input,index,tokens,"` (a quoted text may hold line breaks).
    let rows: Vec<&str> = lines
        .filter(|l| l.starts_with("0,") && l.split(',').nth(3).is_some_and(|t| t.starts_with('"')))
        .collect();
    let total =
        yaml::count_tokens(&std::fs::read_to_string(dir.path().join("data/notes.txt")).unwrap())
            .unwrap();
    assert_eq!(rows.len(), (total - 16).div_ceil(12) + 1, "{written}");
}

#[tokio::test(start_paused = true)]
async fn failover_moves_to_the_backup_with_its_own_settings() {
    let set = load("failover.yaml");
    assert_eq!(
        set.providers().into_iter().collect::<Vec<_>>(),
        vec!["backup", "primary"]
    );
    let primary = mock("primary", "default: { error: server, status: 503 }\n");
    let backup = mock("backup", "default: { respond: \"from the backup\" }\n");
    let b = Engine::builder()
        .provider("primary", primary.clone())
        .provider("backup", backup.clone());
    let r = run_set(&set, b, "why?").await.unwrap();
    assert_eq!(r.output_text(), Some("from the backup"));
    assert_eq!(primary.last_request().unwrap().model, "big-model");
    assert_eq!(
        primary.last_request().unwrap().temperature,
        0.7,
        "inherited from execution"
    );
    let br = backup.last_request().unwrap();
    assert_eq!(br.model, "small-model");
    assert_eq!(br.temperature, 0.3, "the chain entry's own temperature");
    assert_eq!(br.prompt(), Some("Answer briefly: why?"));
    assert_eq!(r.metrics.llm_calls, 2);
    // Every provider down: the step fails naming each.
    let b = Engine::builder()
        .provider("primary", primary)
        .provider("backup", mock("backup", "default: { error: server }\n"));
    let err = run_set(&set, b, "why?").await.unwrap_err();
    let msg = err
        .result()
        .unwrap()
        .step("answer")
        .unwrap()
        .error
        .clone()
        .unwrap();
    assert!(
        msg.contains("all 2 providers of the failover chain failed"),
        "{msg}"
    );
}

#[tokio::test]
async fn conditional_step_runs_only_its_branch() {
    let set = load("conditional.yaml");
    let m = mock(
        "mock",
        r#"
rules:
  - match: "QUESTION or STATEMENT: .*\\?$"
    respond: "QUESTION"
  - match: "QUESTION or STATEMENT"
    respond: "STATEMENT"
  - match: "^Answer: "
    respond: "an answer"
  - match: "^Acknowledge: "
    respond: "noted"
"#,
    );
    let r = run_set(
        &set,
        Engine::builder().provider("mock", m.clone()),
        "What is Rust?",
    )
    .await
    .unwrap();
    assert_eq!(r.step_output("answer"), Some("an answer"));
    assert_eq!(r.step("acknowledge").unwrap().status, StepStatus::Skipped);
    let r = run_set(&set, Engine::builder().provider("mock", m), "Rust is nice.")
        .await
        .unwrap();
    assert_eq!(r.step("answer").unwrap().status, StepStatus::Skipped);
    assert_eq!(r.step_output("acknowledge"), Some("noted"));
}

#[tokio::test]
async fn refine_loop_runs_until_the_judge_says_yes() {
    let set = load("refine_loop.yaml");
    let m = MockProvider::echo();
    let judge = mock(
        "judge",
        "rules:\n  - sequence:\n      - { respond: \"NO\" }\n      - { respond: \"No.\" }\n      - { respond: \"YES\" }\n",
    );
    let b = Engine::builder()
        .provider("mock", m.clone())
        .provider("judge", judge.clone());
    let r = run_set(&set, b, "tides").await.unwrap();
    let out = r.step("refine").unwrap().output.clone().unwrap();
    assert_eq!(out["iterations"], json!(3));
    assert_eq!(out["until_met"], json!(true));
    let drafts = out["drafts"].as_array().unwrap();
    assert_eq!(drafts.len(), 3);
    assert_eq!(
        drafts[0],
        json!("Improve round 1: Write a first draft about tides | previous: ")
    );
    // loop.last.output feeds the next round.
    assert!(
        drafts[1]
            .as_str()
            .unwrap()
            .ends_with("| previous: Improve round 1: Write a first draft about tides | previous: ")
    );
    assert_eq!(out["output"], drafts[2]);
    let jr = judge.requests();
    assert_eq!(jr.len(), 3);
    assert!(
        jr.iter()
            .all(|q| q.temperature == 0.0 && q.model == "judge-model")
    );
    assert!(
        jr[0]
            .prompt()
            .unwrap()
            .contains("Condition: The draft is final")
    );
}

#[tokio::test]
async fn loops_never_pass_max_iterations() {
    let set = load("refine_loop.yaml");
    let judge = mock("judge", "default: { respond: \"NO\" }\n");
    let b = Engine::builder()
        .provider("mock", MockProvider::echo())
        .provider("judge", judge.clone());
    let r = run_set(&set, b, "tides").await.unwrap();
    let out = r.step("refine").unwrap().output.clone().unwrap();
    assert_eq!(out["iterations"], json!(5));
    assert_eq!(out["until_met"], json!(false));
    assert_eq!(judge.request_count(), 5);
}

#[test]
fn mcp_servers_validate_but_do_not_run() {
    let path = fixtures().join("mcp_tools.yaml");
    let d = yaml::validate_file(&path);
    assert!(!d.has_errors(), "{d}");
    assert!(
        d.to_string().contains("not supported yet"),
        "validate warns: {d}"
    );
    let err = WorkflowSet::load(&path).unwrap_err();
    assert!(matches!(err, LowerError::ToolsUnsupported { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("step `list_files` needs MCP servers (filesystem)"),
        "{msg}"
    );
    assert!(
        msg.contains("tool execution from MCP servers is not supported yet"),
        "{msg}"
    );
}

#[test]
fn template_cycles_are_rejected_before_running() {
    let dir = tempfile::tempdir().unwrap();
    let wf = |name: &str, calls: &str| {
        format!(
            "$schema: workflow/v2.0\nname: {name}\nversion: 1.0.0\ndescription: d\nexecution: {{provider: mock, model: m}}\nsteps:\n  - name: s\n    template:\n      name: {calls}\n"
        )
    };
    std::fs::write(dir.path().join("ping.yaml"), wf("ping", "pong")).unwrap();
    std::fs::write(dir.path().join("pong.yaml"), wf("pong", "ping")).unwrap();
    let err = WorkflowSet::load(dir.path().join("ping.yaml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("template calls form a cycle: ping → pong → ping"),
        "{err}"
    );
    assert!(err.contains("pong.yaml:9:"), "located at the call: {err}");
    let d = yaml::validate_file(dir.path().join("ping.yaml"));
    assert!(d.to_string().contains("cycle"), "{d}");
    // An unknown workflow is named with a suggestion.
    std::fs::write(dir.path().join("lone.yaml"), wf("lone", "pongg")).unwrap();
    let d = yaml::validate_file(dir.path().join("lone.yaml")).to_string();
    assert!(d.contains("workflow `pongg` not found"), "{d}");
    assert!(d.contains("did you mean `pong`?"), "{d}");
    // A file found by name must carry that name.
    std::fs::write(dir.path().join("other.yaml"), wf("not_other", "ping")).unwrap();
    std::fs::write(
        dir.path().join("calls_other.yaml"),
        wf("calls_other", "other"),
    )
    .unwrap();
    let d = yaml::validate_file(dir.path().join("calls_other.yaml")).to_string();
    assert!(
        d.contains("found for workflow `other` but names itself `not_other`"),
        "{d}"
    );
    assert!(d.contains("other.yaml:2:1"), "{d}");
}

/// The spec's "Property Inheritance Flow" example, and its effective configurations.
#[test]
fn effective_configuration_matches_the_spec_examples() {
    let text = r#"
$schema: workflow/v2.0
name: example
version: 1.0.0
description: Inheritance example
execution:
  provider: anthropic
  model: claude-sonnet-4
  temperature: 0.7
  servers: [filesystem]
  skills: [docx, xlsx]
steps:
  - name: step1
    run: Analyze
  - name: step2
    temperature: 0.3
    run: Refine
  - name: step3
    consensus:
      prompt: Validate
      executions:
        - provider: anthropic
          model: claude-sonnet-4
        - provider: openai
          model: gpt-4o
          temperature: 0.1
      require: unanimous
"#;
    let wf = yaml::load_str(text).unwrap();
    let d = &wf.definition;
    let view = |c: &EffectiveConfig| json!({"provider": c.provider, "model": c.model, "temperature": c.temperature, "servers": c.servers});
    let servers = json!(["filesystem"]);
    assert_eq!(
        view(&wf.effective_config("step1").unwrap()),
        json!({"provider": "anthropic", "model": "claude-sonnet-4", "temperature": 0.7, "servers": servers})
    );
    assert_eq!(
        view(&wf.effective_config("step2").unwrap()),
        json!({"provider": "anthropic", "model": "claude-sonnet-4", "temperature": 0.3, "servers": servers})
    );
    let step3 = &d.steps[2];
    let c = step3.consensus.as_ref().unwrap();
    let e1 = EffectiveConfig::of_consensus(&d.execution, step3, &c.executions[0]);
    let e2 = EffectiveConfig::of_consensus(&d.execution, step3, &c.executions[1]);
    assert_eq!(
        view(&e1),
        json!({"provider": "anthropic", "model": "claude-sonnet-4", "temperature": 0.7, "servers": servers})
    );
    assert_eq!(
        view(&e2),
        json!({"provider": "openai", "model": "gpt-4o", "temperature": 0.1, "servers": servers})
    );
    assert_eq!(e1.skills, vec!["docx", "xlsx"]);
    // The consensus example of the spec: the step's 0.2 reaches executions without their own.
    let wf = yaml::load_str(&text.replace(
        "  - name: step3\n",
        "  - name: step3\n    temperature: 0.2\n",
    ))
    .unwrap();
    let d = &wf.definition;
    let s3 = &d.steps[2];
    let ex = &s3.consensus.as_ref().unwrap().executions;
    assert_eq!(
        EffectiveConfig::of_consensus(&d.execution, s3, &ex[0]).temperature,
        Some(0.2)
    );
    assert_eq!(
        EffectiveConfig::of_consensus(&d.execution, s3, &ex[1]).temperature,
        Some(0.1)
    );
}

#[test]
fn graph_and_providers_for_the_cli() {
    let wf = yaml::load_file(fixtures().join("code_review.yaml")).unwrap();
    let g = wf.graph();
    let edges: Vec<(String, String, bool)> = g
        .edges
        .iter()
        .map(|e| (e.from.clone(), e.to.clone(), e.explicit))
        .collect();
    assert_eq!(
        edges,
        vec![
            ("initial_review".into(), "security_scan".into(), true),
            ("security_scan".into(), "summary".into(), true),
            ("style_check".into(), "summary".into(), true),
        ]
    );
    let m = g.to_mermaid();
    assert!(m.starts_with("flowchart TD\n"), "{m}");
    assert!(m.contains("security_scan --> summary"), "{m}");
    let dot = g.to_dot();
    assert!(dot.contains("\"style_check\" -> \"summary\";"), "{dot}");
    let cg = yaml::load_file(fixtures().join("consensus_gate.yaml")).unwrap();
    assert_eq!(
        cg.providers().into_iter().collect::<Vec<_>>(),
        vec!["anthropic", "deepseek", "openai"]
    );
    let loops = yaml::load_file(fixtures().join("refine_loop.yaml")).unwrap();
    assert!(
        loops
            .graph()
            .to_mermaid()
            .contains("first_draft -.-> refine")
    );
    let _: Value = serde_json::to_value(&g).unwrap();
}
