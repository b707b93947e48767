//! Custom step kinds: the [`StepPlugin`] trait and the [`StepRuntime`] a plugin works through.
//!
//! A plugin runs with the lifecycle `init` → `execute` → `cleanup`. `cleanup` runs whenever
//! `init` ran — after success, failure, a panic, a timeout and a cancellation. An error or a
//! panic in any of them fails the plugin's own step (naming the plugin); the engine and other
//! runs go on.
//!
//! ```
//! use flowloom_engine::{BoxFuture, StepPlugin, StepRuntime};
//! use flowloom_core::BoxError;
//! use serde_json::Value;
//!
//! /// Asks the step's model, then counts the words of the answer.
//! struct WordCount;
//!
//! impl StepPlugin for WordCount {
//!     fn name(&self) -> &str { "word_count" }
//!     fn execute<'a>(&'a self, rt: &'a StepRuntime) -> BoxFuture<'a, Result<Value, BoxError>> {
//!         Box::pin(async move {
//!             let prompt = rt.render("Describe {{ input }}")?;
//!             let answer = rt.prompt(&prompt).await?;
//!             Ok(answer.content.split_whitespace().count().into())
//!         })
//!     }
//!     fn templates(&self) -> Vec<String> { vec!["Describe {{ input }}".into()] }
//! }
//! ```

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use flowloom_core::{
    BoxError, CallContext, EmbeddingRequest, EmbeddingResponse, LlmError, LlmRequest, LlmResponse,
    StepConfig, StepContext, TokenUsage, WorkflowResult,
};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::error::{RunError, TemplateError};
use crate::exec::RunShared;
use crate::template::{self, Outputs, Scope};
use crate::workflow::WorkflowRef;

/// A boxed `Send` future borrowing for `'a`, as plugin and hook methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A custom step kind. Object safe: the engine holds plugins as `Arc<dyn StepPlugin>`.
///
/// One plugin value serves every run of its workflow, possibly at once; keep per-run state in
/// the [`StepRuntime`] ([`StepRuntime::put_state`] / [`StepRuntime::take_state`]).
pub trait StepPlugin: Send + Sync + 'static {
    /// The plugin's name, used in errors (`plugin "consensus" panicked: ..`) and as the step
    /// kind (`plugin:<name>`).
    fn name(&self) -> &str;

    /// Prepares the step (acquire resources). An error fails the step; `cleanup` still runs.
    fn init<'a>(&'a self, rt: &'a StepRuntime) -> BoxFuture<'a, Result<(), BoxError>> {
        let _ = rt;
        Box::pin(async { Ok(()) })
    }

    /// Does the step's work and returns its output.
    fn execute<'a>(&'a self, rt: &'a StepRuntime) -> BoxFuture<'a, Result<Value, BoxError>>;

    /// Releases what `init` acquired. Runs after success, failure, panic, timeout and
    /// cancellation alike; keep it short.
    fn cleanup<'a>(&'a self, rt: &'a StepRuntime) -> BoxFuture<'a, ()> {
        let _ = rt;
        Box::pin(async {})
    }

    /// The templates the plugin will [`render`](StepRuntime::render): they are checked
    /// (syntax, undefined variables) when the workflow is built and compiled once.
    fn templates(&self) -> Vec<String> {
        Vec::new()
    }

    /// The providers the plugin will call by name: checked before a run starts, so an
    /// unregistered one fails the run before anything runs.
    fn providers(&self) -> Vec<String> {
        Vec::new()
    }
}

#[derive(Default)]
pub(crate) struct UsageAcc {
    pub(crate) usage: Option<TokenUsage>,
}

impl UsageAcc {
    pub(crate) fn add(&mut self, u: &TokenUsage) {
        match &mut self.usage {
            Some(acc) => acc.accumulate(u),
            None => self.usage = Some(u.clone()),
        }
    }
}

/// What a plugin step works through: its context, templates, model calls, sub-workflows,
/// settings and the run's cancellation token.
pub struct StepRuntime {
    pub(crate) run: Arc<RunShared>,
    pub(crate) ctx: StepContext,
    pub(crate) step_name: Arc<str>,
    pub(crate) usage: Mutex<UsageAcc>,
    pub(crate) state: Mutex<Option<Box<dyn Any + Send>>>,
}

impl std::fmt::Debug for StepRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepRuntime")
            .field("workflow", &self.run.workflow.name())
            .field("step", &self.step_name)
            .finish()
    }
}

impl StepRuntime {
    /// The step's context: input, variables, outputs of the steps finished before it, and its
    /// effective settings.
    pub fn ctx(&self) -> &StepContext {
        &self.ctx
    }

    /// The step's name.
    pub fn step_name(&self) -> &str {
        &self.step_name
    }

    /// The workflow's name.
    pub fn workflow_name(&self) -> &str {
        self.run.workflow.name()
    }

    /// The run's id.
    pub fn run_id(&self) -> uuid::Uuid {
        self.run.run_id
    }

    /// The step's effective settings (provider, model, temperature, max_tokens, timeout)
    /// after inheritance from the workflow and the engine's configuration.
    pub fn config(&self) -> &StepConfig {
        &self.ctx.config
    }

    /// The workflow's variables for this run.
    pub fn vars(&self) -> &Map<String, Value> {
        &self.ctx.variables
    }

    /// The registered provider names, sorted.
    pub fn providers(&self) -> Vec<&str> {
        self.run.engine.provider_names()
    }

    /// The registered embedding provider names, sorted.
    pub fn embedding_providers(&self) -> Vec<&str> {
        self.run.engine.embedding_provider_names()
    }

    /// The run's cancellation token: cancelled when the run is cancelled or times out. A
    /// long-running plugin should stop early when it fires.
    pub fn cancellation(&self) -> &CancellationToken {
        self.run.cancel_token()
    }

    fn scope(&self) -> Scope<'_> {
        Scope {
            input: &self.ctx.input_data,
            vars: &self.ctx.variables,
            env: &self.run.workflow.0.env_vars,
            outputs: Outputs::Named(&self.ctx.previous_outputs),
        }
    }

    fn what(&self, part: &str) -> String {
        format!("{part} of step {:?}", &*self.step_name)
    }

    /// Renders a template with the variables this step can see. Templates listed by
    /// [`StepPlugin::templates`] are compiled once; others are compiled on each call.
    pub fn render(&self, template: &str) -> Result<String, TemplateError> {
        let wf = &self.run.workflow.0;
        let scope = self.scope();
        let what = || self.what("a template");
        match wf.plugin_templates.get(template) {
            Some(tpl) => template::render(&wf.env, tpl, &scope, &what),
            None => template::render_str(&wf.env, template, &scope, &what),
        }
    }

    /// Renders every string inside `value` as a template; a string that is exactly one
    /// `{{ expression }}` keeps the expression's type (a list stays a list).
    pub fn render_value(&self, value: &Value) -> Result<Value, TemplateError> {
        let wf = &self.run.workflow.0;
        template::render_value_str(&wf.env, value, &self.scope(), &|| self.what("a value"))
    }

    /// Evaluates a condition (`"{{ x == 'YES' }}"` or `"x == 'YES'"`) to true or false.
    pub fn eval(&self, condition: &str) -> Result<bool, TemplateError> {
        let wf = &self.run.workflow.0;
        template::eval_str(&wf.env, condition, &self.scope(), &|| {
            self.what("a condition")
        })
    }

    /// A request for `prompt` with the step's effective model, temperature and max_tokens.
    pub fn request(&self, prompt: impl Into<String>) -> LlmRequest {
        let c = &self.ctx.config;
        let cfg = self.run.engine.config();
        LlmRequest::new(
            c.model.clone().unwrap_or_else(|| cfg.default_model.clone()),
            prompt,
        )
        .with_temperature(c.temperature.unwrap_or(cfg.default_temperature))
        .with_max_tokens(c.max_tokens.unwrap_or(cfg.default_max_tokens))
    }

    /// Sends `prompt` to the step's provider with the step's settings.
    pub async fn prompt(&self, prompt: &str) -> Result<LlmResponse, LlmError> {
        self.call_llm(None, self.request(prompt)).await
    }

    /// Calls a provider: `provider`, or the step's, or the engine's default. Fills the
    /// request's [`CallContext`], and its model when empty (the step's effective model);
    /// records the call's usage to this step and counts it in the run's metrics.
    pub async fn call_llm(
        &self,
        provider: Option<&str>,
        mut request: LlmRequest,
    ) -> Result<LlmResponse, LlmError> {
        let name = provider
            .map(str::to_owned)
            .or_else(|| self.ctx.config.provider.clone())
            .or_else(|| self.run.engine.default_provider_name().map(str::to_owned))
            .ok_or_else(|| LlmError::Unavailable {
                provider: "<none>".to_owned(),
                message: format!(
                    "step {:?} names no provider and the engine has no default (registered: {})",
                    &*self.step_name,
                    self.run.engine.provider_names().join(", ")
                ),
            })?;
        let (pname, svc) =
            self.run
                .engine
                .provider(&name)
                .ok_or_else(|| LlmError::Unavailable {
                    provider: name.clone(),
                    message: format!(
                        "provider {name:?} is not registered (registered providers: {})",
                        self.run.engine.provider_names().join(", ")
                    ),
                })?;
        if request.model.is_empty() {
            request.model = self
                .ctx
                .config
                .model
                .clone()
                .unwrap_or_else(|| self.run.engine.config().default_model.clone());
        }
        request.context = self.call_context(Some(pname));
        let res = svc.oneshot(request).await;
        self.count_calls(1);
        if let Ok(r) = &res {
            self.record_response(r);
        }
        res
    }

    /// The engine running this step: its configuration and registered providers, for a plugin
    /// that builds a service of its own over them (a failover chain, say). Calls made that
    /// way are counted with [`count_calls`](Self::count_calls) and
    /// [`record_response`](Self::record_response).
    pub fn engine(&self) -> &crate::Engine {
        &self.run.engine
    }

    /// The [`CallContext`] of a request this step makes: run, workflow, step and correlation
    /// id, and `provider` where one is known.
    pub fn call_context(&self, provider: Option<Arc<str>>) -> CallContext {
        CallContext {
            run_id: Some(self.run.run_id),
            workflow: Some(Arc::clone(&self.run.workflow.0.name)),
            step: Some(Arc::clone(&self.step_name)),
            correlation_id: Some(self.run.correlation_id),
            provider,
        }
    }

    /// Counts `calls` model calls (answered or not) in the run's metrics, for calls made by
    /// other means than [`call_llm`](Self::call_llm).
    pub fn count_calls(&self, calls: u64) {
        self.run.llm_calls.fetch_add(calls, Ordering::Relaxed);
    }

    /// Records an answer's usage to this step, or counts the call as one without usage when
    /// the provider reported none (never as zero tokens).
    pub fn record_response(&self, response: &LlmResponse) {
        match &response.usage {
            Some(u) => self.record_usage(u),
            None => {
                self.run
                    .llm_calls_without_usage
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Calls an embedding provider (`provider`, or the engine's only/default one); records
    /// its usage to this step.
    pub async fn embed(
        &self,
        provider: Option<&str>,
        mut request: EmbeddingRequest,
    ) -> Result<EmbeddingResponse, LlmError> {
        let (pname, svc) = self.run.engine.embedding_provider(provider)?;
        request.context = self.call_context(Some(pname));
        let res = svc.oneshot(request).await?;
        if let Some(u) = &res.usage {
            self.record_usage(u);
        }
        Ok(res)
    }

    /// Runs a workflow (registered by name, or a value) as part of this step, with `vars` as
    /// its variables and `input` as its input (this run's input when `None`). The called run
    /// shares this run's correlation id and cancellation, nests under this step's span, and
    /// its usage is recorded to this step. A workflow that calls itself, directly or not, is
    /// refused.
    pub async fn run_workflow(
        &self,
        target: impl Into<WorkflowRef>,
        vars: Map<String, Value>,
        input: Option<Value>,
    ) -> Result<WorkflowResult, RunError> {
        let input = input.unwrap_or_else(|| self.ctx.input_data.clone());
        let res = crate::exec::run_child(&self.run, &target.into(), input, vars).await;
        let r = match &res {
            Ok(r) => Some(r),
            Err(e) => e.result(),
        };
        if let Some(r) = r
            && let Some(u) = &r.metrics.token_usage_total
        {
            self.record_usage(u);
        }
        res
    }

    /// Adds usage to this step's record (for calls a plugin makes by other means).
    pub fn record_usage(&self, usage: &TokenUsage) {
        if let Ok(mut acc) = self.usage.lock() {
            acc.add(usage);
        }
    }

    /// Stores per-run state (e.g. made in `init`, used in `execute`, released in `cleanup`).
    pub fn put_state<T: Any + Send>(&self, state: T) {
        if let Ok(mut s) = self.state.lock() {
            *s = Some(Box::new(state));
        }
    }

    /// Takes the per-run state stored with [`StepRuntime::put_state`], if it has type `T`.
    pub fn take_state<T: Any + Send>(&self) -> Option<T> {
        let mut s = self.state.lock().ok()?;
        let b = s.take()?;
        match b.downcast::<T>() {
            Ok(t) => Some(*t),
            Err(b) => {
                *s = Some(b);
                None
            }
        }
    }

    /// Runs `f` on the per-run state, if it has type `T`.
    pub fn with_state<T: Any + Send, R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        let mut s = self.state.lock().ok()?;
        s.as_mut()?.downcast_mut::<T>().map(f)
    }
}
