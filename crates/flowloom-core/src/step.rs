//! Data flowing between steps ([`StepContext`]) and what a step produces ([`StepResult`]).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::status::StepStatus;
use crate::usage::TokenUsage;

/// The effective model settings of one step, after inheritance from engine defaults and the
/// workflow.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct StepConfig {
    /// Provider name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Completion-token limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Step timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
}

/// Data flowing through the workflow to one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StepContext {
    /// The run this step belongs to.
    pub workflow_id: Uuid,
    /// This step's id.
    pub step_id: Uuid,
    /// This step's name.
    pub step_name: String,
    /// Tracing correlation id.
    pub correlation_id: Uuid,
    /// The workflow's input.
    pub input_data: Value,
    /// Template variables (workflow variables, `env`, sub-workflow `with` values).
    pub variables: Map<String, Value>,
    /// Outputs of the steps that finished before this one, by step name.
    pub previous_outputs: BTreeMap<String, Value>,
    /// The merged model configuration for this step.
    pub config: StepConfig,
}

/// Asked for a step output that is not there, or not text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    /// No step of that name has produced output (yet).
    #[error("no output from step `{step}`: it is not a step this one can see (visible: {visible})")]
    Missing {
        /// The name asked for.
        step: String,
        /// The names that are visible, comma-separated.
        visible: String,
    },
    /// The output is structured data, not text.
    #[error("the output of step `{step}` is not text; use `output_value(\"{step}\")`")]
    NotText {
        /// The name asked for.
        step: String,
    },
}

impl StepContext {
    /// The output of an earlier step, as JSON.
    pub fn output_value(&self, step: &str) -> Result<&Value, OutputError> {
        self.previous_outputs
            .get(step)
            .ok_or_else(|| OutputError::Missing {
                step: step.to_owned(),
                visible: self
                    .previous_outputs
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The text output of an earlier step.
    ///
    /// ```
    /// # use flowloom_core::StepContext;
    /// # let mut ctx = StepContext::new("t", serde_json::json!("in"));
    /// ctx.previous_outputs.insert("draft".into(), "hello".into());
    /// assert_eq!(ctx.output("draft").unwrap(), "hello");
    /// assert!(ctx.output("nope").is_err());
    /// ```
    pub fn output(&self, step: &str) -> Result<&str, OutputError> {
        self.output_value(step)?
            .as_str()
            .ok_or_else(|| OutputError::NotText {
                step: step.to_owned(),
            })
    }

    /// The workflow input as text (`""` when it is not text).
    pub fn input(&self) -> &str {
        self.input_data.as_str().unwrap_or_default()
    }

    /// A context for a step named `step_name` with fresh ids and the given input.
    pub fn new(step_name: impl Into<String>, input: Value) -> Self {
        Self {
            workflow_id: Uuid::new_v4(),
            step_id: Uuid::new_v4(),
            step_name: step_name.into(),
            correlation_id: Uuid::new_v4(),
            input_data: input,
            variables: Map::new(),
            previous_outputs: BTreeMap::new(),
            config: StepConfig::default(),
        }
    }
}

/// What one step produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StepResult {
    /// Step id.
    pub step_id: Uuid,
    /// Step name (unique within its workflow).
    pub name: String,
    /// Outcome.
    pub status: StepStatus,
    /// Output, when it completed.
    pub output: Option<Value>,
    /// Why it failed or was skipped.
    pub error: Option<String>,
    /// Execution time in milliseconds.
    pub duration_ms: f64,
    /// Token usage, when the step made model calls that reported it.
    pub token_usage: Option<TokenUsage>,
}
