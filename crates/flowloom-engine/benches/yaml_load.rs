//! How long loading and validating YAML workflows takes, against a floor measured in the same
//! run: parsing the same text into a plain `serde_yaml::Value` (no types, no checks).
//!
//! `cargo bench -p flowloom-engine --bench yaml_load`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::{Duration, Instant};

use flowloom_engine::yaml;

fn workflow(steps: usize) -> String {
    let mut s = String::from(
        "$schema: workflow/v2.0\nname: big\nversion: 1.0.0\ndescription: A large workflow\nexecution:\n  provider: mock\n  model: gpt-4o-mini\n  temperature: 0.7\n  timeout: 30s\nenv:\n  STYLE: strict\nsteps:\n",
    );
    for i in 0..steps {
        s.push_str(&format!("  - name: step_{i}\n"));
        if i > 0 {
            s.push_str(&format!("    needs: [step_{}]\n", i - 1));
        }
        if i % 3 == 0 {
            s.push_str("    temperature: 0.2\n    max_tokens: 400\n");
        }
        if i % 5 == 0 {
            s.push_str(&format!("    if: \"{{{{ input != 'skip {i}' }}}}\"\n"));
        }
        if i > 0 {
            s.push_str(&format!(
                "    run: \"Step {i} ({{{{ env.STYLE }}}}): improve {{{{ step_{} }}}} for {{{{ input }}}}\"\n",
                i - 1
            ));
        } else {
            s.push_str("    run: \"Start with {{ input }}\"\n");
        }
    }
    s
}

fn median(mut f: impl FnMut(), runs: usize) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn main() {
    println!(
        "{:>6} {:>9} {:>12} {:>14} {:>7} {:>16}",
        "steps", "bytes", "floor (ms)", "load+validate", "ratio", "to_workflow (ms)"
    );
    for steps in [10usize, 100, 1000] {
        let text = workflow(steps);
        let runs = if steps >= 1000 { 15 } else { 51 };
        let floor = median(
            || {
                let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
                std::hint::black_box(v);
            },
            runs,
        );
        let load = median(
            || {
                let wf = yaml::load_str(&text).unwrap();
                std::hint::black_box(wf);
            },
            runs,
        );
        let wf = yaml::load_str(&text).unwrap();
        let lower = median(
            || {
                std::hint::black_box(wf.to_workflow().unwrap());
            },
            runs.min(11),
        );
        println!(
            "{:>6} {:>9} {:>12.3} {:>14.3} {:>7.2} {:>16.3}",
            steps,
            text.len(),
            floor.as_secs_f64() * 1e3,
            load.as_secs_f64() * 1e3,
            load.as_secs_f64() / floor.as_secs_f64(),
            lower.as_secs_f64() * 1e3
        );
    }
}
