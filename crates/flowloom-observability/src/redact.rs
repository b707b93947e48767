//! Secret redaction (FR-027): API keys, `Authorization` headers and configured secrets never
//! reach a log line, a span field or an error message.
//!
//! A [`Redactor`] knows secret values (API keys from configuration) and patterns
//! (`Authorization: Bearer …`, `sk-…` keys, `api-key` headers). [`RedactingMakeWriter`] wraps
//! any `tracing-subscriber` writer so that every formatted line is scrubbed before it is
//! written, which holds even for fields nobody anticipated. [`Redactor::redact_error`] and
//! [`RedactErrorsLayer`] scrub the text of [`LlmError`]s.
//!
//! ```
//! use flowloom_observability::redact::Redactor;
//! let r = Redactor::new().with_secret("hunter2-secret-value");
//! let line = r#"calling with key hunter2-secret-value and Authorization: Bearer abc.def"#;
//! let clean = r.redact(line);
//! assert!(!clean.contains("hunter2"));
//! assert!(!clean.contains("abc.def"));
//! assert!(r.redact("sk-proj-0123456789abcdefXYZ").contains("[REDACTED]"));
//! ```

use std::borrow::Cow;
use std::io;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};

use flowloom_core::{FrameworkConfig, LlmError, Secret};
use regex::Regex;
use tower::{Layer, Service};
use tracing_subscriber::fmt::MakeWriter;

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Secrets shorter than this are not redacted by value (they would blank out ordinary words);
/// they are reported by [`Redactor::try_with_secret`].
pub const MIN_SECRET_LEN: usize = 6;

// Patterns of credentials, each with the part to keep in group 1 (may be empty). Word
// boundaries are ASCII (`(?-u:\b)`): a Unicode `\b` would force the slow regex engine on any
// line with a non-ASCII character (such as `µs` in span timings).
static PATTERNS: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    [
        // `Authorization: Bearer xyz`, `"authorization":"Basic xyz"`, `authorization=Bearer xyz`
        r#"(?i)(authorization["']?\s*[:=]\s*["']?\s*(?:bearer|basic|token)?\s*)[^\s"',;}\]]+"#,
        // A bare bearer token: `Bearer xyz`
        r"(?i)((?-u:\b)bearer\s+)[A-Za-z0-9._~+/=-]{6,}",
        // `x-api-key: xyz`, `api-key: xyz`, `api_key=xyz`, `"apiKey": "xyz"`
        r#"(?i)((?:x-)?api[-_]?key["']?\s*[:=]\s*["']?)[^\s"',;}\]]+"#,
        // OpenAI-style keys: sk-..., sk-proj-..., with at least 8 key characters
        r"()(?-u:\b)sk-[A-Za-z0-9_-]{8,}",
    ]
    .iter()
    .filter_map(|p| Regex::new(p).ok())
    .collect()
});

/// Every credential pattern matches text holding, in ASCII lower case, one of these words
/// (`authorization`, `bearer`, `api` of `api-key`, `sk-`): a line holding none of them is
/// passed over with one literal search instead of one regex scan per pattern.
static GATE: LazyLock<Option<regex::bytes::Regex>> =
    LazyLock::new(|| regex::bytes::Regex::new("authorization|bearer|api|sk-").ok());

/// True when `text` may hold a credential pattern (false only when it certainly does not).
fn may_hold_credential(text: &str) -> bool {
    thread_local! {
        static LOWER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let Some(gate) = GATE.as_ref() else {
        return true;
    };
    let found = LOWER.try_with(|lower| {
        let Ok(mut lower) = lower.try_borrow_mut() else {
            return true;
        };
        lower.clear();
        lower.extend_from_slice(text.as_bytes());
        lower.make_ascii_lowercase();
        gate.is_match(&lower)
    });
    found.unwrap_or(true)
}

/// A secret given to [`Redactor::try_with_secret`] that cannot be redacted by value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a secret of {len} characters is too short to redact safely (at least {MIN_SECRET_LEN} are \
     needed); use a longer secret or rely on the built-in patterns"
)]
pub struct ShortSecret {
    /// The secret's length (never its value).
    pub len: usize,
}

/// Scrubs secrets out of text. Cheap to clone (shares its state).
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Arc<Vec<String>>,
    patterns: bool,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .field("patterns", &self.patterns)
            .finish()
    }
}

impl Redactor {
    /// A redactor with the built-in patterns and no known secret values.
    pub fn new() -> Self {
        Self {
            secrets: Arc::new(Vec::new()),
            patterns: true,
        }
    }

    /// A redactor that changes nothing (for benchmarks; never use it for real logs).
    pub fn disabled() -> Self {
        Self {
            secrets: Arc::new(Vec::new()),
            patterns: false,
        }
    }

    /// A redactor knowing the secrets of `config` (the OpenAI API key).
    pub fn from_config(config: &FrameworkConfig) -> Self {
        Self::new().with_secret(config.openai_api_key.expose())
    }

    /// Adds a secret value; empty or too-short values are ignored (see
    /// [`Redactor::try_with_secret`] to be told).
    #[must_use]
    pub fn with_secret(self, secret: impl AsRef<str>) -> Self {
        match self.clone().try_with_secret(secret) {
            Ok(r) => r,
            Err(_) => self,
        }
    }

    /// Adds a [`Secret`].
    #[must_use]
    pub fn with_secret_value(self, secret: &Secret) -> Self {
        self.with_secret(secret.expose())
    }

    /// Adds a secret value, or says why it cannot be redacted by value.
    pub fn try_with_secret(mut self, secret: impl AsRef<str>) -> Result<Self, ShortSecret> {
        let s = secret.as_ref().trim();
        if s.chars().count() < MIN_SECRET_LEN {
            return Err(ShortSecret {
                len: s.chars().count(),
            });
        }
        let mut secrets = (*self.secrets).clone();
        let mut add = |v: String| {
            if !secrets.contains(&v) {
                secrets.push(v);
            }
        };
        add(s.to_owned());
        // The forms the value takes once escaped inside JSON or Debug output.
        let escaped = s.escape_debug().to_string();
        add(escaped);
        if let Ok(json) = serde_json::to_string(s) {
            add(json.trim_matches('"').to_owned());
        }
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|v| std::cmp::Reverse(v.len()));
        self.secrets = Arc::new(secrets);
        Ok(self)
    }

    /// How many secret values (with their escaped forms) are known.
    pub fn secret_count(&self) -> usize {
        self.secrets.len()
    }

    /// Text with every known secret and every credential pattern replaced by [`REDACTED`].
    /// Borrows when nothing had to change.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for s in self.secrets.iter() {
            if out.contains(s.as_str()) {
                out = Cow::Owned(out.replace(s.as_str(), REDACTED));
            }
        }
        if self.patterns && may_hold_credential(&out) {
            for re in PATTERNS.iter() {
                if re.is_match(&out) {
                    let replaced = re
                        .replace_all(&out, |c: &regex::Captures<'_>| {
                            let whole = c.get(0).map_or("", |m| m.as_str());
                            let keep = c.get(1).map_or("", |m| m.as_str());
                            // Already redacted (by a secret value or an earlier pattern).
                            if whole[keep.len()..].starts_with("[REDACTED") {
                                whole.to_owned()
                            } else {
                                format!("{keep}{REDACTED}")
                            }
                        })
                        .into_owned();
                    out = Cow::Owned(replaced);
                }
            }
        }
        out
    }

    /// True when `text` holds something this redactor would replace.
    pub fn finds_secret(&self, text: &str) -> bool {
        matches!(self.redact(text), Cow::Owned(_))
    }

    /// The error with every message scrubbed; its kind, status and retry hints are kept.
    pub fn redact_error(&self, error: LlmError) -> LlmError {
        let r = |s: String| match self.redact(&s) {
            Cow::Borrowed(_) => s,
            Cow::Owned(o) => o,
        };
        match error {
            LlmError::InvalidRequest { provider, message } => LlmError::InvalidRequest {
                provider,
                message: r(message),
            },
            LlmError::Authentication {
                provider,
                status,
                message,
            } => LlmError::Authentication {
                provider,
                status,
                message: r(message),
            },
            LlmError::ModelNotFound {
                provider,
                model,
                message,
            } => LlmError::ModelNotFound {
                provider,
                model,
                message: r(message),
            },
            LlmError::RateLimited {
                provider,
                message,
                retry_after,
            } => LlmError::RateLimited {
                provider,
                message: r(message),
                retry_after,
            },
            LlmError::QuotaExceeded { provider, message } => LlmError::QuotaExceeded {
                provider,
                message: r(message),
            },
            LlmError::Server {
                provider,
                status,
                message,
                retry_after,
            } => LlmError::Server {
                provider,
                status,
                message: r(message),
                retry_after,
            },
            LlmError::Connection { provider, message } => LlmError::Connection {
                provider,
                message: r(message),
            },
            LlmError::Decode {
                provider,
                message,
                excerpt,
            } => LlmError::Decode {
                provider,
                message: r(message),
                excerpt: r(excerpt),
            },
            LlmError::Unavailable { provider, message } => LlmError::Unavailable {
                provider,
                message: r(message),
            },
            LlmError::RetriesExhausted {
                attempts,
                waited,
                last,
            } => LlmError::RetriesExhausted {
                attempts,
                waited,
                last: Box::new(self.redact_error(*last)),
            },
            LlmError::FailoverExhausted { failures } => LlmError::FailoverExhausted {
                failures: failures
                    .into_iter()
                    .map(|(p, e)| (p, self.redact_error(e)))
                    .collect(),
            },
            LlmError::BudgetExceeded { message } => LlmError::BudgetExceeded {
                message: r(message),
            },
            LlmError::Blocked { guard, reason } => LlmError::Blocked {
                guard,
                reason: r(reason),
            },
            LlmError::Other { provider, message } => LlmError::Other {
                provider,
                message: r(message),
            },
            other => other,
        }
    }
}

/// A `MakeWriter` that scrubs every line through a [`Redactor`] before passing it on.
///
/// Each writer it makes buffers what is written and hands the scrubbed text to the inner
/// writer when a line is complete (and whatever is left when dropped), so a secret split
/// across several `write` calls of one event is still found.
#[derive(Debug, Clone)]
pub struct RedactingMakeWriter<M> {
    inner: M,
    redactor: Redactor,
}

impl<M> RedactingMakeWriter<M> {
    /// Wraps `inner`.
    pub fn new(inner: M, redactor: Redactor) -> Self {
        Self { inner, redactor }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for RedactingMakeWriter<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter {
            inner: self.inner.make_writer(),
            redactor: self.redactor.clone(),
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        RedactingWriter {
            inner: self.inner.make_writer_for(meta),
            redactor: self.redactor.clone(),
            buf: Vec::new(),
        }
    }
}

/// The writer of [`RedactingMakeWriter`].
#[derive(Debug)]
pub struct RedactingWriter<W: io::Write> {
    inner: W,
    redactor: Redactor,
    buf: Vec<u8>,
}

impl<W: io::Write> RedactingWriter<W> {
    fn write_clean(&mut self, chunk: &[u8]) -> io::Result<()> {
        let text = match std::str::from_utf8(chunk) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(chunk),
        };
        let clean = self.redactor.redact(&text);
        self.inner.write_all(clean.as_bytes())
    }

    fn write_out(&mut self, upto: usize) -> io::Result<()> {
        let rest = self.buf.split_off(upto);
        let chunk = std::mem::replace(&mut self.buf, rest);
        self.write_clean(&chunk)
    }
}

impl<W: io::Write> io::Write for RedactingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // The usual case: whole lines in one write with nothing held back, scrubbed as they
        // are (no copy).
        if self.buf.is_empty() && data.last() == Some(&b'\n') {
            self.write_clean(data)?;
            return Ok(data.len());
        }
        self.buf.extend_from_slice(data);
        if let Some(pos) = self.buf.iter().rposition(|b| *b == b'\n') {
            self.write_out(pos + 1)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let n = self.buf.len();
        if n > 0 {
            self.write_out(n)?;
        }
        self.inner.flush()
    }
}

impl<W: io::Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let n = self.buf.len();
            // Nothing can report a failed write from a drop; the line is lost, not leaked.
            let _ = self.write_out(n);
        }
    }
}

/// A layer that scrubs the text of every error a service returns (see
/// [`Redactor::redact_error`]).
#[derive(Debug, Clone)]
pub struct RedactErrorsLayer {
    redactor: Redactor,
}

impl RedactErrorsLayer {
    /// A layer using `redactor`.
    pub fn new(redactor: Redactor) -> Self {
        Self { redactor }
    }
}

impl<S> Layer<S> for RedactErrorsLayer {
    type Service = RedactErrors<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RedactErrors {
            inner,
            redactor: self.redactor.clone(),
        }
    }
}

/// The service of [`RedactErrorsLayer`].
#[derive(Debug, Clone)]
pub struct RedactErrors<S> {
    inner: S,
    redactor: Redactor,
}

impl<S, Req> Service<Req> for RedactErrors<S>
where
    S: Service<Req, Error = LlmError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = LlmError;
    type Future = flowloom_core::provider::BoxFuture<Result<S::Response, LlmError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| self.redactor.redact_error(e))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let fut = self.inner.call(req);
        let redactor = self.redactor.clone();
        Box::pin(async move { fut.await.map_err(|e| redactor.redact_error(e)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn patterns_cover_headers_and_keys() {
        let r = Redactor::new();
        for (input, gone) in [
            ("Authorization: Bearer abcdef123456", "abcdef123456"),
            (
                r#"{"authorization":"Bearer tok_987654321"}"#,
                "tok_987654321",
            ),
            ("authorization=Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
            ("header x-api-key: key-material-1", "key-material-1"),
            (r#"{"api_key": "zzz-9999-yyyy"}"#, "zzz-9999-yyyy"),
            ("use sk-proj-AbC123_def456-ghi", "sk-proj-AbC123_def456-ghi"),
            ("bearer eyJhbGciOi.payload.sig", "eyJhbGciOi.payload.sig"),
        ] {
            let out = r.redact(input);
            assert!(!out.contains(gone), "{input} -> {out}");
            assert!(out.contains(REDACTED), "{input} -> {out}");
        }
    }

    #[test]
    fn the_literal_gate_lets_every_pattern_through_in_any_case() {
        let r = Redactor::new();
        for input in [
            "AUTHORIZATION: BEARER abcdef123456",
            "X-API-KEY: abcdef123456",
            r#"{"ApiKey":"abcdef123456"}"#,
            "BeArEr abcdef123456",
        ] {
            assert!(may_hold_credential(input), "{input}");
            assert!(!r.redact(input).contains("abcdef123456"), "{input}");
        }
        assert!(!may_hold_credential(
            r#"{"level":"INFO","fields":{"message":"model call finished"}}"#
        ));
    }

    #[test]
    fn every_pattern_compiles() {
        assert_eq!(PATTERNS.len(), 4);
    }

    #[test]
    fn non_ascii_lines_are_scrubbed_too() {
        let r = Redactor::new();
        let out = r.redact("busy 384µs — clé sk-proj-AbCdEfGh12345678 fin");
        assert_eq!(out, "busy 384µs — clé [REDACTED] fin");
    }

    #[test]
    fn redaction_is_idempotent() {
        let r = Redactor::new().with_secret("canary-secret-99");
        for input in [
            r#"{"api_key":"canary-secret-99"}"#,
            "Authorization: Bearer canary-secret-99",
            "x-api-key: canary-secret-99",
        ] {
            let once = r.redact(input).into_owned();
            assert!(!once.contains("]]"), "{once}");
            assert_eq!(r.redact(&once), once);
        }
    }

    #[test]
    fn plain_text_is_borrowed_untouched() {
        let r = Redactor::new().with_secret("very-secret-value");
        let text = "the model answered: sky is blue";
        assert!(matches!(r.redact(text), Cow::Borrowed(_)));
        assert!(!r.finds_secret(text));
    }

    #[test]
    fn known_secret_and_its_escaped_forms() {
        let r = Redactor::new().with_secret("pa\"ss\\word-123");
        assert!(!r.redact("x pa\"ss\\word-123 y").contains("word-123"));
        assert!(!r.redact(r#"x pa\"ss\\word-123 y"#).contains("word-123"));
    }

    #[test]
    fn short_secret_is_refused_with_a_reason() {
        let err = Redactor::new().try_with_secret("abc").unwrap_err();
        assert_eq!(err.len, 3);
        assert!(err.to_string().contains("at least 6"));
        assert_eq!(Redactor::new().with_secret("").secret_count(), 0);
    }

    #[test]
    fn debug_does_not_print_secrets() {
        let r = Redactor::new().with_secret("top-secret-xyz");
        assert!(!format!("{r:?}").contains("top-secret"));
    }

    #[test]
    fn error_text_is_scrubbed_and_kind_kept() {
        let r = Redactor::new().with_secret("canary-key-000111");
        let e = LlmError::RetriesExhausted {
            attempts: 2,
            waited: std::time::Duration::from_secs(1),
            last: Box::new(LlmError::Authentication {
                provider: "openai".into(),
                status: 401,
                message: "Incorrect API key provided: canary-key-000111".into(),
            }),
        };
        let out = r.redact_error(e);
        assert!(!out.to_string().contains("canary-key"));
        assert_eq!(out.status(), Some(401));
    }

    #[test]
    fn writer_scrubs_secret_split_across_writes() {
        let out = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);
        impl io::Write for Sink {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let out2 = Arc::clone(&out);
        let mw = RedactingMakeWriter::new(
            move || Sink(Arc::clone(&out2)),
            Redactor::new().with_secret("split-secret-42"),
        );
        {
            let mut w = mw.make_writer();
            w.write_all(b"a split-se").unwrap();
            w.write_all(b"cret-42 b\n").unwrap();
        }
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        assert_eq!(text, format!("a {REDACTED} b\n"));
    }
}
