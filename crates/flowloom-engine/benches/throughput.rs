//! Engine overhead and throughput against a hand-written floor measured in the same run.
//!
//! `cargo bench -p flowloom-engine --bench throughput` (what `cargo xtask bench` calls).
//! `-- --quick` runs every section with small counts (a smoke test, not a measurement);
//! `-- --section N` runs one section; `-- --exp` runs variants of the 10,000-at-a-time case
//! with CPU time (where the time goes); `-- --sizes` prints future sizes.
//!
//! The workflow: two model steps and a transform (`draft` → `refine` → `shout`), as in the
//! quickstart. The floor: the same two calls and the transform written by hand, no engine.
//!
//! Sections:
//! 1. memory per in-flight run, 10,000 runs waiting on a slow mock (RSS from /proc/self/statm);
//! 2. overhead per workflow and per step, sequential, zero-latency mock;
//! 3. throughput (wall time ÷ runs) at 1, 100, 1,000 and 10,000 concurrent runs, zero latency;
//! 4. SC-008: 2,000 runs 100 at a time and 20,000 runs 10,000 at a time on a mock taking
//!    10 ms per call, against the ideal wall time (runs ÷ concurrency × model time per run).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // benchmark code

use std::hint::black_box;
use std::time::{Duration, Instant};

use flowloom_core::LlmRequest;
use flowloom_engine::{Engine, OverflowPolicy, Workflow};
use flowloom_provider_mock::MockProvider;
use tower::ServiceExt;

const MODEL: &str = "gpt-4o-mini";

fn workflow() -> Workflow {
    Workflow::builder("summarize")
        .llm("draft", "Summarize: {{ input }}")
        .llm("refine", "Tighten this: {{ draft }}")
        .transform("shout", |ctx| {
            Ok(ctx.output("refine")?.to_uppercase().into())
        })
        .build()
        .expect("valid workflow")
}

/// The same work by hand: two calls and the transform.
async fn floor(svc: &MockProvider, input: &str) -> String {
    let draft = svc
        .clone()
        .oneshot(LlmRequest::new(MODEL, format!("Summarize: {input}")))
        .await
        .expect("mock answers")
        .content;
    let refine = svc
        .clone()
        .oneshot(LlmRequest::new(MODEL, format!("Tighten this: {draft}")))
        .await
        .expect("mock answers")
        .content;
    refine.to_uppercase()
}

fn zero_mock() -> MockProvider {
    MockProvider::echo().with_recording(false)
}

fn slow_mock(latency: &str) -> MockProvider {
    MockProvider::from_yaml_str(&format!(
        "rules:\n  - respond: \"fine\"\n    latency: {latency}\n"
    ))
    .expect("valid script")
    .with_recording(false)
}

fn engine(mock: &MockProvider, max_runs: usize) -> Engine {
    Engine::builder()
        .provider("mock", mock.clone())
        .no_default_stack()
        .max_runs_in_flight(max_runs, OverflowPolicy::Wait)
        .build()
        .expect("engine")
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn us(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e6 / n as f64
}

/// Runs `runs` workflows, `conc` at a time (each of `conc` tasks runs its share in turn).
fn closed_loop<F, Fut>(rt: &tokio::runtime::Runtime, runs: usize, conc: usize, f: F) -> Duration
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let per = runs / conc;
    rt.block_on(async move {
        let start = Instant::now();
        let tasks: Vec<_> = (0..conc)
            .map(|w| {
                let f = f.clone();
                tokio::spawn(async move {
                    for i in 0..per {
                        f(w * per + i).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
        start.elapsed()
    })
}

/// `--memory engine|floor N`: puts N runs in flight and prints the RSS growth and how many
/// runs the engine counted in flight.
fn memory_child(who: &str, n: usize) {
    let rt = multi_thread();
    let mock = slow_mock("3s");
    let wf = workflow();
    let eng = engine(&mock, n);
    rt.block_on(async {
        let _ = eng.run(&wf, "warm").await;
        black_box(floor(&mock, "warm").await);
    });
    let before = rss_bytes().unwrap_or(0);
    let (during, in_flight) = rt.block_on(async {
        let mut handles = Vec::with_capacity(n);
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            if who == "engine" {
                handles.push(eng.start(&wf, format!("text {i}")));
            } else {
                let m = mock.clone();
                tasks.push(tokio::spawn(async move {
                    black_box(floor(&m, &format!("text {i}")).await);
                }));
            }
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let r = (rss_bytes().unwrap_or(0), eng.runs_in_flight());
        for h in handles {
            h.cancel();
            let _ = h.result().await;
        }
        for t in tasks {
            t.abort();
        }
        r
    });
    println!("{} {in_flight}", during.saturating_sub(before));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--memory") {
        let who = args.get(pos + 1).map(String::as_str).unwrap_or("engine");
        let n = args
            .get(pos + 2)
            .and_then(|s| s.parse().ok())
            .unwrap_or(10_000);
        memory_child(who, n);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    if args.iter().any(|a| a == "--exp") {
        experiment();
        return;
    }
    if args.iter().any(|a| a == "--sizes") {
        let mock = zero_mock();
        let eng = engine(&mock, 10);
        let wf = workflow();
        let fut = eng.run(&wf, "x");
        println!("engine.run future: {} bytes", std::mem::size_of_val(&fut));
        let fl = floor(&mock, "x");
        println!("floor future: {} bytes", std::mem::size_of_val(&fl));
        return;
    }
    // `--section N` runs only section N (1-4).
    let only: Option<u32> = args
        .iter()
        .position(|a| a == "--section")
        .and_then(|p| args.get(p + 1))
        .and_then(|s| s.parse().ok());
    let run = |n: u32| only.is_none_or(|o| o == n);
    let scale = |n: usize| if quick { (n / 100).max(1) } else { n };
    println!(
        "flowloom-engine benchmark: 3-step workflow (2 model calls + transform) vs the same by hand"
    );
    println!(
        "(mode: {})\n",
        if quick { "quick smoke run" } else { "full" }
    );

    // 1. Memory per in-flight run, each side measured in a fresh process of its own.
    if run(1) {
        let n = if quick { 1_000 } else { 10_000 };
        let measure = |who: &str| -> Option<(u64, usize)> {
            let out = std::process::Command::new(std::env::current_exe().ok()?)
                .args(["--memory", who, &n.to_string()])
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout);
            let mut it = text.split_whitespace();
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        };
        let (e, in_flight) = measure("engine").unwrap_or((0, 0));
        let (f, _) = measure("floor").unwrap_or((0, 0));
        println!(
            "## memory per in-flight run ({n} runs waiting on a 3 s mock call; RSS growth from /proc/self/statm, fresh process each)"
        );
        println!("| | RSS growth | per run |");
        println!("|---|---:|---:|");
        println!(
            "| engine ({in_flight} in flight) | {:.1} MiB | {:.2} KiB |",
            e as f64 / 1048576.0,
            e as f64 / n as f64 / 1024.0
        );
        println!(
            "| hand-written floor | {:.1} MiB | {:.2} KiB |",
            f as f64 / 1048576.0,
            f as f64 / n as f64 / 1024.0
        );
        if f > 0 {
            println!(
                "BENCH engine_memory_per_inflight_run {:.2} KiB ratio={:.2}",
                e as f64 / n as f64 / 1024.0,
                e as f64 / f as f64
            );
        }
        println!();
    }

    // 2. Sequential overhead per workflow and per step.
    if run(2) {
        let n = scale(200_000);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mock = zero_mock();
        let wf = workflow();
        let eng = engine(&mock, 10_000);
        let eng_stack = Engine::builder()
            .provider("mock", mock.clone())
            .build()
            .expect("engine");
        let measure_floor = || {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..n {
                    black_box(floor(&mock, black_box("some text")).await);
                }
                start.elapsed()
            })
        };
        let measure_engine = |e: &Engine| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..n {
                    black_box(e.run(&wf, black_box("some text")).await.expect("run"));
                }
                start.elapsed()
            })
        };
        // Warm up, then take the best of three rounds of each.
        let _ = (measure_floor(), measure_engine(&eng));
        let f = (0..3).map(|_| measure_floor()).min().unwrap_or_default();
        let e = (0..3)
            .map(|_| measure_engine(&eng))
            .min()
            .unwrap_or_default();
        let s = (0..3)
            .map(|_| measure_engine(&eng_stack))
            .min()
            .unwrap_or_default();
        let (fu, eu, su) = (us(f, n), us(e, n), us(s, n));
        println!(
            "## overhead, sequential, zero-latency mock ({n} runs, best of 3, current-thread runtime)"
        );
        println!("| | µs / workflow | overhead µs / workflow | overhead µs / step |");
        println!("|---|---:|---:|---:|");
        println!("| hand-written floor | {fu:.2} | – | – |");
        println!(
            "| engine (no middleware) | {eu:.2} | {:.2} | {:.2} |",
            eu - fu,
            (eu - fu) / 3.0
        );
        println!(
            "| engine (default retry stack) | {su:.2} | {:.2} | {:.2} |",
            su - fu,
            (su - fu) / 3.0
        );
        println!("target: ≤ 10 µs overhead per 3-step workflow");
        println!(
            "BENCH engine_overhead_per_workflow {:.2} us ratio={:.2}\n",
            eu - fu,
            eu / fu
        );
    }

    // 3. Throughput at 1, 100, 1,000, 10,000 concurrent runs.
    if run(3) {
        let rt = multi_thread();
        let mock = zero_mock();
        let wf = workflow();
        let eng = engine(&mock, 10_000);
        println!("## throughput, zero-latency mock, 2 worker threads (wall time ÷ runs)");
        println!("| concurrent runs | runs | floor µs / run | engine µs / run | ratio |");
        println!("|---:|---:|---:|---:|---:|");
        for conc in [1usize, 100, 1_000, 10_000] {
            let conc = if quick { conc.min(1_000) } else { conc };
            let runs = scale(100_000).max(conc).div_ceil(conc) * conc;
            let m = mock.clone();
            let fl = closed_loop(&rt, runs, conc, move |i| {
                let m = m.clone();
                async move {
                    black_box(floor(&m, &format!("text {i}")).await);
                }
            });
            let (e2, w2) = (eng.clone(), wf.clone());
            let en = closed_loop(&rt, runs, conc, move |i| {
                let (e2, w2) = (e2.clone(), w2.clone());
                async move {
                    black_box(e2.run(&w2, format!("text {i}")).await.expect("run"));
                }
            });
            println!(
                "| {conc} | {runs} | {:.2} | {:.2} | {:.2} |",
                us(fl, runs),
                us(en, runs),
                en.as_secs_f64() / fl.as_secs_f64()
            );
        }
        println!();
    }

    // 4. SC-008 on a mock taking 10 ms per call (2 calls per run = 20 ms of model time).
    if run(4) {
        let rt = multi_thread();
        let mock = slow_mock("10ms");
        let wf = workflow();
        println!("## SC-008: mock taking 10 ms per call, 20 ms model time per run");
        println!(
            "| runs | at a time | ideal ms | floor ms | floor ratio | engine ms | engine ratio | target |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---|");
        let mut bench_lines = Vec::new();
        for (runs, conc, target) in [
            (2_000usize, 100usize, "≤ 1.2 (aim 1.15)"),
            (20_000, 10_000, "≤ 1.3"),
        ] {
            let (runs, conc) = if quick {
                (runs / 10, conc / 10)
            } else {
                (runs, conc)
            };
            let eng = engine(&mock, conc);
            let ideal = Duration::from_millis(20) * (runs / conc) as u32;
            let m = mock.clone();
            let fl = closed_loop(&rt, runs, conc, move |i| {
                let m = m.clone();
                async move {
                    black_box(floor(&m, &format!("text {i}")).await);
                }
            });
            let (e2, w2) = (eng.clone(), wf.clone());
            let en = closed_loop(&rt, runs, conc, move |i| {
                let (e2, w2) = (e2.clone(), w2.clone());
                async move {
                    black_box(e2.run(&w2, format!("text {i}")).await.expect("run"));
                }
            });
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            println!(
                "| {runs} | {conc} | {:.0} | {:.1} | {:.3} | {:.1} | {:.3} | {target} |",
                ms(ideal),
                ms(fl),
                fl.as_secs_f64() / ideal.as_secs_f64(),
                ms(en),
                en.as_secs_f64() / ideal.as_secs_f64()
            );
            // The ratio here is over the ideal wall time, as SC-008 states it.
            bench_lines.push(format!(
                "BENCH sc008_engine_{runs}_runs_{conc}_at_a_time {:.1} ms ratio={:.3}",
                ms(en),
                en.as_secs_f64() / ideal.as_secs_f64()
            ));
            bench_lines.push(format!(
                "BENCH sc008_floor_{runs}_runs_{conc}_at_a_time {:.1} ms ratio={:.3}",
                ms(fl),
                fl.as_secs_f64() / ideal.as_secs_f64()
            ));
        }
        for l in bench_lines {
            println!("{l}");
        }
    }
}

/// CPU time used by this process so far (user + system), from /proc/self/stat.
fn cpu_time() -> Duration {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<&str> = s
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let t = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis((t(11) + t(12)) * 10)
}

/// `--exp`: variants of the 20,000 runs / 10,000 at a time case, with CPU time.
fn experiment() {
    let rt = multi_thread();
    let mock = slow_mock("10ms");
    // `FLOWLOOM_EXP_CONC` changes how many runs are in flight (20,000 runs in all).
    let conc = std::env::var("FLOWLOOM_EXP_CONC")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000usize);
    let runs = 20_000usize.div_ceil(conc) * conc;
    // `FLOWLOOM_EXP_ONLY` runs only the variants whose name contains it (for profiling).
    let only = std::env::var("FLOWLOOM_EXP_ONLY").unwrap_or_default();
    let report = |name: &str, f: &dyn Fn() -> Duration| {
        if !name.contains(only.as_str()) {
            return;
        }
        let c0 = cpu_time();
        let d = f();
        println!(
            "{name:40} wall {:7.1} ms  cpu {:7.1} ms",
            d.as_secs_f64() * 1e3,
            (cpu_time() - c0).as_secs_f64() * 1e3
        );
    };
    let m = mock.clone();
    report("floor", &|| {
        let m = m.clone();
        closed_loop(&rt, runs, conc, move |i| {
            let m = m.clone();
            async move {
                black_box(floor(&m, &format!("text {i}")).await);
            }
        })
    });
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(conc));
    let m = mock.clone();
    report("floor + a shared semaphore permit per run", &|| {
        let (m, sem) = (m.clone(), sem.clone());
        closed_loop(&rt, runs, conc, move |i| {
            let (m, sem) = (m.clone(), sem.clone());
            async move {
                let _p = sem.acquire().await.unwrap();
                black_box(floor(&m, &format!("text {i}")).await);
            }
        })
    });
    let eng = engine(&mock, conc);
    let (_, boxed) = eng.provider("mock").unwrap();
    report("floor through the boxed provider", &|| {
        let b = boxed.clone();
        closed_loop(&rt, runs, conc, move |i| {
            let b = b.clone();
            async move {
                let d = b
                    .clone()
                    .oneshot(LlmRequest::new(MODEL, format!("Summarize: {i}")))
                    .await
                    .unwrap()
                    .content;
                let r = b
                    .clone()
                    .oneshot(LlmRequest::new(MODEL, format!("Tighten: {d}")))
                    .await
                    .unwrap()
                    .content;
                black_box(r.to_uppercase());
            }
        })
    });
    for (name, wf) in [
        (
            "engine, 1 llm step",
            Workflow::builder("one")
                .llm("a", "Summarize: {{ input }}")
                .build()
                .unwrap(),
        ),
        (
            "engine, 2 llm steps",
            Workflow::builder("two")
                .llm("a", "Summarize: {{ input }}")
                .llm("b", "Tighten: {{ a }}")
                .build()
                .unwrap(),
        ),
        ("engine, quickstart", workflow()),
        (
            "engine, 1 transform",
            Workflow::builder("t")
                .transform("t", |_| Ok(1.into()))
                .build()
                .unwrap(),
        ),
    ] {
        let (e2, w2) = (eng.clone(), wf.clone());
        report(name, &|| {
            let (e2, w2) = (e2.clone(), w2.clone());
            closed_loop(&rt, runs, conc, move |i| {
                let (e2, w2) = (e2.clone(), w2.clone());
                async move {
                    black_box(e2.run(&w2, format!("text {i}")).await.expect("run"));
                }
            })
        });
    }
}
