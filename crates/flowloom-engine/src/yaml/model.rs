//! The typed definitions of `workflow/v2.0`. Every struct refuses unknown fields; the JSON
//! Schema at `docs/schema/workflow-v2.json` is generated from these types.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::duration::DurationStr;

/// The only `$schema` value this loader reads.
pub const SCHEMA_VERSION: &str = "workflow/v2.0";

/// A `workflow/v2.0` file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "flowloom workflow/v2.0")]
pub struct WorkflowFile {
    /// Schema version; must be `workflow/v2.0`.
    #[serde(rename = "$schema")]
    #[schemars(schema_with = "schema_version")]
    pub schema: String,
    /// Unique identifier of the workflow (how templates and loops call it).
    pub name: String,
    /// Semantic version, e.g. `1.0.0`.
    pub version: String,
    /// Human-readable description (non-empty).
    pub description: String,
    /// Workflow-level defaults every step inherits.
    pub execution: ExecutionContext,
    /// Environment values, visible to templates as `{{ env.NAME }}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, EnvValue>,
    /// The steps (at least one).
    #[schemars(length(min = 1))]
    pub steps: Vec<Step>,
    /// Iterative loops, run after the steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loops: Vec<LoopDef>,
}

fn schema_version(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "const": SCHEMA_VERSION, "description": "Schema version; must be `workflow/v2.0`." })
}

/// An `env` value: text, a number or a boolean (numbers and booleans become their text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged, expecting = "a text, a number or a boolean")]
pub enum EnvValue {
    /// Text.
    Text(String),
    /// A number.
    Number(serde_json::Number),
    /// A boolean.
    Bool(bool),
}

impl EnvValue {
    /// The value as text.
    pub fn as_text(&self) -> String {
        match self {
            EnvValue::Text(s) => s.clone(),
            EnvValue::Number(n) => n.to_string(),
            EnvValue::Bool(b) => b.to_string(),
        }
    }
}

/// `execution`: workflow-level defaults (the `MCPQuery` properties), one provider or a
/// failover chain.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecutionContext {
    /// Provider name (with `model`); or use `providers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Temperature, 0.0 to 2.0 (default: the engine's `default_temperature`, 0.7 unless
    /// configured).
    #[schemars(range(min = 0.0, max = 2.0))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Completion-token limit, 1 to 128000 (default: the engine's `default_max_tokens`, 1024
    /// unless configured).
    #[schemars(range(min = 1, max = 128000))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// MCP servers to enable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers: Option<Vec<String>>,
    /// Skills to enable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skills: Option<Vec<String>>,
    /// Each step's time limit (a step's own `timeout` overrides it). Unset, a step has no
    /// time limit of its own; a `consensus` step still gives its executions 60s together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationStr>,
    /// A failover chain, tried in order (instead of `provider` + `model`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub providers: Option<Vec<ProviderFallback>>,
    /// Log verbosity. Read and validated for compatibility only: it has no effect yet (the log
    /// level comes from `FLOWLOOM_LOG_LEVEL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    /// Disable colours in console output. Read and validated for compatibility only: it has
    /// no effect yet (nothing prints in colour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_color: Option<bool>,
    /// Run steps whose dependencies are met at the same time (default true). `false` runs one
    /// step at a time, in declaration order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<bool>,
    /// Most steps running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_workers: Option<u32>,
    /// What a failing step does to the run (default `stop`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
    /// The whole run's timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_timeout: Option<DurationStr>,
}

/// One entry of a failover chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderFallback {
    /// Provider name.
    pub provider: String,
    /// Model name.
    pub model: String,
    /// Temperature for this provider.
    #[schemars(range(min = 0.0, max = 2.0))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Completion-token limit for this provider.
    #[schemars(range(min = 1, max = 128000))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Call timeout for this provider (default: `execution.timeout`, else none; a step's
    /// `timeout` overrides it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationStr>,
}

/// Log verbosity (`execution.logging`): accepted for compatibility, no effect yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Logging {
    /// Normal.
    Normal,
    /// More detail.
    Verbose,
    /// Everything.
    Noisy,
}

/// What a failing step does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Stop the run (the default); `fail` is the same.
    #[serde(alias = "fail")]
    Stop,
    /// Go on; steps that need the failed one are skipped.
    Continue,
}

/// What a failing step (or loop iteration) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Go on.
    Continue,
    /// Fail.
    Fail,
    /// Try again (loops only; never past `max_iterations`).
    Retry,
}

/// One step. Exactly one mode: `run`, `template`, `embeddings` or `consensus` (a step with
/// `loop.workflow` needs none).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Unique step name; later steps read its output as `{{ name }}`.
    pub name: String,
    /// Steps to wait for (only steps declared before this one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs: Option<Vec<String>>,
    /// An expression; the step is skipped when it is false, e.g. `"{{ check == 'YES' }}"`.
    #[serde(rename = "if", default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// Provider override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Model override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Temperature override.
    #[schemars(range(min = 0.0, max = 2.0))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Completion-token limit override.
    #[schemars(range(min = 1, max = 128000))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// MCP servers override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers: Option<Vec<String>>,
    /// Skills override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skills: Option<Vec<String>>,
    /// This step's time limit, over `execution.timeout` (a step `loop`: the whole loop). Unset
    /// in both, the step has no limit of its own; a `consensus` step still gives its
    /// executions 60s together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationStr>,
    /// Most tool-call rounds this step may take (with MCP servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_iterations: Option<u32>,
    /// What this step failing does (`continue` lets the run go on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnFailure>,
    /// Mode: a model call; the prompt supports `{{ }}` interpolation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Mode: call another workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateCall>,
    /// Mode: generate embeddings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embeddings: Option<EmbeddingsConfig>,
    /// Mode: ask several models and require agreement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consensus: Option<ConsensusConfig>,
    /// Run this step once per item.
    #[serde(rename = "loop", default, skip_serializing_if = "Option::is_none")]
    pub loop_: Option<StepLoop>,
}

/// `template`: a call of another workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateCall {
    /// The workflow to call, by name.
    pub name: String,
    /// Its variables; every key becomes a variable of the called workflow (values are
    /// rendered first when they are text).
    #[serde(rename = "with", default, skip_serializing_if = "Map::is_empty")]
    pub with_: Map<String, Value>,
}

/// `embeddings`: vectors for texts.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsConfig {
    /// Inline text(s) (or use `input_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<TextOrList>,
    /// A file to read the text from (relative to the workflow file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_file: Option<String>,
    /// Provider override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Model override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// How texts are split before embedding (none: each text is one chunk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_strategy: Option<ChunkStrategy>,
    /// Most tokens in one chunk (default 512).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_chunk_size: Option<u32>,
    /// Tokens repeated between consecutive chunks (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<u32>,
    /// Vector dimensions, for models that support shortening.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    /// Wire encoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<EmbeddingEncoding>,
    /// Include chunk text and position in the output (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_metadata: Option<bool>,
    /// Output shape (default json).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_format: Option<OutputFormat>,
    /// Write the output to this file too (relative to the workflow file's directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_file: Option<String>,
}

/// One text or several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged, expecting = "a text or a list of texts")]
pub enum TextOrList {
    /// One text.
    One(String),
    /// Several texts.
    Many(Vec<String>),
}

impl TextOrList {
    /// The texts.
    pub fn texts(&self) -> Vec<String> {
        match self {
            TextOrList::One(s) => vec![s.clone()],
            TextOrList::Many(v) => v.clone(),
        }
    }
}

/// How to split text into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChunkStrategy {
    /// At sentence ends, packing sentences up to `max_chunk_size` tokens.
    Sentence,
    /// At blank lines, packing paragraphs up to `max_chunk_size` tokens.
    Paragraph,
    /// Every `max_chunk_size` tokens.
    Fixed,
}

/// Vector wire encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingEncoding {
    /// JSON numbers.
    Float,
    /// Base64.
    Base64,
}

/// Embeddings output shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// A JSON document with the model, usage and one record per chunk.
    Json,
    /// CSV text: a header and one row per chunk, `input,index,tokens,text,d0,d1,...` (with
    /// metadata) or `d0,d1,...` alone.
    Csv,
    /// JSON arrays of vectors only.
    Compact,
}

/// `consensus`: one prompt to several models; agreement required.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsensusConfig {
    /// The prompt sent to every execution (supports `{{ }}`).
    pub prompt: String,
    /// The executions (at least two).
    #[schemars(length(min = 2))]
    pub executions: Vec<ConsensusExecution>,
    /// How many must agree.
    pub require: Threshold,
    /// One time limit for all executions together (default: the step's `timeout`, else 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationStr>,
}

/// One consensus execution: a provider and model, with optional overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsensusExecution {
    /// Provider name.
    pub provider: String,
    /// Model name.
    pub model: String,
    /// Temperature override.
    #[schemars(range(min = 0.0, max = 2.0))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Completion-token limit override.
    #[schemars(range(min = 1, max = 128000))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// MCP servers override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers: Option<Vec<String>>,
    /// Timeout of this execution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationStr>,
}

/// Agreement threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Threshold {
    /// Every execution agrees.
    #[serde(rename = "unanimous")]
    Unanimous,
    /// More than half agree.
    #[serde(rename = "majority")]
    Majority,
    /// At least two thirds agree.
    #[serde(rename = "2/3")]
    TwoThirds,
}

impl Threshold {
    /// The spelling in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Threshold::Unanimous => "unanimous",
            Threshold::Majority => "majority",
            Threshold::TwoThirds => "2/3",
        }
    }

    /// How many agreeing answers out of `total` this threshold needs.
    pub fn required(self, total: usize) -> usize {
        match self {
            Threshold::Unanimous => total,
            Threshold::Majority => total / 2 + 1,
            Threshold::TwoThirds => (total * 2).div_ceil(3),
        }
    }
}

/// A top-level loop: call a workflow until a condition holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoopDef {
    /// Unique loop name; its result is visible as `{{ name }}` like a step's.
    pub name: String,
    /// The workflow called each iteration.
    pub workflow: String,
    /// Its variables (may use `{{ loop.iteration }}`, `{{ loop.last.output }}`, `{{ loop.history }}`).
    #[serde(rename = "with", default, skip_serializing_if = "Map::is_empty")]
    pub with_: Map<String, Value>,
    /// Safety limit: never more iterations than this (retries included).
    #[schemars(range(min = 1))]
    pub max_iterations: u32,
    /// The exit condition, judged by a model after each iteration.
    #[schemars(length(min = 1))]
    pub until: String,
    /// What a failed iteration does (default `fail`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnFailure>,
    /// A variable name that receives every iteration's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accumulate: Option<String>,
    /// The model that judges `until` (default: the workflow's provider and model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<Judge>,
}

/// The model that judges a loop's `until`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Judge {
    /// Provider name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// A step-level `loop`: run the step once per item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepLoop {
    /// The loop mode; `iterate` runs once per item.
    pub mode: LoopMode,
    /// The items: an inline list, or `file://path.json` naming a JSON array.
    pub items: Items,
    /// A workflow to call per item (instead of the step's own mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// Variables of `workflow` (may use `{{ item }}`, `{{ loop.index }}`).
    #[serde(rename = "with", default, skip_serializing_if = "Map::is_empty")]
    pub with_: Map<String, Value>,
    /// Run items at the same time (results stay in item order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<bool>,
    /// Most items at once when `parallel` (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_workers: Option<u32>,
    /// Most items processed (the rest are an error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_iterations: Option<u32>,
    /// What a failed item does (default `fail`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnFailure>,
}

/// Step loop modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LoopMode {
    /// Once per item.
    Iterate,
}

/// Items of an iterate loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(
    untagged,
    expecting = "a list of items, or \"file://path.json\" naming a JSON array"
)]
pub enum Items {
    /// Inline items.
    List(Vec<Value>),
    /// `file://` reference to a JSON array (relative to the workflow file), or a template
    /// rendering to a JSON array.
    Source(String),
}
