//! Embeddings: batching within the API's limits, and decoding of both encodings.
//!
//! **Batching rule.** OpenAI accepts at most 2048 inputs and 300,000 tokens (summed over the
//! inputs) per request. The provider splits the inputs, in order, into batches of at most
//! [`OpenAiConfig::embedding_batch_inputs`](crate::OpenAiConfig) inputs whose *estimated*
//! tokens sum to at most [`OpenAiConfig::embedding_batch_tokens`](crate::OpenAiConfig). The
//! estimate of a text is its length in UTF-8 bytes: OpenAI's tokenizers are byte-level BPE,
//! where every token covers at least one byte, so the byte count never underestimates — a
//! batch within the estimate is within the real limit. An input longer than the whole bound
//! goes alone in its batch (the server then judges it against the per-input limit). Batches
//! run at most [`OpenAiConfig::embedding_concurrency`](crate::OpenAiConfig) at a time; the
//! vectors come back in input order, usage is summed and latency is the wall time of the call.
//!
//! Vectors are read as JSON arrays of numbers, or as base64 of little-endian `f32`, whichever
//! the server sends.

use base64::Engine as _;
use flowloom_core::{EmbeddingRequest, EncodingFormat, LlmError, TokenUsage};
use serde::de::{self, Deserializer};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

/// Splits `inputs` into index ranges by the batching rule above.
///
/// ```
/// use flowloom_provider_openai::embeddings::batches;
/// let inputs: Vec<String> = ["aaaa", "bb", "cccccc", "d"].iter().map(|s| s.to_string()).collect();
/// assert_eq!(batches(&inputs, 3, 8), vec![0..2, 2..4]);
/// assert_eq!(batches(&inputs, 2, 1000), vec![0..2, 2..4]);
/// assert_eq!(batches(&inputs, 10, 3), vec![0..1, 1..2, 2..3, 3..4]);
/// ```
pub fn batches(
    inputs: &[String],
    max_inputs: usize,
    max_tokens: usize,
) -> Vec<std::ops::Range<usize>> {
    let max_inputs = max_inputs.max(1);
    let mut out = Vec::new();
    let mut start = 0;
    let mut tokens = 0usize;
    for (i, text) in inputs.iter().enumerate() {
        let est = estimate_tokens(text);
        let count = i - start;
        if count > 0 && (count >= max_inputs || tokens.saturating_add(est) > max_tokens) {
            out.push(start..i);
            start = i;
            tokens = 0;
        }
        tokens = tokens.saturating_add(est);
    }
    if start < inputs.len() {
        out.push(start..inputs.len());
    }
    out
}

/// The token estimate of a text: its UTF-8 length, an upper bound for byte-level BPE.
///
/// Deliberately not the shared `flowloom_core::estimate_text_tokens` (`ceil(chars / 4)`): that is
/// an average used for budgets and rate limits, while batching needs a bound that is never below
/// the real count, so that no batch goes over the provider's per-request token limit.
pub fn estimate_tokens(text: &str) -> usize {
    text.len().max(1)
}

/// One request body: a slice of the inputs and the request's options.
pub(crate) struct EmbeddingBody<'a> {
    pub(crate) req: &'a EmbeddingRequest,
    pub(crate) input: &'a [String],
}

impl Serialize for EmbeddingBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let extra = &self.req.extra_params;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("model", &self.req.model)?;
        m.serialize_entry("input", self.input)?;
        if let Some(d) = self.req.dimensions
            && !extra.contains_key("dimensions")
        {
            m.serialize_entry("dimensions", &d)?;
        }
        if !extra.contains_key("encoding_format") {
            let f = match self.req.encoding_format {
                EncodingFormat::Float => "float",
                EncodingFormat::Base64 => "base64",
            };
            m.serialize_entry("encoding_format", f)?;
        }
        for (k, v) in extra {
            if k != "model" && k != "input" {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

#[derive(Deserialize)]
struct WireEmbeddings {
    data: Vec<WireEmbedding>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<WireEmbeddingUsage>,
}

#[derive(Deserialize)]
struct WireEmbedding {
    #[serde(default)]
    index: Option<usize>,
    #[serde(deserialize_with = "vector")]
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct WireEmbeddingUsage {
    #[serde(default)]
    prompt_tokens: u64,
}

/// A vector as a JSON array of numbers or as a base64 string of little-endian `f32`.
fn vector<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wire {
        Floats(Vec<f32>),
        Base64(String),
    }
    match Wire::deserialize(d)? {
        Wire::Floats(v) => Ok(v),
        Wire::Base64(s) => decode_base64(&s).map_err(de::Error::custom),
    }
}

/// Decodes base64 of little-endian `f32` values.
///
/// ```
/// use base64::Engine as _;
/// let bytes: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
/// let text = base64::engine::general_purpose::STANDARD.encode(bytes);
/// assert_eq!(flowloom_provider_openai::embeddings::decode_base64(&text).unwrap(), vec![1.5, -2.0]);
/// assert!(flowloom_provider_openai::embeddings::decode_base64("AAA=").is_err());
/// ```
pub fn decode_base64(text: &str) -> Result<Vec<f32>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("the base64 embedding does not decode: {e}"))?;
    if bytes.len() % 4 != 0 {
        return Err(format!(
            "the base64 embedding has {} bytes, not a whole number of 4-byte floats",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// One batch's answer: vectors in input order, the model, prompt tokens where reported.
pub(crate) struct BatchAnswer {
    pub(crate) vectors: Vec<Vec<f32>>,
    pub(crate) model: Option<String>,
    pub(crate) prompt_tokens: Option<u64>,
}

/// Reads one batch's body; `expected` is how many inputs the batch held.
pub(crate) fn parse_batch(
    body: &[u8],
    expected: usize,
    provider: &str,
) -> Result<BatchAnswer, LlmError> {
    let wire: WireEmbeddings = serde_json::from_slice(body).map_err(|e| {
        crate::error::decode_error(
            provider,
            "the embeddings answer is not valid JSON of the expected shape",
            &e,
            body,
        )
    })?;
    if wire.data.len() != expected {
        return Err(crate::error::decode_error(
            provider,
            "the embeddings answer has the wrong number of vectors",
            &format!("sent {expected} inputs, got {} vectors", wire.data.len()),
            body,
        ));
    }
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected];
    for (pos, item) in wire.data.into_iter().enumerate() {
        let i = item.index.unwrap_or(pos);
        match slots.get_mut(i) {
            Some(slot @ None) => *slot = Some(item.embedding),
            _ => {
                return Err(crate::error::decode_error(
                    provider,
                    "the embeddings answer has a bad index",
                    &format!("index {i} is out of range or repeated for {expected} inputs"),
                    body,
                ));
            }
        }
    }
    let vectors = slots.into_iter().flatten().collect();
    Ok(BatchAnswer {
        vectors,
        model: wire.model,
        prompt_tokens: wire.usage.map(|u| u.prompt_tokens),
    })
}

/// Usage summed over batches: `None` when any batch reported none.
pub(crate) fn sum_usage(tokens: &[Option<u64>], model: &str, provider: &str) -> Option<TokenUsage> {
    let mut total = 0u64;
    for t in tokens {
        total = total.saturating_add((*t)?);
    }
    Some(TokenUsage::new(total, 0, model, provider))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_the_input_count() {
        let inputs: Vec<String> = (0..5000).map(|i| format!("t{i}")).collect();
        let b = batches(&inputs, 2048, 300_000);
        assert_eq!(b, vec![0..2048, 2048..4096, 4096..5000]);
    }

    #[test]
    fn an_oversized_input_goes_alone() {
        let inputs = vec!["a".to_owned(), "x".repeat(50), "b".to_owned()];
        assert_eq!(batches(&inputs, 10, 10), vec![0..1, 1..2, 2..3]);
    }

    #[test]
    fn answers_out_of_order_are_put_back_in_order() {
        let body = br#"{"data":[{"index":1,"embedding":[2.0]},{"index":0,"embedding":[1.0]}],"model":"e","usage":{"prompt_tokens":2,"total_tokens":2}}"#;
        let a = parse_batch(body, 2, "openai").unwrap();
        assert_eq!(a.vectors, vec![vec![1.0], vec![2.0]]);
    }

    #[test]
    fn wrong_count_or_repeated_index_is_a_decode_error() {
        let body = br#"{"data":[{"index":0,"embedding":[1.0]}]}"#;
        assert!(matches!(
            parse_batch(body, 2, "p"),
            Err(LlmError::Decode { .. })
        ));
        let body = br#"{"data":[{"index":0,"embedding":[1.0]},{"index":0,"embedding":[1.0]}]}"#;
        assert!(matches!(
            parse_batch(body, 2, "p"),
            Err(LlmError::Decode { .. })
        ));
    }

    #[test]
    fn usage_is_none_when_a_batch_did_not_report_it() {
        assert!(sum_usage(&[Some(1), None], "m", "p").is_none());
        assert_eq!(
            sum_usage(&[Some(1), Some(2)], "m", "p")
                .unwrap()
                .prompt_tokens,
            3
        );
    }
}
