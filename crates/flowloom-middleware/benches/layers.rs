//! Overhead of each layer per call, on a zero-latency provider, against the bare provider in
//! the same run; and of the full recommended stack.
//!
//! `cargo bench -p flowloom-middleware --bench layers`
//!
//! Each figure is the best of 25 rounds of 20,000 calls (rounds interleave the layers, so each
//! round measures all of them under the same load) on a current-thread runtime,
//! measured with `std::time::Instant`. Targets: ≤ 1 µs per layer, ≤ 5 µs for the full stack.

use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use flowloom_core::{BoxLlmService, LlmError, LlmRequest, LlmResponse, TokenUsage, provider};
use flowloom_middleware::cache::{CacheConfig, CacheLayer};
use flowloom_middleware::concurrency::ConcurrencyLimitLayer;
use flowloom_middleware::failover::{Failover, FailoverEntry};
use flowloom_middleware::guard::GuardConfig;
use flowloom_middleware::guard::GuardLayer;
use flowloom_middleware::guard::validate::InputValidator;
use flowloom_middleware::rate_limit::{RateLimit, RateLimitLayer};
use flowloom_middleware::retry::{RetryLayer, RetryPolicy};
use flowloom_middleware::timeout::TimeoutLayer;
use flowloom_middleware::{PiiAction, ProviderStack};
use tower::{Layer, Service, ServiceExt};

/// A provider that answers at once with a prepared response.
#[derive(Clone)]
struct Zero(Arc<LlmResponse>);

impl Service<LlmRequest> for Zero {
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = std::future::Ready<Result<LlmResponse, LlmError>>;
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _req: LlmRequest) -> Self::Future {
        std::future::ready(Ok((*self.0).clone()))
    }
}

const ITERS: u32 = 20_000;
const ROUNDS: usize = 25;

async fn per_call<S>(mut svc: S, req: &LlmRequest) -> f64
where
    S: Service<LlmRequest, Response = LlmResponse, Error = LlmError>,
{
    for _ in 0..1_000 {
        let r = svc.ready().await;
        if let Ok(s) = r {
            black_box(s.call(req.clone()).await.ok());
        }
    }
    let start = Instant::now();
    for _ in 0..ITERS {
        let r = svc.ready().await;
        if let Ok(s) = r {
            black_box(s.call(req.clone()).await.ok());
        }
    }
    start.elapsed().as_nanos() as f64 / f64::from(ITERS)
}

fn zero() -> Zero {
    Zero(Arc::new(
        LlmResponse::text("The answer is 42.", "gpt-4o-mini", "zero").with_usage(TokenUsage::new(
            12,
            6,
            "gpt-4o-mini",
            "zero",
        )),
    ))
}

fn rate_limit() -> RateLimitLayer {
    // Limits far above the call rate: the bench measures bookkeeping, not waiting.
    RateLimitLayer::new(
        RateLimit::builder()
            .requests_per_minute(u32::MAX)
            .request_burst(1_000_000)
            .tokens_per_minute(u64::MAX / 4)
            .build()
            .unwrap_or_else(|e| fail(&e)),
    )
}

fn fail(e: &dyn std::fmt::Display) -> ! {
    eprintln!("bench setup failed: {e}");
    std::process::exit(1)
}

fn full_stack() -> BoxLlmService {
    let stack = ProviderStack::new()
        .guard(GuardLayer::new(GuardConfig {
            pii: PiiAction::Detect,
            validator: Some(InputValidator::default()),
            ..GuardConfig::default()
        }))
        .cache(CacheLayer::new(CacheConfig::default()))
        .overall_timeout(Duration::from_secs(300))
        .retry(RetryLayer::new(RetryPolicy::default()))
        .concurrency(ConcurrencyLimitLayer::new(64).unwrap_or_else(|e| fail(&e)))
        .rate_limit(rate_limit())
        .attempt_timeout(Duration::from_secs(60));
    stack.service(zero())
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap_or_else(|e| fail(&e));
    // temperature 0.7: the cache passes the request through (not cacheable by default);
    // the "cache hit" row uses temperature 0.
    let req = LlmRequest::new(
        "gpt-4o-mini",
        "Summarize the meeting notes in three bullets.",
    )
    .with_system("You are concise.");
    let req_t0 = req.clone().with_temperature(0.0);

    let names = [
        "bare provider",
        "timeout",
        "retry",
        "rate limit (rpm + tpm)",
        "concurrency limit",
        "failover (1 entry, boxed)",
        "cache (pass-through, t=0.7)",
        "cache (hit)",
        "guard (validation only)",
        "guard (PII detect)",
        "guard (PII redact)",
        "full recommended stack (ProviderStack)",
    ];
    let mut best = vec![f64::INFINITY; names.len()];
    rt.block_on(async {
        for _ in 0..ROUNDS {
            let cache_hit = CacheLayer::new(CacheConfig::default());
            let figures = [
                per_call(zero(), &req).await,
                per_call(
                    TimeoutLayer::new(Duration::from_secs(60)).layer(zero()),
                    &req,
                )
                .await,
                per_call(RetryLayer::new(RetryPolicy::default()).layer(zero()), &req).await,
                per_call(rate_limit().layer(zero()), &req).await,
                per_call(
                    ConcurrencyLimitLayer::new(64)
                        .unwrap_or_else(|e| fail(&e))
                        .layer(zero()),
                    &req,
                )
                .await,
                per_call(
                    Failover::new(vec![FailoverEntry::new("zero", provider::boxed(zero()))])
                        .unwrap_or_else(|e| fail(&e)),
                    &req,
                )
                .await,
                per_call(CacheLayer::new(CacheConfig::default()).layer(zero()), &req).await,
                per_call(cache_hit.layer(zero()), &req_t0).await,
                per_call(
                    GuardLayer::validation(InputValidator::default()).layer(zero()),
                    &req,
                )
                .await,
                per_call(GuardLayer::detect().layer(zero()), &req).await,
                per_call(GuardLayer::redact().layer(zero()), &req).await,
                per_call(full_stack(), &req).await,
            ];
            for (b, f) in best.iter_mut().zip(figures) {
                *b = b.min(f);
            }
        }
    });

    let bare = best[0];
    println!(
        "flowloom-middleware layer overhead ({ITERS} calls x best of {ROUNDS} rounds, current-thread runtime)"
    );
    println!(
        "{:<44} {:>10} {:>16}",
        "layer", "ns/call", "overhead vs bare"
    );
    for (name, ns) in names.iter().zip(&best) {
        println!("{name:<44} {ns:>10.0} {:>13.0} ns", ns - bare);
    }
    println!(
        "(full stack: ProviderStack with guard (PII detect + validation), cache passing through, overall timeout, retry, concurrency limit, rate limit, attempt timeout; boxed once)"
    );
    let full = best[best.len() - 1] - bare;
    println!(
        "targets: each layer <= 1000 ns overhead, full stack <= 5000 ns: full stack {}",
        if full <= 5000.0 { "met" } else { "NOT met" }
    );
}
