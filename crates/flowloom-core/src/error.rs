//! Errors of model calls: one [`LlmError`] for every provider and layer.

use std::time::Duration;

/// Why a model or embedding call failed.
///
/// Retryable ([`LlmError::is_retryable`]): timeouts, rate limits (429 that is not a quota),
/// server errors (5xx), connection failures, and providers that are temporarily unavailable.
/// Not retryable: invalid requests (400), authentication (401/403), unknown models (404),
/// exhausted quota, decode errors and everything a layer decided (budgets, guards, retries
/// exhausted).
///
/// No variant ever carries an API key or an `Authorization` header.
///
/// ```
/// use flowloom_core::LlmError;
/// use std::time::Duration;
/// let e = LlmError::RateLimited { provider: "openai".into(), message: "slow down".into(),
///     retry_after: Some(Duration::from_secs(2)) };
/// assert!(e.is_retryable());
/// assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
/// assert_eq!(e.status(), Some(429));
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LlmError {
    /// The provider rejected the request as malformed (400, 422).
    #[error("{provider}: invalid request: {message}")]
    InvalidRequest {
        /// Provider name.
        provider: String,
        /// What the provider said.
        message: String,
    },
    /// The credentials were missing, wrong or not allowed (401, 403).
    #[error("{provider}: authentication failed (HTTP {status}): {message}")]
    Authentication {
        /// Provider name.
        provider: String,
        /// 401 or 403.
        status: u16,
        /// What went wrong and which variable or key to check (never the key itself).
        message: String,
    },
    /// The model does not exist or is not available to this account (404).
    #[error("{provider}: model `{model}` not found: {message}")]
    ModelNotFound {
        /// Provider name.
        provider: String,
        /// The model asked for.
        model: String,
        /// What the provider said.
        message: String,
    },
    /// Too many requests (429, also 408/409 where the provider asks to come back later).
    #[error("{provider}: rate limited{}: {message}", fmt_after(.retry_after))]
    RateLimited {
        /// Provider name.
        provider: String,
        /// What the provider said.
        message: String,
        /// How long the provider asked to wait.
        retry_after: Option<Duration>,
    },
    /// The account's quota or credit is exhausted (a 429 that waiting will not fix).
    #[error("{provider}: quota exhausted: {message}")]
    QuotaExceeded {
        /// Provider name.
        provider: String,
        /// What the provider said.
        message: String,
    },
    /// The provider failed (5xx), or answered 408/409.
    #[error("{provider}: server error (HTTP {status}){}: {message}", fmt_after(.retry_after))]
    Server {
        /// Provider name.
        provider: String,
        /// The HTTP status.
        status: u16,
        /// What the provider said.
        message: String,
        /// How long the provider asked to wait.
        retry_after: Option<Duration>,
    },
    /// The call took longer than allowed.
    #[error("{provider}: timed out after {elapsed:?}")]
    Timeout {
        /// Provider name (or the layer that timed out).
        provider: String,
        /// How long it ran.
        elapsed: Duration,
    },
    /// The provider could not be reached.
    #[error("{provider}: connection failed: {message}")]
    Connection {
        /// Provider name.
        provider: String,
        /// What failed.
        message: String,
    },
    /// The provider answered something that could not be read.
    #[error("{provider}: could not decode the response: {message} (body starts: {excerpt:?})")]
    Decode {
        /// Provider name.
        provider: String,
        /// What was wrong.
        message: String,
        /// The first bytes of the body, for diagnosis.
        excerpt: String,
    },
    /// The provider is temporarily unavailable (circuit open, overloaded, shutting down).
    #[error("{provider}: unavailable: {message}")]
    Unavailable {
        /// Provider name.
        provider: String,
        /// Why.
        message: String,
    },
    /// The provider does not support what was asked (streaming, embeddings, tools...).
    #[error("{provider}: not supported: {feature}")]
    Unsupported {
        /// Provider name.
        provider: String,
        /// What is missing.
        feature: String,
    },
    /// Every attempt failed; `last` is the final error.
    #[error("gave up after {attempts} attempts ({waited:?} spent waiting between them): {last}")]
    RetriesExhausted {
        /// How many attempts were made.
        attempts: u32,
        /// Total time spent waiting between attempts.
        waited: Duration,
        /// The last attempt's error.
        last: Box<LlmError>,
    },
    /// Every provider of a failover chain failed; one entry per provider tried, in order.
    #[error("all {} providers of the failover chain failed: {}", .failures.len(), fmt_failures(.failures))]
    FailoverExhausted {
        /// `(provider, error)` for each provider tried.
        failures: Vec<(String, LlmError)>,
    },
    /// A token or cost budget would be exceeded; the call was not made.
    #[error("budget exceeded: {message}")]
    BudgetExceeded {
        /// The limit and the spend so far.
        message: String,
    },
    /// A guard refused the request before it left (PII, input validation).
    #[error("blocked by the {guard} guard: {reason}")]
    Blocked {
        /// Which guard.
        guard: String,
        /// Why.
        reason: String,
    },
    /// The call was cancelled before it was made.
    #[error("cancelled")]
    Cancelled,
    /// Anything else, from a plugin provider.
    #[error("{provider}: {message}")]
    Other {
        /// Provider name.
        provider: String,
        /// What went wrong.
        message: String,
    },
}

fn fmt_after(d: &Option<Duration>) -> String {
    match d {
        Some(d) => format!(" (retry after {d:?})"),
        None => String::new(),
    }
}

fn fmt_failures(f: &[(String, LlmError)]) -> String {
    f.iter()
        .map(|(p, e)| format!("[{p}] {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A short, stable name for each kind of [`LlmError`], used as the `error.type` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`LlmError::InvalidRequest`]
    InvalidRequest,
    /// [`LlmError::Authentication`]
    Authentication,
    /// [`LlmError::ModelNotFound`]
    ModelNotFound,
    /// [`LlmError::RateLimited`]
    RateLimited,
    /// [`LlmError::QuotaExceeded`]
    QuotaExceeded,
    /// [`LlmError::Server`]
    Server,
    /// [`LlmError::Timeout`]
    Timeout,
    /// [`LlmError::Connection`]
    Connection,
    /// [`LlmError::Decode`]
    Decode,
    /// [`LlmError::Unavailable`]
    Unavailable,
    /// [`LlmError::Unsupported`]
    Unsupported,
    /// [`LlmError::RetriesExhausted`]
    RetriesExhausted,
    /// [`LlmError::FailoverExhausted`]
    FailoverExhausted,
    /// [`LlmError::BudgetExceeded`]
    BudgetExceeded,
    /// [`LlmError::Blocked`]
    Blocked,
    /// [`LlmError::Cancelled`]
    Cancelled,
    /// [`LlmError::Other`]
    Other,
}

impl ErrorKind {
    /// The snake_case name, e.g. `rate_limited`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::Authentication => "authentication",
            ErrorKind::ModelNotFound => "model_not_found",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::QuotaExceeded => "quota_exceeded",
            ErrorKind::Server => "server",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connection => "connection",
            ErrorKind::Decode => "decode",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::RetriesExhausted => "retries_exhausted",
            ErrorKind::FailoverExhausted => "failover_exhausted",
            ErrorKind::BudgetExceeded => "budget_exceeded",
            ErrorKind::Blocked => "blocked",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Other => "other",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl LlmError {
    /// Which kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            LlmError::InvalidRequest { .. } => ErrorKind::InvalidRequest,
            LlmError::Authentication { .. } => ErrorKind::Authentication,
            LlmError::ModelNotFound { .. } => ErrorKind::ModelNotFound,
            LlmError::RateLimited { .. } => ErrorKind::RateLimited,
            LlmError::QuotaExceeded { .. } => ErrorKind::QuotaExceeded,
            LlmError::Server { .. } => ErrorKind::Server,
            LlmError::Timeout { .. } => ErrorKind::Timeout,
            LlmError::Connection { .. } => ErrorKind::Connection,
            LlmError::Decode { .. } => ErrorKind::Decode,
            LlmError::Unavailable { .. } => ErrorKind::Unavailable,
            LlmError::Unsupported { .. } => ErrorKind::Unsupported,
            LlmError::RetriesExhausted { .. } => ErrorKind::RetriesExhausted,
            LlmError::FailoverExhausted { .. } => ErrorKind::FailoverExhausted,
            LlmError::BudgetExceeded { .. } => ErrorKind::BudgetExceeded,
            LlmError::Blocked { .. } => ErrorKind::Blocked,
            LlmError::Cancelled => ErrorKind::Cancelled,
            LlmError::Other { .. } => ErrorKind::Other,
        }
    }

    /// True for errors that may succeed when tried again: timeouts, rate limits, server
    /// errors, connection failures and temporary unavailability.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            LlmError::RateLimited { .. }
                | LlmError::Server { .. }
                | LlmError::Timeout { .. }
                | LlmError::Connection { .. }
                | LlmError::Unavailable { .. }
        )
    }

    /// How long the provider asked to wait before the next attempt, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::RateLimited { retry_after, .. } | LlmError::Server { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// The HTTP status behind the error, where there is one (for wrapping errors, the last
    /// attempt's).
    pub fn status(&self) -> Option<u16> {
        match self {
            LlmError::InvalidRequest { .. } => Some(400),
            LlmError::Authentication { status, .. } | LlmError::Server { status, .. } => {
                Some(*status)
            }
            LlmError::ModelNotFound { .. } => Some(404),
            LlmError::RateLimited { .. } | LlmError::QuotaExceeded { .. } => Some(429),
            LlmError::RetriesExhausted { last, .. } => last.status(),
            LlmError::FailoverExhausted { failures } => {
                failures.last().and_then(|(_, e)| e.status())
            }
            _ => None,
        }
    }

    /// True when the call ran out of time.
    pub fn is_timeout(&self) -> bool {
        match self {
            LlmError::Timeout { .. } => true,
            LlmError::RetriesExhausted { last, .. } => last.is_timeout(),
            _ => false,
        }
    }

    /// The provider the error came from, where known.
    pub fn provider(&self) -> Option<&str> {
        match self {
            LlmError::InvalidRequest { provider, .. }
            | LlmError::Authentication { provider, .. }
            | LlmError::ModelNotFound { provider, .. }
            | LlmError::RateLimited { provider, .. }
            | LlmError::QuotaExceeded { provider, .. }
            | LlmError::Server { provider, .. }
            | LlmError::Timeout { provider, .. }
            | LlmError::Connection { provider, .. }
            | LlmError::Decode { provider, .. }
            | LlmError::Unavailable { provider, .. }
            | LlmError::Unsupported { provider, .. }
            | LlmError::Other { provider, .. } => Some(provider),
            LlmError::RetriesExhausted { last, .. } => last.provider(),
            LlmError::FailoverExhausted { failures } => failures.last().map(|(p, _)| p.as_str()),
            _ => None,
        }
    }

    /// A plugin provider's error.
    pub fn other(provider: impl Into<String>, message: impl Into<String>) -> Self {
        LlmError::Other {
            provider: provider.into(),
            message: message.into(),
        }
    }
}

/// A `Result` whose error defaults to [`LlmError`].
pub type Result<T, E = LlmError> = std::result::Result<T, E>;
