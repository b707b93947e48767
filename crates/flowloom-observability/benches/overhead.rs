//! What observability adds to a run: the engine's 3-step workflow (three model calls on a
//! zero-latency mock provider) with observability off, with JSON logs at INFO to a sink (the
//! full subscriber plus the GenAI span layer), with the token-accounting layer alone, and with
//! all of it, measured in the same process and reported as ratios against "off".
//!
//! Run: `cargo bench -p flowloom-observability --bench overhead`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flowloom_engine::{Engine, Workflow};
use flowloom_observability::{
    GenAiTraceLayer, LogFormat, ObservabilityConfig, Redactor, TokenAccountingLayer, UsageLedger,
};
use flowloom_provider_mock::MockProvider;

const RUNS_PER_SAMPLE: u32 = 2_000;
const ROUNDS: usize = 5;
const WARMUP: u32 = 20;
/// Runs per sample with a 1 ms provider (each run waits ≥ 3 ms).
const SLOW_RUNS_PER_SAMPLE: u32 = 150;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Setup {
    Off,
    JsonLogs,
    Accounting,
    All,
    /// Diagnostic: JSON logs without the redacting writer, to show what redaction costs.
    JsonNoRedaction,
    /// Diagnostic: an identity layer, the engine's cost of wrapping providers in any layer.
    EmptyLayer,
}

impl Setup {
    fn label(self) -> &'static str {
        match self {
            Setup::Off => "observability off",
            Setup::JsonLogs => "JSON logs at INFO + GenAI spans",
            Setup::Accounting => "token-accounting layer",
            Setup::All => "logs + spans + accounting",
            Setup::JsonNoRedaction => "(JSON logs + spans, redaction off)",
            Setup::EmptyLayer => "(an identity layer)",
        }
    }
}

fn workflow() -> Workflow {
    Workflow::builder("three-steps")
        .llm("draft", "Write a short note about {{ input }}")
        .llm("refine", "Tighten this: {{ draft }}")
        .llm("title", "Give a title for: {{ refine }}")
        .build()
        .unwrap()
}

fn engine(
    setup: Setup,
    ledger: &UsageLedger,
    config: &ObservabilityConfig,
    latency_ms: u64,
) -> Engine {
    let mock = if latency_ms == 0 {
        MockProvider::echo()
    } else {
        MockProvider::from_yaml_str(&format!(
            "default: {{ respond: \"a short answer\", latency: {latency_ms}ms }}"
        ))
        .unwrap()
    }
    .with_recording(false);
    let mut b = Engine::builder().no_default_stack();
    if matches!(setup, Setup::JsonLogs | Setup::All | Setup::JsonNoRedaction) {
        b = b.layer(GenAiTraceLayer::from_config(config));
    }
    if setup == Setup::EmptyLayer {
        b = b.layer(tower::layer::util::Identity::new());
    }
    if matches!(setup, Setup::Accounting | Setup::All) {
        b = b.layer(TokenAccountingLayer::new(ledger.clone()));
    }
    b.provider("mock", mock).build().unwrap()
}

/// A sink that counts what is written.
#[derive(Clone, Default)]
struct Counting(Arc<(AtomicU64, AtomicU64)>);

impl io::Write for Counting {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.0.fetch_add(b.len() as u64, Ordering::Relaxed);
        let lines = b.iter().filter(|c| **c == b'\n').count() as u64;
        self.0.1.fetch_add(lines, Ordering::Relaxed);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Counting {
    type Writer = Counting;
    fn make_writer(&'a self) -> Counting {
        self.clone()
    }
}

/// Mean time per run over `RUNS_PER_SAMPLE` runs.
fn sample(
    rt: &tokio::runtime::Runtime,
    setup: Setup,
    out: &Counting,
    latency_ms: u64,
    runs: u32,
) -> Duration {
    let mut config = ObservabilityConfig::default().with_format(LogFormat::Json);
    if setup == Setup::JsonNoRedaction {
        config.redactor = Redactor::disabled();
    }
    let ledger = UsageLedger::new();
    let engine = engine(setup, &ledger, &config, latency_ms);
    let wf = workflow();
    let (dispatch, _guard) = flowloom_observability::build(&config, out.clone()).unwrap();
    let _default = matches!(setup, Setup::JsonLogs | Setup::All | Setup::JsonNoRedaction)
        .then(|| tracing::dispatcher::set_default(&dispatch));
    let elapsed = rt.block_on(async {
        // Warm up.
        for _ in 0..WARMUP {
            engine.run(&wf, "bench").await.unwrap();
        }
        let t = Instant::now();
        for _ in 0..runs {
            let r = engine.run(&wf, "bench").await.unwrap();
            assert_eq!(r.metrics.llm_calls, 3);
        }
        t.elapsed()
    });
    if matches!(setup, Setup::Accounting | Setup::All) {
        assert_eq!(
            ledger.totals().calls,
            u64::from(runs + WARMUP) * 3,
            "every call is accounted"
        );
    }
    elapsed / runs
}

fn table(rt: &tokio::runtime::Runtime, setups: &[Setup], latency_ms: u64, runs: u32) {
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); setups.len()];
    let counting: Vec<Counting> = setups.iter().map(|_| Counting::default()).collect();
    // Interleave the setups so drift (other load on the machine) hits them all alike.
    for _ in 0..ROUNDS {
        for (i, s) in setups.iter().enumerate() {
            samples[i].push(sample(rt, *s, &counting[i], latency_ms, runs));
        }
    }
    let medians: Vec<Duration> = samples
        .iter_mut()
        .map(|v| {
            v.sort();
            v[v.len() / 2]
        })
        .collect();
    let floor = medians[0];
    println!();
    println!(
        "3-step workflow (3 model calls, provider latency {latency_ms} ms), median of {ROUNDS} rounds × {runs} runs"
    );
    println!(
        "{:<36} {:>12} {:>10} {:>10} {:>10} {:>10}",
        "setup", "per run", "vs off", "added", "lines/run", "bytes/run"
    );
    let total_runs = f64::from(runs + WARMUP) * ROUNDS as f64;
    for ((s, m), c) in setups.iter().zip(&medians).zip(&counting) {
        let ratio = m.as_secs_f64() / floor.as_secs_f64();
        println!(
            "{:<36} {:>10.1}µs {:>9.3}x {:>9.1}% {:>10.1} {:>10.0}",
            s.label(),
            m.as_secs_f64() * 1e6,
            ratio,
            (ratio - 1.0) * 100.0,
            c.0.1.load(Ordering::Relaxed) as f64 / total_runs,
            c.0.0.load(Ordering::Relaxed) as f64 / total_runs,
        );
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    table(
        &rt,
        &[
            Setup::Off,
            Setup::JsonLogs,
            Setup::Accounting,
            Setup::All,
            Setup::JsonNoRedaction,
            Setup::EmptyLayer,
        ],
        0,
        RUNS_PER_SAMPLE,
    );
    table(
        &rt,
        &[Setup::Off, Setup::JsonLogs, Setup::Accounting, Setup::All],
        1,
        SLOW_RUNS_PER_SAMPLE,
    );
}
