//! The request bodies the provider sends, and the responses it accepts, checked against
//! OpenAI's published API (`../shared/openai-api-subset.yaml` beside the workspace).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

#[path = "support/schema.rs"]
mod schema;

use flowloom_core::{
    EmbeddingRequest, EncodingFormat, LlmRequest, Message, ResponseFormat, StreamEvent,
    StreamRequest, ToolCall, ToolChoice, ToolDefinition,
};
use flowloom_provider_openai::OpenAiProvider;
use flowloom_testkit::server::{MockOpenAiServer, UsageShape};
use futures_util::StreamExt;
use schema::Spec;
use serde_json::{Value, json};
use tower::ServiceExt;

fn provider(server: &MockOpenAiServer) -> OpenAiProvider {
    OpenAiProvider::builder()
        .api_key("sk-test")
        .base_url(server.base_url())
        .build()
        .unwrap()
}

#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
struct Verdict {
    safe: bool,
    reasons: Vec<String>,
}

fn requests() -> Vec<LlmRequest> {
    let plain = LlmRequest::new("gpt-4o-mini", "hello").with_system("be brief");
    let reasoning = LlmRequest::new("o3-mini", "think").with_max_tokens(50);
    let extras = LlmRequest::new("gpt-4o", "seeded")
        .with_extra("seed", 7)
        .with_extra("top_p", 0.5)
        .with_extra("stop", json!(["\n"]))
        .with_extra("user", "u-1");

    let mut tools = LlmRequest::from_messages(
        "gpt-4o",
        vec![
            Message::system("use tools"),
            Message::user("weather in Paris?"),
            {
                let mut m = Message::assistant("");
                m.tool_calls = vec![ToolCall {
                    id: "call_1".into(),
                    name: "get_weather".into(),
                    arguments: "{\"city\":\"Paris\"}".into(),
                }];
                m
            },
            Message::tool("call_1", "sunny"),
            {
                let mut m = Message::user("and tomorrow?");
                m.name = Some("alice".into());
                m
            },
        ],
    );
    tools.tools = vec![ToolDefinition {
        name: "get_weather".into(),
        description: Some("Weather by city".into()),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"], "additionalProperties": false}),
        strict: Some(true),
    }];
    let mut forced = tools.clone();
    forced.tool_choice = Some(ToolChoice::Function("get_weather".into()));
    let mut auto = tools.clone();
    auto.tool_choice = Some(ToolChoice::Auto);
    let mut required = tools.clone();
    required.tool_choice = Some(ToolChoice::Required);

    let mut schema = LlmRequest::new("gpt-4o", "judge");
    schema.response_format = Some(ResponseFormat::json_schema_for::<Verdict>());
    let mut object = LlmRequest::new("gpt-4o", "json please");
    object.response_format = Some(ResponseFormat::JsonObject);
    let mut text = LlmRequest::new("gpt-4o", "text please");
    text.response_format = Some(ResponseFormat::Text);
    vec![
        plain, reasoning, extras, tools, forced, auto, required, schema, object, text,
    ]
}

#[tokio::test]
async fn chat_request_bodies_follow_create_chat_completion_request() {
    let spec = Spec::load();
    let server = MockOpenAiServer::start().await.unwrap();
    let p = provider(&server);
    for req in requests() {
        p.clone().oneshot(req.clone()).await.unwrap();
        let s = p.clone().oneshot(StreamRequest(req)).await.unwrap();
        let events: Vec<_> = s.collect().await;
        assert!(matches!(events.last(), Some(Ok(StreamEvent::Done(_)))));
    }
    let sent = server.requests_to("/v1/chat/completions");
    assert_eq!(sent.len(), 20);
    for r in sent {
        spec.assert_valid("CreateChatCompletionRequest", r.body.as_ref().unwrap());
    }
}

#[tokio::test]
async fn embedding_request_bodies_follow_create_embedding_request() {
    let spec = Spec::load();
    let server = MockOpenAiServer::start().await.unwrap();
    let p = provider(&server);
    let mut req = EmbeddingRequest::new("text-embedding-3-small", vec!["a".into(), "b".into()]);
    p.clone().oneshot(req.clone()).await.unwrap();
    req.dimensions = Some(4);
    req.encoding_format = EncodingFormat::Base64;
    req.extra_params.insert("user".into(), json!("u-1"));
    p.clone().oneshot(req).await.unwrap();
    let many: Vec<String> = (0..3000).map(|i| i.to_string()).collect();
    p.clone()
        .oneshot(EmbeddingRequest::new("text-embedding-3-small", many))
        .await
        .unwrap();
    let sent = server.requests_to("/v1/embeddings");
    assert_eq!(sent.len(), 4);
    for r in sent {
        spec.assert_valid("CreateEmbeddingRequest", r.body.as_ref().unwrap());
    }
}

#[tokio::test]
async fn the_responses_the_provider_accepts_follow_the_published_shapes() {
    let spec = Spec::load();
    let server = MockOpenAiServer::start().await.unwrap();
    let http = reqwest::Client::new();
    let p = provider(&server);
    let post = |path: &'static str, body: Value| {
        let http = http.clone();
        let url = server.url(path);
        async move {
            http.post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };

    // Non-streamed chat, plain and with a tool call; the provider reads both.
    let chat = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "a b"}]});
    let text = post("/v1/chat/completions", chat.clone()).await;
    spec.assert_valid(
        "CreateChatCompletionResponse",
        &serde_json::from_str(&text).unwrap(),
    );
    let mut tool = chat.clone();
    tool["tools"] = json!([{"type": "function", "function": {"name": "f", "parameters": {}}}]);
    tool["tool_choice"] = json!("required");
    let text = post("/v1/chat/completions", tool).await;
    spec.assert_valid(
        "CreateChatCompletionResponse",
        &serde_json::from_str(&text).unwrap(),
    );
    assert_eq!(
        p.clone()
            .oneshot(LlmRequest::new("gpt-4o-mini", "a b"))
            .await
            .unwrap()
            .content,
        "a b"
    );

    // Every chunk of a stream, in both usage shapes.
    for shape in [UsageShape::EmptyChoices, UsageShape::EmptyDelta] {
        server.configure(|c| *c = c.clone().with_usage_shape(shape));
        let mut s = chat.clone();
        s["stream"] = json!(true);
        s["stream_options"] = json!({"include_usage": true});
        let text = post("/v1/chat/completions", s).await;
        let chunks: Vec<Value> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert!(chunks.len() >= 4);
        for c in &chunks {
            spec.assert_valid("CreateChatCompletionStreamResponse", c);
        }
    }

    // Embeddings in both encodings. The published schema types `embedding` as an array of
    // numbers only, while the API sends a base64 string when asked for `base64`: that field
    // is checked to be a string and the rest of the body against the schema.
    for format in ["float", "base64"] {
        let body = json!({"model": "text-embedding-3-small", "input": ["x", "y z"],
                          "encoding_format": format});
        let text = post("/v1/embeddings", body).await;
        let mut v: Value = serde_json::from_str(&text).unwrap();
        if format == "base64" {
            for item in v["data"].as_array_mut().unwrap() {
                assert!(item["embedding"].is_string(), "{item}");
                item["embedding"] = json!([0.0]);
            }
        }
        spec.assert_valid("CreateEmbeddingResponse", &v);
    }

    // The models list.
    let text = http
        .get(server.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    spec.assert_valid("ListModelsResponse", &serde_json::from_str(&text).unwrap());

    // An error body.
    server.push_fault(flowloom_testkit::server::Fault::insufficient_quota());
    let text = post("/v1/chat/completions", chat).await;
    spec.assert_valid("ErrorResponse", &serde_json::from_str(&text).unwrap());
}

#[test]
fn the_validator_rejects_what_the_api_rejects() {
    let spec = Spec::load();
    let ok = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    spec.assert_valid("CreateChatCompletionRequest", &ok);

    let bad = [
        json!({"model": "gpt-4o"}),
        json!({"model": "gpt-4o", "messages": []}),
        json!({"model": "gpt-4o", "messages": [{"role": "robot", "content": "hi"}]}),
        json!({"model": "gpt-4o", "messages": [{"role": "tool", "content": "hi"}]}),
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}),
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "n": 0}),
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}],
               "response_format": {"type": "json_schema"}}),
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}],
               "tool_choice": "sometimes"}),
    ];
    for b in &bad {
        assert!(
            !spec.errors("CreateChatCompletionRequest", b).is_empty(),
            "accepted {b}"
        );
    }
    let too_many: Vec<String> = (0..2049).map(|i| i.to_string()).collect();
    for b in [
        json!({"model": "e", "input": too_many}),
        json!({"model": "e", "input": ["x"], "unknown": 1}),
        json!({"model": "e", "input": ["x"], "encoding_format": "hex"}),
        json!({"model": "e", "input": ["x"], "dimensions": 0}),
    ] {
        assert!(
            !spec.errors("CreateEmbeddingRequest", &b).is_empty(),
            "accepted {b}"
        );
    }
}
