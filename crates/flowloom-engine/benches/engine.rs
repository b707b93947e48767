//! Per-workflow cost with divan: the engine running the quickstart's 3-step workflow on a
//! zero-latency mock, against the same two calls and transform written by hand.
//!
//! `cargo bench -p flowloom-engine --bench engine` (times, and allocations per run).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // benchmark code

use divan::{Bencher, black_box};
use flowloom_core::LlmRequest;
use flowloom_engine::{Engine, Workflow};
use flowloom_provider_mock::MockProvider;
use tower::ServiceExt;

/// Counts allocations per iteration next to the time (the same for every bench here).
#[global_allocator]
static ALLOC: divan::AllocProfiler = divan::AllocProfiler::system();

fn main() {
    divan::main();
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn mock() -> MockProvider {
    MockProvider::echo().with_recording(false)
}

/// The floor: two calls and the transform, by hand.
#[divan::bench]
fn floor_3_steps(b: Bencher) {
    let rt = rt();
    let m = mock();
    b.bench_local(|| {
        rt.block_on(async {
            let draft = m
                .clone()
                .oneshot(LlmRequest::new(
                    "gpt-4o-mini",
                    format!("Summarize: {}", black_box("some text")),
                ))
                .await
                .unwrap()
                .content;
            let refine = m
                .clone()
                .oneshot(LlmRequest::new(
                    "gpt-4o-mini",
                    format!("Tighten this: {draft}"),
                ))
                .await
                .unwrap()
                .content;
            refine.to_uppercase()
        })
    });
}

/// The engine, no middleware around the provider.
#[divan::bench]
fn engine_3_steps(b: Bencher) {
    let rt = rt();
    let engine = Engine::builder()
        .provider("mock", mock())
        .no_default_stack()
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
    b.bench_local(|| {
        rt.block_on(engine.run(&wf, black_box("some text")))
            .unwrap()
    });
}

/// Building (validating, compiling templates) the same workflow.
#[divan::bench]
fn build_3_step_workflow() -> Workflow {
    Workflow::builder("summarize")
        .llm("draft", "Summarize: {{ input }}")
        .llm("refine", "Tighten this: {{ draft }}")
        .transform("shout", |ctx| {
            Ok(ctx.output("refine")?.to_uppercase().into())
        })
        .build()
        .unwrap()
}
