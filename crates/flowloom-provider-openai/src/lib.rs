//! # flowloom-provider-openai
//!
//! The flowloom provider for OpenAI and every OpenAI-compatible server (Ollama, vLLM,
//! LiteLLM, DeepSeek, OpenRouter, Azure-style deployments), over `reqwest` with rustls.
//!
//! [`OpenAiProvider`] is a `tower::Service` for the three contracts of `flowloom-core`:
//! chat ([`LlmRequest`](flowloom_core::LlmRequest) → [`LlmResponse`](flowloom_core::LlmResponse)),
//! streaming ([`StreamRequest`](flowloom_core::StreamRequest) →
//! [`LlmStream`](flowloom_core::LlmStream)) and embeddings
//! ([`EmbeddingRequest`](flowloom_core::EmbeddingRequest) →
//! [`EmbeddingResponse`](flowloom_core::EmbeddingResponse)). It retries nothing; errors are
//! mapped onto [`LlmError`](flowloom_core::LlmError) as [`error`] describes, so retry and
//! failover layers can decide.
//!
//! - Request mapping, and the `max_tokens` / `max_completion_tokens` rule: [`chat`],
//!   [`TokenLimitParam`], [`TemperaturePolicy`].
//! - Streaming over SSE: [`stream`].
//! - Embeddings and the batching rule: [`embeddings`].
//! - Configuration: [`OpenAiConfig`], [`OpenAiBuilder`], [`OpenAiProvider::from_env`]
//!   (`OPENAI_API_KEY`, `OPENAI_BASE_URL`, `OPENAI_ORG_ID`, `OPENAI_PROJECT_ID`).
//!
//! ```no_run
//! use flowloom_core::LlmRequest;
//! use flowloom_provider_openai::OpenAiProvider;
//! use tower::ServiceExt;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let provider = OpenAiProvider::from_env()?; // needs OPENAI_API_KEY
//! let answer = provider
//!     .oneshot(LlmRequest::new("gpt-4o-mini", "Say hi").with_max_tokens(5))
//!     .await?;
//! println!("{} ({:?})", answer.content, answer.usage);
//! # Ok(()) }
//! ```
//!
//! A local server needing no key, from blocking code through
//! [`BlockingClient`](flowloom_core::BlockingClient) (here the testkit's mock server):
//!
//! ```
//! use flowloom_core::{BlockingClient, LlmRequest};
//! use flowloom_provider_openai::OpenAiProvider;
//! use flowloom_testkit::server::MockOpenAiServer;
//!
//! // The mock server runs on a runtime of its own; the caller below has none.
//! let rt = tokio::runtime::Runtime::new().unwrap();
//! let server = rt.block_on(MockOpenAiServer::start()).unwrap();
//!
//! let provider = OpenAiProvider::builder()
//!     .base_url(server.base_url())
//!     .allow_missing_key(true)
//!     .provider_name("local")
//!     .build()
//!     .unwrap();
//! let client = BlockingClient::new(provider).unwrap();
//! let answer = client.call(LlmRequest::new("gpt-4o-mini", "hello there")).unwrap();
//! assert_eq!(answer.content, "hello there");
//! assert_eq!(answer.usage.unwrap().provider, "local");
//! ```

pub mod chat;
pub mod config;
pub mod embeddings;
pub mod error;
mod provider;
mod scan;
pub mod stream;

pub use config::{
    API_KEY_VAR, AuthStyle, BASE_URL_VAR, ConfigError, DEFAULT_BASE_URL, OpenAiBuilder,
    OpenAiConfig, TemperaturePolicy, TokenLimitParam,
};
pub use provider::OpenAiProvider;
