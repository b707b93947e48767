//! The engine with the observability crate's token-accounting layer: every model call of a
//! run is attributed to its run and step through the request's `CallContext`, and the ledger
//! agrees with the run's own metrics.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use flowloom::engine::prelude::*;
use flowloom::mock::MockProvider;
use flowloom::observability::{TokenAccountingLayer, UsageLedger};

#[tokio::test]
async fn the_ledger_attributes_every_call_to_its_run_and_step() {
    let ledger = UsageLedger::new();
    let engine = Engine::builder()
        .provider("mock", MockProvider::echo())
        .layer(TokenAccountingLayer::new(ledger.clone()))
        .build()
        .unwrap();
    let wf = Workflow::builder("summarize")
        .llm("draft", "Summarize: {{ input }}")
        .llm("refine", "Tighten this: {{ draft }}")
        .transform("shout", |ctx| {
            Ok(ctx.output("refine")?.to_uppercase().into())
        })
        .build()
        .unwrap();
    let a = engine.run(&wf, "first text").await.unwrap();
    let b = engine.run(&wf, "a second, longer text").await.unwrap();
    for r in [&a, &b] {
        let run = ledger.run(r.workflow_id);
        assert_eq!(run.calls, r.metrics.llm_calls);
        assert_eq!(
            run.tokens.total_tokens,
            r.metrics.token_usage_total.as_ref().unwrap().total_tokens
        );
        for step in ["draft", "refine"] {
            assert_eq!(
                ledger.step(r.workflow_id, step).tokens.total_tokens,
                r.metrics.step_token_usage[step].total_tokens,
                "{step}"
            );
        }
        assert_eq!(ledger.step(r.workflow_id, "shout").calls, 0);
    }
    assert_eq!(ledger.workflow("summarize").calls, 4);
}
