//! A tiny scripted provider for the layer tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use flowloom_core::provider::BoxFuture;
use flowloom_core::{
    EmbeddingRequest, EmbeddingResponse, LlmError, LlmRequest, LlmResponse, TokenUsage,
};
use tokio::time::Instant;
use tower::Service;

/// One scripted answer: after `delay`, this result.
#[derive(Clone)]
pub struct Step {
    pub delay: Duration,
    pub result: Result<String, LlmError>,
    pub usage: Option<(u64, u64)>,
}

pub fn ok(text: &str) -> Step {
    Step {
        delay: Duration::ZERO,
        result: Ok(text.to_owned()),
        usage: None,
    }
}
pub fn err(e: LlmError) -> Step {
    Step {
        delay: Duration::ZERO,
        result: Err(e),
        usage: None,
    }
}
impl Step {
    pub fn after(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
    pub fn usage(mut self, prompt: u64, completion: u64) -> Self {
        self.usage = Some((prompt, completion));
        self
    }
}

pub fn server(provider: &str, status: u16) -> LlmError {
    LlmError::Server {
        provider: provider.into(),
        status,
        message: "server error".into(),
        retry_after: None,
    }
}
pub fn rate_limited(provider: &str, after: Option<Duration>) -> LlmError {
    LlmError::RateLimited {
        provider: provider.into(),
        message: "slow down".into(),
        retry_after: after,
    }
}
pub fn unauthorized(provider: &str) -> LlmError {
    LlmError::Authentication {
        provider: provider.into(),
        status: 401,
        message: "check OPENAI_API_KEY".into(),
    }
}
pub fn bad_request(provider: &str) -> LlmError {
    LlmError::InvalidRequest {
        provider: provider.into(),
        message: "bad field".into(),
    }
}

/// A provider answering from a script (then "done" forever), recording when and what it was
/// asked.
#[derive(Clone)]
pub struct Scripted {
    pub name: String,
    script: Arc<Mutex<VecDeque<Step>>>,
    pub calls: Arc<Mutex<Vec<(Instant, LlmRequest)>>>,
    pub embed_calls: Arc<Mutex<Vec<Instant>>>,
    pub in_flight: Arc<Mutex<(usize, usize)>>,
}

impl Scripted {
    pub fn new(name: &str, steps: Vec<Step>) -> Self {
        Self {
            name: name.to_owned(),
            script: Arc::new(Mutex::new(steps.into())),
            calls: Arc::default(),
            embed_calls: Arc::default(),
            in_flight: Arc::default(),
        }
    }
    pub fn count(&self) -> usize {
        self.calls.lock().unwrap().len() + self.embed_calls.lock().unwrap().len()
    }
    pub fn times(&self) -> Vec<Instant> {
        self.calls.lock().unwrap().iter().map(|(t, _)| *t).collect()
    }
    pub fn requests(&self) -> Vec<LlmRequest> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }
    /// Most calls that were in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.in_flight.lock().unwrap().1
    }
    fn next(&self) -> Step {
        self.script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| ok("done"))
    }
}

impl Service<LlmRequest> for Scripted {
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = BoxFuture<Result<LlmResponse, LlmError>>;
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: LlmRequest) -> Self::Future {
        self.calls
            .lock()
            .unwrap()
            .push((Instant::now(), req.clone()));
        let step = self.next();
        let name = self.name.clone();
        let flight = self.in_flight.clone();
        Box::pin(async move {
            {
                let mut f = flight.lock().unwrap();
                f.0 += 1;
                f.1 = f.1.max(f.0);
            }
            tokio::time::sleep(step.delay).await;
            flight.lock().unwrap().0 -= 1;
            let text = step.result?;
            let mut r = LlmResponse::text(text, req.model.clone(), name.clone());
            if let Some((p, c)) = step.usage {
                r = r.with_usage(TokenUsage::new(p, c, req.model, name));
            }
            Ok(r)
        })
    }
}

impl Service<EmbeddingRequest> for Scripted {
    type Response = EmbeddingResponse;
    type Error = LlmError;
    type Future = BoxFuture<Result<EmbeddingResponse, LlmError>>;
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: EmbeddingRequest) -> Self::Future {
        self.embed_calls.lock().unwrap().push(Instant::now());
        let step = self.next();
        let name = self.name.clone();
        Box::pin(async move {
            tokio::time::sleep(step.delay).await;
            step.result?;
            Ok(EmbeddingResponse {
                embeddings: req.input.iter().map(|_| vec![0.0, 1.0]).collect(),
                model: req.model,
                provider: name,
                usage: None,
                latency_ms: 0.0,
            })
        })
    }
}
