//! The cassette as a `tower` layer and service.

use std::pin::Pin;
use std::task::{Context, Poll};

use flowloom_core::provider::BoxFuture;
use flowloom_core::{
    EmbeddingRequest, EmbeddingResponse, LlmError, LlmRequest, LlmResponse, LlmStream, StreamEvent,
    StreamRequest,
};
use futures_util::{Stream, StreamExt};
use tower::{Layer, Service};

use super::{
    CASSETTE_PROVIDER, CallKind, Cassette, Interaction, RecordedError, RecordedStream,
    normalize_embedding_request, normalize_request,
};

/// A `tower::Layer` that records into or replays from a [`Cassette`]; see the
/// [module docs](super).
#[derive(Debug, Clone)]
pub struct CassetteLayer {
    cassette: Cassette,
}

impl CassetteLayer {
    /// A layer over `cassette`.
    pub fn new(cassette: Cassette) -> Self {
        Self { cassette }
    }
}

impl<S> Layer<S> for CassetteLayer {
    type Service = CassetteService<S>;
    fn layer(&self, inner: S) -> CassetteService<S> {
        CassetteService::new(inner, self.cassette.clone())
    }
}

/// The service [`CassetteLayer`] makes: chat (`Service<LlmRequest>`) and streaming
/// (`Service<StreamRequest>`). In replay mode the inner service is never polled or called.
#[derive(Debug, Clone)]
pub struct CassetteService<S> {
    inner: S,
    cassette: Cassette,
}

impl<S> CassetteService<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, cassette: Cassette) -> Self {
        Self { inner, cassette }
    }

    /// The cassette.
    pub fn cassette(&self) -> &Cassette {
        &self.cassette
    }
}

fn step_of(req: &LlmRequest) -> Option<String> {
    req.context.step.as_deref().map(str::to_owned)
}

impl<S> Service<LlmRequest> for CassetteService<S>
where
    S: Service<LlmRequest, Response = LlmResponse, Error = LlmError>,
    S::Future: Send + 'static,
{
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = BoxFuture<Result<LlmResponse, LlmError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        if self.cassette.is_recording() {
            self.inner.poll_ready(cx)
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn call(&mut self, req: LlmRequest) -> Self::Future {
        if !self.cassette.is_recording() {
            let answer = self
                .cassette
                .replay(
                    CallKind::Chat,
                    normalize_request(&req, self.cassette.scrubber()),
                )
                .and_then(|it| match (it.response, it.error) {
                    (Some(r), _) => Ok(r),
                    (None, Some(e)) => Err(LlmError::from(&e)),
                    (None, None) => Err(LlmError::Other {
                        provider: CASSETTE_PROVIDER.to_owned(),
                        message: "the recording has neither a response nor an error".to_owned(),
                    }),
                });
            return Box::pin(async move { answer });
        }
        let cassette = self.cassette.clone();
        let slot = cassette.begin();
        let key = normalize_request(&req, cassette.scrubber());
        let step = step_of(&req);
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await;
            let (response, error) = match &result {
                Ok(r) => (Some(r.clone()), None),
                Err(e) => (None, Some(RecordedError::from(e))),
            };
            cassette.complete(
                slot,
                Interaction {
                    kind: CallKind::Chat,
                    step,
                    request: key,
                    response,
                    error,
                    stream: None,
                    embedding: None,
                },
            )?;
            result
        })
    }
}

impl<S> Service<StreamRequest> for CassetteService<S>
where
    S: Service<StreamRequest, Response = LlmStream, Error = LlmError>,
    S::Future: Send + 'static,
{
    type Response = LlmStream;
    type Error = LlmError;
    type Future = BoxFuture<Result<LlmStream, LlmError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        if self.cassette.is_recording() {
            self.inner.poll_ready(cx)
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn call(&mut self, req: StreamRequest) -> Self::Future {
        if !self.cassette.is_recording() {
            let answer = self
                .cassette
                .replay(
                    CallKind::Stream,
                    normalize_request(&req.0, self.cassette.scrubber()),
                )
                .and_then(|it| match (it.stream, it.error) {
                    (Some(s), _) => Ok(replay_stream(s)),
                    (None, Some(e)) => Err(LlmError::from(&e)),
                    (None, None) => Err(LlmError::Other {
                        provider: CASSETTE_PROVIDER.to_owned(),
                        message: "the recording has neither a stream nor an error".to_owned(),
                    }),
                });
            return Box::pin(async move { answer });
        }
        let cassette = self.cassette.clone();
        let slot = cassette.begin();
        let key = normalize_request(&req.0, cassette.scrubber());
        let step = step_of(&req.0);
        let fut = self.inner.call(req);
        Box::pin(async move {
            let base = Interaction {
                kind: CallKind::Stream,
                step,
                request: key,
                response: None,
                error: None,
                stream: None,
                embedding: None,
            };
            match fut.await {
                Ok(inner) => {
                    let rec = RecordingStream {
                        inner,
                        pending: Some((cassette, slot, base)),
                        events: RecordedStream {
                            chunks: Vec::new(),
                            done: None,
                            error: None,
                        },
                        finished: false,
                    };
                    Ok(Box::pin(rec) as LlmStream)
                }
                Err(e) => {
                    cassette.complete(
                        slot,
                        Interaction {
                            error: Some(RecordedError::from(&e)),
                            ..base
                        },
                    )?;
                    Err(e)
                }
            }
        })
    }
}

impl<S> Service<EmbeddingRequest> for CassetteService<S>
where
    S: Service<EmbeddingRequest, Response = EmbeddingResponse, Error = LlmError>,
    S::Future: Send + 'static,
{
    type Response = EmbeddingResponse;
    type Error = LlmError;
    type Future = BoxFuture<Result<EmbeddingResponse, LlmError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        if self.cassette.is_recording() {
            self.inner.poll_ready(cx)
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn call(&mut self, req: EmbeddingRequest) -> Self::Future {
        let key = normalize_embedding_request(&req, self.cassette.scrubber());
        if !self.cassette.is_recording() {
            let answer = self
                .cassette
                .replay(CallKind::Embedding, key)
                .and_then(|it| match (it.embedding, it.error) {
                    (Some(r), _) => Ok(r),
                    (None, Some(e)) => Err(LlmError::from(&e)),
                    (None, None) => Err(LlmError::Other {
                        provider: CASSETTE_PROVIDER.to_owned(),
                        message: "the recording has neither an embedding nor an error".to_owned(),
                    }),
                });
            return Box::pin(async move { answer });
        }
        let cassette = self.cassette.clone();
        let slot = cassette.begin();
        let step = req.context.step.as_deref().map(str::to_owned);
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await;
            let (embedding, error) = match &result {
                Ok(r) => (Some(r.clone()), None),
                Err(e) => (None, Some(RecordedError::from(e))),
            };
            cassette.complete(
                slot,
                Interaction {
                    kind: CallKind::Embedding,
                    step,
                    request: key,
                    response: None,
                    error,
                    stream: None,
                    embedding,
                },
            )?;
            result
        })
    }
}

fn replay_stream(s: RecordedStream) -> LlmStream {
    let mut events: Vec<Result<StreamEvent, LlmError>> = s
        .chunks
        .into_iter()
        .map(|c| Ok(StreamEvent::Delta(c)))
        .collect();
    if let Some(done) = s.done {
        events.push(Ok(StreamEvent::Done(done)));
    }
    if let Some(e) = s.error {
        events.push(Err(LlmError::from(&e)));
    }
    Box::pin(futures_util::stream::iter(events))
}

/// Passes a live stream through and records its events; the interaction is written when the
/// stream ends, or when it is dropped early (then with the events seen so far).
struct RecordingStream {
    inner: LlmStream,
    pending: Option<(Cassette, usize, Interaction)>,
    events: RecordedStream,
    finished: bool,
}

impl RecordingStream {
    fn commit(&mut self) -> Result<(), LlmError> {
        match self.pending.take() {
            Some((cassette, slot, base)) => cassette.complete(
                slot,
                Interaction {
                    stream: Some(std::mem::replace(
                        &mut self.events,
                        RecordedStream {
                            chunks: Vec::new(),
                            done: None,
                            error: None,
                        },
                    )),
                    ..base
                },
            ),
            None => Ok(()),
        }
    }
}

impl Stream for RecordingStream {
    type Item = Result<StreamEvent, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        match this.inner.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(item)) => {
                match &item {
                    Ok(StreamEvent::Delta(t)) => this.events.chunks.push(t.clone()),
                    Ok(StreamEvent::Done(r)) => this.events.done = Some(r.clone()),
                    Ok(_) => {}
                    Err(e) => this.events.error = Some(RecordedError::from(e)),
                }
                Poll::Ready(Some(item))
            }
            Poll::Ready(None) => {
                this.finished = true;
                match this.commit() {
                    Ok(()) => Poll::Ready(None),
                    Err(e) => Poll::Ready(Some(Err(e))),
                }
            }
        }
    }
}

impl Drop for RecordingStream {
    fn drop(&mut self) {
        if let Err(e) = self.commit() {
            tracing::error!(error = %e, "could not write a stream dropped early to its cassette");
        }
    }
}

/// The provider behind [`Cassette::replayer`]: there is none, so every call it receives fails
/// with [`LlmError::Unavailable`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProvider;

fn no_provider() -> LlmError {
    LlmError::Unavailable {
        provider: CASSETTE_PROVIDER.to_owned(),
        message: "this cassette service has no provider behind it, so it cannot record; wrap a \
                  real provider with `Cassette::layer()` to record"
            .to_owned(),
    }
}

impl Service<LlmRequest> for NoProvider {
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = std::future::Ready<Result<LlmResponse, LlmError>>;
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _req: LlmRequest) -> Self::Future {
        std::future::ready(Err(no_provider()))
    }
}

impl Service<StreamRequest> for NoProvider {
    type Response = LlmStream;
    type Error = LlmError;
    type Future = std::future::Ready<Result<LlmStream, LlmError>>;
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _req: StreamRequest) -> Self::Future {
        std::future::ready(Err(no_provider()))
    }
}

impl Service<EmbeddingRequest> for NoProvider {
    type Response = EmbeddingResponse;
    type Error = LlmError;
    type Future = std::future::Ready<Result<EmbeddingResponse, LlmError>>;
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _req: EmbeddingRequest) -> Self::Future {
        std::future::ready(Err(no_provider()))
    }
}
