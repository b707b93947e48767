//! # flowloom-observability
//!
//! See a flowloom run in logs and in any OpenTelemetry backend, and account for every token:
//!
//! - **Setup in one call**: [`init`] installs a `tracing` subscriber writing JSON (the default
//!   when stderr is not a terminal) or pretty logs, at the configured level, with every line
//!   scrubbed of secrets ([`redact`]); with the `otlp` feature, traces and metrics also go
//!   out over OTLP/HTTP. The returned [`ObservabilityGuard`] flushes on drop. To compose
//!   into your own subscriber use [`fmt_layer`] / [`layer`], or [`build`] for a
//!   [`tracing::Dispatch`] to use with `tracing::dispatcher::with_default`.
//! - **Model-call spans** ([`GenAiTraceLayer`]) following the OpenTelemetry GenAI semantic
//!   conventions, with the `gen_ai.client.token.usage` and `gen_ai.client.operation.duration`
//!   histograms; **run and step counters** by status ([`metrics::TransitionMetricsLayer`]).
//! - **Token accounting** ([`TokenAccountingLayer`] → [`UsageLedger`]): per step, run, model
//!   and provider, across runs, exact, serializable.
//! - **Cost** ([`cost::PriceTable`], exact [`cost::Money`]) and **budgets**
//!   ([`budget::BudgetLayer`]).
//! - **Redaction** ([`redact::Redactor`]): API keys, `Authorization` headers and configured
//!   secrets never reach a log line, span or error message.
//!
//! Span, attribute and metric names are defined once, in [`semconv`].
//!
//! ```
//! use flowloom_core::{LlmRequest, LlmResponse, TokenUsage};
//! use flowloom_observability::{GenAiTraceLayer, ObservabilityConfig, TokenAccountingLayer,
//!     UsageLedger, cost::PriceTable};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! // In an application: `let _guard = flowloom_observability::init(ObservabilityConfig::from_env()?)?;`
//! let config = ObservabilityConfig::default();
//! let (dispatch, _guard) = flowloom_observability::build(&config, std::io::sink).unwrap();
//! let _default = tracing::dispatcher::set_default(&dispatch);
//!
//! let provider = tower::service_fn(|r: LlmRequest| async move {
//!     Ok::<_, flowloom_core::LlmError>(LlmResponse::text("hello", r.model.clone(), "openai")
//!         .with_usage(TokenUsage::new(1_000, 500, r.model, "openai")))
//! });
//! let ledger = UsageLedger::new();
//! let svc = ServiceBuilder::new()
//!     .layer(GenAiTraceLayer::from_config(&config))
//!     .layer(TokenAccountingLayer::new(ledger.clone()))
//!     .service(provider);
//! svc.oneshot(LlmRequest::new("gpt-4o-mini", "Say hello")).await.unwrap();
//!
//! assert_eq!(ledger.totals().tokens.total_tokens, 1_500);
//! let cost = ledger.cost(&PriceTable::openai_default());
//! assert_eq!(cost.total.to_string(), "$0.00045"); // 1000 × 0.15/M + 500 × 0.60/M
//! # });
//! ```

pub mod accounting;
pub mod budget;
pub mod capture;
pub mod cost;
pub mod genai;
mod json;
pub mod ledger;
pub mod metrics;
#[cfg(feature = "otlp")]
mod otlp;
pub mod redact;
pub mod semconv;

use std::io::IsTerminal;
use std::str::FromStr;

use flowloom_core::{FrameworkConfig, LogLevel};
use tracing::{Dispatch, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer};

pub use accounting::{TokenAccounting, TokenAccountingLayer};
pub use budget::{Budget, BudgetLayer, BudgetLimits};
pub use cost::{Cost, CostReport, Money, PriceTable};
pub use genai::{GenAiMetrics, GenAiTrace, GenAiTraceLayer};
pub use ledger::{UsageLedger, UsageRecord, UsageSummary};
pub use metrics::{TransitionCounts, TransitionMetricsLayer};
pub use redact::{RedactingMakeWriter, Redactor};

/// The `opentelemetry` meter flowloom records with (from the global meter provider).
pub fn meter() -> opentelemetry::metrics::Meter {
    let scope = opentelemetry::InstrumentationScope::builder(semconv::INSTRUMENTATION_SCOPE)
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    opentelemetry::global::meter_with_scope(scope)
}

/// How log lines look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// JSON when stderr is not a terminal, pretty (with colours) when it is.
    #[default]
    Auto,
    /// One JSON object per line (FR-015).
    Json,
    /// Human-readable, multi-line.
    Pretty,
}

impl FromStr for LogFormat {
    type Err = InitError;
    fn from_str(s: &str) -> Result<Self, InitError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(LogFormat::Auto),
            "json" => Ok(LogFormat::Json),
            "pretty" | "text" => Ok(LogFormat::Pretty),
            _ => Err(InitError::Config {
                setting: "FLOWLOOM_LOG_FORMAT".into(),
                found: format!("{s:?}"),
                expected: "json, pretty or auto".into(),
            }),
        }
    }
}

/// Why observability could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// A setting has a value that cannot be used.
    #[error("invalid {setting}: found {found}, expected {expected}")]
    Config {
        /// The setting or environment variable.
        setting: String,
        /// The value found.
        found: String,
        /// What is allowed.
        expected: String,
    },
    /// A global subscriber is already installed.
    #[error(
        "a global tracing subscriber is already installed ({0}); call init once, or compose \
         flowloom_observability::layer into your own subscriber"
    )]
    AlreadyInitialized(String),
    /// An OTLP endpoint was configured but the crate was built without the `otlp` feature.
    #[error(
        "an OTLP endpoint ({0}) is configured but flowloom-observability was built without the \
         `otlp` feature; enable the feature or unset the endpoint"
    )]
    OtlpDisabled(String),
    /// The OTLP exporters could not be built.
    #[error("could not set up OTLP export to {endpoint}: {message}")]
    Otlp {
        /// The endpoint.
        endpoint: String,
        /// What failed.
        message: String,
    },
    /// Flushing or shutting down the exporters failed.
    #[error("could not flush or shut down OpenTelemetry export: {0}")]
    Shutdown(String),
}

/// What [`init`] sets up.
#[derive(Debug, Clone)]
pub struct ObservabilityConfig {
    /// The most detailed level logged (`FLOWLOOM_LOG_LEVEL`).
    pub level: LogLevel,
    /// `tracing` filter directives overriding `level` (e.g. `flowloom=debug,hyper=warn`).
    pub filter: Option<String>,
    /// JSON, pretty, or chosen by whether stderr is a terminal (`FLOWLOOM_LOG_FORMAT`).
    pub format: LogFormat,
    /// Record prompt and completion text on model-call spans (`FLOWLOOM_LOG_PROMPTS`).
    pub log_prompts: bool,
    /// Scrubs every log line (and model-call text) of secrets.
    pub redactor: Redactor,
    /// `service.name` of exported telemetry (`OTEL_SERVICE_NAME`).
    pub service_name: String,
    /// OTLP/HTTP base endpoint, e.g. `http://127.0.0.1:4318` (`OTEL_EXPORTER_OTLP_ENDPOINT`);
    /// `None` exports nothing. Needs the `otlp` feature.
    pub otlp_endpoint: Option<String>,
    /// How often metrics are exported, in seconds (they are also exported on shutdown).
    pub metrics_interval_secs: u64,
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        Self {
            level: LogLevel::Info,
            filter: None,
            format: LogFormat::Auto,
            log_prompts: false,
            redactor: Redactor::new(),
            service_name: "flowloom".into(),
            otlp_endpoint: None,
            metrics_interval_secs: 60,
        }
    }
}

fn parse_bool(var: &str, v: &str) -> Result<bool, InitError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(InitError::Config {
            setting: var.into(),
            found: format!("{v:?}"),
            expected: "true or false".into(),
        }),
    }
}

impl ObservabilityConfig {
    /// Level and prompt logging from the framework configuration, and its API key as a secret
    /// to redact.
    pub fn from_framework_config(config: &FrameworkConfig) -> Self {
        Self {
            level: config.log_level,
            log_prompts: config.log_prompts,
            redactor: Redactor::from_config(config),
            ..Self::default()
        }
    }

    /// From the environment: `FLOWLOOM_LOG_LEVEL`, `FLOWLOOM_LOG_FORMAT`,
    /// `FLOWLOOM_LOG_PROMPTS`, `OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_ENDPOINT` (read only
    /// with the `otlp` feature), and `OPENAI_API_KEY` as a secret to redact.
    pub fn from_env() -> Result<Self, InitError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Like [`ObservabilityConfig::from_env`], reading variables through `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, InitError> {
        let mut c = Self::default();
        if let Some(v) = get("FLOWLOOM_LOG_LEVEL") {
            c.level = LogLevel::parse(&v).map_err(|_| InitError::Config {
                setting: "FLOWLOOM_LOG_LEVEL".into(),
                found: format!("{v:?}"),
                expected: "one of TRACE, DEBUG, INFO, WARN, ERROR".into(),
            })?;
        }
        if let Some(v) = get("FLOWLOOM_LOG_FORMAT") {
            c.format = v.parse()?;
        }
        if let Some(v) = get("FLOWLOOM_LOG_PROMPTS") {
            c.log_prompts = parse_bool("FLOWLOOM_LOG_PROMPTS", &v)?;
        }
        if let Some(v) = get("OTEL_SERVICE_NAME").filter(|v| !v.trim().is_empty()) {
            c.service_name = v;
        }
        if cfg!(feature = "otlp")
            && let Some(v) = get("OTEL_EXPORTER_OTLP_ENDPOINT").filter(|v| !v.trim().is_empty())
        {
            c.otlp_endpoint = Some(v);
        }
        if let Some(k) = get("OPENAI_API_KEY") {
            c.redactor = c.redactor.with_secret(k);
        }
        Ok(c)
    }

    /// Sets the level.
    #[must_use]
    pub fn with_level(mut self, level: LogLevel) -> Self {
        self.level = level;
        self
    }

    /// Sets the format.
    #[must_use]
    pub fn with_format(mut self, format: LogFormat) -> Self {
        self.format = format;
        self
    }

    /// Adds a secret to redact.
    #[must_use]
    pub fn with_secret(mut self, secret: impl AsRef<str>) -> Self {
        self.redactor = self.redactor.with_secret(secret);
        self
    }

    /// Sets the OTLP endpoint.
    #[must_use]
    pub fn with_otlp_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.otlp_endpoint = Some(endpoint.into());
        self
    }

    /// The filter the level (or `filter`) makes. Without an explicit `filter`, the
    /// exporters' own crates (`opentelemetry*`, `hyper`, `reqwest`, `h2`) log at WARN at most,
    /// so exporting telemetry does not produce telemetry about itself.
    pub fn env_filter(&self) -> Result<EnvFilter, InitError> {
        let directives = self.filter.clone().unwrap_or_else(|| {
            let level = self.level.as_str();
            let quiet = match self.level {
                LogLevel::Error => "error",
                _ => "warn",
            };
            format!(
                "{level},opentelemetry={quiet},opentelemetry_sdk={quiet},\
                 opentelemetry_otlp={quiet},hyper={quiet},hyper_util={quiet},reqwest={quiet},h2={quiet}"
            )
        });
        EnvFilter::builder()
            .parse(&directives)
            .map_err(|e| InitError::Config {
                setting: "log filter".into(),
                found: format!("{directives:?} ({e})"),
                expected: "tracing filter directives such as `info` or `flowloom=debug,warn`"
                    .into(),
            })
    }

    /// The format actually used: [`LogFormat::Auto`] resolved against stderr.
    pub fn resolved_format(&self) -> LogFormat {
        match self.format {
            LogFormat::Auto if std::io::stderr().is_terminal() => LogFormat::Pretty,
            LogFormat::Auto => LogFormat::Json,
            f => f,
        }
    }
}

/// The log-line layer alone: JSON or pretty, filtered by the configured level, every line
/// scrubbed by the configured [`Redactor`], written to `writer` (`std::io::stderr` in
/// [`init`]). A JSON line carries the event's fields and `spans`: every span in scope,
/// outermost first, with the fields recorded so far. Spans do not log lines of their own:
/// the engine logs each state transition, and [`GenAiTraceLayer`] one line per model call
/// when it ends, inside its span.
pub fn fmt_layer<S, W>(
    config: &ObservabilityConfig,
    writer: W,
) -> Result<Box<dyn Layer<S> + Send + Sync + 'static>, InitError>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = config.env_filter()?;
    let writer = RedactingMakeWriter::new(writer, config.redactor.clone());
    let layer = match config.resolved_format() {
        LogFormat::Pretty => {
            let ansi = config.format == LogFormat::Auto;
            tracing_subscriber::fmt::layer()
                .pretty()
                .with_ansi(ansi)
                .with_writer(writer)
                .with_filter(filter)
                .boxed()
        }
        LogFormat::Json | LogFormat::Auto => tracing_subscriber::fmt::layer()
            // `spans` lists every span in scope, outermost first, with its fields (the
            // current span is its last entry, so it is not repeated under `span`).
            .fmt_fields(json::SpanFields)
            .event_format(json::JsonLines)
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
    };
    Ok(layer)
}

/// The log-line layer plus the run and step counters, to compose into your own subscriber.
/// The counters see the engine's transition events whatever the log level.
pub fn layer<S, W>(
    config: &ObservabilityConfig,
    writer: W,
) -> Result<(Box<dyn Layer<S> + Send + Sync + 'static>, TransitionCounts), InitError>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let fmt = fmt_layer(config, writer)?;
    let transitions = TransitionMetricsLayer::new();
    let counts = transitions.counts();
    let targets = tracing_subscriber::filter::Targets::new()
        .with_target(semconv::TARGET_TRANSITION, tracing::Level::TRACE);
    let layers: Vec<Box<dyn Layer<S> + Send + Sync + 'static>> =
        vec![fmt, transitions.with_filter(targets).boxed()];
    Ok((Box::new(layers), counts))
}

/// Builds the whole subscriber (logs, counters and, with `otlp`, OpenTelemetry export) as a
/// [`Dispatch`] without installing it: use it with `tracing::dispatcher::with_default` or
/// `set_default`, or install it with `set_global_default`. Keep the guard alive as long as
/// telemetry should flow.
pub fn build<W>(
    config: &ObservabilityConfig,
    writer: W,
) -> Result<(Dispatch, ObservabilityGuard), InitError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    #[cfg(not(feature = "otlp"))]
    if let Some(e) = &config.otlp_endpoint {
        return Err(InitError::OtlpDisabled(e.clone()));
    }
    #[cfg(feature = "otlp")]
    let providers = match &config.otlp_endpoint {
        Some(endpoint) => Some(otlp::Providers::new(config, endpoint)?),
        None => None,
    };
    // Counters are built after the meter provider is installed, so they export.
    let (logs, counts) = layer(config, writer)?;
    let registry = tracing_subscriber::registry().with(logs);
    #[cfg(feature = "otlp")]
    let dispatch = {
        let otel = match &providers {
            Some(p) => Some(p.layer(config)?),
            None => None,
        };
        Dispatch::new(registry.with(otel))
    };
    #[cfg(not(feature = "otlp"))]
    let dispatch = Dispatch::new(registry);
    Ok((
        dispatch,
        ObservabilityGuard {
            counts,
            #[cfg(feature = "otlp")]
            providers,
        },
    ))
}

/// Installs flowloom's subscriber globally, logging to stderr. Call once, early; keep the
/// guard until the program ends (dropping it flushes).
pub fn init(config: ObservabilityConfig) -> Result<ObservabilityGuard, InitError> {
    init_with_writer(config, std::io::stderr)
}

/// Like [`init`], logging to `writer`.
pub fn init_with_writer<W>(
    config: ObservabilityConfig,
    writer: W,
) -> Result<ObservabilityGuard, InitError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let (dispatch, guard) = build(&config, writer)?;
    tracing::dispatcher::set_global_default(dispatch)
        .map_err(|e| InitError::AlreadyInitialized(e.to_string()))?;
    Ok(guard)
}

/// Keeps telemetry flowing; dropping it flushes and shuts down the exporters.
#[derive(Debug)]
pub struct ObservabilityGuard {
    counts: TransitionCounts,
    #[cfg(feature = "otlp")]
    providers: Option<otlp::Providers>,
}

impl ObservabilityGuard {
    /// Run and step counts by status, as counted so far.
    pub fn transition_counts(&self) -> &TransitionCounts {
        &self.counts
    }

    /// Exports everything buffered now.
    pub fn flush(&self) -> Result<(), InitError> {
        #[cfg(feature = "otlp")]
        if let Some(p) = &self.providers {
            p.flush()?;
        }
        Ok(())
    }

    /// Flushes and shuts down the exporters, reporting failures (dropping does the same
    /// silently).
    pub fn shutdown(mut self) -> Result<(), InitError> {
        self.shutdown_inner()
    }

    fn shutdown_inner(&mut self) -> Result<(), InitError> {
        #[cfg(feature = "otlp")]
        if let Some(p) = self.providers.take() {
            p.shutdown()?;
        }
        Ok(())
    }
}

impl Drop for ObservabilityGuard {
    fn drop(&mut self) {
        // Nothing can report from a drop; `shutdown` is there to see errors.
        let _ = self.shutdown_inner();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_are_read_and_bad_ones_named() {
        let c = ObservabilityConfig::from_lookup(|k| match k {
            "FLOWLOOM_LOG_LEVEL" => Some("debug".into()),
            "FLOWLOOM_LOG_PROMPTS" => Some("TRUE".into()),
            "FLOWLOOM_LOG_FORMAT" => Some("pretty".into()),
            "OPENAI_API_KEY" => Some("sk-test-abcdefghijkl".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.level, LogLevel::Debug);
        assert!(c.log_prompts);
        assert_eq!(c.format, LogFormat::Pretty);
        assert!(c.redactor.secret_count() > 0);

        let e = ObservabilityConfig::from_lookup(|k| {
            (k == "FLOWLOOM_LOG_LEVEL").then(|| "loud".to_owned())
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("FLOWLOOM_LOG_LEVEL") && e.contains("loud") && e.contains("TRACE"));
        let e = ObservabilityConfig::from_lookup(|k| {
            (k == "FLOWLOOM_LOG_PROMPTS").then(|| "maybe".to_owned())
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("true or false"), "{e}");
        let e = ObservabilityConfig::from_lookup(|k| {
            (k == "FLOWLOOM_LOG_FORMAT").then(|| "xml".to_owned())
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("json, pretty"), "{e}");
    }

    #[test]
    fn bad_filter_is_reported() {
        let c = ObservabilityConfig {
            filter: Some("flowloom=loudest".into()),
            ..ObservabilityConfig::default()
        };
        let e = c.env_filter().unwrap_err().to_string();
        assert!(e.contains("loudest"), "{e}");
    }

    #[test]
    fn framework_config_feeds_level_prompts_and_secret() {
        let fc = FrameworkConfig {
            log_level: LogLevel::Trace,
            log_prompts: true,
            openai_api_key: flowloom_core::Secret::new("sk-from-config-123456"),
            ..FrameworkConfig::default()
        };
        let c = ObservabilityConfig::from_framework_config(&fc);
        assert_eq!(c.level, LogLevel::Trace);
        assert!(c.log_prompts);
        assert!(c.redactor.finds_secret("x sk-from-config-123456 y"));
    }

    #[cfg(not(feature = "otlp"))]
    #[test]
    fn otlp_endpoint_without_feature_is_an_error() {
        let c = ObservabilityConfig::default().with_otlp_endpoint("http://127.0.0.1:4318");
        let e = build(&c, std::io::sink).unwrap_err().to_string();
        assert!(e.contains("`otlp` feature"), "{e}");
    }
}
