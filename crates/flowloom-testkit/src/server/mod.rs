//! A mock OpenAI-compatible HTTP server for tests, on 127.0.0.1.
//!
//! [`MockOpenAiServer::start`] binds a free port and serves, until it is dropped or
//! [`MockOpenAiServer::shutdown`] is awaited:
//!
//! - `POST /v1/chat/completions` — non-streamed, and streamed over SSE (with the usage chunk of
//!   `stream_options.include_usage`, shaped as [`UsageShape`] says);
//! - `POST /v1/embeddings` — `float` and `base64` encodings, `dimensions`;
//! - `GET /v1/models`.
//!
//! Default answers are deterministic: a chat answer echoes the last user message (cut to
//! `max_tokens`/`max_completion_tokens` words, with `finish_reason: length`), usage counts
//! whitespace-separated words ([`mock_tokens`]), an embedding is a hash of the text
//! ([`mock_embedding`]). When the request forces a tool (`tool_choice` naming a function, or
//! `required`), the answer calls it with `{}` as arguments.
//!
//! Scripted [`Fault`]s replace the default answer: queued for the next requests
//! ([`MockOpenAiServer::push_fault`]) or applied to every request a [`Matcher`] accepts
//! ([`MockOpenAiServer::add_rule`]). Every request received is kept ([`RecordedRequest`]).
//!
//! ```
//! use flowloom_testkit::server::{Fault, MockOpenAiServer};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let server = MockOpenAiServer::start().await.unwrap();
//! assert!(server.base_url().starts_with("http://127.0.0.1:"));
//! assert!(server.base_url().ends_with("/v1"));
//! server.push_fault(Fault::rate_limited(Some(3)));   // the next request gets a 429
//! assert_eq!(server.request_count(), 0);
//! server.shutdown().await;
//! # });
//! ```

mod answers;
mod fault;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use answers::{CREATED, mock_embedding, mock_tokens};
pub use fault::{Fault, Matcher};

use answers::Chat;
use fault::Action;

/// Where the usage of a streamed answer comes, when the request set
/// `stream_options.include_usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UsageShape {
    /// A last chunk with `"choices": []` (what OpenAI sends).
    #[default]
    EmptyChoices,
    /// A last chunk with one choice holding an empty delta (what some compatible servers send).
    EmptyDelta,
}

/// How the server answers by default.
///
/// ```
/// use flowloom_testkit::server::{MockConfig, UsageShape};
/// let c = MockConfig::default()
///     .with_embedding_dimensions(16)
///     .with_usage_shape(UsageShape::EmptyDelta)
///     .with_keep_alive_comments(true)
///     .with_split_stream_bytes(7)
///     .with_api_key("sk-test");
/// # let _ = c;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct MockConfig {
    pub(crate) embedding_dimensions: usize,
    pub(crate) models: Vec<String>,
    pub(crate) usage_shape: UsageShape,
    pub(crate) keep_alive_comments: bool,
    pub(crate) split_stream_bytes: Option<usize>,
    pub(crate) api_key: Option<String>,
    pub(crate) record_requests: bool,
    pub(crate) max_embedding_inputs: usize,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            embedding_dimensions: 8,
            models: [
                "gpt-4o-mini",
                "gpt-4o",
                "o3-mini",
                "text-embedding-3-small",
                "text-embedding-3-large",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
            usage_shape: UsageShape::default(),
            keep_alive_comments: false,
            split_stream_bytes: None,
            api_key: None,
            record_requests: true,
            max_embedding_inputs: 2048,
        }
    }
}

impl MockConfig {
    /// Vector length when the request sets no `dimensions` (default 8).
    #[must_use]
    pub fn with_embedding_dimensions(mut self, dims: usize) -> Self {
        self.embedding_dimensions = dims.max(1);
        self
    }
    /// The model ids `GET /v1/models` lists.
    #[must_use]
    pub fn with_models<I, S>(mut self, models: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.models = models.into_iter().map(Into::into).collect();
        self
    }
    /// The shape of the usage chunk of streamed answers.
    #[must_use]
    pub fn with_usage_shape(mut self, shape: UsageShape) -> Self {
        self.usage_shape = shape;
        self
    }
    /// Put `: keep-alive` comment lines between the events of streamed answers.
    #[must_use]
    pub fn with_keep_alive_comments(mut self, on: bool) -> Self {
        self.keep_alive_comments = on;
        self
    }
    /// Write streamed answers in pieces of at most `n` bytes, splitting events across writes.
    #[must_use]
    pub fn with_split_stream_bytes(mut self, n: usize) -> Self {
        self.split_stream_bytes = Some(n.max(1));
        self
    }
    /// Require `Authorization: Bearer <key>`; anything else gets a 401 `invalid_api_key`.
    #[must_use]
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }
    /// Keep (the default) or forget the requests received; benchmarks turn it off.
    #[must_use]
    pub fn with_record_requests(mut self, on: bool) -> Self {
        self.record_requests = on;
        self
    }
    /// Most inputs one embeddings request may hold (default 2048, as OpenAI's API); more is
    /// a 400.
    #[must_use]
    pub fn with_max_embedding_inputs(mut self, n: usize) -> Self {
        self.max_embedding_inputs = n.max(1);
        self
    }
}

/// One request the server received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// `GET`, `POST`...
    pub method: String,
    /// The path, e.g. `/v1/chat/completions` (without the query).
    pub path: String,
    /// The query string without `?`, when there was one (e.g. `api-version=2024-10-21`).
    pub query: Option<String>,
    /// The headers, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON, when it was JSON.
    pub body: Option<Value>,
    /// The raw body as text (lossy UTF-8).
    pub raw_body: String,
}

impl RecordedRequest {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Rule {
    matcher: Matcher,
    fault: Fault,
    remaining: Option<usize>,
}

#[derive(Default)]
struct Scripts {
    queue: VecDeque<Fault>,
    rules: Vec<Rule>,
}

struct Shared {
    config: Mutex<Arc<MockConfig>>,
    scripts: Mutex<Scripts>,
    requests: Mutex<Vec<RecordedRequest>>,
    counter: AtomicU64,
    shutdown: watch::Receiver<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A mock OpenAI-compatible server on 127.0.0.1; see the [module docs](self).
pub struct MockOpenAiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MockOpenAiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockOpenAiServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MockOpenAiServer {
    /// Starts a server with the default configuration on a free port of 127.0.0.1.
    pub async fn start() -> io::Result<Self> {
        Self::start_with(MockConfig::default()).await
    }

    /// Starts a server with `config` on a free port of 127.0.0.1.
    pub async fn start_with(config: MockConfig) -> io::Result<Self> {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    /// Starts a server with `config` on `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr, config: MockConfig) -> io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, shutdown) = watch::channel(false);
        let shared = Arc::new(Shared {
            config: Mutex::new(Arc::new(config)),
            scripts: Mutex::new(Scripts::default()),
            requests: Mutex::new(Vec::new()),
            counter: AtomicU64::new(0),
            shutdown: shutdown.clone(),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let mut signal = shutdown;
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = signal.wait_for(|s| *s).await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "mock OpenAI server stopped with an error");
            }
        });
        Ok(Self {
            addr,
            shared,
            stop,
            task: Some(task),
        })
    }

    /// The socket address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL for OpenAI clients: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The full URL of `path` (e.g. `/v1/models`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Queues `fault` for the next request (on any path); queued faults are used in order,
    /// one per request, before any rule.
    pub fn push_fault(&self, fault: Fault) {
        lock(&self.shared.scripts).queue.push_back(fault);
    }

    /// Queues several faults, in order.
    pub fn push_faults<I: IntoIterator<Item = Fault>>(&self, faults: I) {
        lock(&self.shared.scripts).queue.extend(faults);
    }

    /// Applies `fault` to every request `matcher` accepts (when no queued fault is waiting);
    /// the first rule added that matches wins.
    pub fn add_rule(&self, matcher: Matcher, fault: Fault) {
        lock(&self.shared.scripts).rules.push(Rule {
            matcher,
            fault,
            remaining: None,
        });
    }

    /// Like [`MockOpenAiServer::add_rule`], for the next `times` matching requests only.
    pub fn add_rule_times(&self, matcher: Matcher, fault: Fault, times: usize) {
        if times == 0 {
            return;
        }
        lock(&self.shared.scripts).rules.push(Rule {
            matcher,
            fault,
            remaining: Some(times),
        });
    }

    /// Forgets every queued fault and rule.
    pub fn clear_faults(&self) {
        let mut s = lock(&self.shared.scripts);
        s.queue.clear();
        s.rules.clear();
    }

    /// How many queued faults are still waiting.
    pub fn pending_faults(&self) -> usize {
        lock(&self.shared.scripts).queue.len()
    }

    /// Changes the configuration for the requests that follow.
    pub fn configure(&self, f: impl FnOnce(&mut MockConfig)) {
        f(Arc::make_mut(&mut lock(&self.shared.config)));
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// The requests received on `path`, oldest first.
    pub fn requests_to(&self, path: &str) -> Vec<RecordedRequest> {
        lock(&self.shared.requests)
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// The latest request received.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        lock(&self.shared.requests).last().cloned()
    }

    /// How many requests were received (counted even when recording is off).
    pub fn request_count(&self) -> u64 {
        self.shared.counter.load(Ordering::Relaxed)
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Stops the server: no new connections, open ones are closed once their answer is sent
    /// (delays in progress are cut short). Waits at most 5 seconds.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for MockOpenAiServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn json_response(status: u16, body: &Value) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn sse_response(pieces: Vec<Bytes>, disconnect_after: Option<usize>) -> Response {
    let body = match disconnect_after {
        None => Body::from_stream(futures_util::stream::iter(
            pieces.into_iter().map(Ok::<_, io::Error>),
        )),
        Some(n) => broken_body(pieces.into_iter().take(n).collect()),
    };
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// A body that sends `pieces` and then fails, which makes the server drop the connection.
fn broken_body(pieces: Vec<Bytes>) -> Body {
    let head = futures_util::stream::iter(pieces.into_iter().map(Ok::<_, io::Error>));
    let tail = futures_util::stream::once(async {
        // Let the pieces already written reach the client before the connection drops.
        tokio::time::sleep(Duration::from_millis(20)).await;
        Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "scripted disconnect",
        ))
    });
    Body::from_stream(head.chain(tail))
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, 256 * 1024 * 1024).await.unwrap_or_default();
    let json: Option<Value> = serde_json::from_slice(&bytes).ok();
    let raw = String::from_utf8_lossy(&bytes).into_owned();
    let path = parts.uri.path().to_owned();
    let n = shared.counter.fetch_add(1, Ordering::Relaxed) + 1;
    let config = Arc::clone(&lock(&shared.config));
    if config.record_requests {
        let headers = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        lock(&shared.requests).push(RecordedRequest {
            method: parts.method.to_string(),
            path: path.clone(),
            query: parts.uri.query().map(str::to_owned),
            headers,
            body: json.clone(),
            raw_body: raw.clone(),
        });
    }

    let fault = {
        let mut s = lock(&shared.scripts);
        match s.queue.pop_front() {
            Some(f) => Some(f),
            None => {
                let idx = s
                    .rules
                    .iter()
                    .position(|r| r.matcher.matches(&path, json.as_ref(), &raw));
                match idx {
                    Some(i) => {
                        let rule = &mut s.rules[i];
                        let f = rule.fault.clone();
                        if let Some(left) = rule.remaining.as_mut() {
                            *left -= 1;
                            if *left == 0 {
                                s.rules.remove(i);
                            }
                        }
                        Some(f)
                    }
                    None => None,
                }
            }
        }
    };
    let fault = fault.unwrap_or_else(Fault::default_answer);

    if let Some(d) = fault.delay {
        let mut stop = shared.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(d) => {}
            _ = stop.wait_for(|s| *s) => {
                return json_response(503, &answers::error_body(
                    "server_error", "shutting_down", "The mock server is shutting down.", None));
            }
        }
    }

    let mut response = answer(
        &parts.method,
        &path,
        &parts.headers,
        json.as_ref(),
        &config,
        n,
        &fault.action,
    );
    for (name, value) in &fault.headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

fn answer(
    method: &Method,
    path: &str,
    headers: &axum::http::HeaderMap,
    body: Option<&Value>,
    config: &MockConfig,
    n: u64,
    action: &Action,
) -> Response {
    let disconnect = match action {
        Action::Default => None,
        Action::Disconnect { after_pieces } => Some(*after_pieces),
        Action::Json { status, body } => return json_response(*status, body),
        Action::Raw {
            status,
            content_type,
            body,
        } => {
            let mut r = Response::new(Body::from(body.clone()));
            *r.status_mut() =
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if let Ok(v) = HeaderValue::from_str(content_type) {
                r.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            return r;
        }
        Action::Sse { pieces } => {
            return sse_response(pieces.iter().cloned().map(Bytes::from).collect(), None);
        }
    };

    if let Some(key) = &config.api_key {
        let expected = format!("Bearer {key}");
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            return json_response(
                401,
                &answers::error_body(
                    "invalid_request_error",
                    "invalid_api_key",
                    "Incorrect API key provided.",
                    None,
                ),
            );
        }
    }

    let result: Result<Value, (u16, Value)> = match (method.as_str(), path) {
        ("POST", "/v1/chat/completions") => match Chat::from_request(body, n) {
            Ok(chat) if chat.stream => {
                let events = chat.sse_events(config);
                let pieces = answers::split_pieces(events, config.split_stream_bytes);
                return sse_response(pieces, disconnect);
            }
            Ok(chat) => Ok(chat.completion()),
            Err(e) => Err(e),
        },
        ("POST", "/v1/embeddings") => answers::embeddings(body, config),
        ("GET", "/v1/models") => Ok(answers::models(config)),
        _ => Err((
            404,
            answers::error_body(
                "invalid_request_error",
                "unknown_url",
                &format!("Unknown request URL: {method} {path}."),
                None,
            ),
        )),
    };
    match (result, disconnect) {
        (Ok(v), None) => json_response(200, &v),
        (Err((status, v)), None) => json_response(status, &v),
        (Ok(v), Some(after)) | (Err((_, v)), Some(after)) => {
            let text = v.to_string().into_bytes();
            let half = text.len() / 2;
            let pieces = if after == 0 {
                Vec::new()
            } else {
                vec![Bytes::copy_from_slice(&text[..half])]
            };
            let mut r = Response::new(broken_body(pieces));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
    }
}

#[cfg(test)]
mod tests;
