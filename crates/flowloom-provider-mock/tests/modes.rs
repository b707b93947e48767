//! Echo, fixed and scripted answers, recorded requests, usage, latency.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use flowloom_core::{LlmError, LlmRequest, Message, TokenUsage};
use flowloom_provider_mock::{
    MockAnswer, MockError, MockErrorKind, MockProvider, MockRule, MockScript, MockUsage,
    estimate_tokens,
};
use tower::ServiceExt;

async fn ask(mock: &MockProvider, model: &str, prompt: &str) -> Result<String, LlmError> {
    mock.clone()
        .oneshot(LlmRequest::new(model, prompt))
        .await
        .map(|r| r.content)
}

#[tokio::test]
async fn echo_answers_the_last_user_message_verbatim() {
    let mock = MockProvider::echo();
    let req = LlmRequest::from_messages(
        "gpt-4o-mini",
        vec![
            Message::system("be terse"),
            Message::user("first question"),
            Message::assistant("first answer"),
            Message::user("  second question, with {{ braces }} and ünïcode\n"),
        ],
    );
    let res = mock.clone().oneshot(req).await.unwrap();
    assert_eq!(
        res.content,
        "  second question, with {{ braces }} and ünïcode\n"
    );
    assert_eq!(res.model, "gpt-4o-mini");
    assert_eq!(res.provider, "mock");
    assert_eq!(res.latency_ms, 0.0);
    assert!(res.validate().is_ok());
}

#[tokio::test]
async fn fixed_always_answers_the_same_text() {
    let mock = MockProvider::fixed("always this");
    for p in ["one", "two", "three"] {
        assert_eq!(ask(&mock, "m", p).await.unwrap(), "always this");
    }
}

#[tokio::test]
async fn with_name_sets_the_provider_everywhere() {
    let mock = MockProvider::from_yaml_str("rules: [{ match: boom, error: server }]")
        .unwrap()
        .with_name("local-llm");
    let res = mock
        .clone()
        .oneshot(LlmRequest::new("m", "hi"))
        .await
        .unwrap();
    assert_eq!(res.provider, "local-llm");
    assert_eq!(res.usage.unwrap().provider, "local-llm");
    let err = ask(&mock, "m", "boom").await.unwrap_err();
    assert_eq!(err.provider(), Some("local-llm"));
}

const FLAKY: &str = r#"
rules:
  - match: "flaky"
    sequence:
      - { error: rate_limit, retry_after: 1s }
      - { respond: "recovered" }
"#;

#[tokio::test]
async fn scripted_429_then_success_in_exactly_that_order() {
    let mock = MockProvider::from_yaml_str(FLAKY).unwrap();
    let first = ask(&mock, "m", "a flaky call").await.unwrap_err();
    match &first {
        LlmError::RateLimited {
            provider,
            retry_after,
            ..
        } => {
            assert_eq!(provider, "mock");
            assert_eq!(*retry_after, Some(Duration::from_secs(1)));
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert!(first.is_retryable());
    assert_eq!(first.status(), Some(429));
    assert_eq!(ask(&mock, "m", "a flaky call").await.unwrap(), "recovered");
    // After the last entry the rule keeps answering with the last entry.
    assert_eq!(ask(&mock, "m", "still flaky").await.unwrap(), "recovered");
    assert_eq!(ask(&mock, "m", "flaky again").await.unwrap(), "recovered");
    // Messages the rule does not match fall back to the default (echo).
    assert_eq!(ask(&mock, "m", "steady").await.unwrap(), "steady");
    assert_eq!(mock.request_count(), 5);
}

#[tokio::test]
async fn reset_rewinds_sequences_and_forgets_requests() {
    let mock = MockProvider::from_yaml_str(FLAKY).unwrap();
    assert!(ask(&mock, "m", "flaky").await.is_err());
    assert!(ask(&mock, "m", "flaky").await.is_ok());
    mock.reset();
    assert_eq!(mock.request_count(), 0);
    assert!(mock.requests().is_empty());
    assert!(matches!(
        ask(&mock, "m", "flaky").await,
        Err(LlmError::RateLimited { .. })
    ));
}

#[tokio::test]
async fn clones_share_sequence_and_records() {
    let mock = MockProvider::from_yaml_str(FLAKY).unwrap();
    let other = mock.clone();
    assert!(ask(&mock, "m", "flaky").await.is_err());
    assert_eq!(ask(&other, "m", "flaky").await.unwrap(), "recovered");
    assert_eq!(mock.request_count(), 2);
    assert_eq!(other.request_count(), 2);
}

#[tokio::test]
async fn rules_filter_on_model_and_first_match_wins() {
    let mock = MockProvider::from_yaml_str(
        r#"
default: { respond: "DEFAULT" }
rules:
  - match: "(?i)is this safe"
    model: "gpt-4o"
    respond: "YES"
  - match: "(?i)is this safe"
    respond: "ASK GPT-4O"
  - match: "safe"
    respond: "never reached for 'is this safe'"
"#,
    )
    .unwrap();
    assert_eq!(ask(&mock, "gpt-4o", "Is THIS safe?").await.unwrap(), "YES");
    assert_eq!(
        ask(&mock, "gpt-4o-mini", "is this safe?").await.unwrap(),
        "ASK GPT-4O"
    );
    assert_eq!(
        ask(&mock, "gpt-4o", "safe enough").await.unwrap(),
        "never reached for 'is this safe'"
    );
    assert_eq!(ask(&mock, "gpt-4o", "hello").await.unwrap(), "DEFAULT");
}

#[tokio::test]
async fn rule_matches_only_the_last_user_message() {
    let mock = MockProvider::from_yaml_str("rules: [{ match: secret, respond: FOUND }]").unwrap();
    let req = LlmRequest::from_messages(
        "m",
        vec![
            Message::system("the secret is 42"),
            Message::user("secret?"),
            Message::assistant("no"),
            Message::user("plain"),
        ],
    );
    assert_eq!(mock.clone().oneshot(req).await.unwrap().content, "plain");
}

#[tokio::test]
async fn every_error_kind_maps_to_its_llm_error() {
    let mock = MockProvider::from_yaml_str(
        r#"
rules:
  - { match: "^rate$", error: rate_limit }
  - { match: "^server$", error: server }
  - { match: "^server503$", error: server, status: 503, retry_after: 2s, message: "overloaded" }
  - { match: "^timeout$", error: timeout, latency: 3s }
  - { match: "^auth$", error: auth }
  - { match: "^auth403$", error: auth, status: 403 }
  - { match: "^invalid$", error: invalid_request, message: "bad field" }
  - { match: "^quota$", error: quota }
"#,
    )
    .unwrap();
    tokio::time::pause();
    let e = |p: &'static str| {
        let mock = mock.clone();
        async move { ask(&mock, "m", p).await.unwrap_err() }
    };
    let rate = e("rate").await;
    assert!(matches!(
        rate,
        LlmError::RateLimited {
            retry_after: None,
            ..
        }
    ));
    assert!(rate.is_retryable());

    let server = e("server").await;
    assert!(matches!(
        server,
        LlmError::Server {
            status: 500,
            retry_after: None,
            ..
        }
    ));
    assert!(server.is_retryable());

    let s503 = e("server503").await;
    assert_eq!(s503.status(), Some(503));
    assert_eq!(s503.retry_after(), Some(Duration::from_secs(2)));
    assert!(s503.to_string().contains("overloaded"));

    let timeout = e("timeout").await;
    assert!(
        matches!(timeout, LlmError::Timeout { elapsed, .. } if elapsed == Duration::from_secs(3))
    );
    assert!(timeout.is_timeout() && timeout.is_retryable());

    let auth = e("auth").await;
    assert!(matches!(auth, LlmError::Authentication { status: 401, .. }));
    assert!(!auth.is_retryable());
    assert_eq!(e("auth403").await.status(), Some(403));

    let invalid = e("invalid").await;
    assert!(matches!(&invalid, LlmError::InvalidRequest { message, .. } if message == "bad field"));
    assert!(!invalid.is_retryable());

    let quota = e("quota").await;
    assert!(matches!(quota, LlmError::QuotaExceeded { .. }));
    assert!(!quota.is_retryable());
}

#[tokio::test(start_paused = true)]
async fn latency_waits_on_tokio_time() {
    let mock = MockProvider::from_yaml_str(
        r#"
rules:
  - { match: slow, respond: "done", latency: 20ms }
  - { match: flaky, latency: 2m, sequence: [ { error: server }, { respond: ok, latency: 1s } ] }
"#,
    )
    .unwrap();
    let start = tokio::time::Instant::now();
    let res = mock
        .clone()
        .oneshot(LlmRequest::new("m", "slow please"))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(20));
    assert_eq!(res.latency_ms, 20.0);

    // The answer is not there before its latency has passed.
    let fut = mock.clone().oneshot(LlmRequest::new("m", "slow"));
    let early = tokio::time::timeout(Duration::from_millis(19), fut).await;
    assert!(early.is_err(), "answered before its latency");

    // Rule-level latency applies to sequence entries that set none.
    let start = tokio::time::Instant::now();
    assert!(ask(&mock, "m", "flaky").await.is_err());
    assert_eq!(start.elapsed(), Duration::from_secs(120));
    let start = tokio::time::Instant::now();
    assert_eq!(ask(&mock, "m", "flaky").await.unwrap(), "ok");
    assert_eq!(start.elapsed(), Duration::from_secs(1));

    // No latency: answered without the clock moving.
    let start = tokio::time::Instant::now();
    ask(&mock, "m", "fast").await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test]
async fn requests_are_recorded_in_order() {
    let mock = MockProvider::echo();
    let a = LlmRequest::new("m1", "first").with_temperature(0.1);
    let b = LlmRequest::new("m2", "second").with_system("sys");
    mock.clone().oneshot(a.clone()).await.unwrap();
    mock.clone().oneshot(b.clone()).await.unwrap();
    assert_eq!(mock.requests(), vec![a, b.clone()]);
    assert_eq!(mock.last_request(), Some(b));
    assert_eq!(mock.request_count(), 2);
    assert!(mock.embedding_requests().is_empty());
}

#[tokio::test]
async fn recording_can_be_turned_off() {
    let mock = MockProvider::echo().with_recording(false);
    ask(&mock, "m", "x").await.unwrap();
    ask(&mock, "m", "y").await.unwrap();
    assert!(mock.requests().is_empty());
    assert_eq!(mock.request_count(), 2, "still counted");
    mock.reset();
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test]
async fn usage_is_computed_deterministically_from_the_texts() {
    let mock = MockProvider::fixed("abcdefghi"); // 9 chars -> 3 tokens
    // system 4 chars + user 13 chars = 17 chars -> 5 tokens
    let req = LlmRequest::new("m", "1234567890123").with_system("abcd");
    let u1 = mock
        .clone()
        .oneshot(req.clone())
        .await
        .unwrap()
        .usage
        .unwrap();
    let u2 = mock.clone().oneshot(req).await.unwrap().usage.unwrap();
    assert_eq!(u1, u2);
    assert_eq!(u1, TokenUsage::new(5, 3, "m", "mock"));
    assert!(u1.validate().is_ok());
    // Minimum of one token, characters counted as Unicode scalars.
    assert_eq!(estimate_tokens(""), 1);
    assert_eq!(estimate_tokens("ééé"), 1);
    assert_eq!(estimate_tokens("ééééé"), 2);
}

#[tokio::test]
async fn usage_stated_or_none() {
    let mock = MockProvider::from_yaml_str(
        r#"
rules:
  - { match: stated, respond: "YES", usage: { prompt_tokens: 12, completion_tokens: 1 } }
  - { match: silent, respond: "quiet", usage: none }
"#,
    )
    .unwrap();
    let stated = mock
        .clone()
        .oneshot(LlmRequest::new("gpt-4o", "stated"))
        .await
        .unwrap();
    assert_eq!(stated.usage, Some(TokenUsage::new(12, 1, "gpt-4o", "mock")));
    let silent = mock
        .clone()
        .oneshot(LlmRequest::new("gpt-4o", "silent"))
        .await
        .unwrap();
    assert_eq!(silent.content, "quiet");
    assert_eq!(silent.usage, None);
}

#[tokio::test]
async fn invalid_requests_are_rejected_and_still_recorded() {
    let mock = MockProvider::echo();
    let err = mock
        .clone()
        .oneshot(LlmRequest::new("m", "hi").with_temperature(2.5))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LlmError::InvalidRequest { message, .. } if message.contains("temperature"))
    );
    let err = ask(&mock, "", "hi").await.unwrap_err();
    assert!(err.to_string().contains("model"), "{err}");
    assert_eq!(mock.request_count(), 2);
}

#[tokio::test]
async fn scripts_built_in_code() {
    let script = MockScript::fixed("fallback")
        .with_rule(
            MockRule::new(
                "flaky",
                MockAnswer::error(
                    MockError::new(MockErrorKind::Server)
                        .with_status(503)
                        .with_retry_after(Duration::from_millis(5)),
                ),
            )
            .unwrap()
            .then(MockAnswer::text("ok").with_usage(MockUsage::None)),
        )
        .with_rule(MockRule::any(MockAnswer::echo()).for_model("echo-model"));
    let mock = MockProvider::from_script(script);
    assert_eq!(
        ask(&mock, "m", "flaky").await.unwrap_err().status(),
        Some(503)
    );
    assert_eq!(ask(&mock, "m", "flaky").await.unwrap(), "ok");
    assert_eq!(ask(&mock, "echo-model", "parrot").await.unwrap(), "parrot");
    assert_eq!(ask(&mock, "other", "parrot").await.unwrap(), "fallback");
    // Statuses that do not suit the kind fall back to its default when built in code.
    let e = MockError::new(MockErrorKind::Server).with_status(404);
    assert_eq!(e.to_llm_error("mock", Duration::ZERO).status(), Some(500));
    let e = MockError::new(MockErrorKind::Auth).with_status(403);
    assert_eq!(e.to_llm_error("mock", Duration::ZERO).status(), Some(403));
}
