//! HTTP answers and transport failures mapped onto [`LlmError`].
//!
//! | what happened | `LlmError` | retryable |
//! | --- | --- | --- |
//! | 400, 413, 415, 422 and other 4xx not below | `InvalidRequest` | no |
//! | 401, 403 | `Authentication` (names the key's variable, never the key) | no |
//! | 402 (credits exhausted, e.g. OpenRouter) | `QuotaExceeded` | no |
//! | 404 | `ModelNotFound` | no |
//! | 408, 409 | `Server` with its status and `Retry-After` | yes |
//! | 429 with code or type `insufficient_quota` | `QuotaExceeded` | no |
//! | other 429 | `RateLimited` with `Retry-After` | yes |
//! | 5xx | `Server` with `Retry-After` | yes |
//! | connection refused, reset, DNS, TLS | `Connection` | yes |
//! | the client timeout | `Timeout` | yes |
//! | a body that is not the expected JSON | `Decode` with a short excerpt | no |
//!
//! `Retry-After` is read from `retry-after-ms` (milliseconds) first, then `retry-after`
//! (seconds, or an HTTP date). The `x-ratelimit-*` headers are logged at debug level.

use std::time::{Duration, SystemTime};

use flowloom_core::LlmError;
use reqwest::header::HeaderMap;
use serde::Deserialize;

/// How many characters of a body a [`LlmError::Decode`] keeps.
pub const EXCERPT_CHARS: usize = 200;

/// Parses a `Retry-After` value: a number of seconds (integer or decimal) or an HTTP date
/// (the time left until it, zero when it is past). `None` when it is neither. This is
/// [`flowloom_core::retry_after::parse`], the rule every layer and provider shares: seconds are
/// digits with an optional decimal part, so a sign or an exponent (`"+5"`, `"1e3"`) is malformed
/// and gives `None`.
///
/// ```
/// use flowloom_provider_openai::error::parse_retry_after;
/// use std::time::{Duration, SystemTime};
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470);
/// assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
/// assert_eq!(parse_retry_after("1.5", now), Some(Duration::from_millis(1500)));
/// assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now), Some(Duration::from_secs(10)));
/// assert_eq!(parse_retry_after("soon", now), None);
/// ```
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    flowloom_core::retry_after::parse(value, now)
}

fn duration_from_secs(secs: f64) -> Option<Duration> {
    if secs.is_finite() && secs >= 0.0 {
        Duration::try_from_secs_f64(secs).ok()
    } else {
        None
    }
}

/// The wait a response asks for: `retry-after-ms`, else `retry-after`.
pub fn retry_after_from_headers(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        && let Some(d) = duration_from_secs(ms / 1000.0)
    {
        return Some(d);
    }
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now))
}

/// Logs the `x-ratelimit-*` headers at debug level.
pub(crate) fn log_rate_limits(provider: &str, status: u16, headers: &HeaderMap) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let limits: Vec<String> = headers
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("x-ratelimit-"))
        .map(|(k, v)| format!("{}={}", k, String::from_utf8_lossy(v.as_bytes())))
        .collect();
    if !limits.is_empty() {
        tracing::debug!(provider, status, rate_limits = %limits.join(" "), "rate limit headers");
    }
}

/// The first [`EXCERPT_CHARS`] characters of a body, for error messages.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(EXCERPT_CHARS).collect();
    if text.chars().nth(EXCERPT_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// A decode error for `body`.
pub(crate) fn decode_error(
    provider: &str,
    what: &str,
    err: &dyn std::fmt::Display,
    body: &[u8],
) -> LlmError {
    LlmError::Decode {
        provider: provider.to_owned(),
        message: format!("{what}: {err}"),
        excerpt: excerpt(body),
    }
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorField,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorField {
    Object(ErrorObject),
    Text(String),
}

#[derive(Deserialize, Default)]
pub(crate) struct ErrorObject {
    #[serde(default)]
    pub(crate) message: Option<String>,
    #[serde(default, rename = "type")]
    pub(crate) kind: Option<String>,
    #[serde(default)]
    pub(crate) code: Option<serde_json::Value>,
    #[serde(default)]
    pub(crate) param: Option<String>,
}

impl ErrorObject {
    fn code_str(&self) -> Option<String> {
        match &self.code {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    }

    pub(crate) fn is_quota(&self) -> bool {
        self.code_str().as_deref() == Some("insufficient_quota")
            || self.kind.as_deref() == Some("insufficient_quota")
    }

    /// `message (type, code, param)` with what is present.
    pub(crate) fn describe(&self) -> String {
        let mut msg = self.message.clone().unwrap_or_default();
        let mut extra = Vec::new();
        if let Some(k) = &self.kind {
            extra.push(format!("type {k}"));
        }
        if let Some(c) = self.code_str() {
            extra.push(format!("code {c}"));
        }
        if let Some(p) = &self.param {
            extra.push(format!("param {p}"));
        }
        if !extra.is_empty() {
            msg.push_str(&format!(" ({})", extra.join(", ")));
        }
        msg
    }
}

/// Reads an OpenAI-style error body (`{"error":{...}}` or `{"error":"text"}`).
pub(crate) fn parse_error_body(body: &[u8]) -> Option<ErrorObject> {
    let env: ErrorEnvelope = serde_json::from_slice(body).ok()?;
    Some(match env.error {
        ErrorField::Object(o) => o,
        ErrorField::Text(t) => ErrorObject {
            message: Some(t),
            ..ErrorObject::default()
        },
    })
}

/// Replaces the key, and anything shaped like an OpenAI key, in a server's message.
pub(crate) fn scrub_key(message: &str, key: Option<&str>) -> String {
    let mut m = message.to_owned();
    if let Some(k) = key.filter(|k| k.len() >= 4) {
        m = m.replace(k, "[REDACTED]");
    }
    m.split(' ')
        .map(|w| {
            if w.starts_with("sk-") && w.len() > 6 {
                "sk-[REDACTED]"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What the error mapping needs to know about the call.
pub(crate) struct ErrorContext<'a> {
    pub(crate) provider: &'a str,
    pub(crate) model: &'a str,
    pub(crate) key: Option<&'a str>,
    pub(crate) key_source: &'a str,
    pub(crate) base_url: &'a str,
}

/// Maps a non-2xx answer onto [`LlmError`].
pub(crate) fn from_status(
    ctx: &ErrorContext<'_>,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> LlmError {
    log_rate_limits(ctx.provider, status, headers);
    let parsed = parse_error_body(body);
    let message = match &parsed {
        Some(e) => scrub_key(&e.describe(), ctx.key),
        None if body.is_empty() => format!("HTTP {status} with an empty body"),
        None => scrub_key(&excerpt(body), ctx.key),
    };
    let provider = ctx.provider.to_owned();
    let retry_after = retry_after_from_headers(headers, SystemTime::now());
    match status {
        401 | 403 => {
            let hint = if ctx.key.is_some() {
                format!("check the API key in {}", ctx.key_source)
            } else {
                format!("no API key was sent; set {}", ctx.key_source)
            };
            LlmError::Authentication {
                provider,
                status,
                message: format!("{message}; {hint}"),
            }
        }
        402 => LlmError::QuotaExceeded { provider, message },
        404 if ctx.model.is_empty() => LlmError::InvalidRequest {
            provider,
            message: format!("HTTP 404: {message}; check the base URL {}", ctx.base_url),
        },
        404 => LlmError::ModelNotFound {
            provider,
            model: ctx.model.to_owned(),
            message: if parsed.is_some() {
                message
            } else {
                format!(
                    "{message}; the answer is not an OpenAI error body, so the URL may be \
                     wrong: check the base URL {}",
                    ctx.base_url
                )
            },
        },
        408 | 409 => LlmError::Server {
            provider,
            status,
            message,
            retry_after,
        },
        429 if parsed.as_ref().is_some_and(ErrorObject::is_quota) => {
            LlmError::QuotaExceeded { provider, message }
        }
        429 => LlmError::RateLimited {
            provider,
            message,
            retry_after,
        },
        500..=599 => LlmError::Server {
            provider,
            status,
            message,
            retry_after,
        },
        400..=499 => LlmError::InvalidRequest {
            provider,
            message: if status == 400 {
                message
            } else {
                format!("HTTP {status}: {message}")
            },
        },
        _ => LlmError::Other {
            provider,
            message: format!("unexpected HTTP {status}: {message}"),
        },
    }
}

/// Maps a transport failure onto [`LlmError`]; `elapsed` is how long the call ran.
pub(crate) fn from_reqwest(provider: &str, err: &reqwest::Error, elapsed: Duration) -> LlmError {
    let provider = provider.to_owned();
    if err.is_timeout() {
        return LlmError::Timeout { provider, elapsed };
    }
    let detail = error_chain(err);
    if err.is_connect() {
        LlmError::Connection {
            provider,
            message: format!("could not connect: {detail}"),
        }
    } else if err.is_body() || err.is_decode() {
        LlmError::Connection {
            provider,
            message: format!("the connection broke while reading the answer: {detail}"),
        }
    } else if err.is_builder() {
        LlmError::InvalidRequest {
            provider,
            message: format!("the request could not be built: {detail}"),
        }
    } else {
        LlmError::Connection {
            provider,
            message: detail,
        }
    }
}

/// The error and its sources, joined (reqwest's top message alone says little).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn ctx() -> ErrorContext<'static> {
        ErrorContext {
            provider: "openai",
            model: "gpt-x",
            key: Some("sk-secret-value-123"),
            key_source: "OPENAI_API_KEY",
            base_url: "http://127.0.0.1:1/v1",
        }
    }

    #[test]
    fn retry_after_ms_wins_over_retry_after() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("20"));
        h.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(
            retry_after_from_headers(&h, SystemTime::now()),
            Some(Duration::from_millis(1500))
        );
        h.remove("retry-after-ms");
        assert_eq!(
            retry_after_from_headers(&h, SystemTime::now()),
            Some(Duration::from_secs(20))
        );
    }

    #[test]
    fn retry_after_rejects_garbage_and_negative_and_past_dates_are_zero() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        assert_eq!(parse_retry_after("-3", now), None);
        assert_eq!(parse_retry_after("NaN", now), None);
        assert_eq!(parse_retry_after("1e3", now), None);
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn auth_errors_never_show_the_key_and_name_the_variable() {
        let body = br#"{"error":{"message":"Incorrect API key provided: sk-secret-value-123. You can find your API key at ...","type":"invalid_request_error","code":"invalid_api_key"}}"#;
        let e = from_status(&ctx(), 401, &HeaderMap::new(), body);
        let text = e.to_string();
        assert!(!text.contains("sk-secret-value-123"), "{text}");
        assert!(text.contains("OPENAI_API_KEY"), "{text}");
        assert!(matches!(e, LlmError::Authentication { status: 401, .. }));
    }

    #[test]
    fn masked_keys_from_the_server_are_scrubbed_too() {
        assert_eq!(
            scrub_key("key sk-abc***xyz is wrong", None),
            "key sk-[REDACTED] is wrong"
        );
    }

    #[test]
    fn plain_text_error_field_is_read() {
        let e = from_status(
            &ctx(),
            404,
            &HeaderMap::new(),
            br#"{"error":"model 'x' not found"}"#,
        );
        assert_eq!(
            e,
            LlmError::ModelNotFound {
                provider: "openai".into(),
                model: "gpt-x".into(),
                message: "model 'x' not found".into()
            }
        );
    }

    #[test]
    fn a_404_without_an_error_body_points_at_the_base_url() {
        let e = from_status(&ctx(), 404, &HeaderMap::new(), b"404 page not found");
        assert!(matches!(e, LlmError::ModelNotFound { .. }), "{e}");
        assert!(e.to_string().contains("http://127.0.0.1:1/v1"), "{e}");
        let no_model = ErrorContext { model: "", ..ctx() };
        let e = from_status(&no_model, 404, &HeaderMap::new(), b"");
        assert!(matches!(e, LlmError::InvalidRequest { .. }), "{e}");
    }

    #[test]
    fn excerpt_is_short_and_char_safe() {
        let body = "é".repeat(500);
        let e = excerpt(body.as_bytes());
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
    }

    #[test]
    fn status_402_is_quota_and_422_is_invalid() {
        let e = from_status(&ctx(), 402, &HeaderMap::new(), b"");
        assert!(matches!(e, LlmError::QuotaExceeded { .. }));
        let e = from_status(&ctx(), 422, &HeaderMap::new(), b"{}");
        assert!(matches!(e, LlmError::InvalidRequest { .. }));
        assert!(!e.is_retryable());
    }
}
