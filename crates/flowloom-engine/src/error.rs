//! The engine's errors: building an engine ([`BuildError`]), building a workflow
//! ([`WorkflowError`]), running one ([`RunError`]) and rendering templates ([`TemplateError`]).

use std::fmt;
use std::time::Duration;

use flowloom_core::{ValidationErrors, WorkflowResult, WorkflowStatus};

/// Building an [`Engine`](crate::Engine) failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The configuration has invalid values.
    #[error("invalid engine configuration: {0}")]
    Config(ValidationErrors),
    /// `default_provider` names a provider that is not registered.
    #[error(
        "the default provider {name:?} is not registered (registered providers: {registered}); \
         register it with `.provider({name:?}, service)` or pick one of those"
    )]
    UnknownDefaultProvider {
        /// The name given.
        name: String,
        /// The registered names, comma-separated.
        registered: String,
    },
    /// Two providers (or two workflows, or two step kinds) share a name.
    #[error("{what} {name:?} is registered twice; give each a distinct name")]
    Duplicate {
        /// What was registered twice (`provider`, `workflow`, ...).
        what: &'static str,
        /// The name.
        name: String,
    },
    /// The middleware stack could not be built from the configuration.
    #[error("the provider middleware could not be built: {0}")]
    Middleware(String),
    /// A limit was set to an unusable value.
    #[error("invalid `{setting}`: found {value}, expected {expected}")]
    InvalidSetting {
        /// The builder method.
        setting: &'static str,
        /// The value found.
        value: String,
        /// What is allowed.
        expected: &'static str,
    },
}

/// One problem found while validating a workflow definition.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkflowIssue {
    /// The workflow has no steps.
    Empty,
    /// A step name is empty or reserved.
    BadName {
        /// The name.
        name: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// Two steps share a name.
    DuplicateStep {
        /// The name.
        name: String,
    },
    /// `needs` names a step that does not exist.
    UnknownNeed {
        /// The step with the bad `needs`.
        step: String,
        /// The unknown name.
        need: String,
        /// The step names that exist.
        known: String,
    },
    /// The steps' dependencies form a cycle.
    Cycle {
        /// The cycle, e.g. `["a", "b", "c", "a"]`.
        path: Vec<String>,
    },
    /// A template or condition does not parse.
    TemplateSyntax {
        /// The step.
        step: String,
        /// Which part (`prompt`, `system`, `when`, `with.code`, ...).
        part: String,
        /// The parser's message.
        message: String,
    },
    /// A template uses a variable nothing provides.
    UndefinedVariable {
        /// The step.
        step: String,
        /// Which part (`prompt`, `system`, `when`, `with.code`, ...).
        part: String,
        /// The variable.
        variable: String,
        /// What a template of this step may use.
        available: String,
    },
    /// A template uses the output of a step that does not run before this one.
    NotADependency {
        /// The step.
        step: String,
        /// The step whose output is used.
        used: String,
    },
    /// A parameter is out of range.
    InvalidParameter {
        /// The step (or `<workflow>` for workflow defaults).
        step: String,
        /// The problem.
        message: String,
    },
}

impl fmt::Display for WorkflowIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkflowIssue::Empty => {
                f.write_str("the workflow has no steps; add one with `.llm(..)`, `.transform(..)` or `.step(..)`")
            }
            WorkflowIssue::BadName { name, reason } => {
                write!(f, "step name {name:?} cannot be used: {reason}")
            }
            WorkflowIssue::DuplicateStep { name } => {
                write!(f, "two steps are named {name:?}; step names must be unique")
            }
            WorkflowIssue::UnknownNeed { step, need, known } => write!(
                f,
                "step {step:?} needs {need:?}, which is not a step of this workflow (steps: {known})"
            ),
            WorkflowIssue::Cycle { path } => write!(
                f,
                "the steps depend on each other in a cycle: {}; remove one of these `needs`",
                path.join(" -> ")
            ),
            WorkflowIssue::TemplateSyntax {
                step,
                part,
                message,
            } => write!(f, "step {step:?}: the {part} does not parse: {message}"),
            WorkflowIssue::UndefinedVariable {
                step,
                part,
                variable,
                available,
            } => write!(
                f,
                "step {step:?}: the {part} uses `{variable}`, which nothing provides (available: {available}); \
                 name a step, or declare a workflow variable with `.var({variable:?})`"
            ),
            WorkflowIssue::NotADependency { step, used } => write!(
                f,
                "step {step:?} uses the output of {used:?}, but does not run after it; \
                 add {used:?} to its `needs`"
            ),
            WorkflowIssue::InvalidParameter { step, message } => {
                write!(f, "step {step:?}: {message}")
            }
        }
    }
}

/// A workflow definition is invalid; every problem found is listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct WorkflowError {
    /// The workflow's name.
    pub workflow: String,
    /// Every problem found.
    pub issues: Vec<WorkflowIssue>,
}

impl fmt::Display for WorkflowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.issues.len();
        write!(
            f,
            "workflow {:?} is invalid ({n} problem{}):",
            self.workflow,
            if n == 1 { "" } else { "s" }
        )?;
        for issue in &self.issues {
            write!(f, "\n  - {issue}")?;
        }
        Ok(())
    }
}

/// A template could not be rendered, or a condition not evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// The template uses a variable that has no value in this run.
    #[error("{what} uses `{variable}`, which is not defined (defined here: {available})")]
    Undefined {
        /// Which template, e.g. `the prompt of step "draft"`.
        what: String,
        /// The variable.
        variable: String,
        /// The names that are defined.
        available: String,
    },
    /// The template does not parse.
    #[error("{what} does not parse: {message}")]
    Syntax {
        /// Which template.
        what: String,
        /// The parser's message.
        message: String,
    },
    /// Rendering failed (a filter error, a missing attribute, ...).
    #[error("{what} could not be rendered: {message}")]
    Render {
        /// Which template.
        what: String,
        /// The template engine's message.
        message: String,
    },
}

/// Why a run did not complete.
///
/// Errors found before the run starts (an unregistered provider, a missing sub-workflow, an
/// engine at capacity) carry no result. A run that started and then failed, timed out or was
/// cancelled carries its [`WorkflowResult`]: the steps completed so far, their outputs and the
/// metrics ([`RunError::result`]).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A step names a provider the engine does not have.
    #[error(
        "workflow {workflow:?}: step {step:?} uses provider {provider:?}, which is not registered \
         (registered providers: {registered}); register it with `Engine::builder().provider({provider:?}, ..)`"
    )]
    UnknownProvider {
        /// The workflow.
        workflow: String,
        /// The step.
        step: String,
        /// The provider asked for.
        provider: String,
        /// The registered names.
        registered: String,
    },
    /// A step makes model calls but the engine has no provider at all.
    #[error(
        "workflow {workflow:?}: step {step:?} calls a model, but the engine has no provider; \
         add one with `Engine::builder().provider(\"openai\", ..)` (or a mock provider in tests)"
    )]
    NoProvider {
        /// The workflow.
        workflow: String,
        /// The step.
        step: String,
    },
    /// A step names no provider and the engine has several without a default.
    #[error(
        "workflow {workflow:?}: step {step:?} names no provider and the engine has several \
         ({registered}); set `.default_provider(..)` on the engine or `.provider(..)` on the step"
    )]
    AmbiguousProvider {
        /// The workflow.
        workflow: String,
        /// The step.
        step: String,
        /// The registered names.
        registered: String,
    },
    /// A sub-workflow call names a workflow the engine does not know.
    #[error(
        "workflow {workflow:?}: step {step:?} calls workflow {called:?}, which is not registered \
         (registered workflows: {registered}); register it with `Engine::builder().workflow(..)`"
    )]
    UnknownWorkflow {
        /// The calling workflow.
        workflow: String,
        /// The step.
        step: String,
        /// The name called.
        called: String,
        /// The registered names.
        registered: String,
    },
    /// A step uses a step kind the engine does not know.
    #[error(
        "workflow {workflow:?}: step {step:?} is of kind {kind:?}, which is not registered \
         (registered kinds: {registered}); register it with `Engine::builder().step_kind({kind:?}, ..)`"
    )]
    UnknownStepKind {
        /// The workflow.
        workflow: String,
        /// The step.
        step: String,
        /// The kind.
        kind: String,
        /// The registered kinds.
        registered: String,
    },
    /// A registered step kind refused the step's parameters.
    #[error(
        "workflow {workflow:?}: step {step:?} (kind {kind:?}) has invalid parameters: {message}"
    )]
    InvalidStep {
        /// The workflow.
        workflow: String,
        /// The step.
        step: String,
        /// The kind.
        kind: String,
        /// The factory's message.
        message: String,
    },
    /// Workflows call each other in a cycle.
    #[error("workflows call each other in a cycle: {}; a workflow cannot call itself", path.join(" -> "))]
    WorkflowCycle {
        /// The call path, e.g. `["a", "b", "a"]`.
        path: Vec<String>,
    },
    /// The engine already has as many runs in flight as it allows, and is set to refuse more.
    #[error(
        "the engine is at capacity: {limit} runs in flight; retry later, raise \
         `.max_runs_in_flight(..)`, or use `OverflowPolicy::Wait`"
    )]
    AtCapacity {
        /// The configured limit.
        limit: usize,
    },
    /// The run's timeout passed while it waited for a slot, before any step ran.
    #[error("the run waited {waited:?} for a free slot and its timeout passed before it started")]
    QueueTimeout {
        /// How long it waited.
        waited: Duration,
    },
    /// The run options are invalid.
    #[error("invalid run options: {0}")]
    InvalidOptions(String),
    /// A blocking call was made from inside an async runtime.
    #[error(
        "`run_blocking` was called from inside an async runtime, where it would block a worker \
         thread; use `engine.run(..).await` there instead"
    )]
    BlockingInAsync,
    /// The background runtime for blocking calls could not start.
    #[error("could not start the runtime for blocking calls: {0}")]
    Runtime(String),
    /// A step failed and the run stopped.
    #[error("{}", describe(.0))]
    Failed(Box<WorkflowResult>),
    /// The run's timeout passed.
    #[error("{}", describe(.0))]
    Timeout(Box<WorkflowResult>),
    /// The run was cancelled.
    #[error("{}", describe(.0))]
    Cancelled(Box<WorkflowResult>),
}

fn describe(r: &WorkflowResult) -> String {
    format!(
        "workflow {:?} {}: {}",
        r.workflow_name,
        match r.status {
            WorkflowStatus::Timeout => "timed out",
            WorkflowStatus::Cancelled => "was cancelled",
            _ => "failed",
        },
        r.error.as_deref().unwrap_or("no reason recorded")
    )
}

impl RunError {
    /// The run's result (steps, outputs, metrics), for runs that started.
    pub fn result(&self) -> Option<&WorkflowResult> {
        match self {
            RunError::Failed(r) | RunError::Timeout(r) | RunError::Cancelled(r) => Some(r),
            _ => None,
        }
    }

    /// Takes the run's result, for runs that started.
    pub fn into_result(self) -> Option<WorkflowResult> {
        match self {
            RunError::Failed(r) | RunError::Timeout(r) | RunError::Cancelled(r) => Some(*r),
            _ => None,
        }
    }

    /// True when the run timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, RunError::Timeout(_) | RunError::QueueTimeout { .. })
    }

    /// True when the run was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, RunError::Cancelled(_))
    }

    /// True when the run was refused or failed before any step ran.
    pub fn is_before_start(&self) -> bool {
        self.result().is_none()
    }

    /// The step that failed, where one did.
    pub fn failed_step(&self) -> Option<&str> {
        self.result()?.failed_step.as_deref()
    }

    /// Turns a finished result into `Ok` when it completed and the matching error otherwise.
    pub fn check(result: WorkflowResult) -> Result<WorkflowResult, RunError> {
        match result.status {
            WorkflowStatus::Completed => Ok(result),
            WorkflowStatus::Timeout => Err(RunError::Timeout(Box::new(result))),
            WorkflowStatus::Cancelled => Err(RunError::Cancelled(Box::new(result))),
            _ => Err(RunError::Failed(Box::new(result))),
        }
    }
}
