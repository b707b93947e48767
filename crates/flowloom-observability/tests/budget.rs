//! Budgets refuse calls that would pass a limit, with the spend so far in the error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::Ordering;

use common::{Mock, ctx, req};
use flowloom_core::{LlmError, LlmRequest, LlmResponse, StreamRequest, TokenUsage};
use flowloom_observability::budget::{
    Budget, BudgetLayer, BudgetLimits, estimate_prompt_tokens, estimate_text_tokens,
};
use flowloom_observability::cost::{Money, PriceTable};
use futures_util::StreamExt;
use tower::{Layer, ServiceExt};

fn message(e: &LlmError) -> String {
    match e {
        LlmError::BudgetExceeded { message } => message.clone(),
        other => panic!("expected BudgetExceeded, got {other:?}"),
    }
}

#[test]
fn estimate_rule() {
    assert_eq!(estimate_text_tokens(""), 0);
    assert_eq!(estimate_text_tokens("abcd"), 1);
    assert_eq!(estimate_text_tokens("abcde"), 2);
    // One message of 8 characters: 2 + 4 per message.
    assert_eq!(estimate_prompt_tokens(&LlmRequest::new("m", "12345678")), 6);
    let two = LlmRequest::new("m", "1234").with_system("12345678");
    assert_eq!(estimate_prompt_tokens(&two), 1 + 4 + 2 + 4);
}

#[tokio::test]
async fn per_run_token_limit_refuses_before_the_call() {
    let mock = Mock::new();
    let calls = mock.calls.clone();
    let budget = Budget::new(BudgetLimits::new().per_run_tokens(60));
    let svc = BudgetLayer::new(budget.clone()).layer(mock);
    let run = uuid::Uuid::new_v4();
    // 2 words "word word" = 9 chars → 3 + 4 = 7 input, + 20 max_tokens = 27 estimated;
    // the mock reports 2 + 7 = 9.
    let r = req("gpt-4o-mini", 2, ctx(run, "s")).with_max_tokens(20);
    for _ in 0..4 {
        svc.clone().oneshot(r.clone()).await.unwrap(); // 0, 9, 18, 27 spent + 27 ≤ 60
    }
    assert_eq!(budget.spent_run(run).tokens, 36);
    let err = svc.clone().oneshot(r.clone()).await.unwrap_err(); // 36 + 27 > 60
    let m = message(&err);
    assert!(m.contains("per-run limit"), "{m}");
    assert!(m.contains(&run.to_string()), "{m}");
    assert!(m.contains("60 tokens"), "{m}");
    assert!(m.contains("36 tokens spent so far"), "{m}");
    assert!(m.contains("27 tokens (7 input + 20 max_tokens)"), "{m}");
    assert!(!err.is_retryable());
    assert_eq!(
        calls.load(Ordering::Relaxed),
        4,
        "the refused call was not made"
    );
    // Another run has its own per-run budget.
    let other = req("gpt-4o-mini", 2, ctx(uuid::Uuid::new_v4(), "s")).with_max_tokens(20);
    svc.oneshot(other).await.unwrap();
}

#[tokio::test]
async fn total_limit_spans_runs() {
    let budget = Budget::new(BudgetLimits::new().total_tokens(40));
    let svc = BudgetLayer::new(budget.clone()).layer(Mock::new());
    for _ in 0..2 {
        let r = req("gpt-4o-mini", 2, ctx(uuid::Uuid::new_v4(), "s")).with_max_tokens(20);
        svc.clone().oneshot(r).await.unwrap();
    }
    let r = req("gpt-4o-mini", 2, ctx(uuid::Uuid::new_v4(), "s")).with_max_tokens(20);
    let m = message(&svc.oneshot(r).await.unwrap_err());
    assert!(m.contains("total limit of 40 tokens"), "{m}");
    assert!(m.contains("18 tokens spent so far"), "{m}");
    assert_eq!(budget.spent_total().calls, 2);
}

#[tokio::test]
async fn cost_limit_uses_prices_and_refuses_unpriced_models() {
    // gpt-4o: $2.50/M in, $10/M out. 1000 max_tokens → $0.01 estimated output.
    let budget = Budget::new(BudgetLimits::new().per_run_cost(Money::from_cents(2)));
    let provider = tower::service_fn(|r: LlmRequest| async move {
        Ok::<_, LlmError>(
            LlmResponse::text("x", r.model.clone(), "openai")
                .with_usage(TokenUsage::new(1000, 1000, r.model, "openai")),
        )
    });
    let svc = BudgetLayer::new(budget.clone()).layer(provider);
    let run = uuid::Uuid::new_v4();
    let r = req("gpt-4o", 1, ctx(run, "s")).with_max_tokens(1000);
    svc.clone().oneshot(r.clone()).await.unwrap(); // spent $0.0125
    assert_eq!(budget.spent_run(run).cost, "0.0125".parse().unwrap());
    let m = message(&svc.clone().oneshot(r).await.unwrap_err());
    assert!(m.contains("$0.02"), "{m}");
    assert!(m.contains("$0.0125 spent so far"), "{m}");

    let unpriced = req("my-local-model", 1, ctx(uuid::Uuid::new_v4(), "s"));
    let m = message(&svc.oneshot(unpriced).await.unwrap_err());
    assert!(
        m.contains("my-local-model") && m.contains("price table"),
        "{m}"
    );
}

#[tokio::test]
async fn actual_spend_past_the_limit_fails_the_call_after_counting_it() {
    // The provider reports far more input than the estimate.
    let provider = tower::service_fn(|r: LlmRequest| async move {
        Ok::<_, LlmError>(
            LlmResponse::text("x", r.model.clone(), "p")
                .with_usage(TokenUsage::new(500, 5, r.model, "p")),
        )
    });
    let budget = Budget::with_prices(
        BudgetLimits::new().per_run_tokens(100),
        PriceTable::empty("2025-01-01"),
    );
    let svc = BudgetLayer::new(budget.clone()).layer(provider);
    let run = uuid::Uuid::new_v4();
    let err = svc
        .oneshot(req("m", 1, ctx(run, "s")).with_max_tokens(10))
        .await
        .unwrap_err();
    let m = message(&err);
    assert!(m.contains("was passed by this call"), "{m}");
    assert!(m.contains("505 tokens spent so far"), "{m}");
    assert_eq!(budget.spent_run(run).tokens, 505);
    assert_eq!(budget.spent_run(run).reserved_tokens, 0);
}

#[tokio::test]
async fn concurrent_calls_cannot_pass_the_limit_together() {
    // Each call reserves 7 + 20 = 27; with a limit of 60 only two may be in flight.
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let g = gate.clone();
    let provider = tower::service_fn(move |r: LlmRequest| {
        let g = g.clone();
        async move {
            g.acquire().await.unwrap().forget();
            Ok::<_, LlmError>(
                LlmResponse::text("x", r.model.clone(), "p")
                    .with_usage(TokenUsage::new(7, 20, r.model, "p")),
            )
        }
    });
    let budget = Budget::with_prices(
        BudgetLimits::new().total_tokens(60),
        PriceTable::empty("2025-01-01"),
    );
    let svc = BudgetLayer::new(budget.clone()).layer(provider);
    let r = req("m", 2, ctx(uuid::Uuid::new_v4(), "s")).with_max_tokens(20);
    let a = tokio::spawn(svc.clone().oneshot(r.clone()));
    let b = tokio::spawn(svc.clone().oneshot(r.clone()));
    tokio::task::yield_now().await;
    while budget.spent_total().reserved_tokens < 54 {
        tokio::task::yield_now().await;
    }
    let m = message(&svc.clone().oneshot(r).await.unwrap_err());
    assert!(m.contains("54 tokens reserved by calls in flight"), "{m}");
    gate.add_permits(2);
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    assert_eq!(budget.spent_total().tokens, 54);
    assert_eq!(budget.spent_total().reserved_tokens, 0);
}

#[tokio::test]
async fn calls_without_usage_are_charged_their_estimate_and_cache_hits_nothing() {
    let budget = Budget::with_prices(
        BudgetLimits::new().total_tokens(1000),
        PriceTable::empty("2025-01-01"),
    );
    let run = uuid::Uuid::new_v4();
    BudgetLayer::new(budget.clone())
        .layer(Mock::without_usage())
        .oneshot(req("m", 2, ctx(run, "s")).with_max_tokens(20))
        .await
        .unwrap();
    assert_eq!(budget.spent_total().tokens, 27);
    let cached = tower::service_fn(|r: LlmRequest| async move {
        let mut res = LlmResponse::text("x", r.model.clone(), "p")
            .with_usage(TokenUsage::new(100, 100, r.model, "p"));
        res.cached = true;
        Ok::<_, LlmError>(res)
    });
    BudgetLayer::new(budget.clone())
        .layer(cached)
        .oneshot(req("m", 2, ctx(run, "s")).with_max_tokens(20))
        .await
        .unwrap();
    assert_eq!(budget.spent_total().tokens, 27);
}

#[tokio::test]
async fn streams_are_charged_at_done() {
    let budget = Budget::with_prices(
        BudgetLimits::new().total_tokens(1000),
        PriceTable::empty("2025-01-01"),
    );
    let svc = BudgetLayer::new(budget.clone()).layer(Mock::new());
    let stream = svc
        .oneshot(StreamRequest(
            req("m", 3, ctx(uuid::Uuid::new_v4(), "s")).with_max_tokens(20),
        ))
        .await
        .unwrap();
    assert!(budget.spent_total().reserved_tokens > 0);
    let _: Vec<_> = stream.collect().await;
    assert_eq!(budget.spent_total().tokens, 10);
    assert_eq!(budget.spent_total().reserved_tokens, 0);
}
