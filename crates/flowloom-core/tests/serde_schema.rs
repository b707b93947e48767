//! Every model type survives a JSON round trip, and its generated JSON Schema describes what
//! serde actually writes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use flowloom_core::{
    AttemptRecord, CallContext, EmbeddingRequest, EmbeddingResponse, EncodingFormat,
    ExecutionMetrics, ExecutionMode, FinishReason, FrameworkConfig, LlmRequest, LlmResponse,
    LogLevel, Message, ResponseFormat, Role, Secret, StepConfig, StepContext, StepResult,
    StepStatus, TokenUsage, ToolCall, ToolChoice, ToolDefinition, WorkflowResult, WorkflowStatus,
};
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;

/// Serializes `v`, reads it back (from a `Value` and from text) and checks it is unchanged.
fn roundtrip<T: Serialize + DeserializeOwned + PartialEq + Debug>(v: &T) -> Value {
    let json = serde_json::to_value(v).unwrap();
    let back: T = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(&back, v, "round trip through a Value changed it: {json}");
    let text = serde_json::to_string_pretty(v).unwrap();
    let back: T = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, v, "round trip through text changed it: {text}");
    json
}

fn schema<T: JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap()
}

/// The schema of a struct: every key serde wrote is a property, every required property was
/// written.
#[track_caller]
fn object_schema_matches<T: JsonSchema>(json: &Value) {
    let schema = schema::<T>();
    assert_eq!(schema["type"], "object", "{schema:#}");
    let props = schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("no properties in {schema:#}"));
    let obj = json.as_object().unwrap();
    for key in obj.keys() {
        assert!(
            props.contains_key(key),
            "`{key}` is serialized but not in the schema"
        );
    }
    for req in schema["required"].as_array().into_iter().flatten() {
        let req = req.as_str().unwrap();
        assert!(obj.contains_key(req), "required `{req}` was not serialized");
    }
}

/// Every string an enum serializes to is allowed by its schema.
#[track_caller]
fn enum_schema_allows<T: JsonSchema>(serialized: &[Value]) {
    let schema = schema::<T>();
    let text = schema.to_string();
    for v in serialized {
        let s = v.as_str().map(|s| s.to_owned());
        if let Some(s) = s {
            assert!(
                text.contains(&format!("\"{s}\"")),
                "`{s}` is not in the schema {schema:#}"
            );
        }
    }
}

fn usage() -> TokenUsage {
    let mut u = TokenUsage::new(120, 30, "gpt-4o-mini", "openai");
    u.cached_prompt_tokens = Some(100);
    u.reasoning_tokens = Some(10);
    u
}

fn request() -> LlmRequest {
    let mut assistant = Message::assistant("");
    assistant.tool_calls = vec![ToolCall {
        id: "call_1".into(),
        name: "lookup".into(),
        arguments: "{\"q\":\"x\"}".into(),
    }];
    assistant.name = Some("bot".into());
    LlmRequest::from_messages(
        "gpt-4o",
        vec![
            Message::system("be brief"),
            Message::user("look it up"),
            assistant,
            Message::tool("call_1", "found"),
        ],
    )
    .with_temperature(0.25)
    .with_max_tokens(300)
    .with_extra("seed", 7)
    .with_extra("top_p", 0.5)
    .with_context(context())
}

fn context() -> CallContext {
    CallContext {
        run_id: Some(Uuid::new_v4()),
        workflow: Some(Arc::from("review")),
        step: Some(Arc::from("draft")),
        correlation_id: Some(Uuid::new_v4()),
        provider: Some(Arc::from("mock")),
    }
}

fn response() -> LlmResponse {
    let mut r = LlmResponse::text("hello", "gpt-4o-2024-08-06", "openai").with_usage(usage());
    r.latency_ms = 12.5;
    r.finish_reason = FinishReason::ToolCalls;
    r.response_id = Some("chatcmpl-1".into());
    r.tool_calls = vec![ToolCall {
        id: "c".into(),
        name: "f".into(),
        arguments: "{}".into(),
    }];
    r.attempts = vec![AttemptRecord {
        provider: "openai".into(),
        model: "gpt-4o".into(),
        error: Some("rate limited".into()),
        status: Some(429),
        duration_ms: 3.0,
    }];
    r.cached = true;
    r
}

fn step_result(name: &str, status: StepStatus) -> StepResult {
    StepResult {
        step_id: Uuid::new_v4(),
        name: name.into(),
        status,
        output: Some(json!({"text": "ok", "n": 1})),
        error: (status == StepStatus::Failed).then(|| "boom".to_owned()),
        duration_ms: 4.25,
        token_usage: Some(usage()),
    }
}

fn workflow_result() -> WorkflowResult {
    let steps = vec![
        step_result("a", StepStatus::Completed),
        step_result("b", StepStatus::Failed),
    ];
    let mut metrics = ExecutionMetrics::from_steps(&steps, 42.0);
    metrics.llm_calls = 3;
    metrics.llm_calls_without_usage = 1;
    WorkflowResult {
        workflow_id: Uuid::new_v4(),
        workflow_name: "review".into(),
        correlation_id: Uuid::new_v4(),
        status: WorkflowStatus::Failed,
        output: Some(json!("final")),
        error: Some("step `b` failed: boom".into()),
        failed_step: Some("b".into()),
        steps,
        metrics,
        created_at: datetime!(2026-01-02 03:04:05.123456789 UTC),
        completed_at: Some(datetime!(2026-01-02 03:04:06 UTC)),
    }
}

#[test]
fn token_usage() {
    let json = roundtrip(&usage());
    object_schema_matches::<TokenUsage>(&json);
    // Optional details are left out when not reported.
    let plain = roundtrip(&TokenUsage::new(1, 2, "m", "p"));
    assert_eq!(
        plain,
        json!({"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3, "model": "m", "provider": "p"})
    );
}

#[test]
fn messages_roles_and_tools() {
    for m in request().messages {
        object_schema_matches::<Message>(&roundtrip(&m));
    }
    let roles: Vec<Value> = [Role::System, Role::User, Role::Assistant, Role::Tool]
        .iter()
        .map(roundtrip)
        .collect();
    assert_eq!(
        roles,
        [
            json!("system"),
            json!("user"),
            json!("assistant"),
            json!("tool")
        ]
    );
    enum_schema_allows::<Role>(&roles);

    let call = ToolCall {
        id: "1".into(),
        name: "f".into(),
        arguments: "{}".into(),
    };
    object_schema_matches::<ToolCall>(&roundtrip(&call));
    let def = ToolDefinition {
        name: "lookup".into(),
        description: Some("finds things".into()),
        parameters: json!({"type": "object", "properties": {"q": {"type": "string"}}}),
        strict: Some(true),
    };
    object_schema_matches::<ToolDefinition>(&roundtrip(&def));

    let choices: Vec<Value> = [
        ToolChoice::Auto,
        ToolChoice::None,
        ToolChoice::Required,
        ToolChoice::Function("lookup".into()),
    ]
    .iter()
    .map(roundtrip)
    .collect();
    assert_eq!(choices[3], json!({"function": "lookup"}));
    enum_schema_allows::<ToolChoice>(&choices);
    schema::<ToolChoice>();

    for f in [
        ResponseFormat::Text,
        ResponseFormat::JsonObject,
        ResponseFormat::JsonSchema {
            name: "Verdict".into(),
            schema: json!({"type": "object"}),
            strict: true,
        },
    ] {
        let json = roundtrip(&f);
        assert!(json["type"].is_string());
    }
    assert!(
        schema::<ResponseFormat>()
            .to_string()
            .contains("json_schema")
    );
}

#[test]
fn call_context() {
    let ctx = context();
    object_schema_matches::<CallContext>(&roundtrip(&ctx));
    // An empty context serializes to nothing at all and is left out of the request.
    assert_eq!(roundtrip(&CallContext::default()), json!({}));
    let json = roundtrip(&LlmRequest::new("m", "p"));
    assert!(json.get("context").is_none(), "{json}");
}

#[test]
fn llm_request() {
    let mut req = request();
    req.tools = vec![ToolDefinition {
        name: "lookup".into(),
        description: None,
        parameters: json!({"type": "object"}),
        strict: None,
    }];
    req.tool_choice = Some(ToolChoice::Required);
    req.response_format = Some(ResponseFormat::JsonObject);
    let json = roundtrip(&req);
    object_schema_matches::<LlmRequest>(&json);
    assert_eq!(json["extra_params"], json!({"seed": 7, "top_p": 0.5}));
    // Defaults fill what a minimal request leaves out.
    let minimal: LlmRequest =
        serde_json::from_value(json!({"messages": [{"role": "user", "content": "hi"}]})).unwrap();
    assert_eq!(minimal, LlmRequest::new("gpt-4o-mini", "hi"));
}

#[test]
fn llm_response_and_attempts() {
    let json = roundtrip(&response());
    object_schema_matches::<LlmResponse>(&json);
    object_schema_matches::<AttemptRecord>(&json["attempts"][0]);
    // No usage reported is `null`, which is not a zero usage.
    let none = roundtrip(&LlmResponse::text("x", "m", "p"));
    assert_eq!(none["usage"], Value::Null);
    let back: LlmResponse = serde_json::from_value(none).unwrap();
    assert_eq!(back.usage, None);

    let reasons: Vec<Value> = [
        FinishReason::Stop,
        FinishReason::Length,
        FinishReason::ToolCalls,
        FinishReason::ContentFilter,
        FinishReason::Error,
        FinishReason::Other("paused".into()),
    ]
    .iter()
    .map(roundtrip)
    .collect();
    assert_eq!(reasons[2], json!("tool_calls"));
    assert_eq!(reasons[5], json!("paused"));
    enum_schema_allows::<FinishReason>(&reasons[..5]);
}

#[test]
fn statuses() {
    let ws: Vec<Value> = [
        WorkflowStatus::Pending,
        WorkflowStatus::Running,
        WorkflowStatus::Completed,
        WorkflowStatus::Failed,
        WorkflowStatus::Cancelled,
        WorkflowStatus::Timeout,
    ]
    .iter()
    .map(|s| {
        let j = roundtrip(s);
        assert_eq!(j, json!(s.as_str()));
        j
    })
    .collect();
    enum_schema_allows::<WorkflowStatus>(&ws);
    let ss: Vec<Value> = [
        StepStatus::Pending,
        StepStatus::Running,
        StepStatus::Completed,
        StepStatus::Failed,
        StepStatus::Skipped,
    ]
    .iter()
    .map(|s| {
        let j = roundtrip(s);
        assert_eq!(j, json!(s.as_str()));
        j
    })
    .collect();
    enum_schema_allows::<StepStatus>(&ss);
}

#[test]
fn step_context_and_config() {
    let mut ctx = StepContext::new("draft", json!({"topic": "rust"}));
    ctx.variables.insert("tone".into(), json!("dry"));
    ctx.previous_outputs
        .insert("outline".into(), json!("1. intro"));
    ctx.config = StepConfig {
        provider: Some("mock".into()),
        model: Some("gpt-4o".into()),
        temperature: Some(0.5),
        max_tokens: Some(100),
        timeout_seconds: Some(30.0),
    };
    let json = roundtrip(&ctx);
    object_schema_matches::<StepContext>(&json);
    object_schema_matches::<StepConfig>(&json["config"]);
    assert_eq!(roundtrip(&StepConfig::default()), json!({}));
}

#[test]
fn step_results() {
    for s in [
        StepStatus::Completed,
        StepStatus::Failed,
        StepStatus::Skipped,
    ] {
        object_schema_matches::<StepResult>(&roundtrip(&step_result("s", s)));
    }
}

#[test]
fn execution_metrics() {
    let m = workflow_result().metrics;
    assert_eq!(m.steps_completed, 1);
    assert_eq!(m.steps_failed, 1);
    assert_eq!(m.token_usage_total.as_ref().unwrap().total_tokens, 300);
    object_schema_matches::<ExecutionMetrics>(&roundtrip(&m));
    let empty = ExecutionMetrics::default();
    assert_eq!(roundtrip(&empty)["token_usage_total"], Value::Null);
    assert_eq!(
        m.step_durations,
        BTreeMap::from([("a".into(), 4.25), ("b".into(), 4.25)])
    );
}

#[test]
fn workflow_result_with_rfc3339_utc_timestamps() {
    let r = workflow_result();
    let json = roundtrip(&r);
    object_schema_matches::<WorkflowResult>(&json);
    assert_eq!(json["created_at"], "2026-01-02T03:04:05.123456789Z");
    assert_eq!(json["completed_at"], "2026-01-02T03:04:06Z");
    assert_eq!(json["status"], "FAILED");

    let mut running = r.clone();
    running.completed_at = None;
    running.created_at = OffsetDateTime::now_utc();
    let json = roundtrip(&running);
    assert_eq!(json["completed_at"], Value::Null);
    let created = json["created_at"].as_str().unwrap();
    assert!(created.ends_with('Z'), "{created}");
    // A timestamp with another offset is written, and read back, as the same instant in UTC.
    let mut local = r.clone();
    local.created_at = datetime!(2026-01-02 05:04:05 +02:00);
    local.completed_at = Some(datetime!(2026-01-01 22:04:06 -05:00));
    let json = serde_json::to_value(&local).unwrap();
    assert_eq!(json["created_at"], "2026-01-02T03:04:05Z");
    assert_eq!(json["completed_at"], "2026-01-02T03:04:06Z");
    let mut offset_json = json.clone();
    offset_json["created_at"] = json!("2026-01-02T05:04:05+02:00");
    let read: WorkflowResult = serde_json::from_value(offset_json).unwrap();
    assert_eq!(read.created_at, datetime!(2026-01-02 03:04:05 UTC));
    assert_eq!(read.created_at.offset(), time::UtcOffset::UTC);
    // The schema says these are strings.
    let schema = schema::<WorkflowResult>();
    assert_eq!(schema["properties"]["created_at"]["type"], "string");
}

#[test]
fn framework_config_and_its_enums() {
    let c = FrameworkConfig {
        openai_base_url: Some("http://127.0.0.1:8080/v1".into()),
        default_timeout_seconds: Some(30.0),
        default_execution_mode: ExecutionMode::Sync,
        log_level: LogLevel::Debug,
        log_prompts: true,
        ..FrameworkConfig::default()
    };
    let json = roundtrip(&c);
    object_schema_matches::<FrameworkConfig>(&json);
    assert_eq!(json["default_execution_mode"], "sync");
    assert_eq!(json["log_level"], "DEBUG");
    let modes: Vec<Value> = [ExecutionMode::Async, ExecutionMode::Sync]
        .iter()
        .map(roundtrip)
        .collect();
    enum_schema_allows::<ExecutionMode>(&modes);
    let levels: Vec<Value> = [
        LogLevel::Trace,
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warn,
        LogLevel::Error,
    ]
    .iter()
    .map(roundtrip)
    .collect();
    enum_schema_allows::<LogLevel>(&levels);
    // Missing fields take the defaults.
    let partial: FrameworkConfig = serde_json::from_value(json!({"default_model": "x"})).unwrap();
    assert_eq!(partial.default_model, "x");
    assert_eq!(partial.max_retry_attempts, 3);
}

#[test]
fn secrets_are_never_serialized() {
    let c = FrameworkConfig {
        openai_api_key: Secret::new("sk-live-do-not-leak"),
        ..FrameworkConfig::default()
    };
    let text = serde_json::to_string(&c).unwrap();
    assert!(!text.contains("sk-live"), "{text}");
    assert!(!format!("{c:?}").contains("sk-live"));
    assert_eq!(
        serde_json::to_value(&c).unwrap()["openai_api_key"],
        Value::Null
    );
    // What was written can be read back: the secret is simply absent.
    let back: FrameworkConfig = serde_json::from_str(&text).unwrap();
    assert!(back.openai_api_key.is_empty());
    assert_eq!(
        back,
        FrameworkConfig {
            openai_api_key: Secret::default(),
            ..c.clone()
        }
    );
    // It is read from configuration like any string.
    let read: FrameworkConfig =
        serde_json::from_value(json!({"openai_api_key": "sk-from-file"})).unwrap();
    assert_eq!(read.openai_api_key.expose(), "sk-from-file");
    assert_eq!(format!("{}", read.openai_api_key), "[REDACTED]");
    // The schema says what serialization writes: a string or null.
    let secret = schema::<Secret>().to_string();
    assert!(
        secret.contains("\"null\"") && secret.contains("\"string\""),
        "{secret}"
    );
}

#[test]
fn embeddings() {
    let mut req = EmbeddingRequest::new("text-embedding-3-small", vec!["a".into(), "b".into()]);
    req.dimensions = Some(256);
    req.encoding_format = EncodingFormat::Base64;
    req.extra_params.insert("user".into(), json!("u1"));
    req.context = context();
    object_schema_matches::<EmbeddingRequest>(&roundtrip(&req));
    let formats: Vec<Value> = [EncodingFormat::Float, EncodingFormat::Base64]
        .iter()
        .map(roundtrip)
        .collect();
    enum_schema_allows::<EncodingFormat>(&formats);
    let res = EmbeddingResponse {
        embeddings: vec![
            vec![0.1, -0.25, 1.0 / 3.0],
            vec![f32::MIN_POSITIVE, 0.0, -1.0],
        ],
        model: "text-embedding-3-small".into(),
        provider: "openai".into(),
        usage: Some(TokenUsage::new(2, 0, "text-embedding-3-small", "openai")),
        latency_ms: 7.5,
    };
    object_schema_matches::<EmbeddingResponse>(&roundtrip(&res));
}
