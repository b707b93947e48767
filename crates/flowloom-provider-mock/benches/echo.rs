//! The cost of a mock call on the zero-latency path, against a floor measured in the same run.
//!
//! Floor: what any provider must do at least — clone the request's prompt and model into an
//! `LlmResponse`. Rows: the mock's `Service::call` + first poll (echo, echo without recording,
//! a scripted mock whose rule does not match, one whose first rule matches), streaming, and an
//! embedding of one text. Run: `cargo bench -p flowloom-provider-mock --bench echo`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use flowloom_core::{EmbeddingRequest, LlmRequest, LlmResponse, StreamRequest};
use flowloom_provider_mock::MockProvider;
use futures_util::FutureExt;
use tower::Service;

const ITERS: u32 = 200_000;

fn per_call(mut f: impl FnMut()) -> Duration {
    for _ in 0..ITERS / 10 {
        f();
    }
    // Best of 5 runs, to shed noise from other processes.
    (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..ITERS {
                f();
            }
            start.elapsed() / ITERS
        })
        .min()
        .unwrap()
}

fn main() {
    let req = LlmRequest::new("gpt-4o-mini", "Summarize the following text in one line.")
        .with_system("You are terse.");

    let floor = per_call(|| {
        let r = black_box(req.clone());
        let res = LlmResponse::text(r.prompt().unwrap_or_default(), r.model.as_str(), "floor");
        black_box(res);
    });

    let mut rows: Vec<(&str, Duration)> = Vec::new();
    let bench_chat = |mock: MockProvider| {
        let mut mock = mock;
        per_call(|| {
            let res = mock
                .call(black_box(req.clone()))
                .now_or_never()
                .unwrap()
                .unwrap();
            black_box(res);
        })
    };
    rows.push((
        "echo (recording off)",
        bench_chat(MockProvider::echo().with_recording(false)),
    ));
    rows.push((
        "fixed (recording off)",
        bench_chat(MockProvider::fixed("ok").with_recording(false)),
    ));
    let scripted = "rules:\n  - { match: \"(?i)is this safe\", respond: \"YES\" }\n  - { match: flaky, respond: ok }\n";
    rows.push((
        "scripted, no rule matches",
        bench_chat(
            MockProvider::from_yaml_str(scripted)
                .unwrap()
                .with_recording(false),
        ),
    ));
    rows.push((
        "scripted, first rule matches",
        bench_chat(
            MockProvider::from_yaml_str("rules: [{ match: \"(?i)summarize\", respond: done }]")
                .unwrap()
                .with_recording(false),
        ),
    ));
    // Recording on: reset every 10k calls so memory stays bounded.
    {
        let mut mock = MockProvider::echo();
        let mut n = 0u32;
        rows.push((
            "echo (recording on)",
            per_call(|| {
                n += 1;
                if n.is_multiple_of(10_000) {
                    mock.reset();
                }
                let res = mock
                    .call(black_box(req.clone()))
                    .now_or_never()
                    .unwrap()
                    .unwrap();
                black_box(res);
            }),
        ));
    }
    {
        let mut mock = MockProvider::echo().with_recording(false);
        rows.push((
            "stream (call + drain)",
            per_call(|| {
                let s = mock
                    .call(StreamRequest(black_box(req.clone())))
                    .now_or_never()
                    .unwrap()
                    .unwrap();
                let events: Vec<_> = futures_util::StreamExt::collect::<Vec<_>>(s)
                    .now_or_never()
                    .unwrap();
                black_box(events);
            }),
        ));
    }
    {
        let mut mock = MockProvider::echo().with_recording(false);
        let ereq = EmbeddingRequest::new("text-embedding-3-small", vec!["hello world".into()]);
        rows.push((
            "embedding, 1 text, 8 dims",
            per_call(|| {
                let res = mock
                    .call(black_box(ereq.clone()))
                    .now_or_never()
                    .unwrap()
                    .unwrap();
                black_box(res);
            }),
        ));
    }

    println!("{:<32} {:>10} {:>8}", "case", "ns/call", "x floor");
    println!(
        "{:<32} {:>10} {:>8.2}",
        "floor (clone into a response)",
        floor.as_nanos(),
        1.0
    );
    for (name, d) in rows {
        println!(
            "{:<32} {:>10} {:>8.2}",
            name,
            d.as_nanos(),
            d.as_nanos() as f64 / floor.as_nanos().max(1) as f64
        );
    }
}
