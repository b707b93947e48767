//! Streamed chat completions: an SSE parser that survives events split across reads,
//! comment and keep-alive lines, `\r\n` line ends and `[DONE]`, and the assembly of the
//! chunks into deltas and a final [`LlmResponse`].
//!
//! The stream yields [`StreamEvent::Delta`] for each piece of text, then one
//! [`StreamEvent::Done`] carrying the whole answer, its usage (from the chunk that
//! `stream_options.include_usage` adds, whose `choices` may be empty or hold an empty delta),
//! finish reason, tool calls and response id. It ends well on `data: [DONE]`, or when the
//! body ends cleanly after a finish reason was received (some compatible servers send no
//! `[DONE]`). A body that breaks off, or ends before any finish reason, yields an error and no
//! `Done`: a cut answer is never passed off as a short one.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use flowloom_core::{FinishReason, LlmError, LlmResponse, LlmStream, StreamEvent, ToolCall};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;

use crate::chat::WireUsage;

/// An incremental parser of `text/event-stream` bodies: feed it bytes as they come, get back
/// the `data` of each complete event.
///
/// ```
/// use flowloom_provider_openai::stream::SseParser;
/// let mut p = SseParser::default();
/// assert!(p.feed(b"data: {\"a\"").is_empty());
/// assert_eq!(p.feed(b":1}\n\n: keep-alive\n\ndata: [DONE]\n\n"), vec!["{\"a\":1}", "[DONE]"]);
/// ```
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    data: Option<String>,
    skip_lf: bool,
}

impl SseParser {
    /// Feeds bytes; returns the data of each event they complete (comments, `event:`, `id:`
    /// and `retry:` fields, and events without data are skipped).
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &b in bytes {
            if self.skip_lf {
                self.skip_lf = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' | b'\r' => {
                    self.skip_lf = b == b'\r';
                    let line = std::mem::take(&mut self.buf);
                    self.line(&line, &mut out);
                }
                _ => self.buf.push(b),
            }
        }
        out
    }

    /// True when bytes of an unfinished line or event are held.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty() || self.data.is_some()
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<String>) {
        if line.is_empty() {
            if let Some(d) = self.data.take() {
                out.push(d);
            }
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|&c| c == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        if field == b"data" {
            let v = String::from_utf8_lossy(value);
            match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(&v);
                }
                None => self.data = Some(v.into_owned()),
            }
        }
    }
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Vec<DeltaToolCall>,
}

#[derive(Deserialize)]
struct DeltaToolCall {
    #[serde(default)]
    index: usize,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<DeltaFunction>,
}

#[derive(Deserialize)]
struct DeltaFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// Assembles chunks into the final answer.
pub(crate) struct Assembler {
    provider: String,
    model: String,
    id: Option<String>,
    content: String,
    refusal: String,
    tool_calls: Vec<ToolCall>,
    finish: Option<FinishReason>,
    usage: Option<WireUsage>,
    started: Instant,
}

impl Assembler {
    pub(crate) fn new(provider: &str, model: &str, started: Instant) -> Self {
        Self {
            provider: provider.to_owned(),
            model: model.to_owned(),
            id: None,
            content: String::new(),
            refusal: String::new(),
            tool_calls: Vec::new(),
            finish: None,
            usage: None,
            started,
        }
    }

    /// Takes one event's data; returns the text delta it carries, if any.
    pub(crate) fn push(&mut self, data: &str) -> Result<Option<String>, LlmError> {
        let chunk: Chunk = serde_json::from_str(data).map_err(|e| {
            crate::error::decode_error(
                &self.provider,
                "a stream chunk is not valid JSON of the expected shape",
                &e,
                data.as_bytes(),
            )
        })?;
        if let Some(err) = chunk.error {
            let obj: crate::error::ErrorObject =
                serde_json::from_value(err.clone()).unwrap_or_default();
            let message = format!("error in the stream: {}", obj.describe());
            return Err(if obj.is_quota() {
                LlmError::QuotaExceeded {
                    provider: self.provider.clone(),
                    message,
                }
            } else {
                LlmError::Server {
                    provider: self.provider.clone(),
                    status: 500,
                    message,
                    retry_after: None,
                }
            });
        }
        if self.id.is_none() {
            self.id = chunk.id;
        }
        if let Some(m) = chunk.model.filter(|m| !m.is_empty()) {
            self.model = m;
        }
        if let Some(u) = chunk.usage {
            self.usage = Some(u);
        }
        let mut text = String::new();
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(f) = choice.finish_reason {
                self.finish = Some(FinishReason::parse(&f));
            }
            let Some(delta) = choice.delta else { continue };
            if let Some(c) = delta.content {
                text.push_str(&c);
            }
            if let Some(r) = delta.refusal {
                self.refusal.push_str(&r);
            }
            for tc in delta.tool_calls {
                while self.tool_calls.len() <= tc.index {
                    self.tool_calls.push(ToolCall {
                        id: String::new(),
                        name: String::new(),
                        arguments: String::new(),
                    });
                }
                let slot = &mut self.tool_calls[tc.index];
                if let Some(id) = tc.id {
                    slot.id = id;
                }
                if let Some(f) = tc.function {
                    if let Some(n) = f.name {
                        slot.name.push_str(&n);
                    }
                    if let Some(a) = f.arguments {
                        slot.arguments.push_str(&a);
                    }
                }
            }
        }
        self.content.push_str(&text);
        Ok((!text.is_empty()).then_some(text))
    }

    pub(crate) fn has_finish(&self) -> bool {
        self.finish.is_some()
    }

    pub(crate) fn finish(self) -> LlmResponse {
        let mut finish = self.finish.unwrap_or(FinishReason::Stop);
        let content = if self.content.is_empty() && !self.refusal.is_empty() {
            finish = FinishReason::ContentFilter;
            self.refusal
        } else {
            self.content
        };
        let usage = self
            .usage
            .map(|u| u.into_usage(&self.model, &self.provider));
        LlmResponse {
            content,
            model: self.model,
            provider: self.provider,
            usage,
            latency_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            finish_reason: finish,
            response_id: self.id,
            tool_calls: self.tool_calls,
            attempts: Vec::new(),
            cached: false,
        }
    }
}

struct State<B> {
    body: B,
    parser: SseParser,
    assembler: Option<Assembler>,
    pending: VecDeque<Result<StreamEvent, LlmError>>,
    received: usize,
    done: bool,
}

/// Turns an SSE body into an [`LlmStream`]; a body of bytes already read works too.
pub(crate) fn events<B>(body: B, assembler: Assembler) -> LlmStream
where
    B: Stream<Item = Result<Bytes, reqwest::Error>> + Send + Unpin + 'static,
{
    let state = State {
        body,
        parser: SseParser::default(),
        assembler: Some(assembler),
        pending: VecDeque::new(),
        received: 0,
        done: false,
    };
    Box::pin(futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(ev) = st.pending.pop_front() {
                return Some((ev, st));
            }
            if st.done {
                return None;
            }
            let asm = st.assembler.as_mut()?;
            match st.body.next().await {
                Some(Ok(bytes)) => {
                    st.received += bytes.len();
                    for data in st.parser.feed(&bytes) {
                        if data.trim() == "[DONE]" {
                            if let Some(a) = st.assembler.take() {
                                st.pending.push_back(Ok(StreamEvent::Done(a.finish())));
                            }
                            st.done = true;
                            break;
                        }
                        let Some(a) = st.assembler.as_mut() else {
                            break;
                        };
                        match a.push(&data) {
                            Ok(Some(text)) => st.pending.push_back(Ok(StreamEvent::Delta(text))),
                            Ok(None) => {}
                            Err(e) => {
                                st.pending.push_back(Err(e));
                                st.done = true;
                                break;
                            }
                        }
                    }
                }
                Some(Err(e)) => {
                    let elapsed = asm.started.elapsed();
                    let mut err = crate::error::from_reqwest(&asm.provider, &e, elapsed);
                    if let LlmError::Connection { message, .. } = &mut err {
                        *message = format!(
                            "the stream broke off after {} bytes, before it was complete: {message}",
                            st.received
                        );
                    }
                    st.pending.push_back(Err(err));
                    st.done = true;
                }
                None => {
                    // The body ended without `[DONE]`: a last event without its blank line
                    // still counts.
                    let mut saw_done = false;
                    let mut failed = false;
                    for data in st.parser.feed(b"\n\n") {
                        if data.trim() == "[DONE]" {
                            saw_done = true;
                            break;
                        }
                        if let Some(a) = st.assembler.as_mut() {
                            match a.push(&data) {
                                Ok(Some(text)) => {
                                    st.pending.push_back(Ok(StreamEvent::Delta(text)));
                                }
                                Ok(None) => {}
                                Err(e) => {
                                    st.pending.push_back(Err(e));
                                    failed = true;
                                    break;
                                }
                            }
                        }
                    }
                    match st.assembler.take() {
                        _ if failed => {}
                        Some(a) if saw_done || a.has_finish() => {
                            st.pending.push_back(Ok(StreamEvent::Done(a.finish())));
                        }
                        Some(a) => st.pending.push_back(Err(LlmError::Connection {
                            provider: a.provider.clone(),
                            message: format!(
                                "the stream ended after {} bytes without a finish reason or \
                                 [DONE]; the answer is incomplete",
                                st.received
                            ),
                        })),
                        None => {}
                    }
                    st.done = true;
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_handles_byte_by_byte_feeding_crlf_and_multiline_data() {
        let text = b": ping\r\n\r\ndata: a\r\ndata: b\r\n\r\nevent: x\nid: 3\ndata:c\n\n";
        let mut p = SseParser::default();
        let mut got = Vec::new();
        for b in text.iter() {
            got.extend(p.feed(std::slice::from_ref(b)));
        }
        assert_eq!(got, vec!["a\nb".to_owned(), "c".to_owned()]);
        assert!(!p.has_partial());
    }

    #[test]
    fn parser_splits_utf8_across_reads() {
        let text = "data: héllo\n\n".as_bytes();
        let mut p = SseParser::default();
        let (a, b) = text.split_at(8); // inside the two bytes of `é`
        assert!(p.feed(a).is_empty());
        assert_eq!(p.feed(b), vec!["héllo"]);
    }

    #[test]
    fn assembler_builds_tool_calls_from_pieces() {
        let mut a = Assembler::new("openai", "m", Instant::now());
        a.push(r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","function":{"name":"f","arguments":""}}]}}]}"#).unwrap();
        a.push(r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"x\""}}]}}]}"#).unwrap();
        a.push(r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]}}]}"#).unwrap();
        a.push(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#)
            .unwrap();
        let r = a.finish();
        assert_eq!(r.tool_calls[0].id, "c1");
        assert_eq!(r.tool_calls[0].arguments, "{\"x\":1}");
        assert_eq!(r.finish_reason, FinishReason::ToolCalls);
    }

    #[test]
    fn an_error_chunk_is_an_error() {
        let mut a = Assembler::new("openai", "m", Instant::now());
        let e = a
            .push(r#"{"error":{"message":"overloaded","type":"server_error"}}"#)
            .unwrap_err();
        assert!(e.is_retryable(), "{e}");
    }
}
