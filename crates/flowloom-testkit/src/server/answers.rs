//! The mock server's default, deterministic answers in OpenAI's wire format.

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::{MockConfig, UsageShape};

/// The `created` timestamp of every answer (fixed, so answers are reproducible).
pub const CREATED: u64 = 1_700_000_000;

/// The mock's token count of a text: its whitespace-separated words. Usage in every default
/// answer is computed with it, so tests can predict the numbers.
///
/// ```
/// assert_eq!(flowloom_testkit::server::mock_tokens("say hi  twice"), 3);
/// ```
pub fn mock_tokens(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// An OpenAI-style error body.
pub(crate) fn error_body(kind: &str, code: &str, message: &str, param: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

fn bad_request(message: &str, param: Option<&str>) -> (u16, Value) {
    (
        400,
        error_body("invalid_request_error", "invalid_request", message, param),
    )
}

/// The text of a message's `content`: a string, or the text parts of an array.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// A chat completion worked out from the request, shared by both answer shapes.
pub(crate) struct Chat {
    id: String,
    model: String,
    content: String,
    finish_reason: &'static str,
    tool_call: Option<(String, String)>,
    prompt_tokens: u64,
    completion_tokens: u64,
    include_usage: bool,
    /// Whether the request asked to stream.
    pub(crate) stream: bool,
}

impl Chat {
    /// Reads a chat request; a malformed one gets a 400 error body as OpenAI would send.
    pub(crate) fn from_request(body: Option<&Value>, n: u64) -> Result<Chat, (u16, Value)> {
        let Some(body) = body.and_then(Value::as_object) else {
            return Err(bad_request(
                "We could not parse the JSON body of your request.",
                None,
            ));
        };
        let Some(model) = body.get("model").and_then(Value::as_str) else {
            return Err(bad_request(
                "you must provide a model parameter",
                Some("model"),
            ));
        };
        let messages = match body.get("messages").and_then(Value::as_array) {
            Some(m) if !m.is_empty() => m,
            _ => {
                return Err(bad_request(
                    "'messages' must be a non-empty array",
                    Some("messages"),
                ));
            }
        };
        let mut prompt_tokens = 0;
        let mut last_user = None;
        for m in messages {
            let text = content_text(m.get("content"));
            prompt_tokens += mock_tokens(&text);
            if m.get("role").and_then(Value::as_str) == Some("user") {
                last_user = Some(text);
            }
        }
        let mut content = last_user.unwrap_or_default();
        let mut finish_reason = "stop";

        let limit = body
            .get("max_completion_tokens")
            .or_else(|| body.get("max_tokens"))
            .and_then(Value::as_u64);
        if let Some(limit) = limit {
            let words: Vec<&str> = content.split_whitespace().collect();
            if words.len() as u64 > limit {
                content = words
                    .iter()
                    .take(usize::try_from(limit).unwrap_or(usize::MAX))
                    .copied()
                    .collect::<Vec<_>>()
                    .join(" ");
                finish_reason = "length";
            }
        }

        let tool_call = tool_to_call(body).map(|name| (format!("call_mock_{n}"), name));
        if tool_call.is_some() {
            content.clear();
            finish_reason = "tool_calls";
        }
        let completion_tokens = if tool_call.is_some() {
            1
        } else {
            mock_tokens(&content)
        };
        let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
        let include_usage = body
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            == Some(true);
        Ok(Chat {
            id: format!("chatcmpl-mock-{n}"),
            model: model.to_owned(),
            content,
            finish_reason,
            tool_call,
            prompt_tokens,
            completion_tokens,
            include_usage,
            stream,
        })
    }

    fn usage(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0
            }
        })
    }

    fn tool_calls_json(&self) -> Option<Value> {
        self.tool_call.as_ref().map(|(id, name)| {
            json!([{ "id": id, "type": "function",
                     "function": {"name": name, "arguments": "{}"} }])
        })
    }

    /// The non-streamed `chat.completion` object.
    pub(crate) fn completion(&self) -> Value {
        let mut message = Map::new();
        message.insert("role".into(), json!("assistant"));
        message.insert(
            "content".into(),
            if self.tool_call.is_some() {
                Value::Null
            } else {
                json!(self.content)
            },
        );
        message.insert("refusal".into(), Value::Null);
        if let Some(tc) = self.tool_calls_json() {
            message.insert("tool_calls".into(), tc);
        }
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": CREATED,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": message,
                "logprobs": null,
                "finish_reason": self.finish_reason
            }],
            "usage": self.usage(),
            "system_fingerprint": "fp_mock"
        })
    }

    fn chunk(&self, choices: Value, usage: Option<Value>) -> Value {
        let mut c = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": self.model,
            "system_fingerprint": "fp_mock",
            "choices": choices,
        });
        if self.include_usage
            && let Some(obj) = c.as_object_mut()
        {
            obj.insert("usage".into(), usage.unwrap_or(Value::Null));
        }
        c
    }

    /// The streamed answer as SSE events (each `data: ...\n\n`), ending with `[DONE]`.
    pub(crate) fn sse_events(&self, config: &MockConfig) -> Vec<String> {
        let mut chunks = Vec::new();
        let choice = |delta: Value, finish: Option<&str>| json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
        chunks.push(self.chunk(
            choice(
                json!({"role": "assistant", "content": "", "refusal": null}),
                None,
            ),
            None,
        ));
        if let Some((id, name)) = &self.tool_call {
            chunks.push(self.chunk(
                choice(
                    json!({"tool_calls": [{"index": 0, "id": id, "type": "function",
                        "function": {"name": name, "arguments": ""}}]}),
                    None,
                ),
                None,
            ));
            chunks.push(self.chunk(
                choice(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
                    None,
                ),
                None,
            ));
        } else {
            for piece in word_pieces(&self.content) {
                chunks.push(self.chunk(choice(json!({"content": piece}), None), None));
            }
        }
        chunks.push(self.chunk(choice(json!({}), Some(self.finish_reason)), None));
        if self.include_usage {
            let choices = match config.usage_shape {
                UsageShape::EmptyChoices => json!([]),
                UsageShape::EmptyDelta => choice(json!({}), None),
            };
            chunks.push(self.chunk(choices, Some(self.usage())));
        }
        let mut events: Vec<String> = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
        events.push("data: [DONE]\n\n".to_owned());
        if config.keep_alive_comments {
            let mut with = Vec::with_capacity(events.len() * 2 + 1);
            with.push(": keep-alive\n\n".to_owned());
            for e in events {
                with.push(e);
                with.push(": keep-alive\n\n".to_owned());
            }
            events = with;
        }
        events
    }
}

/// Splits text into words, each keeping the whitespace that follows it.
fn word_pieces(text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut in_space = false;
    for ch in text.chars() {
        if ch.is_whitespace() {
            in_space = true;
        } else if in_space {
            pieces.push(std::mem::take(&mut current));
            in_space = false;
        }
        current.push(ch);
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

/// The function the request forces: `tool_choice` naming one, or `required` (the first tool).
fn tool_to_call(body: &Map<String, Value>) -> Option<String> {
    let tools = body.get("tools").and_then(Value::as_array)?;
    let first = tools
        .first()
        .and_then(|t| t.get("function"))
        .and_then(|f| f.get("name"))
        .and_then(Value::as_str);
    match body.get("tool_choice")? {
        Value::String(s) if s == "required" => first.map(str::to_owned),
        Value::Object(o) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    }
}

/// Splits SSE events into pieces of at most `n` bytes (to test clients reading split events).
pub(crate) fn split_pieces(events: Vec<String>, n: Option<usize>) -> Vec<Bytes> {
    match n {
        Some(n) if n > 0 => events
            .into_iter()
            .flat_map(|e| {
                e.into_bytes()
                    .chunks(n)
                    .map(Bytes::copy_from_slice)
                    .collect::<Vec<_>>()
            })
            .collect(),
        _ => events.into_iter().map(Bytes::from).collect(),
    }
}

/// The deterministic embedding of `text`: `dims` values from a hash, normalized to length 1.
///
/// ```
/// let a = flowloom_testkit::server::mock_embedding("hello", 4);
/// assert_eq!(a.len(), 4);
/// assert_eq!(a, flowloom_testkit::server::mock_embedding("hello", 4));
/// ```
pub fn mock_embedding(text: &str, dims: usize) -> Vec<f32> {
    let mut v: Vec<f64> = (0..dims)
        .map(|i| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in text.bytes().chain((i as u64).to_le_bytes()) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            (h >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > 0.0 {
        for x in &mut v {
            *x /= norm;
        }
    }
    v.into_iter().map(|x| x as f32).collect()
}

/// Answers `POST /v1/embeddings`.
pub(crate) fn embeddings(body: Option<&Value>, config: &MockConfig) -> Result<Value, (u16, Value)> {
    let Some(body) = body.and_then(Value::as_object) else {
        return Err(bad_request(
            "We could not parse the JSON body of your request.",
            None,
        ));
    };
    let Some(model) = body.get("model").and_then(Value::as_str) else {
        return Err(bad_request(
            "you must provide a model parameter",
            Some("model"),
        ));
    };
    let texts: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        _ => {
            return Err(bad_request(
                "'input' must be a string or an array",
                Some("input"),
            ));
        }
    };
    if texts.is_empty() || texts.iter().any(String::is_empty) {
        return Err(bad_request(
            "'input' must not be empty and must not contain empty strings",
            Some("input"),
        ));
    }
    if texts.len() > config.max_embedding_inputs {
        return Err(bad_request(
            &format!(
                "'input' has {} items; at most {} are allowed per request",
                texts.len(),
                config.max_embedding_inputs
            ),
            Some("input"),
        ));
    }
    let dims = match body.get("dimensions") {
        None | Some(Value::Null) => config.embedding_dimensions,
        Some(d) => match d.as_u64() {
            Some(d) if d >= 1 => usize::try_from(d).unwrap_or(config.embedding_dimensions),
            _ => {
                return Err(bad_request(
                    "'dimensions' must be an integer >= 1",
                    Some("dimensions"),
                ));
            }
        },
    };
    let base64 = match body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(bad_request(
                &format!("'{other}' is not one of ['float', 'base64'] - 'encoding_format'"),
                Some("encoding_format"),
            ));
        }
    };
    let mut tokens = 0;
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            tokens += mock_tokens(t);
            let v = mock_embedding(t, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
    }))
}

/// Answers `GET /v1/models`.
pub(crate) fn models(config: &MockConfig) -> Value {
    let data: Vec<Value> = config
        .models
        .iter()
        .map(|m| json!({"id": m, "object": "model", "created": CREATED, "owned_by": "flowloom-mock"}))
        .collect();
    json!({"object": "list", "data": data})
}
