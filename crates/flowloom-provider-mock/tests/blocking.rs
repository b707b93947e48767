//! The mock from blocking code, and its futures' auto traits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::time::Duration;

use flowloom_core::{
    BlockingClient, BlockingEmbedder, BlockingProvider, EmbeddingRequest, EmbeddingService,
    LlmError, LlmRequest, LlmService, StreamRequest, StreamService, provider,
};
use flowloom_provider_mock::{MockFuture, MockProvider};
use tower::{Service, ServiceExt};

#[test]
fn blocking_use_from_plain_threads() {
    let mock = MockProvider::from_yaml_str(
        r#"
rules:
  - match: "flaky"
    sequence:
      - { error: rate_limit, retry_after: 1s }
      - { respond: "recovered", latency: 1ms }
"#,
    )
    .unwrap();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let mock = mock.clone();
            std::thread::spawn(move || {
                BlockingProvider::complete(&mock, LlmRequest::new("m", format!("hello {i}")))
                    .unwrap()
                    .content
            })
        })
        .collect();
    let mut answers: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    answers.sort();
    assert_eq!(answers, ["hello 0", "hello 1", "hello 2", "hello 3"]);

    let first = BlockingProvider::complete(&mock, LlmRequest::new("m", "flaky"));
    assert!(matches!(first, Err(LlmError::RateLimited { .. })));
    let second = BlockingProvider::complete(&mock, LlmRequest::new("m", "flaky")).unwrap();
    assert_eq!(second.content, "recovered");
    assert_eq!(second.latency_ms, 1.0);

    let emb = BlockingEmbedder::embed(&mock, EmbeddingRequest::new("e", vec!["x".into()])).unwrap();
    assert_eq!(emb.embeddings.len(), 1);
    assert_eq!(mock.request_count(), 6);
}

#[test]
fn blocking_client_with_latency_from_a_plain_thread() {
    let mock = MockProvider::from_yaml_str("rules: [{ match: slow, respond: late, latency: 5ms }]")
        .unwrap();
    let client = BlockingClient::new(mock.clone()).unwrap();
    let res = std::thread::spawn(move || client.call(LlmRequest::new("m", "slow")))
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(res.content, "late");
    // The blocking trait adapted into the async contract, called from blocking code.
    let adapted = BlockingClient::new(provider::from_blocking(mock.clone())).unwrap();
    assert_eq!(
        adapted.call(LlmRequest::new("m", "slow")).unwrap().content,
        "late"
    );
    assert_eq!(mock.request_count(), 2);
}

#[test]
fn a_delayed_answer_outside_a_runtime_is_an_error_not_a_panic() {
    let mut mock =
        MockProvider::from_yaml_str("rules: [{ match: slow, respond: late, latency: 5ms }]")
            .unwrap();
    let fut = mock.call(LlmRequest::new("m", "slow"));
    let res = futures_util::FutureExt::now_or_never(fut).unwrap();
    assert!(matches!(res, Err(LlmError::Other { .. })), "{res:?}");
    // Without latency the future is ready at once, runtime or not.
    let fut = mock.call(LlmRequest::new("m", "fast"));
    assert_eq!(
        futures_util::FutureExt::now_or_never(fut)
            .unwrap()
            .unwrap()
            .content,
        "fast"
    );
}

fn assert_llm_service<S: LlmService>(_: &S) {}
fn assert_embedding_service<S: EmbeddingService>(_: &S) {}
fn assert_stream_service<S: StreamService>(_: &S) {}
fn assert_send_sync<T: Send + Sync>() {}
fn is_send<F: Future + Send>(_: F) {}

#[test]
fn mock_meets_the_contracts_and_its_futures_are_send() {
    let mock = MockProvider::echo();
    assert_llm_service(&mock);
    assert_embedding_service(&mock);
    assert_stream_service(&mock);
    assert_send_sync::<MockProvider>();
    assert_send_sync::<MockFuture<flowloom_core::LlmResponse>>();
    assert_send_sync::<MockFuture<flowloom_core::EmbeddingResponse>>();
    is_send(mock.clone().oneshot(LlmRequest::new("m", "x")));
    is_send(
        mock.clone()
            .oneshot(StreamRequest(LlmRequest::new("m", "x"))),
    );
    is_send(mock.clone().oneshot(EmbeddingRequest::new("m", vec![])));
    let _boxed = provider::boxed(mock.clone());
    let _ = Duration::ZERO;
}
