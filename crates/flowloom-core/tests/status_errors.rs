//! Status lifecycles and the classification of every `LlmError` variant.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use flowloom_core::{ErrorKind, LlmError, StepStatus, WorkflowStatus};

#[test]
fn workflow_status_terminal_states() {
    use WorkflowStatus::*;
    for (s, terminal) in [
        (Pending, false),
        (Running, false),
        (Completed, true),
        (Failed, true),
        (Cancelled, true),
        (Timeout, true),
    ] {
        assert_eq!(s.is_terminal(), terminal, "{s}");
        assert_eq!(s.to_string(), s.as_str());
    }
}

#[test]
fn step_status_terminal_states() {
    use StepStatus::*;
    for (s, terminal) in [
        (Pending, false),
        (Running, false),
        (Completed, true),
        (Failed, true),
        (Skipped, true),
    ] {
        assert_eq!(s.is_terminal(), terminal, "{s}");
        assert_eq!(s.to_string(), s.as_str());
    }
}

fn p() -> String {
    "openai".to_owned()
}
fn m() -> String {
    "msg".to_owned()
}

struct Expect {
    error: LlmError,
    kind: ErrorKind,
    retryable: bool,
    retry_after: Option<Duration>,
    status: Option<u16>,
    timeout: bool,
    provider: Option<&'static str>,
}

fn every_variant() -> Vec<Expect> {
    let secs = Duration::from_secs;
    let e = |error, kind, retryable, retry_after, status, timeout, provider| Expect {
        error,
        kind,
        retryable,
        retry_after,
        status,
        timeout,
        provider,
    };
    vec![
        e(
            LlmError::InvalidRequest {
                provider: p(),
                message: m(),
            },
            ErrorKind::InvalidRequest,
            false,
            None,
            Some(400),
            false,
            Some("openai"),
        ),
        e(
            LlmError::Authentication {
                provider: p(),
                status: 401,
                message: m(),
            },
            ErrorKind::Authentication,
            false,
            None,
            Some(401),
            false,
            Some("openai"),
        ),
        e(
            LlmError::Authentication {
                provider: p(),
                status: 403,
                message: m(),
            },
            ErrorKind::Authentication,
            false,
            None,
            Some(403),
            false,
            Some("openai"),
        ),
        e(
            LlmError::ModelNotFound {
                provider: p(),
                model: "gpt-9".into(),
                message: m(),
            },
            ErrorKind::ModelNotFound,
            false,
            None,
            Some(404),
            false,
            Some("openai"),
        ),
        e(
            LlmError::RateLimited {
                provider: p(),
                message: m(),
                retry_after: Some(secs(2)),
            },
            ErrorKind::RateLimited,
            true,
            Some(secs(2)),
            Some(429),
            false,
            Some("openai"),
        ),
        e(
            LlmError::RateLimited {
                provider: p(),
                message: m(),
                retry_after: None,
            },
            ErrorKind::RateLimited,
            true,
            None,
            Some(429),
            false,
            Some("openai"),
        ),
        e(
            LlmError::QuotaExceeded {
                provider: p(),
                message: m(),
            },
            ErrorKind::QuotaExceeded,
            false,
            None,
            Some(429),
            false,
            Some("openai"),
        ),
        e(
            LlmError::Server {
                provider: p(),
                status: 503,
                message: m(),
                retry_after: Some(secs(5)),
            },
            ErrorKind::Server,
            true,
            Some(secs(5)),
            Some(503),
            false,
            Some("openai"),
        ),
        e(
            LlmError::Server {
                provider: p(),
                status: 500,
                message: m(),
                retry_after: None,
            },
            ErrorKind::Server,
            true,
            None,
            Some(500),
            false,
            Some("openai"),
        ),
        e(
            LlmError::Timeout {
                provider: p(),
                elapsed: secs(60),
            },
            ErrorKind::Timeout,
            true,
            None,
            None,
            true,
            Some("openai"),
        ),
        e(
            LlmError::Connection {
                provider: p(),
                message: m(),
            },
            ErrorKind::Connection,
            true,
            None,
            None,
            false,
            Some("openai"),
        ),
        e(
            LlmError::Decode {
                provider: p(),
                message: m(),
                excerpt: "<html>".into(),
            },
            ErrorKind::Decode,
            false,
            None,
            None,
            false,
            Some("openai"),
        ),
        e(
            LlmError::Unavailable {
                provider: p(),
                message: m(),
            },
            ErrorKind::Unavailable,
            true,
            None,
            None,
            false,
            Some("openai"),
        ),
        e(
            LlmError::Unsupported {
                provider: p(),
                feature: "streaming".into(),
            },
            ErrorKind::Unsupported,
            false,
            None,
            None,
            false,
            Some("openai"),
        ),
        e(
            LlmError::RetriesExhausted {
                attempts: 3,
                waited: secs(3),
                last: Box::new(LlmError::Timeout {
                    provider: p(),
                    elapsed: secs(1),
                }),
            },
            ErrorKind::RetriesExhausted,
            false,
            None,
            None,
            true,
            Some("openai"),
        ),
        e(
            LlmError::RetriesExhausted {
                attempts: 3,
                waited: secs(3),
                last: Box::new(LlmError::Server {
                    provider: p(),
                    status: 502,
                    message: m(),
                    retry_after: None,
                }),
            },
            ErrorKind::RetriesExhausted,
            false,
            None,
            Some(502),
            false,
            Some("openai"),
        ),
        e(
            LlmError::FailoverExhausted {
                failures: vec![
                    (
                        "openai".into(),
                        LlmError::Server {
                            provider: p(),
                            status: 500,
                            message: m(),
                            retry_after: None,
                        },
                    ),
                    (
                        "backup".into(),
                        LlmError::RateLimited {
                            provider: "backup".into(),
                            message: m(),
                            retry_after: None,
                        },
                    ),
                ],
            },
            ErrorKind::FailoverExhausted,
            false,
            None,
            Some(429),
            false,
            Some("backup"),
        ),
        e(
            LlmError::FailoverExhausted { failures: vec![] },
            ErrorKind::FailoverExhausted,
            false,
            None,
            None,
            false,
            None,
        ),
        e(
            LlmError::BudgetExceeded { message: m() },
            ErrorKind::BudgetExceeded,
            false,
            None,
            None,
            false,
            None,
        ),
        e(
            LlmError::Blocked {
                guard: "pii".into(),
                reason: "an email address".into(),
            },
            ErrorKind::Blocked,
            false,
            None,
            None,
            false,
            None,
        ),
        e(
            LlmError::Cancelled,
            ErrorKind::Cancelled,
            false,
            None,
            None,
            false,
            None,
        ),
        e(
            LlmError::other("plugin", "broke"),
            ErrorKind::Other,
            false,
            None,
            None,
            false,
            Some("plugin"),
        ),
    ]
}

#[test]
fn classification_of_every_variant() {
    let all = every_variant();
    let mut kinds: Vec<ErrorKind> = all.iter().map(|x| x.kind).collect();
    kinds.dedup();
    assert_eq!(kinds.len(), 17, "every variant is covered");
    for x in all {
        let e = &x.error;
        assert_eq!(e.kind(), x.kind, "{e:?}");
        assert_eq!(e.is_retryable(), x.retryable, "is_retryable of {e:?}");
        assert_eq!(e.retry_after(), x.retry_after, "retry_after of {e:?}");
        assert_eq!(e.status(), x.status, "status of {e:?}");
        assert_eq!(e.is_timeout(), x.timeout, "is_timeout of {e:?}");
        assert_eq!(e.provider(), x.provider, "provider of {e:?}");
        assert!(!e.to_string().is_empty());
        assert_eq!(e.kind().to_string(), e.kind().as_str());
    }
}

#[test]
fn messages_say_what_happened() {
    let e = LlmError::RateLimited {
        provider: p(),
        message: "slow down".into(),
        retry_after: Some(Duration::from_secs(2)),
    };
    assert_eq!(
        e.to_string(),
        "openai: rate limited (retry after 2s): slow down"
    );
    let e = LlmError::RetriesExhausted {
        attempts: 3,
        waited: Duration::from_millis(300),
        last: Box::new(LlmError::Server {
            provider: p(),
            status: 503,
            message: "overloaded".into(),
            retry_after: None,
        }),
    };
    assert_eq!(
        e.to_string(),
        "gave up after 3 attempts (300ms spent waiting between them): openai: server error (HTTP 503): overloaded"
    );
    let e = LlmError::FailoverExhausted {
        failures: vec![
            ("a".into(), LlmError::Cancelled),
            ("b".into(), LlmError::other("b", "down")),
        ],
    };
    assert_eq!(
        e.to_string(),
        "all 2 providers of the failover chain failed: [a] cancelled; [b] b: down"
    );
    assert_eq!(ErrorKind::RateLimited.as_str(), "rate_limited");
}
