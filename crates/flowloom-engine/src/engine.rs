//! The [`Engine`]: provider registry, step kinds, hooks, limits, and the execution modes
//! (`run`, `start`, `run_blocking`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use flowloom_core::provider::{boxed, boxed_embedding};
use flowloom_core::{
    BoxEmbeddingService, BoxError, BoxLlmService, EmbeddingService, FrameworkConfig, LlmError,
    LlmService, WorkflowResult,
};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use flowloom_middleware::ProviderStack;
use flowloom_middleware::retry::{RetryLayer, RetryPolicy};

use crate::config::{ConfigError, ConfigLoader};
use crate::error::{BuildError, RunError};
use crate::exec;
use crate::handle::RunHandle;
use crate::hooks::Hooks;
use crate::plugin::StepPlugin;
use crate::workflow::Workflow;

/// Makes a plugin for a step of a registered kind from the step's parameters.
pub type StepKindFactory =
    Arc<dyn Fn(&Value) -> Result<Arc<dyn StepPlugin>, BoxError> + Send + Sync + 'static>;

type LayerFn = Box<dyn Fn(BoxLlmService) -> BoxLlmService + Send + Sync>;

/// What a run does when the engine already has `max_runs_in_flight` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverflowPolicy {
    /// Wait for a slot (the run's timeout, if any, counts the wait).
    #[default]
    Wait,
    /// Refuse at once with [`RunError::AtCapacity`].
    Reject,
}

/// The default bound on runs in flight per engine.
pub const DEFAULT_MAX_RUNS_IN_FLIGHT: usize = 10_000;
/// The default bound on steps running at once within one run.
pub const DEFAULT_MAX_CONCURRENT_STEPS: usize = 32;

/// Options of one run: input, variables, correlation id, timeout, cancellation.
///
/// ```
/// use std::time::Duration;
/// use flowloom_engine::RunOptions;
/// let opts = RunOptions::new("some text")
///     .var("tone", "formal")
///     .timeout(Duration::from_secs(30));
/// assert_eq!(opts.input, "some text");
/// ```
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The workflow input (`{{ input }}`).
    pub input: Value,
    /// Workflow variables for this run.
    pub vars: Map<String, Value>,
    /// The correlation id; a new one when `None`.
    pub correlation_id: Option<Uuid>,
    /// A time limit for the whole run (waiting for a slot included); the engine
    /// configuration's `default_timeout_seconds` when `None`. Past it the run ends as
    /// `TIMEOUT` with the steps completed so far.
    pub timeout: Option<Duration>,
    /// A token that cancels the run gracefully when cancelled.
    pub cancel: Option<CancellationToken>,
    pub(crate) run_id: Option<Uuid>,
    pub(crate) status: Option<Arc<std::sync::atomic::AtomicU8>>,
}

impl RunOptions {
    /// Options with this input and nothing else.
    pub fn new(input: impl Into<Value>) -> Self {
        Self {
            input: input.into(),
            ..Self::default()
        }
    }
    /// Sets a workflow variable.
    #[must_use]
    pub fn var(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }
    /// Sets the correlation id.
    #[must_use]
    pub fn correlation_id(mut self, id: Uuid) -> Self {
        self.correlation_id = Some(id);
        self
    }
    /// Sets the run's time limit.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    /// Sets a cancellation token.
    #[must_use]
    pub fn cancel_token(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }
}

pub(crate) struct EngineInner {
    pub(crate) providers: BTreeMap<String, (Arc<str>, BoxLlmService)>,
    pub(crate) embedders: BTreeMap<String, (Arc<str>, BoxEmbeddingService)>,
    pub(crate) default_provider: Option<String>,
    pub(crate) default_embedder: Option<String>,
    pub(crate) config: FrameworkConfig,
    pub(crate) max_steps: usize,
    pub(crate) runs: crate::limit::RunLimiter,
    pub(crate) max_runs: usize,
    pub(crate) overflow: OverflowPolicy,
    pub(crate) hooks: Vec<Arc<dyn Hooks>>,
    pub(crate) kinds: BTreeMap<String, StepKindFactory>,
    pub(crate) workflows: BTreeMap<String, Workflow>,
    blocking: OnceLock<Result<BgRuntime, String>>,
}

/// Runs workflows. Cheap to clone (one `Arc`), `Send + Sync`: one engine serves many
/// concurrent runs from many threads.
///
/// ```
/// use flowloom_engine::prelude::*;
/// # use flowloom_core::{LlmError, LlmRequest, LlmResponse, provider::{self, AsyncProvider}};
/// # struct Echo;
/// # impl AsyncProvider for Echo {
/// #     fn name(&self) -> &str { "echo" }
/// #     async fn complete(&self, r: LlmRequest) -> Result<LlmResponse, LlmError> {
/// #         let p = r.prompt().unwrap_or_default().to_owned();
/// #         Ok(LlmResponse::text(p, r.model, "echo"))
/// #     }
/// # }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let engine = Engine::builder().provider("echo", provider::from_async(Echo)).build()?;
/// let wf = Workflow::builder("hello")
///     .llm("greet", "Say hello to {{ input }}")
///     .transform("shout", |ctx| Ok(ctx.output("greet")?.to_uppercase().into()))
///     .build()?;
/// let result = engine.run(&wf, "Ada").await?;
/// assert_eq!(result.output_text(), Some("SAY HELLO TO ADA"));
/// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct Engine(pub(crate) Arc<EngineInner>);

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("providers", &self.provider_names())
            .field("embedding_providers", &self.embedding_provider_names())
            .field("default_provider", &self.default_provider_name())
            .field("workflows", &self.0.workflows.keys().collect::<Vec<_>>())
            .field("step_kinds", &self.0.kinds.keys().collect::<Vec<_>>())
            .field("max_concurrent_steps", &self.0.max_steps)
            .field("max_runs_in_flight", &self.0.max_runs)
            .finish()
    }
}

/// Builds an [`Engine`].
pub struct EngineBuilder {
    providers: Vec<(String, BoxLlmService)>,
    embedders: Vec<(String, BoxEmbeddingService)>,
    layers: Vec<LayerFn>,
    default_provider: Option<String>,
    default_embedder: Option<String>,
    config: FrameworkConfig,
    max_steps: usize,
    max_runs: usize,
    overflow: OverflowPolicy,
    hooks: Vec<Arc<dyn Hooks>>,
    kinds: Vec<(String, StepKindFactory)>,
    workflows: Vec<Workflow>,
    stack: StackChoice,
}

enum StackChoice {
    /// Retry per the configuration's `max_retry_attempts` and `retry_backoff_factor`.
    Default,
    /// The user's stack.
    Custom(ProviderStack),
    /// Nothing.
    None,
}

impl fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineBuilder")
            .field(
                "providers",
                &self.providers.iter().map(|p| &p.0).collect::<Vec<_>>(),
            )
            .field("config", &self.config)
            .finish()
    }
}

impl Default for EngineBuilder {
    fn default() -> Self {
        Self {
            providers: Vec::new(),
            embedders: Vec::new(),
            layers: Vec::new(),
            default_provider: None,
            default_embedder: None,
            config: FrameworkConfig::default(),
            max_steps: DEFAULT_MAX_CONCURRENT_STEPS,
            max_runs: DEFAULT_MAX_RUNS_IN_FLIGHT,
            overflow: OverflowPolicy::Wait,
            hooks: Vec::new(),
            kinds: Vec::new(),
            workflows: Vec::new(),
            stack: StackChoice::Default,
        }
    }
}

impl EngineBuilder {
    /// Registers a chat provider under `name`: any service of the provider contract (the
    /// built-in providers are registered exactly so). Per-provider middleware goes around the
    /// service before it is registered (`ServiceBuilder::new().layer(..).service(provider)`).
    #[must_use]
    pub fn provider<S: LlmService>(mut self, name: impl Into<String>, service: S) -> Self {
        self.providers.push((name.into(), boxed(service)));
        self
    }

    /// Registers an embedding provider under `name`.
    #[must_use]
    pub fn embedding_provider<S: EmbeddingService>(
        mut self,
        name: impl Into<String>,
        service: S,
    ) -> Self {
        self.embedders.push((name.into(), boxed_embedding(service)));
        self
    }

    /// Wraps every chat provider with a `tower` layer (applied at `build`, outside the
    /// provider stack). Layers added first are outermost, as with `ServiceBuilder`.
    #[must_use]
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: tower::Layer<BoxLlmService> + Send + Sync + 'static,
        L::Service: LlmService,
    {
        self.layers.push(Box::new(move |s| boxed(layer.layer(s))));
        self
    }

    /// Replaces the default middleware stack put around every provider (by default: a
    /// [`RetryLayer`] with the configuration's `max_retry_attempts` and
    /// `retry_backoff_factor`) with `stack`.
    #[must_use]
    pub fn provider_stack(mut self, stack: ProviderStack) -> Self {
        self.stack = StackChoice::Custom(stack);
        self
    }

    /// Puts no middleware stack around providers (for providers that bring their own, and
    /// for measuring the engine alone). `.layer(..)` layers still apply.
    #[must_use]
    pub fn no_default_stack(mut self) -> Self {
        self.stack = StackChoice::None;
        self
    }

    /// The provider of model steps that name none. Without it, an engine with exactly one
    /// provider uses that one.
    #[must_use]
    pub fn default_provider(mut self, name: impl Into<String>) -> Self {
        self.default_provider = Some(name.into());
        self
    }

    /// The embedding provider used when none is named.
    #[must_use]
    pub fn default_embedding_provider(mut self, name: impl Into<String>) -> Self {
        self.default_embedder = Some(name.into());
        self
    }

    /// The configuration (validated at `build`). Its defaults apply to every model request.
    #[must_use]
    pub fn config(mut self, config: FrameworkConfig) -> Self {
        self.config = config;
        self
    }

    /// The most steps one run runs at once (default 32).
    #[must_use]
    pub fn max_concurrent_steps(mut self, n: usize) -> Self {
        self.max_steps = n;
        self
    }

    /// The most runs in flight on this engine (default 10,000), and what happens past it:
    /// [`OverflowPolicy::Wait`] makes a new run wait for a slot (its timeout counts the wait;
    /// a freed slot wakes one waiting run, though a run arriving then may take it first),
    /// [`OverflowPolicy::Reject`] refuses it with [`RunError::AtCapacity`].
    #[must_use]
    pub fn max_runs_in_flight(mut self, n: usize, policy: OverflowPolicy) -> Self {
        self.max_runs = n;
        self.overflow = policy;
        self
    }

    /// Adds lifecycle hooks.
    #[must_use]
    pub fn hook(mut self, hooks: impl Hooks) -> Self {
        self.hooks.push(Arc::new(hooks));
        self
    }

    /// Registers a custom step kind: `factory` makes a plugin from a step's parameters
    /// ([`Step::kind`](crate::Step::kind), and YAML steps of that kind).
    #[must_use]
    pub fn step_kind<F>(mut self, kind: impl Into<String>, factory: F) -> Self
    where
        F: Fn(&Value) -> Result<Arc<dyn StepPlugin>, BoxError> + Send + Sync + 'static,
    {
        self.kinds.push((kind.into(), Arc::new(factory)));
        self
    }

    /// Registers a workflow so other workflows can call it by name.
    #[must_use]
    pub fn workflow(mut self, workflow: Workflow) -> Self {
        self.workflows.push(workflow);
        self
    }

    /// Builds the engine: validates the configuration and the settings. An engine may have no
    /// provider; running a workflow that calls a model then fails before it starts, saying so.
    pub fn build(self) -> Result<Engine, BuildError> {
        self.config.validate().map_err(BuildError::Config)?;
        if self.max_steps == 0 {
            return Err(BuildError::InvalidSetting {
                setting: "max_concurrent_steps",
                value: "0".to_owned(),
                expected: "at least 1",
            });
        }
        if self.max_runs == 0 {
            return Err(BuildError::InvalidSetting {
                setting: "max_runs_in_flight",
                value: self.max_runs.to_string(),
                expected: "at least 1",
            });
        }
        let stack = match self.stack {
            StackChoice::Default => Some(
                ProviderStack::new().retry(RetryLayer::new(
                    RetryPolicy::from_config(&self.config)
                        .map_err(|e| BuildError::Middleware(e.to_string()))?,
                )),
            ),
            StackChoice::Custom(s) => Some(s),
            StackChoice::None => None,
        };
        let mut providers = BTreeMap::new();
        for (name, mut svc) in self.providers {
            if let Some(stack) = &stack {
                svc = stack.service(svc);
            }
            for l in self.layers.iter().rev() {
                svc = l(svc);
            }
            let entry = (Arc::from(name.as_str()), svc);
            if providers.insert(name.clone(), entry).is_some() {
                return Err(BuildError::Duplicate {
                    what: "provider",
                    name,
                });
            }
        }
        let mut embedders = BTreeMap::new();
        for (name, svc) in self.embedders {
            let entry = (Arc::from(name.as_str()), svc);
            if embedders.insert(name.clone(), entry).is_some() {
                return Err(BuildError::Duplicate {
                    what: "embedding provider",
                    name,
                });
            }
        }
        fn list<V>(m: &BTreeMap<String, V>) -> String {
            if m.is_empty() {
                "none".to_owned()
            } else {
                m.keys().cloned().collect::<Vec<_>>().join(", ")
            }
        }
        let default_provider = match self.default_provider {
            Some(d) if !providers.contains_key(&d) => {
                return Err(BuildError::UnknownDefaultProvider {
                    name: d,
                    registered: list(&providers),
                });
            }
            Some(d) => Some(d),
            None if providers.len() == 1 => providers.keys().next().cloned(),
            None => None,
        };
        let default_embedder = match self.default_embedder {
            Some(d) if !embedders.contains_key(&d) => {
                return Err(BuildError::UnknownDefaultProvider {
                    name: d,
                    registered: list(&embedders),
                });
            }
            Some(d) => Some(d),
            None if embedders.len() == 1 => embedders.keys().next().cloned(),
            None => None,
        };
        let mut kinds = BTreeMap::new();
        for (k, f) in self.kinds {
            if kinds.insert(k.clone(), f).is_some() {
                return Err(BuildError::Duplicate {
                    what: "step kind",
                    name: k,
                });
            }
        }
        let mut workflows = BTreeMap::new();
        for w in self.workflows {
            let name = w.name().to_owned();
            if workflows.insert(name.clone(), w).is_some() {
                return Err(BuildError::Duplicate {
                    what: "workflow",
                    name,
                });
            }
        }
        Ok(Engine(Arc::new(EngineInner {
            providers,
            embedders,
            default_provider,
            default_embedder,
            config: self.config,
            max_steps: self.max_steps,
            runs: crate::limit::RunLimiter::new(self.max_runs),
            max_runs: self.max_runs,
            overflow: self.overflow,
            hooks: self.hooks,
            kinds,
            workflows,
            blocking: OnceLock::new(),
        })))
    }
}

impl Engine {
    /// Starts building an engine with the default configuration.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// An engine with one provider, registered under `name`, and the default configuration:
    /// `Engine::builder().provider(name, service).build()` in one call.
    ///
    /// ```
    /// # use flowloom_engine::Engine;
    /// # use flowloom_core::{LlmRequest, LlmResponse, LlmError};
    /// let echo = tower::service_fn(|r: LlmRequest| async move {
    ///     Ok::<_, LlmError>(LlmResponse::text("hi", r.model, "echo"))
    /// });
    /// let engine = Engine::with_provider("echo", echo).unwrap();
    /// assert_eq!(engine.provider_names(), ["echo"]);
    /// ```
    pub fn with_provider<S: LlmService>(
        name: impl Into<String>,
        service: S,
    ) -> Result<Engine, BuildError> {
        Engine::builder().provider(name, service).build()
    }

    /// Starts building an engine configured from `FLOWLOOM_*` environment variables over the
    /// YAML file named by `FLOWLOOM_CONFIG` (if set) over the defaults. Every bad value is
    /// reported with what was found and how to fix it.
    pub fn from_env() -> Result<EngineBuilder, ConfigError> {
        let config = ConfigLoader::from_process_env().load()?;
        Ok(EngineBuilder::default().config(config))
    }

    /// The configuration.
    pub fn config(&self) -> &FrameworkConfig {
        &self.0.config
    }

    /// The registered chat provider names, sorted.
    pub fn provider_names(&self) -> Vec<&str> {
        self.0.providers.keys().map(String::as_str).collect()
    }

    /// The registered embedding provider names, sorted.
    pub fn embedding_provider_names(&self) -> Vec<&str> {
        self.0.embedders.keys().map(String::as_str).collect()
    }

    /// The provider used by model steps that name none, if there is one.
    pub fn default_provider_name(&self) -> Option<&str> {
        self.0.default_provider.as_deref()
    }

    /// The registered workflow names, sorted.
    pub fn workflow_names(&self) -> Vec<&str> {
        self.0.workflows.keys().map(String::as_str).collect()
    }

    /// A registered workflow.
    pub fn workflow(&self, name: &str) -> Option<&Workflow> {
        self.0.workflows.get(name)
    }

    /// The registered step kinds, sorted.
    pub fn step_kind_names(&self) -> Vec<&str> {
        self.0.kinds.keys().map(String::as_str).collect()
    }

    /// Makes a plugin of a registered step kind from parameters (what a run does for
    /// [`Step::kind`](crate::Step::kind) steps).
    pub fn make_step_plugin(
        &self,
        kind: &str,
        params: &Value,
    ) -> Option<Result<Arc<dyn StepPlugin>, BoxError>> {
        self.0.kinds.get(kind).map(|f| f(params))
    }

    /// A registered chat provider (with its layers), by name.
    pub fn provider(&self, name: &str) -> Option<(Arc<str>, BoxLlmService)> {
        self.0
            .providers
            .get(name)
            .map(|(n, s)| (Arc::clone(n), s.clone()))
    }

    pub(crate) fn embedding_provider(
        &self,
        name: Option<&str>,
    ) -> Result<(Arc<str>, BoxEmbeddingService), LlmError> {
        let name = name
            .map(str::to_owned)
            .or_else(|| self.0.default_embedder.clone())
            .ok_or_else(|| LlmError::Unavailable {
                provider: "<none>".to_owned(),
                message: format!(
                    "no embedding provider named and no default (registered: {}); \
                     register one with `.embedding_provider(..)`",
                    self.embedding_provider_names().join(", ")
                ),
            })?;
        self.0
            .embedders
            .get(&name)
            .map(|(n, s)| (Arc::clone(n), s.clone()))
            .ok_or_else(|| LlmError::Unavailable {
                provider: name.clone(),
                message: format!(
                    "embedding provider {name:?} is not registered (registered: {})",
                    self.embedding_provider_names().join(", ")
                ),
            })
    }

    /// Runs a workflow with `input` and waits for it. `Ok` when it completed; a failed,
    /// timed-out or cancelled run is an `Err` carrying its result ([`RunError::result`]).
    pub async fn run(
        &self,
        workflow: &Workflow,
        input: impl Into<Value>,
    ) -> Result<WorkflowResult, RunError> {
        exec::run_top(self, workflow, RunOptions::new(input)).await
    }

    /// Runs a workflow with options (variables, correlation id, timeout, cancellation).
    pub async fn run_with(
        &self,
        workflow: &Workflow,
        options: RunOptions,
    ) -> Result<WorkflowResult, RunError> {
        exec::run_top(self, workflow, options).await
    }

    /// Runs a workflow registered by name.
    pub async fn run_named(
        &self,
        name: &str,
        options: RunOptions,
    ) -> Result<WorkflowResult, RunError> {
        let wf = self
            .0
            .workflows
            .get(name)
            .ok_or_else(|| RunError::UnknownWorkflow {
                workflow: "<caller>".to_owned(),
                step: "<none>".to_owned(),
                called: name.to_owned(),
                registered: self.workflow_names().join(", "),
            })?;
        exec::run_top(self, wf, options).await
    }

    /// Starts a run and returns at once with a handle: id, status, cancel, and the result,
    /// kept until taken. Uses the current tokio runtime, or the engine's own background
    /// runtime when called outside one. Dropping the handle does not stop the run.
    pub fn start(&self, workflow: &Workflow, input: impl Into<Value>) -> RunHandle {
        self.start_with(workflow, RunOptions::new(input))
    }

    /// [`Engine::start`] with options.
    pub fn start_with(&self, workflow: &Workflow, options: RunOptions) -> RunHandle {
        let handle = match tokio::runtime::Handle::try_current() {
            Ok(h) => Ok(h),
            Err(_) => self.background().map(|rt| rt.handle().clone()),
        };
        RunHandle::spawn(self.clone(), workflow.clone(), options, handle)
    }

    /// Runs a workflow from code without an async runtime and waits for it, at most
    /// `timeout` (none = until it ends). A timeout returns [`RunError::Timeout`] with the
    /// steps completed so far, their outputs and metrics. Callable from many threads at once;
    /// runs on a runtime the engine owns on background threads (started on first use).
    /// Calling it from inside an async runtime is an error ([`RunError::BlockingInAsync`]).
    pub fn run_blocking(
        &self,
        workflow: &Workflow,
        input: impl Into<Value>,
        timeout: Option<Duration>,
    ) -> Result<WorkflowResult, RunError> {
        let mut opts = RunOptions::new(input);
        opts.timeout = timeout;
        self.run_blocking_with(workflow, opts)
    }

    /// [`Engine::run_blocking`] with options.
    pub fn run_blocking_with(
        &self,
        workflow: &Workflow,
        options: RunOptions,
    ) -> Result<WorkflowResult, RunError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(RunError::BlockingInAsync);
        }
        let rt = self.background()?;
        rt.handle().block_on(exec::run_top(self, workflow, options))
    }

    fn background(&self) -> Result<&tokio::runtime::Runtime, RunError> {
        match self.0.blocking.get_or_init(BgRuntime::new) {
            Ok(rt) => {
                rt.0.as_ref()
                    .ok_or_else(|| RunError::Runtime("shut down".to_owned()))
            }
            Err(e) => Err(RunError::Runtime(e.clone())),
        }
    }

    /// Runs in flight now.
    pub fn runs_in_flight(&self) -> usize {
        self.0.runs.in_flight()
    }
}

/// A runtime on background threads, shut down without blocking when the engine is dropped
/// (even from inside another runtime).
struct BgRuntime(Option<tokio::runtime::Runtime>);

impl BgRuntime {
    fn new() -> Result<Self, String> {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("flowloom-engine")
            .enable_all()
            .build()
            .map(|rt| BgRuntime(Some(rt)))
            .map_err(|e| e.to_string())
    }
}

impl Drop for BgRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}
