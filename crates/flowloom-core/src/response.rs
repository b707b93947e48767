//! What comes back from a model call: [`LlmResponse`], and the streaming events.

use std::pin::Pin;

use futures_util::Stream;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::LlmError;
use crate::request::ToolCall;
use crate::usage::TokenUsage;
use crate::validation::{ValidationError, ValidationErrors, non_empty};

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A natural end or a stop sequence.
    Stop,
    /// The token limit was reached.
    Length,
    /// The model called tools.
    ToolCalls,
    /// A content filter cut the answer.
    ContentFilter,
    /// The provider reported an error.
    Error,
    /// Any other reason, as the provider spelled it.
    #[serde(untagged)]
    Other(String),
}

impl FinishReason {
    /// Maps a provider's spelling (`stop`, `length`, `tool_calls`, `function_call`,
    /// `content_filter`, `error`) onto the enum.
    pub fn parse(s: &str) -> Self {
        match s {
            "stop" | "end_turn" | "stop_sequence" => FinishReason::Stop,
            "length" | "max_tokens" => FinishReason::Length,
            "tool_calls" | "function_call" | "tool_use" => FinishReason::ToolCalls,
            "content_filter" => FinishReason::ContentFilter,
            "error" => FinishReason::Error,
            other => FinishReason::Other(other.to_owned()),
        }
    }

    /// The OpenAI spelling.
    pub fn as_str(&self) -> &str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::Error => "error",
            FinishReason::Other(s) => s,
        }
    }
}

/// One attempt at a call, as recorded by retry and failover layers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AttemptRecord {
    /// The provider tried.
    pub provider: String,
    /// The model asked for.
    pub model: String,
    /// `None` when this attempt answered; the error text otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The HTTP status, where there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// How long the attempt took.
    pub duration_ms: f64,
}

/// Output of any model call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LlmResponse {
    /// The generated text (may be empty when the model only called tools).
    pub content: String,
    /// The model that actually answered (may differ from the one asked for).
    pub model: String,
    /// The provider that answered.
    pub provider: String,
    /// Token usage; `None` when the provider did not report it (which is not zero).
    pub usage: Option<TokenUsage>,
    /// Provider round-trip time in milliseconds.
    pub latency_ms: f64,
    /// Why the model stopped.
    pub finish_reason: FinishReason,
    /// The provider's response id, where given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_id: Option<String>,
    /// Tool calls the model made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Earlier attempts that failed before this answer (filled by retry and failover layers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<AttemptRecord>,
    /// True when a cache layer answered without calling the provider.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
}

impl LlmResponse {
    /// A `stop` response with `content`, no usage and no latency; handy in tests and mocks.
    pub fn text(
        content: impl Into<String>,
        model: impl Into<String>,
        provider: impl Into<String>,
    ) -> Self {
        Self {
            content: content.into(),
            model: model.into(),
            provider: provider.into(),
            usage: None,
            latency_ms: 0.0,
            finish_reason: FinishReason::Stop,
            response_id: None,
            tool_calls: Vec::new(),
            attempts: Vec::new(),
            cached: false,
        }
    }

    /// Sets the usage.
    #[must_use]
    pub fn with_usage(mut self, usage: TokenUsage) -> Self {
        self.usage = Some(usage);
        self
    }

    /// Checks: model and provider non-empty, latency ≥ 0, and the usage's own rules.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = Vec::new();
        non_empty("model", &self.model, &mut errors);
        non_empty("provider", &self.provider, &mut errors);
        if self.latency_ms.is_nan() || self.latency_ms < 0.0 {
            errors.push(ValidationError::new(
                "latency_ms",
                self.latency_ms,
                "a number ≥ 0",
            ));
        }
        if let Some(u) = &self.usage
            && let Err(e) = u.validate()
        {
            errors.extend(e.0.into_iter().map(|e| e.within("usage")));
        }
        ValidationErrors::check(errors)
    }
}

/// One event of a streamed answer.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
// `Done` is the larger variant and comes once per stream; boxing it would only add an
// allocation and change the public shape.
#[allow(clippy::large_enum_variant)]
pub enum StreamEvent {
    /// A piece of the answer's text.
    Delta(String),
    /// The complete answer, with usage where the provider reported it; always the last event
    /// of a stream that ended well.
    Done(LlmResponse),
}

/// A streamed answer: deltas, then [`StreamEvent::Done`]. A stream that ends without `Done`
/// broke off and yields an error first.
pub type LlmStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, LlmError>> + Send + 'static>>;

/// A request to stream: the service contract for streaming is
/// `Service<StreamRequest, Response = LlmStream, Error = LlmError>`.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRequest(pub crate::LlmRequest);
