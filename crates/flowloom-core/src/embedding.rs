//! The embeddings contract: [`EmbeddingRequest`] → [`EmbeddingResponse`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::request::CallContext;
use crate::usage::TokenUsage;
use crate::validation::{ValidationError, ValidationErrors, non_empty};

/// How the provider should encode vectors on the wire; responses are always decoded to `f32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    /// JSON arrays of numbers.
    #[default]
    Float,
    /// Base64 of little-endian `f32` (smaller on the wire).
    Base64,
}

/// Texts to embed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EmbeddingRequest {
    /// Model name, e.g. `text-embedding-3-small`.
    pub model: String,
    /// The texts, one vector each.
    pub input: Vec<String>,
    /// Output dimensions, for models that support shortening.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    /// Wire encoding.
    #[serde(default)]
    pub encoding_format: EncodingFormat,
    /// Provider-specific parameters passed through unchanged.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra_params: Map<String, Value>,
    /// Where the call comes from; not sent to the provider.
    #[serde(default, skip_serializing_if = "CallContext::is_empty")]
    pub context: CallContext,
}

impl EmbeddingRequest {
    /// A request to embed `input` with `model`.
    pub fn new(model: impl Into<String>, input: Vec<String>) -> Self {
        Self {
            model: model.into(),
            input,
            dimensions: None,
            encoding_format: EncodingFormat::Float,
            extra_params: Map::new(),
            context: CallContext::default(),
        }
    }

    /// Checks: non-empty model, at least one input, no empty input, dimensions ≥ 1.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = Vec::new();
        non_empty("model", &self.model, &mut errors);
        if self.input.is_empty() {
            errors.push(ValidationError::new("input", "[]", "at least one text"));
        }
        for (i, t) in self.input.iter().enumerate() {
            if t.is_empty() {
                errors.push(ValidationError::new(
                    format!("input[{i}]"),
                    "\"\"",
                    "a non-empty text",
                ));
            }
        }
        if self.dimensions == Some(0) {
            errors.push(ValidationError::new("dimensions", 0, "an integer ≥ 1"));
        }
        ValidationErrors::check(errors)
    }
}

/// Vectors, one per input, in input order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EmbeddingResponse {
    /// One vector per input text, in order.
    pub embeddings: Vec<Vec<f32>>,
    /// The model that answered.
    pub model: String,
    /// The provider that answered.
    pub provider: String,
    /// Usage, where reported (`completion_tokens` is 0 for embeddings).
    pub usage: Option<TokenUsage>,
    /// Round-trip time in milliseconds (summed over batches).
    pub latency_ms: f64,
}
