//! # flowloom-core
//!
//! The ground every other flowloom crate stands on: the data model (serde + schemars), the
//! errors, and the provider contract. It does no I/O and reads no environment variables.
//!
//! - Data model: [`TokenUsage`], [`LlmRequest`], [`LlmResponse`], [`WorkflowStatus`],
//!   [`StepStatus`], [`StepContext`], [`StepResult`], [`ExecutionMetrics`], [`WorkflowResult`],
//!   [`FrameworkConfig`]. Each validates as the data model states, and every error names the
//!   field, the value found and what is allowed ([`ValidationError`]).
//! - Errors: [`LlmError`], one `#[non_exhaustive]` enum for every provider and layer, with
//!   [`LlmError::is_retryable`] and [`LlmError::retry_after`].
//! - The provider contract ([`provider`]): a model call is a
//!   `tower::Service<LlmRequest, Response = LlmResponse, Error = LlmError>`; plain async and
//!   blocking traits adapt into it; [`BlockingClient`] calls any service from blocking code.
//! - Shared parsing and estimates, pure functions used by several crates: [`retry_after::parse`]
//!   (HTTP `Retry-After`), [`duration::parse`] (`"30s"`, `"1m30s"`), [`estimate_text_tokens`]
//!   and [`LlmRequest::estimated_prompt_tokens`] (token estimates before a call).
//!
//! ```
//! use flowloom_core::{LlmRequest, TokenUsage};
//! let req = LlmRequest::new("gpt-4o-mini", "Summarize: ...").with_temperature(3.0);
//! let err = req.validate().unwrap_err();
//! assert_eq!(err.to_string(), "invalid `temperature`: found 3, expected a number from 0.0 to 2.0");
//! ```

pub mod blocking;
pub mod config;
pub mod duration;
pub mod embedding;
pub mod error;
pub mod provider;
pub mod request;
pub mod response;
pub mod result;
pub mod retry_after;
pub mod status;
pub mod step;
pub mod tokens;
pub mod usage;
pub mod validation;

pub use blocking::BlockingClient;
pub use config::{ExecutionMode, FrameworkConfig, LogLevel, Secret};
pub use embedding::{EmbeddingRequest, EmbeddingResponse, EncodingFormat};
pub use error::{ErrorKind, LlmError};
pub use provider::{
    AsyncEmbedder, AsyncProvider, BlockingEmbedder, BlockingProvider, BoxEmbeddingService,
    BoxLlmService, BoxStreamService, EmbeddingService, LlmService, StreamService,
};
pub use request::{
    CallContext, DEFAULT_MAX_TOKENS, DEFAULT_MODEL, DEFAULT_TEMPERATURE, LlmRequest, Message,
    ResponseFormat, Role, ToolCall, ToolChoice, ToolDefinition,
};
pub use response::{
    AttemptRecord, FinishReason, LlmResponse, LlmStream, StreamEvent, StreamRequest,
};
pub use result::{ExecutionMetrics, WorkflowResult};
pub use status::{StepStatus, WorkflowStatus};
pub use step::{OutputError, StepConfig, StepContext, StepResult};
pub use tokens::estimate_text_tokens;
pub use usage::TokenUsage;
pub use validation::{ValidationError, ValidationErrors};

/// A boxed error for user closures (transforms, plugins).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
