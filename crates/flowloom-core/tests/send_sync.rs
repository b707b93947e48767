//! Compile-time checks: the boxed services, the public futures and the data types can cross
//! threads. If one of them stops being `Send`/`Sync`, this file stops compiling.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;

use flowloom_core::provider::{AsyncAdapter, BlockingAdapter, BoxFuture};
use flowloom_core::{
    AsyncProvider, BlockingClient, BlockingProvider, BoxEmbeddingService, BoxLlmService,
    BoxStreamService, EmbeddingRequest, EmbeddingResponse, LlmError, LlmRequest, LlmResponse,
    LlmStream, StreamRequest, WorkflowResult, provider,
};
use tower::{Service, ServiceExt};

fn assert_send_sync<T: Send + Sync>() {}
fn assert_send<T: Send>() {}
fn assert_static<T: 'static>() {}
fn is_send<F: Future + Send>(_: F) {}

struct A;
impl AsyncProvider for A {
    fn name(&self) -> &str {
        "a"
    }
    async fn complete(&self, r: LlmRequest) -> Result<LlmResponse, LlmError> {
        Ok(LlmResponse::text("", r.model, "a"))
    }
}
struct B;
impl BlockingProvider for B {
    fn name(&self) -> &str {
        "b"
    }
    fn complete(&self, r: LlmRequest) -> Result<LlmResponse, LlmError> {
        Ok(LlmResponse::text("", r.model, "b"))
    }
}

#[test]
fn boxed_services_are_send_sync_clone() {
    assert_send_sync::<BoxLlmService>();
    assert_send_sync::<BoxEmbeddingService>();
    assert_send_sync::<BoxStreamService>();
    assert_static::<BoxLlmService>();
    fn clone<T: Clone>() {}
    clone::<BoxLlmService>();
    clone::<BoxEmbeddingService>();
    clone::<BoxStreamService>();
}

#[test]
fn service_futures_are_send() {
    assert_send::<<BoxLlmService as Service<LlmRequest>>::Future>();
    assert_send::<<BoxEmbeddingService as Service<EmbeddingRequest>>::Future>();
    assert_send::<<BoxStreamService as Service<StreamRequest>>::Future>();
    assert_send::<<AsyncAdapter<A> as Service<LlmRequest>>::Future>();
    assert_send::<<BlockingAdapter<B> as Service<LlmRequest>>::Future>();
    assert_send::<BoxFuture<Result<LlmResponse, LlmError>>>();
    assert_send::<LlmStream>();

    let mut a = provider::from_async(A);
    let mut b = provider::from_blocking(B);
    is_send(a.call(LlmRequest::new("m", "x")));
    is_send(b.call(LlmRequest::new("m", "x")));
    is_send(a.clone().oneshot(LlmRequest::new("m", "x")));
    is_send(provider::boxed(b.clone()).oneshot(LlmRequest::new("m", "x")));
    // An AsyncProvider's own future is Send, as the trait requires.
    is_send(A.complete(LlmRequest::new("m", "x")));
}

#[test]
fn adapters_clients_and_data_are_send_sync() {
    assert_send_sync::<AsyncAdapter<A>>();
    assert_send_sync::<BlockingAdapter<B>>();
    assert_send_sync::<BlockingClient<BoxLlmService>>();
    assert_send_sync::<LlmError>();
    assert_send_sync::<LlmRequest>();
    assert_send_sync::<LlmResponse>();
    assert_send_sync::<EmbeddingResponse>();
    assert_send_sync::<WorkflowResult>();
    assert_static::<LlmError>();
    fn is_error<E: std::error::Error + Send + Sync + 'static>() {}
    is_error::<LlmError>();
    is_error::<flowloom_core::ValidationErrors>();
}
