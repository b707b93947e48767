//! Span, attribute and metric names, defined once.
//!
//! Model-call attributes follow the OpenTelemetry GenAI semantic conventions; workflow and
//! step attributes are flowloom's own. Use them as field names in `tracing` macros with the
//! `{ CONST }` syntax: `tracing::info_span!("step", { STEP_NAME } = name)`.

/// Span name of a workflow run.
pub const SPAN_WORKFLOW: &str = "workflow";
/// Span name of a step.
pub const SPAN_STEP: &str = "step";

/// Workflow name.
pub const WORKFLOW_NAME: &str = "workflow.name";
/// Run (execution) id.
pub const WORKFLOW_ID: &str = "workflow.id";
/// Correlation id shared by related operations.
pub const CORRELATION_ID: &str = "correlation_id";
/// Run status (`RUNNING`, `COMPLETED`, ...).
pub const WORKFLOW_STATUS: &str = "workflow.status";
/// Step name.
pub const STEP_NAME: &str = "step.name";
/// Step kind (`llm`, `transform`, `workflow`, `plugin:<name>`, ...).
pub const STEP_KIND: &str = "step.kind";
/// Step status.
pub const STEP_STATUS: &str = "step.status";
/// Step duration in milliseconds.
pub const STEP_DURATION_MS: &str = "step.duration_ms";

/// `gen_ai.operation.name` (`chat`, `embeddings`).
pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
/// `gen_ai.provider.name`.
pub const GEN_AI_PROVIDER_NAME: &str = "gen_ai.provider.name";
/// `gen_ai.request.model`.
pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
/// `gen_ai.request.temperature`.
pub const GEN_AI_REQUEST_TEMPERATURE: &str = "gen_ai.request.temperature";
/// `gen_ai.request.max_tokens`.
pub const GEN_AI_REQUEST_MAX_TOKENS: &str = "gen_ai.request.max_tokens";
/// `gen_ai.response.model`.
pub const GEN_AI_RESPONSE_MODEL: &str = "gen_ai.response.model";
/// `gen_ai.response.id`.
pub const GEN_AI_RESPONSE_ID: &str = "gen_ai.response.id";
/// `gen_ai.response.finish_reasons`.
pub const GEN_AI_RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
/// `gen_ai.usage.input_tokens`.
pub const GEN_AI_USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
/// `gen_ai.usage.output_tokens`.
pub const GEN_AI_USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
/// `error.type`.
pub const ERROR_TYPE: &str = "error.type";

/// Metric: `gen_ai.client.token.usage` (histogram, tokens).
pub const METRIC_TOKEN_USAGE: &str = "gen_ai.client.token.usage";
/// Metric: `gen_ai.client.operation.duration` (histogram, seconds).
pub const METRIC_OPERATION_DURATION: &str = "gen_ai.client.operation.duration";
/// Metric: runs by status (counter).
pub const METRIC_RUNS: &str = "flowloom.workflow.runs";
/// Metric: steps by status (counter).
pub const METRIC_STEPS: &str = "flowloom.workflow.steps";
