//! Scripted answers that replace the mock server's default one: HTTP errors, delays, malformed
//! bodies, dropped connections, or any body you write yourself.

use std::time::Duration;

use serde_json::{Value, json};

/// What the server does instead of its default answer, for one request (when queued with
/// [`MockOpenAiServer::push_fault`](super::MockOpenAiServer::push_fault)) or for every
/// request a [`Matcher`] accepts (with [`MockOpenAiServer::add_rule`](super::MockOpenAiServer::add_rule)).
///
/// ```
/// use flowloom_testkit::server::Fault;
/// use std::time::Duration;
///
/// // A rate limit asking the client to come back in 2 seconds:
/// let f = Fault::rate_limited(Some(2));
/// // An exhausted quota (a 429 that waiting will not fix):
/// let q = Fault::insufficient_quota();
/// // The default answer, 500 ms late:
/// let slow = Fault::delay(Duration::from_millis(500));
/// // A 503 with an extra header:
/// let s = Fault::status(503).with_header("x-request-id", "req_1");
/// # let _ = (f, q, slow, s);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub(crate) action: Action,
    pub(crate) delay: Option<Duration>,
    pub(crate) headers: Vec<(String, String)>,
}

/// What a [`Fault`] answers with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// The normal deterministic answer (used with a delay or extra headers).
    Default,
    /// A status and a JSON body.
    Json { status: u16, body: Value },
    /// A status, a content type and raw bytes.
    Raw {
        status: u16,
        content_type: String,
        body: String,
    },
    /// Raw SSE text sent as the given pieces, each written separately.
    Sse { pieces: Vec<String> },
    /// Start the normal answer, then drop the connection after this many body pieces.
    Disconnect { after_pieces: usize },
}

impl Fault {
    fn new(action: Action) -> Self {
        Self {
            action,
            delay: None,
            headers: Vec::new(),
        }
    }

    /// The default answer, unchanged (useful with [`Fault::with_delay`] or
    /// [`Fault::with_header`]).
    pub fn default_answer() -> Self {
        Self::new(Action::Default)
    }

    /// The default answer after waiting `delay` (to test client timeouts).
    pub fn delay(delay: Duration) -> Self {
        Self::default_answer().with_delay(delay)
    }

    /// An HTTP `status` with an OpenAI-style error body whose `type` and `code` suit the
    /// status (e.g. 400 `invalid_request_error`, 401 `invalid_api_key`, 404 `model_not_found`,
    /// 429 `rate_limit_exceeded`, 5xx `server_error`).
    pub fn status(status: u16) -> Self {
        let (kind, code, message) = match status {
            400 => (
                "invalid_request_error",
                "invalid_request",
                "The request is invalid.",
            ),
            401 => (
                "invalid_request_error",
                "invalid_api_key",
                "Incorrect API key provided.",
            ),
            403 => (
                "invalid_request_error",
                "unsupported_country_region_territory",
                "Access denied.",
            ),
            404 => (
                "invalid_request_error",
                "model_not_found",
                "The model does not exist or you do not have access to it.",
            ),
            408 => ("server_error", "timeout", "Request timed out."),
            409 => ("server_error", "conflict", "Conflict, please retry."),
            429 => (
                "requests",
                "rate_limit_exceeded",
                "Rate limit reached for requests.",
            ),
            s if s >= 500 => (
                "server_error",
                "server_error",
                "The server had an error while processing your request.",
            ),
            _ => ("invalid_request_error", "error", "Scripted error."),
        };
        Self::error(status, kind, code, message)
    }

    /// An HTTP `status` with the body `{"error":{"message","type","code","param":null}}`.
    pub fn error(
        status: u16,
        kind: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::json(
            status,
            json!({"error": {
                "message": message.into(),
                "type": kind.into(),
                "param": null,
                "code": code.into(),
            }}),
        )
    }

    /// A 429 rate limit (`rate_limit_exceeded`), with `Retry-After: <seconds>` when given.
    pub fn rate_limited(retry_after_secs: Option<u64>) -> Self {
        let f = Self::status(429);
        match retry_after_secs {
            Some(s) => f.with_retry_after(s.to_string()),
            None => f,
        }
    }

    /// A 429 for an exhausted quota (`insufficient_quota`), which waiting does not fix.
    pub fn insufficient_quota() -> Self {
        Self::error(
            429,
            "insufficient_quota",
            "insufficient_quota",
            "You exceeded your current quota, please check your plan and billing details.",
        )
    }

    /// Any status with any JSON body.
    pub fn json(status: u16, body: Value) -> Self {
        Self::new(Action::Json { status, body })
    }

    /// Any status with a raw body and content type.
    pub fn raw(status: u16, content_type: impl Into<String>, body: impl Into<String>) -> Self {
        Self::new(Action::Raw {
            status,
            content_type: content_type.into(),
            body: body.into(),
        })
    }

    /// A 200 `application/json` answer whose body is not valid JSON (cut off mid-way).
    pub fn malformed_body() -> Self {
        Self::raw(
            200,
            "application/json",
            r#"{"id":"chatcmpl-broken","object":"chat.completion","choices":[{"index":0,"mess"#,
        )
    }

    /// A 200 `text/event-stream` answer made of exactly these pieces of SSE text, each
    /// written separately (so events can be split across reads, comments and keep-alives
    /// inserted, `[DONE]` left out...).
    pub fn sse<I, S>(pieces: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(Action::Sse {
            pieces: pieces.into_iter().map(Into::into).collect(),
        })
    }

    /// Starts the normal answer, then drops the connection after `after_pieces` pieces of
    /// the body: for a streamed chat completion a piece is one SSE event; for any other
    /// answer the body is sent in two halves and `after_pieces >= 1` sends the first half.
    pub fn disconnect_after(after_pieces: usize) -> Self {
        Self::new(Action::Disconnect { after_pieces })
    }

    /// Waits `delay` before answering.
    #[must_use]
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Adds a response header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds `Retry-After: value` (seconds, or an HTTP date).
    #[must_use]
    pub fn with_retry_after(self, value: impl Into<String>) -> Self {
        self.with_header("retry-after", value)
    }
}

/// Which requests a rule applies to; every condition set must hold.
///
/// ```
/// use flowloom_testkit::server::Matcher;
/// let m = Matcher::path("/v1/chat/completions").model("gpt-4o").body_contains("secret");
/// # let _ = m;
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matcher {
    pub(crate) path: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) body_contains: Option<String>,
}

impl Matcher {
    /// Every request.
    pub fn any() -> Self {
        Self::default()
    }

    /// Requests to this path (e.g. `/v1/embeddings`).
    pub fn path(path: impl Into<String>) -> Self {
        Self::default().and_path(path)
    }

    /// Also require this path.
    #[must_use]
    pub fn and_path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Also require the JSON body's `model` to be this.
    #[must_use]
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Also require the raw body to contain this text.
    #[must_use]
    pub fn body_contains(mut self, text: impl Into<String>) -> Self {
        self.body_contains = Some(text.into());
        self
    }

    pub(crate) fn matches(&self, path: &str, body: Option<&Value>, raw: &str) -> bool {
        if let Some(p) = &self.path
            && p != path
        {
            return false;
        }
        if let Some(m) = &self.model
            && body.and_then(|b| b.get("model")).and_then(Value::as_str) != Some(m.as_str())
        {
            return false;
        }
        if let Some(t) = &self.body_contains
            && !raw.contains(t.as_str())
        {
            return false;
        }
        true
    }
}
