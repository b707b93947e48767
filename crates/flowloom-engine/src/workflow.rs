//! Workflow definitions: [`Workflow`], built by [`WorkflowBuilder`] from [`Step`]s, and
//! validated before anything runs.
//!
//! # Ordering
//! A step without `needs` runs after the step declared before it (a plain sequence). `needs`
//! replaces that with explicit dependencies; `needs([])` starts the step at once. A step starts
//! the moment its own dependencies finish; independent branches run concurrently.
//!
//! # Skipping
//! A step whose `when` condition is false is `SKIPPED`. The rule for the steps after it:
//! - a step that lists a skipped (or failed, non-critical) step in its `needs` is `SKIPPED`
//!   too, unless it has a `when` condition of its own — then that condition alone decides, and
//!   it can test `{{ fix is defined }}`;
//! - a step that follows it only by declaration order (no `needs`) still runs: declaration
//!   order is ordering, not a data dependency. A template that uses the skipped step's output
//!   fails with an undefined-variable error, unless it guards it (`{% if fix is defined %}`).
//!
//! # Output
//! A run's output is the output of the last step, in declaration order, that completed (so a
//! skipped final step does not erase the result).
//!
//! # Failure
//! A critical step (the default) that fails stops the run: steps in flight finish, nothing
//! new starts, and the run is `FAILED`, its error naming the step (and the provider and cause
//! for model steps). A step marked `critical(false)` fails alone and the run goes on.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use flowloom_core::{BoxError, StepContext};
use minijinja::Environment;
use serde_json::{Map, Value};

use crate::error::{WorkflowError, WorkflowIssue};
use crate::plugin::StepPlugin;
use crate::template::{
    self, EnvVars, Expr, RESERVED, Ref, Tpl, expression_source, has_markup, is_builtin_global,
    is_single_expression,
};

/// A transform: a Rust function over the step's context, returning the step's output.
pub type TransformFn = Arc<dyn Fn(&StepContext) -> Result<Value, BoxError> + Send + Sync>;

/// Model settings a step or workflow may set; unset values are inherited (step, then workflow,
/// then the engine's [`FrameworkConfig`](flowloom_core::FrameworkConfig)).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepSettings {
    /// Provider name.
    pub provider: Option<String>,
    /// Model name.
    pub model: Option<String>,
    /// Temperature, 0.0–2.0.
    pub temperature: Option<f64>,
    /// Completion-token limit, 1–128000.
    pub max_tokens: Option<u32>,
    /// Time limit for the step.
    pub timeout: Option<Duration>,
}

impl StepSettings {
    fn check(&self, step: &str, issues: &mut Vec<WorkflowIssue>) {
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            issues.push(WorkflowIssue::InvalidParameter {
                step: step.to_owned(),
                message: format!(
                    "temperature {t} is out of range; expected a number from 0.0 to 2.0, e.g. 0.7"
                ),
            });
        }
        if let Some(m) = self.max_tokens
            && !(1..=flowloom_core::validation::MAX_TOKENS_LIMIT).contains(&m)
        {
            issues.push(WorkflowIssue::InvalidParameter {
                step: step.to_owned(),
                message: format!(
                    "max_tokens {m} is out of range; expected an integer from 1 to 128000"
                ),
            });
        }
        if let Some(t) = self.timeout
            && t.is_zero()
        {
            issues.push(WorkflowIssue::InvalidParameter {
                step: step.to_owned(),
                message: "timeout is zero; expected a duration > 0, e.g. 30s".to_owned(),
            });
        }
        for (what, v) in [("provider", &self.provider), ("model", &self.model)] {
            if let Some(v) = v
                && v.trim().is_empty()
            {
                issues.push(WorkflowIssue::InvalidParameter {
                    step: step.to_owned(),
                    message: format!("{what} is empty; expected a name"),
                });
            }
        }
    }

    /// `self` with unset values taken from `parent`.
    pub(crate) fn inherit(&self, parent: &StepSettings) -> StepSettings {
        StepSettings {
            provider: self.provider.clone().or_else(|| parent.provider.clone()),
            model: self.model.clone().or_else(|| parent.model.clone()),
            temperature: self.temperature.or(parent.temperature),
            max_tokens: self.max_tokens.or(parent.max_tokens),
            timeout: self.timeout.or(parent.timeout),
        }
    }
}

/// The workflow a sub-workflow step calls: one registered with the engine by name, or a
/// workflow value.
#[derive(Clone)]
pub enum WorkflowRef {
    /// A workflow registered with [`EngineBuilder::workflow`](crate::EngineBuilder::workflow).
    Named(String),
    /// This workflow.
    Inline(Workflow),
}

impl fmt::Debug for WorkflowRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkflowRef::Named(n) => write!(f, "Named({n:?})"),
            WorkflowRef::Inline(w) => write!(f, "Inline({:?})", w.name()),
        }
    }
}

impl WorkflowRef {
    /// The called workflow's name.
    pub fn name(&self) -> &str {
        match self {
            WorkflowRef::Named(n) => n,
            WorkflowRef::Inline(w) => w.name(),
        }
    }
}

impl From<&str> for WorkflowRef {
    fn from(s: &str) -> Self {
        WorkflowRef::Named(s.to_owned())
    }
}
impl From<String> for WorkflowRef {
    fn from(s: String) -> Self {
        WorkflowRef::Named(s)
    }
}
impl From<&Workflow> for WorkflowRef {
    fn from(w: &Workflow) -> Self {
        WorkflowRef::Inline(w.clone())
    }
}
impl From<Workflow> for WorkflowRef {
    fn from(w: Workflow) -> Self {
        WorkflowRef::Inline(w)
    }
}

#[derive(Clone)]
enum StepKindSpec {
    Llm {
        prompt: String,
        system: Option<String>,
    },
    Transform(TransformFn),
    Call {
        target: WorkflowRef,
        with: Map<String, Value>,
    },
    Plugin(Arc<dyn StepPlugin>),
    Kind {
        kind: String,
        params: Value,
    },
}

/// One step of a workflow, with its options. Made by [`Step::llm`], [`Step::transform`],
/// [`Step::workflow`], [`Step::plugin`] or [`Step::kind`], added with
/// [`WorkflowBuilder::step`].
///
/// ```
/// use flowloom_engine::Step;
/// let s = Step::llm("fix", "Fix this: {{ draft }}")
///     .system("You are an editor.")
///     .needs(["check", "draft"])
///     .when("{{ check == 'NO' }}")
///     .temperature(0.2)
///     .critical(false);
/// assert_eq!(s.name(), "fix");
/// ```
#[derive(Clone)]
pub struct Step {
    name: String,
    kind: StepKindSpec,
    needs: Option<Vec<String>>,
    when: Option<String>,
    critical: bool,
    settings: StepSettings,
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Step")
            .field("name", &self.name)
            .field("kind", &self.kind_label())
            .field("needs", &self.needs)
            .field("when", &self.when)
            .field("critical", &self.critical)
            .field("settings", &self.settings)
            .finish()
    }
}

impl Step {
    fn new(name: impl Into<String>, kind: StepKindSpec) -> Self {
        Self {
            name: name.into(),
            kind,
            needs: None,
            when: None,
            critical: true,
            settings: StepSettings::default(),
        }
    }

    /// A model step: renders `prompt` (a template) and sends it to the step's provider. The
    /// step's output is the answer's text.
    pub fn llm(name: impl Into<String>, prompt: impl Into<String>) -> Self {
        Self::new(
            name,
            StepKindSpec::Llm {
                prompt: prompt.into(),
                system: None,
            },
        )
    }

    /// A transform: `f` gets the step's context (input, variables, earlier outputs) and
    /// returns the step's output. An error or a panic fails this step only.
    pub fn transform<F>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn(&StepContext) -> Result<Value, BoxError> + Send + Sync + 'static,
    {
        Self::new(name, StepKindSpec::Transform(Arc::new(f)))
    }

    /// A sub-workflow call. Every `with` entry becomes a variable of the called workflow
    /// (string values are templates, rendered in this workflow first; a string that is one
    /// `{{ expression }}` keeps the expression's type). An `input` entry, when given, becomes
    /// the called workflow's input; otherwise it gets this workflow's input. The step's output
    /// is the called workflow's output.
    pub fn workflow(name: impl Into<String>, target: impl Into<WorkflowRef>) -> Self {
        Self::new(
            name,
            StepKindSpec::Call {
                target: target.into(),
                with: Map::new(),
            },
        )
    }

    /// A custom step: `plugin` runs with the lifecycle init → execute → cleanup.
    pub fn plugin(name: impl Into<String>, plugin: impl StepPlugin) -> Self {
        Self::new(name, StepKindSpec::Plugin(Arc::new(plugin)))
    }

    /// A custom step from an already shared plugin.
    pub fn plugin_arc(name: impl Into<String>, plugin: Arc<dyn StepPlugin>) -> Self {
        Self::new(name, StepKindSpec::Plugin(plugin))
    }

    /// A step of a kind registered with
    /// [`EngineBuilder::step_kind`](crate::EngineBuilder::step_kind); the kind's factory makes
    /// the plugin from `params` when a run starts (an unknown kind fails the run before it
    /// starts).
    pub fn kind(name: impl Into<String>, kind: impl Into<String>, params: Value) -> Self {
        Self::new(
            name,
            StepKindSpec::Kind {
                kind: kind.into(),
                params,
            },
        )
    }

    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn kind_label(&self) -> String {
        match &self.kind {
            StepKindSpec::Llm { .. } => "llm".to_owned(),
            StepKindSpec::Transform(_) => "transform".to_owned(),
            StepKindSpec::Call { .. } => "workflow".to_owned(),
            StepKindSpec::Plugin(p) => format!("plugin:{}", p.name()),
            StepKindSpec::Kind { kind, .. } => format!("plugin:{kind}"),
        }
    }

    /// The steps this one waits for (replacing "after the step declared before it");
    /// `needs([])` starts it at once.
    #[must_use]
    pub fn needs<I, S>(mut self, steps: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.needs = Some(steps.into_iter().map(Into::into).collect());
        self
    }

    /// Runs the step only when `condition` is true; otherwise it is `SKIPPED`. Accepts
    /// `"{{ check == 'YES' }}"` and the bare `"check == 'YES'"`.
    #[must_use]
    pub fn when(mut self, condition: impl Into<String>) -> Self {
        self.when = Some(condition.into());
        self
    }

    /// `false` lets the run go on when this step fails (`on_failure: continue`); steps that
    /// `needs` it are then skipped. Steps are critical by default.
    #[must_use]
    pub fn critical(mut self, critical: bool) -> Self {
        self.critical = critical;
        self
    }

    /// A time limit for the step; past it the step fails.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = Some(timeout);
        self
    }

    /// The provider for this step's model calls.
    #[must_use]
    pub fn provider(mut self, provider: impl Into<String>) -> Self {
        self.settings.provider = Some(provider.into());
        self
    }

    /// The model for this step's calls.
    #[must_use]
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.settings.model = Some(model.into());
        self
    }

    /// The temperature for this step's calls.
    #[must_use]
    pub fn temperature(mut self, temperature: f64) -> Self {
        self.settings.temperature = Some(temperature);
        self
    }

    /// The completion-token limit for this step's calls.
    #[must_use]
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.settings.max_tokens = Some(max_tokens);
        self
    }

    /// All model settings at once.
    #[must_use]
    pub fn settings(mut self, settings: StepSettings) -> Self {
        self.settings = settings;
        self
    }

    /// A system prompt (a template) for a model step; ignored by other kinds.
    #[must_use]
    pub fn system(mut self, system: impl Into<String>) -> Self {
        if let StepKindSpec::Llm { system: s, .. } = &mut self.kind {
            *s = Some(system.into());
        }
        self
    }

    /// A variable passed to a sub-workflow call; ignored by other kinds.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        if let StepKindSpec::Call { with, .. } = &mut self.kind {
            with.insert(key.into(), value.into());
        }
        self
    }

    /// Every variable passed to a sub-workflow call; ignored by other kinds.
    #[must_use]
    pub fn with_all(mut self, vars: Map<String, Value>) -> Self {
        if let StepKindSpec::Call { with, .. } = &mut self.kind {
            with.extend(vars);
        }
        self
    }
}

/// A value passed to a sub-workflow, compiled.
#[derive(Debug, Clone)]
pub(crate) enum WithTpl {
    Literal(Value),
    Text(Tpl),
    Expr(Expr),
    Array(Vec<WithTpl>),
    Object(Vec<(String, WithTpl)>),
}

pub(crate) enum StepImpl {
    Llm { prompt: Tpl, system: Option<Tpl> },
    Transform(TransformFn),
    Call { target: WorkflowRef, with: WithTpl },
    Plugin(Arc<dyn StepPlugin>),
    Kind { kind: String, params: Value },
}

/// A step, compiled: indices instead of names.
pub(crate) struct StepDef {
    pub(crate) name: Arc<str>,
    pub(crate) kind_label: Arc<str>,
    pub(crate) imp: StepImpl,
    pub(crate) deps: Box<[u32]>,
    pub(crate) explicit_needs: bool,
    pub(crate) dependents: Box<[u32]>,
    pub(crate) when: Option<Expr>,
    pub(crate) critical: bool,
    pub(crate) settings: StepSettings,
}

pub(crate) struct WorkflowInner {
    pub(crate) name: Arc<str>,
    pub(crate) description: Option<String>,
    pub(crate) steps: Box<[StepDef]>,
    pub(crate) names: Box<[Arc<str>]>,
    pub(crate) index: HashMap<Arc<str>, u32>,
    pub(crate) env: Environment<'static>,
    pub(crate) env_vars: Arc<EnvVars>,
    pub(crate) defaults: StepSettings,
    pub(crate) vars: Vec<(String, Option<Value>)>,
    pub(crate) roots: Box<[u32]>,
    pub(crate) plugin_templates: HashMap<String, Tpl>,
    pub(crate) has_kinds: bool,
    /// Some step can observe the run's cancellation token (plugins, sub-workflows).
    pub(crate) observes_cancel: bool,
}

/// A validated workflow: cheap to clone (one `Arc`), `Send + Sync`, runnable on any number of
/// engines and runs at once.
///
/// ```
/// use flowloom_engine::{Step, Workflow};
/// let wf = Workflow::builder("summarize")
///     .llm("draft", "Summarize: {{ input }}")
///     .llm("refine", "Tighten this: {{ draft }}")
///     .transform("shout", |ctx| Ok(ctx.output("refine")?.to_uppercase().into()))
///     .build()
///     .unwrap();
/// assert_eq!(wf.step_names().collect::<Vec<_>>(), ["draft", "refine", "shout"]);
///
/// let err = Workflow::builder("loop")
///     .step(Step::llm("a", "{{ c }}").needs(["c"]))
///     .step(Step::llm("b", "{{ a }}").needs(["a"]))
///     .step(Step::llm("c", "{{ b }}").needs(["b"]))
///     .build()
///     .unwrap_err();
/// assert!(err.to_string().contains("a -> c -> b -> a"), "{err}");
/// ```
#[derive(Clone)]
pub struct Workflow(pub(crate) Arc<WorkflowInner>);

impl fmt::Debug for Workflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workflow")
            .field("name", &self.0.name)
            .field("steps", &self.0.names)
            .finish()
    }
}

impl Workflow {
    /// Starts a workflow definition.
    pub fn builder(name: impl Into<String>) -> WorkflowBuilder {
        WorkflowBuilder {
            name: name.into(),
            description: None,
            steps: Vec::new(),
            defaults: StepSettings::default(),
            vars: Vec::new(),
            open_vars: false,
            env: Map::new(),
        }
    }

    /// The workflow's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The description, where one was given.
    pub fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }

    /// The step names, in declaration order.
    pub fn step_names(&self) -> impl Iterator<Item = &str> {
        self.0.names.iter().map(|n| &**n)
    }

    /// The step kind of each step (`llm`, `transform`, `workflow`, `plugin:<name>`), in
    /// declaration order.
    pub fn step_kinds(&self) -> impl Iterator<Item = &str> {
        self.0.steps.iter().map(|s| &*s.kind_label)
    }

    /// The declared workflow variables and their defaults (`None` = must be given).
    pub fn variables(&self) -> &[(String, Option<Value>)] {
        &self.0.vars
    }

    /// The names of the steps each step waits for, in declaration order.
    pub fn dependencies(&self, step: &str) -> Option<Vec<&str>> {
        let i = *self.0.index.get(step)?;
        Some(
            self.0.steps[i as usize]
                .deps
                .iter()
                .map(|d| &*self.0.names[*d as usize])
                .collect(),
        )
    }
}

/// Builds a [`Workflow`]; [`WorkflowBuilder::build`] validates everything and reports every
/// problem at once.
#[derive(Clone)]
pub struct WorkflowBuilder {
    name: String,
    description: Option<String>,
    steps: Vec<Step>,
    defaults: StepSettings,
    vars: Vec<(String, Option<Value>)>,
    open_vars: bool,
    env: Map<String, Value>,
}

impl fmt::Debug for WorkflowBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkflowBuilder")
            .field("name", &self.name)
            .field("steps", &self.steps)
            .finish()
    }
}

impl WorkflowBuilder {
    /// Adds a model step with a prompt template (see [`Step::llm`]).
    #[must_use]
    pub fn llm(self, name: impl Into<String>, prompt: impl Into<String>) -> Self {
        self.step(Step::llm(name, prompt))
    }

    /// Adds a model step built with options (see [`Step::llm`]).
    #[must_use]
    pub fn llm_step(self, step: Step) -> Self {
        self.step(step)
    }

    /// Adds a transform step (see [`Step::transform`]).
    #[must_use]
    pub fn transform<F>(self, name: impl Into<String>, f: F) -> Self
    where
        F: Fn(&StepContext) -> Result<Value, BoxError> + Send + Sync + 'static,
    {
        self.step(Step::transform(name, f))
    }

    /// Adds a sub-workflow call passing `with` as the called workflow's variables (see
    /// [`Step::workflow`]).
    #[must_use]
    pub fn workflow_call(
        self,
        name: impl Into<String>,
        target: impl Into<WorkflowRef>,
        with: Map<String, Value>,
    ) -> Self {
        self.step(Step::workflow(name, target).with_all(with))
    }

    /// Adds a custom plugin step (see [`Step::plugin`]).
    #[must_use]
    pub fn plugin(self, name: impl Into<String>, plugin: impl StepPlugin) -> Self {
        self.step(Step::plugin(name, plugin))
    }

    /// Adds a step.
    #[must_use]
    pub fn step(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    /// A description.
    #[must_use]
    pub fn description(mut self, d: impl Into<String>) -> Self {
        self.description = Some(d.into());
        self
    }

    /// Declares a workflow variable that every run must provide (through
    /// [`RunOptions::var`](crate::RunOptions::var) or a sub-workflow call's `with`).
    #[must_use]
    pub fn var(mut self, name: impl Into<String>) -> Self {
        self.vars.push((name.into(), None));
        self
    }

    /// Declares a workflow variable with a default value.
    #[must_use]
    pub fn var_default(mut self, name: impl Into<String>, default: impl Into<Value>) -> Self {
        self.vars.push((name.into(), Some(default.into())));
        self
    }

    /// Accepts template variables that are not declared (they must then be passed at run
    /// time; a missing one fails its step with an undefined-variable error). For definitions
    /// whose variables are only known to their callers, such as YAML workflows called with
    /// `with`.
    #[must_use]
    pub fn open_variables(mut self, open: bool) -> Self {
        self.open_vars = open;
        self
    }

    /// An `env` value for templates (`{{ env.NAME }}`); names not set here are read from the
    /// process environment.
    #[must_use]
    pub fn env(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.env.insert(name.into(), value.into());
        self
    }

    /// The default provider of this workflow's model steps.
    #[must_use]
    pub fn provider(mut self, provider: impl Into<String>) -> Self {
        self.defaults.provider = Some(provider.into());
        self
    }

    /// The default model of this workflow's model steps.
    #[must_use]
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.defaults.model = Some(model.into());
        self
    }

    /// The default temperature of this workflow's model steps.
    #[must_use]
    pub fn temperature(mut self, t: f64) -> Self {
        self.defaults.temperature = Some(t);
        self
    }

    /// The default completion-token limit of this workflow's model steps.
    #[must_use]
    pub fn max_tokens(mut self, m: u32) -> Self {
        self.defaults.max_tokens = Some(m);
        self
    }

    /// The default time limit of each step.
    #[must_use]
    pub fn step_timeout(mut self, t: Duration) -> Self {
        self.defaults.timeout = Some(t);
        self
    }

    /// Validates the definition: step names (unique, not reserved), `needs` (known, no
    /// cycles), templates and conditions (they parse; every variable they use is provided by
    /// the input, an earlier step this one runs after, `env`, `loop` or a declared variable),
    /// and parameters. Every problem is reported.
    pub fn build(self) -> Result<Workflow, WorkflowError> {
        let mut issues = Vec::new();
        let n = self.steps.len();
        if n == 0 {
            issues.push(WorkflowIssue::Empty);
        }
        if n > u32::MAX as usize {
            issues.push(WorkflowIssue::InvalidParameter {
                step: "<workflow>".to_owned(),
                message: "too many steps".to_owned(),
            });
            return Err(WorkflowError {
                workflow: self.name,
                issues,
            });
        }
        self.defaults.check("<workflow defaults>", &mut issues);

        // Names.
        let mut index: HashMap<Arc<str>, u32> = HashMap::with_capacity(n);
        let names: Vec<Arc<str>> = self
            .steps
            .iter()
            .map(|s| Arc::from(s.name.as_str()))
            .collect();
        for (i, name) in names.iter().enumerate() {
            if name.trim().is_empty() {
                issues.push(WorkflowIssue::BadName {
                    name: name.to_string(),
                    reason: "it is empty".to_owned(),
                });
            } else if RESERVED.contains(&&**name) {
                issues.push(WorkflowIssue::BadName {
                    name: name.to_string(),
                    reason: format!(
                        "`{name}` is a template variable of its own ({}); choose another name",
                        RESERVED.join(", ")
                    ),
                });
            }
            if index.insert(Arc::clone(name), i as u32).is_some() {
                issues.push(WorkflowIssue::DuplicateStep {
                    name: name.to_string(),
                });
            }
        }
        let declared: HashSet<&str> = self.vars.iter().map(|(n, _)| n.as_str()).collect();
        for (v, _) in &self.vars {
            if index.contains_key(v.as_str()) || RESERVED.contains(&v.as_str()) {
                issues.push(WorkflowIssue::BadName {
                    name: v.clone(),
                    reason: "a workflow variable cannot share its name with a step or a built-in variable".to_owned(),
                });
            }
        }

        // Dependencies.
        let known = names.iter().map(|n| &**n).collect::<Vec<_>>().join(", ");
        let mut deps: Vec<Vec<u32>> = Vec::with_capacity(n);
        for (i, s) in self.steps.iter().enumerate() {
            let d = match &s.needs {
                None => {
                    if i == 0 {
                        Vec::new()
                    } else {
                        vec![(i - 1) as u32]
                    }
                }
                Some(needs) => {
                    let mut d = Vec::new();
                    for need in needs {
                        match index.get(need.as_str()) {
                            Some(j) if *j as usize == i => issues.push(WorkflowIssue::Cycle {
                                path: vec![s.name.clone(), s.name.clone()],
                            }),
                            Some(j) => {
                                if !d.contains(j) {
                                    d.push(*j);
                                }
                            }
                            None => issues.push(WorkflowIssue::UnknownNeed {
                                step: s.name.clone(),
                                need: need.clone(),
                                known: known.clone(),
                            }),
                        }
                    }
                    d
                }
            };
            deps.push(d);
            s.settings.check(&s.name, &mut issues);
        }
        let order = match topo_order(&deps) {
            Ok(o) => o,
            Err(cycle) => {
                issues.push(WorkflowIssue::Cycle {
                    path: cycle
                        .iter()
                        .map(|i| names[*i as usize].to_string())
                        .collect(),
                });
                Vec::new()
            }
        };
        // Ancestors (transitive dependencies), as bit sets.
        let words = n.div_ceil(64);
        let mut anc = vec![vec![0u64; words]; n];
        for &i in &order {
            let i = i as usize;
            let mut set = vec![0u64; words];
            for &d in &deps[i] {
                let d = d as usize;
                set[d / 64] |= 1 << (d % 64);
                for (w, a) in set.iter_mut().zip(anc[d].iter()) {
                    *w |= *a;
                }
            }
            anc[i] = set;
        }
        let is_ancestor = |step: usize, of: usize| anc[step][of / 64] & (1 << (of % 64)) != 0;
        let acyclic = !order.is_empty() || n == 0;

        // Templates.
        let mut env = template::new_environment();
        let mut c = Compiler {
            env: &mut env,
            index: &index,
            declared: &declared,
            open_vars: self.open_vars,
            issues: &mut issues,
            acyclic,
            counter: 0,
        };
        let mut defs = Vec::with_capacity(n);
        let mut plugin_templates = HashMap::new();
        let mut has_kinds = false;
        for (i, s) in self.steps.iter().enumerate() {
            let ancestor = |j: u32| is_ancestor(i, j as usize);
            let imp = match &s.kind {
                StepKindSpec::Llm { prompt, system } => StepImpl::Llm {
                    prompt: c.text(i, &s.name, "prompt", prompt, &ancestor),
                    system: system
                        .as_ref()
                        .map(|sys| c.text(i, &s.name, "system prompt", sys, &ancestor)),
                },
                StepKindSpec::Transform(f) => StepImpl::Transform(Arc::clone(f)),
                StepKindSpec::Call { target, with } => StepImpl::Call {
                    target: target.clone(),
                    with: c.value(i, &s.name, "with", &Value::Object(with.clone()), &ancestor),
                },
                StepKindSpec::Plugin(p) => {
                    for src in p.templates() {
                        let tpl = c.text(i, &s.name, "plugin template", &src, &ancestor);
                        plugin_templates.insert(src, tpl);
                    }
                    StepImpl::Plugin(Arc::clone(p))
                }
                StepKindSpec::Kind { kind, params } => {
                    has_kinds = true;
                    StepImpl::Kind {
                        kind: kind.clone(),
                        params: params.clone(),
                    }
                }
            };
            let when = s
                .when
                .as_ref()
                .map(|w| c.condition(i, &s.name, w, &ancestor));
            defs.push(StepDef {
                name: Arc::clone(&names[i]),
                kind_label: Arc::from(s.kind_label()),
                imp,
                deps: deps[i].clone().into_boxed_slice(),
                explicit_needs: s.needs.is_some(),
                dependents: Box::new([]),
                when,
                critical: s.critical,
                settings: s.settings.clone(),
            });
        }
        if !issues.is_empty() {
            return Err(WorkflowError {
                workflow: self.name,
                issues,
            });
        }
        let mut dependents: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (i, d) in deps.iter().enumerate() {
            for &j in d {
                dependents[j as usize].push(i as u32);
            }
        }
        for (def, d) in defs.iter_mut().zip(dependents) {
            def.dependents = d.into_boxed_slice();
        }
        let observes_cancel = defs.iter().any(|d| {
            matches!(
                d.imp,
                StepImpl::Plugin(_) | StepImpl::Kind { .. } | StepImpl::Call { .. }
            )
        });
        let roots = (0..n as u32)
            .filter(|&i| deps[i as usize].is_empty())
            .collect::<Vec<_>>()
            .into_boxed_slice();
        Ok(Workflow(Arc::new(WorkflowInner {
            name: Arc::from(self.name.as_str()),
            description: self.description,
            steps: defs.into_boxed_slice(),
            names: names.into_boxed_slice(),
            index,
            env,
            env_vars: Arc::new(EnvVars { map: self.env }),
            defaults: self.defaults,
            vars: self.vars,
            roots,
            plugin_templates,
            has_kinds,
            observes_cancel,
        })))
    }
}

/// A topological order, or one cycle's path (first node repeated at the end).
fn topo_order(deps: &[Vec<u32>]) -> Result<Vec<u32>, Vec<u32>> {
    let n = deps.len();
    let mut indeg: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<u32>> = vec![Vec::new(); n];
    for (i, d) in deps.iter().enumerate() {
        for &j in d {
            dependents[j as usize].push(i as u32);
        }
    }
    let mut queue: Vec<u32> = (0..n as u32).filter(|&i| indeg[i as usize] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = queue.pop() {
        order.push(i);
        for &d in &dependents[i as usize] {
            indeg[d as usize] -= 1;
            if indeg[d as usize] == 0 {
                queue.push(d);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Walk dependencies from a node left in the cycle until one repeats.
    let Some(start) = (0..n).find(|&i| indeg[i] > 0) else {
        return Ok(order);
    };
    let mut path: Vec<u32> = vec![start as u32];
    let mut seen: HashMap<u32, usize> = HashMap::new();
    seen.insert(start as u32, 0);
    let mut cur = start;
    loop {
        let Some(&next) = deps[cur].iter().find(|&&d| indeg[d as usize] > 0) else {
            return Err(path);
        };
        if let Some(&pos) = seen.get(&next) {
            let mut cycle = path[pos..].to_vec();
            cycle.push(next);
            return Err(cycle);
        }
        seen.insert(next, path.len());
        path.push(next);
        cur = next as usize;
    }
}

struct Compiler<'a> {
    env: &'a mut Environment<'static>,
    index: &'a HashMap<Arc<str>, u32>,
    declared: &'a HashSet<&'a str>,
    open_vars: bool,
    issues: &'a mut Vec<WorkflowIssue>,
    acyclic: bool,
    counter: usize,
}

impl Compiler<'_> {
    fn compile(
        &mut self,
        step: usize,
        step_name: &str,
        part: &str,
        source: String,
        ancestor: &dyn Fn(u32) -> bool,
    ) -> Tpl {
        self.counter += 1;
        let name = format!("{step}:{part}#{}", self.counter);
        let source_copy = source.clone();
        if let Err(e) = self.env.add_template_owned(name.clone(), source) {
            self.issues.push(WorkflowIssue::TemplateSyntax {
                step: step_name.to_owned(),
                part: part.to_owned(),
                message: template::error_text(&e),
            });
            return Tpl::Static(Arc::from(""));
        }
        let (top, nested) = match self.env.get_template(&name) {
            Ok(t) => (t.undeclared_variables(false), t.undeclared_variables(true)),
            Err(_) => Default::default(),
        };
        let mut refs = Vec::new();
        let mut top: Vec<String> = top.into_iter().collect();
        top.sort();
        for var in top {
            let r = match var.as_str() {
                "input" => Ref::Input,
                "env" => Ref::Env,
                "steps" => {
                    for path in nested.iter().filter_map(|p| p.strip_prefix("steps.")) {
                        let used = path.split('.').next().unwrap_or(path);
                        self.check_step_use(step, step_name, part, used, ancestor);
                    }
                    Ref::Steps
                }
                "loop" => Ref::Var(Arc::from("loop")),
                v if is_builtin_global(v) => continue,
                v => match self.index.get_key_value(v) {
                    Some((k, &j)) => {
                        self.check_step_use(step, step_name, part, v, ancestor);
                        Ref::Step(j, Arc::clone(k))
                    }
                    None if self.declared.contains(v) || self.open_vars => Ref::Var(Arc::from(v)),
                    None => {
                        let mut avail: Vec<&str> = vec!["input", "env", "steps", "loop"];
                        let mut before: Vec<(&Arc<str>, &u32)> =
                            self.index.iter().filter(|(_, j)| ancestor(**j)).collect();
                        before.sort_by_key(|(_, j)| **j);
                        avail.extend(before.into_iter().map(|(k, _)| &**k));
                        let mut decl: Vec<&str> = self.declared.iter().copied().collect();
                        decl.sort_unstable();
                        avail.extend(decl);
                        self.issues.push(WorkflowIssue::UndefinedVariable {
                            step: step_name.to_owned(),
                            part: part.to_owned(),
                            variable: v.to_owned(),
                            available: avail.join(", "),
                        });
                        continue;
                    }
                },
            };
            refs.push(r);
        }
        let fast = template::plain_segments(&source_copy, &refs);
        Tpl::Compiled {
            name: Arc::from(name),
            refs: refs.into(),
            fast,
        }
    }

    fn check_step_use(
        &mut self,
        step: usize,
        step_name: &str,
        part: &str,
        used: &str,
        ancestor: &dyn Fn(u32) -> bool,
    ) {
        match self.index.get(used) {
            Some(&j) if j as usize == step => self.issues.push(WorkflowIssue::InvalidParameter {
                step: step_name.to_owned(),
                message: format!("the {part} uses this step's own output"),
            }),
            Some(&j) => {
                if self.acyclic && !ancestor(j) {
                    self.issues.push(WorkflowIssue::NotADependency {
                        step: step_name.to_owned(),
                        used: used.to_owned(),
                    });
                }
            }
            None => {
                if !self.open_vars {
                    self.issues.push(WorkflowIssue::UndefinedVariable {
                        step: step_name.to_owned(),
                        part: part.to_owned(),
                        variable: format!("steps.{used}"),
                        available: self
                            .index
                            .keys()
                            .map(|k| format!("steps.{k}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
            }
        }
    }

    fn text(
        &mut self,
        step: usize,
        step_name: &str,
        part: &str,
        source: &str,
        ancestor: &dyn Fn(u32) -> bool,
    ) -> Tpl {
        if !has_markup(source) {
            return Tpl::Static(Arc::from(source));
        }
        self.compile(step, step_name, part, source.to_owned(), ancestor)
    }

    fn condition(
        &mut self,
        step: usize,
        step_name: &str,
        source: &str,
        ancestor: &dyn Fn(u32) -> bool,
    ) -> Expr {
        let expr = expression_source(source);
        if expr.is_empty() {
            self.issues.push(WorkflowIssue::TemplateSyntax {
                step: step_name.to_owned(),
                part: "`when` condition".to_owned(),
                message: "the condition is empty".to_owned(),
            });
        }
        Expr {
            tpl: self.compile(
                step,
                step_name,
                "`when` condition",
                template::bool_wrapper(expr),
                ancestor,
            ),
        }
    }

    fn value(
        &mut self,
        step: usize,
        step_name: &str,
        part: &str,
        v: &Value,
        ancestor: &dyn Fn(u32) -> bool,
    ) -> WithTpl {
        match v {
            Value::String(s) if is_single_expression(s) => WithTpl::Expr(Expr {
                tpl: self.compile(
                    step,
                    step_name,
                    part,
                    template::json_wrapper(expression_source(s)),
                    ancestor,
                ),
            }),
            Value::String(s) => WithTpl::Text(self.text(step, step_name, part, s, ancestor)),
            Value::Array(a) => WithTpl::Array(
                a.iter()
                    .enumerate()
                    .map(|(k, x)| self.value(step, step_name, &format!("{part}[{k}]"), x, ancestor))
                    .collect(),
            ),
            Value::Object(o) => WithTpl::Object(
                o.iter()
                    .map(|(k, x)| {
                        (
                            k.clone(),
                            self.value(step, step_name, &format!("{part}.{k}"), x, ancestor),
                        )
                    })
                    .collect(),
            ),
            other => WithTpl::Literal(other.clone()),
        }
    }
}
