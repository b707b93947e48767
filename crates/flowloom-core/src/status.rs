//! Lifecycle states of runs and steps.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a workflow run is: `PENDING → RUNNING → COMPLETED | FAILED | CANCELLED | TIMEOUT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkflowStatus {
    /// Created, not yet started.
    Pending,
    /// Executing.
    Running,
    /// Every step finished (or was allowed to fail).
    Completed,
    /// A step failed unrecoverably.
    Failed,
    /// Cancelled by the caller.
    Cancelled,
    /// The caller's timeout passed.
    Timeout,
}

impl WorkflowStatus {
    /// True for `COMPLETED`, `FAILED`, `CANCELLED` and `TIMEOUT`.
    pub fn is_terminal(self) -> bool {
        !matches!(self, WorkflowStatus::Pending | WorkflowStatus::Running)
    }
    /// The upper-case name, e.g. `RUNNING`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowStatus::Pending => "PENDING",
            WorkflowStatus::Running => "RUNNING",
            WorkflowStatus::Completed => "COMPLETED",
            WorkflowStatus::Failed => "FAILED",
            WorkflowStatus::Cancelled => "CANCELLED",
            WorkflowStatus::Timeout => "TIMEOUT",
        }
    }
}

/// Where a step is: `PENDING → RUNNING → COMPLETED | FAILED`, or `SKIPPED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StepStatus {
    /// Not yet executed.
    Pending,
    /// Executing.
    Running,
    /// Executed successfully.
    Completed,
    /// Execution failed.
    Failed,
    /// Not executed: its condition was false, or a step it needs did not complete.
    Skipped,
}

impl StepStatus {
    /// True for `COMPLETED`, `FAILED` and `SKIPPED`.
    pub fn is_terminal(self) -> bool {
        !matches!(self, StepStatus::Pending | StepStatus::Running)
    }
    /// The upper-case name, e.g. `SKIPPED`.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "PENDING",
            StepStatus::Running => "RUNNING",
            StepStatus::Completed => "COMPLETED",
            StepStatus::Failed => "FAILED",
            StepStatus::Skipped => "SKIPPED",
        }
    }
}

impl std::fmt::Display for WorkflowStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for StepStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
