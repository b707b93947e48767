//! From a loaded YAML workflow to engine [`Workflow`]s.
//!
//! - `run` → a model step ([`Step::llm`]); with a `providers:` failover chain, a
//!   [`FailoverRun`] plugin over `flowloom-middleware`'s failover layer.
//! - `template` → a sub-workflow call by name; every `with` key is a variable.
//! - `embeddings`, `consensus`, step `loop` → plugins ([`Embeddings`], [`Consensus`],
//!   [`Iterate`]).
//! - `loops:` → one [`LoopRunner`] step per loop, after every step.
//! - `needs`, `if` (`when`), `on_failure` / `on_error` (`critical`), `timeout` and the
//!   effective provider settings map onto the step options; `execution.parallel: false`
//!   chains every step to the one declared before it.
//! - A step that needs MCP servers or skills is refused here, before anything runs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use super::effective::EffectiveConfig;
use super::library::Library;
use super::model::TextOrList;
use super::model::{OnError, OnFailure, Step as YStep};
use super::plugins::{
    Consensus, DEFAULT_CONSENSUS_TIMEOUT, DEFAULT_EMBEDDING_MODEL, Embeddings, FailoverRun,
    Iterate, LoopRunner, outer_steps_template,
};
use super::{Diagnostics, LoadOptions, LoadedWorkflow, YamlError, load_file_with};
use crate::engine::{EngineBuilder, RunOptions};
use crate::error::WorkflowError;
use crate::workflow::{Step, StepSettings, Workflow, WorkflowRef};

/// Why a loaded workflow cannot become an engine workflow.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LowerError {
    /// The step needs tools from MCP servers (or skills), which cannot run yet.
    #[error(
        "workflow `{workflow}`, step `{step}` needs {what} ({names}): tool execution from MCP servers is not supported yet, so the run stops before its first call; remove `servers`/`skills` from the step and `execution` to run it"
    )]
    ToolsUnsupported {
        /// The workflow.
        workflow: String,
        /// The step.
        step: String,
        /// `MCP servers` or `skills`.
        what: &'static str,
        /// Their names.
        names: String,
    },
    /// The engine refused the definition.
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    /// Loading a file, or a called workflow, failed.
    #[error(transparent)]
    Load(#[from] YamlError),
}

fn settings_of(c: &EffectiveConfig) -> StepSettings {
    StepSettings {
        provider: c.provider.clone(),
        model: c.model.clone(),
        temperature: c.temperature,
        max_tokens: c.max_tokens,
        timeout: c.timeout,
    }
}

/// Points the templates of a step loop's own-mode body at the loop step's `steps` (see
/// [`outer_steps_template`]).
fn outer_steps_in(s: &mut YStep) {
    if let Some(r) = &mut s.run {
        *r = outer_steps_template(r);
    }
    if let Some(c) = &mut s.consensus {
        c.prompt = outer_steps_template(&c.prompt);
    }
    if let Some(e) = &mut s.embeddings
        && let Some(input) = &mut e.input
    {
        match input {
            TextOrList::One(t) => *t = outer_steps_template(t),
            TextOrList::Many(v) => {
                for t in v {
                    *t = outer_steps_template(t);
                }
            }
        }
    }
}

fn tools_check(wf: &str, step: &str, c: &EffectiveConfig) -> Result<(), LowerError> {
    if !c.servers.is_empty() {
        return Err(LowerError::ToolsUnsupported {
            workflow: wf.to_owned(),
            step: step.to_owned(),
            what: "MCP servers",
            names: c.servers.join(", "),
        });
    }
    if !c.skills.is_empty() {
        return Err(LowerError::ToolsUnsupported {
            workflow: wf.to_owned(),
            step: step.to_owned(),
            what: "skills",
            names: c.skills.join(", "),
        });
    }
    Ok(())
}

impl LoadedWorkflow {
    /// The engine workflow for this file. Called workflows (templates, loops) are referred to
    /// by name: register them with the engine too ([`WorkflowSet`] does it all).
    pub fn to_workflow(&self) -> Result<Workflow, LowerError> {
        self.to_workflow_with(&HashMap::new())
    }

    /// [`to_workflow`](Self::to_workflow), with the `template` steps named in `targets`
    /// (step name → workflow name) calling that workflow instead (a variant carrying the
    /// step's own settings).
    pub fn to_workflow_with(
        &self,
        targets: &HashMap<String, String>,
    ) -> Result<Workflow, LowerError> {
        let d = &self.definition;
        let base_dir = self.base_dir();
        let env: Map<String, Value> = d
            .env
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.as_text())))
            .collect();
        let mut b = Workflow::builder(&d.name)
            .description(&d.description)
            .open_variables(true);
        for (k, v) in &env {
            b = b.env(k.clone(), v.clone());
        }
        let sequential = d.execution.parallel == Some(false);
        let run_on = d.execution.on_error.unwrap_or(OnError::Stop);
        let mut prev: Option<&str> = None;
        for s in &d.steps {
            let cfg = EffectiveConfig::of_step(&d.execution, s);
            let mut step = self.lower_step(s, &cfg, &env, &base_dir, targets)?;
            let mut needs = s.needs.clone();
            if sequential && let Some(p) = prev {
                let mut n = needs.unwrap_or_default();
                if !n.iter().any(|x| x == p) {
                    n.push(p.to_owned());
                }
                needs = Some(n);
            }
            if let Some(n) = needs {
                step = step.needs(n);
            }
            if let Some(c) = &s.condition {
                step = step.when(c.clone());
            }
            let critical = match s.on_failure {
                Some(OnFailure::Continue) => false,
                Some(OnFailure::Fail | OnFailure::Retry) => true,
                None => run_on == OnError::Stop,
            };
            step = step.critical(critical);
            b = b.step(step);
            prev = Some(&s.name);
        }
        // Loops run after every step, one after the other.
        let all_steps: Vec<String> = d.steps.iter().map(|s| s.name.clone()).collect();
        let exec_cfg = EffectiveConfig::of_execution(&d.execution);
        let mut before = all_steps.clone();
        for l in &d.loops {
            let judge = l.judge.clone().unwrap_or_default();
            let first = exec_cfg.chain.first();
            let plugin = LoopRunner {
                name: l.name.clone(),
                workflow: l.workflow.clone(),
                with: l.with_.clone(),
                max_iterations: l.max_iterations,
                until: l.until.clone(),
                on_failure: l.on_failure.unwrap_or(OnFailure::Fail),
                accumulate: l.accumulate.clone(),
                judge_provider: judge
                    .provider
                    .or_else(|| exec_cfg.provider.clone())
                    .or_else(|| first.map(|f| f.provider.clone())),
                judge_model: judge
                    .model
                    .or_else(|| exec_cfg.model.clone())
                    .or_else(|| first.map(|f| f.model.clone())),
            };
            let step = Step::plugin(&l.name, plugin)
                .needs(before.clone())
                .critical(l.on_failure != Some(OnFailure::Continue));
            b = b.step(step);
            before = vec![l.name.clone()];
        }
        Ok(b.build()?)
    }

    fn lower_step(
        &self,
        s: &YStep,
        cfg: &EffectiveConfig,
        env: &Map<String, Value>,
        base_dir: &Path,
        targets: &HashMap<String, String>,
    ) -> Result<Step, LowerError> {
        let wf = &self.definition.name;
        if let Some(l) = &s.loop_ {
            // The body: a named workflow, or the step's own mode as a one-step workflow.
            let (body, with) = match &l.workflow {
                Some(w) => (WorkflowRef::Named(w.clone()), Some(l.with_.clone())),
                None => {
                    let mut inner = s.clone();
                    inner.loop_ = None;
                    inner.needs = None;
                    inner.condition = None;
                    outer_steps_in(&mut inner);
                    let one = self.lower_mode(&inner, cfg, env, base_dir, targets)?;
                    let sub = Workflow::builder(format!("{wf}.{}.item", s.name))
                        .open_variables(true)
                        .step(one.settings(settings_of(cfg)));
                    let mut sub = sub;
                    for (k, v) in env {
                        sub = sub.env(k.clone(), v.clone());
                    }
                    (WorkflowRef::Inline(sub.build()?), None)
                }
            };
            let plugin = Iterate {
                items: l.items.clone(),
                body,
                with,
                parallel: l.parallel.unwrap_or(false),
                max_workers: l.max_workers.unwrap_or(4) as usize,
                max_items: l.max_iterations.map(|m| m as usize),
                on_failure: l.on_failure.unwrap_or(OnFailure::Fail),
                base_dir: base_dir.to_path_buf(),
            };
            let mut step = Step::plugin(&s.name, plugin);
            if let Some(t) = cfg.timeout {
                step = step.timeout(t);
            }
            return Ok(step);
        }
        let step = self.lower_mode(s, cfg, env, base_dir, targets)?;
        Ok(step.settings(settings_of(cfg)))
    }

    fn lower_mode(
        &self,
        s: &YStep,
        cfg: &EffectiveConfig,
        _env: &Map<String, Value>,
        base_dir: &Path,
        targets: &HashMap<String, String>,
    ) -> Result<Step, LowerError> {
        let d = &self.definition;
        if let Some(prompt) = &s.run {
            tools_check(&d.name, &s.name, cfg)?;
            if !cfg.chain.is_empty() {
                return Ok(Step::plugin(
                    &s.name,
                    FailoverRun {
                        prompt: prompt.clone(),
                        chain: cfg.chain.clone(),
                        config: cfg.clone(),
                    },
                ));
            }
            return Ok(Step::llm(&s.name, prompt.clone()));
        }
        if let Some(t) = &s.template {
            let target = targets
                .get(&s.name)
                .cloned()
                .unwrap_or_else(|| t.name.clone());
            return Ok(
                Step::workflow(&s.name, WorkflowRef::Named(target)).with_all(t.with_.clone())
            );
        }
        if let Some(c) = &s.consensus {
            let executions: Vec<EffectiveConfig> = c
                .executions
                .iter()
                .map(|x| EffectiveConfig::of_consensus(&d.execution, s, x))
                .collect();
            for x in &executions {
                tools_check(&d.name, &s.name, x)?;
            }
            let timeout = c
                .timeout
                .map(|t| t.0)
                .or(s.timeout.map(|t| t.0))
                .unwrap_or(DEFAULT_CONSENSUS_TIMEOUT);
            return Ok(Step::plugin(
                &s.name,
                Consensus {
                    prompt: c.prompt.clone(),
                    executions,
                    require: c.require,
                    timeout,
                },
            ));
        }
        if let Some(e) = &s.embeddings {
            let explicit = e.provider.is_some() || s.provider.is_some();
            let provider = e.provider.clone().or_else(|| cfg.provider.clone());
            let model = e
                .model
                .clone()
                .or_else(|| s.model.clone())
                .unwrap_or_else(|| DEFAULT_EMBEDDING_MODEL.to_owned());
            return Ok(Step::plugin(
                &s.name,
                Embeddings {
                    cfg: e.clone(),
                    provider,
                    explicit_provider: explicit,
                    model,
                    base_dir: base_dir.to_path_buf(),
                },
            ));
        }
        // Validation guarantees a mode; a step without one cannot be loaded.
        Ok(Step::transform(&s.name, |_| {
            Err("this step has no execution mode".into())
        }))
    }
}

/// The called workflow with the `template` step's own `MCPQuery` properties (provider, model,
/// temperature, max_tokens, servers, skills, timeout) passed through to its `execution`, or
/// `None` when the step sets none.
fn pass_through(caller: &str, called: &LoadedWorkflow, s: &YStep) -> Option<LoadedWorkflow> {
    let any = s.provider.is_some()
        || s.model.is_some()
        || s.temperature.is_some()
        || s.max_tokens.is_some()
        || s.servers.is_some()
        || s.skills.is_some()
        || s.timeout.is_some();
    if !any {
        return None;
    }
    let mut v = called.clone();
    let e = &mut v.definition.execution;
    if let Some(p) = &s.provider {
        e.provider = Some(p.clone());
        e.providers = None;
        if s.model.is_none() && e.model.is_none() {
            e.model = called
                .definition
                .execution
                .providers
                .as_ref()
                .and_then(|c| c.first())
                .map(|f| f.model.clone());
        }
    }
    if let Some(m) = &s.model {
        e.model = Some(m.clone());
    }
    if s.temperature.is_some() {
        e.temperature = s.temperature;
    }
    if s.max_tokens.is_some() {
        e.max_tokens = s.max_tokens;
    }
    if s.servers.is_some() {
        e.servers = s.servers.clone();
    }
    if s.skills.is_some() {
        e.skills = s.skills.clone();
    }
    if s.timeout.is_some() {
        e.timeout = s.timeout;
    }
    v.definition.name = format!("{}@{caller}.{}", called.definition.name, s.name);
    Some(v)
}

/// A workflow file and every workflow it calls, loaded, validated and converted.
///
/// ```no_run
/// use flowloom_engine::{Engine, yaml::WorkflowSet};
/// # async fn demo(mock: flowloom_core::BoxLlmService) -> Result<(), Box<dyn std::error::Error>> {
/// let set = WorkflowSet::load("fixtures/workflows/hello.yaml")?;
/// let engine = set.register(Engine::builder().provider("mock", mock)).build()?;
/// let result = engine.run_named(set.root_name(), set.run_options("world")).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct WorkflowSet {
    root: String,
    loaded: BTreeMap<String, LoadedWorkflow>,
    compiled: BTreeMap<String, Workflow>,
}

impl WorkflowSet {
    /// Loads the file at `path` and every workflow it calls (from its directory).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, LowerError> {
        let root = load_file_with(path, &LoadOptions::default())?;
        let mut lib = Library::new();
        lib.add_search_dir(root.base_dir());
        Self::from_library(root, &lib)
    }

    /// `root` and every workflow it calls, resolved through `library` (the root's directory
    /// first). Cycles of template calls are rejected here, before anything runs.
    pub fn from_library(root: LoadedWorkflow, library: &Library) -> Result<Self, LowerError> {
        let loaded = library
            .closure(&root)
            .map_err(|d: Diagnostics| LowerError::Load(YamlError::Invalid(d)))?;
        let mut compiled = BTreeMap::new();
        for (name, wf) in &loaded {
            let mut targets = HashMap::new();
            for s in &wf.definition.steps {
                let Some(t) = &s.template else { continue };
                let Some(called) = loaded.get(&t.name) else {
                    continue;
                };
                if let Some(variant) = pass_through(name, called, s) {
                    let vname = variant.definition.name.clone();
                    targets.insert(s.name.clone(), vname.clone());
                    compiled.insert(vname, variant.to_workflow()?);
                }
            }
            compiled.insert(name.clone(), wf.to_workflow_with(&targets)?);
        }
        Ok(Self {
            root: root.name().to_owned(),
            loaded,
            compiled,
        })
    }

    /// The root workflow's name.
    pub fn root_name(&self) -> &str {
        &self.root
    }

    /// The root engine workflow.
    pub fn root(&self) -> Option<&Workflow> {
        self.compiled.get(&self.root)
    }

    /// An engine workflow of the set, by name.
    pub fn workflow(&self, name: &str) -> Option<&Workflow> {
        self.compiled.get(name)
    }

    /// A loaded definition of the set, by name.
    pub fn definition(&self, name: &str) -> Option<&LoadedWorkflow> {
        self.loaded.get(name)
    }

    /// The definition the `template` step `step` of the workflow `caller` runs: the called
    /// workflow with the step's own provider, model, temperature, max_tokens, servers,
    /// skills and timeout passed through, as the run uses it. `None` when the step calls no
    /// workflow of the set.
    pub fn called_by(&self, caller: &str, step: &YStep) -> Option<LoadedWorkflow> {
        let called = self.loaded.get(&step.template.as_ref()?.name)?;
        Some(pass_through(caller, called, step).unwrap_or_else(|| called.clone()))
    }

    /// Every workflow's name.
    pub fn names(&self) -> Vec<&str> {
        self.loaded.keys().map(String::as_str).collect()
    }

    /// Every provider any workflow of the set may call.
    pub fn providers(&self) -> BTreeSet<String> {
        self.loaded.values().flat_map(|w| w.providers()).collect()
    }

    /// Registers every workflow of the set with `builder`, and applies the root's
    /// `execution.max_workers` as the engine's bound on steps running at once.
    pub fn register(&self, mut builder: EngineBuilder) -> EngineBuilder {
        for wf in self.compiled.values() {
            builder = builder.workflow(wf.clone());
        }
        if let Some(n) = self
            .loaded
            .get(&self.root)
            .and_then(|w| w.definition.execution.max_workers)
        {
            builder = builder.max_concurrent_steps(n as usize);
        }
        builder
    }

    /// Run options for the root: `input`, and `execution.workflow_timeout` as the run's time
    /// limit.
    pub fn run_options(&self, input: impl Into<Value>) -> RunOptions {
        let mut o = RunOptions::new(input);
        if let Some(t) = self
            .loaded
            .get(&self.root)
            .and_then(|w| w.definition.execution.workflow_timeout)
        {
            o = o.timeout(t.0);
        }
        o
    }

    /// The directory of the root file.
    pub fn base_dir(&self) -> PathBuf {
        self.loaded
            .get(&self.root)
            .map(LoadedWorkflow::base_dir)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// The root's per-workflow time limit, when set.
    pub fn workflow_timeout(&self) -> Option<Duration> {
        self.loaded
            .get(&self.root)
            .and_then(|w| w.definition.execution.workflow_timeout)
            .map(|t| t.0)
    }
}
