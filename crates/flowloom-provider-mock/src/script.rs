//! The script of a scripted mock: [`MockScript`], its [`MockRule`]s and [`MockAnswer`]s.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flowloom_core::{LlmError, LlmRequest};
use regex::Regex;

use crate::error::ScriptError;

/// Which error a scripted answer simulates, and the [`LlmError`] variant it becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MockErrorKind {
    /// `rate_limit` → [`LlmError::RateLimited`] (429; `retry_after` optional).
    RateLimit,
    /// `server` → [`LlmError::Server`] (`status` 500–599, default 500; `retry_after` optional).
    Server,
    /// `timeout` → [`LlmError::Timeout`] (`elapsed` is the answer's latency).
    Timeout,
    /// `auth` → [`LlmError::Authentication`] (`status` 401 or 403, default 401).
    Auth,
    /// `invalid_request` → [`LlmError::InvalidRequest`] (400).
    InvalidRequest,
    /// `quota` → [`LlmError::QuotaExceeded`] (a 429 that waiting will not fix).
    Quota,
}

impl MockErrorKind {
    /// Every kind, in the order error messages list them.
    pub const ALL: [MockErrorKind; 6] = [
        MockErrorKind::RateLimit,
        MockErrorKind::Server,
        MockErrorKind::Timeout,
        MockErrorKind::Auth,
        MockErrorKind::InvalidRequest,
        MockErrorKind::Quota,
    ];

    /// The script's spelling, e.g. `rate_limit`.
    pub fn as_str(self) -> &'static str {
        match self {
            MockErrorKind::RateLimit => "rate_limit",
            MockErrorKind::Server => "server",
            MockErrorKind::Timeout => "timeout",
            MockErrorKind::Auth => "auth",
            MockErrorKind::InvalidRequest => "invalid_request",
            MockErrorKind::Quota => "quota",
        }
    }

    /// Reads the script's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// `rate_limit, server, timeout, auth, invalid_request, quota`.
    pub fn names() -> String {
        Self::ALL.map(MockErrorKind::as_str).join(", ")
    }
}

impl fmt::Display for MockErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A simulated error.
///
/// ```
/// use flowloom_provider_mock::{MockError, MockErrorKind};
/// use std::time::Duration;
/// let e = MockError::new(MockErrorKind::RateLimit).with_retry_after(Duration::from_secs(1));
/// let err = e.to_llm_error("mock", Duration::ZERO);
/// assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
/// assert!(err.is_retryable());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockError {
    kind: MockErrorKind,
    message: Option<String>,
    status: Option<u16>,
    retry_after: Option<Duration>,
}

impl MockError {
    /// An error of `kind` with the default message and status.
    pub fn new(kind: MockErrorKind) -> Self {
        Self {
            kind,
            message: None,
            status: None,
            retry_after: None,
        }
    }

    /// The kind.
    pub fn kind(&self) -> MockErrorKind {
        self.kind
    }

    /// Sets the message the error carries (default: `simulated <kind> error`).
    #[must_use]
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Sets the HTTP status, for `server` (500–599) and `auth` (401 or 403). A script that
    /// sets a status on another kind, or outside those ranges, is rejected when it is read;
    /// built in code, such a status is ignored (`server` reports 500, `auth` 401).
    #[must_use]
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Sets how long the provider asks to wait, for `rate_limit` and `server`.
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// Checks that the status and `retry_after` suit the kind. Returns `(field, message)`.
    pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(s) = self.status {
            match self.kind {
                MockErrorKind::Server if !(500..=599).contains(&s) => {
                    return Err((
                        "status",
                        format!("status {s} is not a server error; use 500 to 599"),
                    ));
                }
                MockErrorKind::Auth if s != 401 && s != 403 => {
                    return Err((
                        "status",
                        format!("status {s} is not an authentication error; use 401 or 403"),
                    ));
                }
                MockErrorKind::Server | MockErrorKind::Auth => {}
                k => {
                    return Err((
                        "status",
                        format!("`status` applies only to `server` and `auth` errors, not `{k}`"),
                    ));
                }
            }
        }
        if self.retry_after.is_some()
            && !matches!(self.kind, MockErrorKind::RateLimit | MockErrorKind::Server)
        {
            return Err((
                "retry_after",
                format!(
                    "`retry_after` applies only to `rate_limit` and `server` errors, not `{}`",
                    self.kind
                ),
            ));
        }
        Ok(())
    }

    /// The [`LlmError`] this simulates, from `provider`, after `latency`.
    pub fn to_llm_error(&self, provider: &str, latency: Duration) -> LlmError {
        let provider = provider.to_owned();
        let message = self
            .message
            .clone()
            .unwrap_or_else(|| format!("simulated {} error", self.kind));
        match self.kind {
            MockErrorKind::RateLimit => LlmError::RateLimited {
                provider,
                message,
                retry_after: self.retry_after,
            },
            MockErrorKind::Server => LlmError::Server {
                provider,
                status: self
                    .status
                    .filter(|s| (500..=599).contains(s))
                    .unwrap_or(500),
                message,
                retry_after: self.retry_after,
            },
            MockErrorKind::Timeout => LlmError::Timeout {
                provider,
                elapsed: latency,
            },
            MockErrorKind::Auth => LlmError::Authentication {
                provider,
                status: self
                    .status
                    .filter(|s| *s == 401 || *s == 403)
                    .unwrap_or(401),
                message,
            },
            MockErrorKind::InvalidRequest => LlmError::InvalidRequest { provider, message },
            MockErrorKind::Quota => LlmError::QuotaExceeded { provider, message },
        }
    }
}

/// The token usage a scripted answer reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MockUsage {
    /// Computed from the texts (the default): prompt tokens from every message's content,
    /// completion tokens from the answer, each `ceil(chars / 4)` with a minimum of 1.
    #[default]
    Computed,
    /// Exactly these counts (the total is their sum).
    Fixed {
        /// Prompt tokens.
        prompt_tokens: u64,
        /// Completion tokens.
        completion_tokens: u64,
    },
    /// No usage at all: `LlmResponse::usage` is `None`, as from a provider that reports none.
    None,
}

/// What an answer says: the request's prompt, a fixed text, or an error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// The last user message, verbatim.
    Echo,
    /// This text.
    Text(Arc<str>),
    /// This error.
    Error(MockError),
}

/// One answer: a [`Reply`], the usage it reports, and how long it takes.
///
/// ```
/// use flowloom_provider_mock::{MockAnswer, MockUsage};
/// use std::time::Duration;
/// let a = MockAnswer::text("YES")
///     .with_latency(Duration::from_millis(20))
///     .with_usage(MockUsage::Fixed { prompt_tokens: 12, completion_tokens: 1 });
/// assert_eq!(a.latency(), Duration::from_millis(20));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockAnswer {
    pub(crate) reply: Reply,
    pub(crate) usage: MockUsage,
    pub(crate) latency: Duration,
}

impl MockAnswer {
    /// Echoes the last user message.
    pub fn echo() -> Self {
        Self::from_reply(Reply::Echo)
    }
    /// Answers `text`.
    pub fn text(text: impl Into<String>) -> Self {
        Self::from_reply(Reply::Text(Arc::from(text.into())))
    }
    /// Fails with `error`.
    pub fn error(error: MockError) -> Self {
        Self::from_reply(Reply::Error(error))
    }
    fn from_reply(reply: Reply) -> Self {
        Self {
            reply,
            usage: MockUsage::Computed,
            latency: Duration::ZERO,
        }
    }
    /// Waits `latency` before answering (`tokio::time::sleep` in async code,
    /// `std::thread::sleep` through [`BlockingProvider`](flowloom_core::BlockingProvider)).
    #[must_use]
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }
    /// Sets the reported usage.
    #[must_use]
    pub fn with_usage(mut self, usage: MockUsage) -> Self {
        self.usage = usage;
        self
    }
    /// What it says.
    pub fn reply(&self) -> &Reply {
        &self.reply
    }
    /// The reported usage.
    pub fn usage(&self) -> MockUsage {
        self.usage
    }
    /// How long it takes.
    pub fn latency(&self) -> Duration {
        self.latency
    }
}

/// One rule of a script: when the last user message matches `pattern` (and the model is
/// `model`, if set), it answers. A rule with several answers gives them to successive
/// matching calls, then keeps giving the last one.
///
/// ```
/// use flowloom_provider_mock::{MockAnswer, MockError, MockErrorKind, MockRule};
/// let rule = MockRule::new("flaky", MockAnswer::error(MockError::new(MockErrorKind::RateLimit)))
///     .unwrap()
///     .then(MockAnswer::text("recovered"));
/// assert_eq!(rule.answers().len(), 2);
/// assert!(MockRule::new("(unclosed", MockAnswer::echo()).is_err());
/// ```
#[derive(Debug)]
pub struct MockRule {
    pattern: Option<Regex>,
    model: Option<String>,
    answers: Vec<MockAnswer>,
    calls: AtomicUsize,
}

impl Clone for MockRule {
    /// A copy whose sequence starts again from its first answer.
    fn clone(&self) -> Self {
        Self {
            pattern: self.pattern.clone(),
            model: self.model.clone(),
            answers: self.answers.clone(),
            calls: AtomicUsize::new(0),
        }
    }
}

impl MockRule {
    /// A rule matching `pattern` (a regex, searched anywhere in the last user message; use
    /// `^...$` to anchor and `(?i)` to ignore case) that answers `answer`.
    pub fn new(pattern: &str, answer: MockAnswer) -> Result<Self, ScriptError> {
        let regex = Regex::new(pattern).map_err(|e| ScriptError::Invalid {
            rule: None,
            rule_match: Some(pattern.to_owned()),
            field: Some("match".to_owned()),
            message: format!("not a valid regular expression: {e}"),
        })?;
        Ok(Self {
            pattern: Some(regex),
            model: None,
            answers: vec![answer],
            calls: AtomicUsize::new(0),
        })
    }

    /// A rule that matches every message (of `model`, if set) and answers `answer`.
    pub fn any(answer: MockAnswer) -> Self {
        Self {
            pattern: None,
            model: None,
            answers: vec![answer],
            calls: AtomicUsize::new(0),
        }
    }

    pub(crate) fn from_parts(
        pattern: Option<Regex>,
        model: Option<String>,
        answers: Vec<MockAnswer>,
    ) -> Self {
        Self {
            pattern,
            model,
            answers,
            calls: AtomicUsize::new(0),
        }
    }

    /// Matches only requests for exactly this model name.
    #[must_use]
    pub fn for_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Adds an answer for the next matching call (builds a sequence).
    #[must_use]
    pub fn then(mut self, answer: MockAnswer) -> Self {
        self.answers.push(answer);
        self
    }

    /// The regex source, if the rule has one.
    pub fn pattern(&self) -> Option<&str> {
        self.pattern.as_ref().map(Regex::as_str)
    }

    /// The model filter, if any.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// The answers, in order.
    pub fn answers(&self) -> &[MockAnswer] {
        &self.answers
    }

    fn matches(&self, prompt: &str, model: &str) -> bool {
        self.model.as_deref().is_none_or(|m| m == model)
            && self.pattern.as_ref().is_none_or(|p| p.is_match(prompt))
    }

    /// The answer for this call: the next of the sequence, or the last one once it is used up.
    fn next_answer(&self) -> Option<&MockAnswer> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        self.answers.get(n).or_else(|| self.answers.last())
    }

    fn rewind(&self) {
        self.calls.store(0, Ordering::Relaxed);
    }
}

/// An ordered list of rules and a default answer. See the crate docs for the YAML form.
///
/// ```
/// use flowloom_provider_mock::{MockAnswer, MockRule, MockScript};
/// let script = MockScript::echo()
///     .with_rule(MockRule::new("(?i)is this safe", MockAnswer::text("YES")).unwrap().for_model("gpt-4o"));
/// assert_eq!(script.rules().len(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct MockScript {
    pub(crate) default: MockAnswer,
    pub(crate) rules: Vec<MockRule>,
}

impl Default for MockScript {
    fn default() -> Self {
        Self::echo()
    }
}

impl MockScript {
    /// No rules; every call echoes the last user message.
    pub fn echo() -> Self {
        Self {
            default: MockAnswer::echo(),
            rules: Vec::new(),
        }
    }

    /// No rules; every call answers `text`.
    pub fn fixed(text: impl Into<String>) -> Self {
        Self {
            default: MockAnswer::text(text),
            rules: Vec::new(),
        }
    }

    /// Reads a script from YAML (see the crate docs for the shape).
    pub fn from_yaml_str(yaml: &str) -> Result<Self, ScriptError> {
        crate::parse::parse_script(yaml)
    }

    /// Reads a script from a YAML file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ScriptError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ScriptError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::from_yaml_str(&text).map_err(|e| ScriptError::InFile {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// Appends a rule (rules are tried in order; the first that matches answers).
    #[must_use]
    pub fn with_rule(mut self, rule: MockRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Sets the answer used when no rule matches.
    #[must_use]
    pub fn with_default(mut self, answer: MockAnswer) -> Self {
        self.default = answer;
        self
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[MockRule] {
        &self.rules
    }

    /// The answer used when no rule matches.
    pub fn default_answer(&self) -> &MockAnswer {
        &self.default
    }

    /// Picks the answer for `request`, advancing the matching rule's sequence.
    pub(crate) fn answer_for(&self, request: &LlmRequest) -> &MockAnswer {
        if self.rules.is_empty() {
            return &self.default;
        }
        let prompt = request.prompt().unwrap_or_default();
        self.rules
            .iter()
            .find(|r| r.matches(prompt, &request.model))
            .and_then(MockRule::next_answer)
            .unwrap_or(&self.default)
    }

    /// Starts every sequence again from its first answer.
    pub(crate) fn rewind(&self) {
        for r in &self.rules {
            r.rewind();
        }
    }
}
