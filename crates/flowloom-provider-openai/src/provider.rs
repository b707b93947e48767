//! [`OpenAiProvider`]: the service for chat, streaming and embeddings.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use flowloom_core::provider::BoxFuture;
use flowloom_core::{
    EmbeddingRequest, EmbeddingResponse, LlmError, LlmRequest, LlmResponse, LlmStream,
    StreamRequest,
};
use futures_util::{StreamExt, TryStreamExt};
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Url};
use tower::Service;

use crate::chat::{ChatBody, check_request, parse_response};
use crate::config::{
    API_KEY_VAR, AuthStyle, BASE_URL_VAR, ConfigError, MAX_EMBEDDING_INPUTS, ORG_VAR,
    OpenAiBuilder, OpenAiConfig, PROJECT_VAR,
};
use crate::embeddings::{EmbeddingBody, batches, parse_batch, sum_usage};
use crate::error::{ErrorContext, from_reqwest, from_status, log_rate_limits};
use crate::stream::{Assembler, events};

/// A provider for OpenAI and every OpenAI-compatible server.
///
/// It is a `tower::Service` for [`LlmRequest`], [`StreamRequest`] and [`EmbeddingRequest`].
/// Cloning is cheap, and every clone shares one HTTP client and its connection pool. It
/// retries nothing: put retry, timeout and rate-limit layers around it.
///
/// `Debug` shows the configuration without the API key.
#[derive(Clone)]
pub struct OpenAiProvider {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    config: OpenAiConfig,
    chat_url: Url,
    embeddings_url: Url,
    models_url: Url,
}

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

fn endpoint(base: &str, path: &str, query: &[(String, String)]) -> Result<Url, ConfigError> {
    let joined = format!("{}/{}", base.trim_end_matches('/'), path);
    let mut url = Url::parse(&joined).map_err(|e| ConfigError::InvalidBaseUrl {
        url: base.to_owned(),
        reason: e.to_string(),
    })?;
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query.iter());
    }
    Ok(url)
}

fn header_pair(
    name: &str,
    value: &str,
    secret: bool,
) -> Result<(HeaderName, HeaderValue), ConfigError> {
    let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| ConfigError::InvalidHeader {
        name: name.to_owned(),
        reason: "not a valid header name".to_owned(),
    })?;
    let mut v = HeaderValue::from_str(value).map_err(|_| ConfigError::InvalidHeader {
        name: name.to_owned(),
        reason: "the value holds characters a header cannot carry (e.g. a line break)".to_owned(),
    })?;
    v.set_sensitive(secret);
    Ok((n, v))
}

impl OpenAiProvider {
    /// A builder with OpenAI's defaults.
    pub fn builder() -> OpenAiBuilder {
        OpenAiBuilder::new()
    }

    /// Reads `OPENAI_API_KEY` (required), and `OPENAI_BASE_URL`, `OPENAI_ORG_ID`,
    /// `OPENAI_PROJECT_ID` where set, from the environment.
    ///
    /// A missing or empty `OPENAI_API_KEY` is [`ConfigError::MissingApiKey`], naming it.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::builder_from_env(|k| std::env::var(k).ok())?.build()
    }

    /// A builder filled from `lookup` (a stand-in for the environment) as
    /// [`OpenAiProvider::from_env`] does, to adjust further before building.
    ///
    /// ```
    /// use flowloom_provider_openai::OpenAiProvider;
    /// let err = OpenAiProvider::builder_from_env(|_| None).unwrap_err();
    /// assert!(err.to_string().contains("OPENAI_API_KEY"));
    ///
    /// let p = OpenAiProvider::builder_from_env(|k| match k {
    ///     "OPENAI_API_KEY" => Some("sk-test".into()),
    ///     "OPENAI_BASE_URL" => Some("http://127.0.0.1:9/v1".into()),
    ///     _ => None,
    /// }).unwrap().build().unwrap();
    /// assert_eq!(p.config().base_url, "http://127.0.0.1:9/v1");
    /// ```
    pub fn builder_from_env(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<OpenAiBuilder, ConfigError> {
        let get = |k: &str| {
            lookup(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let key = get(API_KEY_VAR).ok_or_else(|| ConfigError::MissingApiKey {
            variable: API_KEY_VAR.to_owned(),
        })?;
        let mut b = OpenAiBuilder::new()
            .api_key(key)
            .api_key_source(API_KEY_VAR);
        if let Some(url) = get(BASE_URL_VAR) {
            b = b.base_url(url);
        }
        if let Some(org) = get(ORG_VAR) {
            b = b.organization(org);
        }
        if let Some(project) = get(PROJECT_VAR) {
            b = b.project(project);
        }
        Ok(b)
    }

    /// Checks `config` and creates the provider (and its one HTTP client).
    pub fn from_config(config: OpenAiConfig) -> Result<Self, ConfigError> {
        if config.api_key.as_ref().is_none_or(|k| k.is_empty()) && !config.allow_missing_key {
            return Err(ConfigError::MissingApiKey {
                variable: config.api_key_source.clone(),
            });
        }
        let base = Url::parse(&config.base_url).map_err(|e| ConfigError::InvalidBaseUrl {
            url: config.base_url.clone(),
            reason: e.to_string(),
        })?;
        if base.scheme() != "http" && base.scheme() != "https" {
            return Err(ConfigError::InvalidBaseUrl {
                url: config.base_url.clone(),
                reason: format!("the scheme `{}` is not http or https", base.scheme()),
            });
        }
        if config.embedding_batch_inputs == 0
            || config.embedding_batch_inputs > MAX_EMBEDDING_INPUTS
        {
            return Err(ConfigError::InvalidSetting {
                name: "embedding_batch_inputs",
                found: config.embedding_batch_inputs.to_string(),
                expected: format!("1 to {MAX_EMBEDDING_INPUTS}"),
            });
        }
        if config.embedding_batch_tokens == 0 {
            return Err(ConfigError::InvalidSetting {
                name: "embedding_batch_tokens",
                found: "0".to_owned(),
                expected: "at least 1".to_owned(),
            });
        }
        if config.embedding_concurrency == 0 {
            return Err(ConfigError::InvalidSetting {
                name: "embedding_concurrency",
                found: "0".to_owned(),
                expected: "at least 1".to_owned(),
            });
        }
        if config.provider_name.trim().is_empty() {
            return Err(ConfigError::InvalidSetting {
                name: "provider_name",
                found: "\"\"".to_owned(),
                expected: "a non-empty name such as `openai` or `ollama`".to_owned(),
            });
        }

        let mut headers = HeaderMap::new();
        if let Some(key) = config.api_key.as_ref().filter(|k| !k.is_empty()) {
            let (name, value) = match &config.auth_style {
                AuthStyle::Bearer => ("authorization", format!("Bearer {}", key.expose())),
                AuthStyle::Header(h) => (h.as_str(), key.expose().to_owned()),
            };
            let (n, v) =
                header_pair(name, &value, true).map_err(|_| ConfigError::InvalidHeader {
                    name: name.to_owned(),
                    reason: format!(
                        "the API key from {} holds characters a header cannot carry",
                        config.api_key_source
                    ),
                })?;
            headers.insert(n, v);
        }
        if let Some(org) = &config.organization {
            let (n, v) = header_pair("openai-organization", org, false)?;
            headers.insert(n, v);
        }
        if let Some(project) = &config.project {
            let (n, v) = header_pair("openai-project", project, false)?;
            headers.insert(n, v);
        }
        for (name, value) in &config.headers {
            let (n, v) = header_pair(name, value, true)?;
            headers.append(n, v);
        }
        // Every answer but a stream is JSON; set once here rather than on each request (a
        // stream asks for `text/event-stream` on its request, which wins).
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));

        // The request timeout is applied per call (see `Inner::post` and `Inner::chat`), not
        // here: a chat call bounds its whole exchange with one timer of its own.
        let client = Client::builder()
            .default_headers(headers)
            .user_agent(config.user_agent.clone())
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| ConfigError::Client(e.to_string()))?;

        let chat_url = endpoint(&config.base_url, "chat/completions", &config.query)?;
        let embeddings_url = endpoint(&config.base_url, "embeddings", &config.query)?;
        let models_url = endpoint(&config.base_url, "models", &config.query)?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                config,
                chat_url,
                embeddings_url,
                models_url,
            }),
        })
    }

    /// The provider name reported in responses, usage and errors.
    pub fn name(&self) -> &str {
        &self.inner.config.provider_name
    }

    /// The configuration (its `Debug` hides the key).
    pub fn config(&self) -> &OpenAiConfig {
        &self.inner.config
    }

    /// True when `other` is a clone of this provider (shares its client and pool).
    pub fn shares_client_with(&self, other: &OpenAiProvider) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Answers one chat request.
    pub async fn chat(&self, req: LlmRequest) -> Result<LlmResponse, LlmError> {
        let (body, model) = self.inner.prepare_chat(req)?;
        Arc::clone(&self.inner).send_chat(body, model).await
    }

    /// Starts a streamed chat answer.
    pub async fn chat_stream(&self, req: LlmRequest) -> Result<LlmStream, LlmError> {
        self.inner.chat_stream(req).await
    }

    /// Embeds texts (batched as [`crate::embeddings`] describes).
    pub async fn embed(&self, req: EmbeddingRequest) -> Result<EmbeddingResponse, LlmError> {
        Arc::clone(&self.inner).embed(req).await
    }

    /// The model ids the server lists (`GET /models`).
    pub async fn list_models(&self) -> Result<Vec<String>, LlmError> {
        self.inner.list_models().await
    }
}

impl Inner {
    fn provider(&self) -> &str {
        &self.config.provider_name
    }

    fn ctx<'a>(&'a self, model: &'a str) -> ErrorContext<'a> {
        ErrorContext {
            provider: &self.config.provider_name,
            model,
            key: self.config.api_key.as_ref().map(|k| k.expose()),
            key_source: &self.config.api_key_source,
            base_url: &self.config.base_url,
        }
    }

    fn encode<T: serde::Serialize>(&self, body: &T, size_hint: usize) -> Result<Vec<u8>, LlmError> {
        self.encode_with(size_hint, |out| serde_json::to_writer(out, body))
    }

    /// Writes a request body with `write` into a buffer sized from `size_hint`.
    fn encode_with(
        &self,
        size_hint: usize,
        write: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>,
    ) -> Result<Vec<u8>, LlmError> {
        let mut out = Vec::with_capacity(size_hint.saturating_add(256));
        write(&mut out)
            .map(|()| out)
            .map_err(|e| LlmError::InvalidRequest {
                provider: self.provider().to_owned(),
                message: format!("the request could not be encoded as JSON: {e}"),
            })
    }

    fn encode_chat(&self, req: &LlmRequest, stream: bool) -> Result<Vec<u8>, LlmError> {
        let body = ChatBody {
            req,
            config: &self.config,
            stream,
        };
        self.encode_with(body_size_hint(req), |out| body.write_json(out))
    }

    /// Sends a JSON POST; returns the response when its status is 2xx. With `timed`, the
    /// configured request timeout bounds the request and the reading of its body (stream
    /// included); without, the caller bounds it.
    async fn post(
        &self,
        url: &Url,
        body: Vec<u8>,
        model: &str,
        started: Instant,
        sse: bool,
        timed: bool,
    ) -> Result<reqwest::Response, LlmError> {
        let mut request = self.client.post(url.clone()).header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if sse {
            request = request.header(
                header::ACCEPT,
                HeaderValue::from_static("text/event-stream"),
            );
        }
        if timed && let Some(limit) = self.config.request_timeout {
            request = request.timeout(limit);
        }
        let res = request
            .body(body)
            .send()
            .await
            .map_err(|e| from_reqwest(self.provider(), &e, started.elapsed()))?;
        self.check_status(res, model, started).await
    }

    async fn check_status(
        &self,
        res: reqwest::Response,
        model: &str,
        started: Instant,
    ) -> Result<reqwest::Response, LlmError> {
        let status = res.status().as_u16();
        if res.status().is_success() {
            log_rate_limits(self.provider(), status, res.headers());
            return Ok(res);
        }
        // Boxed: the error path's state stays out of every call's future.
        Err(Box::pin(self.status_error(res, model, started)).await)
    }

    /// The error for a non-2xx answer, its body read.
    async fn status_error(
        &self,
        res: reqwest::Response,
        model: &str,
        started: Instant,
    ) -> LlmError {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        match res.bytes().await {
            Ok(body) => from_status(&self.ctx(model), status, &headers, &body),
            Err(e) => from_reqwest(self.provider(), &e, started.elapsed()),
        }
    }

    /// The whole body. Read chunk by chunk: an answer in one chunk (the usual case) is
    /// taken as it is, and the future is smaller than `Response::bytes`'s.
    async fn read_body(
        &self,
        mut res: reqwest::Response,
        started: Instant,
    ) -> Result<bytes::Bytes, LlmError> {
        let failed = |e: reqwest::Error| from_reqwest(self.provider(), &e, started.elapsed());
        let Some(first) = res.chunk().await.map_err(failed)? else {
            return Ok(bytes::Bytes::new());
        };
        let Some(second) = res.chunk().await.map_err(failed)? else {
            return Ok(first);
        };
        let mut all = Vec::with_capacity(first.len() + second.len());
        all.extend_from_slice(&first);
        all.extend_from_slice(&second);
        while let Some(more) = res.chunk().await.map_err(failed)? {
            all.extend_from_slice(&more);
        }
        Ok(all.into())
    }

    /// Checks and encodes a chat request: the body to send and the model asked for. Done
    /// before the call's future is made, so the future holds neither the request nor its
    /// encoder.
    fn prepare_chat(&self, req: LlmRequest) -> Result<(Vec<u8>, String), LlmError> {
        check_request(&req, self.provider())?;
        let body = self.encode_chat(&req, false)?;
        Ok((body, req.model))
    }

    /// Sends a prepared chat request and reads the answer, within the request timeout if
    /// one is set.
    fn send_chat(
        self: Arc<Self>,
        body: Vec<u8>,
        model: String,
    ) -> BoxFuture<Result<LlmResponse, LlmError>> {
        // Two shapes of the call: without a limit it carries no timer at all.
        match self.config.request_timeout {
            None => Box::pin(self.exchange(body, model, std::future::pending)),
            Some(limit) => Box::pin(self.exchange(body, model, move || tokio::time::sleep(limit))),
        }
    }

    /// Posts `body` and reads the answer; the call times out when the future `expiry`
    /// makes (in the call, so within its runtime) completes first.
    async fn exchange<E: Future<Output = ()> + Send>(
        self: Arc<Self>,
        body: Vec<u8>,
        model: String,
        expiry: impl FnOnce() -> E + Send,
    ) -> Result<LlmResponse, LlmError> {
        let started = Instant::now();
        // One expiry bounds the whole exchange. It is polled beside each step rather than
        // wrapped around them, so the steps' futures stay where they are made.
        let mut expiry = pin!(expiry());
        let res = {
            let post = pin!(self.post(&self.chat_url, body, &model, started, false, false));
            self.bounded(post, expiry.as_mut(), started).await?
        };
        let bytes = {
            let read = pin!(self.read_body(res, started));
            self.bounded(read, expiry.as_mut(), started).await?
        };
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        parse_response(&bytes, &model, self.provider(), latency_ms)
    }

    /// Polls `step` until it ends, or until `expiry` completes, which is a timeout.
    fn bounded<'a, T>(
        &'a self,
        mut step: Pin<&'a mut impl Future<Output = Result<T, LlmError>>>,
        mut expiry: Pin<&'a mut impl Future<Output = ()>>,
        started: Instant,
    ) -> impl Future<Output = Result<T, LlmError>> + 'a {
        std::future::poll_fn(move |cx| {
            if let Poll::Ready(out) = step.as_mut().poll(cx) {
                return Poll::Ready(out);
            }
            if expiry.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(LlmError::Timeout {
                    provider: self.provider().to_owned(),
                    elapsed: started.elapsed(),
                }));
            }
            Poll::Pending
        })
    }

    async fn chat_stream(&self, req: LlmRequest) -> Result<LlmStream, LlmError> {
        check_request(&req, self.provider())?;
        let body = self.encode_chat(&req, true)?;
        let started = Instant::now();
        let res = self
            .post(&self.chat_url, body, &req.model, started, true, true)
            .await?;
        let is_sse = res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            // Some servers ignore `stream` and answer with one JSON completion: accept it.
            let bytes = self.read_body(res, started).await?;
            let head = bytes.iter().position(|b| !b.is_ascii_whitespace());
            if let Some(i) = head
                && (bytes[i..].starts_with(b"data:") || bytes[i..].starts_with(b":"))
            {
                // SSE sent with another content type: read it as SSE all the same.
                let assembler = Assembler::new(self.provider(), &req.model, started);
                let body = futures_util::stream::iter([Ok::<_, reqwest::Error>(bytes)]);
                return Ok(events(body, assembler));
            }
            let response = parse_response(
                &bytes,
                &req.model,
                self.provider(),
                started.elapsed().as_secs_f64() * 1000.0,
            )?;
            let mut events = Vec::new();
            if !response.content.is_empty() {
                events.push(Ok(flowloom_core::StreamEvent::Delta(
                    response.content.clone(),
                )));
            }
            events.push(Ok(flowloom_core::StreamEvent::Done(response)));
            return Ok(Box::pin(futures_util::stream::iter(events)));
        }
        let assembler = Assembler::new(self.provider(), &req.model, started);
        Ok(events(res.bytes_stream().boxed(), assembler))
    }

    async fn embed(self: Arc<Self>, req: EmbeddingRequest) -> Result<EmbeddingResponse, LlmError> {
        req.validate().map_err(|e| LlmError::InvalidRequest {
            provider: self.provider().to_owned(),
            message: e.to_string(),
        })?;
        let started = Instant::now();
        let ranges = batches(
            &req.input,
            self.config.embedding_batch_inputs,
            self.config.embedding_batch_tokens,
        );
        let req = Arc::new(req);
        let concurrency = self.config.embedding_concurrency;
        let answers: Vec<_> = futures_util::stream::iter(ranges.into_iter().map(|range| {
            let inner = Arc::clone(&self);
            let req = Arc::clone(&req);
            async move {
                let input = &req.input[range];
                let hint = input.iter().map(|t| t.len() + 3).sum();
                let body = inner.encode(&EmbeddingBody { req: &req, input }, hint)?;
                let res = inner
                    .post(
                        &inner.embeddings_url,
                        body,
                        &req.model,
                        started,
                        false,
                        true,
                    )
                    .await?;
                let bytes = inner.read_body(res, started).await?;
                parse_batch(&bytes, input.len(), inner.provider())
            }
        }))
        .buffered(concurrency)
        .try_collect()
        .await?;

        let model = answers
            .iter()
            .find_map(|a| a.model.clone())
            .unwrap_or_else(|| req.model.clone());
        let tokens: Vec<Option<u64>> = answers.iter().map(|a| a.prompt_tokens).collect();
        let usage = sum_usage(&tokens, &model, self.provider());
        let embeddings = answers.into_iter().flat_map(|a| a.vectors).collect();
        Ok(EmbeddingResponse {
            embeddings,
            model,
            provider: self.provider().to_owned(),
            usage,
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        })
    }

    async fn list_models(&self) -> Result<Vec<String>, LlmError> {
        #[derive(serde::Deserialize)]
        struct List {
            data: Vec<Item>,
        }
        #[derive(serde::Deserialize)]
        struct Item {
            id: String,
        }
        let started = Instant::now();
        let mut request = self.client.get(self.models_url.clone());
        if let Some(limit) = self.config.request_timeout {
            request = request.timeout(limit);
        }
        let res = request
            .send()
            .await
            .map_err(|e| from_reqwest(self.provider(), &e, started.elapsed()))?;
        let res = self.check_status(res, "", started).await?;
        let bytes = self.read_body(res, started).await?;
        let list: List = serde_json::from_slice(&bytes).map_err(|e| {
            crate::error::decode_error(
                self.provider(),
                "the models list is not valid JSON of the expected shape",
                &e,
                &bytes,
            )
        })?;
        Ok(list.data.into_iter().map(|i| i.id).collect())
    }
}

/// Roughly the encoded size of a chat request, so the body is written without regrowing.
fn body_size_hint(req: &LlmRequest) -> usize {
    req.model.len()
        + req
            .messages
            .iter()
            .map(|m| m.content.len() + 32)
            .sum::<usize>()
}

impl Service<LlmRequest> for OpenAiProvider {
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = BoxFuture<Result<LlmResponse, LlmError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: LlmRequest) -> Self::Future {
        match self.inner.prepare_chat(req) {
            Ok((body, model)) => Arc::clone(&self.inner).send_chat(body, model),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }
}

impl Service<StreamRequest> for OpenAiProvider {
    type Response = LlmStream;
    type Error = LlmError;
    type Future = BoxFuture<Result<LlmStream, LlmError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: StreamRequest) -> Self::Future {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.chat_stream(req.0).await })
    }
}

impl Service<EmbeddingRequest> for OpenAiProvider {
    type Response = EmbeddingResponse;
    type Error = LlmError;
    type Future = BoxFuture<Result<EmbeddingResponse, LlmError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: EmbeddingRequest) -> Self::Future {
        let inner = Arc::clone(&self.inner);
        Box::pin(inner.embed(req))
    }
}
