//! `cargo xtask bench`: runs the workspace's benchmarks and prints one table.
//!
//! Convention: a benchmark prints, besides anything else, one line per figure:
//!
//! ```text
//! BENCH <name> <value> <unit> [ratio=<x>]
//! ```
//!
//! e.g. `BENCH retry_layer_overhead 0.42 us/call ratio=1.08`. `<name>` has no spaces; `ratio`
//! is the figure over its floor measured in the same run. Every other line is passed through.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// One `BENCH` line.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// The package whose bench printed it.
    pub package: String,
    /// The bench target.
    pub bench: String,
    /// The figure's name.
    pub name: String,
    /// Its value.
    pub value: f64,
    /// Its unit.
    pub unit: String,
    /// The ratio to its floor, when given.
    pub ratio: Option<f64>,
}

/// Parses a `BENCH <name> <value> <unit> [ratio=<x>]` line; `None` for any other line.
pub fn parse_line(line: &str) -> Option<(String, f64, String, Option<f64>)> {
    let mut it = line.split_whitespace();
    if it.next()? != "BENCH" {
        return None;
    }
    let name = it.next()?.to_owned();
    let value: f64 = it.next()?.parse().ok()?;
    let unit = it.next()?.to_owned();
    let mut ratio = None;
    for rest in it {
        if let Some(r) = rest.strip_prefix("ratio=") {
            ratio = Some(r.trim_end_matches('x').parse().ok()?);
        }
    }
    Some((name, value, unit, ratio))
}

/// The `(package, bench target)` pairs of the workspace, from `cargo metadata`.
pub fn discover(root: &Path) -> Result<Vec<(String, String)>> {
    let out = Command::new("cargo")
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .context("running `cargo metadata`")?;
    if !out.status.success() {
        bail!(
            "`cargo metadata` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let meta: Value = serde_json::from_slice(&out.stdout).context("reading `cargo metadata`")?;
    Ok(benches_of(&meta))
}

/// The bench targets listed in `cargo metadata` output.
pub fn benches_of(meta: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for p in meta["packages"].as_array().into_iter().flatten() {
        let Some(pkg) = p["name"].as_str() else {
            continue;
        };
        for t in p["targets"].as_array().into_iter().flatten() {
            let is_bench = t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bench"));
            if is_bench && let Some(name) = t["name"].as_str() {
                found.push((pkg.to_owned(), name.to_owned()));
            }
        }
    }
    found.sort();
    found
}

/// The table of figures.
pub fn table(figures: &[Figure]) -> String {
    let w = |f: &dyn Fn(&Figure) -> usize, min: usize| {
        figures.iter().map(f).max().unwrap_or(0).max(min)
    };
    let wp = w(&|f| f.package.len() + 1 + f.bench.len(), 5);
    let wn = w(&|f| f.name.len(), 4);
    let wu = w(&|f| f.unit.len(), 4);
    let mut s = format!(
        "{:<wp$}  {:<wn$}  {:>12}  {:<wu$}  {:>8}\n",
        "bench", "name", "value", "unit", "ratio"
    );
    s.push_str(&format!("{}\n", "-".repeat(wp + wn + wu + 12 + 8 + 8)));
    for f in figures {
        let ratio = f
            .ratio
            .map_or_else(|| "-".to_owned(), |r| format!("{r:.3}"));
        s.push_str(&format!(
            "{:<wp$}  {:<wn$}  {:>12}  {:<wu$}  {:>8}\n",
            format!("{}/{}", f.package, f.bench),
            f.name,
            format_value(f.value),
            f.unit,
            ratio
        ));
    }
    s
}

fn format_value(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// Runs every bench target (of `packages`, when given), passing their output through, and
/// prints the table of `BENCH` figures.
pub fn run(root: &Path, packages: &[String]) -> Result<()> {
    let targets: Vec<(String, String)> = discover(root)?
        .into_iter()
        .filter(|(p, _)| packages.is_empty() || packages.iter().any(|x| x == p))
        .collect();
    if targets.is_empty() {
        bail!(
            "no bench targets found{}",
            if packages.is_empty() {
                String::new()
            } else {
                format!(" in {}", packages.join(", "))
            }
        );
    }
    let mut figures = Vec::new();
    let mut failed = Vec::new();
    for (pkg, bench) in &targets {
        eprintln!("==> cargo bench -p {pkg} --bench {bench}");
        let mut child = Command::new("cargo")
            .args(["bench", "-p", pkg, "--bench", bench])
            .current_dir(root)
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting the bench {pkg}/{bench}"))?;
        if let Some(out) = child.stdout.take() {
            for line in BufReader::new(out).lines() {
                let line = line.unwrap_or_default();
                println!("{line}");
                if let Some((name, value, unit, ratio)) = parse_line(&line) {
                    figures.push(Figure {
                        package: pkg.clone(),
                        bench: bench.clone(),
                        name,
                        value,
                        unit,
                        ratio,
                    });
                }
            }
        }
        let status = child.wait().context("waiting for a bench")?;
        if !status.success() {
            failed.push(format!("{pkg}/{bench} ({status})"));
        }
    }
    println!("\n{}", table(&figures));
    let silent: Vec<String> = targets
        .iter()
        .filter(|(p, b)| !figures.iter().any(|f| &f.package == p && &f.bench == b))
        .map(|(p, b)| format!("{p}/{b}"))
        .collect();
    if !silent.is_empty() {
        println!("benches that printed no BENCH lines: {}", silent.join(", "));
    }
    if !failed.is_empty() {
        bail!("these benches failed: {}", failed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bench_lines_and_ignores_the_rest() {
        assert_eq!(
            parse_line("BENCH retry_overhead 0.42 us/call ratio=1.08"),
            Some(("retry_overhead".into(), 0.42, "us/call".into(), Some(1.08)))
        );
        assert_eq!(
            parse_line("BENCH rps_c64 71234 req/s"),
            Some(("rps_c64".into(), 71234.0, "req/s".into(), None))
        );
        assert_eq!(parse_line("BENCH x 1 ns ratio=1.5x").unwrap().3, Some(1.5));
        assert_eq!(parse_line("bench x 1 ns"), None);
        assert_eq!(parse_line("BENCH x notanumber ns"), None);
        assert_eq!(parse_line("BENCH x 1"), None);
        assert_eq!(parse_line("some other output"), None);
    }

    #[test]
    fn finds_bench_targets_in_cargo_metadata() {
        let meta = serde_json::json!({"packages": [
            {"name": "p", "targets": [{"name": "lib", "kind": ["lib"]}, {"name": "layers", "kind": ["bench"]}]},
            {"name": "q", "targets": [{"name": "t", "kind": ["test"]}]}
        ]});
        assert_eq!(benches_of(&meta), [("p".to_owned(), "layers".to_owned())]);
    }

    #[test]
    fn the_table_lists_every_figure() {
        let f = Figure {
            package: "flowloom-middleware".into(),
            bench: "layers".into(),
            name: "retry".into(),
            value: 0.5,
            unit: "us/call".into(),
            ratio: Some(1.1),
        };
        let t = table(&[f]);
        assert!(t.contains("flowloom-middleware/layers"), "{t}");
        assert!(t.contains("0.5000") && t.contains("1.100"), "{t}");
    }
}
