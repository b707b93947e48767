//! # flowloom
//!
//! Multi-step LLM workflows in Rust: define a workflow as code or as a `workflow/v2.0` YAML
//! file, run it async or blocking, with retry, timeout, rate limits, failover and token
//! accounting as stackable `tower` layers, observable through `tracing` and OpenTelemetry,
//! testable offline with mock providers and recorded fixtures.
//!
//! This is the crate to depend on. It holds no logic of its own: it re-exports the workspace
//! crates behind features.
//!
//! | feature | enables |
//! | --- | --- |
//! | `openai` (default) | [`openai`]: the OpenAI / OpenAI-compatible provider |
//! | `yaml` (default) | `flowloom::engine::yaml`: the `workflow/v2.0` loader, validation, schema and step modes (brings the YAML parser and the tokenizer) |
//! | `mock` | [`mock`]: echo and scripted mock providers |
//! | `otlp` | OpenTelemetry export over OTLP in [`observability`] |
//! | `testkit` | [`testkit`]: cassettes, mock server, budgets, assertions |
//! | `blocking` | [`core::BlockingClient`] in the prelude, to call any provider from blocking code (`Engine::run_blocking` needs no feature: it adds no dependency) |
//! | `full` | all of the above |

pub use flowloom_core as core;
pub use flowloom_engine as engine;
pub use flowloom_middleware as middleware;
pub use flowloom_observability as observability;
#[cfg(feature = "mock")]
pub use flowloom_provider_mock as mock;
#[cfg(feature = "openai")]
pub use flowloom_provider_openai as openai;
#[cfg(feature = "testkit")]
pub use flowloom_testkit as testkit;
/// `tower`, to stack layers around providers (`tower::ServiceBuilder`).
pub use tower;

pub use flowloom_core::{
    FrameworkConfig, LlmError, LlmRequest, LlmResponse, StepContext, StepResult, StepStatus,
    TokenUsage, WorkflowResult, WorkflowStatus,
};

/// The items most programs need: `use flowloom::prelude::*;`.
pub mod prelude {
    #[cfg(feature = "blocking")]
    pub use flowloom_core::BlockingClient;
    pub use flowloom_core::{FrameworkConfig, LlmError};
    pub use flowloom_engine::prelude::*;
    #[cfg(feature = "mock")]
    pub use flowloom_provider_mock::MockProvider;
    #[cfg(feature = "openai")]
    pub use flowloom_provider_openai::OpenAiProvider;
}

/// The user guide under `docs/src/`, compiled here so that every Rust example in it runs as a
/// doc test (`cargo test -p flowloom --all-features --doc`) and cannot rot.
#[cfg(all(doctest, feature = "full"))]
pub mod book {
    #[doc = include_str!("../../../docs/src/getting-started.md")]
    pub struct GettingStarted;
    #[doc = include_str!("../../../docs/src/concepts.md")]
    pub struct Concepts;
    #[doc = include_str!("../../../docs/src/providers.md")]
    pub struct Providers;
    #[doc = include_str!("../../../docs/src/configuration.md")]
    pub struct Configuration;
    #[doc = include_str!("../../../docs/src/middleware.md")]
    pub struct Middleware;
    #[doc = include_str!("../../../docs/src/cli.md")]
    pub struct Cli;
    #[doc = include_str!("../../../docs/src/yaml.md")]
    pub struct Yaml;
    #[doc = include_str!("../../../docs/src/testing.md")]
    pub struct Testing;
    #[doc = include_str!("../../../docs/src/observability.md")]
    pub struct Observability;
}
