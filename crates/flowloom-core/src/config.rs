//! [`FrameworkConfig`]: defaults and validation (reading env vars and files is the engine's).

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::request::{DEFAULT_MAX_TOKENS, DEFAULT_MODEL, DEFAULT_TEMPERATURE};
use crate::validation::{ValidationError, ValidationErrors, max_tokens, non_empty, temperature};

/// A secret string (an API key). `Debug` and `Display` print `[REDACTED]`; it is never
/// serialized (serialization writes `null`). Deserialization reads a string, and reads the
/// `null` that serialization wrote as an empty secret, so a serialized configuration can be
/// read back (without its secret).
///
/// ```
/// use flowloom_core::Secret;
/// let s = Secret::new("sk-live-123");
/// assert_eq!(format!("{s:?}"), "[REDACTED]");
/// assert_eq!(s.expose(), "sk-live-123");
/// assert_eq!(serde_json::to_string(&s).unwrap(), "null");
/// let back: Secret = serde_json::from_str("null").unwrap();
/// assert!(back.is_empty());
/// ```
#[derive(Clone, Default, PartialEq, Eq, JsonSchema)]
#[schemars(transparent)]
pub struct Secret(#[schemars(with = "Option<String>")] String);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<String>::deserialize(d).map(|s| Secret(s.unwrap_or_default()))
    }
}

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself: use only to send it where it belongs.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_none()
    }
}

/// How a run is executed when the caller does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionMode {
    /// Non-blocking (the default, FR-022).
    #[default]
    Async,
    /// Blocking.
    Sync,
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    /// Everything.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation (the default).
    #[default]
    Info,
    /// Problems that were handled.
    Warn,
    /// Failures.
    Error,
}

impl LogLevel {
    /// Parses `trace`, `debug`, `info`, `warn`/`warning` or `error`, in any case.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "trace" => Ok(LogLevel::Trace),
            "debug" => Ok(LogLevel::Debug),
            "info" => Ok(LogLevel::Info),
            "warn" | "warning" => Ok(LogLevel::Warn),
            "error" => Ok(LogLevel::Error),
            _ => Err(ValidationError::new(
                "log_level",
                format!("{s:?}"),
                "one of TRACE, DEBUG, INFO, WARN, ERROR",
            )),
        }
    }
    /// The lower-case name, as `tracing` filters spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Runtime configuration, from `FLOWLOOM_*` variables over a YAML file over these defaults.
///
/// ```
/// use flowloom_core::FrameworkConfig;
/// let c = FrameworkConfig::default();
/// assert_eq!(c.default_model, "gpt-4o-mini");
/// assert!(c.validate().is_ok());
/// let bad = FrameworkConfig { default_temperature: 9.0, ..FrameworkConfig::default() };
/// let err = bad.validate().unwrap_err().to_string();
/// assert!(err.contains("default_temperature") && err.contains("9") && err.contains("0.0 to 2.0"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FrameworkConfig {
    /// `OPENAI_API_KEY`; required only when the OpenAI provider is used. Never serialized.
    pub openai_api_key: Secret,
    /// `OPENAI_BASE_URL`; `None` means OpenAI itself.
    pub openai_base_url: Option<String>,
    /// `FLOWLOOM_DEFAULT_MODEL`.
    pub default_model: String,
    /// `FLOWLOOM_DEFAULT_TEMPERATURE`, 0.0–2.0.
    pub default_temperature: f64,
    /// `FLOWLOOM_DEFAULT_MAX_TOKENS`, 1–128000.
    pub default_max_tokens: u32,
    /// `FLOWLOOM_DEFAULT_TIMEOUT` in seconds; `None` = no timeout.
    pub default_timeout_seconds: Option<f64>,
    /// `FLOWLOOM_DEFAULT_MODE`: `async` or `sync`.
    pub default_execution_mode: ExecutionMode,
    /// `FLOWLOOM_MAX_RETRIES`: attempts per model call, 1–10.
    pub max_retry_attempts: u32,
    /// `FLOWLOOM_RETRY_BACKOFF`: backoff multiplier, 1.0–10.0.
    pub retry_backoff_factor: f64,
    /// `FLOWLOOM_LOG_LEVEL`.
    pub log_level: LogLevel,
    /// `FLOWLOOM_LOG_PROMPTS`: log prompt and completion text (off by default).
    pub log_prompts: bool,
}

impl Default for FrameworkConfig {
    fn default() -> Self {
        Self {
            openai_api_key: Secret::default(),
            openai_base_url: None,
            default_model: DEFAULT_MODEL.to_owned(),
            default_temperature: DEFAULT_TEMPERATURE,
            default_max_tokens: DEFAULT_MAX_TOKENS,
            default_timeout_seconds: None,
            default_execution_mode: ExecutionMode::Async,
            max_retry_attempts: 3,
            retry_backoff_factor: 2.0,
            log_level: LogLevel::Info,
            log_prompts: false,
        }
    }
}

impl FrameworkConfig {
    /// Checks every field; every problem is reported, each naming the field, the value found
    /// and what is allowed.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = Vec::new();
        non_empty("default_model", &self.default_model, &mut errors);
        temperature("default_temperature", self.default_temperature, &mut errors);
        max_tokens("default_max_tokens", self.default_max_tokens, &mut errors);
        if let Some(t) = self.default_timeout_seconds
            && !(t > 0.0 && Duration::try_from_secs_f64(t).is_ok())
        {
            errors.push(ValidationError::new(
                "default_timeout_seconds",
                t,
                "a number of seconds > 0, or unset for no timeout",
            ));
        }
        if !(1..=10).contains(&self.max_retry_attempts) {
            errors.push(ValidationError::new(
                "max_retry_attempts",
                self.max_retry_attempts,
                "an integer from 1 to 10 (1 = no retry)",
            ));
        }
        if !(1.0..=10.0).contains(&self.retry_backoff_factor) {
            errors.push(ValidationError::new(
                "retry_backoff_factor",
                self.retry_backoff_factor,
                "a number from 1.0 to 10.0",
            ));
        }
        if let Some(url) = &self.openai_base_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            errors.push(ValidationError::new(
                "openai_base_url",
                format!("{url:?}"),
                "an http:// or https:// URL, e.g. https://api.openai.com/v1",
            ));
        }
        ValidationErrors::check(errors)
    }

    /// The default timeout as a `Duration`; `None` when unset, and also when the value is not
    /// a valid duration (negative, NaN, too large), which [`FrameworkConfig::validate`] reports.
    pub fn default_timeout(&self) -> Option<Duration> {
        self.default_timeout_seconds
            .and_then(|t| Duration::try_from_secs_f64(t).ok())
    }
}
