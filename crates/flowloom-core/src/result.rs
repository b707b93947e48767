//! What a run returns: [`WorkflowResult`] with its [`ExecutionMetrics`].

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::status::{StepStatus, WorkflowStatus};
use crate::step::StepResult;
use crate::usage::TokenUsage;

/// Performance and usage data of one run. Maps are keyed by step name.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ExecutionMetrics {
    /// Wall-clock time from start to end, in milliseconds.
    pub total_duration_ms: f64,
    /// Duration of each step that ran, in milliseconds.
    pub step_durations: BTreeMap<String, f64>,
    /// Usage summed over every model call that reported it; `None` when none did.
    pub token_usage_total: Option<TokenUsage>,
    /// Usage of each step that reported any.
    pub step_token_usage: BTreeMap<String, TokenUsage>,
    /// Steps that completed.
    pub steps_completed: u32,
    /// Steps that failed.
    pub steps_failed: u32,
    /// Steps that were skipped.
    pub steps_skipped: u32,
    /// Model calls made.
    #[serde(default)]
    pub llm_calls: u64,
    /// Model calls whose provider reported no usage (counted apart, never as zero).
    #[serde(default)]
    pub llm_calls_without_usage: u64,
}

impl ExecutionMetrics {
    /// Builds the per-step maps and counts from step results. `llm_calls` and
    /// `llm_calls_without_usage` are left for the caller, who knows them.
    pub fn from_steps(steps: &[StepResult], total_duration_ms: f64) -> Self {
        let mut m = ExecutionMetrics {
            total_duration_ms,
            ..Default::default()
        };
        for s in steps {
            match s.status {
                StepStatus::Completed => m.steps_completed += 1,
                StepStatus::Failed => m.steps_failed += 1,
                StepStatus::Skipped => m.steps_skipped += 1,
                StepStatus::Pending | StepStatus::Running => {}
            }
            if s.status != StepStatus::Skipped && s.status != StepStatus::Pending {
                m.step_durations.insert(s.name.clone(), s.duration_ms);
            }
            if let Some(u) = &s.token_usage {
                m.step_token_usage.insert(s.name.clone(), u.clone());
            }
        }
        m.token_usage_total = TokenUsage::sum(m.step_token_usage.values());
        m
    }
}

/// The result of one workflow run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WorkflowResult {
    /// The run's id (new for every run).
    pub workflow_id: Uuid,
    /// The workflow's name.
    pub workflow_name: String,
    /// Tracing correlation id.
    pub correlation_id: Uuid,
    /// Terminal status.
    pub status: WorkflowStatus,
    /// The final step's output.
    pub output: Option<Value>,
    /// Why the run failed, timed out or was cancelled; names the step where there is one.
    pub error: Option<String>,
    /// The step that failed, where one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<String>,
    /// Every step's result, in declaration order (steps that never started are `PENDING`).
    pub steps: Vec<StepResult>,
    /// Metrics.
    pub metrics: ExecutionMetrics,
    /// When the run was created (UTC, RFC 3339 in JSON).
    #[serde(with = "utc_rfc3339")]
    #[schemars(with = "String")]
    pub created_at: OffsetDateTime,
    /// When it ended (UTC, RFC 3339 in JSON); `None` while running.
    #[serde(with = "utc_rfc3339::option")]
    #[schemars(with = "Option<String>")]
    pub completed_at: Option<OffsetDateTime>,
}

impl WorkflowResult {
    /// The result of the step named `name`.
    pub fn step(&self, name: &str) -> Option<&StepResult> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// The output of the step named `name`, as text.
    pub fn step_output(&self, name: &str) -> Option<&str> {
        self.step(name)?.output.as_ref()?.as_str()
    }

    /// The final output as text, where it is text.
    pub fn output_text(&self) -> Option<&str> {
        self.output.as_ref()?.as_str()
    }

    /// True when the run completed.
    pub fn is_success(&self) -> bool {
        self.status == WorkflowStatus::Completed
    }
}

/// RFC 3339 in UTC: a timestamp with another offset is converted to UTC when written and when
/// read, so JSON always says `...Z` and equal instants compare equal.
mod utc_rfc3339 {
    use serde::{Deserializer, Serializer};
    use time::{OffsetDateTime, UtcOffset};

    pub(super) fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        time::serde::rfc3339::serialize(&t.to_offset(UtcOffset::UTC), s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        time::serde::rfc3339::deserialize(d).map(|t| t.to_offset(UtcOffset::UTC))
    }

    pub(super) mod option {
        use serde::{Deserializer, Serializer};
        use time::{OffsetDateTime, UtcOffset};

        pub(in super::super) fn serialize<S: Serializer>(
            t: &Option<OffsetDateTime>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            time::serde::rfc3339::option::serialize(&t.map(|t| t.to_offset(UtcOffset::UTC)), s)
        }

        pub(in super::super) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<OffsetDateTime>, D::Error> {
            time::serde::rfc3339::option::deserialize(d)
                .map(|t| t.map(|t| t.to_offset(UtcOffset::UTC)))
        }
    }
}
