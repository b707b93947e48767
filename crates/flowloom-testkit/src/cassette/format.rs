//! The cassette file format.

use std::time::Duration;

use flowloom_core::{EmbeddingResponse, LlmError, LlmResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The format version this crate writes and reads.
pub const CASSETTE_VERSION: u32 = 1;

/// A cassette as stored on disk (YAML): a header and the interactions in call order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CassetteFile {
    /// Format version, [`CASSETTE_VERSION`].
    pub version: u32,
    /// What produced the cassette, so that `cargo xtask fixtures verify` can run it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<CassetteSource>,
    /// When it was recorded (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_at: Option<String>,
    /// The calls, in the order they were made.
    #[serde(default)]
    pub interactions: Vec<Interaction>,
}

impl CassetteFile {
    /// An empty cassette of the current version.
    pub fn new() -> Self {
        Self {
            version: CASSETTE_VERSION,
            source: None,
            recorded_at: None,
            interactions: Vec::new(),
        }
    }
}

impl Default for CassetteFile {
    fn default() -> Self {
        Self::new()
    }
}

/// What produced a cassette: a named scenario (known to `cargo xtask fixtures`) and its input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CassetteSource {
    /// The scenario's name, e.g. `summarize-workflow`.
    pub scenario: String,
    /// The input it was run with.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub input: Value,
}

/// Whether a call was a plain or a streamed completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    /// `Service<LlmRequest>`.
    Chat,
    /// `Service<StreamRequest>`.
    Stream,
    /// `Service<EmbeddingRequest>`.
    Embedding,
}

impl std::fmt::Display for CallKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CallKind::Chat => "chat",
            CallKind::Stream => "stream",
            CallKind::Embedding => "embedding",
        })
    }
}

/// One recorded call: the normalized request and what came back — a response, an error, or
/// the chunks of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interaction {
    /// Chat or stream.
    pub kind: CallKind,
    /// The workflow step that made the call, for readers; not part of the match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The normalized request (see [`normalize_request`](super::normalize_request)): the match
    /// key.
    pub request: Value,
    /// The response of a chat call that succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<LlmResponse>,
    /// The error of a call that failed (for a stream: failed before its first chunk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RecordedError>,
    /// The events of a stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<RecordedStream>,
    /// The response of an embedding call that succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<EmbeddingResponse>,
}

impl Interaction {
    /// Checks that exactly the parts its kind needs are present.
    pub fn check_shape(&self) -> Result<(), String> {
        let parts = [
            self.response.is_some(),
            self.error.is_some(),
            self.stream.is_some(),
            self.embedding.is_some(),
        ];
        let count = parts.iter().filter(|p| **p).count();
        if count != 1 {
            return Err(format!(
                "has {count} of `response`, `error`, `stream`, `embedding`; exactly one is needed"
            ));
        }
        let allowed = match self.kind {
            CallKind::Chat => self.stream.is_none() && self.embedding.is_none(),
            CallKind::Stream => self.response.is_none() && self.embedding.is_none(),
            CallKind::Embedding => self.response.is_none() && self.stream.is_none(),
        };
        if allowed {
            Ok(())
        } else {
            let wants = match self.kind {
                CallKind::Chat => "`response` or `error`",
                CallKind::Stream => "`stream` or `error`",
                CallKind::Embedding => "`embedding` or `error`",
            };
            Err(format!("is a `{}` call; it takes {wants}", self.kind))
        }
    }
}

/// The events of a recorded stream, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedStream {
    /// The text deltas.
    #[serde(default)]
    pub chunks: Vec<String>,
    /// The final response, when the stream ended well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<LlmResponse>,
    /// The error the stream broke off with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RecordedError>,
}

/// An [`LlmError`] in a form that can be written and read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[allow(missing_docs)]
pub enum RecordedError {
    /// [`LlmError::InvalidRequest`]
    InvalidRequest { provider: String, message: String },
    /// [`LlmError::Authentication`]
    Authentication {
        provider: String,
        status: u16,
        message: String,
    },
    /// [`LlmError::ModelNotFound`]
    ModelNotFound {
        provider: String,
        model: String,
        message: String,
    },
    /// [`LlmError::RateLimited`]
    RateLimited {
        provider: String,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// [`LlmError::QuotaExceeded`]
    QuotaExceeded { provider: String, message: String },
    /// [`LlmError::Server`]
    Server {
        provider: String,
        status: u16,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// [`LlmError::Timeout`]
    Timeout { provider: String, elapsed_ms: u64 },
    /// [`LlmError::Connection`]
    Connection { provider: String, message: String },
    /// [`LlmError::Decode`]
    Decode {
        provider: String,
        message: String,
        excerpt: String,
    },
    /// [`LlmError::Unavailable`]
    Unavailable { provider: String, message: String },
    /// [`LlmError::Unsupported`]
    Unsupported { provider: String, feature: String },
    /// [`LlmError::RetriesExhausted`]
    RetriesExhausted {
        attempts: u32,
        waited_ms: u64,
        last: Box<RecordedError>,
    },
    /// [`LlmError::FailoverExhausted`]
    FailoverExhausted { failures: Vec<RecordedFailure> },
    /// [`LlmError::BudgetExceeded`]
    BudgetExceeded { message: String },
    /// [`LlmError::Blocked`]
    Blocked { guard: String, reason: String },
    /// [`LlmError::Cancelled`]
    Cancelled,
    /// [`LlmError::Other`], and any kind this version does not know.
    Other { provider: String, message: String },
}

/// One provider's failure within a failover chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedFailure {
    /// The provider tried.
    pub provider: String,
    /// Its error.
    pub error: RecordedError,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl From<&LlmError> for RecordedError {
    fn from(e: &LlmError) -> Self {
        match e.clone() {
            LlmError::InvalidRequest { provider, message } => {
                RecordedError::InvalidRequest { provider, message }
            }
            LlmError::Authentication {
                provider,
                status,
                message,
            } => RecordedError::Authentication {
                provider,
                status,
                message,
            },
            LlmError::ModelNotFound {
                provider,
                model,
                message,
            } => RecordedError::ModelNotFound {
                provider,
                model,
                message,
            },
            LlmError::RateLimited {
                provider,
                message,
                retry_after,
            } => RecordedError::RateLimited {
                provider,
                message,
                retry_after_ms: retry_after.map(ms),
            },
            LlmError::QuotaExceeded { provider, message } => {
                RecordedError::QuotaExceeded { provider, message }
            }
            LlmError::Server {
                provider,
                status,
                message,
                retry_after,
            } => RecordedError::Server {
                provider,
                status,
                message,
                retry_after_ms: retry_after.map(ms),
            },
            LlmError::Timeout { provider, elapsed } => RecordedError::Timeout {
                provider,
                elapsed_ms: ms(elapsed),
            },
            LlmError::Connection { provider, message } => {
                RecordedError::Connection { provider, message }
            }
            LlmError::Decode {
                provider,
                message,
                excerpt,
            } => RecordedError::Decode {
                provider,
                message,
                excerpt,
            },
            LlmError::Unavailable { provider, message } => {
                RecordedError::Unavailable { provider, message }
            }
            LlmError::Unsupported { provider, feature } => {
                RecordedError::Unsupported { provider, feature }
            }
            LlmError::RetriesExhausted {
                attempts,
                waited,
                last,
            } => RecordedError::RetriesExhausted {
                attempts,
                waited_ms: ms(waited),
                last: Box::new(RecordedError::from(&*last)),
            },
            LlmError::FailoverExhausted { failures } => RecordedError::FailoverExhausted {
                failures: failures
                    .iter()
                    .map(|(p, e)| RecordedFailure {
                        provider: p.clone(),
                        error: RecordedError::from(e),
                    })
                    .collect(),
            },
            LlmError::BudgetExceeded { message } => RecordedError::BudgetExceeded { message },
            LlmError::Blocked { guard, reason } => RecordedError::Blocked { guard, reason },
            LlmError::Cancelled => RecordedError::Cancelled,
            LlmError::Other { provider, message } => RecordedError::Other { provider, message },
            other => RecordedError::Other {
                provider: other.provider().unwrap_or("unknown").to_owned(),
                message: other.to_string(),
            },
        }
    }
}

impl From<&RecordedError> for LlmError {
    fn from(e: &RecordedError) -> Self {
        match e.clone() {
            RecordedError::InvalidRequest { provider, message } => {
                LlmError::InvalidRequest { provider, message }
            }
            RecordedError::Authentication {
                provider,
                status,
                message,
            } => LlmError::Authentication {
                provider,
                status,
                message,
            },
            RecordedError::ModelNotFound {
                provider,
                model,
                message,
            } => LlmError::ModelNotFound {
                provider,
                model,
                message,
            },
            RecordedError::RateLimited {
                provider,
                message,
                retry_after_ms,
            } => LlmError::RateLimited {
                provider,
                message,
                retry_after: retry_after_ms.map(Duration::from_millis),
            },
            RecordedError::QuotaExceeded { provider, message } => {
                LlmError::QuotaExceeded { provider, message }
            }
            RecordedError::Server {
                provider,
                status,
                message,
                retry_after_ms,
            } => LlmError::Server {
                provider,
                status,
                message,
                retry_after: retry_after_ms.map(Duration::from_millis),
            },
            RecordedError::Timeout {
                provider,
                elapsed_ms,
            } => LlmError::Timeout {
                provider,
                elapsed: Duration::from_millis(elapsed_ms),
            },
            RecordedError::Connection { provider, message } => {
                LlmError::Connection { provider, message }
            }
            RecordedError::Decode {
                provider,
                message,
                excerpt,
            } => LlmError::Decode {
                provider,
                message,
                excerpt,
            },
            RecordedError::Unavailable { provider, message } => {
                LlmError::Unavailable { provider, message }
            }
            RecordedError::Unsupported { provider, feature } => {
                LlmError::Unsupported { provider, feature }
            }
            RecordedError::RetriesExhausted {
                attempts,
                waited_ms,
                last,
            } => LlmError::RetriesExhausted {
                attempts,
                waited: Duration::from_millis(waited_ms),
                last: Box::new(LlmError::from(&*last)),
            },
            RecordedError::FailoverExhausted { failures } => LlmError::FailoverExhausted {
                failures: failures
                    .iter()
                    .map(|f| (f.provider.clone(), LlmError::from(&f.error)))
                    .collect(),
            },
            RecordedError::BudgetExceeded { message } => LlmError::BudgetExceeded { message },
            RecordedError::Blocked { guard, reason } => LlmError::Blocked { guard, reason },
            RecordedError::Cancelled => LlmError::Cancelled,
            RecordedError::Other { provider, message } => LlmError::Other { provider, message },
        }
    }
}
