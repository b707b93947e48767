//! Behaviour of the layers, on paused time: no test sleeps for real.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use flowloom_core::{
    CallContext, EmbeddingRequest, EmbeddingService, FrameworkConfig, LlmError, LlmRequest,
    LlmService, provider,
};
use flowloom_middleware::cache::{CacheConfig, CacheLayer};
use flowloom_middleware::concurrency::ConcurrencyLimitLayer;
use flowloom_middleware::failover::{Failover, FailoverEntry, FailoverLayer};
use flowloom_middleware::guard::GuardLayer;
use flowloom_middleware::rate_limit::{RateLimit, RateLimitLayer};
use flowloom_middleware::retry::{RetryBudget, RetryLayer, RetryPolicy, parse_retry_after};
use flowloom_middleware::timeout::TimeoutLayer;
use flowloom_middleware::{ProviderStack, recommended_stack};
use futures_util::future::join_all;
use tokio::time::Instant;
use tower::{Layer, ServiceBuilder, ServiceExt};

fn req(prompt: &str) -> LlmRequest {
    LlmRequest::new("gpt-4o-mini", prompt)
}

/// No jitter, so every wait is exact.
fn exact_policy() -> RetryPolicy {
    RetryPolicy::builder().jitter(0.0).build().unwrap()
}

// ---- retry ------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_2_waits_2s_then_succeeds() {
    let after = parse_retry_after("2", SystemTime::now()).unwrap();
    let p = Scripted::new(
        "openai",
        vec![err(rate_limited("openai", Some(after))), ok("fine")],
    );
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryPolicy::default()))
        .service(p.clone());
    let start = Instant::now();
    let res = svc.oneshot(req("hi")).await.unwrap();
    assert_eq!(res.content, "fine");
    let t = p.times();
    assert_eq!(t.len(), 2);
    assert_eq!(t[1] - t[0], Duration::from_secs(2));
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(res.attempts.len(), 1);
    assert_eq!(res.attempts[0].status, Some(429));
    assert_eq!(res.attempts[0].provider, "openai");
}

#[tokio::test(start_paused = true)]
async fn retry_after_as_an_http_date_is_honoured() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470);
    let after = parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now).unwrap();
    assert_eq!(after, Duration::from_secs(10));
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
        Some(Duration::ZERO)
    );
    assert_eq!(
        parse_retry_after("1.5", now),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(parse_retry_after("", now), None);
    assert_eq!(parse_retry_after("-3", now), None);
    assert_eq!(parse_retry_after("tomorrow", now), None);

    let mut e = server("openai", 503);
    if let LlmError::Server { retry_after, .. } = &mut e {
        *retry_after = Some(after);
    }
    let p2 = Scripted::new("openai", vec![err(e), ok("ok")]);
    let svc = RetryLayer::new(exact_policy()).layer(p2.clone());
    svc.oneshot(req("hi")).await.unwrap();
    let t = p2.times();
    assert_eq!(t[1] - t[0], Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_the_cap_gives_up_at_once() {
    let p = Scripted::new(
        "openai",
        vec![err(rate_limited("openai", Some(Duration::from_secs(3600))))],
    );
    let svc = RetryLayer::new(RetryPolicy::default()).layer(p.clone());
    let start = Instant::now();
    let e = svc.oneshot(req("hi")).await.unwrap_err();
    assert!(
        matches!(e, LlmError::RetriesExhausted { attempts: 1, .. }),
        "{e}"
    );
    assert_eq!(p.count(), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_401_is_not_retried() {
    let p = Scripted::new("openai", vec![err(unauthorized("openai")), ok("never")]);
    let svc = RetryLayer::new(RetryPolicy::default()).layer(p.clone());
    let e = svc.oneshot(req("hi")).await.unwrap_err();
    assert!(
        matches!(e, LlmError::Authentication { status: 401, .. }),
        "{e}"
    );
    assert_eq!(p.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn three_500s_exhaust_the_attempts_and_the_error_says_so() {
    let p = Scripted::new(
        "openai",
        vec![
            err(server("openai", 500)),
            err(server("openai", 500)),
            err(server("openai", 500)),
            ok("too late"),
        ],
    );
    let svc = RetryLayer::new(exact_policy()).layer(p.clone());
    let e = svc.oneshot(req("hi")).await.unwrap_err();
    assert_eq!(p.count(), 3);
    match &e {
        LlmError::RetriesExhausted {
            attempts,
            waited,
            last,
        } => {
            assert_eq!(*attempts, 3);
            // 500 ms, then 1 s (factor 2, no jitter).
            assert_eq!(*waited, Duration::from_millis(1500));
            assert_eq!(last.status(), Some(500));
        }
        other => panic!("expected RetriesExhausted, got {other}"),
    }
    assert_eq!(e.status(), Some(500));
    let msg = e.to_string();
    assert!(msg.contains("gave up after 3 attempts"), "{msg}");
    assert!(msg.contains("HTTP 500"), "{msg}");
    let t = p.times();
    assert_eq!(t[1] - t[0], Duration::from_millis(500));
    assert_eq!(t[2] - t[1], Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn backoff_grows_by_the_factor_and_stops_at_the_cap() {
    let policy = RetryPolicy::builder()
        .max_attempts(5)
        .base_delay(Duration::from_secs(1))
        .factor(3.0)
        .max_delay(Duration::from_secs(5))
        .jitter(0.0)
        .no_budget()
        .build()
        .unwrap();
    let p = Scripted::new("p", (0..5).map(|_| err(server("p", 502))).collect());
    let e = RetryLayer::new(policy)
        .layer(p.clone())
        .oneshot(req("x"))
        .await
        .unwrap_err();
    let t = p.times();
    let gaps: Vec<_> = t.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(
        gaps,
        [1, 3, 5, 5].map(Duration::from_secs).to_vec(),
        "1 s, ×3, then capped at 5 s"
    );
    assert!(matches!(e, LlmError::RetriesExhausted { attempts: 5, .. }));
}

#[tokio::test(start_paused = true)]
async fn jitter_is_deterministic_with_a_seed_and_within_bounds() {
    async fn waited(seed: u64) -> Duration {
        let policy = RetryPolicy::builder()
            .max_attempts(4)
            .jitter(0.5)
            .seed(seed)
            .build()
            .unwrap();
        let p = Scripted::new("p", (0..4).map(|_| err(server("p", 503))).collect());
        match RetryLayer::new(policy).layer(p).oneshot(req("x")).await {
            Err(LlmError::RetriesExhausted { waited, .. }) => waited,
            other => panic!("unexpected {other:?}"),
        }
    }
    let a = waited(42).await;
    assert_eq!(a, waited(42).await);
    assert_ne!(a, waited(43).await);
    // Unjittered: 0.5 + 1 + 2 = 3.5 s; with jitter 0.5 each wait is between half and all.
    assert!(
        a >= Duration::from_millis(1750) && a <= Duration::from_millis(3500),
        "{a:?}"
    );
    let p = RetryPolicy::builder().jitter(0.5).build().unwrap();
    assert_eq!(p.backoff(1, 0.0), Duration::from_millis(500));
    assert_eq!(p.backoff(1, 1.0), Duration::from_millis(250));
}

#[tokio::test(start_paused = true)]
async fn the_retry_budget_stops_retries_against_a_failing_provider() {
    let budget = std::sync::Arc::new(RetryBudget::new(0.0, 0.0, 1.0).unwrap());
    let p = Scripted::new("p", (0..10).map(|_| err(server("p", 503))).collect());
    let svc = RetryLayer::new(exact_policy())
        .with_budget(budget.clone())
        .layer(p.clone());
    let first = svc.clone().oneshot(req("a")).await.unwrap_err();
    // One retry in the budget: 2 attempts, then the budget is empty.
    assert!(
        matches!(first, LlmError::RetriesExhausted { attempts: 2, .. }),
        "{first}"
    );
    let second = svc.oneshot(req("b")).await.unwrap_err();
    assert!(
        matches!(second, LlmError::RetriesExhausted { attempts: 1, .. }),
        "{second}"
    );
    assert_eq!(p.count(), 3);
    assert!(budget.balance() < 1.0);
}

#[tokio::test(start_paused = true)]
async fn the_budget_refills_with_traffic() {
    let b = RetryBudget::new(0.5, 0.0, 2.0).unwrap();
    assert!(b.try_withdraw());
    assert!(b.try_withdraw());
    assert!(!b.try_withdraw());
    b.deposit();
    assert!(!b.try_withdraw());
    b.deposit();
    assert!(b.try_withdraw());
    let timed = RetryBudget::new(0.0, 2.0, 5.0).unwrap();
    while timed.try_withdraw() {}
    tokio::time::advance(Duration::from_millis(500)).await;
    assert!(
        timed.try_withdraw(),
        "2 per second: one after half a second"
    );
    assert!(!timed.try_withdraw());
}

#[tokio::test(start_paused = true)]
async fn a_deadline_stops_a_wait_that_would_end_too_late() {
    let policy = RetryPolicy::builder()
        .max_attempts(10)
        .jitter(0.0)
        .deadline(Duration::from_secs(1))
        .build()
        .unwrap();
    let p = Scripted::new("p", (0..10).map(|_| err(server("p", 503))).collect());
    let start = Instant::now();
    let e = RetryLayer::new(policy)
        .layer(p.clone())
        .oneshot(req("x"))
        .await
        .unwrap_err();
    // Attempt at 0, wait 0.5 s, attempt at 0.5 s; the next 1 s wait would end at 1.5 s.
    assert!(
        matches!(e, LlmError::RetriesExhausted { attempts: 2, .. }),
        "{e}"
    );
    assert_eq!(start.elapsed(), Duration::from_millis(500));
}

#[test]
fn bad_retry_settings_are_refused_with_a_clear_error() {
    let e = RetryPolicy::builder().factor(0.5).build().unwrap_err();
    assert!(e.to_string().contains("`factor`") && e.to_string().contains("0.5"));
    let e = RetryPolicy::builder().jitter(1.5).build().unwrap_err();
    assert!(e.to_string().contains("jitter"));
    let e = RetryPolicy::builder()
        .base_delay(Duration::from_secs(10))
        .max_delay(Duration::from_secs(1))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("max_delay"));
    assert!(RetryBudget::new(2.0, 0.0, 1.0).is_err());
    let bad = FrameworkConfig {
        retry_backoff_factor: 0.0,
        ..FrameworkConfig::default()
    };
    assert!(RetryPolicy::from_config(&bad).is_err());
    let cfg = FrameworkConfig {
        max_retry_attempts: 5,
        retry_backoff_factor: 3.0,
        ..FrameworkConfig::default()
    };
    let p = RetryPolicy::from_config(&cfg).unwrap();
    assert_eq!((p.max_attempts(), p.factor()), (5, 3.0));
}

#[tokio::test(start_paused = true)]
async fn retry_serves_embeddings_too() {
    let p = Scripted::new("p", vec![err(server("p", 503)), ok("")]);
    let svc = RetryLayer::new(exact_policy()).layer(p.clone());
    let res = svc
        .oneshot(EmbeddingRequest::new("emb", vec!["a".into(), "b".into()]))
        .await
        .unwrap();
    assert_eq!(res.embeddings.len(), 2);
    assert_eq!(p.embed_calls.lock().unwrap().len(), 2);
}

// ---- timeout and stacking order ---------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn timeout_cuts_a_slow_call() {
    let p = Scripted::new("p", vec![ok("late").after(Duration::from_secs(10))]);
    let ctx = CallContext {
        provider: Some("openai".into()),
        ..CallContext::default()
    };
    let e = TimeoutLayer::new(Duration::from_secs(3))
        .layer(p)
        .oneshot(req("x").with_context(ctx))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        LlmError::Timeout {
            provider: "openai".into(),
            elapsed: Duration::from_secs(3)
        }
    );
    assert!(e.is_retryable());
}

#[tokio::test(start_paused = true)]
async fn timeout_inside_retry_is_per_attempt() {
    // First attempt hangs for 10 s, second answers at once.
    let p = Scripted::new(
        "p",
        vec![ok("slow").after(Duration::from_secs(10)), ok("fast")],
    );
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(exact_policy()))
        .layer(TimeoutLayer::new(Duration::from_secs(2)))
        .service(p.clone());
    let start = Instant::now();
    let res = svc.oneshot(req("x")).await.unwrap();
    assert_eq!(res.content, "fast");
    // 2 s timeout + 0.5 s backoff.
    assert_eq!(start.elapsed(), Duration::from_millis(2500));
    assert_eq!(p.count(), 2);
    assert!(
        res.attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("timed out")
    );
}

#[tokio::test(start_paused = true)]
async fn timeout_outside_retry_is_overall() {
    let p = Scripted::new(
        "p",
        vec![ok("slow").after(Duration::from_secs(10)), ok("fast")],
    );
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_secs(2)))
        .layer(RetryLayer::new(exact_policy()))
        .service(p.clone());
    let start = Instant::now();
    let e = svc.oneshot(req("x")).await.unwrap_err();
    assert!(matches!(e, LlmError::Timeout { .. }), "{e}");
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(
        p.count(),
        1,
        "the overall timeout leaves no time for a retry"
    );
}

#[tokio::test(start_paused = true)]
async fn overall_timeout_also_bounds_backoff_waits() {
    let p = Scripted::new("p", (0..3).map(|_| err(server("p", 503))).collect());
    let policy = RetryPolicy::builder()
        .base_delay(Duration::from_secs(5))
        .jitter(0.0)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_secs(3)))
        .layer(RetryLayer::new(policy))
        .service(p.clone());
    let start = Instant::now();
    let e = svc.oneshot(req("x")).await.unwrap_err();
    assert!(e.is_timeout());
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert_eq!(p.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn rate_limit_inside_retry_counts_every_attempt_outside_counts_calls() {
    // 60 rpm. Inside retry: the retry after a 503 needs a new slot, so it goes at 1 s even
    // though the backoff is only 0.5 s.
    let limit = || {
        RateLimit::builder()
            .requests_per_minute(60)
            .build()
            .unwrap()
    };
    let p = Scripted::new("p", vec![err(server("p", 503)), ok("ok")]);
    let inside = ServiceBuilder::new()
        .layer(RetryLayer::new(exact_policy()))
        .layer(RateLimitLayer::new(limit()))
        .service(p.clone());
    inside.oneshot(req("x")).await.unwrap();
    let t = p.times();
    assert_eq!(t[1] - t[0], Duration::from_secs(1));

    // Outside retry: one slot for the whole call, the retry follows the backoff alone.
    let p = Scripted::new("p", vec![err(server("p", 503)), ok("ok")]);
    let outside = ServiceBuilder::new()
        .layer(RateLimitLayer::new(limit()))
        .layer(RetryLayer::new(exact_policy()))
        .service(p.clone());
    outside.oneshot(req("x")).await.unwrap();
    let t = p.times();
    assert_eq!(t[1] - t[0], Duration::from_millis(500));
}

// ---- rate and concurrency limits --------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn the_rate_limiter_spaces_calls_as_configured_in_arrival_order() {
    let p = Scripted::new("p", vec![]);
    let limit = RateLimit::builder()
        .requests_per_minute(120)
        .build()
        .unwrap();
    let svc = RateLimitLayer::new(limit).layer(p.clone());
    let start = Instant::now();
    let results = join_all((0..4).map(|i| svc.clone().oneshot(req(&i.to_string())))).await;
    assert!(
        results.iter().all(Result::is_ok),
        "callers wait, never fail"
    );
    let calls = p.calls.lock().unwrap().clone();
    let served: Vec<(String, Duration)> = calls
        .iter()
        .map(|(t, r)| (r.prompt().unwrap().to_owned(), *t - start))
        .collect();
    assert_eq!(
        served,
        vec![
            ("0".to_owned(), Duration::ZERO),
            ("1".to_owned(), Duration::from_millis(500)),
            ("2".to_owned(), Duration::from_secs(1)),
            ("3".to_owned(), Duration::from_millis(1500)),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_burst_lets_that_many_calls_go_at_once() {
    let p = Scripted::new("p", vec![]);
    let limit = RateLimit::builder()
        .requests_per_minute(60)
        .request_burst(3)
        .build()
        .unwrap();
    let svc = RateLimitLayer::new(limit).layer(p.clone());
    let start = Instant::now();
    join_all((0..4).map(|_| svc.clone().oneshot(req("x")))).await;
    let offsets: Vec<_> = p.times().iter().map(|t| *t - start).collect();
    assert_eq!(
        offsets,
        vec![
            Duration::ZERO,
            Duration::ZERO,
            Duration::ZERO,
            Duration::from_secs(1)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn tokens_per_minute_use_the_estimate_and_correct_from_usage() {
    // 600 tpm = 10 tokens/s. Each request is estimated at 1 + 4 + 295 = 300 tokens.
    let make = || LlmRequest::new("m", "abcd").with_max_tokens(295);
    assert_eq!(
        flowloom_middleware::rate_limit::estimate_tokens(&make()),
        300
    );
    let limit = || RateLimit::builder().tokens_per_minute(600).build().unwrap();

    // Without reported usage the estimate stands: the third call waits 30 s for 300 tokens.
    let p = Scripted::new("p", vec![]);
    let svc = RateLimitLayer::new(limit()).layer(p.clone());
    let start = Instant::now();
    for _ in 0..3 {
        svc.clone().oneshot(make()).await.unwrap();
    }
    assert_eq!(start.elapsed(), Duration::from_secs(30));

    // With usage of 10 tokens each, 290 go back after every call: no wait at all.
    let p = Scripted::new(
        "p",
        vec![
            ok("a").usage(6, 4),
            ok("b").usage(6, 4),
            ok("c").usage(6, 4),
        ],
    );
    let svc = RateLimitLayer::new(limit()).layer(p.clone());
    let start = Instant::now();
    for _ in 0..3 {
        svc.clone().oneshot(make()).await.unwrap();
    }
    assert_eq!(start.elapsed(), Duration::ZERO);

    // Usage above the estimate is taken too: 900 reported puts the bucket 600 in debt.
    let p = Scripted::new("p", vec![ok("big").usage(800, 100)]);
    let svc = RateLimitLayer::new(limit()).layer(p.clone());
    let start = Instant::now();
    svc.clone().oneshot(make()).await.unwrap();
    svc.clone().oneshot(make()).await.unwrap();
    // Level 600 - 900 = -300; the next 300 need 600 tokens of refill = 60 s.
    assert_eq!(start.elapsed(), Duration::from_secs(60));
}

#[test]
fn bad_rate_limits_are_refused() {
    assert!(RateLimit::builder().build().is_err());
    assert!(RateLimit::builder().requests_per_minute(0).build().is_err());
    assert!(RateLimit::builder().tokens_per_minute(0).build().is_err());
    let e = RateLimit::builder()
        .requests_per_minute(10)
        .request_burst(11)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("request_burst") && e.to_string().contains("11"));
}

#[tokio::test(start_paused = true)]
async fn the_concurrency_limit_holds_calls_in_flight() {
    let p = Scripted::new(
        "p",
        (0..5)
            .map(|_| ok("x").after(Duration::from_secs(1)))
            .collect(),
    );
    let layer = ConcurrencyLimitLayer::new(2).unwrap();
    let svc = layer.layer(p.clone());
    let start = Instant::now();
    let res = join_all((0..5).map(|_| svc.clone().oneshot(req("x")))).await;
    assert!(res.iter().all(Result::is_ok));
    assert_eq!(p.max_in_flight(), 2);
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert_eq!(layer.available(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_call_gives_its_concurrency_slot_back() {
    let p = Scripted::new(
        "p",
        vec![
            ok("a").after(Duration::from_secs(1)),
            ok("c").after(Duration::from_secs(1)),
        ],
    );
    let layer = ConcurrencyLimitLayer::new(1).unwrap();
    let svc = layer.layer(p.clone());
    let start = Instant::now();
    let a = tokio::spawn(svc.clone().oneshot(req("a")));
    tokio::task::yield_now().await;
    // b waits for the slot, then gives up.
    let b = tokio::time::timeout(Duration::from_millis(100), svc.clone().oneshot(req("b"))).await;
    assert!(b.is_err(), "b timed out waiting");
    let c = svc.clone().oneshot(req("c")).await.unwrap();
    assert_eq!(c.content, "c");
    assert_eq!(a.await.unwrap().unwrap().content, "a");
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(p.count(), 2, "b never reached the provider");
    assert_eq!(layer.available(), 1);
}

// ---- failover ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn failover_reaches_the_second_provider_on_503() {
    let a = Scripted::new("anthropic", vec![err(server("anthropic", 503))]);
    let b = Scripted::new("openai", vec![ok("from b")]);
    let chain = Failover::new(vec![
        FailoverEntry::new("anthropic", provider::boxed(a.clone())).model("claude-sonnet-4"),
        FailoverEntry::new("openai", provider::boxed(b.clone()))
            .model("gpt-4o")
            .temperature(0.1)
            .max_tokens(99),
    ])
    .unwrap();
    let res = chain.oneshot(req("hi")).await.unwrap();
    assert_eq!(res.content, "from b");
    assert_eq!(res.provider, "openai");
    assert_eq!(res.attempts.len(), 1);
    assert_eq!(res.attempts[0].provider, "anthropic");
    assert_eq!(res.attempts[0].model, "claude-sonnet-4");
    assert_eq!(res.attempts[0].status, Some(503));
    assert_eq!(a.requests()[0].model, "claude-sonnet-4");
    let sent = &b.requests()[0];
    assert_eq!(
        (sent.model.as_str(), sent.temperature, sent.max_tokens),
        ("gpt-4o", 0.1, 99)
    );
    assert_eq!(sent.context.provider.as_deref(), Some("openai"));
}

#[tokio::test(start_paused = true)]
async fn failover_does_not_move_on_after_a_400() {
    let a = Scripted::new("anthropic", vec![err(bad_request("anthropic"))]);
    let b = Scripted::new("openai", vec![ok("from b")]);
    let chain = Failover::new(vec![
        FailoverEntry::new("anthropic", provider::boxed(a.clone())),
        FailoverEntry::new("openai", provider::boxed(b.clone())),
    ])
    .unwrap();
    let e = chain.clone().oneshot(req("hi")).await.unwrap_err();
    assert!(matches!(e, LlmError::InvalidRequest { .. }), "{e}");
    assert_eq!(b.count(), 0);

    // Unless configured to.
    let a = Scripted::new("anthropic", vec![err(unauthorized("anthropic"))]);
    let chain = Failover::new(vec![
        FailoverEntry::new("anthropic", provider::boxed(a)),
        FailoverEntry::new("openai", provider::boxed(b.clone())),
    ])
    .unwrap()
    .failover_on_client_errors(true);
    assert_eq!(chain.oneshot(req("hi")).await.unwrap().provider, "openai");
}

#[tokio::test(start_paused = true)]
async fn failover_exhausted_lists_every_provider() {
    let a = Scripted::new("a", vec![err(server("a", 500))]);
    let b = Scripted::new("b", vec![err(rate_limited("b", None))]);
    let chain = Failover::new(vec![
        FailoverEntry::new("a", provider::boxed(a)),
        FailoverEntry::new("b", provider::boxed(b)),
    ])
    .unwrap();
    let e = chain.oneshot(req("hi")).await.unwrap_err();
    let LlmError::FailoverExhausted { failures } = &e else {
        panic!("expected FailoverExhausted, got {e}");
    };
    let names: Vec<_> = failures.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(e.status(), Some(429));
    assert!(e.to_string().contains("all 2 providers"));
}

#[tokio::test(start_paused = true)]
async fn failover_entry_timeout_moves_on() {
    let a = Scripted::new("a", vec![ok("slow").after(Duration::from_secs(60))]);
    let b = Scripted::new("b", vec![ok("fast")]);
    let chain = Failover::new(vec![
        FailoverEntry::new("a", provider::boxed(a)).timeout(Duration::from_secs(5)),
        FailoverEntry::new("b", provider::boxed(b)),
    ])
    .unwrap();
    let start = Instant::now();
    let res = chain.oneshot(req("hi")).await.unwrap();
    assert_eq!(res.provider, "b");
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert!(
        res.attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("timed out")
    );
}

#[tokio::test(start_paused = true)]
async fn failover_retries_each_provider_first_when_retry_sits_inside() {
    let a = Scripted::new("a", (0..3).map(|_| err(server("a", 503))).collect());
    let b = Scripted::new("b", vec![ok("b")]);
    let stack = ProviderStack::new().retry(RetryLayer::new(exact_policy()));
    let chain = Failover::new(vec![
        FailoverEntry::new("a", stack.service(a.clone())),
        FailoverEntry::new("b", stack.service(b.clone())),
    ])
    .unwrap();
    let res = chain.oneshot(req("hi")).await.unwrap();
    assert_eq!(a.count(), 3, "a's retries are exhausted before moving on");
    assert_eq!(res.provider, "b");
    assert!(
        res.attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("gave up after 3")
    );
}

#[tokio::test(start_paused = true)]
async fn failover_layer_puts_the_inner_service_first_and_serves_embeddings() {
    let a = Scripted::new("a", vec![err(server("a", 502))]);
    let b = Scripted::new("b", vec![]);
    let layer = FailoverLayer::new(
        "a",
        vec![FailoverEntry::new("b", provider::boxed_embedding(b.clone())).model("emb-2")],
    )
    .unwrap();
    let chain = layer.layer(provider::boxed_embedding(a.clone()));
    let res = chain
        .oneshot(EmbeddingRequest::new("emb-1", vec!["x".into()]))
        .await
        .unwrap();
    assert_eq!(res.provider, "b");
    assert_eq!(res.model, "emb-2");
    assert!(Failover::<flowloom_core::BoxLlmService>::new(vec![]).is_err());
}

// ---- cache ------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_cache_hit_never_reaches_the_provider() {
    let p = Scripted::new("p", vec![ok("first").usage(10, 5), ok("second")]);
    let cache = CacheLayer::new(CacheConfig::default());
    let svc = cache.layer(p.clone());
    let r = req("2+2?").with_temperature(0.0);
    let first = svc.clone().oneshot(r.clone()).await.unwrap();
    assert!(!first.cached);
    // Another run and step: the context is not part of the key.
    let ctx = CallContext {
        step: Some("other".into()),
        workflow: Some("another".into()),
        ..CallContext::default()
    };
    let second = svc.clone().oneshot(r.with_context(ctx)).await.unwrap();
    assert!(second.cached);
    assert_eq!(second.content, "first");
    assert_eq!(second.usage.as_ref().map(|u| u.total_tokens), Some(15));
    assert_eq!(p.count(), 1);
    assert_eq!(cache.stats(), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn the_cache_skips_nonzero_temperature_errors_and_expired_entries() {
    let p = Scripted::new("p", vec![err(server("p", 500))]);
    let cache = CacheLayer::new(
        CacheConfig::builder()
            .ttl(Duration::from_secs(60))
            .build()
            .unwrap(),
    );
    let svc = cache.layer(p.clone());
    let cold = req("q").with_temperature(0.0);
    // An error is not cached.
    assert!(svc.clone().oneshot(cold.clone()).await.is_err());
    assert!(!svc.clone().oneshot(cold.clone()).await.unwrap().cached);
    assert!(svc.clone().oneshot(cold.clone()).await.unwrap().cached);
    // Temperature 0.7: not cached by default.
    let warm = req("q").with_temperature(0.7);
    svc.clone().oneshot(warm.clone()).await.unwrap();
    assert!(!svc.clone().oneshot(warm.clone()).await.unwrap().cached);
    // After the TTL the entry is gone.
    tokio::time::advance(Duration::from_secs(61)).await;
    assert!(!svc.clone().oneshot(cold).await.unwrap().cached);
    assert_eq!(p.count(), 5);

    // Asked for, temperature > 0 is cached.
    let p = Scripted::new("p", vec![]);
    let svc = CacheLayer::new(
        CacheConfig::builder()
            .cache_nonzero_temperature(true)
            .build()
            .unwrap(),
    )
    .layer(p.clone());
    svc.clone().oneshot(warm.clone()).await.unwrap();
    assert!(svc.oneshot(warm).await.unwrap().cached);
    assert_eq!(p.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_cache_is_bounded_least_recently_used_first() {
    let p = Scripted::new("p", vec![]);
    let cache = CacheLayer::new(CacheConfig::builder().max_entries(2).build().unwrap());
    let svc = cache.layer(p.clone());
    let r = |s: &str| req(s).with_temperature(0.0);
    for s in ["a", "b"] {
        svc.clone().oneshot(r(s)).await.unwrap();
    }
    // Touch a, so b is the least recently used, then add c.
    assert!(svc.clone().oneshot(r("a")).await.unwrap().cached);
    svc.clone().oneshot(r("c")).await.unwrap();
    assert_eq!(cache.len(), 2);
    assert!(svc.clone().oneshot(r("a")).await.unwrap().cached);
    assert!(
        !svc.clone().oneshot(r("b")).await.unwrap().cached,
        "b was evicted"
    );
    assert!(CacheConfig::builder().max_entries(0).build().is_err());
    assert!(CacheConfig::builder().ttl(Duration::ZERO).build().is_err());
}

#[test]
fn the_cache_key_ignores_json_key_order_and_context_but_not_content() {
    use flowloom_middleware::cache::request_key;
    let mut a = req("x").with_temperature(0.0);
    a.extra_params.insert("seed".into(), 1.into());
    a.extra_params.insert("top_p".into(), 0.5.into());
    let mut b = req("x").with_temperature(0.0);
    b.extra_params.insert("top_p".into(), 0.5.into());
    b.extra_params.insert("seed".into(), 1.into());
    b.context.step = Some("s".into());
    assert_eq!(request_key(&a), request_key(&b));
    let c = b.clone().with_max_tokens(7);
    assert_ne!(request_key(&a), request_key(&c));
    let d = req("y").with_temperature(0.0);
    assert_ne!(request_key(&a), request_key(&d));
}

// ---- the whole stack --------------------------------------------------------------------

fn assert_llm_service<S: LlmService>(_: &S) {}
fn assert_embedding_service<S: EmbeddingService>(_: &S) {}

#[test]
fn every_layer_keeps_the_contract() {
    let p = Scripted::new("p", vec![]);
    let limit = RateLimit::builder().requests_per_minute(1).build().unwrap();
    assert_llm_service(&RetryLayer::new(RetryPolicy::default()).layer(p.clone()));
    assert_llm_service(&TimeoutLayer::new(Duration::from_secs(1)).layer(p.clone()));
    assert_llm_service(&RateLimitLayer::new(limit.clone()).layer(p.clone()));
    assert_llm_service(&ConcurrencyLimitLayer::new(1).unwrap().layer(p.clone()));
    assert_llm_service(&GuardLayer::block().layer(p.clone()));
    assert_llm_service(&CacheLayer::new(CacheConfig::default()).layer(p.clone()));
    assert_llm_service(
        &Failover::new(vec![FailoverEntry::new("p", provider::boxed(p.clone()))]).unwrap(),
    );
    assert_embedding_service(&RetryLayer::new(RetryPolicy::default()).layer(p.clone()));
    assert_embedding_service(&TimeoutLayer::new(Duration::from_secs(1)).layer(p.clone()));
    assert_embedding_service(&RateLimitLayer::new(limit).layer(p.clone()));
    assert_embedding_service(&ConcurrencyLimitLayer::new(1).unwrap().layer(p.clone()));
    assert_embedding_service(&GuardLayer::block().layer(p.clone()));
    let _boxed: flowloom_core::BoxLlmService =
        provider::boxed(RetryLayer::new(RetryPolicy::default()).layer(p));
}

#[tokio::test(start_paused = true)]
async fn the_recommended_stack_retries_limits_and_answers() {
    let p = Scripted::new("openai", vec![err(server("openai", 503)), ok("hello")]);
    let svc = recommended_stack(&FrameworkConfig::default(), p.clone()).unwrap();
    let res = svc.oneshot(req("hi")).await.unwrap();
    assert_eq!(res.content, "hello");
    assert_eq!(res.attempts.len(), 1);

    let p = Scripted::new("openai", vec![]);
    let stack = ProviderStack::recommended(&FrameworkConfig::default())
        .unwrap()
        .guard(GuardLayer::redact())
        .cache(CacheLayer::new(CacheConfig::default()))
        .overall_timeout(Duration::from_secs(30))
        .concurrency(ConcurrencyLimitLayer::new(2).unwrap())
        .rate_limit(RateLimitLayer::new(
            RateLimit::builder()
                .requests_per_minute(60)
                .build()
                .unwrap(),
        ));
    let svc = stack.service(p.clone());
    let r = req("mail me at a@b.io").with_temperature(0.0);
    svc.clone().oneshot(r.clone()).await.unwrap();
    let hit = svc.clone().oneshot(r).await.unwrap();
    assert!(hit.cached);
    assert_eq!(p.count(), 1);
    assert_eq!(p.requests()[0].prompt(), Some("mail me at [EMAIL]"));
    let start = Instant::now();
    svc.clone()
        .oneshot(req("other").with_temperature(0.0))
        .await
        .unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(1),
        "rate limit: 60 rpm"
    );

    let e = stack.embedding_service(Scripted::new("openai", vec![]));
    assert!(
        e.oneshot(EmbeddingRequest::new("emb", vec!["x".into()]))
            .await
            .is_ok()
    );
}

#[test]
fn token_estimates_count_characters_like_the_budget_layer() {
    // 8 characters, 16 UTF-8 bytes: 2 tokens, + 4 per message, + max_tokens.
    let req = LlmRequest::new("m", "éééééééé").with_max_tokens(10);
    assert_eq!(
        flowloom_middleware::rate_limit::estimate_tokens(&req),
        req.estimated_prompt_tokens() + 10
    );
    assert_eq!(
        flowloom_middleware::rate_limit::estimate_tokens(&req),
        2 + 4 + 10
    );
    let emb =
        flowloom_core::EmbeddingRequest::new("e", vec!["éééé".to_owned(), "abcde".to_owned()]);
    assert_eq!(
        flowloom_middleware::rate_limit::estimate_embedding_tokens(&emb),
        1 + 2
    );
}
