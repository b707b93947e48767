//! The `flowloom` binary, run as a subprocess: on the mock provider, and on the testkit's mock
//! OpenAI-compatible server through the OpenAI provider.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::Duration;

use assert_cmd::Command;
use flowloom_core::{StepStatus, WorkflowResult, WorkflowStatus};
use flowloom_testkit::server::{Fault, MockOpenAiServer, mock_tokens};
use predicates::prelude::*;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn example(name: &str) -> PathBuf {
    root().join("fixtures/workflows").join(name)
}

/// Variables of the caller's environment that would change what the command does.
const ENV: [&str; 8] = [
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "FLOWLOOM_PROVIDERS",
    "FLOWLOOM_LOG_LEVEL",
    "FLOWLOOM_LOG_FORMAT",
    "FLOWLOOM_CONFIG",
    "FLOWLOOM_MAX_RETRIES",
];

/// The binary with a clean environment, run from `tests/data` (which has no flowloom.yaml).
fn flowloom() -> Command {
    let mut c = Command::cargo_bin("flowloom").unwrap();
    for v in ENV {
        c.env_remove(v);
    }
    c.current_dir(data("")).timeout(Duration::from_secs(60));
    c
}

fn result_of(stdout: &[u8]) -> WorkflowResult {
    serde_json::from_slice(stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not a WorkflowResult ({e}):\n{}",
            String::from_utf8_lossy(stdout)
        )
    })
}

// ---------------------------------------------------------------------------------------
// run: exit 0

#[test]
fn run_on_the_mock_prints_the_final_output() {
    flowloom()
        .args(["run"])
        .arg(example("hello.yaml"))
        .args(["--provider", "mock", "--input", "Rust workflows"])
        .assert()
        .code(0)
        .stdout("Say hello to Rust workflows\n")
        .stderr(predicate::str::contains("✓ greet COMPLETED"))
        .stderr(predicate::str::contains("total  COMPLETED"));
}

#[test]
fn json_is_the_workflow_result_with_the_data_model_fields() {
    let out = flowloom()
        .arg("run")
        .arg(data("three.yaml"))
        .args(["--provider", "mock", "--input", "hi", "--var", "lang=rust"])
        .args(["--json", "--quiet"])
        .assert()
        .code(0)
        .stderr("")
        .get_output()
        .stdout
        .clone();
    let raw: Value = serde_json::from_slice(&out).unwrap();
    for field in [
        "workflow_id",
        "workflow_name",
        "correlation_id",
        "status",
        "output",
        "error",
        "steps",
        "metrics",
        "created_at",
        "completed_at",
    ] {
        assert!(raw.get(field).is_some(), "no `{field}` in {raw:#}");
    }
    assert_eq!(raw["status"], "COMPLETED");
    let r = result_of(&out);
    assert_eq!(r.workflow_name, "three");
    assert_eq!(r.output_text(), Some("C: B: A rust: hi"));
    let names: Vec<&str> = r.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(r.steps.iter().all(|s| s.status == StepStatus::Completed));
    assert_eq!(r.metrics.llm_calls, 3);
    assert_eq!(r.metrics.steps_completed, 3);
    let total = r
        .metrics
        .token_usage_total
        .expect("the echo mock reports usage");
    let summed: u64 = r
        .steps
        .iter()
        .map(|s| s.token_usage.as_ref().unwrap().total_tokens)
        .sum();
    assert_eq!(total.total_tokens, summed);
    assert!(r.completed_at.is_some());
}

#[test]
fn output_writes_the_result_and_input_comes_from_a_file_or_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "from a file").unwrap();
    let saved = dir.path().join("result.json");
    flowloom()
        .arg("run")
        .arg(data("three.yaml"))
        .args(["--provider", "mock", "--var", "lang=x", "-q"])
        .arg("--input-file")
        .arg(&input)
        .arg("--output")
        .arg(&saved)
        .assert()
        .code(0)
        .stdout("C: B: A x: from a file\n");
    let r = result_of(&std::fs::read(&saved).unwrap());
    assert_eq!(r.output_text(), Some("C: B: A x: from a file"));

    flowloom()
        .arg("run")
        .arg(data("three.yaml"))
        .args(["--provider", "mock", "--var", "lang=x", "-q"])
        .write_stdin("from stdin")
        .assert()
        .code(0)
        .stdout("C: B: A x: from stdin\n");
}

#[test]
fn on_a_terminal_progress_is_live_and_ends_with_each_step_line() {
    // `script` (util-linux) gives the command a pseudo-terminal; skip where it is missing.
    if StdCommand::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` command to make a terminal");
        return;
    }
    let cmd = format!(
        "{} run {} --mock-script {} --input x --var lang=x",
        env!("CARGO_BIN_EXE_flowloom"),
        data("three.yaml").display(),
        data("fail.mock.yaml").display()
    );
    let out = StdCommand::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .current_dir(data(""))
        .env_remove("FLOWLOOM_LOG_LEVEL")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    // Lines drawn and redrawn in place, ending as one line per step.
    assert!(text.contains("\u{1b}[2K"), "no live redraw in {text:?}");
    assert!(text.contains("✓ a    COMPLETED"), "{text}");
    assert!(text.contains("✗ b    FAILED"), "{text}");
    assert!(text.contains("Incorrect API key provided"), "{text}");
    assert!(text.contains("total  FAILED"), "{text}");
}

// ---------------------------------------------------------------------------------------
// run: exit 1, 3, 130

#[test]
fn a_failing_step_exits_1_and_names_the_step() {
    let out = flowloom()
        .arg("run")
        .arg(data("three.yaml"))
        .arg("--mock-script")
        .arg(data("fail.mock.yaml"))
        .args(["--input", "hi", "--var", "lang=x", "--json"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("✗ b FAILED"))
        .stderr(predicate::str::contains("Incorrect API key provided"))
        .get_output()
        .stdout
        .clone();
    let r = result_of(&out);
    assert_eq!(r.status, WorkflowStatus::Failed);
    assert_eq!(r.failed_step.as_deref(), Some("b"));
    assert_eq!(r.step("a").unwrap().status, StepStatus::Completed);
    assert_eq!(r.step("b").unwrap().status, StepStatus::Failed);
    assert_ne!(r.step("c").unwrap().status, StepStatus::Completed);
}

#[test]
fn a_timeout_exits_3_with_the_partial_result() {
    let out = flowloom()
        .arg("run")
        .arg(data("three.yaml"))
        .arg("--mock-script")
        .arg(data("slow.mock.yaml"))
        .args(["--input", "hi", "--var", "lang=x", "--json", "-q"])
        .args(["--timeout", "300ms"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("TIMEOUT"))
        .get_output()
        .stdout
        .clone();
    let r = result_of(&out);
    assert_eq!(r.status, WorkflowStatus::Timeout);
    assert_eq!(r.step("c").unwrap().status, StepStatus::Pending);
}

#[test]
fn sigint_cancels_gracefully_exits_130_and_prints_the_partial_result() {
    let mut cmd = StdCommand::new(env!("CARGO_BIN_EXE_flowloom"));
    for v in ENV {
        cmd.env_remove(v);
    }
    let mut child = cmd
        .arg("run")
        .arg(data("three.yaml"))
        .arg("--mock-script")
        .arg(data("slow.mock.yaml"))
        .args(["--input", "hi", "--var", "lang=x", "--json"])
        .current_dir(data(""))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first step is in flight (its call takes 1.5 s), then interrupt.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the run ended before step `a` started:\n{seen}"
        );
        seen.push_str(&line);
        if line.contains("a started") {
            break;
        }
    }
    let status = StdCommand::new("kill")
        .args(["-s", "INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "stderr:\n{seen}{rest}");
    assert!(rest.contains("interrupted"), "{rest}");
    let r = result_of(&out.stdout);
    assert_eq!(r.status, WorkflowStatus::Cancelled);
    // The call in flight finished and was counted; nothing started after it.
    assert_eq!(r.step("a").unwrap().status, StepStatus::Completed);
    assert_eq!(r.step("a").unwrap().output, Some("slow answer".into()));
    assert_eq!(r.step("b").unwrap().status, StepStatus::Pending);
    assert_eq!(r.step("c").unwrap().status, StepStatus::Pending);
    assert_eq!(r.metrics.llm_calls, 1);
}

// ---------------------------------------------------------------------------------------
// run: exit 2

#[test]
fn bad_var_syntax_exits_2_with_a_clear_message() {
    flowloom()
        .arg("run")
        .arg(example("hello.yaml"))
        .args(["--provider", "mock", "--input", "x", "--var", "novalue"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains(
            "invalid --var \"novalue\": expected KEY=VALUE",
        ));
}

#[test]
fn bad_arguments_exit_2() {
    flowloom()
        .args(["run", "x.yaml", "--timeout", "soon"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("30s"));
    flowloom()
        .args(["run", "x.yaml", "--input", "a", "--input-file", "b"])
        .assert()
        .code(2);
    flowloom()
        .arg("run")
        .arg(example("hello.yaml"))
        .args(["--provider", "openai", "--mock-script"])
        .arg(data("slow.mock.yaml"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--mock-script runs on the mock provider",
        ));
    flowloom()
        .args(["run", "no-such-file.yaml", "--provider", "mock"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no-such-file.yaml"));
}

#[test]
fn an_invalid_workflow_exits_2_with_located_problems() {
    flowloom()
        .arg("run")
        .arg(root().join("tests/broken_workflows/05-unknown-field-step.yaml"))
        .args(["--provider", "mock", "--input", "x"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "05-unknown-field-step.yaml:12:5: error: unknown field `max_token`",
        ))
        .stderr(predicate::str::contains("did you mean `max_tokens`?"));
}

#[test]
fn an_unconfigured_provider_exits_2_listing_the_configured_ones() {
    flowloom()
        .arg("run")
        .arg(data("unconfigured.yaml"))
        .args(["--input", "x"])
        .env("OPENAI_API_KEY", "sk-test")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("`mistral` has no configuration"))
        .stderr(predicate::str::contains(
            "anthropic, deepseek, gemini, mock, ollama, openai, openrouter",
        ));
}

#[test]
fn no_key_and_no_provider_names_both_ways_out() {
    flowloom()
        .arg("run")
        .arg(data("three.yaml"))
        .args(["--input", "x", "--var", "lang=x"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("OPENAI_API_KEY is not set"))
        .stderr(predicate::str::contains("set OPENAI_API_KEY"))
        .stderr(predicate::str::contains("--provider mock"));
}

#[test]
fn a_broken_mock_script_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("bad.mock.yaml");
    std::fs::write(&script, "rules:\n  - match: x\n    respnd: y\n").unwrap();
    flowloom()
        .arg("run")
        .arg(example("hello.yaml"))
        .arg("--mock-script")
        .arg(&script)
        .args(["--input", "x"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot use the mock script"));
}

// ---------------------------------------------------------------------------------------
// run against the testkit's mock OpenAI-compatible server

fn run_blocking(mut cmd: Command) -> std::process::Output {
    cmd.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_calls_go_to_openai_base_url_with_the_key() {
    let server = MockOpenAiServer::start().await.unwrap();
    let mut cmd = flowloom();
    cmd.arg("run")
        .arg(data("three.yaml"))
        .args(["--input", "hello there", "--var", "lang=go", "--json", "-q"])
        .env("OPENAI_API_KEY", "sk-cli-test")
        .env("OPENAI_BASE_URL", server.base_url());
    let out = tokio::task::spawn_blocking(move || run_blocking(cmd))
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = result_of(&out.stdout);
    // The server echoes the last user message.
    assert_eq!(r.output_text(), Some("C: B: A go: hello there"));
    let calls = server.requests_to("/v1/chat/completions");
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].header("authorization"), Some("Bearer sk-cli-test"));
    let body = calls[0].body.as_ref().unwrap();
    assert_eq!(body["model"], "gpt-4o-mini");
    // Usage as the server reported it, per step.
    let a = r.step("a").unwrap().token_usage.clone().unwrap();
    assert_eq!(a.completion_tokens, mock_tokens("A go: hello there"));
    assert_eq!(a.provider, "openai");
    // The key appears nowhere in what the command printed.
    assert!(!String::from_utf8_lossy(&out.stdout).contains("sk-cli-test"));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("sk-cli-test"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_file_routes_a_provider_to_its_endpoint_and_key() {
    let server = MockOpenAiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flowloom.yaml");
    std::fs::write(
        &file,
        format!(
            "providers:\n  anthropic:\n    base_url: {}\n    api_key_env: CLI_TEST_KEY\n",
            server.base_url()
        ),
    )
    .unwrap();
    let mut cmd = flowloom();
    cmd.arg("run")
        .arg(data("anthropic.yaml"))
        .args(["--input", "why?", "-q", "--model", "gpt-4o"])
        .arg("--providers")
        .arg(&file)
        .env("CLI_TEST_KEY", "sk-anthropic-test");
    let out = tokio::task::spawn_blocking(move || run_blocking(cmd))
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Answer: why?\n");
    let req = server.last_request().unwrap();
    assert_eq!(
        req.header("authorization"),
        Some("Bearer sk-anthropic-test")
    );
    // --model replaced the workflow's model in the request sent.
    assert_eq!(req.body.unwrap()["model"], "gpt-4o");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_that_is_not_retried_fails_the_run_with_exit_1() {
    let server = MockOpenAiServer::start().await.unwrap();
    server.push_fault(Fault::status(401));
    let mut cmd = flowloom();
    cmd.arg("run")
        .arg(example("hello.yaml"))
        .args(["--provider", "openai", "--input", "x", "--json", "-q"])
        .env("OPENAI_API_KEY", "sk-wrong")
        .env("OPENAI_BASE_URL", server.base_url());
    let out = tokio::task::spawn_blocking(move || run_blocking(cmd))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let r = result_of(&out.stdout);
    assert_eq!(r.status, WorkflowStatus::Failed);
    assert_eq!(r.failed_step.as_deref(), Some("greet"));
    assert_eq!(server.request_count(), 1);
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// validate, graph, schema, estimate

fn examples() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("fixtures/workflows"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn validate_accepts_every_example_workflow() {
    let files = examples();
    assert!(files.len() >= 8);
    let out = flowloom()
        .args(["validate", "--provider", "mock"])
        .args(&files)
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok: ")).count(),
        files.len()
    );
}

#[test]
fn validate_reports_every_broken_file_with_a_location() {
    let dir = root().join("tests/broken_workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 30);
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let out = flowloom()
            .args(["validate", "--provider", "mock"])
            .arg(f)
            .assert()
            .code(2)
            .get_output()
            .clone();
        let err = String::from_utf8_lossy(&out.stderr);
        let located = err.lines().any(|l| {
            l.find(&name).is_some_and(|i| {
                let rest = &l[i + name.len()..];
                let mut parts = rest.splitn(4, ':');
                parts.next() == Some("")
                    && parts.next().is_some_and(|n| n.parse::<usize>().is_ok())
                    && parts.next().is_some_and(|n| n.parse::<usize>().is_ok())
                    && parts.next().is_some_and(|m| m.starts_with(" error:"))
            })
        });
        assert!(located, "{name}: no `file:line:col: error:` line in\n{err}");
        assert!(err.contains(&format!("invalid: {}", f.display())), "{err}");
    }
}

#[test]
fn validate_reports_every_file_and_exits_2_if_any_is_broken() {
    flowloom()
        .args(["validate", "--provider", "mock"])
        .arg(example("hello.yaml"))
        .arg(root().join("tests/broken_workflows/08-cycle.yaml"))
        .arg(root().join("tests/broken_workflows/09-unknown-needs.yaml"))
        .assert()
        .code(2)
        .stdout(predicate::str::contains("ok: "))
        .stderr(predicate::str::contains("08-cycle.yaml:"))
        .stderr(predicate::str::contains("09-unknown-needs.yaml:"))
        .stderr(predicate::str::contains("1 of 3 files valid"));
}

#[test]
fn validate_checks_provider_names_against_the_configuration() {
    flowloom()
        .arg("validate")
        .arg(data("unconfigured.yaml"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "unconfigured.yaml:8:15: error: provider `mistral` has no configuration",
        ));
    let out = flowloom()
        .args(["validate", "--json"])
        .arg(data("unconfigured.yaml"))
        .arg(example("hello.yaml"))
        .assert()
        .code(2)
        .get_output()
        .stdout
        .clone();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v[0]["valid"], false);
    assert_eq!(v[0]["diagnostics"][0]["location"]["line"], 8);
    assert_eq!(v[1]["valid"], true);
}

#[test]
fn the_example_providers_file_loads_and_extends_the_builtins() {
    flowloom()
        .arg("--providers")
        .arg(root().join("fixtures/flowloom.yaml"))
        .arg("validate")
        .arg(data("unconfigured.yaml"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "configured providers: anthropic, deepseek, gemini, groq, mock, ollama, openai, \
             openrouter, vllm.",
        ));
    flowloom()
        .arg("validate")
        .arg(example("hello.yaml"))
        .env("FLOWLOOM_PROVIDERS", data("no-such-providers.yaml"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot read the providers file"));
}

#[test]
fn an_unwritable_output_path_exits_1_after_printing_the_output() {
    flowloom()
        .arg("run")
        .arg(example("hello.yaml"))
        .args(["--provider", "mock", "--input", "x", "-q"])
        .args(["--output", "/nonexistent-dir/result.json"])
        .assert()
        .code(1)
        .stdout("Say hello to x\n")
        .stderr(predicate::str::contains("check the --output path"));
}

#[test]
fn graph_prints_mermaid_and_dot() {
    flowloom()
        .arg("graph")
        .arg(data("three.yaml"))
        .assert()
        .code(0)
        .stdout(predicate::str::starts_with("flowchart TD\n"))
        .stdout(predicate::str::contains("a -.-> b"))
        .stdout(predicate::str::contains("b -.-> c"));
    flowloom()
        .arg("graph")
        .arg(example("code_review.yaml"))
        .args(["--format", "dot"])
        .assert()
        .code(0)
        .stdout(predicate::str::starts_with("digraph \"code_review\" {"))
        .stdout(predicate::str::contains(
            "\"security_scan\" -> \"summary\";",
        ));
    flowloom()
        .arg("graph")
        .arg(root().join("tests/broken_workflows/08-cycle.yaml"))
        .assert()
        .code(2);
}

#[test]
fn schema_prints_the_workflow_json_schema() {
    let out = flowloom()
        .arg("schema")
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert!(v["$id"].as_str().unwrap().ends_with("workflow-v2.json"));
    assert!(v["properties"]["steps"].is_object());
    assert!(v["properties"]["execution"].is_object());
}

#[test]
fn estimate_counts_tokens_and_prices_them() {
    let out = flowloom()
        .arg("estimate")
        .arg(data("three.yaml"))
        .args(["--input", "hello", "--var", "lang=rust", "--json"])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let v: Value = serde_json::from_slice(&out).unwrap();
    let calls = v["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 3);
    assert!(calls.iter().all(|c| c["model"] == "gpt-4o-mini"));
    assert!(calls.iter().all(|c| c["max_completion_tokens"] == 50));
    // b and c insert the previous output, counted at its limit (50).
    assert!(calls[1]["prompt_tokens"].as_u64().unwrap() > 50);
    assert!(v["unpriced_models"].as_array().unwrap().is_empty());
    assert!(calls[0]["cost_max"].as_str().unwrap().starts_with('$'));
    flowloom()
        .arg("estimate")
        .arg(data("three.yaml"))
        .args(["--input", "hello", "--var", "lang=rust"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("total: 3 calls"));
}
