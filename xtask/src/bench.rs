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
//! For a bench that prints no `BENCH` line, the rows of its own table (a header, then rows of a
//! name and figures, aligned with two or more spaces or as a Markdown table) are listed after
//! the table, as a best effort.

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

/// A row of a bench's own table, read when the bench prints no `BENCH` lines: a name and its
/// numeric cells, each under its column's header when the header is known.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `package/bench`.
    pub source: String,
    /// The row's name (its first cell).
    pub name: String,
    /// `(header, value)` for each other cell.
    pub cells: Vec<(String, String)>,
}

/// Splits a table line into cells: on `|` for Markdown tables, else on runs of two or more
/// spaces.
pub fn split_cells(line: &str) -> Vec<String> {
    let t = line.trim();
    if t.contains('|') {
        return t
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_owned())
            .collect();
    }
    let mut cells = Vec::new();
    let mut cur = String::new();
    let mut spaces = 0;
    for ch in t.chars() {
        if ch.is_whitespace() {
            spaces += 1;
            continue;
        }
        if spaces >= 2 && !cur.is_empty() {
            cells.push(std::mem::take(&mut cur));
        } else if spaces == 1 {
            cur.push(' ');
        }
        spaces = 0;
        cur.push(ch);
    }
    if !cur.is_empty() {
        cells.push(cur);
    }
    cells
}

/// True for a cell that holds a figure: a number, maybe with `$`, `,`, `%`, `x` or a unit.
fn is_figure(cell: &str) -> bool {
    let first = cell.split_whitespace().next().unwrap_or("");
    let n: String = first
        .trim_start_matches('$')
        .trim_end_matches(['%', 'x', '×'])
        .chars()
        .filter(|c| *c != ',')
        .collect();
    !n.is_empty() && n.parse::<f64>().is_ok()
}

/// Reads table rows from a bench's output: a header (cells that are not figures) followed by
/// rows whose cells after the first are all figures.
pub fn table_rows(source: &str, output: &[String]) -> Vec<Row> {
    let mut header: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    for line in output {
        if line.starts_with("BENCH ") {
            continue;
        }
        let cells = split_cells(line);
        if cells.len() < 2
            || cells
                .iter()
                .all(|c| c.chars().all(|ch| ch == '-' || ch == ':'))
        {
            continue;
        }
        let figures = cells[1..].iter().all(|c| is_figure(c));
        let named = cells[0].chars().any(char::is_alphabetic);
        if figures && named {
            let cols: Vec<(String, String)> = cells[1..]
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let h = if header.len() == cells.len() {
                        header[i + 1].clone()
                    } else {
                        format!("col{}", i + 1)
                    };
                    (h, v.clone())
                })
                .collect();
            rows.push(Row {
                source: source.to_owned(),
                name: cells[0].clone(),
                cells: cols,
            });
        } else if !cells[1..].iter().any(|c| is_figure(c)) {
            header = cells;
        }
    }
    rows
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
    let mut rows: Vec<Row> = Vec::new();
    let mut failed = Vec::new();
    for (pkg, bench) in &targets {
        eprintln!("==> cargo bench -p {pkg} --bench {bench}");
        let mut child = Command::new("cargo")
            .args(["bench", "-p", pkg, "--bench", bench])
            .current_dir(root)
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting the bench {pkg}/{bench}"))?;
        let mut lines = Vec::new();
        if let Some(out) = child.stdout.take() {
            for line in BufReader::new(out).lines() {
                let line = line.unwrap_or_default();
                println!("{line}");
                lines.push(line.clone());
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
        if !lines.iter().any(|l| l.starts_with("BENCH ")) {
            rows.extend(table_rows(&format!("{pkg}/{bench}"), &lines));
        }
        let status = child.wait().context("waiting for a bench")?;
        if !status.success() {
            failed.push(format!("{pkg}/{bench} ({status})"));
        }
    }
    if figures.is_empty() {
        println!("\nno bench printed a `BENCH <name> <value> <unit> [ratio=<x>]` line");
    } else {
        println!("\n{}", table(&figures));
    }
    let silent: Vec<String> = targets
        .iter()
        .filter(|(p, b)| !figures.iter().any(|f| &f.package == p && &f.bench == b))
        .map(|(p, b)| format!("{p}/{b}"))
        .collect();
    if !silent.is_empty() {
        println!(
            "benches that printed no BENCH lines: {}; figures read from their own tables:",
            silent.join(", ")
        );
        let ws = rows.iter().map(|r| r.source.len()).max().unwrap_or(0);
        let wn = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
        for r in &rows {
            let cells: Vec<String> = r.cells.iter().map(|(h, v)| format!("{h}={v}")).collect();
            println!("{:<ws$}  {:<wn$}  {}", r.source, r.name, cells.join("  "));
        }
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
    fn reads_rows_of_a_bench_s_own_table() {
        let out: Vec<String> = [
            "flowloom-x overhead (1000 calls)",
            "case                                ns/call  x floor",
            "floor (clone into a response)           283     1.00",
            "echo (recording off)                    739     2.61x",
            "| setup | per run | vs off |",
            "|---|---:|---:|",
            "| json logs | 12.5 µs | +3.1% |",
            "targets: met",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let rows = table_rows("p/b", &out);
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!(rows[0].name, "floor (clone into a response)");
        assert_eq!(
            rows[0].cells,
            [
                ("ns/call".to_owned(), "283".to_owned()),
                ("x floor".to_owned(), "1.00".to_owned())
            ]
        );
        assert_eq!(rows[1].cells[1].1, "2.61x");
        assert_eq!(rows[2].name, "json logs");
        assert_eq!(
            rows[2].cells[0],
            ("per run".to_owned(), "12.5 µs".to_owned())
        );
        assert_eq!(rows[2].cells[1], ("vs off".to_owned(), "+3.1%".to_owned()));
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
