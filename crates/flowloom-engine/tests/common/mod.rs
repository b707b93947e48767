//! Test helpers: a provider whose latency is named in the prompt, recording when each call
//! started and ended and how many ran at once.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flowloom_core::{LlmError, LlmRequest, LlmResponse, TokenUsage};
use tokio::time::Instant;

/// One call: the prompt, and when it started and ended (from the recorder's origin).
#[derive(Debug, Clone)]
pub struct Call {
    pub prompt: String,
    pub start: Duration,
    pub end: Duration,
}

/// A provider answering `"<ms>ms:<text>"` prompts with `<text>` after `<ms>` milliseconds
/// (tokio time, so paused-time tests do not sleep), reporting usage (10 + 5 tokens).
#[derive(Clone)]
pub struct Timed {
    origin: Instant,
    calls: Arc<Mutex<Vec<Call>>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
}

impl Timed {
    pub fn new() -> Self {
        Timed {
            origin: Instant::now(),
            calls: Arc::default(),
            in_flight: Arc::default(),
            max_in_flight: Arc::default(),
        }
    }
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
    pub fn call(&self, text: &str) -> Call {
        self.calls()
            .into_iter()
            .find(|c| c.prompt.ends_with(text))
            .unwrap_or_else(|| panic!("no call for {text}"))
    }
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }
}

impl tower::Service<LlmRequest> for Timed {
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<LlmResponse, LlmError>> + Send + 'static>,
    >;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), LlmError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: LlmRequest) -> Self::Future {
        let me = self.clone();
        Box::pin(async move {
            let prompt = req.prompt().unwrap_or_default().to_owned();
            let (ms, text) = match prompt.split_once("ms:") {
                Some((ms, t)) => (ms.trim().parse::<u64>().unwrap_or(0), t.to_owned()),
                None => (0, prompt.clone()),
            };
            let now = me.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            me.max_in_flight.fetch_max(now, Ordering::SeqCst);
            let start = me.origin.elapsed();
            tokio::time::sleep(Duration::from_millis(ms)).await;
            me.in_flight.fetch_sub(1, Ordering::SeqCst);
            me.calls.lock().unwrap().push(Call {
                prompt: prompt.clone(),
                start,
                end: me.origin.elapsed(),
            });
            Ok(LlmResponse::text(text, req.model, "timed")
                .with_usage(TokenUsage::new(10, 5, "m", "timed")))
        })
    }
}
