//! Chat completions on the wire: [`LlmRequest`] to the request body, and the response body
//! to [`LlmResponse`].
//!
//! Mapping of the request:
//! - `model`, `messages` (every role; an assistant's `tool_calls` as
//!   `{"id","type":"function","function":{"name","arguments"}}` with `content: null` when it
//!   has no text; a tool message's `tool_call_id`; `name` where given);
//! - `temperature`, unless [`TemperaturePolicy`](crate::TemperaturePolicy) leaves it out;
//! - the token limit as `max_tokens` or `max_completion_tokens`
//!   ([`TokenLimitParam`](crate::TokenLimitParam));
//! - `tools` as function tools, `tool_choice` (`auto`/`none`/`required` or a named function);
//! - `response_format` as `text`, `json_object` or `json_schema` (name made to fit
//!   `^[a-zA-Z0-9_-]{1,64}$`);
//! - `extra_params` copied as they are and win over the fields above, except `model`,
//!   `messages` and `stream`, which are the provider's.
//!
//! The body is written straight from the borrowed request, byte for byte what `serde_json`
//! would write. An answer is read by a fast reader that keeps only the fields mapped below
//! and checks the rest is valid JSON; whatever it does not handle (escaped keys, duplicate
//! or mistyped fields, deep nesting...) is read by `serde_json` instead, with the same
//! result or error.

use std::borrow::Cow;

use flowloom_core::{
    FinishReason, LlmError, LlmRequest, LlmResponse, Message, ResponseFormat, Role, TokenUsage,
    ToolCall, ToolChoice, ToolDefinition,
};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::OpenAiConfig;

/// Keys of the body only the provider sets; `extra_params` with these names are ignored.
const OWNED_KEYS: [&str; 3] = ["model", "messages", "stream"];

/// The chat request body, serialized straight from the borrowed request.
pub(crate) struct ChatBody<'a> {
    pub(crate) req: &'a LlmRequest,
    pub(crate) config: &'a OpenAiConfig,
    pub(crate) stream: bool,
}

struct WireToolCalls<'a>(&'a [ToolCall]);
struct Tools<'a>(&'a [ToolDefinition]);

/// Appends `s` as a JSON string, escaped exactly as `serde_json` escapes it.
fn write_str(out: &mut Vec<u8>, s: &str) -> serde_json::Result<()> {
    // Without a quote, backslash or control character there is nothing to escape: copy it.
    // (A fold without early exit, so the check runs over whole words.)
    let plain = !s.bytes().fold(false, |hit, b| {
        hit | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if plain {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(&mut *out, s)
    }
}

/// Appends `,"key":` for a key that needs no escaping (the provider's own keys).
fn write_key(out: &mut Vec<u8>, key: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

impl ChatBody<'_> {
    /// Writes the body as compact JSON: `model`, `messages`, `temperature`, the token limit,
    /// `tools`, `tool_choice`, `response_format`, `stream`, `stream_options` (those that
    /// apply, in this order), then `extra_params` in their order.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let req = self.req;
        let extra = &req.extra_params;
        let free = |k: &str| extra.is_empty() || !extra.contains_key(k);
        let (temperature, max_completion_tokens) = self.config.wire_choices(&req.model);
        out.extend_from_slice(b"{\"model\":");
        write_str(out, &req.model)?;
        out.extend_from_slice(b",\"messages\":[");
        for (i, msg) in req.messages.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_message(out, msg)?;
        }
        out.push(b']');
        if temperature && free("temperature") {
            write_key(out, "temperature");
            serde_json::to_writer(&mut *out, &req.temperature)?;
        }
        if free("max_tokens") && free("max_completion_tokens") {
            write_key(
                out,
                if max_completion_tokens {
                    "max_completion_tokens"
                } else {
                    "max_tokens"
                },
            );
            serde_json::to_writer(&mut *out, &req.max_tokens)?;
        }
        let rest = !req.tools.is_empty()
            || req.tool_choice.is_some()
            || req.response_format.is_some()
            || self.stream
            || !extra.is_empty();
        if rest {
            self.write_rest(out)?;
        }
        out.push(b'}');
        Ok(())
    }

    /// The fields after the token limit, apart so the usual body's path stays short.
    #[cold]
    #[inline(never)]
    fn write_rest(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let req = self.req;
        let extra = &req.extra_params;
        let free = |k: &str| extra.is_empty() || !extra.contains_key(k);
        if !req.tools.is_empty() && free("tools") {
            write_key(out, "tools");
            serde_json::to_writer(&mut *out, &Tools(&req.tools))?;
        }
        if let Some(choice) = &req.tool_choice
            && free("tool_choice")
        {
            write_key(out, "tool_choice");
            serde_json::to_writer(&mut *out, &tool_choice(choice))?;
        }
        if let Some(format) = &req.response_format
            && free("response_format")
        {
            write_key(out, "response_format");
            serde_json::to_writer(&mut *out, &response_format(format))?;
        }
        if self.stream {
            out.extend_from_slice(b",\"stream\":true");
            if self.config.stream_include_usage && free("stream_options") {
                out.extend_from_slice(b",\"stream_options\":{\"include_usage\":true}");
            }
        }
        for (k, v) in extra {
            if !OWNED_KEYS.contains(&k.as_str()) {
                out.push(b',');
                write_str(out, k)?;
                out.push(b':');
                serde_json::to_writer(&mut *out, v)?;
            }
        }
        Ok(())
    }
}

/// One message: `role`, `content` (`null` for an assistant's tool calls without text), then
/// `name`, `tool_call_id` and `tool_calls` where they apply.
fn write_message(out: &mut Vec<u8>, msg: &Message) -> serde_json::Result<()> {
    out.extend_from_slice(match msg.role {
        Role::System => b"{\"role\":\"system\"",
        Role::User => b"{\"role\":\"user\"",
        Role::Assistant => b"{\"role\":\"assistant\"",
        Role::Tool => b"{\"role\":\"tool\"",
    });
    write_key(out, "content");
    if msg.role == Role::Assistant && !msg.tool_calls.is_empty() && msg.content.is_empty() {
        out.extend_from_slice(b"null");
    } else {
        write_str(out, &msg.content)?;
    }
    if let Some(name) = &msg.name
        && msg.role != Role::Tool
    {
        write_key(out, "name");
        write_str(out, name)?;
    }
    if msg.role == Role::Tool
        && let Some(id) = &msg.tool_call_id
    {
        write_key(out, "tool_call_id");
        write_str(out, id)?;
    }
    if msg.role == Role::Assistant && !msg.tool_calls.is_empty() {
        write_key(out, "tool_calls");
        serde_json::to_writer(&mut *out, &WireToolCalls(&msg.tool_calls))?;
    }
    out.push(b'}');
    Ok(())
}

impl Serialize for WireToolCalls<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|c| {
            serde_json::json!({
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments}
            })
        }))
    }
}

impl Serialize for Tools<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|t| {
            let mut f = serde_json::Map::new();
            f.insert("name".into(), Value::String(t.name.clone()));
            if let Some(d) = &t.description {
                f.insert("description".into(), Value::String(d.clone()));
            }
            f.insert("parameters".into(), t.parameters.clone());
            if let Some(strict) = t.strict {
                f.insert("strict".into(), Value::Bool(strict));
            }
            serde_json::json!({"type": "function", "function": f})
        }))
    }
}

fn tool_choice(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::Auto => Value::from("auto"),
        ToolChoice::None => Value::from("none"),
        ToolChoice::Required => Value::from("required"),
        ToolChoice::Function(name) => {
            serde_json::json!({"type": "function", "function": {"name": name}})
        }
    }
}

/// A schema name as OpenAI accepts it: `[a-zA-Z0-9_-]`, 1 to 64 characters.
pub(crate) fn schema_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if out.is_empty() {
        out.push_str("response");
    }
    out
}

fn response_format(format: &ResponseFormat) -> Value {
    match format {
        ResponseFormat::Text => serde_json::json!({"type": "text"}),
        ResponseFormat::JsonObject => serde_json::json!({"type": "json_object"}),
        ResponseFormat::JsonSchema {
            name,
            schema,
            strict,
        } => serde_json::json!({
            "type": "json_schema",
            "json_schema": {"name": schema_name(name), "schema": schema, "strict": strict}
        }),
    }
}

/// Checks what the API would reject anyway, before sending: a tool message needs
/// `tool_call_id`, and there must be at least one message.
pub(crate) fn check_request(req: &LlmRequest, provider: &str) -> Result<(), LlmError> {
    if req.model.trim().is_empty() {
        return Err(LlmError::InvalidRequest {
            provider: provider.to_owned(),
            message: "`model` is empty; name a model, e.g. gpt-4o-mini".to_owned(),
        });
    }
    if req.messages.is_empty() {
        return Err(LlmError::InvalidRequest {
            provider: provider.to_owned(),
            message: "`messages` is empty; add at least one user message".to_owned(),
        });
    }
    for (i, m) in req.messages.iter().enumerate() {
        if m.role == Role::Tool && m.tool_call_id.as_deref().is_none_or(str::is_empty) {
            return Err(LlmError::InvalidRequest {
                provider: provider.to_owned(),
                message: format!(
                    "messages[{i}] has role `tool` but no `tool_call_id`; set it to the id of \
                     the assistant tool call it answers (Message::tool(id, text))"
                ),
            });
        }
    }
    Ok(())
}

// ---- responses ----

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub(crate) struct WireUsage {
    #[serde(default)]
    pub(crate) prompt_tokens: u64,
    #[serde(default)]
    pub(crate) completion_tokens: u64,
    #[serde(default)]
    pub(crate) total_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    pub(crate) completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub(crate) struct PromptDetails {
    #[serde(default)]
    pub(crate) cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub(crate) struct CompletionDetails {
    #[serde(default)]
    pub(crate) reasoning_tokens: Option<u64>,
}

impl WireUsage {
    /// The usage as flowloom counts it: total is always prompt + completion (a server's own
    /// total that differs is logged); cached and reasoning counts are kept where reported,
    /// bounded by the counts they are part of.
    pub(crate) fn into_usage(self, model: &str, provider: &str) -> TokenUsage {
        let mut u = TokenUsage::new(self.prompt_tokens, self.completion_tokens, model, provider);
        if let Some(t) = self.total_tokens
            && t != u.total_tokens
        {
            tracing::debug!(
                provider,
                reported = t,
                computed = u.total_tokens,
                "total_tokens differs from prompt + completion; using the sum"
            );
        }
        u.cached_prompt_tokens = self
            .prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .map(|c| c.min(u.prompt_tokens));
        u.reasoning_tokens = self
            .completion_tokens_details
            .and_then(|d| d.reasoning_tokens)
            .map(|r| r.min(u.completion_tokens));
        u
    }
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub(crate) struct WireResponse<'a> {
    #[serde(default)]
    pub(crate) id: Option<String>,
    #[serde(default, borrow)]
    pub(crate) model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) choices: Vec<WireChoice<'a>>,
    #[serde(default)]
    pub(crate) usage: Option<WireUsage>,
}

/// What is kept of a chat completion body: its first choice only.
#[cfg_attr(test, derive(Debug, PartialEq))]
pub(crate) struct Completion<'a> {
    pub(crate) id: Option<String>,
    pub(crate) model: Option<Cow<'a, str>>,
    pub(crate) choice: Option<WireChoice<'a>>,
    pub(crate) usage: Option<WireUsage>,
}

impl<'a> From<WireResponse<'a>> for Completion<'a> {
    fn from(w: WireResponse<'a>) -> Self {
        Completion {
            id: w.id,
            model: w.model,
            choice: w.choices.into_iter().next(),
            usage: w.usage,
        }
    }
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub(crate) struct WireChoice<'a> {
    #[serde(default)]
    pub(crate) message: Option<WireMessageOut>,
    #[serde(default, borrow)]
    pub(crate) finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub(crate) struct WireMessageOut {
    #[serde(default)]
    pub(crate) content: Option<String>,
    #[serde(default)]
    pub(crate) refusal: Option<String>,
    #[serde(default)]
    pub(crate) tool_calls: Vec<WireToolCall>,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub(crate) struct WireToolCall {
    #[serde(default)]
    pub(crate) id: String,
    pub(crate) function: WireFunction,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub(crate) struct WireFunction {
    #[serde(default)]
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) arguments: String,
}

/// Reads a `chat.completion` body. The first choice is the answer; a refusal with no content
/// becomes the content with `finish_reason: content_filter`; a missing finish reason reads
/// as `stop`.
pub(crate) fn parse_response(
    body: &[u8],
    requested_model: &str,
    provider: &str,
    latency_ms: f64,
) -> Result<LlmResponse, LlmError> {
    // The fast reader takes the usual bodies; whatever it leaves goes to `serde_json`.
    let wire: Result<Completion<'_>, serde_json::Error> = match std::str::from_utf8(body) {
        Ok(text) => crate::scan::chat_completion(text).map_or_else(
            || serde_json::from_str::<WireResponse<'_>>(text).map(Completion::from),
            Ok,
        ),
        Err(_) => serde_json::from_slice::<WireResponse<'_>>(body).map(Completion::from),
    };
    let wire = wire.map_err(|e| {
        crate::error::decode_error(
            provider,
            "the chat completion is not valid JSON of the expected shape",
            &e,
            body,
        )
    })?;
    let Some(choice) = wire.choice else {
        return Err(crate::error::decode_error(
            provider,
            "the chat completion has no choices",
            &"`choices` is empty or missing",
            body,
        ));
    };
    let Some(message) = choice.message else {
        return Err(crate::error::decode_error(
            provider,
            "the chat completion's first choice has no message",
            &"`choices[0].message` is missing",
            body,
        ));
    };
    let model = wire
        .model
        .map(Cow::into_owned)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| requested_model.to_owned());
    let mut finish = choice
        .finish_reason
        .as_deref()
        .map_or(FinishReason::Stop, FinishReason::parse);
    let content = match (message.content, message.refusal) {
        (Some(c), _) if !c.is_empty() => c,
        (_, Some(r)) if !r.is_empty() => {
            finish = FinishReason::ContentFilter;
            r
        }
        (c, _) => c.unwrap_or_default(),
    };
    let usage = wire.usage.map(|u| u.into_usage(&model, provider));
    Ok(LlmResponse {
        content,
        model,
        provider: provider.to_owned(),
        usage,
        latency_ms,
        finish_reason: finish,
        response_id: wire.id,
        tool_calls: message
            .tool_calls
            .into_iter()
            .map(|t| ToolCall {
                id: t.id,
                name: t.function.name,
                arguments: t.function.arguments,
            })
            .collect(),
        attempts: Vec::new(),
        cached: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowloom_core::{Message, ResponseFormat};
    use serde_json::json;

    use serde::ser::{SerializeMap, Serializer};

    /// The body as `serde` wrote it before [`ChatBody::write_json`], which must match it byte
    /// for byte.
    struct Reference<'a>(ChatBody<'a>);
    struct Messages<'a>(&'a [Message]);
    struct RefMessage<'a>(&'a Message);

    impl Serialize for Reference<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let this = &self.0;
            let req = this.req;
            let extra = &req.extra_params;
            let free = |k: &str| !extra.contains_key(k);
            let mut m = s.serialize_map(None)?;
            m.serialize_entry("model", &req.model)?;
            m.serialize_entry("messages", &Messages(&req.messages))?;
            if this.config.sends_temperature(&req.model) && free("temperature") {
                m.serialize_entry("temperature", &req.temperature)?;
            }
            let limit_key = if this.config.uses_max_completion_tokens(&req.model) {
                "max_completion_tokens"
            } else {
                "max_tokens"
            };
            if free("max_tokens") && free("max_completion_tokens") {
                m.serialize_entry(limit_key, &req.max_tokens)?;
            }
            if !req.tools.is_empty() && free("tools") {
                m.serialize_entry("tools", &Tools(&req.tools))?;
            }
            if let Some(choice) = &req.tool_choice
                && free("tool_choice")
            {
                m.serialize_entry("tool_choice", &tool_choice(choice))?;
            }
            if let Some(format) = &req.response_format
                && free("response_format")
            {
                m.serialize_entry("response_format", &response_format(format))?;
            }
            if this.stream {
                m.serialize_entry("stream", &true)?;
                if this.config.stream_include_usage && free("stream_options") {
                    m.serialize_entry(
                        "stream_options",
                        &serde_json::json!({"include_usage": true}),
                    )?;
                }
            }
            for (k, v) in extra {
                if !OWNED_KEYS.contains(&k.as_str()) {
                    m.serialize_entry(k, v)?;
                }
            }
            m.end()
        }
    }

    impl Serialize for Messages<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.0.iter().map(RefMessage))
        }
    }

    impl Serialize for RefMessage<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let msg = self.0;
            let mut m = s.serialize_map(None)?;
            let role = match msg.role {
                Role::System => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
                Role::Tool => "tool",
            };
            m.serialize_entry("role", role)?;
            if msg.role == Role::Assistant && !msg.tool_calls.is_empty() && msg.content.is_empty() {
                m.serialize_entry("content", &Value::Null)?;
            } else {
                m.serialize_entry("content", &msg.content)?;
            }
            if let Some(name) = &msg.name
                && msg.role != Role::Tool
            {
                m.serialize_entry("name", name)?;
            }
            if msg.role == Role::Tool
                && let Some(id) = &msg.tool_call_id
            {
                m.serialize_entry("tool_call_id", id)?;
            }
            if msg.role == Role::Assistant && !msg.tool_calls.is_empty() {
                m.serialize_entry("tool_calls", &WireToolCalls(&msg.tool_calls))?;
            }
            m.end()
        }
    }

    /// The body `write_json` writes, checked against the reference.
    fn encode(req: &LlmRequest, config: &OpenAiConfig, stream: bool) -> String {
        let body = ChatBody {
            req,
            config,
            stream,
        };
        let mut out = Vec::new();
        body.write_json(&mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        let reference = serde_json::to_string(&Reference(body)).unwrap();
        assert_eq!(out, reference);
        out
    }

    fn body(req: &LlmRequest, config: &OpenAiConfig, stream: bool) -> Value {
        serde_json::from_str(&encode(req, config, stream)).unwrap()
    }

    #[test]
    fn bodies_are_written_as_serde_writes_them_escapes_included() {
        let tricky = "quote \" backslash \\ slash / nl \n tab \t cr \r nul \u{0} esc \u{1b} \
                      del \u{7f} é 中 😀 \u{2028}";
        let c = OpenAiConfig::default();
        let mut assistant = Message::assistant(tricky);
        assistant.name = Some(tricky.into());
        assistant.tool_calls = vec![ToolCall {
            id: tricky.into(),
            name: "f".into(),
            arguments: "{\"a\":\"\\n\"}".into(),
        }];
        let mut named = Message::user("plain");
        named.name = Some("alice".into());
        let mut req = LlmRequest::from_messages(
            tricky,
            vec![
                Message::system(tricky),
                named,
                assistant,
                Message::tool(tricky, tricky),
                Message::user(""),
            ],
        )
        .with_extra(tricky, tricky)
        .with_extra("n", json!([1, 2.5, null, {"k": "v"}]));
        req.temperature = f64::NAN;
        let b = body(&req, &c, false);
        assert_eq!(b["model"], tricky);
        assert_eq!(b["messages"][0]["content"], tricky);
        assert_eq!(b["messages"][1]["name"], "alice");
        assert_eq!(b["messages"][2]["name"], tricky);
        assert_eq!(b["messages"][3]["tool_call_id"], tricky);
        assert_eq!(b["messages"][4]["content"], "");
        assert_eq!(b[tricky], tricky);
        assert_eq!(b["temperature"], Value::Null);
        // Each kind of character needing care, alone in a string.
        for text in [
            "line\nbreak",
            "nul \u{0} and \u{1f}",
            "tab\t",
            "quote \" only",
            "backslash \\ only",
            "é 中 😀 \u{7f} \u{2028} / plain",
            "",
        ] {
            let mut m = Message::user(text);
            m.name = Some(text.into());
            let req = LlmRequest::from_messages(text, vec![m, Message::tool(text, text)])
                .with_extra(text, text);
            let b = body(&req, &c, false);
            assert_eq!(b["messages"][0]["content"], text);
            assert_eq!(b["messages"][1]["tool_call_id"], text);
        }
        for config in [
            OpenAiConfig::default(),
            OpenAiConfig {
                stream_include_usage: false,
                temperature_policy: crate::TemperaturePolicy::Never,
                token_limit_param: crate::TokenLimitParam::MaxCompletionTokens,
                ..OpenAiConfig::default()
            },
        ] {
            for stream in [false, true] {
                encode(&LlmRequest::new("o3-mini", "hi"), &config, stream);
                encode(&LlmRequest::new("gpt-4o", "hi"), &config, stream);
            }
        }
        let b = body(
            &LlmRequest::new("m", "hi").with_extra("stream_options", json!({"x": 1})),
            &c,
            true,
        );
        assert_eq!(b["stream_options"], json!({"x": 1}));
        assert_eq!(b["stream"], true);
    }

    #[test]
    fn plain_models_get_max_tokens_and_temperature() {
        let c = OpenAiConfig::default();
        let req = LlmRequest::new("gpt-4o-mini", "hi").with_max_tokens(5);
        let b = body(&req, &c, false);
        assert_eq!(b["max_tokens"], 5);
        assert!(b.get("max_completion_tokens").is_none());
        assert_eq!(b["temperature"], 0.7);
        assert!(b.get("stream").is_none());
    }

    #[test]
    fn reasoning_models_get_max_completion_tokens_and_no_temperature() {
        let c = OpenAiConfig::default();
        for model in [
            "o1",
            "o3-mini",
            "o4-mini",
            "gpt-5",
            "gpt-5-mini",
            "openai/o3",
        ] {
            let b = body(&LlmRequest::new(model, "hi").with_max_tokens(9), &c, false);
            assert_eq!(b["max_completion_tokens"], 9, "{model}");
            assert!(b.get("max_tokens").is_none(), "{model}");
            assert!(b.get("temperature").is_none(), "{model}");
        }
        // Not reasoning models, despite the letters:
        for model in ["o1x", "gpt-50", "omni"] {
            let b = body(&LlmRequest::new(model, "hi"), &c, false);
            assert!(b.get("max_tokens").is_some(), "{model}");
        }
    }

    #[test]
    fn the_rule_is_configurable() {
        let c = OpenAiConfig {
            token_limit_param: crate::TokenLimitParam::MaxCompletionTokens,
            temperature_policy: crate::TemperaturePolicy::Always,
            ..OpenAiConfig::default()
        };
        let b = body(&LlmRequest::new("llama3", "hi"), &c, false);
        assert!(b.get("max_completion_tokens").is_some());
        let b = body(&LlmRequest::new("o3", "hi"), &c, false);
        assert!(b.get("temperature").is_some());
    }

    #[test]
    fn extra_params_pass_through_and_win_except_owned_keys() {
        let c = OpenAiConfig::default();
        let req = LlmRequest::new("gpt-4o", "hi")
            .with_extra("seed", 42)
            .with_extra("temperature", 0.0)
            .with_extra("model", "hijack")
            .with_extra("max_completion_tokens", 3);
        let b = body(&req, &c, false);
        let text = encode(&req, &c, false);
        assert_eq!(text.matches("\"temperature\"").count(), 1, "{text}");
        assert_eq!(b["seed"], 42);
        assert_eq!(b["temperature"], 0.0);
        assert_eq!(b["model"], "gpt-4o");
        assert_eq!(b["max_completion_tokens"], 3);
        assert!(b.get("max_tokens").is_none());
    }

    #[test]
    fn tool_messages_and_assistant_tool_calls_are_mapped() {
        let c = OpenAiConfig::default();
        let mut assistant = Message::assistant("");
        assistant.tool_calls = vec![ToolCall {
            id: "call_1".into(),
            name: "lookup".into(),
            arguments: "{\"q\":1}".into(),
        }];
        let mut req = LlmRequest::from_messages(
            "gpt-4o",
            vec![Message::user("q"), assistant, Message::tool("call_1", "42")],
        );
        req.tools = vec![ToolDefinition {
            name: "lookup".into(),
            description: Some("find".into()),
            parameters: json!({"type": "object", "properties": {}}),
            strict: Some(true),
        }];
        req.tool_choice = Some(ToolChoice::Function("lookup".into()));
        let b = body(&req, &c, false);
        assert_eq!(b["messages"][1]["content"], Value::Null);
        assert_eq!(
            b["messages"][1]["tool_calls"][0]["function"]["name"],
            "lookup"
        );
        assert_eq!(b["messages"][2]["role"], "tool");
        assert_eq!(b["messages"][2]["tool_call_id"], "call_1");
        assert_eq!(b["tools"][0]["function"]["strict"], true);
        assert_eq!(b["tool_choice"]["function"]["name"], "lookup");
    }

    #[test]
    fn response_format_json_schema_from_a_type() {
        #[derive(schemars::JsonSchema)]
        #[allow(dead_code)]
        struct Verdict {
            safe: bool,
        }
        let c = OpenAiConfig::default();
        let mut req = LlmRequest::new("gpt-4o", "hi");
        req.response_format = Some(ResponseFormat::json_schema_for::<Verdict>());
        let b = body(&req, &c, false);
        assert_eq!(b["response_format"]["type"], "json_schema");
        assert_eq!(b["response_format"]["json_schema"]["name"], "Verdict");
        assert_eq!(
            b["response_format"]["json_schema"]["schema"]["properties"]["safe"]["type"],
            "boolean"
        );
        assert_eq!(schema_name("a b<c>"), "a_b_c_");
        assert_eq!(schema_name(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn tool_message_without_id_is_refused_before_sending() {
        let mut m = Message::tool("x", "y");
        m.tool_call_id = None;
        let req = LlmRequest::from_messages("gpt-4o", vec![Message::user("a"), m]);
        let e = check_request(&req, "openai").unwrap_err();
        assert!(e.to_string().contains("tool_call_id"), "{e}");
    }

    #[test]
    fn usage_details_are_read() {
        let body = br#"{"id":"c1","model":"o3","choices":[{"message":{"content":"hi"},"finish_reason":"length"}],
            "usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,
            "prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":3}}}"#;
        let r = parse_response(body, "o3", "openai", 1.0).unwrap();
        let u = r.usage.unwrap();
        assert_eq!(u.cached_prompt_tokens, Some(4));
        assert_eq!(u.reasoning_tokens, Some(3));
        assert_eq!(u.provider, "openai");
        assert_eq!(r.finish_reason, FinishReason::Length);
        assert_eq!(r.response_id.as_deref(), Some("c1"));
    }

    #[test]
    fn missing_usage_is_none_not_zero() {
        let body = br#"{"choices":[{"message":{"content":"hi"}}]}"#;
        let r = parse_response(body, "m", "ollama", 1.0).unwrap();
        assert_eq!(r.usage, None);
        assert_eq!(r.model, "m");
        assert_eq!(r.finish_reason, FinishReason::Stop);
    }

    #[test]
    fn refusal_becomes_content_filtered_content() {
        let body = br#"{"choices":[{"message":{"content":null,"refusal":"I can't"},"finish_reason":"stop"}]}"#;
        let r = parse_response(body, "m", "openai", 1.0).unwrap();
        assert_eq!(r.content, "I can't");
        assert_eq!(r.finish_reason, FinishReason::ContentFilter);
    }

    #[test]
    fn bodies_that_are_not_utf8_are_read_as_serde_json_reads_them() {
        // Invalid UTF-8 in a field that is not kept: serde_json accepts it, so does the provider.
        let mut body = br#"{"x":"\xff\xfe","choices":[{"message":{"content":"hi"}}]}"#.to_vec();
        let at = body.iter().position(|&b| b == b'\\').unwrap();
        body.splice(at..at + 8, [0xff, 0xfe]);
        let r = parse_response(&body, "m", "openai", 1.0).unwrap();
        assert_eq!(r.content, "hi");
        // In the content it is a decode error.
        let mut body = br#"{"choices":[{"message":{"content":"h?"}}]}"#.to_vec();
        let at = body.iter().position(|&b| b == b'?').unwrap();
        body[at] = 0xff;
        let e = parse_response(&body, "m", "openai", 1.0).unwrap_err();
        assert!(matches!(e, LlmError::Decode { .. }), "{e}");
    }

    #[test]
    fn no_choices_is_a_decode_error() {
        let e = parse_response(br#"{"choices":[]}"#, "m", "openai", 1.0).unwrap_err();
        assert!(matches!(e, LlmError::Decode { .. }));
    }
}
