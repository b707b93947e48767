//! The provider against the testkit's mock OpenAI server on 127.0.0.1: success, streaming,
//! embeddings, and every error class.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::time::Duration;

use flowloom_core::{
    BlockingClient, EmbeddingRequest, EncodingFormat, FinishReason, LlmError, LlmRequest,
    LlmStream, Message, StreamEvent, StreamRequest, ToolChoice, ToolDefinition,
};
use flowloom_provider_openai::{AuthStyle, OpenAiProvider, TemperaturePolicy};
use flowloom_testkit::server::{
    Fault, Matcher, MockConfig, MockOpenAiServer, UsageShape, mock_embedding,
};
use futures_util::StreamExt;
use serde_json::json;
use tower::ServiceExt;

const KEY: &str = "sk-test-key-0123456789";

fn provider(server: &MockOpenAiServer) -> OpenAiProvider {
    OpenAiProvider::builder()
        .api_key(KEY)
        .base_url(server.base_url())
        .build()
        .unwrap()
}

async fn chat(p: &OpenAiProvider, req: LlmRequest) -> Result<flowloom_core::LlmResponse, LlmError> {
    p.clone().oneshot(req).await
}

async fn collect(
    stream: LlmStream,
) -> (
    Vec<String>,
    Option<flowloom_core::LlmResponse>,
    Option<LlmError>,
) {
    let mut deltas = Vec::new();
    let mut done = None;
    let mut error = None;
    let mut s = stream;
    while let Some(ev) = s.next().await {
        match ev {
            Ok(StreamEvent::Delta(d)) => deltas.push(d),
            Ok(StreamEvent::Done(r)) => {
                assert!(done.is_none(), "two Done events");
                done = Some(r);
            }
            Ok(other) => panic!("unexpected event {other:?}"),
            Err(e) => {
                error = Some(e);
            }
        }
    }
    (deltas, done, error)
}

fn stream_req(text: &str) -> StreamRequest {
    StreamRequest(LlmRequest::new("gpt-4o-mini", text))
}

// ---- success ----

#[tokio::test]
async fn chat_success_maps_content_usage_finish_id_latency_and_sends_headers() {
    let server = MockOpenAiServer::start().await.unwrap();
    let p = OpenAiProvider::builder()
        .api_key(KEY)
        .base_url(server.base_url())
        .organization("org-1")
        .project("proj-1")
        .header("x-extra", "yes")
        .build()
        .unwrap();
    let res = chat(
        &p,
        LlmRequest::new("gpt-4o-mini", "hello big world").with_system("be kind"),
    )
    .await
    .unwrap();
    assert_eq!(res.content, "hello big world");
    assert_eq!(res.model, "gpt-4o-mini");
    assert_eq!(res.provider, "openai");
    assert_eq!(res.finish_reason, FinishReason::Stop);
    assert_eq!(res.response_id.as_deref(), Some("chatcmpl-mock-1"));
    assert!(res.latency_ms > 0.0);
    res.validate().unwrap();
    let u = res.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (5, 3, 8)
    );
    assert_eq!(u.cached_prompt_tokens, Some(0));
    assert_eq!(u.reasoning_tokens, Some(0));
    assert_eq!(u.provider, "openai");

    let r = server.last_request().unwrap();
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(r.header("openai-organization"), Some("org-1"));
    assert_eq!(r.header("openai-project"), Some("proj-1"));
    assert_eq!(r.header("x-extra"), Some("yes"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let accept: Vec<&str> = r
        .headers
        .iter()
        .filter(|(k, _)| k == "accept")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(accept, ["application/json"]);
    let body = r.body.unwrap();
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "be kind"})
    );
    assert_eq!(body["max_tokens"], 1024);
    assert_eq!(body["temperature"], 0.7);
}

#[tokio::test]
async fn an_answer_arriving_in_several_chunks_is_read_whole() {
    let server = MockOpenAiServer::start().await.unwrap();
    let body = r#"{"id":"c9","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"split in three"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":3,"total_tokens":6}}"#;
    let (a, rest) = body.split_at(40);
    let (b, c) = rest.split_at(70);
    server.push_fault(Fault::sse([a, b, c]));
    let res = chat(&provider(&server), LlmRequest::new("m", "x"))
        .await
        .unwrap();
    assert_eq!(res.content, "split in three");
    assert_eq!(res.response_id.as_deref(), Some("c9"));
    assert_eq!(res.usage.unwrap().total_tokens, 6);
}

#[tokio::test]
async fn reasoning_models_get_max_completion_tokens_and_no_temperature_on_the_wire() {
    let server = MockOpenAiServer::start().await.unwrap();
    let p = provider(&server);
    chat(&p, LlmRequest::new("o3-mini", "a b c").with_max_tokens(2))
        .await
        .unwrap();
    let body = server.last_request().unwrap().body.unwrap();
    assert_eq!(body["max_completion_tokens"], 2);
    assert!(body.get("max_tokens").is_none());
    assert!(body.get("temperature").is_none());

    let always = OpenAiProvider::builder()
        .api_key(KEY)
        .base_url(server.base_url())
        .temperature_policy(TemperaturePolicy::Always)
        .build()
        .unwrap();
    chat(&always, LlmRequest::new("o3-mini", "x"))
        .await
        .unwrap();
    assert!(
        server
            .last_request()
            .unwrap()
            .body
            .unwrap()
            .get("temperature")
            .is_some()
    );
}

#[tokio::test]
async fn length_finish_and_tool_calls_are_mapped() {
    let server = MockOpenAiServer::start().await.unwrap();
    let p = provider(&server);
    let res = chat(
        &p,
        LlmRequest::new("gpt-4o-mini", "one two three").with_max_tokens(1),
    )
    .await
    .unwrap();
    assert_eq!(res.content, "one");
    assert_eq!(res.finish_reason, FinishReason::Length);

    let mut req = LlmRequest::new("gpt-4o-mini", "weather in Paris?");
    req.tools = vec![ToolDefinition {
        name: "get_weather".into(),
        description: Some("Weather by city".into()),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        strict: None,
    }];
    req.tool_choice = Some(ToolChoice::Function("get_weather".into()));
    let res = chat(&p, req).await.unwrap();
    assert_eq!(res.finish_reason, FinishReason::ToolCalls);
    assert_eq!(res.tool_calls.len(), 1);
    assert_eq!(res.tool_calls[0].name, "get_weather");
    assert_eq!(res.tool_calls[0].id, "call_mock_2");
}

#[tokio::test]
async fn cached_and_reasoning_tokens_reach_token_usage() {
    let server = MockOpenAiServer::start().await.unwrap();
    server.push_fault(Fault::json(
        200,
        json!({"id": "c9", "object": "chat.completion", "created": 1, "model": "o3-2025",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                            "logprobs": null, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140,
                         "prompt_tokens_details": {"cached_tokens": 64},
                         "completion_tokens_details": {"reasoning_tokens": 32}}}),
    ));
    let res = chat(&provider(&server), LlmRequest::new("o3", "hi"))
        .await
        .unwrap();
    let u = res.usage.unwrap();
    assert_eq!(u.cached_prompt_tokens, Some(64));
    assert_eq!(u.reasoning_tokens, Some(32));
    assert_eq!(u.model, "o3-2025");
    assert_eq!(res.model, "o3-2025");
}

#[tokio::test]
async fn a_keyless_local_server_shows_its_own_provider_name() {
    let server = MockOpenAiServer::start().await.unwrap();
    let p = OpenAiProvider::builder()
        .base_url(server.base_url())
        .allow_missing_key(true)
        .provider_name("ollama")
        .build()
        .unwrap();
    let res = chat(&p, LlmRequest::new("llama3.1", "hi")).await.unwrap();
    assert_eq!(res.provider, "ollama");
    assert_eq!(res.usage.unwrap().provider, "ollama");
    assert_eq!(server.last_request().unwrap().header("authorization"), None);
}

#[tokio::test]
async fn azure_style_key_header_and_query_parameter() {
    let server = MockOpenAiServer::start().await.unwrap();
    let p = OpenAiProvider::builder()
        .api_key(KEY)
        .auth_style(AuthStyle::Header("api-key".into()))
        .query_param("api-version", "2024-10-21")
        .base_url(server.base_url())
        .provider_name("azure")
        .build()
        .unwrap();
    let res = chat(&p, LlmRequest::new("my-deployment", "hi"))
        .await
        .unwrap();
    assert_eq!(res.provider, "azure");
    let r = server.last_request().unwrap();
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(r.header("api-key"), Some(KEY));
    assert_eq!(r.header("authorization"), None);
    assert_eq!(r.query.as_deref(), Some("api-version=2024-10-21"));
}

#[tokio::test]
async fn clones_share_one_client() {
    let server = MockOpenAiServer::start().await.unwrap();
    let p = provider(&server);
    let q = p.clone();
    assert!(p.shares_client_with(&q));
    let other = provider(&server);
    assert!(!p.shares_client_with(&other));
    let (a, b) = tokio::join!(
        chat(&p, LlmRequest::new("m", "a")),
        chat(&q, LlmRequest::new("m", "b"))
    );
    assert_eq!(a.unwrap().content, "a");
    assert_eq!(b.unwrap().content, "b");
}

#[tokio::test]
async fn list_models() {
    let server = MockOpenAiServer::start_with(MockConfig::default().with_models(["x", "y"]))
        .await
        .unwrap();
    assert_eq!(
        provider(&server).list_models().await.unwrap(),
        vec!["x", "y"]
    );
}

// ---- streaming ----

#[tokio::test]
async fn stream_with_usage_in_a_chunk_with_empty_choices() {
    let server = MockOpenAiServer::start().await.unwrap();
    let p = provider(&server);
    let s = p
        .clone()
        .oneshot(stream_req("the quick brown fox"))
        .await
        .unwrap();
    let (deltas, done, err) = collect(s).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(deltas.concat(), "the quick brown fox");
    assert!(deltas.len() >= 4);
    let done = done.unwrap();
    assert_eq!(done.content, "the quick brown fox");
    assert_eq!(done.finish_reason, FinishReason::Stop);
    assert_eq!(done.usage.unwrap().completion_tokens, 4);
    assert_eq!(done.response_id.as_deref(), Some("chatcmpl-mock-1"));
    let body = server.last_request().unwrap().body.unwrap();
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    let accept: Vec<String> = server
        .last_request()
        .unwrap()
        .headers
        .into_iter()
        .filter(|(k, _)| k == "accept")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(accept, ["text/event-stream"]);
}

#[tokio::test]
async fn stream_with_usage_in_an_empty_delta_split_into_tiny_reads_with_keep_alives() {
    let config = MockConfig::default()
        .with_usage_shape(UsageShape::EmptyDelta)
        .with_keep_alive_comments(true)
        .with_split_stream_bytes(3);
    let server = MockOpenAiServer::start_with(config).await.unwrap();
    let s = provider(&server)
        .oneshot(stream_req("héllo wörld ünïcode"))
        .await
        .unwrap();
    let (deltas, done, err) = collect(s).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(deltas.concat(), "héllo wörld ünïcode");
    let u = done.unwrap().usage.unwrap();
    assert_eq!((u.prompt_tokens, u.completion_tokens), (3, 3));
}

#[tokio::test]
async fn a_stream_that_breaks_off_is_an_error_without_done() {
    let server = MockOpenAiServer::start().await.unwrap();
    server.push_fault(Fault::disconnect_after(3));
    let s = provider(&server)
        .oneshot(stream_req("a b c d e f"))
        .await
        .unwrap();
    let (deltas, done, err) = collect(s).await;
    assert!(done.is_none(), "a broken stream must not end with Done");
    assert!(!deltas.is_empty(), "the deltas before the break arrive");
    let err = err.unwrap();
    assert!(matches!(err, LlmError::Connection { .. }), "{err}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("broke off"), "{err}");
}

#[tokio::test]
async fn a_stream_that_ends_cleanly_but_early_is_an_error() {
    let server = MockOpenAiServer::start().await.unwrap();
    server.push_fault(Fault::sse([
        "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n",
    ]));
    let s = provider(&server).oneshot(stream_req("x")).await.unwrap();
    let (deltas, done, err) = collect(s).await;
    assert_eq!(deltas, vec!["Hel"]);
    assert!(done.is_none());
    assert!(err.unwrap().to_string().contains("incomplete"));
}

#[tokio::test]
async fn a_stream_without_done_marker_but_with_a_finish_reason_is_accepted() {
    let server = MockOpenAiServer::start().await.unwrap();
    server.push_fault(Fault::sse([
        ": hello\r\n\r\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\r\n",
        "\r\ndata: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}",
    ]));
    let s = provider(&server).oneshot(stream_req("x")).await.unwrap();
    let (deltas, done, err) = collect(s).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(deltas, vec!["Hi"]);
    let done = done.unwrap();
    assert_eq!(done.content, "Hi");
    assert_eq!(done.usage, None, "no usage reported is None, not zero");
}

#[tokio::test]
async fn sse_sent_as_another_content_type_is_still_read_as_sse() {
    let server = MockOpenAiServer::start().await.unwrap();
    server.push_fault(Fault::raw(
        200,
        "text/plain",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Yo\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
    ));
    let s = provider(&server).oneshot(stream_req("x")).await.unwrap();
    let (deltas, done, err) = collect(s).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(deltas, vec!["Yo"]);
    assert_eq!(done.unwrap().content, "Yo");
}

#[tokio::test]
async fn a_done_marker_without_its_blank_line_still_ends_well() {
    let server = MockOpenAiServer::start().await.unwrap();
    server.push_fault(Fault::sse([
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"A\"}}]}\n\n",
        "data: [DONE]",
    ]));
    let s = provider(&server).oneshot(stream_req("x")).await.unwrap();
    let (deltas, done, err) = collect(s).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(deltas, vec!["A"]);
    assert_eq!(done.unwrap().content, "A");
}

#[tokio::test]
async fn a_bad_chunk_is_a_decode_error_and_nothing_follows_it() {
    let server = MockOpenAiServer::start().await.unwrap();
    server.push_fault(Fault::sse([
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {not json",
    ]));
    let s = provider(&server).oneshot(stream_req("x")).await.unwrap();
    let (_, done, err) = collect(s).await;
    assert!(matches!(err, Some(LlmError::Decode { .. })), "{err:?}");
    assert!(done.is_none());
}

#[tokio::test]
async fn a_stream_request_that_fails_up_front_is_an_error_at_call() {
    let server = MockOpenAiServer::start().await.unwrap();
    server.push_fault(Fault::rate_limited(Some(2)));
    let err = provider(&server)
        .oneshot(stream_req("x"))
        .await
        .err()
        .unwrap();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
}

#[tokio::test]
async fn a_server_ignoring_stream_and_answering_json_still_streams() {
    let server = MockOpenAiServer::start().await.unwrap();
    server.push_fault(Fault::json(
        200,
        json!({"id": "j", "object": "chat.completion", "created": 1, "model": "m",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "whole"},
                            "logprobs": null, "finish_reason": "stop"}]}),
    ));
    let s = provider(&server).oneshot(stream_req("x")).await.unwrap();
    let (deltas, done, _) = collect(s).await;
    assert_eq!(deltas, vec!["whole"]);
    assert_eq!(done.unwrap().content, "whole");
}

// ---- embeddings ----

#[tokio::test]
async fn embeddings_float_and_base64_decode_to_the_same_vectors() {
    let server = MockOpenAiServer::start().await.unwrap();
    let p = provider(&server);
    let texts: Vec<String> = vec!["alpha".into(), "beta gamma".into()];
    let mut req = EmbeddingRequest::new("text-embedding-3-small", texts.clone());
    req.dimensions = Some(6);
    let floats = p.clone().oneshot(req.clone()).await.unwrap();
    req.encoding_format = EncodingFormat::Base64;
    let b64 = p.clone().oneshot(req).await.unwrap();
    assert_eq!(floats.embeddings, b64.embeddings);
    assert_eq!(floats.embeddings[1], mock_embedding("beta gamma", 6));
    assert_eq!(floats.usage.as_ref().unwrap().prompt_tokens, 3);
    assert_eq!(floats.usage.unwrap().completion_tokens, 0);
    let sent = server.last_request().unwrap().body.unwrap();
    assert_eq!(sent["dimensions"], 6);
    assert_eq!(sent["encoding_format"], "base64");
}

#[tokio::test]
async fn embeddings_are_batched_within_2048_inputs_and_come_back_in_order() {
    let server = MockOpenAiServer::start_with(MockConfig::default().with_embedding_dimensions(2))
        .await
        .unwrap();
    let p = provider(&server);
    let texts: Vec<String> = (0..5000).map(|i| format!("text {i}")).collect();
    let res = p
        .clone()
        .oneshot(EmbeddingRequest::new(
            "text-embedding-3-small",
            texts.clone(),
        ))
        .await
        .unwrap();
    assert_eq!(res.embeddings.len(), 5000);
    for i in [0, 2047, 2048, 4095, 4096, 4999] {
        assert_eq!(res.embeddings[i], mock_embedding(&texts[i], 2), "input {i}");
    }
    let sizes: Vec<usize> = server
        .requests_to("/v1/embeddings")
        .iter()
        .map(|r| r.body.as_ref().unwrap()["input"].as_array().unwrap().len())
        .collect();
    let mut sorted = sizes.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![904, 2048, 2048]);
    assert_eq!(res.usage.unwrap().prompt_tokens, 10_000);
}

#[tokio::test]
async fn embeddings_are_batched_by_estimated_tokens() {
    let server = MockOpenAiServer::start().await.unwrap();
    let p = OpenAiProvider::builder()
        .api_key(KEY)
        .base_url(server.base_url())
        .embedding_batch_tokens(10)
        .build()
        .unwrap();
    let texts: Vec<String> = vec!["aaaa".into(), "bbbb".into(), "cccc".into()];
    let res = p.oneshot(EmbeddingRequest::new("e", texts)).await.unwrap();
    assert_eq!(res.embeddings.len(), 3);
    assert_eq!(server.requests_to("/v1/embeddings").len(), 2);
}

#[tokio::test]
async fn an_embedding_batch_failing_fails_the_call() {
    let server = MockOpenAiServer::start().await.unwrap();
    server.add_rule(
        Matcher::path("/v1/embeddings").body_contains("poison"),
        Fault::status(500),
    );
    let p = OpenAiProvider::builder()
        .api_key(KEY)
        .base_url(server.base_url())
        .embedding_batch_inputs(1)
        .build()
        .unwrap();
    let texts: Vec<String> = vec!["fine".into(), "poison".into()];
    let err = p
        .oneshot(EmbeddingRequest::new("e", texts))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(500));
}

#[tokio::test]
async fn bad_embedding_input_is_refused_before_sending() {
    let server = MockOpenAiServer::start().await.unwrap();
    let err = provider(&server)
        .oneshot(EmbeddingRequest::new("e", vec![String::new()]))
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::InvalidRequest { .. }), "{err}");
    assert_eq!(server.request_count(), 0);
}

// ---- errors ----

async fn error_for(fault: Fault) -> LlmError {
    let server = MockOpenAiServer::start().await.unwrap();
    server.push_fault(fault);
    chat(&provider(&server), LlmRequest::new("gpt-4o-mini", "hi"))
        .await
        .unwrap_err()
}

#[tokio::test]
async fn status_400_is_invalid_request() {
    let e = error_for(Fault::status(400)).await;
    assert!(matches!(e, LlmError::InvalidRequest { .. }), "{e}");
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("The request is invalid."), "{e}");
}

#[tokio::test]
async fn status_401_and_403_are_authentication_naming_the_variable_not_the_key() {
    for status in [401, 403] {
        let e = error_for(Fault::error(
            status,
            "invalid_request_error",
            "invalid_api_key",
            format!("Incorrect API key provided: {KEY}."),
        ))
        .await;
        assert!(matches!(e, LlmError::Authentication { .. }), "{e}");
        assert_eq!(e.status(), Some(status));
        let text = format!("{e} {e:?}");
        assert!(text.contains("OPENAI_API_KEY"), "{text}");
        assert!(!text.contains(KEY), "{text}");
        assert!(!e.is_retryable());
    }
}

#[tokio::test]
async fn a_configured_key_variable_is_named() {
    let server = MockOpenAiServer::start_with(MockConfig::default().with_api_key("right"))
        .await
        .unwrap();
    let p = OpenAiProvider::builder()
        .api_key("wrong-key-value")
        .api_key_source("DEEPSEEK_API_KEY")
        .base_url(server.base_url())
        .build()
        .unwrap();
    let e = chat(&p, LlmRequest::new("m", "hi")).await.unwrap_err();
    assert!(e.to_string().contains("DEEPSEEK_API_KEY"), "{e}");
    assert!(!e.to_string().contains("wrong-key-value"), "{e}");
}

#[tokio::test]
async fn status_404_is_model_not_found_with_the_model() {
    let e = error_for(Fault::status(404)).await;
    match &e {
        LlmError::ModelNotFound { model, .. } => assert_eq!(model, "gpt-4o-mini"),
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn status_408_and_409_are_retryable_with_retry_after() {
    for status in [408, 409] {
        let e = error_for(Fault::status(status).with_retry_after("3")).await;
        assert!(e.is_retryable(), "{e}");
        assert_eq!(e.status(), Some(status));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
    }
}

#[tokio::test]
async fn status_429_rate_limit_is_retryable_and_carries_retry_after() {
    let e = error_for(Fault::rate_limited(Some(7))).await;
    assert!(matches!(e, LlmError::RateLimited { .. }), "{e}");
    assert!(e.is_retryable());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));

    let e = error_for(Fault::rate_limited(None)).await;
    assert_eq!(e.retry_after(), None);

    let e = error_for(Fault::rate_limited(Some(9)).with_header("retry-after-ms", "250")).await;
    assert_eq!(e.retry_after(), Some(Duration::from_millis(250)));

    let later = std::time::SystemTime::now() + Duration::from_secs(120);
    let e = error_for(Fault::status(429).with_retry_after(httpdate::fmt_http_date(later))).await;
    let wait = e.retry_after().unwrap();
    assert!(
        wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
        "{wait:?}"
    );
}

#[tokio::test]
async fn status_429_insufficient_quota_is_not_retryable() {
    let e = error_for(Fault::insufficient_quota().with_retry_after("1")).await;
    assert!(matches!(e, LlmError::QuotaExceeded { .. }), "{e}");
    assert!(!e.is_retryable());
    assert_eq!(e.retry_after(), None);
}

#[tokio::test]
async fn status_5xx_is_a_retryable_server_error() {
    for status in [500, 502, 503] {
        let e = error_for(Fault::status(status)).await;
        assert!(matches!(e, LlmError::Server { .. }), "{e}");
        assert_eq!(e.status(), Some(status));
        assert!(e.is_retryable());
    }
}

#[tokio::test]
async fn a_malformed_body_is_a_decode_error_with_an_excerpt() {
    let e = error_for(Fault::malformed_body()).await;
    match &e {
        LlmError::Decode { excerpt, .. } => {
            assert!(
                excerpt.starts_with("{\"id\":\"chatcmpl-broken\""),
                "{excerpt}"
            );
            assert!(excerpt.chars().count() <= 201);
        }
        other => panic!("{other}"),
    }
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn a_non_json_error_body_is_still_mapped_by_status() {
    let e = error_for(Fault::raw(502, "text/html", "<html>Bad gateway</html>")).await;
    assert_eq!(e.status(), Some(502));
    assert!(e.to_string().contains("Bad gateway"), "{e}");
}

#[tokio::test]
async fn a_slow_server_hits_the_client_timeout() {
    let server = MockOpenAiServer::start().await.unwrap();
    server.push_fault(Fault::delay(Duration::from_secs(2)));
    let p = OpenAiProvider::builder()
        .api_key(KEY)
        .base_url(server.base_url())
        .request_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let e = chat(&p, LlmRequest::new("m", "hi")).await.unwrap_err();
    assert!(matches!(e, LlmError::Timeout { .. }), "{e}");
    assert!(e.is_timeout() && e.is_retryable());
}

/// The framework imposes no time limit of its own: by default a slow answer is waited for
/// (bounding calls is a timeout layer's job, or `request_timeout`'s).
#[tokio::test(start_paused = true)]
async fn by_default_a_slow_answer_is_waited_for() {
    let server = MockOpenAiServer::start().await.unwrap();
    let p = provider(&server);
    assert_eq!(p.config().request_timeout, None);
    // Open the connection first, so only the answer is slow.
    chat(&p, LlmRequest::new("m", "warm")).await.unwrap();
    server.push_fault(Fault::delay(Duration::from_secs(3600)));
    let started = tokio::time::Instant::now();
    let res = chat(&p, LlmRequest::new("m", "late")).await.unwrap();
    assert_eq!(res.content, "late");
    assert!(started.elapsed() >= Duration::from_secs(3600));
}

/// The request timeout bounds streams, embeddings and the models list as it bounds chat.
#[tokio::test(start_paused = true)]
async fn the_request_timeout_bounds_every_kind_of_call() {
    let server = MockOpenAiServer::start().await.unwrap();
    let p = OpenAiProvider::builder()
        .api_key(KEY)
        .base_url(server.base_url())
        .request_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let slow = || Fault::delay(Duration::from_secs(60));

    server.push_fault(slow());
    let e = chat(&p, LlmRequest::new("m", "hi")).await.unwrap_err();
    assert!(matches!(e, LlmError::Timeout { .. }), "{e}");

    server.push_fault(slow());
    let e = p.clone().oneshot(stream_req("hi")).await.err().unwrap();
    assert!(matches!(e, LlmError::Timeout { .. }), "{e}");

    server.push_fault(slow());
    let e = p
        .clone()
        .oneshot(EmbeddingRequest::new("e", vec!["a".to_owned()]))
        .await
        .unwrap_err();
    assert!(matches!(e, LlmError::Timeout { .. }), "{e}");

    server.push_fault(slow());
    let e = p.list_models().await.unwrap_err();
    assert!(matches!(e, LlmError::Timeout { .. }), "{e}");

    // Without a delay the same provider answers.
    let res = chat(&p, LlmRequest::new("m", "hi")).await.unwrap();
    assert_eq!(res.content, "hi");
}

#[tokio::test]
async fn connection_refused_is_a_connection_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let p = OpenAiProvider::builder()
        .api_key(KEY)
        .base_url(format!("http://{addr}/v1"))
        .build()
        .unwrap();
    let e = chat(&p, LlmRequest::new("m", "hi")).await.unwrap_err();
    assert!(matches!(e, LlmError::Connection { .. }), "{e}");
    assert!(e.is_retryable());
}

#[tokio::test]
async fn the_provider_itself_retries_nothing() {
    let server = MockOpenAiServer::start().await.unwrap();
    server.push_fault(Fault::status(503));
    let _ = chat(&provider(&server), LlmRequest::new("m", "hi"))
        .await
        .unwrap_err();
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn a_tool_message_without_id_never_leaves() {
    let server = MockOpenAiServer::start().await.unwrap();
    let mut tool = Message::tool("id", "r");
    tool.tool_call_id = None;
    let req = LlmRequest::from_messages("m", vec![Message::user("q"), tool]);
    let e = chat(&provider(&server), req).await.unwrap_err();
    assert!(matches!(e, LlmError::InvalidRequest { .. }));
    assert_eq!(server.request_count(), 0);
}

// ---- configuration ----

#[test]
fn a_missing_key_is_an_error_at_construction_naming_the_variable() {
    let e = OpenAiProvider::builder_from_env(|_| None).unwrap_err();
    assert!(e.to_string().contains("OPENAI_API_KEY"), "{e}");
    let e = OpenAiProvider::builder_from_env(|k| (k == "OPENAI_API_KEY").then(|| "  ".to_owned()))
        .unwrap_err();
    assert!(e.to_string().contains("OPENAI_API_KEY"), "{e}");
    let e = OpenAiProvider::builder().build().unwrap_err();
    assert!(e.to_string().contains("OPENAI_API_KEY"), "{e}");
}

#[test]
fn env_values_are_read() {
    let p = OpenAiProvider::builder_from_env(|k| match k {
        "OPENAI_API_KEY" => Some("sk-env".into()),
        "OPENAI_BASE_URL" => Some("http://127.0.0.1:1/v1".into()),
        "OPENAI_ORG_ID" => Some("org-9".into()),
        "OPENAI_PROJECT_ID" => Some("proj-9".into()),
        _ => None,
    })
    .unwrap()
    .build()
    .unwrap();
    assert_eq!(p.config().base_url, "http://127.0.0.1:1/v1");
    assert_eq!(p.config().organization.as_deref(), Some("org-9"));
    assert_eq!(p.config().project.as_deref(), Some("proj-9"));
}

#[test]
fn debug_never_shows_the_key_or_header_values() {
    let p = OpenAiProvider::builder()
        .api_key("sk-very-secret-123")
        .header("api-key", "other-secret-456")
        .build()
        .unwrap();
    let text = format!("{p:?} {:?} {:#?}", p.config(), p);
    assert!(!text.contains("sk-very-secret-123"), "{text}");
    assert!(!text.contains("other-secret-456"), "{text}");
    assert!(text.contains("[REDACTED]"));
}

#[test]
fn bad_configuration_is_refused_with_what_to_fix() {
    let e = OpenAiProvider::builder()
        .api_key("k")
        .base_url("not a url")
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("not a url"), "{e}");
    let e = OpenAiProvider::builder()
        .api_key("k")
        .base_url("ftp://x/v1")
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("ftp"), "{e}");
    let e = OpenAiProvider::builder()
        .api_key("k")
        .header("bad name", "v")
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("bad name"), "{e}");
    let e = OpenAiProvider::builder()
        .api_key("k")
        .embedding_batch_inputs(5000)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("1 to 2048"), "{e}");
    let e = OpenAiProvider::builder()
        .api_key("bad\nkey")
        .build()
        .unwrap_err();
    assert!(!e.to_string().contains("bad\nkey"), "{e}");
}

// ---- blocking use ----

#[test]
fn usable_from_blocking_code_through_the_core_client() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(MockOpenAiServer::start()).unwrap();
    let p = OpenAiProvider::builder()
        .api_key(KEY)
        .base_url(server.base_url())
        .build()
        .unwrap();
    let client = BlockingClient::new(p).unwrap();
    let res = client
        .call(LlmRequest::new("gpt-4o-mini", "from a thread"))
        .unwrap();
    assert_eq!(res.content, "from a thread");
    let emb = client
        .call(EmbeddingRequest::new("e", vec!["x".into()]))
        .unwrap();
    assert_eq!(emb.embeddings.len(), 1);
    server.push_fault(Fault::status(429));
    let e = client.call(LlmRequest::new("m", "hi")).unwrap_err();
    assert!(matches!(e, LlmError::RateLimited { .. }));
}

// ---- the contract ----

#[test]
fn the_provider_meets_the_service_contracts_with_send_futures() {
    fn llm<S: flowloom_core::LlmService>(_: &S) {}
    fn emb<S: flowloom_core::EmbeddingService>(_: &S) {}
    fn stream<S: flowloom_core::StreamService>(_: &S) {}
    fn send<T: Send>(_: &T) {}
    let p = OpenAiProvider::builder().api_key("k").build().unwrap();
    llm(&p);
    emb(&p);
    stream(&p);
    send(&p.chat(LlmRequest::new("m", "x")));
    send(&p.chat_stream(LlmRequest::new("m", "x")));
    send(&p.embed(EmbeddingRequest::new("m", vec!["x".into()])));
    send(&p.list_models());
    let _boxed = flowloom_core::provider::boxed(p);
}
