//! # flowloom-provider-mock
//!
//! Deterministic model providers for tests, examples and benchmarks: no network, no keys.
//! [`MockProvider`] is a `tower::Service` for chat ([`LlmRequest`]), embeddings
//! ([`EmbeddingRequest`]) and streaming ([`StreamRequest`]), so it plugs in wherever a real
//! provider does; it also implements [`BlockingProvider`] for code without a runtime.
//!
//! - **Echo** ([`MockProvider::echo`]): the answer is the last user message, verbatim.
//! - **Fixed** ([`MockProvider::fixed`]): always the same text.
//! - **Scripted** ([`MockProvider::from_yaml_str`], [`MockProvider::from_file`],
//!   [`MockProvider::from_script`]): ordered rules, the first that matches answers.
//!
//! Every request received is recorded ([`MockProvider::requests`]) for assertions.
//!
//! ```
//! use flowloom_core::LlmRequest;
//! use flowloom_provider_mock::MockProvider;
//! use tower::ServiceExt;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let mock = MockProvider::echo();
//! let res = mock.clone().oneshot(LlmRequest::new("gpt-4o-mini", "hello there")).await.unwrap();
//! assert_eq!(res.content, "hello there");
//! assert_eq!(res.provider, "mock");
//! assert_eq!(mock.request_count(), 1);
//! # });
//! ```
//!
//! ## Scripts
//!
//! ```yaml
//! default: echo            # or: { respond: "fixed text" }
//! rules:
//!   - match: "(?i)is this safe"
//!     model: "gpt-4o"
//!     respond: "YES"
//!     usage: { prompt_tokens: 12, completion_tokens: 1 }
//!     latency: 20ms
//!   - match: "flaky"
//!     sequence:
//!       - { error: rate_limit, retry_after: 1s }
//!       - { respond: "recovered" }
//! ```
//!
//! - `default`: the answer when no rule matches: `echo` (the default when omitted) or an
//!   answer mapping (`{ respond: "fixed text" }`, or even `{ error: server }`).
//! - `rules`: tried in order; the first that matches answers. A rule matches when its
//!   `match` regex (Rust `regex` syntax, searched anywhere; anchor with `^...$`, ignore case
//!   with `(?i)`) finds the last user message, and, when `model` is set, the request's model
//!   is exactly that name. A rule without `match` matches every message. A request without
//!   a user message is matched as an empty text. Requests that fail
//!   [`LlmRequest::validate`] (empty prompt, temperature out of range...) are answered with
//!   [`LlmError::InvalidRequest`], as a real provider would, after the rule's latency.
//! - An answer is `respond: <text>` or `error: <kind>`, never both, with optional
//!   `latency` (waited before answering, errors included) and `usage`.
//! - Error kinds and the [`LlmError`] they become: `rate_limit` → `RateLimited` (optional
//!   `retry_after`), `server` → `Server` (optional `status` 500–599, default 500; optional
//!   `retry_after`), `timeout` → `Timeout` (`elapsed` = the answer's latency), `auth` →
//!   `Authentication` (optional `status` 401 or 403, default 401), `invalid_request` →
//!   `InvalidRequest`, `quota` → `QuotaExceeded`. Any error may carry a `message`.
//! - `sequence`: answers for successive calls matching the rule. **After the last entry the
//!   rule keeps answering with the last entry.** A `latency` or `usage` set on the rule
//!   itself applies to every entry that does not set its own.
//! - `usage`: `{ prompt_tokens: n, completion_tokens: n }` (an optional `total_tokens` must
//!   be their sum), or `none` for a provider that reports no usage
//!   ([`LlmResponse::usage`] is then `None`). Without it, usage is computed from the texts:
//!   prompt tokens = `ceil(c / 4)` where `c` counts the characters (Unicode scalar values) of
//!   every message's content, completion tokens = `ceil(c / 4)` of the answer, each with a
//!   minimum of 1 ([`estimate_tokens`]).
//! - Durations: a number and a unit: `250us`, `20ms`, `1s`, `1.5s`, `2m`, `1h`, or a sum
//!   such as `1m30s` (the shared rule of `flowloom_core::duration`).
//!
//! Parsing is strict: unknown fields are errors, and every error names the rule (counted
//! from 1, with its `match`) and the field ([`ScriptError`]):
//!
//! ```
//! use flowloom_provider_mock::MockProvider;
//! let err = MockProvider::from_yaml_str(r#"
//! rules:
//!   - match: "safe"
//!     respond: "YES"
//!   - match: "flaky"
//!     sequence:
//!       - { error: ratelimit }
//! "#).unwrap_err();
//! assert_eq!(err.to_string(), "rule 2 (match \"flaky\"): field `sequence[0].error`: unknown error \
//!     kind \"ratelimit\", expected one of rate_limit, server, timeout, auth, invalid_request, quota");
//! ```
//!
//! A scripted mock answering 429 and then success:
//!
//! ```
//! use flowloom_core::{LlmError, LlmRequest};
//! use flowloom_provider_mock::MockProvider;
//! use std::time::Duration;
//! use tower::ServiceExt;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let mock = MockProvider::from_yaml_str(r#"
//! rules:
//!   - match: "flaky"
//!     sequence:
//!       - { error: rate_limit, retry_after: 1s }
//!       - { respond: "recovered" }
//! "#).unwrap();
//! let first = mock.clone().oneshot(LlmRequest::new("m", "a flaky call")).await;
//! assert!(matches!(first, Err(LlmError::RateLimited { retry_after: Some(d), .. }) if d == Duration::from_secs(1)));
//! let second = mock.clone().oneshot(LlmRequest::new("m", "a flaky call")).await.unwrap();
//! assert_eq!(second.content, "recovered");
//! # });
//! ```
//!
//! ## Streaming and embeddings
//!
//! - `Service<StreamRequest>` answers as the chat service does (same rules, same recording,
//!   errors fail the call itself); after the answer's latency it returns an [`LlmStream`] of
//!   [`StreamEvent::Delta`]s, one per word with the whitespace after it (their concatenation
//!   is the answer), ending with [`StreamEvent::Done`] carrying the whole response and its
//!   usage.
//! - `Service<EmbeddingRequest>` returns, for each text, a unit-length vector derived from a
//!   hash of the text alone (FNV-1a seeding SplitMix64): the same text always gets the same
//!   vector, on every platform and run. Dimensions: `dimensions` of the request, or
//!   [`DEFAULT_DIMENSIONS`]; at most [`MAX_DIMENSIONS`]. Usage: prompt tokens `ceil(c / 4)`
//!   (minimum 1) over the characters of all texts, no completion tokens. Embedding requests
//!   are recorded apart ([`MockProvider::embedding_requests`]); scripts do not apply to them.
//!
//! ## From blocking code
//!
//! Through [`BlockingClient`](flowloom_core::BlockingClient) (any service), or by adapting the
//! [`BlockingProvider`] impl with [`provider::from_blocking`](flowloom_core::provider::from_blocking)
//! (latency then uses `std::thread::sleep` on tokio's blocking pool), or by calling
//! [`BlockingProvider::complete`] directly:
//!
//! ```
//! use flowloom_core::{BlockingClient, BlockingProvider, LlmRequest, provider};
//! use flowloom_provider_mock::MockProvider;
//!
//! let mock = MockProvider::fixed("42");
//! let client = BlockingClient::new(mock.clone()).unwrap();
//! assert_eq!(client.call(LlmRequest::new("m", "the answer?")).unwrap().content, "42");
//!
//! // The blocking trait, directly or adapted into the async contract.
//! assert_eq!(BlockingProvider::complete(&mock, LlmRequest::new("m", "again?")).unwrap().content, "42");
//! let adapted = BlockingClient::new(provider::from_blocking(mock.clone())).unwrap();
//! assert_eq!(adapted.call(LlmRequest::new("m", "once more")).unwrap().content, "42");
//! assert_eq!(mock.request_count(), 3);
//! ```

mod error;
mod future;
mod parse;
mod script;
mod text;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use flowloom_core::{
    BlockingEmbedder, BlockingProvider, EmbeddingRequest, EmbeddingResponse, LlmError, LlmRequest,
    LlmResponse, LlmStream, StreamEvent, StreamRequest, TokenUsage,
};
use tower::Service;

pub use error::ScriptError;
pub use future::MockFuture;
pub use script::{MockAnswer, MockError, MockErrorKind, MockRule, MockScript, MockUsage, Reply};
pub use text::estimate_tokens;

/// The provider name a mock has unless [`MockProvider::with_name`] sets another.
pub const DEFAULT_NAME: &str = "mock";
/// Embedding dimensions when the request sets none.
pub const DEFAULT_DIMENSIONS: u32 = 8;
/// The most embedding dimensions the mock produces (larger requests are invalid).
pub const MAX_DIMENSIONS: u32 = 65_536;

/// A deterministic mock provider. Cheap to clone: clones share the script, the recorded
/// requests and the sequence positions.
#[derive(Clone)]
pub struct MockProvider {
    name: Arc<str>,
    shared: Arc<Shared>,
}

struct Shared {
    script: MockScript,
    record: AtomicBool,
    count: AtomicUsize,
    requests: Mutex<Vec<LlmRequest>>,
    embedding_requests: Mutex<Vec<EmbeddingRequest>>,
}

impl std::fmt::Debug for MockProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockProvider")
            .field("name", &self.name)
            .field("rules", &self.shared.script.rules().len())
            .field("requests", &self.request_count())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a Vec half-pushed; keep going.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MockProvider {
    /// A mock that answers the last user message, verbatim.
    pub fn echo() -> Self {
        Self::from_script(MockScript::echo())
    }

    /// A mock that always answers `text`.
    pub fn fixed(text: impl Into<String>) -> Self {
        Self::from_script(MockScript::fixed(text))
    }

    /// A mock following `script`.
    pub fn from_script(script: MockScript) -> Self {
        Self {
            name: Arc::from(DEFAULT_NAME),
            shared: Arc::new(Shared {
                script,
                record: AtomicBool::new(true),
                count: AtomicUsize::new(0),
                requests: Mutex::new(Vec::new()),
                embedding_requests: Mutex::new(Vec::new()),
            }),
        }
    }

    /// A mock following the YAML script `yaml` (see the crate docs).
    pub fn from_yaml_str(yaml: &str) -> Result<Self, ScriptError> {
        MockScript::from_yaml_str(yaml).map(Self::from_script)
    }

    /// A mock following the YAML script in the file at `path`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ScriptError> {
        MockScript::from_file(path).map(Self::from_script)
    }

    /// Sets the provider name used in responses, usage and errors (default `mock`). The name
    /// belongs to this handle and the clones made from it afterwards; the recorded requests
    /// and sequence positions stay shared with every clone.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Arc::from(name.into());
        self
    }

    /// Turns request recording on (the default) or off. Off, [`MockProvider::requests`]
    /// stays empty and memory stays flat, which long benchmarks want;
    /// [`MockProvider::request_count`] still counts every request. The setting is shared by
    /// every clone.
    #[must_use]
    pub fn with_recording(self, record: bool) -> Self {
        self.shared.record.store(record, Ordering::Relaxed);
        self
    }

    /// The provider name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The script it follows.
    pub fn script(&self) -> &MockScript {
        &self.shared.script
    }

    /// Every chat request received (streamed ones included), oldest first.
    pub fn requests(&self) -> Vec<LlmRequest> {
        lock(&self.shared.requests).clone()
    }

    /// The most recent chat request, if any.
    pub fn last_request(&self) -> Option<LlmRequest> {
        lock(&self.shared.requests).last().cloned()
    }

    /// How many chat requests (streamed ones included) were received, recorded or not.
    pub fn request_count(&self) -> usize {
        self.shared.count.load(Ordering::Relaxed)
    }

    /// Every embedding request received, oldest first.
    pub fn embedding_requests(&self) -> Vec<EmbeddingRequest> {
        lock(&self.shared.embedding_requests).clone()
    }

    /// Forgets every recorded request and starts every rule's sequence from its first answer.
    pub fn reset(&self) {
        lock(&self.shared.requests).clear();
        lock(&self.shared.embedding_requests).clear();
        self.shared.count.store(0, Ordering::Relaxed);
        self.shared.script.rewind();
    }

    fn record(&self, request: LlmRequest) {
        self.shared.count.fetch_add(1, Ordering::Relaxed);
        if self.shared.record.load(Ordering::Relaxed) {
            lock(&self.shared.requests).push(request);
        }
    }

    /// Answers `request` without waiting: the result and the latency to simulate.
    fn answer(&self, request: LlmRequest) -> (Result<LlmResponse, LlmError>, Duration) {
        let answer = self.shared.script.answer_for(&request);
        let latency = answer.latency;
        let result = if let Err(e) = request.validate() {
            Err(LlmError::InvalidRequest {
                provider: self.name.to_string(),
                message: e.to_string(),
            })
        } else {
            match &answer.reply {
                Reply::Error(e) => Err(e.to_llm_error(&self.name, latency)),
                Reply::Echo => Ok(self.response(
                    &request,
                    request.prompt().unwrap_or_default().to_owned(),
                    answer,
                )),
                Reply::Text(t) => Ok(self.response(&request, t.to_string(), answer)),
            }
        };
        self.record(request);
        (result, latency)
    }

    fn response(&self, request: &LlmRequest, content: String, answer: &MockAnswer) -> LlmResponse {
        let usage = match answer.usage {
            MockUsage::Computed => Some(TokenUsage::new(
                text::prompt_tokens(request),
                estimate_tokens(&content),
                request.model.as_str(),
                &*self.name,
            )),
            MockUsage::Fixed {
                prompt_tokens,
                completion_tokens,
            } => Some(TokenUsage::new(
                prompt_tokens,
                completion_tokens,
                request.model.as_str(),
                &*self.name,
            )),
            MockUsage::None => None,
        };
        let mut res = LlmResponse::text(content, request.model.as_str(), &*self.name);
        res.usage = usage;
        res.latency_ms = answer.latency.as_secs_f64() * 1000.0;
        res
    }

    fn embed_now(&self, request: EmbeddingRequest) -> Result<EmbeddingResponse, LlmError> {
        let result = self.embeddings(&request);
        if self.shared.record.load(Ordering::Relaxed) {
            lock(&self.shared.embedding_requests).push(request);
        }
        result
    }

    fn embeddings(&self, request: &EmbeddingRequest) -> Result<EmbeddingResponse, LlmError> {
        let invalid = |message: String| LlmError::InvalidRequest {
            provider: self.name.to_string(),
            message,
        };
        request.validate().map_err(|e| invalid(e.to_string()))?;
        let dims = request.dimensions.unwrap_or(DEFAULT_DIMENSIONS);
        if dims > MAX_DIMENSIONS {
            return Err(invalid(format!(
                "invalid `dimensions`: found {dims}, expected an integer from 1 to {MAX_DIMENSIONS}"
            )));
        }
        let embeddings = request
            .input
            .iter()
            .map(|t| text::embedding(t, dims as usize))
            .collect();
        let chars: u64 = request.input.iter().map(|t| t.chars().count() as u64).sum();
        Ok(EmbeddingResponse {
            embeddings,
            model: request.model.clone(),
            provider: self.name.to_string(),
            usage: Some(TokenUsage::new(
                text::chars_to_tokens(chars),
                0,
                request.model.as_str(),
                &*self.name,
            )),
            latency_ms: 0.0,
        })
    }
}

/// The answer, split into word deltas, then `Done` with the whole response.
fn into_stream(response: LlmResponse) -> LlmStream {
    let events: Vec<Result<StreamEvent, LlmError>> = text::word_chunks(&response.content)
        .into_iter()
        .map(|c| Ok(StreamEvent::Delta(c)))
        .chain(std::iter::once(Ok(StreamEvent::Done(response))))
        .collect();
    Box::pin(futures_util::stream::iter(events))
}

impl Service<LlmRequest> for MockProvider {
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = MockFuture<LlmResponse>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: LlmRequest) -> Self::Future {
        let (result, latency) = self.answer(request);
        MockFuture::after(latency, result, Arc::clone(&self.name))
    }
}

impl Service<StreamRequest> for MockProvider {
    type Response = LlmStream;
    type Error = LlmError;
    type Future = MockFuture<LlmStream>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: StreamRequest) -> Self::Future {
        let (result, latency) = self.answer(request.0);
        MockFuture::after(latency, result.map(into_stream), Arc::clone(&self.name))
    }
}

impl Service<EmbeddingRequest> for MockProvider {
    type Response = EmbeddingResponse;
    type Error = LlmError;
    type Future = MockFuture<EmbeddingResponse>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: EmbeddingRequest) -> Self::Future {
        MockFuture::ready(self.embed_now(request))
    }
}

impl BlockingProvider for MockProvider {
    fn name(&self) -> &str {
        &self.name
    }

    /// Answers on the calling thread; latency is `std::thread::sleep`.
    fn complete(&self, request: LlmRequest) -> Result<LlmResponse, LlmError> {
        let (result, latency) = self.answer(request);
        if !latency.is_zero() {
            std::thread::sleep(latency);
        }
        result
    }
}

impl BlockingEmbedder for MockProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn embed(&self, request: EmbeddingRequest) -> Result<EmbeddingResponse, LlmError> {
        self.embed_now(request)
    }
}
