//! The mock server's own tests: default answers and each scripted fault.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use super::*;

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

fn chat_body(text: &str) -> Value {
    json!({"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": text}
    ]})
}

async fn post(server: &MockOpenAiServer, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(server.url(path))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The `data:` payloads of an SSE text, comments dropped.
fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .flat_map(|e| e.lines())
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn chat_echoes_the_last_user_message_with_usage() {
    let server = MockOpenAiServer::start().await.unwrap();
    let res = post(
        &server,
        "/v1/chat/completions",
        &chat_body("hello there world"),
    )
    .await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "hello there world");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(v["usage"]["total_tokens"], 8);
    assert_eq!(v["id"], "chatcmpl-mock-1");
    assert_eq!(v["created"], CREATED);
}

#[tokio::test]
async fn chat_is_cut_to_max_tokens() {
    let server = MockOpenAiServer::start().await.unwrap();
    let mut body = chat_body("one two three four");
    body["max_completion_tokens"] = json!(2);
    let v: Value = post(&server, "/v1/chat/completions", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "one two");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn forced_tool_choice_gets_a_tool_call() {
    let server = MockOpenAiServer::start().await.unwrap();
    let mut body = chat_body("weather?");
    body["tools"] =
        json!([{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]);
    body["tool_choice"] = json!({"type": "function", "function": {"name": "get_weather"}});
    let v: Value = post(&server, "/v1/chat/completions", &body)
        .await
        .json()
        .await
        .unwrap();
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], "{}");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn bad_chat_request_is_a_400_with_an_openai_error_body() {
    let server = MockOpenAiServer::start().await.unwrap();
    let res = post(&server, "/v1/chat/completions", &json!({"model": "m"})).await;
    assert_eq!(res.status(), 400);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["param"], "messages");
}

#[tokio::test]
async fn streaming_sends_deltas_usage_with_empty_choices_and_done() {
    let server = MockOpenAiServer::start().await.unwrap();
    let mut body = chat_body("a b c");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let res = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let data = sse_data(&res.text().await.unwrap());
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "a b c");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 3);
    // Every other chunk carries `usage: null`.
    assert!(chunks[0]["usage"].is_null() && chunks[0].get("usage").is_some());
}

#[tokio::test]
async fn streaming_usage_can_come_with_an_empty_delta_and_keep_alives_split() {
    let config = MockConfig::default()
        .with_usage_shape(UsageShape::EmptyDelta)
        .with_keep_alive_comments(true)
        .with_split_stream_bytes(5);
    let server = MockOpenAiServer::start_with(config).await.unwrap();
    let mut body = chat_body("x y");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let text = post(&server, "/v1/chat/completions", &body)
        .await
        .text()
        .await
        .unwrap();
    assert!(text.starts_with(": keep-alive\n\n"));
    let data = sse_data(&text);
    let usage: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage["choices"][0]["delta"], json!({}));
    assert_eq!(usage["usage"]["total_tokens"], 6);
}

#[tokio::test]
async fn embeddings_float_and_base64_agree_and_honour_dimensions() {
    let server = MockOpenAiServer::start().await.unwrap();
    let body = json!({"model": "text-embedding-3-small", "input": ["a", "b c"], "dimensions": 4});
    let v: Value = post(&server, "/v1/embeddings", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    let floats: Vec<f32> = serde_json::from_value(v["data"][1]["embedding"].clone()).unwrap();
    assert_eq!(floats, mock_embedding("b c", 4));

    let mut body64 = body.clone();
    body64["encoding_format"] = json!("base64");
    let v: Value = post(&server, "/v1/embeddings", &body64)
        .await
        .json()
        .await
        .unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v["data"][1]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(decoded, floats);
}

#[tokio::test]
async fn embeddings_reject_more_inputs_than_allowed() {
    let server = MockOpenAiServer::start_with(MockConfig::default().with_max_embedding_inputs(3))
        .await
        .unwrap();
    let body = json!({"model": "e", "input": ["a", "b", "c", "d"]});
    let res = post(&server, "/v1/embeddings", &body).await;
    assert_eq!(res.status(), 400);
    let v: Value = res.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 3")
    );
}

#[tokio::test]
async fn models_are_listed() {
    let server = MockOpenAiServer::start_with(MockConfig::default().with_models(["m1", "m2"]))
        .await
        .unwrap();
    let v: Value = client()
        .get(server.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][1]["id"], "m2");
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let server = MockOpenAiServer::start().await.unwrap();
    let res = post(&server, "/v1/nothing", &json!({})).await;
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn api_key_is_checked_when_configured() {
    let server = MockOpenAiServer::start_with(MockConfig::default().with_api_key("sk-right"))
        .await
        .unwrap();
    let res = client()
        .post(server.url("/v1/chat/completions"))
        .bearer_auth("sk-wrong")
        .json(&chat_body("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = client()
        .post(server.url("/v1/chat/completions"))
        .bearer_auth("sk-right")
        .json(&chat_body("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn requests_are_recorded_with_method_path_headers_and_body() {
    let server = MockOpenAiServer::start().await.unwrap();
    client()
        .post(server.url("/v1/chat/completions"))
        .header("OpenAI-Organization", "org-1")
        .json(&chat_body("hi"))
        .send()
        .await
        .unwrap();
    let r = server.last_request().unwrap();
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(r.query, None);
    assert_eq!(r.header("openai-organization"), Some("org-1"));
    assert_eq!(r.body.unwrap()["messages"][1]["content"], "hi");
    assert_eq!(server.request_count(), 1);
    assert_eq!(server.requests_to("/v1/embeddings").len(), 0);
    server.clear_requests();
    assert!(server.requests().is_empty());
}

// ---- scripted faults ----

#[tokio::test]
async fn fault_status_with_retry_after_seconds() {
    let server = MockOpenAiServer::start().await.unwrap();
    server.push_fault(Fault::rate_limited(Some(7)));
    let res = post(&server, "/v1/chat/completions", &chat_body("hi")).await;
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "7");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    // Queued faults are used once: the next request gets the default answer.
    let res = post(&server, "/v1/chat/completions", &chat_body("hi")).await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn fault_status_without_retry_after() {
    let server = MockOpenAiServer::start().await.unwrap();
    server.push_fault(Fault::status(503));
    let res = post(&server, "/v1/chat/completions", &chat_body("hi")).await;
    assert_eq!(res.status(), 503);
    assert!(res.headers().get("retry-after").is_none());
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["type"], "server_error");
}

#[tokio::test]
async fn fault_retry_after_as_http_date() {
    let server = MockOpenAiServer::start().await.unwrap();
    server.push_fault(Fault::status(429).with_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"));
    let res = post(&server, "/v1/chat/completions", &chat_body("hi")).await;
    assert_eq!(
        res.headers()["retry-after"],
        "Wed, 21 Oct 2015 07:28:00 GMT"
    );
}

#[tokio::test]
async fn fault_insufficient_quota_differs_from_rate_limit() {
    let server = MockOpenAiServer::start().await.unwrap();
    server.push_fault(Fault::insufficient_quota());
    let res = post(&server, "/v1/chat/completions", &chat_body("hi")).await;
    assert_eq!(res.status(), 429);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "insufficient_quota");
    assert_eq!(v["error"]["type"], "insufficient_quota");
}

#[tokio::test(start_paused = true)]
async fn fault_delay_holds_the_answer() {
    let server = MockOpenAiServer::start().await.unwrap();
    server.push_fault(Fault::delay(Duration::from_secs(30)));
    let started = tokio::time::Instant::now();
    let res = post(&server, "/v1/chat/completions", &chat_body("late")).await;
    assert_eq!(res.status(), 200);
    assert!(started.elapsed() >= Duration::from_secs(30));
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "late");
}

#[tokio::test]
async fn fault_malformed_body() {
    let server = MockOpenAiServer::start().await.unwrap();
    server.push_fault(Fault::malformed_body());
    let res = post(&server, "/v1/chat/completions", &chat_body("hi")).await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err());
}

#[tokio::test]
async fn fault_disconnect_in_the_middle_of_a_stream() {
    let server = MockOpenAiServer::start().await.unwrap();
    server.push_fault(Fault::disconnect_after(2));
    let mut body = chat_body("one two three four five");
    body["stream"] = json!(true);
    let mut res = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(res.status(), 200);
    let mut got = Vec::new();
    let err = loop {
        match res.chunk().await {
            Ok(Some(c)) => got.extend_from_slice(&c),
            Ok(None) => panic!("the stream ended cleanly"),
            Err(e) => break e,
        }
    };
    assert!(
        err.is_body() || err.is_decode() || err.is_request(),
        "{err:?}"
    );
    let text = String::from_utf8(got).unwrap();
    assert_eq!(sse_data(&text).len(), 2, "{text}");
    assert!(!text.contains("[DONE]"));
}

#[tokio::test]
async fn fault_disconnect_of_a_plain_answer() {
    let server = MockOpenAiServer::start().await.unwrap();
    server.push_fault(Fault::disconnect_after(1));
    let res = post(&server, "/v1/chat/completions", &chat_body("hi")).await;
    assert!(res.text().await.is_err());
}

#[tokio::test]
async fn fault_raw_sse_pieces_are_sent_as_written() {
    let server = MockOpenAiServer::start().await.unwrap();
    server.push_fault(Fault::sse([": hello\n\n", "data: {\"a\"", ":1}\n\n"]));
    let res = post(&server, "/v1/chat/completions", &chat_body("hi")).await;
    assert_eq!(res.text().await.unwrap(), ": hello\n\ndata: {\"a\":1}\n\n");
}

#[tokio::test]
async fn rules_match_per_call_and_can_be_limited() {
    let server = MockOpenAiServer::start().await.unwrap();
    server.add_rule(
        Matcher::path("/v1/chat/completions").model("gpt-4o"),
        Fault::status(404),
    );
    server.add_rule_times(Matcher::path("/v1/embeddings"), Fault::status(500), 1);
    let mut body = chat_body("hi");
    assert_eq!(
        post(&server, "/v1/chat/completions", &body).await.status(),
        200
    );
    body["model"] = json!("gpt-4o");
    assert_eq!(
        post(&server, "/v1/chat/completions", &body).await.status(),
        404
    );
    assert_eq!(
        post(&server, "/v1/chat/completions", &body).await.status(),
        404
    );
    let emb = json!({"model": "e", "input": "x"});
    assert_eq!(post(&server, "/v1/embeddings", &emb).await.status(), 500);
    assert_eq!(post(&server, "/v1/embeddings", &emb).await.status(), 200);
    server.clear_faults();
    assert_eq!(
        post(&server, "/v1/chat/completions", &body).await.status(),
        200
    );
}

#[tokio::test]
async fn queued_faults_go_before_rules_in_order() {
    let server = MockOpenAiServer::start().await.unwrap();
    server.add_rule(Matcher::any(), Fault::status(500));
    server.push_faults([Fault::status(429), Fault::default_answer()]);
    assert_eq!(server.pending_faults(), 2);
    let body = chat_body("hi");
    assert_eq!(
        post(&server, "/v1/chat/completions", &body).await.status(),
        429
    );
    assert_eq!(
        post(&server, "/v1/chat/completions", &body).await.status(),
        200
    );
    assert_eq!(
        post(&server, "/v1/chat/completions", &body).await.status(),
        500
    );
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let server = MockOpenAiServer::start().await.unwrap();
    let url = server.url("/v1/models");
    assert!(client().get(&url).send().await.is_ok());
    server.shutdown().await;
    // A fresh client (no pooled connection) can no longer connect.
    let err = reqwest::Client::new().get(&url).send().await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
}
