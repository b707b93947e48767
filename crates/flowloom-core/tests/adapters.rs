//! The plain traits adapted into the service contract, and `BlockingClient`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use flowloom_core::{
    AsyncEmbedder, AsyncProvider, BlockingClient, BlockingEmbedder, BlockingProvider,
    EmbeddingRequest, EmbeddingResponse, LlmError, LlmRequest, LlmResponse, provider,
};
use tower::ServiceExt;

const CALLS: usize = 100;

/// Opened by the async side once it has seen every blocking call in flight.
#[derive(Default)]
struct Gate {
    entered: AtomicUsize,
    open: Mutex<bool>,
    cv: Condvar,
    gave_up: AtomicBool,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
    /// Waits until opened; gives up after `limit` (and from then on at once) so a regression
    /// fails in seconds instead of hanging.
    fn wait(&self, limit: Duration) -> bool {
        if self.gave_up.load(Ordering::SeqCst) {
            return *self.open.lock().unwrap();
        }
        let guard = self.open.lock().unwrap();
        let (guard, _) = self
            .cv
            .wait_timeout_while(guard, limit, |open| !*open)
            .unwrap();
        if !*guard {
            self.gave_up.store(true, Ordering::SeqCst);
        }
        *guard
    }
}

/// A blocking provider that sleeps 50 ms and then waits for the gate, on the calling thread.
struct Sleepy(Arc<Gate>);

impl BlockingProvider for Sleepy {
    fn name(&self) -> &str {
        "sleepy"
    }
    fn complete(&self, req: LlmRequest) -> Result<LlmResponse, LlmError> {
        self.0.entered.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        if !self.0.wait(Duration::from_secs(10)) {
            return Err(LlmError::other(
                "sleepy",
                "the async task never ran while blocking calls were in flight",
            ));
        }
        Ok(LlmResponse::text(
            req.prompt().unwrap_or_default().to_owned(),
            req.model.as_str(),
            "sleepy",
        ))
    }
}

/// 100 concurrent blocking calls on a 2-worker runtime, while another task keeps ticking.
///
/// Every call blocks its thread until the ticking task has seen all 100 calls in flight. If
/// the adapter ran blocking code on the runtime's workers, the two workers would be stuck,
/// the ticker could never run, and every call would fail after the gate's limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_adapter_serves_100_concurrent_calls_without_blocking_workers() {
    let gate = Arc::new(Gate::default());
    let svc = provider::from_blocking(Sleepy(Arc::clone(&gate)));

    let ticker = {
        let gate = Arc::clone(&gate);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(1));
            let mut ticks = 0u64;
            loop {
                interval.tick().await;
                ticks += 1;
                if ticks >= 10 && gate.entered.load(Ordering::SeqCst) == CALLS {
                    gate.open();
                    return ticks;
                }
            }
        })
    };

    let mut calls = tokio::task::JoinSet::new();
    for i in 0..CALLS {
        let svc = svc.clone();
        calls.spawn(async move { svc.oneshot(LlmRequest::new("m", format!("call {i}"))).await });
    }
    let answers = tokio::time::timeout(Duration::from_secs(60), calls.join_all())
        .await
        .expect("the calls did not finish");
    let ticks = tokio::time::timeout(Duration::from_secs(60), ticker)
        .await
        .expect("the ticker did not finish")
        .unwrap();

    assert!(ticks >= 10);
    assert_eq!(gate.entered.load(Ordering::SeqCst), CALLS);
    let mut contents: Vec<String> = answers.into_iter().map(|r| r.unwrap().content).collect();
    contents.sort();
    let mut expected: Vec<String> = (0..CALLS).map(|i| format!("call {i}")).collect();
    expected.sort();
    assert_eq!(contents, expected);
}

struct Panicky;
impl BlockingProvider for Panicky {
    fn name(&self) -> &str {
        "panicky"
    }
    fn complete(&self, _: LlmRequest) -> Result<LlmResponse, LlmError> {
        panic!("plugin bug")
    }
}

#[tokio::test]
async fn a_panicking_blocking_provider_is_an_error() {
    let err = provider::from_blocking(Panicky)
        .oneshot(LlmRequest::new("m", "x"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LlmError::Other { provider, message } if provider == "panicky" && message.contains("plugin bug")),
        "{err:?}"
    );
}

struct Upper;
impl AsyncProvider for Upper {
    fn name(&self) -> &str {
        "upper"
    }
    async fn complete(&self, req: LlmRequest) -> Result<LlmResponse, LlmError> {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(LlmResponse::text(
            req.prompt().unwrap_or_default().to_uppercase(),
            req.model,
            "upper",
        ))
    }
}
impl AsyncEmbedder for Upper {
    fn name(&self) -> &str {
        "upper"
    }
    async fn embed(&self, req: EmbeddingRequest) -> Result<EmbeddingResponse, LlmError> {
        Ok(EmbeddingResponse {
            embeddings: req.input.iter().map(|t| vec![t.len() as f32]).collect(),
            model: req.model,
            provider: "upper".into(),
            usage: None,
            latency_ms: 0.0,
        })
    }
}

struct Lengths;
impl BlockingEmbedder for Lengths {
    fn name(&self) -> &str {
        "lengths"
    }
    fn embed(&self, req: EmbeddingRequest) -> Result<EmbeddingResponse, LlmError> {
        if req.input.is_empty() {
            return Err(LlmError::InvalidRequest {
                provider: "lengths".into(),
                message: "no input".into(),
            });
        }
        Ok(EmbeddingResponse {
            embeddings: req.input.iter().map(|t| vec![t.len() as f32]).collect(),
            model: req.model,
            provider: "lengths".into(),
            usage: None,
            latency_ms: 0.0,
        })
    }
}

#[tokio::test(start_paused = true)]
async fn async_adapter_for_chat_and_embeddings() {
    let svc = provider::from_async(Upper);
    assert_eq!(svc.inner().name_of(), "upper");
    let start = tokio::time::Instant::now();
    let res = svc
        .clone()
        .oneshot(LlmRequest::new("m", "hi"))
        .await
        .unwrap();
    assert_eq!(res.content, "HI");
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    let emb = svc
        .oneshot(EmbeddingRequest::new("e", vec!["abc".into()]))
        .await
        .unwrap();
    assert_eq!(emb.embeddings, vec![vec![3.0]]);
}

trait NameOf {
    fn name_of(&self) -> &str;
}
impl NameOf for Upper {
    fn name_of(&self) -> &str {
        AsyncProvider::name(self)
    }
}

#[tokio::test]
async fn blocking_embedder_adapter() {
    let svc = provider::from_blocking(Lengths);
    let res = svc
        .clone()
        .oneshot(EmbeddingRequest::new("e", vec!["ab".into(), "abcd".into()]))
        .await
        .unwrap();
    assert_eq!(res.embeddings, vec![vec![2.0], vec![4.0]]);
    let err = svc
        .oneshot(EmbeddingRequest::new("e", vec![]))
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::InvalidRequest { .. }));
    let boxed = provider::boxed_embedding(provider::from_blocking(Lengths));
    assert_eq!(
        boxed
            .oneshot(EmbeddingRequest::new("e", vec!["x".into()]))
            .await
            .unwrap()
            .embeddings,
        vec![vec![1.0]]
    );
}

struct Echo;
impl AsyncProvider for Echo {
    fn name(&self) -> &str {
        "echo"
    }
    async fn complete(&self, req: LlmRequest) -> Result<LlmResponse, LlmError> {
        Ok(LlmResponse::text(
            req.prompt().unwrap_or_default().to_owned(),
            req.model.as_str(),
            "echo",
        ))
    }
}

#[test]
fn blocking_client_from_plain_threads() {
    let client =
        Arc::new(BlockingClient::new(provider::boxed(provider::from_async(Echo))).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let client = Arc::clone(&client);
            std::thread::spawn(move || client.call(LlmRequest::new("m", format!("t{i}"))).unwrap())
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        assert_eq!(t.join().unwrap().content, format!("t{i}"));
    }
}

#[tokio::test]
async fn blocking_client_inside_a_runtime_is_an_error_not_a_panic() {
    // Made inside the runtime, called there, and dropped there: none of it may panic.
    let client = BlockingClient::new(provider::from_async(Echo)).unwrap();
    let err = client.call(LlmRequest::new("m", "x")).unwrap_err();
    assert!(
        matches!(&err, LlmError::Unsupported { feature, .. } if feature.contains(".await")),
        "{err:?}"
    );
    drop(client);
}

#[test]
fn blocking_client_made_outside_and_dropped_inside_a_runtime() {
    let client = BlockingClient::new(provider::from_async(Echo)).unwrap();
    assert_eq!(client.call(LlmRequest::new("m", "x")).unwrap().content, "x");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async move {
        assert!(client.call(LlmRequest::new("m", "x")).is_err());
        drop(client);
    });
}
