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

/// `gen_ai.token.type` attribute of [`METRIC_TOKEN_USAGE`]: [`TOKEN_TYPE_INPUT`] or
/// [`TOKEN_TYPE_OUTPUT`].
pub const GEN_AI_TOKEN_TYPE: &str = "gen_ai.token.type";
/// Value of [`GEN_AI_TOKEN_TYPE`] for prompt tokens.
pub const TOKEN_TYPE_INPUT: &str = "input";
/// Value of [`GEN_AI_TOKEN_TYPE`] for completion tokens.
pub const TOKEN_TYPE_OUTPUT: &str = "output";
/// `gen_ai.input.messages`: the prompt as JSON, recorded only when prompt logging is on.
pub const GEN_AI_INPUT_MESSAGES: &str = "gen_ai.input.messages";
/// `gen_ai.output.messages`: the completion as JSON, recorded only when prompt logging is on.
pub const GEN_AI_OUTPUT_MESSAGES: &str = "gen_ai.output.messages";
/// `gen_ai.usage.cache_read.input_tokens`: prompt tokens served from the provider's cache.
pub const GEN_AI_USAGE_CACHED_INPUT_TOKENS: &str = "gen_ai.usage.cache_read.input_tokens";
/// `gen_ai.conversation.id`: flowloom records the run's correlation id here.
pub const GEN_AI_CONVERSATION_ID: &str = "gen_ai.conversation.id";
/// `gen_ai.embeddings.dimension.count`: requested embedding dimensions.
pub const GEN_AI_EMBEDDINGS_DIMENSION_COUNT: &str = "gen_ai.embeddings.dimension.count";

/// Value of [`GEN_AI_OPERATION_NAME`] for chat completions.
pub const OPERATION_CHAT: &str = "chat";
/// Value of [`GEN_AI_OPERATION_NAME`] for embeddings.
pub const OPERATION_EMBEDDINGS: &str = "embeddings";

/// `tracing` span name of a model call. `tracing` span names are static, so the
/// OpenTelemetry span name `"{operation} {model}"` (e.g. `chat gpt-4o-mini`) is carried in
/// [`OTEL_NAME`], which `tracing-opentelemetry` uses as the exported span's name.
pub const SPAN_GEN_AI: &str = "gen_ai";
/// Field that renames a span when exported to OpenTelemetry.
pub const OTEL_NAME: &str = "otel.name";
/// Field that sets an exported span's kind (`client` for model calls).
pub const OTEL_KIND: &str = "otel.kind";
/// Field that sets an exported span's status (`error` on failure).
pub const OTEL_STATUS_CODE: &str = "otel.status_code";
/// Field with an exported span's status description.
pub const OTEL_STATUS_DESCRIPTION: &str = "otel.status_description";

/// `tracing` target of the engine's state-transition events (one per run and step
/// transition, carrying [`WORKFLOW_ID`], [`WORKFLOW_NAME`], [`CORRELATION_ID`], and
/// [`WORKFLOW_STATUS`] or [`STEP_NAME`] + [`STEP_STATUS`]).
pub const TARGET_TRANSITION: &str = "flowloom::transition";
/// `tracing` target of model-call spans.
pub const TARGET_GEN_AI: &str = "flowloom::gen_ai";
/// `tracing` target of token-accounting and budget events.
pub const TARGET_USAGE: &str = "flowloom::usage";

/// Metric attribute: the status a counted run or step reached.
pub const METRIC_ATTR_STATUS: &str = "status";
/// Instrumentation scope name of flowloom's meters and tracers.
pub const INSTRUMENTATION_SCOPE: &str = "flowloom";
