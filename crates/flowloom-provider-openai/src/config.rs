//! Configuration of the provider: [`OpenAiConfig`], built with [`OpenAiBuilder`].

use std::time::Duration;

use flowloom_core::Secret;

/// The environment variable the API key is read from by default.
pub const API_KEY_VAR: &str = "OPENAI_API_KEY";
/// The environment variable the base URL is read from.
pub const BASE_URL_VAR: &str = "OPENAI_BASE_URL";
/// The environment variable the organization id is read from.
pub const ORG_VAR: &str = "OPENAI_ORG_ID";
/// The environment variable the project id is read from.
pub const PROJECT_VAR: &str = "OPENAI_PROJECT_ID";
/// OpenAI's own API.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// Most inputs OpenAI accepts in one embeddings request.
pub const MAX_EMBEDDING_INPUTS: usize = 2048;
/// Most tokens OpenAI accepts summed over the inputs of one embeddings request.
pub const MAX_EMBEDDING_TOKENS: usize = 300_000;

/// Which field carries the completion-token limit.
///
/// OpenAI's reasoning models (`o1`, `o3`, `o4`, `gpt-5`...) reject `max_tokens` and take
/// `max_completion_tokens`; most OpenAI-compatible servers (Ollama, older vLLM) know only
/// `max_tokens`. [`TokenLimitParam::Auto`] sends `max_completion_tokens` to models whose name
/// starts with one of [`OpenAiConfig::reasoning_model_prefixes`] and `max_tokens` to the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenLimitParam {
    /// By model name (the default).
    #[default]
    Auto,
    /// Always `max_tokens`.
    MaxTokens,
    /// Always `max_completion_tokens`.
    MaxCompletionTokens,
}

/// Whether `temperature` is sent.
///
/// Reasoning models accept only the default temperature and reject the field otherwise, so
/// [`TemperaturePolicy::Auto`] leaves it out for them (by the same name rule as
/// [`TokenLimitParam::Auto`]) and sends it to every other model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TemperaturePolicy {
    /// Left out for reasoning models only (the default).
    #[default]
    Auto,
    /// Always sent.
    Always,
    /// Never sent (the server's default applies).
    Never,
}

/// How the API key is sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AuthStyle {
    /// `Authorization: Bearer <key>` (OpenAI and most compatible servers).
    #[default]
    Bearer,
    /// The key as the value of this header (Azure-style deployments use `api-key`).
    Header(String),
}

/// Everything the provider needs; build it with [`OpenAiBuilder`]
/// (`OpenAiProvider::builder()`), which checks it.
///
/// `Debug` never shows the API key, nor the values of extra headers (they may hold secrets).
#[derive(Clone)]
pub struct OpenAiConfig {
    /// The API key; `None` only when [`OpenAiConfig::allow_missing_key`] is set.
    pub api_key: Option<Secret>,
    /// The environment variable (or other source) the key came from, named in errors.
    pub api_key_source: String,
    /// Accept a missing key (local servers such as Ollama need none).
    pub allow_missing_key: bool,
    /// How the key is sent.
    pub auth_style: AuthStyle,
    /// The API's base URL, e.g. `https://api.openai.com/v1` or `http://localhost:11434/v1`.
    pub base_url: String,
    /// Query parameters added to every URL (e.g. Azure's `api-version`).
    pub query: Vec<(String, String)>,
    /// `OpenAI-Organization` header.
    pub organization: Option<String>,
    /// `OpenAI-Project` header.
    pub project: Option<String>,
    /// Extra headers sent with every request.
    pub headers: Vec<(String, String)>,
    /// Most time to establish a connection.
    pub connect_timeout: Duration,
    /// Most time for a whole request, body (and stream) included; `None` (the default) for
    /// no limit. The framework imposes no time limit of its own: bound calls with a timeout
    /// layer (`flowloom-middleware`, whose recommended stack sets one per attempt) or set
    /// one here. A limit here costs a timer per call (about a tenth of the client's CPU per
    /// call at 256 concurrent calls against a local server).
    pub request_timeout: Option<Duration>,
    /// The name this provider reports in responses, usage and errors (`openai`, `ollama`...).
    pub provider_name: String,
    /// See [`TokenLimitParam`].
    pub token_limit_param: TokenLimitParam,
    /// See [`TemperaturePolicy`].
    pub temperature_policy: TemperaturePolicy,
    /// Model-name prefixes of reasoning models (default `o1`, `o3`, `o4`, `gpt-5`).
    pub reasoning_model_prefixes: Vec<String>,
    /// Ask streamed answers to end with a usage chunk (`stream_options.include_usage`).
    pub stream_include_usage: bool,
    /// Most inputs per embeddings request (at most [`MAX_EMBEDDING_INPUTS`]).
    pub embedding_batch_inputs: usize,
    /// Most estimated tokens per embeddings request (see [`crate::embeddings`]).
    pub embedding_batch_tokens: usize,
    /// How many embeddings requests of one call may be in flight at once.
    pub embedding_concurrency: usize,
    /// The `User-Agent` header sent.
    pub user_agent: String,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            api_key_source: API_KEY_VAR.to_owned(),
            allow_missing_key: false,
            auth_style: AuthStyle::Bearer,
            base_url: DEFAULT_BASE_URL.to_owned(),
            query: Vec::new(),
            organization: None,
            project: None,
            headers: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: None,
            provider_name: "openai".to_owned(),
            token_limit_param: TokenLimitParam::Auto,
            temperature_policy: TemperaturePolicy::Auto,
            reasoning_model_prefixes: ["o1", "o3", "o4", "gpt-5"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            stream_include_usage: true,
            embedding_batch_inputs: MAX_EMBEDDING_INPUTS,
            embedding_batch_tokens: MAX_EMBEDDING_TOKENS,
            embedding_concurrency: 4,
            user_agent: concat!("flowloom/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

impl std::fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("OpenAiConfig")
            .field("api_key", &self.api_key.as_ref().map(|_| "[REDACTED]"))
            .field("api_key_source", &self.api_key_source)
            .field("allow_missing_key", &self.allow_missing_key)
            .field("auth_style", &self.auth_style)
            .field("base_url", &self.base_url)
            .field("query", &self.query)
            .field("organization", &self.organization)
            .field("project", &self.project)
            .field("headers", &header_names)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("provider_name", &self.provider_name)
            .field("token_limit_param", &self.token_limit_param)
            .field("temperature_policy", &self.temperature_policy)
            .field("reasoning_model_prefixes", &self.reasoning_model_prefixes)
            .field("stream_include_usage", &self.stream_include_usage)
            .field("embedding_batch_inputs", &self.embedding_batch_inputs)
            .field("embedding_batch_tokens", &self.embedding_batch_tokens)
            .field("embedding_concurrency", &self.embedding_concurrency)
            .finish_non_exhaustive()
    }
}

impl OpenAiConfig {
    /// True when `model` is a reasoning model by [`OpenAiConfig::reasoning_model_prefixes`].
    /// A routing prefix such as `openai/` (OpenRouter, LiteLLM) is ignored.
    ///
    /// ```
    /// let c = flowloom_provider_openai::OpenAiConfig::default();
    /// assert!(c.is_reasoning_model("o3-mini"));
    /// assert!(c.is_reasoning_model("openai/gpt-5-nano"));
    /// assert!(!c.is_reasoning_model("gpt-4o-mini"));
    /// assert!(!c.is_reasoning_model("llama3.1"));
    /// ```
    pub fn is_reasoning_model(&self, model: &str) -> bool {
        let bytes = model.as_bytes();
        let name = bytes
            .iter()
            .rposition(|&b| b == b'/')
            .map_or(bytes, |slash| &bytes[slash + 1..]);
        self.reasoning_model_prefixes.iter().any(|p| {
            name.strip_prefix(p.as_bytes())
                .is_some_and(|rest| matches!(rest.first(), None | Some(b'-' | b'.' | b'_' | b':')))
        })
    }

    /// `(sends_temperature, uses_max_completion_tokens)` for `model`, reading its name once.
    pub(crate) fn wire_choices(&self, model: &str) -> (bool, bool) {
        let auto = self.temperature_policy == TemperaturePolicy::Auto
            || self.token_limit_param == TokenLimitParam::Auto;
        let reasoning = auto && self.is_reasoning_model(model);
        let temperature = match self.temperature_policy {
            TemperaturePolicy::Auto => !reasoning,
            TemperaturePolicy::Always => true,
            TemperaturePolicy::Never => false,
        };
        let max_completion_tokens = match self.token_limit_param {
            TokenLimitParam::Auto => reasoning,
            TokenLimitParam::MaxTokens => false,
            TokenLimitParam::MaxCompletionTokens => true,
        };
        (temperature, max_completion_tokens)
    }

    /// Whether `model` gets `max_completion_tokens` (else `max_tokens`).
    pub fn uses_max_completion_tokens(&self, model: &str) -> bool {
        match self.token_limit_param {
            TokenLimitParam::Auto => self.is_reasoning_model(model),
            TokenLimitParam::MaxTokens => false,
            TokenLimitParam::MaxCompletionTokens => true,
        }
    }

    /// Whether `model` gets `temperature`.
    pub fn sends_temperature(&self, model: &str) -> bool {
        match self.temperature_policy {
            TemperaturePolicy::Auto => !self.is_reasoning_model(model),
            TemperaturePolicy::Always => true,
            TemperaturePolicy::Never => false,
        }
    }
}

/// Why a provider could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No API key was given.
    #[error(
        "no API key: set {variable} (or pass one with `api_key`); for a local server that needs \
         none (e.g. Ollama) use `allow_missing_key(true)`"
    )]
    MissingApiKey {
        /// Where the key was expected (e.g. `OPENAI_API_KEY`).
        variable: String,
    },
    /// The base URL is not a usable http(s) URL.
    #[error("invalid base URL `{url}`: {reason}; expected e.g. https://api.openai.com/v1")]
    InvalidBaseUrl {
        /// The value found.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A header name or value cannot be sent.
    #[error("invalid header `{name}`: {reason}")]
    InvalidHeader {
        /// The header's name.
        name: String,
        /// What is wrong (the value is never shown).
        reason: String,
    },
    /// A numeric setting is out of range.
    #[error("invalid setting `{name}`: found {found}, expected {expected}")]
    InvalidSetting {
        /// The setting.
        name: &'static str,
        /// The value found.
        found: String,
        /// What is allowed.
        expected: String,
    },
    /// The HTTP client could not be created (TLS backend, system configuration).
    #[error("could not create the HTTP client: {0}")]
    Client(String),
}

/// Builds an [`OpenAiProvider`](crate::OpenAiProvider); start with
/// `OpenAiProvider::builder()`.
///
/// ```
/// use flowloom_provider_openai::{OpenAiProvider, TokenLimitParam};
/// use std::time::Duration;
///
/// let provider = OpenAiProvider::builder()
///     .api_key("sk-test")
///     .base_url("http://127.0.0.1:11434/v1")
///     .provider_name("ollama")
///     .organization("org-123")
///     .header("x-trace", "on")
///     .connect_timeout(Duration::from_secs(2))
///     .request_timeout(Duration::from_secs(30))
///     .token_limit_param(TokenLimitParam::MaxTokens)
///     .build()
///     .unwrap();
/// assert_eq!(provider.name(), "ollama");
/// assert!(!format!("{provider:?}").contains("sk-test"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct OpenAiBuilder {
    pub(crate) config: OpenAiConfig,
}

impl OpenAiBuilder {
    /// A builder with the defaults (OpenAI's URL, no key yet).
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder over a whole configuration.
    pub fn from_config(config: OpenAiConfig) -> Self {
        Self { config }
    }

    /// The API key.
    #[must_use]
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.config.api_key = Some(Secret::new(key));
        self
    }

    /// The API key, already wrapped.
    #[must_use]
    pub fn api_key_secret(mut self, key: Secret) -> Self {
        self.config.api_key = Some(key);
        self
    }

    /// Where the key came from (an environment variable name), for error messages.
    #[must_use]
    pub fn api_key_source(mut self, source: impl Into<String>) -> Self {
        self.config.api_key_source = source.into();
        self
    }

    /// Accept a missing key (for local servers that need none).
    #[must_use]
    pub fn allow_missing_key(mut self, allow: bool) -> Self {
        self.config.allow_missing_key = allow;
        self
    }

    /// How the key is sent.
    #[must_use]
    pub fn auth_style(mut self, style: AuthStyle) -> Self {
        self.config.auth_style = style;
        self
    }

    /// The base URL (default `https://api.openai.com/v1`).
    #[must_use]
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.config.base_url = url.into();
        self
    }

    /// A query parameter for every URL (e.g. `api-version` for Azure-style deployments).
    #[must_use]
    pub fn query_param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.query.push((name.into(), value.into()));
        self
    }

    /// The `OpenAI-Organization` header.
    #[must_use]
    pub fn organization(mut self, org: impl Into<String>) -> Self {
        self.config.organization = Some(org.into());
        self
    }

    /// The `OpenAI-Project` header.
    #[must_use]
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.config.project = Some(project.into());
        self
    }

    /// An extra header sent with every request.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.headers.push((name.into(), value.into()));
        self
    }

    /// Most time to connect (default 10 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Most time per request, reading the whole answer (or stream) included; no limit by
    /// default (see [`OpenAiConfig::request_timeout`]).
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = Some(timeout);
        self
    }

    /// No overall request time limit (the default; use a timeout layer instead).
    #[must_use]
    pub fn no_request_timeout(mut self) -> Self {
        self.config.request_timeout = None;
        self
    }

    /// The provider name reported in responses, usage and errors (default `openai`).
    #[must_use]
    pub fn provider_name(mut self, name: impl Into<String>) -> Self {
        self.config.provider_name = name.into();
        self
    }

    /// See [`TokenLimitParam`].
    #[must_use]
    pub fn token_limit_param(mut self, param: TokenLimitParam) -> Self {
        self.config.token_limit_param = param;
        self
    }

    /// See [`TemperaturePolicy`].
    #[must_use]
    pub fn temperature_policy(mut self, policy: TemperaturePolicy) -> Self {
        self.config.temperature_policy = policy;
        self
    }

    /// Replaces the model-name prefixes that mark reasoning models.
    #[must_use]
    pub fn reasoning_model_prefixes<I, S>(mut self, prefixes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.reasoning_model_prefixes = prefixes.into_iter().map(Into::into).collect();
        self
    }

    /// Whether streamed requests ask for a final usage chunk (default true; turn off for
    /// servers that reject `stream_options`).
    #[must_use]
    pub fn stream_include_usage(mut self, on: bool) -> Self {
        self.config.stream_include_usage = on;
        self
    }

    /// Most inputs per embeddings request (1 to 2048; default 2048).
    #[must_use]
    pub fn embedding_batch_inputs(mut self, n: usize) -> Self {
        self.config.embedding_batch_inputs = n;
        self
    }

    /// Most estimated tokens per embeddings request (default 300,000).
    #[must_use]
    pub fn embedding_batch_tokens(mut self, n: usize) -> Self {
        self.config.embedding_batch_tokens = n;
        self
    }

    /// Embeddings requests of one call in flight at once (default 4).
    #[must_use]
    pub fn embedding_concurrency(mut self, n: usize) -> Self {
        self.config.embedding_concurrency = n;
        self
    }

    /// Checks the configuration and creates the provider.
    pub fn build(self) -> Result<crate::OpenAiProvider, ConfigError> {
        crate::OpenAiProvider::from_config(self.config)
    }
}
