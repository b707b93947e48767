//! An in-memory response cache, opt-in.
//!
//! [`CacheLayer`] answers a request it has seen before from memory, without calling the
//! provider. Nothing is cached unless the layer is added; it is off by default.
//!
//! - **Key**: the normalized request: model, messages (role, content, name, tool call id and
//!   tool calls), temperature, max tokens, tools, tool choice, response format and extra
//!   parameters, with JSON object keys in any order counting as the same. The `context`
//!   (run, step, correlation id) is *not* part of the key, so the same prompt from two runs
//!   hits.
//! - **Bounds**: entries live for the TTL (default 1 hour) and at most `max_entries` are kept
//!   (default 1,000); when full, the least recently used entry goes.
//! - **What is stored**: successful responses only; errors are never cached, and neither are
//!   responses whose finish reason is `error`.
//! - **Temperature**: a request with temperature > 0 asks for a varied answer, so it is only
//!   cached when [`CacheConfigBuilder::cache_nonzero_temperature`] says so.
//! - **A hit** returns the stored response with `cached = true`, `latency_ms = 0` and no
//!   `attempts`. Its `usage` is the usage of the original call, kept so a reader can see what
//!   the answer cost when it was made. **Token accounting must count a response with
//!   `cached = true` as zero tokens spent** (or sit inside the cache layer, where hits never
//!   reach it); otherwise the tokens would be counted twice.
//! - Two identical requests that miss at the same time both call the provider.
//!
//! ```
//! use std::sync::{Arc, atomic::{AtomicU32, Ordering}};
//! use flowloom_core::{LlmRequest, LlmResponse, LlmError};
//! use flowloom_middleware::cache::{CacheConfig, CacheLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let calls = Arc::new(AtomicU32::new(0));
//! let seen = calls.clone();
//! let svc = ServiceBuilder::new()
//!     .layer(CacheLayer::new(CacheConfig::default()))
//!     .service(tower::service_fn(move |r: LlmRequest| {
//!         seen.fetch_add(1, Ordering::SeqCst);
//!         async move { Ok::<_, LlmError>(LlmResponse::text("4", r.model, "p")) }
//!     }));
//! let req = LlmRequest::new("m", "2+2?").with_temperature(0.0);
//! assert!(!svc.clone().oneshot(req.clone()).await.unwrap().cached);
//! assert!(svc.clone().oneshot(req).await.unwrap().cached);
//! assert_eq!(calls.load(Ordering::SeqCst), 1);
//! # });
//! ```

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use flowloom_core::provider::BoxFuture;
use flowloom_core::{
    CallContext, FinishReason, LlmError, LlmRequest, LlmResponse, ResponseFormat, ToolChoice,
};
use serde_json::Value;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use crate::error::ConfigError;

/// Default time an entry lives.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Default most entries.
pub const DEFAULT_MAX_ENTRIES: usize = 1000;

/// How a [`CacheLayer`] caches; build with [`CacheConfig::builder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    ttl: Duration,
    max_entries: usize,
    nonzero_temperature: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_TTL,
            max_entries: DEFAULT_MAX_ENTRIES,
            nonzero_temperature: false,
        }
    }
}

impl CacheConfig {
    /// A builder from the defaults (1 h, 1,000 entries, temperature 0 only).
    pub fn builder() -> CacheConfigBuilder {
        CacheConfigBuilder {
            config: CacheConfig::default(),
        }
    }
    /// How long an entry lives.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
    /// Most entries kept.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }
    /// Whether requests with temperature > 0 are cached.
    pub fn caches_nonzero_temperature(&self) -> bool {
        self.nonzero_temperature
    }
}

/// Builds a [`CacheConfig`].
#[derive(Debug, Clone)]
pub struct CacheConfigBuilder {
    config: CacheConfig,
}

impl CacheConfigBuilder {
    /// How long an entry lives (> 0).
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.config.ttl = ttl;
        self
    }
    /// Most entries kept (≥ 1).
    #[must_use]
    pub fn max_entries(mut self, n: usize) -> Self {
        self.config.max_entries = n;
        self
    }
    /// Cache requests with temperature > 0 too (their answers vary; off by default).
    #[must_use]
    pub fn cache_nonzero_temperature(mut self, yes: bool) -> Self {
        self.config.nonzero_temperature = yes;
        self
    }
    /// Checks the values.
    pub fn build(self) -> Result<CacheConfig, ConfigError> {
        if self.config.ttl.is_zero() {
            return Err(ConfigError::new(
                "cache",
                "ttl",
                "0s",
                "a duration > 0, e.g. 1h",
            ));
        }
        if self.config.max_entries == 0 {
            return Err(ConfigError::new(
                "cache",
                "max_entries",
                0,
                "an integer ≥ 1 (leave the cache layer out to disable caching)",
            ));
        }
        Ok(self.config)
    }
}

#[derive(Debug)]
struct Entry {
    request: LlmRequest,
    response: LlmResponse,
    expires: Instant,
    tick: u64,
}

#[derive(Debug, Default)]
struct Store {
    entries: HashMap<u64, Entry>,
    order: BTreeMap<u64, u64>,
    tick: u64,
    hits: u64,
    misses: u64,
}

#[derive(Debug)]
struct Shared {
    config: CacheConfig,
    store: Mutex<Store>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
        match self.store.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn get(&self, key: u64, req: &LlmRequest) -> Option<LlmResponse> {
        let mut st = self.lock();
        let now = Instant::now();
        st.tick += 1;
        let tick = st.tick;
        let store = &mut *st;
        let hit = match store.entries.get_mut(&key) {
            Some(e) if e.expires <= now => {
                let old = e.tick;
                store.entries.remove(&key);
                store.order.remove(&old);
                None
            }
            Some(e) if same_request(&e.request, req) => {
                store.order.remove(&e.tick);
                e.tick = tick;
                store.order.insert(tick, key);
                Some(e.response.clone())
            }
            _ => None,
        };
        if hit.is_some() {
            store.hits += 1;
        } else {
            store.misses += 1;
        }
        hit
    }

    fn put(&self, key: u64, request: LlmRequest, response: LlmResponse) {
        let mut st = self.lock();
        st.tick += 1;
        let tick = st.tick;
        let store = &mut *st;
        if let Some(old) = store.entries.remove(&key) {
            store.order.remove(&old.tick);
        }
        while store.entries.len() >= self.config.max_entries {
            let Some((_, oldest)) = store.order.pop_first() else {
                break;
            };
            store.entries.remove(&oldest);
        }
        store.entries.insert(
            key,
            Entry {
                request,
                response,
                expires: Instant::now() + self.config.ttl,
                tick,
            },
        );
        store.order.insert(tick, key);
    }
}

/// Caches responses in memory; see the [module docs](self). Every service the layer builds
/// shares one cache.
#[derive(Debug, Clone)]
pub struct CacheLayer {
    shared: Arc<Shared>,
}

impl CacheLayer {
    /// A cache configured by `config`.
    pub fn new(config: CacheConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                store: Mutex::new(Store::default()),
            }),
        }
    }
    /// Entries held now (expired ones included until they are looked up or evicted).
    pub fn len(&self) -> usize {
        self.shared.lock().entries.len()
    }
    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `(hits, misses)` so far, counting only cacheable requests.
    pub fn stats(&self) -> (u64, u64) {
        let st = self.shared.lock();
        (st.hits, st.misses)
    }
    /// Drops every entry.
    pub fn clear(&self) {
        let mut st = self.shared.lock();
        st.entries.clear();
        st.order.clear();
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = Cache<S>;
    fn layer(&self, inner: S) -> Cache<S> {
        Cache {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// A service answering repeated requests from memory; made by [`CacheLayer`].
#[derive(Debug, Clone)]
pub struct Cache<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Service<LlmRequest> for Cache<S>
where
    S: Service<LlmRequest, Response = LlmResponse, Error = LlmError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = BoxFuture<Result<LlmResponse, LlmError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: LlmRequest) -> Self::Future {
        let mut svc = self.inner.clone();
        let cacheable = req.temperature == 0.0 || self.shared.config.nonzero_temperature;
        if !cacheable {
            return Box::pin(async move { svc.ready().await?.call(req).await });
        }
        let key = request_key(&req);
        if let Some(mut hit) = self.shared.get(key, &req) {
            hit.cached = true;
            hit.latency_ms = 0.0;
            hit.attempts.clear();
            return Box::pin(std::future::ready(Ok(hit)));
        }
        let shared = Arc::clone(&self.shared);
        let mut stored = req.clone();
        stored.context = CallContext::default();
        Box::pin(async move {
            let resp = svc.ready().await?.call(req).await?;
            if resp.finish_reason != FinishReason::Error {
                let mut copy = resp.clone();
                copy.cached = false;
                shared.put(key, stored, copy);
            }
            Ok(resp)
        })
    }
}

/// The cache key: a hash of the normalized request (everything but the context; JSON object
/// keys in sorted order).
pub fn request_key(req: &LlmRequest) -> u64 {
    let mut h = DefaultHasher::new();
    req.model.hash(&mut h);
    req.messages.len().hash(&mut h);
    for m in &req.messages {
        (m.role as u8).hash(&mut h);
        m.content.hash(&mut h);
        m.name.hash(&mut h);
        m.tool_call_id.hash(&mut h);
        m.tool_calls.len().hash(&mut h);
        for c in &m.tool_calls {
            c.id.hash(&mut h);
            c.name.hash(&mut h);
            c.arguments.hash(&mut h);
        }
    }
    // -0.0 and 0.0 are the same temperature.
    (req.temperature + 0.0).to_bits().hash(&mut h);
    req.max_tokens.hash(&mut h);
    req.tools.len().hash(&mut h);
    for t in &req.tools {
        t.name.hash(&mut h);
        t.description.hash(&mut h);
        hash_value(&t.parameters, &mut h);
        t.strict.hash(&mut h);
    }
    match &req.tool_choice {
        None => 0u8.hash(&mut h),
        Some(ToolChoice::Auto) => 1u8.hash(&mut h),
        Some(ToolChoice::None) => 2u8.hash(&mut h),
        Some(ToolChoice::Required) => 3u8.hash(&mut h),
        Some(ToolChoice::Function(f)) => {
            4u8.hash(&mut h);
            f.hash(&mut h);
        }
    }
    match &req.response_format {
        None => 0u8.hash(&mut h),
        Some(ResponseFormat::Text) => 1u8.hash(&mut h),
        Some(ResponseFormat::JsonObject) => 2u8.hash(&mut h),
        Some(ResponseFormat::JsonSchema {
            name,
            schema,
            strict,
        }) => {
            3u8.hash(&mut h);
            name.hash(&mut h);
            hash_value(schema, &mut h);
            strict.hash(&mut h);
        }
    }
    hash_map(&req.extra_params, &mut h);
    h.finish()
}

fn hash_map(map: &serde_json::Map<String, Value>, h: &mut DefaultHasher) {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort_unstable();
    keys.len().hash(h);
    for k in keys {
        k.hash(h);
        if let Some(v) = map.get(k) {
            hash_value(v, h);
        }
    }
}

fn hash_value(v: &Value, h: &mut DefaultHasher) {
    match v {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => {
            1u8.hash(h);
            b.hash(h);
        }
        Value::Number(n) => {
            2u8.hash(h);
            n.to_string().hash(h);
        }
        Value::String(s) => {
            3u8.hash(h);
            s.hash(h);
        }
        Value::Array(a) => {
            4u8.hash(h);
            a.len().hash(h);
            for x in a {
                hash_value(x, h);
            }
        }
        Value::Object(m) => {
            5u8.hash(h);
            hash_map(m, h);
        }
    }
}

/// Equal in every field the key covers (JSON maps compare without regard to order).
fn same_request(a: &LlmRequest, b: &LlmRequest) -> bool {
    a.model == b.model
        && a.messages == b.messages
        && a.temperature == b.temperature
        && a.max_tokens == b.max_tokens
        && a.tools == b.tools
        && a.tool_choice == b.tool_choice
        && a.response_format == b.response_format
        && a.extra_params == b.extra_params
}
