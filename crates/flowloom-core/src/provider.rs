//! The provider contract, and adapters from plain traits into it.
//!
//! Every model call is a `tower::Service<LlmRequest, Response = LlmResponse, Error = LlmError>`
//! that is `Clone + Send + Sync + 'static` with a `Send` future: [`LlmService`] names that
//! bound, and [`BoxLlmService`] erases the type. Embeddings follow the same shape
//! ([`EmbeddingService`], [`BoxEmbeddingService`]), and so does streaming
//! ([`StreamService`], [`BoxStreamService`]).
//!
//! Plugin authors need not write a `Service`: implement [`AsyncProvider`] or
//! [`BlockingProvider`] and wrap it with [`from_async`] or [`from_blocking`]. A blocking
//! provider runs on tokio's blocking pool, so it never stalls the runtime's worker threads.
//!
//! ```
//! use flowloom_core::{AsyncProvider, LlmError, LlmRequest, LlmResponse, provider};
//! use tower::ServiceExt;
//!
//! struct Shout;
//! impl AsyncProvider for Shout {
//!     fn name(&self) -> &str { "shout" }
//!     async fn complete(&self, req: LlmRequest) -> Result<LlmResponse, LlmError> {
//!         let text = req.prompt().unwrap_or_default().to_uppercase();
//!         Ok(LlmResponse::text(text, req.model, "shout"))
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let svc = provider::from_async(Shout);
//! let res = svc.oneshot(LlmRequest::new("m", "hi")).await.unwrap();
//! assert_eq!(res.content, "HI");
//! # });
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::Service;
use tower::util::BoxCloneSyncService;

use crate::embedding::{EmbeddingRequest, EmbeddingResponse};
use crate::error::LlmError;
use crate::request::LlmRequest;
use crate::response::{LlmResponse, LlmStream, StreamRequest};

/// A boxed `Send` future, as the adapters return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The provider contract for chat completions.
pub trait LlmService:
    Service<LlmRequest, Response = LlmResponse, Error = LlmError, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}
impl<S> LlmService for S where
    S: Service<LlmRequest, Response = LlmResponse, Error = LlmError, Future: Send + 'static>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// The provider contract for embeddings.
pub trait EmbeddingService:
    Service<
        EmbeddingRequest,
        Response = EmbeddingResponse,
        Error = LlmError,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}
impl<S> EmbeddingService for S where
    S: Service<
            EmbeddingRequest,
            Response = EmbeddingResponse,
            Error = LlmError,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// The provider contract for streamed chat completions.
pub trait StreamService:
    Service<StreamRequest, Response = LlmStream, Error = LlmError, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}
impl<S> StreamService for S where
    S: Service<StreamRequest, Response = LlmStream, Error = LlmError, Future: Send + 'static>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// A type-erased, cloneable, `Send + Sync` chat service.
pub type BoxLlmService = BoxCloneSyncService<LlmRequest, LlmResponse, LlmError>;
/// A type-erased, cloneable, `Send + Sync` embedding service.
pub type BoxEmbeddingService = BoxCloneSyncService<EmbeddingRequest, EmbeddingResponse, LlmError>;
/// A type-erased, cloneable, `Send + Sync` streaming service.
pub type BoxStreamService = BoxCloneSyncService<StreamRequest, LlmStream, LlmError>;

/// Boxes any chat service.
pub fn boxed<S: LlmService>(service: S) -> BoxLlmService {
    BoxCloneSyncService::new(service)
}

/// Boxes any embedding service.
pub fn boxed_embedding<S: EmbeddingService>(service: S) -> BoxEmbeddingService {
    BoxCloneSyncService::new(service)
}

/// A provider written as a plain async trait.
pub trait AsyncProvider: Send + Sync + 'static {
    /// The provider's name, used in errors and usage records.
    fn name(&self) -> &str;
    /// Answers one request.
    fn complete(
        &self,
        request: LlmRequest,
    ) -> impl Future<Output = Result<LlmResponse, LlmError>> + Send;
}

/// A provider written as a plain blocking trait.
pub trait BlockingProvider: Send + Sync + 'static {
    /// The provider's name, used in errors and usage records.
    fn name(&self) -> &str;
    /// Answers one request; may block.
    fn complete(&self, request: LlmRequest) -> Result<LlmResponse, LlmError>;
}

/// An embedder written as a plain async trait.
pub trait AsyncEmbedder: Send + Sync + 'static {
    /// The provider's name.
    fn name(&self) -> &str;
    /// Embeds the request's texts.
    fn embed(
        &self,
        request: EmbeddingRequest,
    ) -> impl Future<Output = Result<EmbeddingResponse, LlmError>> + Send;
}

/// An embedder written as a plain blocking trait.
pub trait BlockingEmbedder: Send + Sync + 'static {
    /// The provider's name.
    fn name(&self) -> &str;
    /// Embeds the request's texts; may block.
    fn embed(&self, request: EmbeddingRequest) -> Result<EmbeddingResponse, LlmError>;
}

/// Adapts an [`AsyncProvider`] (or [`AsyncEmbedder`]) into the service contract.
#[derive(Debug)]
pub struct AsyncAdapter<P>(Arc<P>);

/// Adapts a [`BlockingProvider`] (or [`BlockingEmbedder`]) into the service contract; each
/// call runs on tokio's blocking thread pool.
#[derive(Debug)]
pub struct BlockingAdapter<P>(Arc<P>);

impl<P> Clone for AsyncAdapter<P> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}
impl<P> Clone for BlockingAdapter<P> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<P> AsyncAdapter<P> {
    /// The wrapped provider.
    pub fn inner(&self) -> &P {
        &self.0
    }
}
impl<P> BlockingAdapter<P> {
    /// The wrapped provider.
    pub fn inner(&self) -> &P {
        &self.0
    }
}

/// Wraps an [`AsyncProvider`] or [`AsyncEmbedder`] as a service.
pub fn from_async<P>(provider: P) -> AsyncAdapter<P> {
    AsyncAdapter(Arc::new(provider))
}

/// Wraps a [`BlockingProvider`] or [`BlockingEmbedder`] as a service.
pub fn from_blocking<P>(provider: P) -> BlockingAdapter<P> {
    BlockingAdapter(Arc::new(provider))
}

impl<P: AsyncProvider> Service<LlmRequest> for AsyncAdapter<P> {
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = BoxFuture<Result<LlmResponse, LlmError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: LlmRequest) -> Self::Future {
        let p = Arc::clone(&self.0);
        Box::pin(async move { p.complete(req).await })
    }
}

impl<P: AsyncEmbedder> Service<EmbeddingRequest> for AsyncAdapter<P> {
    type Response = EmbeddingResponse;
    type Error = LlmError;
    type Future = BoxFuture<Result<EmbeddingResponse, LlmError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: EmbeddingRequest) -> Self::Future {
        let p = Arc::clone(&self.0);
        Box::pin(async move { p.embed(req).await })
    }
}

fn run_blocking<T, F>(name: String, f: F) -> BoxFuture<Result<T, LlmError>>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, LlmError> + Send + 'static,
{
    Box::pin(async move {
        match tokio::task::spawn_blocking(f).await {
            Ok(r) => r,
            Err(e) if e.is_panic() => Err(LlmError::Other {
                provider: name,
                message: format!("the provider panicked: {}", panic_message(e.into_panic())),
            }),
            Err(_) => Err(LlmError::Cancelled),
        }
    })
}

/// The text of a panic payload, where it has one.
pub fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

impl<P: BlockingProvider> Service<LlmRequest> for BlockingAdapter<P> {
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = BoxFuture<Result<LlmResponse, LlmError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: LlmRequest) -> Self::Future {
        let p = Arc::clone(&self.0);
        let name = p.name().to_owned();
        run_blocking(name, move || p.complete(req))
    }
}

impl<P: BlockingEmbedder> Service<EmbeddingRequest> for BlockingAdapter<P> {
    type Response = EmbeddingResponse;
    type Error = LlmError;
    type Future = BoxFuture<Result<EmbeddingResponse, LlmError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: EmbeddingRequest) -> Self::Future {
        let p = Arc::clone(&self.0);
        let name = <P as BlockingEmbedder>::name(&p).to_owned();
        run_blocking(name, move || p.embed(req))
    }
}
