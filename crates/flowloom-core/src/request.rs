//! What goes into a model call: [`LlmRequest`] and its parts.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::validation::{ValidationError, ValidationErrors, max_tokens, non_empty, temperature};

/// The model used when a request names none (the data model's default).
pub const DEFAULT_MODEL: &str = "gpt-4o-mini";
/// The temperature used when a request sets none.
pub const DEFAULT_TEMPERATURE: f64 = 0.7;
/// The completion-token limit used when a request sets none.
pub const DEFAULT_MAX_TOKENS: u32 = 1024;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions to the model.
    System,
    /// The user's turn.
    User,
    /// The model's turn.
    Assistant,
    /// The result of a tool call, answering an assistant's `tool_calls`.
    Tool,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Its text.
    pub content: String,
    /// An optional participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// For [`Role::Tool`]: the id of the tool call this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// For [`Role::Assistant`]: tool calls the model made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
}

impl Message {
    /// A message with `role` and `content` and nothing else.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            name: None,
            tool_call_id: None,
            tool_calls: Vec::new(),
        }
    }
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }
    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
    /// A tool result answering the call `tool_call_id`.
    pub fn tool(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        let mut m = Self::new(Role::Tool, content);
        m.tool_call_id = Some(tool_call_id.into());
        m
    }
}

/// A tool call made by the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ToolCall {
    /// The provider's id for this call.
    pub id: String,
    /// The function name.
    pub name: String,
    /// The arguments, as the JSON text the model produced.
    pub arguments: String,
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolDefinition {
    /// Function name.
    pub name: String,
    /// What it does, for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    pub parameters: Value,
    /// Ask the provider to follow the schema exactly, where supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// No tool call.
    None,
    /// At least one tool call.
    Required,
    /// This function.
    Function(String),
}

/// The shape the answer must take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text (the default).
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON following `schema`.
    JsonSchema {
        /// A name for the schema.
        name: String,
        /// The JSON Schema.
        schema: Value,
        /// Ask the provider to follow the schema exactly.
        #[serde(default)]
        strict: bool,
    },
}

impl ResponseFormat {
    /// A JSON-schema response format generated from a Rust type.
    ///
    /// ```
    /// #[derive(schemars::JsonSchema)]
    /// struct Verdict { safe: bool }
    /// let f = flowloom_core::ResponseFormat::json_schema_for::<Verdict>();
    /// assert!(matches!(f, flowloom_core::ResponseFormat::JsonSchema { .. }));
    /// ```
    pub fn json_schema_for<T: JsonSchema>() -> Self {
        let schema = schemars::schema_for!(T);
        let name = T::schema_name().into_owned();
        ResponseFormat::JsonSchema {
            name,
            schema: schema.to_value(),
            strict: true,
        }
    }
}

/// Where a call comes from: lets layers (token accounting, budgets, tracing) attribute it to a
/// run and a step. Not sent to providers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CallContext {
    /// The workflow run (execution) id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<Uuid>,
    /// The workflow's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub workflow: Option<Arc<str>>,
    /// The step's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub step: Option<Arc<str>>,
    /// The correlation id shared by related operations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The provider name the engine routed this call to (`openai`, `mock`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub provider: Option<Arc<str>>,
}

impl CallContext {
    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        self == &CallContext::default()
    }
}

/// Input to any model call.
///
/// The data model's `prompt` and `system_prompt` map onto `messages`: [`LlmRequest::new`] makes
/// one user message, [`LlmRequest::with_system`] puts a system message first, and
/// [`LlmRequest::prompt`] / [`LlmRequest::system_prompt`] read them back.
///
/// ```
/// use flowloom_core::LlmRequest;
/// let req = LlmRequest::new("gpt-4o-mini", "Say hi")
///     .with_system("Be brief.")
///     .with_temperature(0.2)
///     .with_max_tokens(50);
/// assert_eq!(req.prompt(), Some("Say hi"));
/// assert_eq!(req.system_prompt(), Some("Be brief."));
/// req.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LlmRequest {
    /// Model name.
    #[serde(default = "default_model")]
    pub model: String,
    /// The conversation, oldest first.
    pub messages: Vec<Message>,
    /// Sampling temperature, 0.0–2.0.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// Most tokens to generate, 1–128000.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Functions the model may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolDefinition>,
    /// Whether and which tool must be called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// The answer's required shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Provider-specific parameters passed through unchanged (e.g. `seed`, `top_p`).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra_params: Map<String, Value>,
    /// Where the call comes from; not sent to the provider.
    #[serde(default, skip_serializing_if = "CallContext::is_empty")]
    pub context: CallContext,
}

fn default_model() -> String {
    DEFAULT_MODEL.to_owned()
}
fn default_temperature() -> f64 {
    DEFAULT_TEMPERATURE
}
fn default_max_tokens() -> u32 {
    DEFAULT_MAX_TOKENS
}

impl LlmRequest {
    /// A request for `model` with one user message, `prompt`, and the default parameters.
    pub fn new(model: impl Into<String>, prompt: impl Into<String>) -> Self {
        Self::from_messages(model, vec![Message::user(prompt)])
    }

    /// A request for `model` with the given conversation.
    pub fn from_messages(model: impl Into<String>, messages: Vec<Message>) -> Self {
        Self {
            model: model.into(),
            messages,
            temperature: DEFAULT_TEMPERATURE,
            max_tokens: DEFAULT_MAX_TOKENS,
            tools: Vec::new(),
            tool_choice: None,
            response_format: None,
            extra_params: Map::new(),
            context: CallContext::default(),
        }
    }

    /// Puts a system message first (replacing an existing leading one).
    #[must_use]
    pub fn with_system(mut self, system: impl Into<String>) -> Self {
        match self.messages.first_mut() {
            Some(m) if m.role == Role::System => m.content = system.into(),
            _ => self.messages.insert(0, Message::system(system)),
        }
        self
    }

    /// Sets the temperature.
    #[must_use]
    pub fn with_temperature(mut self, temperature: f64) -> Self {
        self.temperature = temperature;
        self
    }

    /// Sets the completion-token limit.
    #[must_use]
    pub fn with_max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    /// Adds a provider-specific parameter passed through unchanged.
    #[must_use]
    pub fn with_extra(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extra_params.insert(key.into(), value.into());
        self
    }

    /// Sets where the call comes from.
    #[must_use]
    pub fn with_context(mut self, context: CallContext) -> Self {
        self.context = context;
        self
    }

    /// The prompt: the last user message's text.
    pub fn prompt(&self) -> Option<&str> {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| m.content.as_str())
    }

    /// The system prompt: the first system message's text.
    pub fn system_prompt(&self) -> Option<&str> {
        self.messages
            .iter()
            .find(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
    }

    /// Checks the data model's rules: a non-empty prompt, a non-empty model, temperature
    /// 0.0–2.0 and `max_tokens` 1–128000. Every problem is reported.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = Vec::new();
        non_empty("model", &self.model, &mut errors);
        match self.prompt() {
            Some(p) => non_empty("prompt", p, &mut errors),
            None if self.messages.iter().any(|m| !m.content.trim().is_empty()) => {}
            None => errors.push(ValidationError::new(
                "prompt",
                "no message",
                "at least one user message with non-empty text",
            )),
        }
        temperature("temperature", self.temperature, &mut errors);
        max_tokens("max_tokens", self.max_tokens, &mut errors);
        ValidationErrors::check(errors)
    }
}
