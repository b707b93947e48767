//! Cold start of `flowloom validate` on the example workflows, against `true`, in one run.
//!
//! `cargo bench -p flowloom-cli --bench cold_start` spawns the optimized binary N times
//! (`flowloom validate --provider mock fixtures/workflows/*.yaml`)
//! (`FLOWLOOM_BENCH_N`, default 200) and `true` as many times, interleaved, and prints the
//! median, p95 and mean wall time of each, and what flowloom adds over `true`.
//! Target: ≤ 20 ms per `validate` of all examples.

// A measurement tool: a failed spawn ends it loudly.
#![allow(clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn time_one(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
    let took = start.elapsed();
    assert!(status.code().is_some(), "{cmd:?} was killed");
    took
}

struct Stats {
    median: f64,
    p95: f64,
    mean: f64,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let n = v.len();
    Stats {
        median: ms(v[n / 2]),
        p95: ms(v[(n * 95 / 100).min(n - 1)]),
        mean: v.iter().map(|d| ms(*d)).sum::<f64>() / n as f64,
    }
}

fn main() {
    let bin = env!("CARGO_BIN_EXE_flowloom");
    let files = examples();
    assert!(
        !files.is_empty(),
        "no example workflows in fixtures/workflows"
    );
    let n: usize = std::env::var("FLOWLOOM_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);

    // One check that it really validates (exit 0), and warm the page cache.
    let ok = Command::new(bin)
        .args(["validate", "--provider", "mock"])
        .args(&files)
        .output()
        .expect("spawn flowloom");
    assert!(
        ok.status.success(),
        "flowloom validate failed on the examples: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    time_one(&mut Command::new("true"));

    let mut floor = Vec::with_capacity(n);
    let mut validate = Vec::with_capacity(n);
    let mut version = Vec::with_capacity(n);
    for _ in 0..n {
        floor.push(time_one(&mut Command::new("true")));
        validate.push(time_one(
            Command::new(bin)
                .args(["validate", "--provider", "mock"])
                .args(&files),
        ));
        version.push(time_one(Command::new(bin).arg("--version")));
    }
    let f = stats(floor);
    let v = stats(validate);
    let b = stats(version);
    println!(
        "cold start, {n} spawns each, {} example workflows",
        files.len()
    );
    println!(
        "{:<34} {:>10} {:>10} {:>10} {:>12}",
        "command", "median ms", "p95 ms", "mean ms", "vs true"
    );
    for (name, s) in [
        ("true (floor)", &f),
        ("flowloom --version", &b),
        ("flowloom validate <examples>", &v),
    ] {
        println!(
            "{:<34} {:>10.2} {:>10.2} {:>10.2} {:>11.1}x",
            name,
            s.median,
            s.p95,
            s.mean,
            s.median / f.median
        );
    }
    // For `cargo xtask bench`: one line per figure.
    println!("BENCH cli_spawn_true {:.3} ms", f.median);
    println!(
        "BENCH cli_version_cold_start {:.3} ms ratio={:.2}",
        b.median,
        b.median / f.median
    );
    println!(
        "BENCH cli_validate_examples_cold_start {:.3} ms ratio={:.2}",
        v.median,
        v.median / f.median
    );
    println!(
        "validate adds {:.2} ms (median) over true; target: total <= 20 ms -> {}",
        v.median - f.median,
        if v.median <= 20.0 { "met" } else { "NOT met" }
    );
}
