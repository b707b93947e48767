//! Tokens and cost of a run before running it, from the `cl100k_base` tokenizer and a
//! [`PriceTable`] (what `flowloom estimate` prints).
//!
//! The rule, per model call the file makes:
//! - prompt tokens: the prompt template's text counted with the tokenizer, where `{{ input }}`,
//!   `{{ env.X }}` and the variables given (`--var` on the command line) are counted as they are, and an earlier step's output
//!   (`{{ draft }}`, `{{ steps.draft.output }}`) as that step's completion limit (an upper
//!   bound); other expressions count as nothing. Plus 7 tokens of chat framing per call.
//! - completion tokens: at most the call's effective `max_tokens` (the model default, 1024,
//!   when unset).
//! - a `run` step is one call; a `consensus` step one per execution; an `embeddings` step
//!   counts its input texts and has no completion. Conditions are assumed true.
//! - a `template` step counts the called workflow's calls, with its `with` values counted
//!   like prompt text (and the caller's input where `with` gives no `input`); its output is
//!   the called workflow's last step's.
//! - a step `loop` over inline items or a `file://` JSON array counts its calls once per item
//!   (at most `max_iterations`), `{{ item }}` (and `{{ item.key }}`) counted as the longest
//!   item; a loop over items a template computes at run time is listed as not estimated.
//! - a top-level `loops:` entry counts one iteration at the least and `max_iterations` at the
//!   most, each iteration being the called workflow plus the judge's call (16 tokens at most).
//!
//! The cost is given as a range: the prompt alone (no answer at all), each call made as few
//! times as it can be, up to every answer using its whole `max_tokens`, each call made as many
//! times as it can be.
//!
//! ```
//! use flowloom_engine::yaml::{self, estimate};
//! use flowloom_observability::cost::PriceTable;
//!
//! let wf = yaml::load_str(
//!     "$schema: workflow/v2.0\nname: hi\nversion: 1.0.0\ndescription: d\n\
//!      execution: { provider: openai, model: gpt-4o-mini, max_tokens: 100 }\n\
//!      steps:\n  - name: greet\n    run: \"Say hello to {{ input }}\"\n",
//! )
//! .unwrap();
//! let e = estimate::estimate(&wf, "Ada", &Default::default(), None, &PriceTable::openai_default())
//!     .unwrap();
//! assert_eq!(e.calls.len(), 1);
//! assert_eq!(e.max_completion_tokens, 100);
//! assert!(e.cost_min < e.cost_max);
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use flowloom_core::DEFAULT_MAX_TOKENS;
use flowloom_observability::cost::{Cost, Money, PriceTable};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{
    EffectiveConfig, Items, JUDGE_PROMPT, LoadedWorkflow, LoopDef, Step, StepLoop, TextOrList,
    WorkflowSet, count_tokens,
};

/// Why a workflow could not be estimated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EstimateError {
    /// The tokenizer could not be loaded.
    #[error("cannot count tokens: {0}")]
    Tokenizer(String),
    /// A file the workflow names (an `input_file`, `file://` loop items) could not be read.
    #[error("{what}: cannot read {}: {source}; check the path (it is relative to the workflow file)", path.display())]
    Read {
        /// What named the file.
        what: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `file://` loop items are not a JSON array.
    #[error("loop items {0} are not a JSON array; write the items as [ ... ]")]
    NotAnArray(String),
    /// The set's root workflow is missing from it.
    #[error("workflow `{0}` is not in its set")]
    MissingRoot(String),
}

/// Tokens of chat framing per call (per-message and reply-priming tokens of the chat format).
const CHAT_OVERHEAD: u64 = 7;

/// The judge's completion limit (as the loop runner asks for).
const JUDGE_MAX_TOKENS: u64 = 16;

/// How deep template calls are followed (the loader rejects cycles; this bounds the rest).
const MAX_DEPTH: usize = 16;

/// One model call the workflow would make.
#[derive(Debug, Clone, Serialize)]
pub struct CallEstimate {
    /// The step, with the steps that called its workflow before it (`digest > summarize.short`).
    pub step: String,
    /// `run`, `consensus`, `embeddings` or `judge`.
    pub kind: &'static str,
    /// The provider, where one is named.
    pub provider: Option<String>,
    /// The model priced.
    pub model: String,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// The most completion tokens.
    pub max_completion_tokens: u64,
    /// How many times the call is made at the least (1, or a loop's item count).
    pub times_min: u64,
    /// How many times the call is made at the most (a loop's `max_iterations`).
    pub times_max: u64,
    /// Cost with no completion at all, made `times_min` times (`null` when the model is not
    /// priced).
    #[serde(serialize_with = "cost_json")]
    pub cost_min: Cost,
    /// Cost with every completion at its limit, made `times_max` times (`null` when the model
    /// is not priced).
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
    /// Sum of prompt tokens, each call made `times_max` times.
    pub prompt_tokens: u64,
    /// Sum of completion limits, each call made `times_max` times.
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

fn tokens(text: &str) -> Result<u64, EstimateError> {
    count_tokens(text)
        .map(|n| n as u64)
        .map_err(EstimateError::Tokenizer)
}

/// Counts a prompt template: literal text plus the values its `{{ }}` expressions insert.
fn template_tokens(
    template: &str,
    known: &BTreeMap<String, u64>,
    outputs: &BTreeMap<String, u64>,
) -> Result<u64, EstimateError> {
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

/// Estimates a workflow's run with `input` and `vars`, on its own: the workflows it calls are
/// not known, so its template calls and loops calling workflows are listed in
/// [`Estimate::not_estimated`] (see [`estimate_set`]).
pub fn estimate(
    wf: &LoadedWorkflow,
    input: &str,
    vars: &Map<String, Value>,
    model: Option<&str>,
    prices: &PriceTable,
) -> Result<Estimate, EstimateError> {
    estimate_with(wf, &|_, _| None, input, vars, model, prices)
}

/// Estimates the run of `set`'s root workflow with `input` and `vars`, following its template
/// calls and loops into the workflows they call.
pub fn estimate_set(
    set: &WorkflowSet,
    input: &str,
    vars: &Map<String, Value>,
    model: Option<&str>,
    prices: &PriceTable,
) -> Result<Estimate, EstimateError> {
    let root = set
        .definition(set.root_name())
        .ok_or_else(|| EstimateError::MissingRoot(set.root_name().to_owned()))?;
    let lookup = |name: &str, site: Option<(&str, &Step)>| match site {
        Some((caller, step)) => set.called_by(caller, step),
        None => set.definition(name).cloned(),
    };
    estimate_with(root, &lookup, input, vars, model, prices)
}

fn estimate_with<'a>(
    wf: &LoadedWorkflow,
    lookup: &'a Lookup<'a>,
    input: &str,
    vars: &Map<String, Value>,
    model: Option<&'a str>,
    prices: &'a PriceTable,
) -> Result<Estimate, EstimateError> {
    let mut known = BTreeMap::new();
    known.insert("input".to_owned(), tokens(input)?);
    for (k, v) in vars {
        known.insert(k.clone(), value_tokens(v)?);
    }
    let mut est = Estimator {
        lookup,
        model,
        prices,
        calls: Vec::new(),
        not_estimated: Vec::new(),
    };
    est.workflow(wf, known, "", (1, 1), 0)?;
    let Estimator {
        calls,
        not_estimated,
        ..
    } = est;
    let mut e = Estimate {
        workflow: wf.definition.name.clone(),
        prompt_tokens: calls.iter().map(|c| c.prompt_tokens * c.times_max).sum(),
        max_completion_tokens: calls
            .iter()
            .map(|c| c.max_completion_tokens * c.times_max)
            .sum(),
        cost_min: Money::ZERO,
        cost_max: Money::ZERO,
        unpriced_models: BTreeSet::new(),
        not_estimated,
        prices_as_of: prices.as_of.clone(),
        calls,
    };
    for c in &e.calls {
        match (&c.cost_min, &c.cost_max) {
            (Cost::Priced(a), Cost::Priced(b)) => {
                e.cost_min += *a;
                e.cost_max += *b;
            }
            _ => {
                e.unpriced_models.insert(c.model.clone());
            }
        }
    }
    Ok(e)
}

/// A value counted as text: a string as it is, anything else as its JSON.
fn value_tokens(v: &Value) -> Result<u64, EstimateError> {
    match v {
        Value::String(s) => tokens(s),
        other => tokens(&other.to_string()),
    }
}

/// Times a call is made: (at the least, at the most).
type Times = (u64, u64);

/// What a template can insert: token counts of known values, and of earlier steps' outputs.
type Scope<'s> = (&'s BTreeMap<String, u64>, &'s BTreeMap<String, u64>);

/// Where calls are counted: their step label, how many times, how deep in template calls.
#[derive(Clone, Copy)]
struct Site<'l> {
    label: &'l str,
    times: Times,
    depth: usize,
}

fn times_mul(a: Times, b: Times) -> Times {
    (a.0.saturating_mul(b.0), a.1.saturating_mul(b.1))
}

/// Finds a called workflow by name; for a `template` step, given the caller's name and the
/// step, with the step's overrides applied.
type Lookup<'a> = dyn Fn(&str, Option<(&str, &Step)>) -> Option<LoadedWorkflow> + 'a;

/// Walks a workflow and the workflows it calls, collecting calls.
struct Estimator<'a> {
    lookup: &'a Lookup<'a>,
    model: Option<&'a str>,
    prices: &'a PriceTable,
    calls: Vec<CallEstimate>,
    not_estimated: Vec<String>,
}

impl Estimator<'_> {
    /// Collects `wf`'s calls, each made `times` times, under the step label prefix `path`;
    /// returns the token bound of the workflow's output (its last step's or loop's).
    fn workflow(
        &mut self,
        wf: &LoadedWorkflow,
        mut known: BTreeMap<String, u64>,
        path: &str,
        times: Times,
        depth: usize,
    ) -> Result<u64, EstimateError> {
        let d = &wf.definition;
        for (k, v) in &d.env {
            known.insert(format!("env.{k}"), tokens(&v.as_text())?);
        }
        let mut outputs: BTreeMap<String, u64> = BTreeMap::new();
        let mut last = 0;
        for s in &d.steps {
            let label = format!("{path}{}", s.name);
            let produced = match (&s.loop_, &s.template) {
                (Some(l), _) => {
                    let at = Site {
                        label: &label,
                        times,
                        depth,
                    };
                    self.step_loop(wf, s, l, (&known, &outputs), at)?
                }
                (None, Some(t)) => {
                    let site = Some((d.name.as_str(), s));
                    let at = Site {
                        label: &label,
                        times,
                        depth,
                    };
                    self.call(&t.name, site, &t.with_, (&known, &outputs), at)?
                }
                (None, None) => self.step_calls(wf, s, (&known, &outputs), &label, times)?,
            };
            outputs.insert(s.name.clone(), produced);
            last = produced;
        }
        for l in &d.loops {
            let label = format!("{path}{}", l.name);
            let at = Site {
                label: &label,
                times,
                depth,
            };
            last = self.top_loop(wf, l, (&known, &outputs), at)?;
            outputs.insert(l.name.clone(), last);
        }
        Ok(last)
    }

    /// A call of the workflow `name` with `with`: its calls, and its output's bound.
    fn call(
        &mut self,
        name: &str,
        site: Option<(&str, &Step)>,
        with: &Map<String, Value>,
        (known, outputs): Scope<'_>,
        at: Site<'_>,
    ) -> Result<u64, EstimateError> {
        let Some(called) = (self.lookup)(name, site).filter(|_| at.depth < MAX_DEPTH) else {
            self.not_estimated.push(format!(
                "{}: calls workflow `{name}`, which was not loaded",
                at.label
            ));
            return Ok(0);
        };
        let mut inner = BTreeMap::new();
        inner.insert(
            "input".to_owned(),
            known.get("input").copied().unwrap_or_default(),
        );
        for (k, v) in with {
            let n = match v {
                Value::String(s) => template_tokens(s, known, outputs)?,
                other => value_tokens(other)?,
            };
            inner.insert(k.clone(), n);
        }
        let path = format!("{} > {name}.", at.label);
        self.workflow(&called, inner, &path, at.times, at.depth + 1)
    }

    /// A step with a `loop`: its body (own calls or a called workflow) once per item.
    fn step_loop(
        &mut self,
        wf: &LoadedWorkflow,
        s: &Step,
        l: &StepLoop,
        (known, outputs): Scope<'_>,
        at: Site<'_>,
    ) -> Result<u64, EstimateError> {
        let label = at.label;
        let Some(items) = loop_items(wf, l)? else {
            self.not_estimated.push(format!(
                "{label}: a loop over items only known when it runs{}",
                l.workflow
                    .as_deref()
                    .map(|w| format!(" calling `{w}`"))
                    .unwrap_or_default()
            ));
            return Ok(0);
        };
        let cap = l.max_iterations.map_or(u64::MAX, u64::from);
        let n = (items.len() as u64).min(cap);
        let mut k = known.clone();
        // `{{ item }}` and `{{ item.key }}` as the longest item's; the loop's counters.
        for item in &items {
            let n = value_tokens(item)?;
            let e = k.entry("item".to_owned()).or_insert(0);
            *e = (*e).max(n);
            if let Value::Object(m) = item {
                for (key, v) in m {
                    let n = value_tokens(v)?;
                    let e = k.entry(format!("item.{key}")).or_insert(0);
                    *e = (*e).max(n);
                }
            }
        }
        let count = tokens(&n.to_string())?;
        for c in ["loop.index", "loop.iteration", "loop.total"] {
            k.insert(c.to_owned(), count);
        }
        let each = Site {
            times: times_mul(at.times, (n, n)),
            ..at
        };
        let per_item = match &l.workflow {
            Some(w) => self.call(w, None, &l.with_, (&k, outputs), each)?,
            None => self.step_calls(wf, s, (&k, outputs), label, each.times)?,
        };
        Ok(per_item.saturating_mul(n))
    }

    /// A top-level loop: the called workflow and the judge, once to `max_iterations` times.
    fn top_loop(
        &mut self,
        wf: &LoadedWorkflow,
        l: &LoopDef,
        (known, outputs): Scope<'_>,
        at: Site<'_>,
    ) -> Result<u64, EstimateError> {
        let each = Site {
            times: times_mul(at.times, (1, u64::from(l.max_iterations))),
            ..at
        };
        // The previous iteration's output is bounded by what one iteration can produce,
        // which does not depend on its inputs: learn it from a first pass, then count.
        let bound = {
            let mut probe = Estimator {
                lookup: self.lookup,
                model: self.model,
                prices: self.prices,
                calls: Vec::new(),
                not_estimated: Vec::new(),
            };
            probe.call(&l.workflow, None, &l.with_, (known, outputs), each)?
        };
        let mut k = known.clone();
        k.insert("loop.last.output".to_owned(), bound);
        k.insert(
            "loop.history".to_owned(),
            bound.saturating_mul(u64::from(l.max_iterations)),
        );
        k.insert(
            "loop.iteration".to_owned(),
            tokens(&l.max_iterations.to_string())?,
        );
        let out = self.call(&l.workflow, None, &l.with_, (&k, outputs), each)?;
        let c = EffectiveConfig::of_execution(&wf.definition.execution);
        let judge = l.judge.as_ref();
        let m = judge
            .and_then(|j| j.model.clone())
            .or_else(|| self.model.map(str::to_owned))
            .unwrap_or_else(|| model_of(&c, None));
        let prompt = JUDGE_PROMPT
            .replace("{until}", &l.until)
            .replace("{iteration}", &l.max_iterations.to_string())
            .replace("{output}", "");
        let prompt = tokens(&prompt)? + out + CHAT_OVERHEAD;
        let provider = judge
            .and_then(|j| j.provider.clone())
            .or_else(|| provider_of(&c));
        self.calls.push(self.priced(
            format!("{} (judge)", at.label),
            "judge",
            provider,
            m,
            prompt,
            JUDGE_MAX_TOKENS,
            each.times,
        ));
        Ok(out)
    }

    /// A call with its cost range.
    #[allow(clippy::too_many_arguments)]
    fn priced(
        &self,
        step: String,
        kind: &'static str,
        provider: Option<String>,
        model: String,
        prompt: u64,
        completion: u64,
        (min, max): Times,
    ) -> CallEstimate {
        let p = self.prices;
        CallEstimate {
            step,
            kind,
            provider,
            cost_min: p.cost_of(&model, prompt.saturating_mul(min), 0, 0),
            cost_max: p.cost_of(
                &model,
                prompt.saturating_mul(max),
                0,
                completion.saturating_mul(max),
            ),
            model,
            prompt_tokens: prompt,
            max_completion_tokens: completion,
            times_min: min,
            times_max: max,
        }
    }

    /// A plain step's calls (`run`, `consensus`, `embeddings`); returns its output's bound
    /// (the largest completion limit among them).
    fn step_calls(
        &mut self,
        wf: &LoadedWorkflow,
        s: &Step,
        (known, outputs): Scope<'_>,
        label: &str,
        times: Times,
    ) -> Result<u64, EstimateError> {
        let d = &wf.definition;
        let before = self.calls.len();
        let call = |this: &mut Self, kind, c: &EffectiveConfig, prompt: u64, completion| {
            let m = model_of(c, this.model);
            let e = this.priced(
                label.to_owned(),
                kind,
                provider_of(c),
                m,
                prompt,
                completion,
                times,
            );
            this.calls.push(e);
        };
        if let Some(run) = &s.run {
            let c = EffectiveConfig::of_step(&d.execution, s);
            let prompt = template_tokens(run, known, outputs)? + CHAT_OVERHEAD;
            let max = u64::from(c.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS));
            call(self, "run", &c, prompt, max);
        }
        if let Some(cons) = &s.consensus {
            let prompt = template_tokens(&cons.prompt, known, outputs)? + CHAT_OVERHEAD;
            for x in &cons.executions {
                let c = EffectiveConfig::of_consensus(&d.execution, s, x);
                let max = u64::from(c.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS));
                call(self, "consensus", &c, prompt, max);
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
            for t in e.input.iter().flat_map(TextOrList::texts) {
                n += template_tokens(&t, known, outputs)?;
            }
            if let Some(f) = &e.input_file {
                let what = format!("step `{}`, its input_file", s.name);
                let text = read_beside(wf, f, what)?;
                n += tokens(&text)?;
            }
            call(self, "embeddings", &c, n, 0);
        }
        Ok(self.calls[before..]
            .iter()
            .map(|c| c.max_completion_tokens)
            .max()
            .unwrap_or(0))
    }
}

/// A file named by a workflow (by `what`), relative to the workflow file's directory, as the
/// run reads it.
fn read_beside(wf: &LoadedWorkflow, f: &str, what: String) -> Result<String, EstimateError> {
    let path = wf.base_dir().join(f);
    std::fs::read_to_string(&path).map_err(|source| EstimateError::Read { what, path, source })
}

/// A step loop's items where they are known before the run (inline, or a `file://` JSON
/// array); `None` when a template computes them.
fn loop_items(wf: &LoadedWorkflow, l: &StepLoop) -> Result<Option<Vec<Value>>, EstimateError> {
    match &l.items {
        Items::List(v) => Ok(Some(v.clone())),
        Items::Source(src) => {
            let Some(f) = src.strip_prefix("file://") else {
                return Ok(None);
            };
            let text = read_beside(wf, f, format!("loop items {src}"))?;
            match serde_json::from_str::<Value>(&text) {
                Ok(Value::Array(v)) => Ok(Some(v)),
                _ => Err(EstimateError::NotAnArray(src.clone())),
            }
        }
    }
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
        let wf = crate::yaml::load_str(WF).unwrap();
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
    }

    #[test]
    fn model_override_prices_every_call_as_that_model() {
        let wf = crate::yaml::load_str(WF).unwrap();
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

    fn fixture_set(name: &str) -> WorkflowSet {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/workflows")
            .join(name);
        WorkflowSet::load(p).unwrap()
    }

    fn set_of(files: &[(&str, &str)]) -> (tempfile::TempDir, WorkflowSet) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let set = WorkflowSet::load(dir.path().join(files[0].0)).unwrap();
        (dir, set)
    }

    #[test]
    fn template_calls_count_the_called_workflow_with_its_with_values() {
        let prices = PriceTable::openai_default();
        let set = fixture_set("composed.yaml");
        let e = estimate_set(&set, "rivers", &Map::new(), None, &prices).unwrap();
        assert!(e.not_estimated.is_empty(), "{:?}", e.not_estimated);
        assert_eq!(e.calls.len(), 2);
        let digest = &e.calls[1];
        assert_eq!(digest.step, "digest > summarize_text.summary");
        assert_eq!(digest.model, "gpt-4o-mini");
        // "Summarize ({{ style }}): {{ text }}": style is "one line", text is draft's output,
        // counted at draft's limit (1024, the default).
        let want = tokens("Summarize (): ").unwrap() + tokens("one line").unwrap() + 1024 + 7;
        assert_eq!(digest.prompt_tokens, want);
        assert_eq!((digest.times_min, digest.times_max), (1, 1));
        // Alone, the same file cannot follow the call, and says so.
        let alone = estimate(
            set.definition("composed").unwrap(),
            "rivers",
            &Map::new(),
            None,
            &prices,
        )
        .unwrap();
        assert_eq!(alone.calls.len(), 1);
        assert!(
            alone.not_estimated[0].contains("summarize_text"),
            "{alone:?}"
        );
    }

    #[test]
    fn a_template_steps_own_settings_pass_through_to_the_called_workflow() {
        let (_dir, set) = set_of(&[
            (
                "caller.yaml",
                "$schema: workflow/v2.0\nname: caller\nversion: 1.0.0\ndescription: d\n\
                 execution: { provider: openai, model: gpt-4o-mini }\nsteps:\n\
                 \x20 - name: call\n    model: gpt-4o\n    max_tokens: 42\n\
                 \x20   template: { name: callee }\n",
            ),
            (
                "callee.yaml",
                "$schema: workflow/v2.0\nname: callee\nversion: 1.0.0\ndescription: d\n\
                 execution: { provider: openai, model: gpt-4o-mini }\nsteps:\n\
                 \x20 - name: answer\n    run: \"Answer {{ input }}\"\n",
            ),
        ]);
        let e = estimate_set(&set, "x", &Map::new(), None, &PriceTable::openai_default()).unwrap();
        assert_eq!(e.calls.len(), 1);
        assert_eq!(e.calls[0].model, "gpt-4o");
        assert_eq!(e.calls[0].max_completion_tokens, 42);
        // The caller's input reaches the called workflow.
        assert_eq!(
            e.calls[0].prompt_tokens,
            tokens("Answer ").unwrap() + tokens("x").unwrap() + 7
        );
    }

    #[test]
    fn step_loops_count_once_per_item_and_stop_at_max_iterations() {
        let prices = PriceTable::openai_default();
        let set = fixture_set("iterate_topics.yaml");
        let e = estimate_set(&set, "x", &Map::new(), None, &prices).unwrap();
        assert!(e.not_estimated.is_empty(), "{:?}", e.not_estimated);
        let slogans = &e.calls[0];
        assert_eq!((slogans.times_min, slogans.times_max), (3, 3));
        // {{ item }} as the longest of rust, yaml, tokio.
        let item = ["rust", "yaml", "tokio"]
            .iter()
            .map(|t| tokens(t).unwrap())
            .max()
            .unwrap();
        assert!(slogans.prompt_tokens >= item + 7);
        let summaries = &e.calls[1];
        assert_eq!(summaries.step, "summaries > summarize_text.summary");
        // Two items in data/topics.json.
        assert_eq!((summaries.times_min, summaries.times_max), (2, 2));
        assert_eq!(
            e.prompt_tokens,
            slogans.prompt_tokens * 3 + summaries.prompt_tokens * 2
        );
        let Cost::Priced(max) = prices.cost_of(
            "gpt-4o-mini",
            slogans.prompt_tokens * 3,
            0,
            slogans.max_completion_tokens * 3,
        ) else {
            panic!("priced")
        };
        assert_eq!(slogans.cost_max, Cost::Priced(max));

        let (_dir, capped) = set_of(&[(
            "capped.yaml",
            "$schema: workflow/v2.0\nname: capped\nversion: 1.0.0\ndescription: d\n\
             execution: { provider: openai, model: gpt-4o-mini }\nsteps:\n\
             \x20 - name: each\n    run: \"{{ item }}\"\n\
             \x20   loop: { mode: iterate, items: [a, b, c, d, e], max_iterations: 2 }\n\
             \x20 - name: later\n    run: \"{{ each }}\"\n\
             \x20   loop: { mode: iterate, items: \"{{ each }}\" }\n",
        )]);
        let e = estimate_set(&capped, "x", &Map::new(), None, &prices).unwrap();
        assert_eq!(e.calls.len(), 1);
        assert_eq!((e.calls[0].times_min, e.calls[0].times_max), (2, 2));
        // Items a template computes at run time are not guessed.
        assert_eq!(e.not_estimated.len(), 1, "{:?}", e.not_estimated);
        assert!(
            e.not_estimated[0].starts_with("later:"),
            "{:?}",
            e.not_estimated
        );
    }

    #[test]
    fn top_level_loops_range_from_one_iteration_to_max_iterations_with_the_judge() {
        let prices = PriceTable::openai_default();
        let set = fixture_set("refine_loop.yaml");
        let e = estimate_set(&set, "x", &Map::new(), None, &prices).unwrap();
        assert!(e.not_estimated.is_empty(), "{:?}", e.not_estimated);
        assert_eq!(e.calls.len(), 3);
        let round = &e.calls[1];
        assert_eq!(round.step, "refine > improve_draft.improved");
        assert_eq!((round.times_min, round.times_max), (1, 5));
        // draft and previous are each at most one answer (1024 tokens).
        assert!(round.prompt_tokens > 2 * 1024, "{round:?}");
        let judge = &e.calls[2];
        assert_eq!(judge.kind, "judge");
        assert_eq!(judge.model, "judge-model");
        assert_eq!(judge.provider.as_deref(), Some("judge"));
        assert_eq!(judge.max_completion_tokens, 16);
        assert_eq!((judge.times_min, judge.times_max), (1, 5));
        assert!(e.unpriced_models.contains("judge-model"));
        // Least: first_draft once and one round, prompts only; most: five rounds, full answers.
        let priced = |m: &str, p: u64, c: u64| match prices.cost_of(m, p, 0, c) {
            Cost::Priced(x) => x,
            _ => panic!("priced"),
        };
        let first = &e.calls[0];
        assert_eq!(
            e.cost_min,
            priced("gpt-4o-mini", first.prompt_tokens, 0)
                + priced("gpt-4o-mini", round.prompt_tokens, 0)
        );
        assert_eq!(
            e.cost_max,
            priced("gpt-4o-mini", first.prompt_tokens, 1024)
                + priced("gpt-4o-mini", round.prompt_tokens * 5, 1024 * 5)
        );
    }
}
