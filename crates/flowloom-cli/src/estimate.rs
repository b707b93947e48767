//! `flowloom estimate`: prints [`flowloom_engine::yaml::estimate`]'s estimate of a run, as a
//! table or as JSON.

use std::fmt::Write as _;

use flowloom_engine::yaml::estimate::{Estimate, EstimateError, estimate_set};
use flowloom_observability::cost::{Cost, PriceTable};

use crate::cli::EstimateArgs;
use crate::error::{CliError, Exit};
use crate::input::{parse_vars, read_input};

impl From<EstimateError> for CliError {
    fn from(e: EstimateError) -> Self {
        match e {
            EstimateError::Tokenizer(_) => CliError::Runtime(e.to_string()),
            _ => CliError::usage(e.to_string()),
        }
    }
}

fn cost_text(c: &Cost) -> String {
    match c {
        Cost::Priced(m) => m.to_string(),
        Cost::Unpriced { .. } => "unpriced".to_owned(),
        Cost::UsageUnknown => "unknown".to_owned(),
        Cost::CacheHit => "$0 (cache)".to_owned(),
    }
}

/// The estimate as a table.
pub fn render(e: &Estimate) -> String {
    let mut out = String::new();
    let w = e
        .calls
        .iter()
        .map(|c| c.step.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let m = e
        .calls
        .iter()
        .map(|c| c.model.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(out, "estimate for workflow `{}`", e.workflow);
    let _ = writeln!(
        out,
        "{:<w$}  {:<10}  {:<m$}  {:>8}  {:>10}  {:>7}  {:>12}  {:>12}",
        "step", "kind", "model", "prompt", "completion", "times", "cost min", "cost max"
    );
    for c in &e.calls {
        let times = if c.times_min == c.times_max {
            c.times_min.to_string()
        } else {
            format!("{}-{}", c.times_min, c.times_max)
        };
        let _ = writeln!(
            out,
            "{:<w$}  {:<10}  {:<m$}  {:>8}  {:>10}  {:>7}  {:>12}  {:>12}",
            c.step,
            c.kind,
            c.model,
            c.prompt_tokens,
            format!("<= {}", c.max_completion_tokens),
            times,
            cost_text(&c.cost_min),
            cost_text(&c.cost_max)
        );
    }
    let (least, most) = (
        e.calls.iter().map(|c| c.times_min).sum::<u64>(),
        e.calls.iter().map(|c| c.times_max).sum::<u64>(),
    );
    let _ = writeln!(
        out,
        "total: {} call{}, {} prompt tokens, at most {} completion tokens; cost {} to {} \
         (prices as of {})",
        if least == most {
            least.to_string()
        } else {
            format!("{least} to {most}")
        },
        if most == 1 { "" } else { "s" },
        e.prompt_tokens,
        e.max_completion_tokens,
        e.cost_min,
        e.cost_max,
        e.prices_as_of
    );
    if !e.unpriced_models.is_empty() {
        let _ = writeln!(
            out,
            "not priced (not in the price table, not counted as $0): {}; pass --prices FILE",
            e.unpriced_models
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for n in &e.not_estimated {
        let _ = writeln!(out, "not estimated: {n}");
    }
    out
}

/// `flowloom estimate FILE`.
pub fn run(args: &EstimateArgs) -> Result<Exit, CliError> {
    let set = crate::run::load_set(&args.file)?;
    let vars = parse_vars(&args.input.vars)?;
    let input = read_input(&args.input)?;
    let prices = match &args.prices {
        Some(p) => PriceTable::from_file(p).map_err(|e| {
            CliError::usage(format!("cannot use the price table {}: {e}", p.display()))
        })?,
        None => PriceTable::openai_default(),
    };
    let e = estimate_set(&set, &input, &vars, args.model.as_deref(), &prices)?;
    if args.json {
        let text = serde_json::to_string_pretty(&e)
            .map_err(|err| CliError::Runtime(format!("cannot print the estimate: {err}")))?;
        println!("{text}");
    } else {
        print!("{}", render(&e));
    }
    Ok(Exit::Completed)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use flowloom_engine::yaml::WorkflowSet;

    use super::*;

    fn fixture(name: &str) -> WorkflowSet {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/workflows")
            .join(name);
        WorkflowSet::load(p).unwrap()
    }

    #[test]
    fn the_table_shows_each_calls_times_and_the_call_range() {
        let prices = PriceTable::openai_default();
        let e = estimate_set(
            &fixture("refine_loop.yaml"),
            "x",
            &Default::default(),
            None,
            &prices,
        )
        .unwrap();
        let table = render(&e);
        assert!(table.contains("refine > improve_draft.improved"), "{table}");
        assert!(table.contains("1-5"), "{table}");
        assert!(table.contains("total: 3 to 11 calls"), "{table}");
        assert!(table.contains("not priced"), "{table}");
        assert!(table.contains("judge-model"), "{table}");
    }

    #[test]
    fn files_the_workflow_cannot_read_are_usage_errors_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let wf = dir.path().join("items.yaml");
        std::fs::write(
            &wf,
            "$schema: workflow/v2.0\nname: items\nversion: 1.0.0\ndescription: d\n\
             execution: { provider: openai, model: gpt-4o-mini }\nsteps:\n\
             \x20 - name: each\n    run: \"{{ item }}\"\n\
             \x20   loop: { mode: iterate, items: \"file://missing.json\" }\n",
        )
        .unwrap();
        let set = WorkflowSet::load(&wf).unwrap();
        let err = estimate_set(
            &set,
            "x",
            &Default::default(),
            None,
            &PriceTable::openai_default(),
        )
        .unwrap_err();
        let cli = CliError::from(err);
        assert_eq!(cli.exit_code(), Exit::Invalid);
        let msg = cli.to_string();
        assert!(msg.contains("missing.json"), "{msg}");
        assert!(msg.contains("relative to the workflow file"), "{msg}");

        std::fs::write(dir.path().join("missing.json"), "{\"not\": \"a list\"}").unwrap();
        let err = estimate_set(
            &set,
            "x",
            &Default::default(),
            None,
            &PriceTable::openai_default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("not a JSON array"), "{err}");
    }
}
