//! Failover chains: an ordered list of providers, each tried when the one before fails.
//!
//! A [`Failover`] service holds the YAML `providers:` list as [`FailoverEntry`]s: a name, a
//! service (usually a `BoxLlmService` with its own layer stack)
//! and the entry's overrides of `model`, `temperature`, `max_tokens` and `timeout`. A call
//! goes to the first entry; when it fails with an error that [`moves_on`], the next entry is
//! tried with the original request and its own overrides, and so on.
//!
//! Which errors move on (by default):
//! - every retryable error (timeouts, 429, 5xx, connection, unavailable), a quota that is
//!   exhausted (another account may have some), a provider that does not support what was
//!   asked, and a response that could not be decoded;
//! - `RetriesExhausted` and `FailoverExhausted` as their last error would.
//!
//! Errors of the request itself (400 invalid request, 401/403 authentication, 404 unknown
//! model, a plugin's `Other`) stop the chain: the next provider would most likely refuse it
//! too. [`Failover::failover_on_client_errors`] makes them move on as well. Decisions of
//! flowloom's own layers (`Blocked`, `BudgetExceeded`, `Cancelled`) always stop the chain.
//! [`Failover::failover_when`] replaces the rule altogether.
//!
//! On success the response's `provider` is the entry's name and `attempts` lists every entry
//! that failed before it (name, model, error, status, duration). When every entry fails the
//! error is [`LlmError::FailoverExhausted`] with each entry's name and error, in order.
//!
//! Each entry gets the request with `context.provider` set to the entry's name, so layers
//! inside the entry attribute the call to it. Embedding requests fail over the same way
//! (only the `model` override applies to them).
//!
//! ```
//! use flowloom_core::{LlmRequest, LlmResponse, LlmError, provider};
//! use flowloom_middleware::failover::{Failover, FailoverEntry};
//! use tower::ServiceExt;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let down = provider::boxed(tower::service_fn(|_r: LlmRequest| async {
//!     Err::<LlmResponse, _>(LlmError::Server { provider: "a".into(), status: 503, message: "down".into(), retry_after: None })
//! }));
//! let up = provider::boxed(tower::service_fn(|r: LlmRequest| async move {
//!     Ok::<_, LlmError>(LlmResponse::text(format!("answered by {}", r.model), r.model, "b"))
//! }));
//! let chain = Failover::new(vec![
//!     FailoverEntry::new("anthropic", down).model("claude-sonnet-4"),
//!     FailoverEntry::new("openai", up).model("gpt-4o"),
//! ]).unwrap();
//! let res = chain.oneshot(LlmRequest::new("default", "hi")).await.unwrap();
//! assert_eq!(res.content, "answered by gpt-4o");
//! assert_eq!(res.provider, "openai");
//! assert_eq!(res.attempts[0].provider, "anthropic");
//! assert_eq!(res.attempts[0].status, Some(503));
//! # });
//! ```

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use flowloom_core::provider::BoxFuture;
use flowloom_core::{BoxLlmService, LlmError};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use crate::call::{ModelRequest, ModelResponse};
use crate::error::ConfigError;

/// True when `error` should move a failover chain on to its next provider, by the default
/// rule (see the [module docs](self)); `client_errors` makes 400/401/403/404 and plugin errors
/// move on too.
///
/// ```
/// use flowloom_core::LlmError;
/// use flowloom_middleware::failover::moves_on;
/// let e503 = LlmError::Server { provider: "p".into(), status: 503, message: "".into(), retry_after: None };
/// let e400 = LlmError::InvalidRequest { provider: "p".into(), message: "bad".into() };
/// assert!(moves_on(&e503, false));
/// assert!(!moves_on(&e400, false));
/// assert!(moves_on(&e400, true));
/// ```
pub fn moves_on(error: &LlmError, client_errors: bool) -> bool {
    match error {
        LlmError::RetriesExhausted { last, .. } => moves_on(last, client_errors),
        LlmError::FailoverExhausted { failures } => failures
            .last()
            .is_some_and(|(_, e)| moves_on(e, client_errors)),
        LlmError::Blocked { .. } | LlmError::BudgetExceeded { .. } | LlmError::Cancelled => false,
        LlmError::QuotaExceeded { .. } | LlmError::Unsupported { .. } | LlmError::Decode { .. } => {
            true
        }
        e if e.is_retryable() => true,
        _ => client_errors,
    }
}

/// One provider of a failover chain, with the request fields it overrides.
pub struct FailoverEntry<S = BoxLlmService> {
    name: Arc<str>,
    service: S,
    model: Option<String>,
    temperature: Option<f64>,
    max_tokens: Option<u32>,
    timeout: Option<Duration>,
}

impl<S: Clone> Clone for FailoverEntry<S> {
    fn clone(&self) -> Self {
        Self {
            name: Arc::clone(&self.name),
            service: self.service.clone(),
            model: self.model.clone(),
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            timeout: self.timeout,
        }
    }
}

impl<S> fmt::Debug for FailoverEntry<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailoverEntry")
            .field("name", &self.name)
            .field("model", &self.model)
            .field("temperature", &self.temperature)
            .field("max_tokens", &self.max_tokens)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<S> FailoverEntry<S> {
    /// An entry named `name` (the YAML `provider:`) calling `service`, with no overrides.
    pub fn new(name: impl Into<Arc<str>>, service: S) -> Self {
        Self {
            name: name.into(),
            service,
            model: None,
            temperature: None,
            max_tokens: None,
            timeout: None,
        }
    }
    /// Sends this model instead of the request's.
    #[must_use]
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }
    /// Sends this temperature instead of the request's.
    #[must_use]
    pub fn temperature(mut self, t: f64) -> Self {
        self.temperature = Some(t);
        self
    }
    /// Sends this `max_tokens` instead of the request's.
    #[must_use]
    pub fn max_tokens(mut self, n: u32) -> Self {
        self.max_tokens = Some(n);
        self
    }
    /// Gives this entry at most `d`; a slower answer fails with `Timeout` and moves on.
    #[must_use]
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }
    /// The entry's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

type Predicate = Arc<dyn Fn(&LlmError) -> bool + Send + Sync>;

/// A failover chain; see the [module docs](self).
pub struct Failover<S = BoxLlmService> {
    entries: Arc<[FailoverEntry<S>]>,
    predicate: Option<Predicate>,
    client_errors: bool,
}

impl<S> Clone for Failover<S> {
    fn clone(&self) -> Self {
        Self {
            entries: Arc::clone(&self.entries),
            predicate: self.predicate.clone(),
            client_errors: self.client_errors,
        }
    }
}

impl<S> fmt::Debug for Failover<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failover")
            .field("entries", &self.entries)
            .field("client_errors", &self.client_errors)
            .field("custom_rule", &self.predicate.is_some())
            .finish()
    }
}

impl<S> Failover<S> {
    /// A chain trying `entries` in order; at least one is needed, and names must be unique.
    pub fn new(entries: Vec<FailoverEntry<S>>) -> Result<Self, ConfigError> {
        if entries.is_empty() {
            return Err(ConfigError::new(
                "failover",
                "providers",
                "an empty list",
                "at least one provider entry",
            ));
        }
        for (i, e) in entries.iter().enumerate() {
            if entries[..i]
                .iter()
                .any(|p| p.name == e.name && p.model == e.model)
            {
                return Err(ConfigError::new(
                    "failover",
                    "providers",
                    format!("`{}` twice with the same model", e.name),
                    "each provider/model pair at most once",
                ));
            }
            if let Some(t) = e.temperature
                && !(0.0..=2.0).contains(&t)
            {
                return Err(ConfigError::new(
                    "failover",
                    "temperature",
                    t,
                    format!("a number from 0.0 to 2.0 for provider `{}`", e.name),
                ));
            }
            if e.max_tokens == Some(0) {
                return Err(ConfigError::new(
                    "failover",
                    "max_tokens",
                    0,
                    format!("an integer ≥ 1 for provider `{}`", e.name),
                ));
            }
        }
        Ok(Self {
            entries: entries.into(),
            predicate: None,
            client_errors: false,
        })
    }

    /// Whether 400/401/403/404-class and plugin errors move on too (default false).
    #[must_use]
    pub fn failover_on_client_errors(mut self, yes: bool) -> Self {
        self.client_errors = yes;
        self
    }

    /// Replaces the rule deciding which errors move on.
    #[must_use]
    pub fn failover_when(
        mut self,
        rule: impl Fn(&LlmError) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.predicate = Some(Arc::new(rule));
        self
    }

    /// The entries' names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.name()).collect()
    }
}

impl<S, R> Service<R> for Failover<S>
where
    R: ModelRequest,
    S: Service<R, Error = LlmError> + Clone + Send + Sync + 'static,
    S::Response: ModelResponse,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = LlmError;
    type Future = BoxFuture<Result<S::Response, LlmError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: R) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.run(req).await })
    }
}

impl<S> Failover<S> {
    async fn run<R>(self, req: R) -> Result<S::Response, LlmError>
    where
        R: ModelRequest,
        S: Service<R, Error = LlmError> + Clone + Send + 'static,
        S::Response: ModelResponse,
        S::Future: Send + 'static,
    {
        let mut failures: Vec<(String, LlmError)> = Vec::new();
        let mut records = Vec::new();
        let last = self.entries.len() - 1;
        let mut original = Some(req);
        for (i, entry) in self.entries.iter().enumerate() {
            let Some(mut r) = (if i < last {
                original.clone()
            } else {
                original.take()
            }) else {
                break;
            };
            if let Some(m) = &entry.model {
                r.set_model(m);
            }
            r.apply_overrides(entry.temperature, entry.max_tokens);
            r.context_mut().provider = Some(Arc::clone(&entry.name));
            let model = if i < last {
                Some(r.model().to_owned())
            } else {
                None
            };
            let t0 = Instant::now();
            let mut svc = entry.service.clone();
            let call = async {
                let ready = svc.ready().await?;
                ready.call(r).await
            };
            let result = match entry.timeout {
                Some(d) => match tokio::time::timeout(d, call).await {
                    Ok(r) => r,
                    Err(_) => Err(LlmError::Timeout {
                        provider: entry.name.to_string(),
                        elapsed: d,
                    }),
                },
                None => call.await,
            };
            match result {
                Ok(mut resp) => {
                    resp.set_provider(&entry.name);
                    resp.prepend_attempts(records);
                    return Ok(resp);
                }
                Err(e) => {
                    let go_on = match &self.predicate {
                        Some(p) => p(&e),
                        None => moves_on(&e, self.client_errors),
                    };
                    if !go_on {
                        return Err(e);
                    }
                    tracing::warn!(provider = %entry.name, error = %e, "provider failed, trying the next one");
                    if let Some(model) = model {
                        records.push(flowloom_core::AttemptRecord {
                            provider: entry.name.to_string(),
                            model,
                            error: Some(e.to_string()),
                            status: e.status(),
                            duration_ms: t0.elapsed().as_secs_f64() * 1000.0,
                        });
                    }
                    failures.push((entry.name.to_string(), e));
                }
            }
        }
        Err(LlmError::FailoverExhausted { failures })
    }
}

/// Puts the wrapped service first in a failover chain, named `primary`, followed by
/// `fallbacks`.
///
/// ```
/// use flowloom_core::{BoxLlmService, LlmRequest, LlmResponse, LlmError, provider};
/// use flowloom_middleware::failover::{FailoverEntry, FailoverLayer};
/// use tower::ServiceBuilder;
/// fn echo(name: &'static str) -> BoxLlmService {
///     provider::boxed(tower::service_fn(move |r: LlmRequest| async move {
///         Ok::<_, LlmError>(LlmResponse::text("ok", r.model, name))
///     }))
/// }
/// let layer = FailoverLayer::new("openai", vec![FailoverEntry::new("backup", echo("backup"))]).unwrap();
/// let chain = ServiceBuilder::new().layer(layer).service(echo("openai"));
/// assert_eq!(chain.names(), ["openai", "backup"]);
/// ```
pub struct FailoverLayer<S = BoxLlmService> {
    primary: Arc<str>,
    fallbacks: Vec<FailoverEntry<S>>,
    client_errors: bool,
}

impl<S: Clone> Clone for FailoverLayer<S> {
    fn clone(&self) -> Self {
        Self {
            primary: Arc::clone(&self.primary),
            fallbacks: self.fallbacks.clone(),
            client_errors: self.client_errors,
        }
    }
}

impl<S> fmt::Debug for FailoverLayer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailoverLayer")
            .field("primary", &self.primary)
            .field("fallbacks", &self.fallbacks)
            .finish()
    }
}

impl<S: Clone> FailoverLayer<S> {
    /// The wrapped service becomes the entry `primary` (no overrides), then `fallbacks` in
    /// order. The same checks as [`Failover::new`] apply.
    pub fn new(
        primary: impl Into<Arc<str>>,
        fallbacks: Vec<FailoverEntry<S>>,
    ) -> Result<Self, ConfigError> {
        let primary = primary.into();
        if fallbacks
            .iter()
            .any(|f| f.name == primary && f.model.is_none())
        {
            return Err(ConfigError::new(
                "failover",
                "providers",
                format!("`{primary}` twice with the same model"),
                "each provider/model pair at most once",
            ));
        }
        // Checks the fallbacks on their own (overrides, duplicates).
        if let Err(e) = Failover::new(fallbacks.clone())
            && !fallbacks.is_empty()
        {
            return Err(e);
        }
        Ok(Self {
            primary,
            fallbacks,
            client_errors: false,
        })
    }
    /// Whether 400/401-class errors move on too (default false).
    #[must_use]
    pub fn failover_on_client_errors(mut self, yes: bool) -> Self {
        self.client_errors = yes;
        self
    }
}

impl<S: Clone> Layer<S> for FailoverLayer<S> {
    type Service = Failover<S>;
    fn layer(&self, inner: S) -> Failover<S> {
        let mut entries = Vec::with_capacity(self.fallbacks.len() + 1);
        entries.push(FailoverEntry::new(Arc::clone(&self.primary), inner));
        entries.extend(self.fallbacks.iter().cloned());
        Failover {
            entries: entries.into(),
            predicate: None,
            client_errors: self.client_errors,
        }
    }
}
