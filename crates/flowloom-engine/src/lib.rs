//! # flowloom-engine
//!
//! Workflow definitions (builder and YAML), validation, the scheduler, step kinds, templates
//! and expressions, the plugin registry, lifecycle hooks and execution modes.
//!
//! - [`Engine`] (built by [`Engine::builder`]) holds providers by name with their `tower`
//!   layer stacks, custom step kinds, registered workflows, hooks, limits and the
//!   [`FrameworkConfig`](flowloom_core::FrameworkConfig). One engine serves many concurrent
//!   runs from many threads.
//! - [`Workflow`] (built by [`Workflow::builder`]) is a validated definition: model steps,
//!   transforms, sub-workflow calls and plugin steps ([`Step`]), in a plain sequence by
//!   default or a DAG through `needs`. Duplicate names, unknown needs, cycles and template
//!   variables nothing provides are rejected before anything runs.
//! - Execution: [`Engine::run`] (async), [`Engine::start`] → [`RunHandle`] (id, status,
//!   cancel, result kept until taken), [`Engine::run_blocking`] (no runtime needed, optional
//!   timeout).
//! - Extension: [`StepPlugin`] (init → execute → cleanup, through a [`StepRuntime`]),
//!   [`Hooks`].
//!
//! ```
//! use flowloom_engine::prelude::*;
//! # use flowloom_core::{LlmError, LlmRequest, LlmResponse, provider::{self, AsyncProvider}};
//! # struct Echo;
//! # impl AsyncProvider for Echo {
//! #     fn name(&self) -> &str { "echo" }
//! #     async fn complete(&self, r: LlmRequest) -> Result<LlmResponse, LlmError> {
//! #         let p = r.prompt().unwrap_or_default().to_owned();
//! #         Ok(LlmResponse::text(p, r.model, "echo"))
//! #     }
//! # }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let engine = Engine::builder().provider("mock", provider::from_async(Echo)).build()?;
//! let wf = Workflow::builder("summarize")
//!     .llm("draft", "Summarize: {{ input }}")
//!     .llm("refine", "Tighten this: {{ draft }}")
//!     .transform("shout", |ctx| Ok(ctx.output("refine")?.to_uppercase().into()))
//!     .build()?;
//! let result = engine.run(&wf, "some text").await?;
//! assert_eq!(result.output_text(), Some("TIGHTEN THIS: SUMMARIZE: SOME TEXT"));
//! assert_eq!(result.metrics.llm_calls, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
//! ```
//!
//! Skipping: a step whose `when` is false is `SKIPPED`; a step that `needs` a skipped or
//! failed (non-critical) step is skipped too unless it has its own `when`; a step that merely
//! follows by declaration order still runs. See [`workflow`] for the details.

pub mod config;
pub mod engine;
pub mod error;
mod exec;
pub mod handle;
pub mod hooks;
mod limit;
pub mod plugin;
mod template;
pub mod workflow;
#[cfg(feature = "yaml")]
pub mod yaml;

pub use config::{ConfigError, ConfigLoader, ConfigProblem};
pub use engine::{
    DEFAULT_MAX_CONCURRENT_STEPS, DEFAULT_MAX_RUNS_IN_FLIGHT, Engine, EngineBuilder,
    OverflowPolicy, RunOptions, StepKindFactory,
};
pub use error::{BuildError, RunError, TemplateError, WorkflowError, WorkflowIssue};
pub use handle::RunHandle;
pub use hooks::{Hooks, RunEvent, StepEvent};
pub use plugin::{BoxFuture, StepPlugin, StepRuntime};
pub use workflow::{Step, StepSettings, TransformFn, Workflow, WorkflowBuilder, WorkflowRef};

/// What a user needs to define and run workflows: `use flowloom_engine::prelude::*;`.
pub mod prelude {
    pub use crate::{
        BoxFuture, Engine, Hooks, OverflowPolicy, RunError, RunHandle, RunOptions, Step,
        StepPlugin, StepRuntime, Workflow, WorkflowRef,
    };
    pub use flowloom_core::{
        BoxError, LlmRequest, LlmResponse, StepContext, StepStatus, TokenUsage, WorkflowResult,
        WorkflowStatus,
    };
    pub use serde_json::{Value, json};
}
