//! Lifecycle hooks (FR-026): workflow start and end, step start and end, for cross-cutting
//! concerns such as logging and cost tracking.
//!
//! Hooks are async and run inside the run itself, in its own mode: awaited by an async run,
//! and on the engine's runtime for a blocking run. A hook delays its run while it runs, so keep
//! hooks quick. They are only called when registered: an engine without hooks pays nothing.
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use flowloom_engine::{BoxFuture, Hooks, StepEvent};
//! use flowloom_core::StepResult;
//!
//! #[derive(Default)]
//! struct CountSteps(AtomicU32);
//!
//! impl Hooks for CountSteps {
//!     fn on_step_end<'a>(&'a self, _ev: &'a StepEvent, _r: &'a StepResult) -> BoxFuture<'a, ()> {
//!         self.0.fetch_add(1, Ordering::Relaxed);
//!         Box::pin(async {})
//!     }
//! }
//! ```

use std::sync::Arc;

use flowloom_core::{StepResult, WorkflowResult};
use uuid::Uuid;

use crate::plugin::BoxFuture;

/// Which run an event belongs to.
#[derive(Debug, Clone)]
pub struct RunEvent {
    /// The run's id.
    pub run_id: Uuid,
    /// The workflow's name.
    pub workflow: Arc<str>,
    /// The correlation id.
    pub correlation_id: Uuid,
}

/// Which step an event is about.
#[derive(Debug, Clone)]
pub struct StepEvent {
    /// The run.
    pub run: RunEvent,
    /// The step's name.
    pub step: Arc<str>,
    /// The step's kind (`llm`, `transform`, `workflow`, `plugin:<name>`).
    pub kind: Arc<str>,
}

/// Lifecycle hooks; every method has an empty default.
pub trait Hooks: Send + Sync + 'static {
    /// A run starts (before its first step).
    fn on_workflow_start<'a>(&'a self, run: &'a RunEvent) -> BoxFuture<'a, ()> {
        let _ = run;
        Box::pin(async {})
    }
    /// A run ended, in any terminal state.
    fn on_workflow_end<'a>(
        &'a self,
        run: &'a RunEvent,
        result: &'a WorkflowResult,
    ) -> BoxFuture<'a, ()> {
        let _ = (run, result);
        Box::pin(async {})
    }
    /// A step starts (its condition, if any, was true).
    fn on_step_start<'a>(&'a self, step: &'a StepEvent) -> BoxFuture<'a, ()> {
        let _ = step;
        Box::pin(async {})
    }
    /// A step ended: completed, failed or skipped.
    fn on_step_end<'a>(&'a self, step: &'a StepEvent, result: &'a StepResult) -> BoxFuture<'a, ()> {
        let _ = (step, result);
        Box::pin(async {})
    }
}
