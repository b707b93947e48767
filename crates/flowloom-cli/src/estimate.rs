//! `flowloom estimate`: tokens and cost of a run before running it, from the `cl100k_base`
//! tokenizer (the YAML loader's) and the price table (observability's).
//!
//! The rule, per model call the file makes:
//! - prompt tokens: the prompt template's text counted with the tokenizer, where `{{ input }}`,
//!   `{{ env.X }}` and `--var` values are counted as given, and an earlier step's output
//!   (`{{ draft }}`, `{{ steps.draft.output }}`) as that step's completion limit (an upper
//!   bound); other expressions count as nothing. Plus 7 tokens of chat framing per call.
//! - completion tokens: at most the call's effective `max_tokens` (the model default, 1024,
//!   when unset).
//! - a `run` step is one call; a `consensus` step one per execution; an `embeddings` step
//!   counts its input texts and has no completion. Conditions are assumed true. Template
//!   calls and loops are listed as not estimated.
//!
//! The cost is given as a range: the prompt alone (no answer at all) up to every answer
//! using its whole `max_tokens`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use flowloom_core::DEFAULT_MAX_TOKENS;
use flowloom_engine::yaml::{self, EffectiveConfig, LoadedWorkflow, Step};
use flowloom_observability::cost::{Cost, Money, PriceTable};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::cli::EstimateArgs;
use crate::error::{CliError, Exit};
use crate::input::{parse_vars, read_input};

/// Tokens of chat framing per call (per-message and reply-priming tokens of the chat format).
const CHAT_OVERHEAD: u64 = 7;

/// One model call the workflow would make.
#[derive(Debug, Clone, Serialize)]
pub struct CallEstimate {
    /// The step.
    pub step: String,
    /// `run`, `consensus` or `embeddings`.
    pub kind: &'static str,
    /// The provider, where one is named.
    pub provider: Option<String>,
    /// The model priced.
    pub model: String,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// The most completion tokens.
    pub max_completion_tokens: u64,
    /// Cost with no completion at all (`null` when the model is not priced).
    #[serde(serialize_with = "cost_json")]
    pub cost_min: Cost,
    /// Cost with every completion at its limit (`null` when the model is not priced).
    #[serde(serialize_with = "cost_json")]
    pub cost_max: Cost,
}

/// The estimate of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    /// The workflow.
    pub workflow: String,
    /// Every call.
    pub calls: Vec<CallEstimate>,
    /// Sum of prompt tokens.
    pub prompt_tokens: u64,
    /// Sum of completion limits.
    pub max_completion_tokens: u64,
    /// Priced calls, prompt only.
    pub cost_min: Money,
    /// Priced calls, completions at their limits.
    pub cost_max: Money,
    /// Models not in the price table (their calls are not in the cost).
    pub unpriced_models: BTreeSet<String>,
    /// Steps whose calls are not estimated, with why.
    pub not_estimated: Vec<String>,
    /// The price table's date.
    pub prices_as_of: String,
}

/// A cost as JSON: the dollar amount as text (`"$0.0021"`), or `null` when unknown.
fn cost_json<S: serde::Serializer>(c: &Cost, s: S) -> Result<S::Ok, S::Error> {
    match c {
        Cost::Priced(m) => s.serialize_some(&m.to_string()),
        _ => s.serialize_none(),
    }
}

fn tokens(text: &str) -> Result<u64, CliError> {
    yaml::count_tokens(text)
        .map(|n| n as u64)
        .map_err(CliError::Runtime)
}

/// Counts a prompt template: literal text plus the values its `{{ }}` expressions insert.
fn template_tokens(
    template: &str,
    known: &BTreeMap<String, u64>,
    outputs: &BTreeMap<String, u64>,
) -> Result<u64, CliError> {
    let mut literal = String::new();
    let mut inserted = 0u64;
    let mut rest = template;
    loop {
        let next_expr = rest.find("{{");
        let next_block = rest.find("{%");
        let (at, close) = match (next_expr, next_block) {
            (Some(e), Some(b)) if b < e => (b, "%}"),
            (Some(e), _) => (e, "}}"),
            (None, Some(b)) => (b, "%}"),
            (None, None) => break,
        };
        literal.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let Some(end) = after.find(close) else {
            literal.push_str(&rest[at..]);
            rest = "";
            break;
        };
        if close == "}}" {
            let expr = after[..end].split('|').next().unwrap_or_default().trim();
            let name = expr
                .strip_prefix("steps.")
                .and_then(|s| s.strip_suffix(".output"))
                .unwrap_or(expr);
            inserted += known
                .get(expr)
                .or_else(|| outputs.get(name))
                .copied()
                .unwrap_or(0);
        }
        rest = &after[end + 2..];
    }
    literal.push_str(rest);
    Ok(tokens(&literal)? + inserted)
}

fn model_of(c: &EffectiveConfig, over: Option<&str>) -> String {
    over.map(str::to_owned)
        .or_else(|| c.model.clone())
        .or_else(|| c.chain.first().map(|f| f.model.clone()))
        .unwrap_or_else(|| flowloom_core::DEFAULT_MODEL.to_owned())
}

fn provider_of(c: &EffectiveConfig) -> Option<String> {
    c.provider
        .clone()
        .or_else(|| c.chain.first().map(|f| f.provider.clone()))
}

/// Estimates a loaded workflow's run with `input` and `vars`.
pub fn estimate(
    wf: &LoadedWorkflow,
    input: &str,
    vars: &Map<String, Value>,
    model: Option<&str>,
    prices: &PriceTable,
) -> Result<Estimate, CliError> {
    let d = &wf.definition;
    let mut known = BTreeMap::new();
    known.insert("input".to_owned(), tokens(input)?);
    for (k, v) in &d.env {
        known.insert(format!("env.{k}"), tokens(&v.as_text())?);
    }
    for (k, v) in vars {
        let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
        known.insert(k.clone(), tokens(&text)?);
    }
    let mut outputs: BTreeMap<String, u64> = BTreeMap::new();
    let mut calls = Vec::new();
    let mut not_estimated = Vec::new();
    for s in &d.steps {
        let before = calls.len();
        step_calls(wf, s, model, &known, &outputs, prices, &mut calls)?;
        let produced: u64 = calls[before..]
            .iter()
            .map(|c: &CallEstimate| c.max_completion_tokens)
            .max()
            .unwrap_or(0);
        outputs.insert(s.name.clone(), produced);
        if let Some(t) = &s.template {
            not_estimated.push(format!(
                "{}: calls workflow `{}` (template)",
                s.name, t.name
            ));
        }
        if let Some(l) = &s.loop_ {
            not_estimated.push(format!(
                "{}: a loop over items{}",
                s.name,
                l.workflow
                    .as_deref()
                    .map(|w| format!(" calling `{w}`"))
                    .unwrap_or_default()
            ));
        }
    }
    for l in &d.loops {
        not_estimated.push(format!(
            "{}: loop calling `{}` up to {} times",
            l.name, l.workflow, l.max_iterations
        ));
    }
    let mut est = Estimate {
        workflow: d.name.clone(),
        prompt_tokens: calls.iter().map(|c| c.prompt_tokens).sum(),
        max_completion_tokens: calls.iter().map(|c| c.max_completion_tokens).sum(),
        cost_min: Money::ZERO,
        cost_max: Money::ZERO,
        unpriced_models: BTreeSet::new(),
        not_estimated,
        prices_as_of: prices.as_of.clone(),
        calls,
    };
    for c in &est.calls {
        match (&c.cost_min, &c.cost_max) {
            (Cost::Priced(a), Cost::Priced(b)) => {
                est.cost_min += *a;
                est.cost_max += *b;
            }
            _ => {
                est.unpriced_models.insert(c.model.clone());
            }
        }
    }
    Ok(est)
}

fn step_calls(
    wf: &LoadedWorkflow,
    s: &Step,
    model: Option<&str>,
    known: &BTreeMap<String, u64>,
    outputs: &BTreeMap<String, u64>,
    prices: &PriceTable,
    calls: &mut Vec<CallEstimate>,
) -> Result<(), CliError> {
    let d = &wf.definition;
    let call = |kind, c: &EffectiveConfig, prompt: u64, completion: u64| {
        let m = model_of(c, model);
        CallEstimate {
            step: s.name.clone(),
            kind,
            provider: provider_of(c),
            cost_min: prices.cost_of(&m, prompt, 0, 0),
            cost_max: prices.cost_of(&m, prompt, 0, completion),
            model: m,
            prompt_tokens: prompt,
            max_completion_tokens: completion,
        }
    };
    if let Some(run) = &s.run {
        let c = EffectiveConfig::of_step(&d.execution, s);
        let prompt = template_tokens(run, known, outputs)? + CHAT_OVERHEAD;
        let max = u64::from(c.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS));
        calls.push(call("run", &c, prompt, max));
    }
    if let Some(cons) = &s.consensus {
        let prompt = template_tokens(&cons.prompt, known, outputs)? + CHAT_OVERHEAD;
        for x in &cons.executions {
            let c = EffectiveConfig::of_consensus(&d.execution, s, x);
            let max = u64::from(c.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS));
            calls.push(call("consensus", &c, prompt, max));
        }
    }
    if let Some(e) = &s.embeddings {
        let mut c = EffectiveConfig::of_step(&d.execution, s);
        if let Some(p) = &e.provider {
            c.provider = Some(p.clone());
        }
        if let Some(m) = &e.model {
            c.model = Some(m.clone());
        }
        let mut n = 0;
        for t in e.input.iter().flat_map(yaml::TextOrList::texts) {
            n += template_tokens(&t, known, outputs)?;
        }
        if let Some(f) = &e.input_file {
            let p = wf.base_dir().join(f);
            let p = if p.is_file() {
                p
            } else {
                Path::new(f).to_path_buf()
            };
            let text = std::fs::read_to_string(&p).map_err(|err| {
                CliError::usage(format!(
                    "step `{}`: cannot read its input_file {}: {err}",
                    s.name,
                    p.display()
                ))
            })?;
            n += tokens(&text)?;
        }
        calls.push(call("embeddings", &c, n, 0));
    }
    Ok(())
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
        "{:<w$}  {:<10}  {:<m$}  {:>8}  {:>10}  {:>12}  {:>12}",
        "step", "kind", "model", "prompt", "completion", "cost min", "cost max"
    );
    for c in &e.calls {
        let _ = writeln!(
            out,
            "{:<w$}  {:<10}  {:<m$}  {:>8}  {:>10}  {:>12}  {:>12}",
            c.step,
            c.kind,
            c.model,
            c.prompt_tokens,
            format!("<= {}", c.max_completion_tokens),
            cost_text(&c.cost_min),
            cost_text(&c.cost_max)
        );
    }
    let _ = writeln!(
        out,
        "total: {} call{}, {} prompt tokens, at most {} completion tokens; cost {} to {} \
         (prices as of {})",
        e.calls.len(),
        if e.calls.len() == 1 { "" } else { "s" },
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
    let wf = crate::validate::load(&args.file)?;
    let vars = parse_vars(&args.input.vars)?;
    let input = read_input(&args.input)?;
    let prices = match &args.prices {
        Some(p) => PriceTable::from_file(p).map_err(|e| {
            CliError::usage(format!("cannot use the price table {}: {e}", p.display()))
        })?,
        None => PriceTable::openai_default(),
    };
    let e = estimate(&wf, &input, &vars, args.model.as_deref(), &prices)?;
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
    use super::*;

    const WF: &str = r#"
$schema: workflow/v2.0
name: est
version: 1.0.0
description: estimate test
execution: { provider: openai, model: gpt-4o-mini, max_tokens: 100 }
env: { STYLE: "terse" }
steps:
  - name: draft
    run: "Summarize in a {{ env.STYLE }} style: {{ input }}"
  - name: refine
    model: gpt-4o
    max_tokens: 50
    run: "Tighten this: {{ draft | trim }}"
  - name: vote
    consensus:
      prompt: "Is it good? {{ steps.refine.output }}"
      executions:
        - { provider: openai, model: gpt-4o-mini }
        - { provider: local, model: my-model, max_tokens: 5 }
      require: majority
"#;

    #[test]
    fn counts_prompts_outputs_and_consensus_executions() {
        let wf = yaml::load_str(WF).unwrap();
        let prices = PriceTable::openai_default();
        let e = estimate(&wf, "hello world", &Map::new(), None, &prices).unwrap();
        assert_eq!(e.calls.len(), 4);
        let draft = &e.calls[0];
        let literal = tokens("Summarize in a  style: ").unwrap();
        let expected = literal + tokens("terse").unwrap() + tokens("hello world").unwrap() + 7;
        assert_eq!(draft.prompt_tokens, expected);
        assert_eq!(draft.max_completion_tokens, 100);
        // refine inserts draft's output, counted at draft's limit (100).
        let refine = &e.calls[1];
        assert_eq!(refine.model, "gpt-4o");
        assert_eq!(
            refine.prompt_tokens,
            tokens("Tighten this: ").unwrap() + 100 + 7
        );
        // vote inserts refine's output (its limit, 50), once per execution.
        assert_eq!(e.calls[2].prompt_tokens, e.calls[3].prompt_tokens);
        assert_eq!(e.calls[3].max_completion_tokens, 5);
        assert_eq!(e.unpriced_models, BTreeSet::from(["my-model".to_owned()]));
        assert!(e.cost_min < e.cost_max);
        // The priced calls at their limits, by hand.
        let mut max = Money::ZERO;
        for c in &e.calls[..3] {
            let Cost::Priced(m) =
                prices.cost_of(&c.model, c.prompt_tokens, 0, c.max_completion_tokens)
            else {
                panic!("priced")
            };
            max += m;
        }
        assert_eq!(e.cost_max, max);
        let table = render(&e);
        assert!(table.contains("not priced"), "{table}");
    }

    #[test]
    fn model_override_prices_every_call_as_that_model() {
        let wf = yaml::load_str(WF).unwrap();
        let e = estimate(
            &wf,
            "x",
            &Map::new(),
            Some("gpt-4o"),
            &PriceTable::openai_default(),
        )
        .unwrap();
        assert!(e.calls.iter().all(|c| c.model == "gpt-4o"));
        assert!(e.unpriced_models.is_empty());
    }
}
