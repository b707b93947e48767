//! Token accounting: exact sums across concurrent runs, streaming, missing usage, cache hits,
//! and cost for known and unknown models.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Mock, ctx, req};
use flowloom_core::{
    EmbeddingRequest, LlmError, LlmRequest, LlmResponse, StreamRequest, TokenUsage,
};
use flowloom_observability::cost::{Cost, Money, PriceTable};
use flowloom_observability::ledger::{CallOutcome, LedgerSnapshot};
use flowloom_observability::{TokenAccountingLayer, UsageLedger};
use futures_util::StreamExt;
use tower::{Layer, ServiceExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_across_100_concurrent_runs_sums_exactly() {
    let ledger = UsageLedger::new();
    let svc = TokenAccountingLayer::new(ledger.clone()).layer(Mock::new());
    let mut tasks = Vec::new();
    let mut expected_prompt = 0u64;
    let mut runs = Vec::new();
    for i in 0..100usize {
        let run = uuid::Uuid::new_v4();
        runs.push((run, i));
        // Run i makes 3 calls of (i + 1), (i + 2), (i + 3) words.
        expected_prompt += (3 * i + 6) as u64;
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            for (k, step) in ["a", "b", "c"].iter().enumerate() {
                svc.clone()
                    .oneshot(req("gpt-4o-mini", i + k + 1, ctx(run, step)))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let totals = ledger.totals();
    assert_eq!(totals.calls, 300);
    assert_eq!(totals.calls_with_usage, 300);
    assert_eq!(totals.tokens.prompt_tokens, expected_prompt);
    assert_eq!(totals.tokens.completion_tokens, 300 * 7);
    assert_eq!(totals.tokens.total_tokens, expected_prompt + 2100);
    // Per run and per step, exactly what each run's calls reported.
    for (run, i) in runs {
        let r = ledger.run(run);
        assert_eq!(r.calls, 3);
        assert_eq!(r.tokens.prompt_tokens, (3 * i + 6) as u64);
        assert_eq!(ledger.step(run, "b").tokens.prompt_tokens, (i + 2) as u64);
    }
    assert_eq!(ledger.by_run().len(), 100);
    assert_eq!(ledger.by_model()["gpt-4o-mini"].calls, 300);
    assert_eq!(ledger.by_provider()["mock"].tokens, totals.tokens);
    // The per-record sums agree with the totals.
    let sum: u64 = ledger
        .records()
        .iter()
        .filter_map(|r| r.spend())
        .map(|t| t.total_tokens)
        .sum();
    assert_eq!(sum, totals.tokens.total_tokens);
}

#[tokio::test]
async fn missing_usage_is_counted_apart_never_as_zero() {
    let ledger = UsageLedger::new();
    let run = uuid::Uuid::new_v4();
    TokenAccountingLayer::new(ledger.clone())
        .layer(Mock::without_usage())
        .oneshot(req("gpt-4o-mini", 3, ctx(run, "s")))
        .await
        .unwrap();
    TokenAccountingLayer::new(ledger.clone())
        .layer(Mock::new())
        .oneshot(req("gpt-4o-mini", 3, ctx(run, "s")))
        .await
        .unwrap();
    let s = ledger.run(run);
    assert_eq!(s.calls, 2);
    assert_eq!(s.calls_with_usage, 1);
    assert_eq!(s.calls_without_usage, 1);
    assert!(!s.is_complete());
    assert_eq!(s.tokens.total_tokens, 10);
    let cost = ledger.run_cost(run, &PriceTable::openai_default());
    assert_eq!(cost.calls_without_usage, 1);
    assert!(!cost.is_complete());
    assert_eq!(cost.priced_calls, 1);
}

#[tokio::test]
async fn cache_hits_are_not_provider_spend() {
    let ledger = UsageLedger::new();
    let cached = tower::service_fn(|r: LlmRequest| async move {
        let mut res = LlmResponse::text("cached", r.model.clone(), "openai")
            .with_usage(TokenUsage::new(100, 50, r.model, "openai"));
        res.cached = true;
        Ok::<_, LlmError>(res)
    });
    let run = uuid::Uuid::new_v4();
    TokenAccountingLayer::new(ledger.clone())
        .layer(cached)
        .oneshot(req("gpt-4o-mini", 3, ctx(run, "s")))
        .await
        .unwrap();
    let s = ledger.run(run);
    assert_eq!(s.cache_hits, 1);
    assert_eq!(s.tokens.total_tokens, 0);
    assert_eq!(s.cache_hit_tokens.total_tokens, 150);
    let cost = ledger.cost(&PriceTable::openai_default());
    assert_eq!(cost.total, Money::ZERO);
    assert_eq!(cost.cache_hits, 1);
    assert!(cost.is_complete());
}

#[tokio::test]
async fn failures_are_recorded_with_their_kind() {
    let ledger = UsageLedger::new();
    let err = LlmError::Server {
        provider: "mock".into(),
        status: 503,
        message: "down".into(),
        retry_after: None,
    };
    let run = uuid::Uuid::new_v4();
    let _ = TokenAccountingLayer::new(ledger.clone())
        .layer(Mock::failing(err))
        .oneshot(req("gpt-4o", 3, ctx(run, "s")))
        .await;
    let rec = &ledger.records()[0];
    assert_eq!(
        rec.outcome,
        CallOutcome::Failed {
            error_type: "server".into()
        }
    );
    assert_eq!(rec.model, "gpt-4o");
    assert_eq!(ledger.run(run).failed_calls, 1);
}

#[tokio::test]
async fn streaming_is_recorded_from_done() {
    let ledger = UsageLedger::new();
    let run = uuid::Uuid::new_v4();
    let svc = TokenAccountingLayer::new(ledger.clone()).layer(Mock::new());
    let stream = svc
        .clone()
        .oneshot(StreamRequest(req("gpt-4o-mini", 6, ctx(run, "s"))))
        .await
        .unwrap();
    assert!(ledger.is_empty(), "nothing is recorded before Done");
    let events: Vec<_> = stream.collect().await;
    assert_eq!(events.len(), 3);
    let s = ledger.run(run);
    assert_eq!(s.calls, 1);
    assert_eq!(s.tokens.prompt_tokens, 6);
    assert_eq!(s.tokens.completion_tokens, 7);

    // A stream dropped before Done is recorded as failed, never as usage.
    let stream = svc
        .oneshot(StreamRequest(req("gpt-4o-mini", 6, ctx(run, "t"))))
        .await
        .unwrap();
    drop(stream);
    let t = ledger.step(run, "t");
    assert_eq!((t.calls, t.failed_calls, t.tokens.total_tokens), (1, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_before_it_ends_is_recorded_as_cancelled_never_lost() {
    let ledger = UsageLedger::new();
    let run = uuid::Uuid::new_v4();
    let slow = tower::service_fn(|r: LlmRequest| async move {
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        Ok::<_, LlmError>(
            LlmResponse::text("late", r.model.clone(), "mock")
                .with_usage(TokenUsage::new(5, 5, r.model, "mock")),
        )
    });
    let svc = TokenAccountingLayer::new(ledger.clone()).layer(slow);
    // A timeout around the call drops its future.
    let res = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        svc.clone().oneshot(req("gpt-4o", 3, ctx(run, "slow"))),
    )
    .await;
    assert!(res.is_err(), "timed out");
    let recs = ledger.records();
    assert_eq!(recs.len(), 1, "the dropped call is recorded");
    assert_eq!(
        recs[0].outcome,
        CallOutcome::Failed {
            error_type: "cancelled".into()
        }
    );
    let s = ledger.step(run, "slow");
    assert_eq!((s.calls, s.failed_calls, s.tokens.total_tokens), (1, 1, 0));

    // A call that ends is recorded once, not again when its future is dropped.
    let fast = TokenAccountingLayer::new(ledger.clone()).layer(Mock::new());
    let fut = fast.oneshot(req("gpt-4o", 3, ctx(run, "fast")));
    fut.await.unwrap();
    assert_eq!(ledger.step(run, "fast").calls, 1);
    assert_eq!(ledger.len(), 2);
}

#[tokio::test]
async fn embeddings_are_recorded() {
    let ledger = UsageLedger::new();
    let mut request =
        EmbeddingRequest::new("text-embedding-3-small", vec!["a b".into(), "c".into()]);
    request.context = ctx(uuid::Uuid::new_v4(), "embed");
    TokenAccountingLayer::new(ledger.clone())
        .layer(Mock::new())
        .oneshot(request)
        .await
        .unwrap();
    let r = &ledger.records()[0];
    assert_eq!(r.operation, "embeddings");
    assert_eq!(r.spend().unwrap().prompt_tokens, 3);
}

#[tokio::test]
async fn cost_for_known_and_unknown_models() {
    let ledger = UsageLedger::new();
    let run = uuid::Uuid::new_v4();
    let svc = |model: &'static str, p: u64, c: u64| {
        let l = ledger.clone();
        async move {
            let provider = tower::service_fn(move |_r: LlmRequest| async move {
                Ok::<_, LlmError>(
                    LlmResponse::text("x", model, "openai")
                        .with_usage(TokenUsage::new(p, c, model, "openai")),
                )
            });
            TokenAccountingLayer::new(l)
                .layer(provider)
                .oneshot(req(model, 1, ctx(run, model)))
                .await
                .unwrap();
        }
    };
    svc("gpt-4o-mini-2024-07-18", 2_000_000, 1_000_000).await; // 0.30 + 0.60
    svc("gpt-4o", 1_000, 1_000).await; // 0.0025 + 0.01
    svc("my-local-llama", 5_000, 5_000).await; // not in the table
    let table = PriceTable::openai_default();
    let report = ledger.cost(&table);
    assert_eq!(report.total, "0.9125".parse::<Money>().unwrap());
    assert_eq!(report.total.to_string(), "$0.9125");
    assert_eq!(report.priced_calls, 2);
    assert_eq!(report.unpriced_calls, 1);
    assert!(report.unpriced_models.contains("my-local-llama"));
    assert!(!report.is_complete());
    assert!(report.to_string().contains("unpriced"), "{report}");
    assert_eq!(report.prices_as_of, table.as_of);
    // Per step and per call.
    let llama = ledger.step_cost(run, "my-local-llama", &table);
    assert_eq!(llama.total, Money::ZERO);
    assert_eq!(llama.unpriced_calls, 1);
    let recs = ledger.records();
    assert_eq!(
        recs[2].cost(&table),
        Cost::Unpriced {
            model: "my-local-llama".into()
        }
    );
    assert_eq!(recs[0].cost(&table), Cost::Priced("0.9".parse().unwrap()));
}

#[tokio::test]
async fn cached_input_tokens_cost_the_cached_price() {
    let ledger = UsageLedger::new();
    let provider = tower::service_fn(|r: LlmRequest| async move {
        let mut u = TokenUsage::new(1_000_000, 0, r.model.clone(), "openai");
        u.cached_prompt_tokens = Some(1_000_000);
        Ok::<_, LlmError>(LlmResponse::text("x", r.model, "openai").with_usage(u))
    });
    TokenAccountingLayer::new(ledger.clone())
        .layer(provider)
        .oneshot(LlmRequest::new("gpt-4o-mini", "hi"))
        .await
        .unwrap();
    let report = ledger.cost(&PriceTable::openai_default());
    assert_eq!(report.total, "0.075".parse().unwrap());
}

#[tokio::test]
async fn snapshot_serializes_and_reloads() {
    let ledger = UsageLedger::new();
    let run = uuid::Uuid::new_v4();
    TokenAccountingLayer::new(ledger.clone())
        .layer(Mock::new())
        .oneshot(req("gpt-4o-mini", 2, ctx(run, "s")))
        .await
        .unwrap();
    let json = ledger.to_json().unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["totals"]["tokens"]["total_tokens"], 9);
    assert_eq!(v["records"][0]["run_id"], run.to_string());
    assert_eq!(v["records"][0]["step"], "s");
    assert_eq!(v["records"][0]["outcome"], "usage");
    let back: LedgerSnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back.into_ledger().run(run), ledger.run(run));
}
