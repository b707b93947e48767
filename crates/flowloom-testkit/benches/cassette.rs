//! What the testkit's layers cost per call, against the bare service measured in the same run:
//! cassette replay (a 50-interaction cassette), the cost-budget layer, and recording (which
//! rewrites the cassette file after every call).
//!
//! Prints a table and one `BENCH <name> <value> <unit> ratio=<x>` line per figure
//! (`cargo xtask bench` collects them).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use flowloom_core::{AsyncProvider, LlmError, LlmRequest, LlmResponse, TokenUsage, provider};
use flowloom_testkit::budget::{CostBudget, PriceTable};
use flowloom_testkit::cassette::{Cassette, CassetteMode, Scrubber};
use tower::{Layer, Service, ServiceExt};

struct Echo;
impl AsyncProvider for Echo {
    fn name(&self) -> &str {
        "echo"
    }
    async fn complete(&self, r: LlmRequest) -> Result<LlmResponse, LlmError> {
        Ok(
            LlmResponse::text(r.prompt().unwrap_or_default().to_owned(), r.model, "echo")
                .with_usage(TokenUsage::new(10, 5, "gpt-4o-mini", "echo")),
        )
    }
}

fn req(i: usize) -> LlmRequest {
    LlmRequest::new(
        "gpt-4o-mini",
        format!("Summarize document number {i}: lorem ipsum dolor sit amet"),
    )
    .with_system("You are terse.")
    .with_temperature(0.0)
}

/// Best of `rounds` of `iters` calls, in ns per call.
async fn measure<S>(svc: &mut S, iters: usize, rounds: usize, pick: impl Fn(usize) -> usize) -> f64
where
    S: Service<LlmRequest, Response = LlmResponse, Error = LlmError>,
{
    let mut best = f64::INFINITY;
    for _ in 0..rounds {
        let start = Instant::now();
        for i in 0..iters {
            let r = svc.ready().await.unwrap().call(req(pick(i))).await.unwrap();
            std::hint::black_box(r);
        }
        best = best.min(start.elapsed().as_nanos() as f64 / iters as f64);
    }
    best
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let iters = 20_000;
        let rounds = 5;

        let mut bare = provider::from_async(Echo);
        let floor = measure(&mut bare, iters, rounds, |i| i % 50).await;

        // A 50-interaction cassette, recorded once.
        let path = dir.path().join("bench.yaml");
        let rec = Cassette::builder(&path)
            .mode(CassetteMode::Record)
            .scrubber(Scrubber::new())
            .build()
            .unwrap();
        let mut recording = rec.layer().layer(provider::from_async(Echo));
        let start = Instant::now();
        for i in 0..50 {
            recording.ready().await.unwrap().call(req(i)).await.unwrap();
        }
        let record_ns = start.elapsed().as_nanos() as f64 / 50.0;
        rec.finish().unwrap();

        let play = Cassette::builder(&path)
            .mode(CassetteMode::Replay)
            .scrubber(Scrubber::new())
            .repeat_last(true)
            .build()
            .unwrap();
        let mut replayer = play.replayer();
        let replay = measure(&mut replayer, iters, rounds, |i| i % 50).await;

        let budget = CostBudget::new("bench", f64::MAX).with_prices(PriceTable::openai_default());
        let mut budgeted = budget.layer().layer(provider::from_async(Echo));
        let guarded = measure(&mut budgeted, iters, rounds, |i| i % 50).await;

        println!("flowloom-testkit layer cost ({iters} calls x best of {rounds} rounds, current-thread runtime)");
        println!("{:<44} {:>12} {:>8}", "case", "ns/call", "x floor");
        let rows = [
            ("bare", "bare echo service (floor)", floor),
            ("cassette_replay_50", "cassette replay, 50 interactions", replay),
            ("cost_budget_layer", "cost budget layer", guarded),
            ("cassette_record_rewrite", "cassette record (file rewrite per call)", record_ns),
        ];
        for (_, label, ns) in rows {
            println!("{label:<44} {ns:>12.0} {:>8.2}", ns / floor);
        }
        for (name, _, ns) in rows {
            println!("BENCH {name} {ns:.0} ns/call ratio={:.2}", ns / floor);
        }
    });
}
