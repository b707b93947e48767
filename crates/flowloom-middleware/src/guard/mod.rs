//! Guards (FR-029, FR-030): PII detection, input validation, and a layer that applies them
//! before a request leaves.
//!
//! - [`pii`]: [`pii::detect`] and [`pii::redact`], usable on their own.
//! - [`validate`]: `InputValidator`: size limits, control
//!   characters, a documented prompt-injection heuristic.
//! - [`GuardLayer`]: runs the validator (if set), then PII detection with the configured
//!   [`PiiAction`]:
//!   - `Detect`: logs a warning with the kinds and counts found (never the text) and lets the
//!     request through unchanged;
//!   - `Redact`: replaces each finding in every message's text with its label (`[EMAIL]`,
//!     ...) and sends the rewritten request (tool-call arguments and tool definitions are not
//!     scanned);
//!   - `Block`: refuses the request with [`LlmError::Blocked`] (`guard: "pii"`), naming the
//!     kinds found but not the text.
//!
//!   A validation failure is always `LlmError::Blocked` with `guard: "input_validation"` and
//!   the [`InputError`](validate::InputError)'s message. Blocked requests never reach the
//!   inner service. The layer works for chat and embedding requests alike.
//!
//! ```
//! use flowloom_core::{LlmRequest, LlmResponse, LlmError};
//! use flowloom_middleware::guard::GuardLayer;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let echo = tower::service_fn(|r: LlmRequest| async move {
//!     let prompt = r.prompt().unwrap_or_default().to_owned();
//!     Ok::<_, LlmError>(LlmResponse::text(prompt, r.model, "echo"))
//! });
//! let redacting = ServiceBuilder::new().layer(GuardLayer::redact()).service(echo.clone());
//! let res = redacting.oneshot(LlmRequest::new("m", "I am bob@example.com")).await.unwrap();
//! assert_eq!(res.content, "I am [EMAIL]");
//!
//! let blocking = ServiceBuilder::new().layer(GuardLayer::block()).service(echo);
//! let err = blocking.oneshot(LlmRequest::new("m", "I am bob@example.com")).await.unwrap_err();
//! assert!(matches!(err, LlmError::Blocked { .. }));
//! # });
//! ```

pub mod pii;
pub mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use flowloom_core::LlmError;
use futures_util::future::{Either, Ready, ready};
use tower::{Layer, Service};

use crate::call::ModelRequest;
use pii::PiiDetector;
use validate::InputValidator;

/// What the guard does with PII it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PiiAction {
    /// No PII check.
    Off,
    /// Log the kinds found and let the request through.
    #[default]
    Detect,
    /// Replace each finding with its label.
    Redact,
    /// Refuse the request.
    Block,
}

/// How a [`GuardLayer`] checks requests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GuardConfig {
    /// What to do with PII.
    pub pii: PiiAction,
    /// Which kinds count as PII.
    pub detector: PiiDetector,
    /// Input validation to run first, if any.
    pub validator: Option<InputValidator>,
}

/// Checks requests before they leave; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct GuardLayer {
    config: Arc<GuardConfig>,
}

impl GuardLayer {
    /// A guard with `config`.
    pub fn new(config: GuardConfig) -> Self {
        Self {
            config: Arc::new(config),
        }
    }
    /// Logs PII found, no validation.
    pub fn detect() -> Self {
        Self::new(GuardConfig {
            pii: PiiAction::Detect,
            ..GuardConfig::default()
        })
    }
    /// Redacts PII, no validation.
    pub fn redact() -> Self {
        Self::new(GuardConfig {
            pii: PiiAction::Redact,
            ..GuardConfig::default()
        })
    }
    /// Blocks requests with PII, no validation.
    pub fn block() -> Self {
        Self::new(GuardConfig {
            pii: PiiAction::Block,
            ..GuardConfig::default()
        })
    }
    /// Input validation only, no PII check.
    pub fn validation(validator: InputValidator) -> Self {
        Self::new(GuardConfig {
            pii: PiiAction::Off,
            validator: Some(validator),
            ..GuardConfig::default()
        })
    }
    /// The same guard, also validating input with `validator` (before the PII check).
    #[must_use]
    pub fn with_validation(self, validator: InputValidator) -> Self {
        let mut c = (*self.config).clone();
        c.validator = Some(validator);
        Self::new(c)
    }
    /// The configuration.
    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    /// Applies the guard to a request: `Ok` with the request to send (rewritten when
    /// redacting), or the `Blocked` error.
    pub fn check<R: ModelRequest>(&self, req: R) -> Result<R, LlmError> {
        check(&self.config, req)
    }
}

fn check<R: ModelRequest>(config: &GuardConfig, mut req: R) -> Result<R, LlmError> {
    if let Some(v) = &config.validator {
        v.validate_request(&req)?;
    }
    match config.pii {
        PiiAction::Off => {}
        PiiAction::Detect | PiiAction::Block => {
            let mut counts: BTreeMap<pii::PiiKind, usize> = BTreeMap::new();
            for (_, text) in req.texts() {
                for m in config.detector.detect(text) {
                    *counts.entry(m.kind).or_default() += 1;
                }
            }
            if !counts.is_empty() {
                let summary = counts
                    .iter()
                    .map(|(k, n)| format!("{n} {k}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                if config.pii == PiiAction::Block {
                    return Err(LlmError::Blocked {
                        guard: "pii".to_owned(),
                        reason: format!(
                            "the request contains personal data or secrets ({summary}); remove them, or configure the guard to redact"
                        ),
                    });
                }
                tracing::warn!(pii = %summary, model = req.model(), "personal data or secrets in a model request");
            }
        }
        PiiAction::Redact => {
            for text in req.texts_mut() {
                let redacted = config.detector.redact(text);
                if redacted != *text {
                    *text = redacted;
                }
            }
        }
    }
    Ok(req)
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;
    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// A service whose requests are checked first; made by [`GuardLayer`].
#[derive(Debug, Clone)]
pub struct Guard<S> {
    inner: S,
    config: Arc<GuardConfig>,
}

impl<S, R> Service<R> for Guard<S>
where
    R: ModelRequest,
    S: Service<R, Error = LlmError>,
{
    type Response = S::Response;
    type Error = LlmError;
    type Future = Either<Ready<Result<S::Response, LlmError>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        match check(&self.config, req) {
            Ok(req) => Either::Right(self.inner.call(req)),
            Err(e) => Either::Left(ready(Err(e))),
        }
    }
}
