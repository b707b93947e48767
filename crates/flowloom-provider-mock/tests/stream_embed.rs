//! Streaming and embeddings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use flowloom_core::{
    EmbeddingRequest, LlmError, LlmRequest, StreamEvent, StreamRequest, TokenUsage,
};
use flowloom_provider_mock::{DEFAULT_DIMENSIONS, MockProvider};
use futures_util::StreamExt;
use tower::ServiceExt;

async fn collect(mock: &MockProvider, prompt: &str) -> Vec<StreamEvent> {
    let stream = mock
        .clone()
        .oneshot(StreamRequest(LlmRequest::new("m", prompt)))
        .await
        .unwrap();
    stream.map(|e| e.unwrap()).collect().await
}

#[tokio::test]
async fn stream_yields_word_deltas_then_done_with_usage() {
    let mock = MockProvider::echo();
    let events = collect(&mock, "the quick  brown fox").await;
    let (last, deltas) = events.split_last().unwrap();
    let deltas: Vec<&str> = deltas
        .iter()
        .map(|e| match e {
            StreamEvent::Delta(d) => d.as_str(),
            other => panic!("a non-delta before the end: {other:?}"),
        })
        .collect();
    assert_eq!(deltas, ["the ", "quick  ", "brown ", "fox"]);
    let StreamEvent::Done(res) = last else {
        panic!("the stream did not end with Done: {last:?}")
    };
    assert_eq!(res.content, deltas.concat());
    // 20 chars -> 5 prompt tokens and 5 completion tokens.
    assert_eq!(res.usage, Some(TokenUsage::new(5, 5, "m", "mock")));
    // A streamed request is recorded like any other.
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test]
async fn stream_of_an_empty_answer_is_just_done() {
    let mock = MockProvider::fixed("");
    let events = collect(&mock, "x").await;
    assert_eq!(events.len(), 1);
    assert!(matches!(&events[0], StreamEvent::Done(r) if r.content.is_empty()));
}

#[tokio::test]
async fn stream_of_a_scripted_error_fails_the_call() {
    let mock = MockProvider::from_yaml_str("rules: [{ match: x, error: quota }]").unwrap();
    let res = mock
        .clone()
        .oneshot(StreamRequest(LlmRequest::new("m", "x")))
        .await;
    assert!(matches!(res, Err(LlmError::QuotaExceeded { .. })));
}

#[tokio::test]
async fn stream_with_usage_none_reports_none() {
    let mock = MockProvider::from_yaml_str("rules: [{ match: x, respond: \"a b\", usage: none }]")
        .unwrap();
    let events = collect(&mock, "x").await;
    assert!(matches!(events.last(), Some(StreamEvent::Done(r)) if r.usage.is_none()));
}

#[tokio::test]
async fn embeddings_are_deterministic_unit_vectors_of_the_asked_dimension() {
    let mock = MockProvider::echo();
    let texts = vec!["alpha".to_owned(), "beta".to_owned(), "alpha".to_owned()];
    let res = mock
        .clone()
        .oneshot(EmbeddingRequest::new("emb", texts.clone()))
        .await
        .unwrap();
    assert_eq!(res.embeddings.len(), 3);
    for v in &res.embeddings {
        assert_eq!(v.len(), DEFAULT_DIMENSIONS as usize);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }
    assert_eq!(res.embeddings[0], res.embeddings[2]);
    assert_ne!(res.embeddings[0], res.embeddings[1]);
    // Same text, same vector, from another mock too.
    let again = MockProvider::echo()
        .oneshot(EmbeddingRequest::new("emb", vec!["alpha".to_owned()]))
        .await
        .unwrap();
    assert_eq!(again.embeddings[0], res.embeddings[0]);
    // "alpha" + "beta" + "alpha" = 14 chars -> 4 tokens; no completion tokens.
    assert_eq!(res.usage, Some(TokenUsage::new(4, 0, "emb", "mock")));

    let mut req = EmbeddingRequest::new("emb", vec!["alpha".to_owned()]);
    req.dimensions = Some(256);
    let wide = mock.clone().oneshot(req.clone()).await.unwrap();
    assert_eq!(wide.embeddings[0].len(), 256);
    assert_eq!(
        mock.embedding_requests(),
        vec![EmbeddingRequest::new("emb", texts), req]
    );
    assert_eq!(mock.request_count(), 0, "embeddings are recorded apart");
}

#[tokio::test]
async fn bad_embedding_requests_are_invalid_not_panics() {
    let mock = MockProvider::echo();
    let empty = mock
        .clone()
        .oneshot(EmbeddingRequest::new("emb", vec![]))
        .await;
    assert!(matches!(empty, Err(LlmError::InvalidRequest { .. })));
    let mut huge = EmbeddingRequest::new("emb", vec!["x".to_owned()]);
    huge.dimensions = Some(u32::MAX);
    let err = mock.clone().oneshot(huge).await.unwrap_err();
    assert!(err.to_string().contains("dimensions"), "{err}");
    let mut zero = EmbeddingRequest::new("emb", vec!["x".to_owned()]);
    zero.dimensions = Some(0);
    assert!(mock.clone().oneshot(zero).await.is_err());
}
