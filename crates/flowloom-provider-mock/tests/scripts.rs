//! Script files load; broken scripts are rejected with the rule and field named.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use flowloom_core::{LlmError, LlmRequest};
use flowloom_provider_mock::{MockProvider, MockScript, Reply, ScriptError};
use tower::ServiceExt;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/mock")
        .join(name)
}

async fn ask(mock: &MockProvider, model: &str, prompt: &str) -> Result<String, LlmError> {
    mock.clone()
        .oneshot(LlmRequest::new(model, prompt))
        .await
        .map(|r| r.content)
}

#[test]
fn the_documented_example_loads() {
    let script = MockScript::from_yaml_str(
        r#"
default: echo            # or: { respond: "fixed text" }
rules:
  - match: "(?i)is this safe"
    model: "gpt-4o"
    respond: "YES"
    usage: { prompt_tokens: 12, completion_tokens: 1 }
    latency: 20ms
  - match: "flaky"
    sequence:
      - { error: rate_limit, retry_after: 1s }
      - { respond: "recovered" }
"#,
    )
    .unwrap();
    assert_eq!(script.default_answer().reply(), &Reply::Echo);
    let rules = script.rules();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].pattern(), Some("(?i)is this safe"));
    assert_eq!(rules[0].model(), Some("gpt-4o"));
    assert_eq!(rules[0].answers()[0].latency(), Duration::from_millis(20));
    assert_eq!(rules[1].answers().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn fixture_safety_review_loads_and_behaves() {
    let mock = MockProvider::from_file(fixture("safety-review.yaml")).unwrap();
    assert_eq!(
        ask(&mock, "gpt-4o", "Is this safe? ...").await.unwrap(),
        "YES"
    );
    assert_eq!(
        ask(&mock, "gpt-4o-mini", "is this safe").await.unwrap(),
        "UNSURE"
    );
    let summary = mock
        .clone()
        .oneshot(LlmRequest::new("m", "Summarize: text"))
        .await
        .unwrap();
    assert_eq!(summary.content, "A short summary.");
    assert_eq!(summary.usage, None);
    assert!(matches!(
        ask(&mock, "m", "flaky").await,
        Err(LlmError::RateLimited { retry_after: Some(d), .. }) if d == Duration::from_secs(1)
    ));
    assert_eq!(ask(&mock, "m", "flaky").await.unwrap(), "recovered");
    assert_eq!(ask(&mock, "m", "hello").await.unwrap(), "hello");
}

#[tokio::test(start_paused = true)]
async fn fixture_failures_loads_and_behaves() {
    let mock = MockProvider::from_file(fixture("failures.yaml")).unwrap();
    assert_eq!(mock.script().rules().len(), 7);
    assert_eq!(
        ask(&mock, "m", "rate limit")
            .await
            .unwrap_err()
            .retry_after(),
        Some(Duration::from_secs(2))
    );
    assert_eq!(
        ask(&mock, "m", "server").await.unwrap_err().status(),
        Some(503)
    );
    assert!(ask(&mock, "m", "timeout").await.unwrap_err().is_timeout());
    assert_eq!(
        ask(&mock, "m", "auth").await.unwrap_err().status(),
        Some(401)
    );
    assert!(matches!(
        ask(&mock, "m", "invalid").await,
        Err(LlmError::InvalidRequest { .. })
    ));
    assert!(matches!(
        ask(&mock, "m", "quota").await,
        Err(LlmError::QuotaExceeded { .. })
    ));
    assert_eq!(
        ask(&mock, "m", "twice flaky").await.unwrap_err().status(),
        Some(502)
    );
    assert_eq!(
        ask(&mock, "m", "twice flaky").await.unwrap_err().status(),
        Some(500)
    );
    assert_eq!(
        ask(&mock, "m", "twice flaky").await.unwrap(),
        "third time lucky"
    );
    assert_eq!(
        ask(&mock, "m", "anything").await.unwrap(),
        "fallback answer"
    );
}

#[test]
fn empty_script_is_echo_and_default_can_be_fixed() {
    assert_eq!(
        MockScript::from_yaml_str("")
            .unwrap()
            .default_answer()
            .reply(),
        &Reply::Echo
    );
    let s = MockScript::from_yaml_str("default: { respond: \"fixed text\" }").unwrap();
    assert!(matches!(s.default_answer().reply(), Reply::Text(t) if &**t == "fixed text"));
    let s = MockScript::from_yaml_str("default: { respond: 42 }").unwrap();
    assert!(matches!(s.default_answer().reply(), Reply::Text(t) if &**t == "42"));
}

fn reject(yaml: &str) -> ScriptError {
    match MockScript::from_yaml_str(yaml) {
        Ok(s) => panic!("accepted a broken script: {s:?}"),
        Err(e) => e,
    }
}

#[track_caller]
fn rejected_with(yaml: &str, expected: &str) {
    assert_eq!(reject(yaml).to_string(), expected);
}

#[test]
fn unknown_error_kind_names_rule_match_and_field() {
    let e = reject(
        r#"
rules:
  - match: "(?i)is this safe"
    respond: "YES"
  - match: "flaky"
    sequence:
      - { error: ratelimit, retry_after: 1s }
      - { respond: "recovered" }
"#,
    );
    assert_eq!(
        e.to_string(),
        "rule 2 (match \"flaky\"): field `sequence[0].error`: unknown error kind \"ratelimit\", \
         expected one of rate_limit, server, timeout, auth, invalid_request, quota"
    );
    assert_eq!(e.rule(), Some(2));
    assert_eq!(e.field(), Some("sequence[0].error"));
}

#[test]
fn bad_regex() {
    let e = reject("rules:\n  - match: \"(unclosed\"\n    respond: x\n");
    let msg = e.to_string();
    assert!(
        msg.starts_with(
            "rule 1 (match \"(unclosed\"): field `match`: not a valid regular expression:"
        ),
        "{msg}"
    );
    assert_eq!(e.field(), Some("match"));
    rejected_with(
        "rules: [{ match: 5, respond: x }]",
        "rule 1: field `match`: expected a regular expression as text, found a number (5)",
    );
}

#[test]
fn respond_and_error_both_or_neither() {
    rejected_with(
        "rules: [{ match: a, respond: x, error: server }]",
        "rule 1 (match \"a\"): field `error`: `respond` and `error` are both set; an answer is either a text or an error",
    );
    rejected_with(
        "rules: [{ match: a, model: m }]",
        "rule 1 (match \"a\"): the rule needs one of `respond: <text>`, `error: <kind>` or `sequence: [...]`",
    );
    rejected_with(
        "rules: [{ match: a, sequence: [ { respond: x }, { latency: 1s } ] }]",
        "rule 1 (match \"a\"): field `sequence[1]`: the answer needs `respond: <text>` or `error: <kind>`",
    );
    rejected_with(
        "rules: [{ match: a, sequence: [ { respond: x, error: quota } ] }]",
        "rule 1 (match \"a\"): field `sequence[0].error`: `respond` and `error` are both set; an answer is either a text or an error",
    );
}

#[test]
fn sequence_problems() {
    rejected_with(
        "rules: [{ match: a, sequence: [] }]",
        "rule 1 (match \"a\"): field `sequence`: the sequence is empty; give at least one answer",
    );
    rejected_with(
        "rules: [{ match: a, respond: x, sequence: [ { respond: y } ] }]",
        "rule 1 (match \"a\"): field `sequence`: `sequence` and `respond` are both set; put `respond` inside each answer of the sequence",
    );
    rejected_with(
        "rules: [{ match: a, sequence: { respond: y } }]",
        "rule 1 (match \"a\"): field `sequence`: expected a list of answers such as - { respond: \"ok\" }, found a mapping",
    );
    rejected_with(
        "rules: [{ match: a, sequence: [ ok ] }]",
        "rule 1 (match \"a\"): field `sequence[0]`: expected an answer such as { respond: \"ok\" } or { error: rate_limit }, found the text \"ok\"",
    );
}

#[test]
fn bad_durations() {
    rejected_with(
        "rules: [{ match: a, respond: x, latency: 20 }]",
        "rule 1 (match \"a\"): field `latency`: expected a duration with a unit such as 20ms, 1s, 2m or 1h, found a number (20)",
    );
    rejected_with(
        "rules: [{ match: a, sequence: [ { error: rate_limit, retry_after: soon } ] }]",
        "rule 1 (match \"a\"): field `sequence[0].retry_after`: expected a duration with a unit such as 20ms, 1s, 2m or 1h, found \"soon\"",
    );
    rejected_with(
        "rules: [{ match: a, respond: x, latency: -1s }]",
        "rule 1 (match \"a\"): field `latency`: expected a duration with a unit such as 20ms, 1s, 2m or 1h, found \"-1s\"",
    );
}

#[test]
fn unknown_fields_are_rejected_everywhere() {
    rejected_with(
        "rulez: []",
        "field `rulez`: unknown field, expected one of `default`, `rules`",
    );
    rejected_with(
        "rules: [{ match: a, respnd: x }]",
        "rule 1 (match \"a\"): field `respnd`: unknown field, expected one of `match`, `model`, `respond`, `error`, `message`, `status`, `retry_after`, `usage`, `latency`, `sequence`",
    );
    rejected_with(
        "rules: [{ match: a, sequence: [ { respond: x, model: m } ] }]",
        "rule 1 (match \"a\"): field `sequence[0].model`: unknown field, expected one of `respond`, `error`, `message`, `status`, `retry_after`, `usage`, `latency`",
    );
    rejected_with(
        "rules: [{ match: a, respond: x, usage: { prompt_tokens: 1, completion_tokens: 2, cost: 3 } }]",
        "rule 1 (match \"a\"): field `usage.cost`: unknown field, expected one of `prompt_tokens`, `completion_tokens`, `total_tokens`",
    );
    rejected_with(
        "default: { respond: x, colour: red }",
        "field `default.colour`: unknown field, expected one of `respond`, `error`, `message`, `status`, `retry_after`, `usage`, `latency`",
    );
}

#[test]
fn error_options_must_suit_the_kind() {
    rejected_with(
        "rules: [{ match: a, error: rate_limit, status: 503 }]",
        "rule 1 (match \"a\"): field `status`: `status` applies only to `server` and `auth` errors, not `rate_limit`",
    );
    rejected_with(
        "rules: [{ match: a, error: server, status: 404 }]",
        "rule 1 (match \"a\"): field `status`: status 404 is not a server error; use 500 to 599",
    );
    rejected_with(
        "rules: [{ match: a, error: auth, status: 500 }]",
        "rule 1 (match \"a\"): field `status`: status 500 is not an authentication error; use 401 or 403",
    );
    rejected_with(
        "rules: [{ match: a, error: auth, retry_after: 1s }]",
        "rule 1 (match \"a\"): field `retry_after`: `retry_after` applies only to `rate_limit` and `server` errors, not `auth`",
    );
    rejected_with(
        "rules: [{ match: a, respond: x, status: 500 }]",
        "rule 1 (match \"a\"): field `status`: `status` applies only to an `error` answer, not to `respond`",
    );
    rejected_with(
        "rules: [{ match: a, error: server, status: 70000 }]",
        "rule 1 (match \"a\"): field `status`: expected an HTTP status such as 503, found a number (70000)",
    );
    rejected_with(
        "rules: [{ match: a, error: [server] }]",
        "rule 1 (match \"a\"): field `error`: expected an error kind, one of rate_limit, server, timeout, auth, invalid_request, quota, found a list",
    );
}

#[test]
fn bad_usage() {
    rejected_with(
        "rules: [{ match: a, respond: x, usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 4 } }]",
        "rule 1 (match \"a\"): field `usage.total_tokens`: found 4, expected prompt_tokens + completion_tokens = 1 + 2",
    );
    rejected_with(
        "rules: [{ match: a, respond: x, usage: { prompt_tokens: 1 } }]",
        "rule 1 (match \"a\"): field `usage.completion_tokens`: missing; give both `prompt_tokens` and `completion_tokens`",
    );
    rejected_with(
        "rules: [{ match: a, respond: x, usage: { prompt_tokens: -1, completion_tokens: 2 } }]",
        "rule 1 (match \"a\"): field `usage.prompt_tokens`: expected a whole number ≥ 0, found a number (-1)",
    );
    rejected_with(
        "rules: [{ match: a, respond: x, usage: zero }]",
        "rule 1 (match \"a\"): field `usage`: expected `none` or { prompt_tokens: <n>, completion_tokens: <n> }, found the text \"zero\"",
    );
}

#[test]
fn bad_shapes() {
    rejected_with(
        "default: parrot",
        "field `default`: expected `echo` or an answer such as { respond: \"fixed text\" }, found the text \"parrot\"",
    );
    rejected_with(
        "rules: { match: a }",
        "field `rules`: expected a list of rules (- match: ...), found a mapping",
    );
    rejected_with(
        "rules: [ { match: a, respond: b }, just text ]",
        "rule 2: a rule is a mapping with `match` and one of `respond`, `error` or `sequence`, found the text \"just text\"",
    );
    rejected_with(
        "- a\n- b\n",
        "a mock script is a mapping with `default`, `rules`, found a list",
    );
    rejected_with(
        "rules: [{ match: a, model: \"\", respond: x }]",
        "rule 1 (match \"a\"): field `model`: expected a model name, found the text \"\"",
    );
}

#[test]
fn not_yaml_is_a_yaml_error_with_a_position() {
    let e = reject("rules: [ { match: a, respond: x }\n");
    assert!(matches!(e, ScriptError::Yaml { .. }), "{e:?}");
    assert!(e.to_string().contains("line"), "{e}");
    let e = reject("rules:\n  - match: a\n    match: b\n    respond: x\n");
    assert!(matches!(e, ScriptError::Yaml { .. }), "{e:?}");
}

#[test]
fn file_errors_name_the_file() {
    let missing = MockProvider::from_file("/nonexistent/mock.yaml").unwrap_err();
    assert!(matches!(missing, ScriptError::Read { .. }));
    assert!(
        missing.to_string().contains("/nonexistent/mock.yaml"),
        "{missing}"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.yaml");
    std::fs::write(
        &path,
        "rules:\n  - match: ok\n    respond: fine\n  - match: flaky\n    sequence: []\n",
    )
    .unwrap();
    let e = MockProvider::from_file(&path).unwrap_err();
    assert_eq!(e.rule(), Some(2));
    assert_eq!(e.field(), Some("sequence"));
    assert_eq!(
        e.to_string(),
        format!(
            "mock script `{}`: rule 2 (match \"flaky\"): field `sequence`: the sequence is empty; give at least one answer",
            path.display()
        )
    );
}

#[test]
fn garbage_never_panics() {
    for junk in [
        "\u{0}\u{1}\u{2}",
        "{{{{",
        "rules: [[[]]]",
        "rules: [~]",
        "default: ~",
        "default: !tag x",
        "? [a]\n: b",
        "rules: [{ ? [x] : y }]",
        "rules: [{ match: a, respond: { nested: map } }]",
        "rules: [{ match: a, latency: 99999999999999999999999h, respond: x }]",
    ] {
        assert!(
            MockScript::from_yaml_str(junk).is_err(),
            "{junk:?} was accepted"
        );
    }
}
