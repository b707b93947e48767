//! Every invalid value is rejected with a message naming the field, the value and the range.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use flowloom_core::{
    EmbeddingRequest, FrameworkConfig, LlmRequest, LlmResponse, LogLevel, Message, TokenUsage,
    ValidationError,
};

/// Exactly one error, with this text.
#[track_caller]
fn one(result: Result<(), flowloom_core::ValidationErrors>, expected: &str) -> ValidationError {
    let errs = result.expect_err("the invalid value was accepted");
    assert_eq!(errs.errors().len(), 1, "{errs}");
    assert_eq!(errs.to_string(), expected);
    errs.errors()[0].clone()
}

#[test]
fn usage_total_must_be_the_sum() {
    let mut u = TokenUsage::new(3, 4, "m", "p");
    assert!(u.validate().is_ok());
    u.total_tokens = 10;
    let e = one(
        u.validate(),
        "invalid `total_tokens`: found 10, expected prompt_tokens + completion_tokens = 3 + 4",
    );
    assert_eq!((e.field.as_str(), e.value.as_str()), ("total_tokens", "10"));
    // Overflowing counts are not a valid sum either.
    let mut big = TokenUsage::new(u64::MAX, 1, "m", "p");
    assert_eq!(big.total_tokens, u64::MAX);
    assert!(big.validate().is_err());
    big.completion_tokens = 0;
    assert!(big.validate().is_ok());
}

#[test]
fn usage_details_model_and_provider() {
    let mut u = TokenUsage::new(3, 4, "m", "p");
    u.cached_prompt_tokens = Some(5);
    one(
        u.validate(),
        "invalid `cached_prompt_tokens`: found 5, expected at most prompt_tokens (3)",
    );
    let mut u = TokenUsage::new(3, 4, "m", "p");
    u.reasoning_tokens = Some(9);
    one(
        u.validate(),
        "invalid `reasoning_tokens`: found 9, expected at most completion_tokens (4)",
    );
    one(
        TokenUsage::new(1, 1, "", "p").validate(),
        "invalid `model`: found \"\", expected a non-empty string",
    );
    one(
        TokenUsage::new(1, 1, "m", " ").validate(),
        "invalid `provider`: found \" \", expected a non-empty string",
    );
}

#[test]
fn temperature_range() {
    for ok in [0.0, 0.7, 2.0] {
        assert!(
            LlmRequest::new("m", "p")
                .with_temperature(ok)
                .validate()
                .is_ok(),
            "{ok}"
        );
    }
    for (bad, shown) in [
        (-0.1, "-0.1"),
        (2.1, "2.1"),
        (f64::NAN, "NaN"),
        (f64::INFINITY, "inf"),
    ] {
        one(
            LlmRequest::new("m", "p").with_temperature(bad).validate(),
            &format!("invalid `temperature`: found {shown}, expected a number from 0.0 to 2.0"),
        );
    }
}

#[test]
fn max_tokens_range() {
    for ok in [1, 1024, 128_000] {
        assert!(
            LlmRequest::new("m", "p")
                .with_max_tokens(ok)
                .validate()
                .is_ok()
        );
    }
    for bad in [0, 128_001, u32::MAX] {
        one(
            LlmRequest::new("m", "p").with_max_tokens(bad).validate(),
            &format!("invalid `max_tokens`: found {bad}, expected an integer from 1 to 128000"),
        );
    }
}

#[test]
fn prompt_and_model_must_not_be_empty() {
    one(
        LlmRequest::new("m", "").validate(),
        "invalid `prompt`: found \"\", expected a non-empty string",
    );
    one(
        LlmRequest::new("m", "  \n").validate(),
        "invalid `prompt`: found \"  \\n\", expected a non-empty string",
    );
    one(
        LlmRequest::from_messages("m", vec![]).validate(),
        "invalid `prompt`: found no message, expected at least one user message with non-empty text",
    );
    one(
        LlmRequest::new("", "p").validate(),
        "invalid `model`: found \"\", expected a non-empty string",
    );
    // A conversation whose last user turn is empty is rejected even if others are not.
    let req = LlmRequest::from_messages("m", vec![Message::user("first"), Message::user("")]);
    assert!(req.validate().is_err());
}

#[test]
fn every_problem_is_reported_together() {
    let errs = LlmRequest::new("", "")
        .with_temperature(9.0)
        .with_max_tokens(0)
        .validate()
        .unwrap_err();
    let fields: Vec<&str> = errs.errors().iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["model", "prompt", "temperature", "max_tokens"]);
}

#[test]
fn response_model_provider_latency_and_nested_usage() {
    assert!(LlmResponse::text("x", "m", "p").validate().is_ok());
    one(
        LlmResponse::text("x", "m", "").validate(),
        "invalid `provider`: found \"\", expected a non-empty string",
    );
    one(
        LlmResponse::text("x", "", "p").validate(),
        "invalid `model`: found \"\", expected a non-empty string",
    );
    for (bad, shown) in [(-1.0, "-1"), (f64::NAN, "NaN")] {
        let mut r = LlmResponse::text("x", "m", "p");
        r.latency_ms = bad;
        one(
            r.validate(),
            &format!("invalid `latency_ms`: found {shown}, expected a number ≥ 0"),
        );
    }
    let mut u = TokenUsage::new(1, 1, "m", "p");
    u.total_tokens = 3;
    let e = one(
        LlmResponse::text("x", "m", "p").with_usage(u).validate(),
        "invalid `usage.total_tokens`: found 3, expected prompt_tokens + completion_tokens = 1 + 1",
    );
    assert_eq!(e.field, "usage.total_tokens");
}

#[test]
fn embedding_request() {
    assert!(
        EmbeddingRequest::new("e", vec!["a".into()])
            .validate()
            .is_ok()
    );
    one(
        EmbeddingRequest::new("e", vec![]).validate(),
        "invalid `input`: found [], expected at least one text",
    );
    one(
        EmbeddingRequest::new("e", vec!["a".into(), String::new()]).validate(),
        "invalid `input[1]`: found \"\", expected a non-empty text",
    );
    let mut r = EmbeddingRequest::new("", vec!["a".into()]);
    r.dimensions = Some(0);
    let errs = r.validate().unwrap_err();
    assert_eq!(
        errs.to_string(),
        "invalid `model`: found \"\", expected a non-empty string; invalid `dimensions`: found 0, expected an integer ≥ 1"
    );
}

#[test]
fn framework_config_fields() {
    assert!(FrameworkConfig::default().validate().is_ok());
    let base = FrameworkConfig::default;
    let cases: Vec<(FrameworkConfig, &str)> = vec![
        (
            FrameworkConfig {
                default_model: " ".into(),
                ..base()
            },
            "invalid `default_model`: found \" \", expected a non-empty string",
        ),
        (
            FrameworkConfig {
                default_temperature: -0.1,
                ..base()
            },
            "invalid `default_temperature`: found -0.1, expected a number from 0.0 to 2.0",
        ),
        (
            FrameworkConfig {
                default_temperature: f64::NAN,
                ..base()
            },
            "invalid `default_temperature`: found NaN, expected a number from 0.0 to 2.0",
        ),
        (
            FrameworkConfig {
                default_max_tokens: 128_001,
                ..base()
            },
            "invalid `default_max_tokens`: found 128001, expected an integer from 1 to 128000",
        ),
        (
            FrameworkConfig {
                default_max_tokens: 0,
                ..base()
            },
            "invalid `default_max_tokens`: found 0, expected an integer from 1 to 128000",
        ),
        (
            FrameworkConfig {
                default_timeout_seconds: Some(0.0),
                ..base()
            },
            "invalid `default_timeout_seconds`: found 0, expected a number of seconds > 0, or unset for no timeout",
        ),
        (
            FrameworkConfig {
                default_timeout_seconds: Some(-5.0),
                ..base()
            },
            "invalid `default_timeout_seconds`: found -5, expected a number of seconds > 0, or unset for no timeout",
        ),
        (
            FrameworkConfig {
                default_timeout_seconds: Some(f64::INFINITY),
                ..base()
            },
            "invalid `default_timeout_seconds`: found inf, expected a number of seconds > 0, or unset for no timeout",
        ),
        (
            FrameworkConfig {
                max_retry_attempts: 0,
                ..base()
            },
            "invalid `max_retry_attempts`: found 0, expected an integer from 1 to 10 (1 = no retry)",
        ),
        (
            FrameworkConfig {
                max_retry_attempts: 11,
                ..base()
            },
            "invalid `max_retry_attempts`: found 11, expected an integer from 1 to 10 (1 = no retry)",
        ),
        (
            FrameworkConfig {
                retry_backoff_factor: 0.5,
                ..base()
            },
            "invalid `retry_backoff_factor`: found 0.5, expected a number from 1.0 to 10.0",
        ),
        (
            FrameworkConfig {
                retry_backoff_factor: f64::NAN,
                ..base()
            },
            "invalid `retry_backoff_factor`: found NaN, expected a number from 1.0 to 10.0",
        ),
        (
            FrameworkConfig {
                openai_base_url: Some("api.openai.com".into()),
                ..base()
            },
            "invalid `openai_base_url`: found \"api.openai.com\", expected an http:// or https:// URL, e.g. https://api.openai.com/v1",
        ),
    ];
    for (config, expected) in cases {
        one(config.validate(), expected);
    }
    // Boundaries are allowed.
    let edges = FrameworkConfig {
        default_temperature: 2.0,
        default_max_tokens: 1,
        default_timeout_seconds: Some(0.001),
        max_retry_attempts: 10,
        retry_backoff_factor: 1.0,
        openai_base_url: Some("http://127.0.0.1:9/v1".into()),
        ..base()
    };
    assert!(edges.validate().is_ok());
}

#[test]
fn framework_config_never_prints_the_secret_in_errors() {
    let c = FrameworkConfig {
        openai_api_key: flowloom_core::Secret::new("sk-secret-value"),
        default_temperature: 7.0,
        ..FrameworkConfig::default()
    };
    let msg = c.validate().unwrap_err().to_string();
    assert!(!msg.contains("sk-secret"), "{msg}");
}

#[test]
fn invalid_timeout_is_not_a_duration_and_does_not_panic() {
    for bad in [-1.0, f64::NAN, f64::INFINITY, 1e300] {
        let c = FrameworkConfig {
            default_timeout_seconds: Some(bad),
            ..FrameworkConfig::default()
        };
        assert_eq!(c.default_timeout(), None, "{bad}");
        assert!(c.validate().is_err());
    }
    let c = FrameworkConfig {
        default_timeout_seconds: Some(1.5),
        ..FrameworkConfig::default()
    };
    assert_eq!(
        c.default_timeout(),
        Some(std::time::Duration::from_millis(1500))
    );
}

#[test]
fn log_level_parse() {
    assert_eq!(LogLevel::parse(" Warning ").unwrap(), LogLevel::Warn);
    assert_eq!(LogLevel::parse("TRACE").unwrap(), LogLevel::Trace);
    assert_eq!(
        LogLevel::parse("loud").unwrap_err().to_string(),
        "invalid `log_level`: found \"loud\", expected one of TRACE, DEBUG, INFO, WARN, ERROR"
    );
}
