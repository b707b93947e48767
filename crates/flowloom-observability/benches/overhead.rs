//! What observability adds to a run: the engine's 3-step workflow (three model calls) with
//! observability off, with JSON logs at INFO to a sink (the full subscriber plus the GenAI span
//! layer), with the token-accounting layer alone, and with all of it, measured in the same
//! process, the setups interleaved round by round, and reported against "off".
//!
//! Two tables:
//!
//! 1. **Zero-latency provider** (an echo mock, `current_thread` runtime, one run at a time):
//!    the absolute CPU cost per run, which is what a user pays whatever the provider. Against
//!    a run that itself costs a few microseconds, the ratio is large for anything that writes
//!    log lines; the µs column is the figure to read.
//! 2. **1 ms provider** (`multi_thread` runtime with 2 workers, 4 runs in flight): the mean
//!    latency of a run as a caller sees it, and the CPU it costs. The mock waits through the
//!    blocking adapter (`std::thread::sleep`, precise to tens of µs): on tokio's timer every
//!    wait is rounded up to a millisecond tick, so a few µs of work either crosses a tick
//!    (+1 ms) or not (+0), and runs woken by the same tick queue behind each other.
//!
//! CPU per run is the process's CPU time (every thread, `CLOCK_PROCESS_CPUTIME_ID`) over the
//! runs; "n/a" where the platform has no such clock.
//!
//! Run: `cargo bench -p flowloom-observability --bench overhead`. For profiling, set
//! `FLOWLOOM_BENCH_ONLY` to a comma-separated list of setup keys (`off,json,acct,all,raw,id`)
//! and/or `FLOWLOOM_BENCH_TABLE` to `zero`, `layer` or `latency` (or `lines`, to print what one
//! run logs).
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

/// The target: what observability may add to a run.
const TARGET_ADDED: f64 = 0.10;
const ROUNDS: usize = 9;
const WARMUP: u32 = 20;
/// Zero latency: runs per sample, one after another.
const RUNS_PER_SAMPLE: u32 = 2_000;
/// 1 ms provider: runs in flight at once, and runs per sample.
const IN_FLIGHT: u32 = 4;
const SLOW_RUNS_PER_SAMPLE: u32 = IN_FLIGHT * 50;
/// 1 ms provider: rounds (more, shorter samples than at zero latency: the machine's load
/// drifts over seconds, and interleaving finely spreads it over every setup).
const SLOW_ROUNDS: usize = 9;

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
    fn key(self) -> &'static str {
        match self {
            Setup::Off => "off",
            Setup::JsonLogs => "json",
            Setup::Accounting => "acct",
            Setup::All => "all",
            Setup::JsonNoRedaction => "raw",
            Setup::EmptyLayer => "id",
        }
    }
    fn logs(self) -> bool {
        matches!(self, Setup::JsonLogs | Setup::All | Setup::JsonNoRedaction)
    }
    fn accounts(self) -> bool {
        matches!(self, Setup::Accounting | Setup::All)
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
    let mut b = Engine::builder().no_default_stack();
    if setup.logs() {
        b = b.layer(GenAiTraceLayer::from_config(config));
    }
    if setup == Setup::EmptyLayer {
        b = b.layer(tower::layer::util::Identity::new());
    }
    if setup.accounts() {
        b = b.layer(TokenAccountingLayer::new(ledger.clone()));
    }
    if latency_ms == 0 {
        b = b.provider("mock", MockProvider::echo().with_recording(false));
    } else {
        // The blocking adapter waits with `std::thread::sleep` on the blocking pool: a
        // precise wait, where tokio's timer would round every wait up to its millisecond tick.
        let mock = MockProvider::from_yaml_str(&format!(
            "default: {{ respond: \"a short answer\", latency: {latency_ms}ms }}"
        ))
        .unwrap()
        .with_recording(false);
        b = b.provider("mock", flowloom_core::provider::from_blocking(mock));
    }
    b.build().unwrap()
}

/// A sink that counts what is written.
#[derive(Clone, Default)]
struct Counting(Arc<(AtomicU64, AtomicU64)>);

impl io::Write for Counting {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.0.fetch_add(b.len() as u64, Ordering::Relaxed);
        // Counted in u8 lanes (vectorized), so the sink's bookkeeping stays out of the figures.
        let lines: u64 = b
            .chunks(255)
            .map(|c| u64::from(c.iter().fold(0u8, |n, x| n + u8::from(*x == b'\n'))))
            .sum();
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

/// CPU time of the whole process (every thread) so far.
#[cfg(unix)]
fn process_cpu() -> Option<Duration> {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Some(Duration::new(
        u64::try_from(t.tv_sec).ok()?,
        u32::try_from(t.tv_nsec).ok()?,
    ))
}

#[cfg(not(unix))]
fn process_cpu() -> Option<Duration> {
    None
}

/// One sample: mean wall time and CPU time per run.
#[derive(Clone, Copy)]
struct Sample {
    wall: Duration,
    cpu: Option<Duration>,
}

struct Env {
    ledger: UsageLedger,
    engine: Engine,
    dispatch: tracing::Dispatch,
    _guard: flowloom_observability::ObservabilityGuard,
}

fn env(setup: Setup, out: &Counting, latency_ms: u64) -> Env {
    let mut config = ObservabilityConfig::default().with_format(LogFormat::Json);
    if setup == Setup::JsonNoRedaction {
        config.redactor = Redactor::disabled();
    }
    let ledger = UsageLedger::new();
    let engine = engine(setup, &ledger, &config, latency_ms);
    let (dispatch, guard) = if setup.logs() {
        flowloom_observability::build(&config, out.clone()).unwrap()
    } else {
        // Observability off: no subscriber at all.
        let (_, guard) = flowloom_observability::build(&config, io::sink).unwrap();
        (tracing::Dispatch::none(), guard)
    };
    Env {
        ledger,
        engine,
        dispatch,
        _guard: guard,
    }
}

fn check_ledger(setup: Setup, ledger: &UsageLedger, runs: u32) {
    if setup.accounts() {
        assert_eq!(
            ledger.totals().calls,
            u64::from(runs + WARMUP) * 3,
            "every call is accounted"
        );
    }
}

/// Zero latency: `runs` runs one after another on a `current_thread` runtime.
fn sample_sequential(setup: Setup, out: &Counting, runs: u32) -> Sample {
    let e = env(setup, out, 0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let wf = workflow();
    let _default = tracing::dispatcher::set_default(&e.dispatch);
    let (wall, cpu) = rt.block_on(async {
        for _ in 0..WARMUP {
            e.engine.run(&wf, "bench").await.unwrap();
        }
        let cpu0 = process_cpu();
        let t = Instant::now();
        for _ in 0..runs {
            let r = e.engine.run(&wf, "bench").await.unwrap();
            assert_eq!(r.metrics.llm_calls, 3);
        }
        let wall = t.elapsed();
        (wall, process_cpu().zip(cpu0).map(|(b, a)| b - a))
    });
    check_ledger(setup, &e.ledger, runs);
    Sample {
        wall: wall / runs,
        cpu: cpu.map(|c| c / runs),
    }
}

/// 1 ms provider: `runs` runs, `IN_FLIGHT` at a time, on a 2-worker `multi_thread` runtime
/// whose threads all log through the setup's subscriber. Wall is the mean latency of a run.
fn sample_in_flight(setup: Setup, out: &Counting, latency_ms: u64, runs: u32) -> Sample {
    let e = env(setup, out, latency_ms);
    let d = e.dispatch.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            // The worker keeps this subscriber as its default until it ends with the runtime.
            std::mem::forget(tracing::dispatcher::set_default(&d));
        })
        .build()
        .unwrap();
    let wf = Arc::new(workflow());
    let engine = e.engine.clone();
    let one = move |wf: Arc<Workflow>, engine: Engine| async move {
        let t = Instant::now();
        let r = engine.run(&wf, "bench").await.unwrap();
        assert_eq!(r.metrics.llm_calls, 3);
        t.elapsed()
    };
    let (latency, cpu) = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..WARMUP {
            set.spawn(one(Arc::clone(&wf), engine.clone()));
        }
        while set.join_next().await.is_some() {}
        let cpu0 = process_cpu();
        let mut started = 0;
        let mut total = Duration::ZERO;
        while started < IN_FLIGHT.min(runs) {
            set.spawn(one(Arc::clone(&wf), engine.clone()));
            started += 1;
        }
        while let Some(r) = set.join_next().await {
            total += r.unwrap();
            if started < runs {
                set.spawn(one(Arc::clone(&wf), engine.clone()));
                started += 1;
            }
        }
        (total, process_cpu().zip(cpu0).map(|(b, a)| b - a))
    });
    drop(rt);
    check_ledger(setup, &e.ledger, runs);
    Sample {
        wall: latency / runs,
        cpu: cpu.map(|c| c / runs),
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn table(setups: &[Setup], latency_ms: u64, runs: u32) {
    let rounds = if latency_ms == 0 { ROUNDS } else { SLOW_ROUNDS };
    let mut walls: Vec<Vec<Duration>> = vec![Vec::new(); setups.len()];
    let mut cpus: Vec<Vec<Duration>> = vec![Vec::new(); setups.len()];
    let counting: Vec<Counting> = setups.iter().map(|_| Counting::default()).collect();
    // Interleave the setups so drift (other load on the machine) hits them all alike.
    for _ in 0..rounds {
        for (i, s) in setups.iter().enumerate() {
            let sample = if latency_ms == 0 {
                sample_sequential(*s, &counting[i], runs)
            } else {
                sample_in_flight(*s, &counting[i], latency_ms, runs)
            };
            walls[i].push(sample.wall);
            if let Some(c) = sample.cpu {
                cpus[i].push(c);
            }
        }
    }
    let walls: Vec<Duration> = walls.iter_mut().map(|v| median(v)).collect();
    let cpus: Vec<Option<Duration>> = cpus
        .iter_mut()
        .map(|v| (!v.is_empty()).then(|| median(v)))
        .collect();
    let floor = walls[0];
    let cpu_floor = cpus[0];
    println!();
    if latency_ms == 0 {
        println!(
            "3-step workflow, zero-latency provider, one run at a time (current_thread): \
             median of {rounds} rounds × {runs} runs"
        );
    } else {
        println!(
            "3-step workflow, {latency_ms} ms provider, {IN_FLIGHT} runs in flight \
             (multi_thread, 2 workers): median of {rounds} rounds × {runs} runs"
        );
    }
    let wall_label = if latency_ms == 0 {
        "wall/run"
    } else {
        "latency/run"
    };
    println!(
        "{:<36} {:>12} {:>9} {:>10} {:>11} {:>11} {:>10} {:>10}",
        "setup", wall_label, "added", "added %", "CPU/run", "CPU added", "lines/run", "bytes/run"
    );
    let total_runs = f64::from(runs + WARMUP) * rounds as f64;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mut verdicts = Vec::new();
    let mut bench_lines = Vec::new();
    for (i, s) in setups.iter().enumerate() {
        let (m, c) = (walls[i], cpus[i]);
        let added = us(m) - us(floor);
        let pct = added / us(floor) * 100.0;
        let cpu = c.map_or("n/a".to_owned(), |c| format!("{:.1}µs", us(c)));
        let cpu_added = c.zip(cpu_floor).map_or("n/a".to_owned(), |(c, f)| {
            format!("{:+.1}µs", us(c) - us(f))
        });
        println!(
            "{:<36} {:>10.1}µs {:>+7.1}µs {:>+9.1}% {:>11} {:>11} {:>10.1} {:>10.0}",
            s.label(),
            us(m),
            added,
            pct,
            cpu,
            cpu_added,
            counting[i].0.1.load(Ordering::Relaxed) as f64 / total_runs,
            counting[i].0.0.load(Ordering::Relaxed) as f64 / total_runs,
        );
        if matches!(s, Setup::JsonLogs | Setup::Accounting | Setup::All) {
            // One line per figure for `cargo xtask bench`: time per run, ratio to "off".
            bench_lines.push(format!(
                "BENCH observability_{}_{}ms {:.2} us/run ratio={:.3}",
                s.key(),
                latency_ms,
                us(m),
                us(m) / us(floor)
            ));
            let ok = pct <= TARGET_ADDED * 100.0;
            verdicts.push(format!(
                "{} {:+.1}% ({})",
                s.key(),
                pct,
                if ok { "meets" } else { "misses" }
            ));
        }
    }
    println!(
        "verdict vs ≤{:.0}% added ({}): {}",
        TARGET_ADDED * 100.0,
        if latency_ms == 0 {
            "zero-latency, CPU-bound"
        } else {
            "run latency with a 1 ms provider"
        },
        verdicts.join(", ")
    );
    for l in bench_lines {
        println!("{l}");
    }
}

/// The accounting layer alone, around a service that answers at once: nanoseconds per call
/// over the bare service, ledger writes included (new records, as in a long-lived ledger).
fn layer_alone() {
    use flowloom_core::{CallContext, LlmRequest, LlmResponse, TokenUsage};
    use futures_util::FutureExt;
    use tower::{Layer, Service};
    const CALLS: u32 = 200_000;
    let answer = LlmResponse::text("ok", "gpt-4o-mini", "mock").with_usage(TokenUsage::new(
        12,
        3,
        "gpt-4o-mini",
        "mock",
    ));
    // Boxed, as every service behind the engine's `BoxLlmService` is.
    let bare = tower::service_fn(
        move |_r: LlmRequest| -> flowloom_core::provider::BoxFuture<_> {
            Box::pin(std::future::ready(Ok::<_, flowloom_core::LlmError>(
                answer.clone(),
            )))
        },
    );
    let request = LlmRequest::new("gpt-4o-mini", "hi").with_context(CallContext {
        run_id: Some(uuid::Uuid::new_v4()),
        workflow: Some("three-steps".into()),
        step: Some("draft".into()),
        correlation_id: Some(uuid::Uuid::new_v4()),
        provider: Some("mock".into()),
    });
    fn time<S: Service<LlmRequest, Response = LlmResponse>>(svc: &mut S, r: &LlmRequest) -> f64 {
        let t = Instant::now();
        for _ in 0..CALLS {
            let res = svc.call(r.clone()).now_or_never();
            assert!(matches!(res, Some(Ok(_))));
        }
        t.elapsed().as_secs_f64() * 1e9 / f64::from(CALLS)
    }
    let mut floor = Vec::new();
    let mut pass = Vec::new();
    let mut acct = Vec::new();
    for _ in 0..ROUNDS {
        floor.push(time(&mut bare.clone(), &request));
        // A layer whose future only passes the answer through: what any wrapping costs.
        pass.push(time(
            &mut tower::util::MapResponseLayer::new(|r: LlmResponse| r).layer(bare.clone()),
            &request,
        ));
        let ledger = UsageLedger::new();
        acct.push(time(
            &mut TokenAccountingLayer::new(ledger.clone()).layer(bare.clone()),
            &request,
        ));
        assert_eq!(ledger.len(), CALLS as usize);
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (f, p, a) = (med(&mut floor), med(&mut pass), med(&mut acct));
    println!();
    println!("token-accounting layer alone, median of {ROUNDS} rounds × {CALLS} calls");
    println!(
        "bare service {f:.0} ns/call, a pass-through layer {p:.0}, the accounting layer {a:.0}: \
         {:+.0} ns per recorded call ({:+.0} ns over passing through)",
        a - f,
        a - p
    );
}

/// Scrubbing one log line: a line as the JSON logs write it (no secret in it), through the
/// default redactor with one configured secret.
fn redaction_per_line() {
    const LINES: u32 = 100_000;
    let line = r#"{"timestamp":"2026-11-21T14:05:03.123456Z","level":"INFO","fields":{"message":"model call finished"},"target":"flowloom::gen_ai","spans":[{"name":"workflow","workflow.name":"three-steps","workflow.id":"5f0c6f0e-2a39-4a55-9c1e-0d6a4d0c1f11","correlation.id":"0b7d3f8e-6c1a-4f2e-8a55-2b9f4e1d7c33"},{"name":"step","step.name":"draft","step.kind":"llm"},{"name":"gen_ai","otel.name":"chat gpt-4o-mini","otel.kind":"client","gen_ai.operation.name":"chat","gen_ai.provider.name":"mock","gen_ai.request.model":"gpt-4o-mini","gen_ai.request.temperature":0.7,"gen_ai.request.max_tokens":1000,"gen_ai.response.model":"gpt-4o-mini","gen_ai.response.finish_reasons":"[\"stop\"]","gen_ai.usage.input_tokens":12,"gen_ai.usage.output_tokens":9,"workflow.id":"5f0c6f0e-2a39-4a55-9c1e-0d6a4d0c1f11"}]}"#;
    let r = Redactor::new().with_secret("sk-bench-0123456789abcdef");
    let mut ns = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for _ in 0..LINES {
            assert!(matches!(
                r.redact(std::hint::black_box(line)),
                std::borrow::Cow::Borrowed(_)
            ));
        }
        ns.push(t.elapsed().as_secs_f64() * 1e9 / f64::from(LINES));
    }
    ns.sort_by(f64::total_cmp);
    println!(
        "redaction: {:.0} ns per {}-byte log line without secrets (median of {ROUNDS} × {LINES})",
        ns[ns.len() / 2],
        line.len()
    );
}

/// One run's log lines, printed (`FLOWLOOM_BENCH_TABLE=lines`), to see what a run writes.
fn print_lines() {
    #[derive(Clone, Default)]
    struct Keep(Arc<std::sync::Mutex<Vec<u8>>>);
    impl io::Write for Keep {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let keep = Keep::default();
    let k = keep.clone();
    let config = ObservabilityConfig::default().with_format(LogFormat::Json);
    let ledger = UsageLedger::new();
    let engine = engine(Setup::All, &ledger, &config, 0);
    let (dispatch, _guard) = flowloom_observability::build(&config, move || k.clone()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _default = tracing::dispatcher::set_default(&dispatch);
    rt.block_on(engine.run(&workflow(), "bench")).unwrap();
    print!("{}", String::from_utf8_lossy(&keep.0.lock().unwrap()));
}

fn main() {
    let only = std::env::var("FLOWLOOM_BENCH_ONLY").ok();
    let keep = |setups: &[Setup]| -> Vec<Setup> {
        let mut v: Vec<Setup> = setups
            .iter()
            .copied()
            .filter(|s| {
                only.as_deref()
                    .is_none_or(|o| o.split(',').any(|k| k.trim() == s.key()))
            })
            .collect();
        // "off" is the floor of every table.
        if v.first() != Some(&Setup::Off) {
            v.insert(0, Setup::Off);
        }
        v
    };
    let which = std::env::var("FLOWLOOM_BENCH_TABLE").unwrap_or_default();
    if which == "lines" {
        print_lines();
        return;
    }
    if which.is_empty() || which == "zero" {
        table(
            &keep(&[
                Setup::Off,
                Setup::JsonLogs,
                Setup::Accounting,
                Setup::All,
                Setup::JsonNoRedaction,
                Setup::EmptyLayer,
            ]),
            0,
            RUNS_PER_SAMPLE,
        );
    }
    if which.is_empty() || which == "layer" {
        layer_alone();
        redaction_per_line();
    }
    if which.is_empty() || which == "latency" {
        table(
            &keep(&[Setup::Off, Setup::JsonLogs, Setup::Accounting, Setup::All]),
            1,
            SLOW_RUNS_PER_SAMPLE,
        );
    }
}
