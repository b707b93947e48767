//! The scheduler: runs one workflow's steps in its own task, driving step futures with
//! `FuturesUnordered`, starting each step the moment its dependencies finish.

use std::collections::{BTreeMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use flowloom_core::provider::panic_message;
use flowloom_core::{
    CallContext, ExecutionMetrics, LlmError, LlmRequest, LlmResponse, StepConfig, StepContext,
    StepResult, StepStatus, TokenUsage, WorkflowResult, WorkflowStatus,
};
use flowloom_observability::semconv::{
    CORRELATION_ID, SPAN_STEP, SPAN_WORKFLOW, STEP_DURATION_MS, STEP_KIND, STEP_NAME, STEP_STATUS,
    WORKFLOW_ID, WORKFLOW_NAME, WORKFLOW_STATUS,
};
use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{Instrument, Span};
use uuid::Uuid;

use crate::engine::{Engine, OverflowPolicy, RunOptions};
use crate::error::RunError;
use crate::hooks::{RunEvent, StepEvent};
use crate::plugin::{BoxFuture, StepPlugin, StepRuntime, UsageAcc};
use crate::template::{self, Outputs, Scope};
use crate::workflow::{StepDef, StepImpl, WithTpl, Workflow, WorkflowRef};

/// A random (version 4) id. Run ids need to be unique, not secret: a fast generator is used
/// rather than the operating system's.
pub(crate) fn new_id() -> Uuid {
    uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid()
}

/// How deep sub-workflow calls may nest.
const MAX_DEPTH: usize = 32;

/// State of one run shared with plugin steps and sub-workflows.
pub(crate) struct RunShared {
    pub(crate) engine: Engine,
    pub(crate) workflow: Workflow,
    pub(crate) run_id: Uuid,
    pub(crate) correlation_id: Uuid,
    pub(crate) input: Value,
    pub(crate) vars: Map<String, Value>,
    /// The run's cancellation token. Set at the start when anything can cancel the run or
    /// watch the token; otherwise made only if something asks for it (a run nobody can
    /// cancel needs no token: no allocation, no lock on every check).
    cancel: OnceLock<CancellationToken>,
    pub(crate) llm_calls: AtomicU64,
    pub(crate) llm_calls_without_usage: AtomicU64,
    pub(crate) call_stack: Vec<Arc<str>>,
    status: Option<Arc<AtomicU8>>,
    /// False when nothing can cancel the run (no token given, no plugin or sub-workflow to
    /// watch it): the scheduler then does not wait on the token.
    cancellable: bool,
}

impl RunShared {
    /// The run's cancellation token (made on first use when the run started without one).
    pub(crate) fn cancel_token(&self) -> &CancellationToken {
        self.cancel.get_or_init(CancellationToken::new)
    }

    /// True when the run has been cancelled.
    fn is_cancelled(&self) -> bool {
        self.cancel
            .get()
            .is_some_and(CancellationToken::is_cancelled)
    }
}

/// A token cell: set when there is a token to keep, empty otherwise.
fn token_cell(token: Option<CancellationToken>) -> OnceLock<CancellationToken> {
    let cell = OnceLock::new();
    if let Some(t) = token {
        let _ = cell.set(t);
    }
    cell
}

pub(crate) fn status_code(s: WorkflowStatus) -> u8 {
    match s {
        WorkflowStatus::Pending => 0,
        WorkflowStatus::Running => 1,
        WorkflowStatus::Completed => 2,
        WorkflowStatus::Failed => 3,
        WorkflowStatus::Cancelled => 4,
        WorkflowStatus::Timeout => 5,
    }
}

pub(crate) fn status_from(code: u8) -> WorkflowStatus {
    match code {
        0 => WorkflowStatus::Pending,
        1 => WorkflowStatus::Running,
        2 => WorkflowStatus::Completed,
        3 => WorkflowStatus::Failed,
        4 => WorkflowStatus::Cancelled,
        _ => WorkflowStatus::Timeout,
    }
}

/// A top-level run: checks, a slot, then the run.
pub(crate) async fn run_top(
    engine: &Engine,
    wf: &Workflow,
    opts: RunOptions,
) -> Result<WorkflowResult, RunError> {
    let started = Instant::now();
    let timeout = opts.timeout.or_else(|| engine.config().default_timeout());
    if let Some(t) = timeout
        && t.is_zero()
    {
        return Err(RunError::InvalidOptions(
            "the timeout is zero; give a duration > 0, or none to wait until the run ends"
                .to_owned(),
        ));
    }
    let deadline = timeout.map(|t| started + t);
    // The call stack (for cycle checks) matters only to a workflow that can call others:
    // one with sub-workflow, plugin or custom-kind steps. Others skip the allocation.
    let mut stack = Vec::new();
    if wf.0.observes_cancel {
        stack.push(Arc::clone(&wf.0.name));
    }
    let plugins = preflight(engine, wf, &mut stack)?;
    let vars = merge_vars(wf, opts.vars, "<caller>")?;
    let inner = &engine.0;
    let _permit = match inner.overflow {
        OverflowPolicy::Reject => match inner.runs.try_acquire() {
            Some(slot) => slot,
            None => {
                return Err(RunError::AtCapacity {
                    limit: inner.max_runs,
                });
            }
        },
        // A free slot is taken at once, without a timer; only a run that must wait gets one.
        OverflowPolicy::Wait => match inner.runs.try_acquire() {
            Some(slot) => slot,
            None => {
                let acquire = inner.runs.acquire();
                match deadline {
                    Some(d) => match tokio::time::timeout_at(d, acquire).await {
                        Ok(slot) => slot,
                        Err(_) => {
                            return Err(RunError::QueueTimeout {
                                waited: started.elapsed(),
                            });
                        }
                    },
                    None => acquire.await,
                }
            }
        },
    };
    let cancellable = opts.cancel.is_some() || wf.0.observes_cancel;
    let cancel = match opts.cancel {
        Some(t) => Some(t),
        None if cancellable => Some(CancellationToken::new()),
        None => None,
    };
    let shared = Arc::new(RunShared {
        cancellable,
        engine: engine.clone(),
        workflow: wf.clone(),
        run_id: opts.run_id.unwrap_or_else(crate::exec::new_id),
        correlation_id: opts.correlation_id.unwrap_or_else(crate::exec::new_id),
        input: opts.input,
        vars,
        cancel: token_cell(cancel),
        llm_calls: AtomicU64::new(0),
        llm_calls_without_usage: AtomicU64::new(0),
        call_stack: stack,
        status: opts.status,
    });
    // Boxed: the run's state is allocated once at its size, and the caller's future stays
    // small (cheap to move and to spawn).
    let result = Box::pin(execute(shared, plugins, deadline, timeout)).await;
    RunError::check(result)
}

/// A sub-workflow run on behalf of a step of `parent`.
pub(crate) async fn run_child(
    parent: &Arc<RunShared>,
    target: &WorkflowRef,
    input: Value,
    vars: Map<String, Value>,
) -> Result<WorkflowResult, RunError> {
    let engine = &parent.engine;
    let wf = match target {
        WorkflowRef::Inline(w) => w.clone(),
        WorkflowRef::Named(n) => {
            engine
                .0
                .workflows
                .get(n)
                .cloned()
                .ok_or_else(|| RunError::UnknownWorkflow {
                    workflow: parent.workflow.name().to_owned(),
                    step: "<plugin>".to_owned(),
                    called: n.clone(),
                    registered: list_or_none(engine.workflow_names()),
                })?
        }
    };
    let mut stack = parent.call_stack.clone();
    if stack.iter().any(|n| **n == *wf.name()) || stack.len() >= MAX_DEPTH {
        let mut path: Vec<String> = stack.iter().map(|s| s.to_string()).collect();
        path.push(wf.name().to_owned());
        return Err(RunError::WorkflowCycle { path });
    }
    stack.push(Arc::clone(&wf.0.name));
    let plugins = preflight(engine, &wf, &mut stack)?;
    let vars = merge_vars(&wf, vars, parent.workflow.name())?;
    let shared = Arc::new(RunShared {
        cancellable: parent.cancellable || wf.0.observes_cancel,
        engine: engine.clone(),
        workflow: wf,
        run_id: crate::exec::new_id(),
        correlation_id: parent.correlation_id,
        input,
        vars,
        cancel: token_cell(Some(parent.cancel_token().child_token())),
        llm_calls: AtomicU64::new(0),
        llm_calls_without_usage: AtomicU64::new(0),
        call_stack: stack,
        status: None,
    });
    let result = Box::pin(execute(shared, plugins, None, None)).await;
    parent
        .llm_calls
        .fetch_add(result.metrics.llm_calls, Ordering::Relaxed);
    parent
        .llm_calls_without_usage
        .fetch_add(result.metrics.llm_calls_without_usage, Ordering::Relaxed);
    RunError::check(result)
}

fn list_or_none(v: Vec<&str>) -> String {
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}

/// Declared defaults under the given variables; every required one must be there.
fn merge_vars(
    wf: &Workflow,
    mut vars: Map<String, Value>,
    caller: &str,
) -> Result<Map<String, Value>, RunError> {
    let mut missing = Vec::new();
    for (name, default) in &wf.0.vars {
        if !vars.contains_key(name) {
            match default {
                Some(d) => {
                    vars.insert(name.clone(), d.clone());
                }
                None => missing.push(name.as_str()),
            }
        }
    }
    if missing.is_empty() {
        Ok(vars)
    } else {
        Err(RunError::InvalidOptions(format!(
            "workflow {:?} (called by {caller}) needs the variable{} {}; pass {} with \
             `RunOptions::var(..)` or the calling step's `with`",
            wf.name(),
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", "),
            if missing.len() == 1 { "it" } else { "them" },
        )))
    }
}

/// Checks, before anything runs, that every provider, sub-workflow and step kind the workflow
/// (and the workflows it calls) uses is registered, and that no workflow calls itself. Makes
/// the plugins of registered-kind steps.
fn preflight(
    engine: &Engine,
    wf: &Workflow,
    stack: &mut Vec<Arc<str>>,
) -> Result<Vec<Option<Arc<dyn StepPlugin>>>, RunError> {
    let inner = &engine.0;
    let w = &wf.0;
    let mut plugins = Vec::new();
    if w.has_kinds {
        plugins.resize(w.steps.len(), None);
    }
    let provider_ok = |step: &StepDef, name: Option<&str>| -> Result<(), RunError> {
        let name = match name {
            Some(n) => n,
            None => match inner.default_provider.as_deref() {
                Some(d) => d,
                None if inner.providers.is_empty() => {
                    return Err(RunError::NoProvider {
                        workflow: wf.name().to_owned(),
                        step: step.name.to_string(),
                    });
                }
                None => {
                    return Err(RunError::AmbiguousProvider {
                        workflow: wf.name().to_owned(),
                        step: step.name.to_string(),
                        registered: engine.provider_names().join(", "),
                    });
                }
            },
        };
        if inner.providers.contains_key(name) {
            Ok(())
        } else if inner.providers.is_empty() {
            Err(RunError::NoProvider {
                workflow: wf.name().to_owned(),
                step: step.name.to_string(),
            })
        } else {
            Err(RunError::UnknownProvider {
                workflow: wf.name().to_owned(),
                step: step.name.to_string(),
                provider: name.to_owned(),
                registered: engine.provider_names().join(", "),
            })
        }
    };
    for (i, step) in w.steps.iter().enumerate() {
        let named = step
            .settings
            .provider
            .as_deref()
            .or(w.defaults.provider.as_deref());
        match &step.imp {
            StepImpl::Llm { .. } => provider_ok(step, named)?,
            StepImpl::Transform(_) => {}
            StepImpl::Plugin(p) => {
                for name in p.providers() {
                    provider_ok(step, Some(&name))?;
                }
                if let Some(n) = &step.settings.provider {
                    provider_ok(step, Some(n))?;
                }
            }
            StepImpl::Kind { kind, params } => {
                let f = inner
                    .kinds
                    .get(kind)
                    .ok_or_else(|| RunError::UnknownStepKind {
                        workflow: wf.name().to_owned(),
                        step: step.name.to_string(),
                        kind: kind.clone(),
                        registered: list_or_none(engine.step_kind_names()),
                    })?;
                let p = f(params).map_err(|e| RunError::InvalidStep {
                    workflow: wf.name().to_owned(),
                    step: step.name.to_string(),
                    kind: kind.clone(),
                    message: e.to_string(),
                })?;
                for name in p.providers() {
                    provider_ok(step, Some(&name))?;
                }
                if let Some(slot) = plugins.get_mut(i) {
                    *slot = Some(p);
                }
            }
            StepImpl::Call { target, .. } => {
                let called = match target {
                    WorkflowRef::Inline(c) => c.clone(),
                    WorkflowRef::Named(n) => inner.workflows.get(n).cloned().ok_or_else(|| {
                        RunError::UnknownWorkflow {
                            workflow: wf.name().to_owned(),
                            step: step.name.to_string(),
                            called: n.clone(),
                            registered: list_or_none(engine.workflow_names()),
                        }
                    })?,
                };
                if stack.iter().any(|n| **n == *called.name()) || stack.len() >= MAX_DEPTH {
                    let mut path: Vec<String> = stack.iter().map(|s| s.to_string()).collect();
                    path.push(called.name().to_owned());
                    return Err(RunError::WorkflowCycle { path });
                }
                stack.push(Arc::clone(&called.0.name));
                let r = preflight(engine, &called, stack);
                stack.pop();
                r?;
            }
        }
    }
    Ok(plugins)
}

/// What a finished step hands back to the scheduler.
struct StepDone {
    idx: u32,
    outcome: Result<Value, String>,
    usage: Option<TokenUsage>,
    llm_calls: u64,
    llm_calls_without_usage: u64,
    started: Instant,
    span: Span,
}

#[derive(Debug, Clone)]
struct Slot {
    status: StepStatus,
    error: Option<String>,
    duration_ms: f64,
    usage: Option<TokenUsage>,
}

enum Stop {
    Failed { step: u32, error: String },
    Cancelled,
    Timeout,
}

/// Plugin lifecycle phases, shared by the step future and the scheduler so that `cleanup`
/// runs exactly once whoever ends the step.
const PHASE_NEW: u8 = 0;
const PHASE_INIT: u8 = 1;
const PHASE_CLEANED: u8 = 2;

struct PluginState {
    plugin: Arc<dyn StepPlugin>,
    rt: Arc<StepRuntime>,
    phase: Arc<AtomicU8>,
}

/// Runs `cleanup` when a plugin step's future is dropped before it could (the caller dropped
/// the whole run).
struct CleanupGuard {
    plugin: Arc<dyn StepPlugin>,
    rt: Arc<StepRuntime>,
    phase: Arc<AtomicU8>,
}

impl Drop for CleanupGuard {
    fn drop(&mut self) {
        if self
            .phase
            .compare_exchange(
                PHASE_INIT,
                PHASE_CLEANED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
            && let Ok(h) = tokio::runtime::Handle::try_current()
        {
            let plugin = Arc::clone(&self.plugin);
            let rt = Arc::clone(&self.rt);
            h.spawn(async move {
                let _ = AssertUnwindSafe(async { plugin.cleanup(&rt).await })
                    .catch_unwind()
                    .await;
            });
        }
    }
}

fn transition_workflow(shared: &RunShared, status: WorkflowStatus) {
    if let Some(cell) = &shared.status {
        cell.store(status_code(status), Ordering::Release);
    }
    tracing::event!(
        target: "flowloom::transition",
        tracing::Level::INFO,
        {
            { WORKFLOW_ID } = %shared.run_id,
            { WORKFLOW_NAME } = %shared.workflow.name(),
            { CORRELATION_ID } = %shared.correlation_id,
            { WORKFLOW_STATUS } = status.as_str(),
        },
        "workflow {}",
        status.as_str()
    );
}

/// One step transition event at a fixed level (`tracing` needs the level as a constant).
macro_rules! step_event {
    ($level:expr, $shared:expr, $step:expr, $status:expr) => {
        tracing::event!(
            target: "flowloom::transition",
            $level,
            {
                { WORKFLOW_ID } = %$shared.run_id,
                { WORKFLOW_NAME } = %$shared.workflow.name(),
                { CORRELATION_ID } = %$shared.correlation_id,
                { STEP_NAME } = %$step.name,
                { STEP_KIND } = %$step.kind_label,
                { STEP_STATUS } = $status.as_str(),
            },
            "step {}",
            $status.as_str()
        )
    };
}

/// Logs a step's transition: at INFO when it ends (terminal states carry what a reader of the
/// log wants per step), at DEBUG for `PENDING` and `RUNNING`, so a run at the INFO level writes
/// one line per step rather than three.
fn transition_step(shared: &RunShared, step: &StepDef, status: StepStatus) {
    if matches!(status, StepStatus::Pending | StepStatus::Running) {
        step_event!(tracing::Level::DEBUG, shared, step, status);
    } else {
        step_event!(tracing::Level::INFO, shared, step, status);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The message of a failing provider call: `provider "x": <cause>`.
fn provider_error(provider: &str, e: &LlmError) -> String {
    let text = e.to_string();
    let cause = [e.provider().unwrap_or(provider), provider]
        .iter()
        .find_map(|p| text.strip_prefix(p).and_then(|r| r.strip_prefix(": ")))
        .unwrap_or(&text);
    format!("provider {provider:?}: {cause}")
}

fn step_failed(name: &str, cause: &str) -> String {
    format!("step {name:?} failed: {cause}")
}

struct Scheduler<'w> {
    shared: Arc<RunShared>,
    wf: &'w crate::workflow::WorkflowInner,
    slots: Vec<Slot>,
    outputs: Vec<Option<Value>>,
    remaining: Vec<u32>,
    ready: VecDeque<u32>,
    stop: Option<Stop>,
    llm_calls: u64,
    llm_calls_without_usage: u64,
    plugins: Vec<Option<Arc<dyn StepPlugin>>>,
    live: Vec<(u32, PluginState)>,
    run_event: Option<RunEvent>,
}

// Not boxed: `Done` is the inline fast path, built once per step and moved at once.
#[allow(clippy::large_enum_variant)]
enum Prepared {
    Skip(String),
    Fail(String),
    Start(BoxFuture<'static, StepDone>),
    Done(StepDone),
}

/// The run inside its workflow span. A plain function (not `async`): the run's state is
/// the scheduler's alone, without a second copy of its arguments around it.
fn execute(
    shared: Arc<RunShared>,
    plugins: Vec<Option<Arc<dyn StepPlugin>>>,
    deadline: Option<Instant>,
    timeout: Option<Duration>,
) -> impl std::future::Future<Output = WorkflowResult> + Send + 'static {
    let span = tracing::info_span!(
        SPAN_WORKFLOW,
        { WORKFLOW_NAME } = %shared.workflow.name(),
        { WORKFLOW_ID } = %shared.run_id,
        { CORRELATION_ID } = %shared.correlation_id,
        { WORKFLOW_STATUS } = tracing::field::Empty,
    );
    run_scheduler(shared, plugins, deadline, timeout).instrument(span)
}

async fn run_scheduler(
    shared: Arc<RunShared>,
    plugins: Vec<Option<Arc<dyn StepPlugin>>>,
    deadline: Option<Instant>,
    timeout: Option<Duration>,
) -> WorkflowResult {
    let created_at = OffsetDateTime::now_utc();
    let started = Instant::now();
    let shared_ref = Arc::clone(&shared);
    let wf = &*shared_ref.workflow.0;
    let n = wf.steps.len();
    let hooks = &shared.engine.0.hooks;
    let run_event = (!hooks.is_empty()).then(|| RunEvent {
        run_id: shared.run_id,
        workflow: Arc::clone(&wf.name),
        correlation_id: shared.correlation_id,
    });
    transition_workflow(&shared, WorkflowStatus::Pending);
    for s in wf.steps.iter() {
        transition_step(&shared, s, StepStatus::Pending);
    }
    transition_workflow(&shared, WorkflowStatus::Running);
    if let Some(ev) = &run_event {
        for h in hooks {
            h.on_workflow_start(ev).await;
        }
    }
    let mut sch = Scheduler {
        shared: Arc::clone(&shared),
        wf,
        slots: vec![
            Slot {
                status: StepStatus::Pending,
                error: None,
                duration_ms: 0.0,
                usage: None,
            };
            n
        ],
        outputs: vec![None; n],
        remaining: wf.steps.iter().map(|s| s.deps.len() as u32).collect(),
        ready: wf.roots.iter().copied().collect(),
        stop: None,
        llm_calls: 0,
        llm_calls_without_usage: 0,
        plugins,
        live: Vec::new(),
        run_event,
    };
    let max = shared.engine.0.max_steps;
    let mut in_flight = Pool::default();
    // `Some` exactly when the run is cancellable (a token is made up front then).
    let cancel = shared.cancel.get().cloned();
    let mut cancel_seen = false;
    let mut timed_out = false;
    // A step running alone is awaited directly (the common case of a plain sequence);
    // `FuturesUnordered` only holds steps running side by side.
    let mut solo: Option<BoxFuture<'static, StepDone>> = None;
    // The run's deadline: one timer for the whole run.
    let mut sleep = deadline.map(|d| Box::pin(tokio::time::sleep_until(d)));
    loop {
        if !cancel_seen && cancel.as_ref().is_some_and(CancellationToken::is_cancelled) {
            cancel_seen = true;
            sch.stop.get_or_insert(Stop::Cancelled);
        }
        while sch.stop.is_none() && in_flight.len() + usize::from(solo.is_some()) < max {
            let Some(i) = sch.ready.pop_front() else {
                break;
            };
            let ended = match sch.prepare(i) {
                Prepared::Skip(reason) => {
                    sch.skip(i, reason);
                    i
                }
                Prepared::Fail(err) => {
                    sch.finish(StepDone {
                        idx: i,
                        outcome: Err(err),
                        usage: None,
                        llm_calls: 0,
                        llm_calls_without_usage: 0,
                        started: Instant::now(),
                        span: Span::none(),
                    });
                    i
                }
                Prepared::Done(done) => {
                    let i = done.idx;
                    sch.finish(done);
                    i
                }
                Prepared::Start(f) => {
                    if in_flight.is_empty() && solo.is_none() && sch.ready.is_empty() {
                        solo = Some(f);
                    } else {
                        if let Some(s) = solo.take() {
                            in_flight.push(s);
                        }
                        in_flight.push(f);
                    }
                    continue;
                }
            };
            if sch.run_event.is_some() {
                Box::pin(sch.end_hooks(ended)).await;
            }
            sch.release(ended);
        }
        if in_flight.is_empty() && solo.is_none() {
            break;
        }
        let had_solo = solo.is_some();
        let next = next_done(&mut solo, &mut in_flight);
        let watch = match &cancel {
            Some(c) if !cancel_seen && shared.cancellable => Some(c),
            _ => None,
        };
        let done = match (sleep.as_mut(), watch) {
            (None, None) => next.await,
            (None, Some(c)) => {
                tokio::select! {
                    biased;
                    d = next => d,
                    () = c.cancelled() => continue,
                }
            }
            (Some(s), None) => {
                tokio::select! {
                    biased;
                    x = next => x,
                    () = s.as_mut() => { timed_out = true; None }
                }
            }
            (Some(s), Some(c)) => {
                tokio::select! {
                    biased;
                    x = next => x,
                    () = c.cancelled() => continue,
                    () = s.as_mut() => { timed_out = true; None }
                }
            }
        };
        if had_solo && done.is_some() {
            solo = None;
        }
        match done {
            Some(done) => {
                let ended = done.idx;
                sch.finish(done);
                if sch.run_event.is_some() {
                    Box::pin(sch.end_hooks(ended)).await;
                }
                sch.release(ended);
            }
            None if timed_out => break,
            None => {}
        }
    }
    if timed_out {
        // Claim the cleanups of plugin steps still running, drop the in-flight futures, then
        // run those cleanups here so they have finished when the result is returned.
        let mut claimed = Vec::new();
        for (_, p) in sch.live.drain(..) {
            if p.phase
                .compare_exchange(
                    PHASE_INIT,
                    PHASE_CLEANED,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                claimed.push(p);
            }
        }
        drop(in_flight);
        drop(solo);
        if let Some(c) = shared.cancel.get() {
            c.cancel();
        }
        for p in claimed {
            let _ = AssertUnwindSafe(async { p.plugin.cleanup(&p.rt).await })
                .catch_unwind()
                .await;
        }
        let after = timeout.unwrap_or_default();
        for i in 0..n {
            if sch.slots[i].status == StepStatus::Running {
                sch.slots[i].status = StepStatus::Failed;
                sch.slots[i].error = Some(format!(
                    "interrupted: the run's timeout of {after:?} passed while this step was running"
                ));
                transition_step(&shared, &wf.steps[i], StepStatus::Failed);
            }
        }
        sch.stop = Some(Stop::Timeout);
    }
    let total = started.elapsed();
    let (status, error, failed_step) = match &sch.stop {
        None => (WorkflowStatus::Completed, None, None),
        Some(Stop::Failed { step, error }) => (
            WorkflowStatus::Failed,
            Some(error.clone()),
            Some(wf.names[*step as usize].to_string()),
        ),
        Some(Stop::Cancelled) => (
            WorkflowStatus::Cancelled,
            Some(format!(
                "cancelled after {} of {n} steps completed; steps in flight finished, none started after",
                sch.slots
                    .iter()
                    .filter(|s| s.status == StepStatus::Completed)
                    .count()
            )),
            None,
        ),
        Some(Stop::Timeout) => (
            WorkflowStatus::Timeout,
            Some(format!(
                "timed out after {:?} with {} of {n} steps completed",
                timeout.unwrap_or(total),
                sch.slots
                    .iter()
                    .filter(|s| s.status == StepStatus::Completed)
                    .count()
            )),
            None,
        ),
    };
    let output = (0..n)
        .rev()
        .find(|&i| sch.slots[i].status == StepStatus::Completed)
        .and_then(|i| sch.outputs[i].clone());
    let base = shared.run_id.as_u128();
    let steps: Vec<StepResult> = sch
        .slots
        .iter_mut()
        .zip(sch.outputs.iter_mut())
        .enumerate()
        .map(|(i, (slot, out))| StepResult {
            step_id: Uuid::from_u128(base ^ (i as u128 + 1)),
            name: String::from(&*wf.names[i]),
            status: slot.status,
            output: out.take(),
            error: slot.error.take(),
            duration_ms: slot.duration_ms,
            token_usage: slot.usage.take(),
        })
        .collect();
    let mut metrics = ExecutionMetrics::from_steps(&steps, ms(total));
    metrics.llm_calls = sch.llm_calls + shared.llm_calls.load(Ordering::Relaxed);
    metrics.llm_calls_without_usage =
        sch.llm_calls_without_usage + shared.llm_calls_without_usage.load(Ordering::Relaxed);
    let result = WorkflowResult {
        workflow_id: shared.run_id,
        workflow_name: String::from(&*wf.name),
        correlation_id: shared.correlation_id,
        status,
        output,
        error,
        failed_step,
        steps,
        metrics,
        created_at,
        completed_at: Some(OffsetDateTime::now_utc()),
    };
    // Polled inside the workflow span (`execute`), so the current span is that one.
    let span = Span::current();
    if !span.is_disabled() {
        span.record(WORKFLOW_STATUS, status.as_str());
    }
    transition_workflow(&shared, status);
    if let Some(ev) = &sch.run_event {
        // Boxed while the hooks run, so the run's state does not carry a whole result.
        let result = Box::new(result);
        for h in hooks {
            h.on_workflow_end(ev, &result).await;
        }
        return *result;
    }
    result
}

/// The next step to finish: the one running alone, or any of those running side by side.
async fn next_done(
    solo: &mut Option<BoxFuture<'static, StepDone>>,
    in_flight: &mut Pool,
) -> Option<StepDone> {
    match (solo, &mut in_flight.0) {
        (Some(f), _) => Some(f.await),
        (None, Some(set)) => set.next().await,
        (None, None) => None,
    }
}

/// Steps running side by side; made on first use, so a plain sequence never allocates it.
#[derive(Default)]
struct Pool(Option<FuturesUnordered<BoxFuture<'static, StepDone>>>);

impl Pool {
    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, FuturesUnordered::len)
    }
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn push(&mut self, f: BoxFuture<'static, StepDone>) {
        self.0.get_or_insert_with(FuturesUnordered::new).push(f);
    }
}

impl Scheduler<'_> {
    fn scope(&self) -> Scope<'_> {
        Scope {
            input: &self.shared.input,
            vars: &self.shared.vars,
            env: &self.wf.env_vars,
            outputs: Outputs::Indexed {
                names: &self.wf.names,
                values: &self.outputs,
            },
        }
    }

    fn step_config(&self, step: &StepDef) -> StepConfig {
        let eff = step.settings.inherit(&self.wf.defaults);
        let cfg = self.shared.engine.config();
        StepConfig {
            provider: eff
                .provider
                .or_else(|| self.shared.engine.0.default_provider.clone()),
            model: Some(eff.model.unwrap_or_else(|| cfg.default_model.clone())),
            temperature: Some(eff.temperature.unwrap_or(cfg.default_temperature)),
            max_tokens: Some(eff.max_tokens.unwrap_or(cfg.default_max_tokens)),
            timeout_seconds: eff.timeout.map(|d| d.as_secs_f64()),
        }
    }

    fn step_context(&self, i: u32, config: StepConfig) -> StepContext {
        let mut previous = BTreeMap::new();
        for (j, out) in self.outputs.iter().enumerate() {
            if let Some(v) = out {
                previous.insert(String::from(&*self.wf.names[j]), v.clone());
            }
        }
        StepContext {
            workflow_id: self.shared.run_id,
            step_id: Uuid::from_u128(self.shared.run_id.as_u128() ^ (i as u128 + 1)),
            step_name: String::from(&*self.wf.names[i as usize]),
            correlation_id: self.shared.correlation_id,
            input_data: self.shared.input.clone(),
            variables: self.shared.vars.clone(),
            previous_outputs: previous,
            config,
        }
    }

    /// Decides what to do with a ready step: skip it, fail it, run it inline or start it.
    fn prepare(&mut self, i: u32) -> Prepared {
        let wf = self.wf;
        let step = &wf.steps[i as usize];
        let name = &*step.name;
        if step.explicit_needs
            && step.when.is_none()
            && let Some(&d) = step
                .deps
                .iter()
                .find(|&&d| self.slots[d as usize].status != StepStatus::Completed)
        {
            return Prepared::Skip(format!(
                "skipped: it needs {:?}, which {}",
                &*wf.names[d as usize],
                if self.slots[d as usize].status == StepStatus::Skipped {
                    "was skipped"
                } else {
                    "failed"
                }
            ));
        }
        if let Some(cond) = &step.when {
            let what = || format!("the `when` condition of step {name:?}");
            match template::eval_bool(&wf.env, cond, &self.scope(), &what) {
                Ok(true) => {}
                Ok(false) => {
                    return Prepared::Skip("skipped: its `when` condition is false".to_owned());
                }
                Err(e) => return Prepared::Fail(step_failed(name, &e.to_string())),
            }
        }
        let span = tracing::info_span!(
            SPAN_STEP,
            { STEP_NAME } = %step.name,
            { STEP_KIND } = %step.kind_label,
            { STEP_STATUS } = tracing::field::Empty,
            { STEP_DURATION_MS } = tracing::field::Empty,
        );
        self.slots[i as usize].status = StepStatus::Running;
        transition_step(&self.shared, step, StepStatus::Running);
        let started = Instant::now();
        let step_event = self.run_event.as_ref().map(|run| StepEvent {
            run: run.clone(),
            step: Arc::clone(&step.name),
            kind: Arc::clone(&step.kind_label),
        });
        let l = Launch {
            i,
            started,
            span,
            step_event,
            shared: self.run_event.as_ref().map(|_| Arc::clone(&self.shared)),
            shared_run: Arc::clone(&self.shared),
            step_timeout: step.settings.timeout.or(wf.defaults.timeout),
        };
        match &step.imp {
            StepImpl::Llm { prompt, system } => {
                let scope = self.scope();
                let what_p = || format!("the prompt of step {name:?}");
                let text = match template::render(&wf.env, prompt, &scope, &what_p) {
                    Ok(t) => t,
                    Err(e) => return fail_started(l, &e.to_string()),
                };
                let cfg = self.shared.engine.config();
                let (st, wd) = (&step.settings, &wf.defaults);
                let model = st
                    .model
                    .as_deref()
                    .or(wd.model.as_deref())
                    .unwrap_or(&cfg.default_model);
                let mut req = LlmRequest::new(model, text);
                if let Some(sys) = system {
                    let what_s = || format!("the system prompt of step {name:?}");
                    match template::render(&wf.env, sys, &scope, &what_s) {
                        Ok(t) => req = req.with_system(t),
                        Err(e) => return fail_started(l, &e.to_string()),
                    }
                }
                req.temperature = st
                    .temperature
                    .or(wd.temperature)
                    .unwrap_or(cfg.default_temperature);
                req.max_tokens = st
                    .max_tokens
                    .or(wd.max_tokens)
                    .unwrap_or(cfg.default_max_tokens);
                let pname = st
                    .provider
                    .as_deref()
                    .or(wd.provider.as_deref())
                    .or(self.shared.engine.0.default_provider.as_deref())
                    .unwrap_or_default();
                let Some((pname, svc)) = self.shared.engine.provider(pname) else {
                    let msg = format!(
                        "provider {pname:?} is not registered (registered providers: {})",
                        self.shared.engine.provider_names().join(", ")
                    );
                    return fail_started(l, &msg);
                };
                req.context = CallContext {
                    run_id: Some(self.shared.run_id),
                    workflow: Some(Arc::clone(&wf.name)),
                    step: Some(Arc::clone(&step.name)),
                    correlation_id: Some(self.shared.correlation_id),
                    provider: Some(Arc::clone(&pname)),
                };
                launch(
                    l,
                    svc.oneshot(req)
                        .map(move |res: Result<LlmResponse, LlmError>| match res {
                            Ok(r) => Body {
                                without_usage: u64::from(r.usage.is_none()),
                                outcome: Ok(Value::String(r.content)),
                                usage: r.usage,
                                llm_calls: 1,
                            },
                            Err(e) => Body {
                                outcome: Err(provider_error(&pname, &e)),
                                usage: None,
                                llm_calls: 1,
                                without_usage: 0,
                            },
                        }),
                )
            }
            StepImpl::Transform(f) => {
                let ctx = self.step_context(i, self.step_config(step));
                if l.step_event.is_none() {
                    // No hooks: run inline, no future, no task.
                    let entered = l.span.enter();
                    let r = std::panic::catch_unwind(AssertUnwindSafe(|| f(&ctx)));
                    drop(entered);
                    let outcome = match r {
                        Ok(Ok(v)) => Ok(v),
                        Ok(Err(e)) => Err(format!("transform error: {e}")),
                        Err(p) => Err(format!("transform panicked: {}", panic_message(p))),
                    };
                    return Prepared::Done(StepDone {
                        idx: i,
                        outcome,
                        usage: None,
                        llm_calls: 0,
                        llm_calls_without_usage: 0,
                        started: l.started,
                        span: l.span,
                    });
                }
                let f = Arc::clone(f);
                launch(l, async move {
                    let r = std::panic::catch_unwind(AssertUnwindSafe(|| f(&ctx)));
                    Body::plain(match r {
                        Ok(Ok(v)) => Ok(v),
                        Ok(Err(e)) => Err(format!("transform error: {e}")),
                        Err(p) => Err(format!("transform panicked: {}", panic_message(p))),
                    })
                })
            }
            StepImpl::Call { target, with } => {
                let scope = self.scope();
                let what = || format!("the `with` values of step {name:?}");
                let mut vars = match render_with(&wf.env, with, &scope, &what) {
                    Ok(Value::Object(m)) => m,
                    Ok(_) => Map::new(),
                    Err(e) => return fail_started(l, &e.to_string()),
                };
                let input = vars
                    .remove("input")
                    .unwrap_or_else(|| self.shared.input.clone());
                let shared = Arc::clone(&self.shared);
                let target = target.clone();
                launch(l, async move {
                    let called = target.name().to_owned();
                    match run_child(&shared, &target, input, vars).await {
                        Ok(r) => Body {
                            outcome: Ok(r.output.unwrap_or(Value::Null)),
                            usage: r.metrics.token_usage_total,
                            llm_calls: 0,
                            without_usage: 0,
                        },
                        Err(e) => {
                            let usage =
                                e.result().and_then(|r| r.metrics.token_usage_total.clone());
                            Body {
                                outcome: Err(format!("sub-workflow {called:?}: {e}")),
                                usage,
                                llm_calls: 0,
                                without_usage: 0,
                            }
                        }
                    }
                })
            }
            StepImpl::Plugin(p) => {
                let p = Arc::clone(p);
                let body = self.plugin_body(i, step, p);
                launch(l, body)
            }
            StepImpl::Kind { kind, .. } => {
                let Some(p) = self.plugins.get(i as usize).cloned().flatten() else {
                    let msg = format!("step kind {kind:?} has no plugin for this run");
                    return fail_started(l, &msg);
                };
                let body = self.plugin_body(i, step, p);
                launch(l, body)
            }
        }
    }

    fn plugin_body(
        &mut self,
        i: u32,
        step: &StepDef,
        plugin: Arc<dyn StepPlugin>,
    ) -> impl std::future::Future<Output = Body> + Send + 'static {
        let ctx = self.step_context(i, self.step_config(step));
        let rt = Arc::new(StepRuntime {
            run: Arc::clone(&self.shared),
            ctx,
            step_name: Arc::clone(&step.name),
            usage: std::sync::Mutex::new(UsageAcc::default()),
            state: Mutex::new(None),
        });
        let phase = Arc::new(AtomicU8::new(PHASE_NEW));
        self.live.push((
            i,
            PluginState {
                plugin: Arc::clone(&plugin),
                rt: Arc::clone(&rt),
                phase: Arc::clone(&phase),
            },
        ));
        let pname = plugin.name().to_owned();
        async move {
            phase.store(PHASE_INIT, Ordering::Release);
            let guard = CleanupGuard {
                plugin: Arc::clone(&plugin),
                rt: Arc::clone(&rt),
                phase: Arc::clone(&phase),
            };
            let init = AssertUnwindSafe(async { plugin.init(&rt).await })
                .catch_unwind()
                .await;
            let outcome = match init {
                Err(p) => Err(format!(
                    "plugin {pname:?} panicked in init: {}",
                    panic_message(p)
                )),
                Ok(Err(e)) => Err(format!("plugin {pname:?} failed in init: {e}")),
                Ok(Ok(())) => match AssertUnwindSafe(async { plugin.execute(&rt).await })
                    .catch_unwind()
                    .await
                {
                    Err(p) => Err(format!("plugin {pname:?} panicked: {}", panic_message(p))),
                    Ok(Err(e)) => Err(format!("plugin {pname:?} failed: {e}")),
                    Ok(Ok(v)) => Ok(v),
                },
            };
            let mut outcome = outcome;
            if phase
                .compare_exchange(
                    PHASE_INIT,
                    PHASE_CLEANED,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
                && let Err(p) = AssertUnwindSafe(async { plugin.cleanup(&rt).await })
                    .catch_unwind()
                    .await
                && outcome.is_ok()
            {
                outcome = Err(format!(
                    "plugin {pname:?} panicked in cleanup: {}",
                    panic_message(p)
                ));
            }
            drop(guard);
            let usage = rt.usage.lock().ok().and_then(|u| u.usage.clone());
            Body {
                outcome,
                usage,
                llm_calls: 0,
                without_usage: 0,
            }
        }
    }

    fn release(&mut self, i: u32) {
        for &d in self.wf.steps[i as usize].dependents.iter() {
            let r = &mut self.remaining[d as usize];
            *r -= 1;
            if *r == 0 {
                self.ready.push_back(d);
            }
        }
    }

    /// Records a skipped step (hooks and release are the caller's).
    fn skip(&mut self, i: u32, reason: String) {
        let step = &self.wf.steps[i as usize];
        let slot = &mut self.slots[i as usize];
        slot.status = StepStatus::Skipped;
        slot.error = Some(reason);
        transition_step(&self.shared, step, StepStatus::Skipped);
    }

    /// Records a finished step (hooks and release are the caller's).
    fn finish(&mut self, done: StepDone) {
        // A step that ends after the run was cancelled (perhaps because of it) does not turn
        // the cancellation into a failure.
        if self.stop.is_none() && self.shared.is_cancelled() {
            self.stop = Some(Stop::Cancelled);
        }
        let i = done.idx;
        let step = &self.wf.steps[i as usize];
        if !self.live.is_empty() {
            self.live.retain(|(j, _)| *j != i);
        }
        let elapsed = done.started.elapsed();
        self.llm_calls += done.llm_calls;
        self.llm_calls_without_usage += done.llm_calls_without_usage;
        let slot = &mut self.slots[i as usize];
        slot.duration_ms = ms(elapsed);
        slot.usage = done.usage;
        let status = match done.outcome {
            Ok(v) => {
                self.outputs[i as usize] = Some(v);
                StepStatus::Completed
            }
            Err(e) => {
                let msg = if e.starts_with("step ") {
                    e
                } else {
                    step_failed(&step.name, &e)
                };
                if step.critical && self.stop.is_none() {
                    self.stop = Some(Stop::Failed {
                        step: i,
                        error: msg.clone(),
                    });
                }
                tracing::event!(
                    target: "flowloom::step",
                    tracing::Level::WARN,
                    {
                        { WORKFLOW_ID } = %self.shared.run_id,
                        { CORRELATION_ID } = %self.shared.correlation_id,
                        { STEP_NAME } = %step.name,
                        { STEP_KIND } = %step.kind_label,
                        critical = step.critical,
                    },
                    "{msg}"
                );
                slot.error = Some(msg);
                StepStatus::Failed
            }
        };
        slot.status = status;
        if !done.span.is_disabled() {
            done.span.record(STEP_STATUS, status.as_str());
            done.span.record(STEP_DURATION_MS, ms(elapsed));
        }
        transition_step(&self.shared, step, status);
    }

    async fn end_hooks(&self, i: u32) {
        let Some(run) = &self.run_event else {
            return;
        };
        let step = &self.wf.steps[i as usize];
        let ev = StepEvent {
            run: run.clone(),
            step: Arc::clone(&step.name),
            kind: Arc::clone(&step.kind_label),
        };
        let slot = &self.slots[i as usize];
        let r = StepResult {
            step_id: Uuid::from_u128(self.shared.run_id.as_u128() ^ (i as u128 + 1)),
            name: String::from(&*step.name),
            status: slot.status,
            output: self.outputs[i as usize].clone(),
            error: slot.error.clone(),
            duration_ms: slot.duration_ms,
            token_usage: slot.usage.clone(),
        };
        for h in &self.shared.engine.0.hooks {
            h.on_step_end(&ev, &r).await;
        }
    }
}

/// What every started step carries besides its body.
struct Launch {
    i: u32,
    started: Instant,
    span: Span,
    step_event: Option<StepEvent>,
    /// For the hooks, when there are any.
    shared: Option<Arc<RunShared>>,
    shared_run: Arc<RunShared>,
    step_timeout: Option<Duration>,
}

/// A step that failed before its body could start.
fn fail_started(l: Launch, cause: &str) -> Prepared {
    Prepared::Done(StepDone {
        idx: l.i,
        outcome: Err(cause.to_owned()),
        usage: None,
        llm_calls: 0,
        llm_calls_without_usage: 0,
        started: l.started,
        span: l.span,
    })
}

/// Wraps a step's body (hooks, timeout, panic isolation, span) into one boxed future.
fn launch<B>(l: Launch, body: B) -> Prepared
where
    B: std::future::Future<Output = Body> + Send + 'static,
{
    let Launch {
        i,
        started,
        span,
        step_event,
        shared,
        shared_run,
        step_timeout,
    } = l;
    if let (Some(ev), Some(shared)) = (step_event, shared) {
        // With hooks: an async wrapper awaiting them around the step.
        let span2 = span.clone();
        let fut = async move {
            for h in &shared.engine.0.hooks {
                h.on_step_start(&ev).await;
            }
            StepFuture::new(i, started, span2, shared_run, step_timeout, body).await
        }
        .instrument(span);
        return Prepared::Start(Box::pin(fut));
    }
    Prepared::Start(Box::pin(StepFuture::new(
        i,
        started,
        span,
        shared_run,
        step_timeout,
        body,
    )))
}

pin_project_lite::pin_project! {
    /// A started step: its body under panic isolation, an optional time limit, inside its
    /// span. Written by hand so the body is stored once (an async block would hold it twice).
    struct StepFuture<B> {
        #[pin]
        body: futures_util::future::CatchUnwind<AssertUnwindSafe<B>>,
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
        i: u32,
        started: Instant,
        span: Span,
        run: Arc<RunShared>,
        timeout: Option<Duration>,
    }
}

impl<B: std::future::Future<Output = Body>> StepFuture<B> {
    fn new(
        i: u32,
        started: Instant,
        span: Span,
        run: Arc<RunShared>,
        timeout: Option<Duration>,
        body: B,
    ) -> Self {
        StepFuture {
            body: AssertUnwindSafe(body).catch_unwind(),
            sleep: timeout.map(|t| Box::pin(tokio::time::sleep(t))),
            i,
            started,
            span,
            run,
            timeout,
        }
    }
}

impl<B: std::future::Future<Output = Body>> std::future::Future for StepFuture<B> {
    type Output = StepDone;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<StepDone> {
        let this = self.project();
        let entered = this.span.enter();
        let body = match this.body.poll(cx) {
            Poll::Ready(Ok(b)) => b,
            Poll::Ready(Err(p)) => {
                let label = this
                    .run
                    .workflow
                    .0
                    .steps
                    .get(*this.i as usize)
                    .map_or("", |s| &*s.kind_label);
                Body::plain(Err(format!(
                    "{} panicked: {}",
                    match label.strip_prefix("plugin:") {
                        Some(plugin) => format!("plugin {plugin:?}"),
                        None => format!("the {label} step"),
                    },
                    panic_message(p)
                )))
            }
            Poll::Pending => match this.sleep.as_mut().map(|s| s.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => Body::plain(Err(format!(
                    "timed out after {:?}",
                    this.timeout.unwrap_or_default()
                ))),
                _ => return Poll::Pending,
            },
        };
        drop(entered);
        Poll::Ready(StepDone {
            idx: *this.i,
            outcome: body.outcome,
            usage: body.usage,
            llm_calls: body.llm_calls,
            llm_calls_without_usage: body.without_usage,
            started: *this.started,
            span: std::mem::replace(this.span, Span::none()),
        })
    }
}

/// What a step's body produced.
struct Body {
    outcome: Result<Value, String>,
    usage: Option<TokenUsage>,
    llm_calls: u64,
    without_usage: u64,
}

impl Body {
    fn plain(outcome: Result<Value, String>) -> Self {
        Body {
            outcome,
            usage: None,
            llm_calls: 0,
            without_usage: 0,
        }
    }
}

fn render_with(
    env: &minijinja::Environment<'static>,
    w: &WithTpl,
    scope: &Scope<'_>,
    what: &dyn Fn() -> String,
) -> Result<Value, crate::error::TemplateError> {
    Ok(match w {
        WithTpl::Literal(v) => v.clone(),
        WithTpl::Text(t) => Value::String(template::render(env, t, scope, what)?),
        WithTpl::Expr(e) => template::eval_json(env, e, scope, what)?,
        WithTpl::Array(a) => Value::Array(
            a.iter()
                .map(|x| render_with(env, x, scope, what))
                .collect::<Result<_, _>>()?,
        ),
        WithTpl::Object(o) => {
            let mut m = Map::new();
            for (k, x) in o {
                m.insert(k.clone(), render_with(env, x, scope, what)?);
            }
            Value::Object(m)
        }
    })
}
