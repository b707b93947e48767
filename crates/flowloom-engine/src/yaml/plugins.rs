//! The YAML step modes that are not plain model steps, as [`StepPlugin`]s working through the
//! engine's [`StepRuntime`]: failover `run`, `consensus`, `embeddings`, step-level `loop`
//! (iterate) and top-level `loops`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flowloom_core::{BoxError, EmbeddingRequest, EncodingFormat, LlmRequest, LlmResponse};
use flowloom_middleware::failover::{Failover, FailoverEntry};
use futures_util::StreamExt;
use minijinja::{Environment, UndefinedBehavior, Value as MjValue};
use serde_json::{Map, Value, json};
use tower::ServiceExt;

use super::chunk::{Chunk, chunk_text, format_output};
use super::effective::EffectiveConfig;
use super::model::{
    EmbeddingEncoding, EmbeddingsConfig, Items, OnFailure, OutputFormat, Threshold,
};
use super::vote::{Vote, normalize_answer, tally};
use crate::plugin::{BoxFuture, StepPlugin, StepRuntime};
use crate::template::to_mj;
use crate::workflow::WorkflowRef;

/// The default consensus timeout (all executions together).
pub const DEFAULT_CONSENSUS_TIMEOUT: Duration = Duration::from_secs(60);
/// The default embeddings model when neither the step nor `embeddings` names one.
pub const DEFAULT_EMBEDDING_MODEL: &str = "text-embedding-3-small";

fn err(msg: impl Into<String>) -> BoxError {
    msg.into().into()
}

async fn read_file(path: PathBuf) -> std::io::Result<String> {
    tokio::task::spawn_blocking(move || std::fs::read_to_string(path))
        .await
        .map_err(std::io::Error::other)?
}

async fn write_file(path: PathBuf, text: String) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || std::fs::write(path, text))
        .await
        .map_err(std::io::Error::other)?
}

/// A request for `prompt` with `cfg`'s model, temperature and max_tokens; what `cfg` leaves
/// unset comes from the engine's configuration (`default_model`, `default_temperature`,
/// `default_max_tokens`), as for a plain `run` step.
fn request_for(rt: &StepRuntime, cfg: &EffectiveConfig, prompt: String) -> LlmRequest {
    let defaults = rt.engine().config();
    LlmRequest::new(
        cfg.model
            .clone()
            .unwrap_or_else(|| defaults.default_model.clone()),
        prompt,
    )
    .with_temperature(cfg.temperature.unwrap_or(defaults.default_temperature))
    .with_max_tokens(cfg.max_tokens.unwrap_or(defaults.default_max_tokens))
}

// ---------------------------------------------------------------------------------------------
// Lenient rendering with extra variables (loop `with` values, iterate items).

/// The variables a step's own templates see, plus `extra`: `input`, every earlier step's
/// output by name and as `steps.<name>.output`, the workflow variables, and `env` (the file's
/// `env`, then the process environment, as everywhere else).
pub(crate) fn context_of(rt: &StepRuntime, extra: Map<String, Value>) -> MjValue {
    let ctx = rt.ctx();
    let mut m: BTreeMap<String, MjValue> = BTreeMap::new();
    for (k, v) in &ctx.variables {
        m.insert(k.clone(), to_mj(v));
    }
    for (k, v) in &ctx.previous_outputs {
        m.insert(k.clone(), to_mj(v));
    }
    m.insert("steps".into(), to_mj(&outputs_as_steps(rt)));
    m.insert(
        "env".into(),
        MjValue::from_dyn_object(Arc::clone(&rt.run.workflow.0.env_vars)),
    );
    m.insert("input".into(), to_mj(&ctx.input_data));
    for (k, v) in &extra {
        m.insert(k.clone(), to_mj(v));
    }
    MjValue::from_iter(m)
}

/// Every earlier step's output as `{"<name>": {"output": ..}}` (the value of `steps`).
fn outputs_as_steps(rt: &StepRuntime) -> Value {
    Value::Object(
        rt.ctx()
            .previous_outputs
            .iter()
            .map(|(k, v)| (k.clone(), json!({ "output": v })))
            .collect(),
    )
}

/// Renders every string of `value` in `ctx`; a string that is one `{{ expression }}` keeps
/// the expression's type. Missing attributes render as empty (the first loop iteration has
/// no `loop.last`), so `{{ loop.last.output.error }}` works from the start.
pub(crate) fn render_lenient(value: &Value, ctx: &MjValue) -> Result<Value, String> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_keep_trailing_newline(true);
    render_in(&env, value, ctx)
}

fn render_in(env: &Environment<'_>, value: &Value, ctx: &MjValue) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) => {
            let t = s.trim();
            let single = t.starts_with("{{")
                && t.ends_with("}}")
                && t.len() >= 4
                && !t[2..t.len() - 2].contains("{{")
                && !t[2..t.len() - 2].contains("}}")
                && !t.contains("{%");
            if single {
                let expr = env
                    .compile_expression(t[2..t.len() - 2].trim())
                    .map_err(|e| format!("in {s:?}: {e}"))?;
                let v = expr.eval(ctx).map_err(|e| format!("in {s:?}: {e}"))?;
                if v.is_undefined() {
                    Value::String(String::new())
                } else {
                    serde_json::to_value(&v).map_err(|e| format!("in {s:?}: {e}"))?
                }
            } else if s.contains("{{") || s.contains("{%") {
                Value::String(
                    env.render_str(s, ctx)
                        .map_err(|e| format!("in {s:?}: {e}"))?,
                )
            } else {
                value.clone()
            }
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| render_in(env, x, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => {
            let mut out = Map::new();
            for (k, v) in o {
                out.insert(k.clone(), render_in(env, v, ctx)?);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

/// A workflow output as loop data: text that holds a JSON object or array becomes that value.
fn as_data(v: Option<&Value>) -> Value {
    match v {
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s.trim()) {
            Ok(j @ (Value::Object(_) | Value::Array(_))) => j,
            _ => Value::String(s.clone()),
        },
        Some(other) => other.clone(),
        None => Value::Null,
    }
}

// ---------------------------------------------------------------------------------------------
// `run` through a `providers:` failover chain.

/// A `run` step whose workflow uses a `providers:` failover chain: the prompt goes through
/// `flowloom-middleware`'s [`Failover`] over the engine's registered providers (each with its
/// own layers), in order.
pub struct FailoverRun {
    pub(crate) prompt: String,
    pub(crate) chain: Vec<super::model::ProviderFallback>,
    pub(crate) config: EffectiveConfig,
}

impl StepPlugin for FailoverRun {
    fn name(&self) -> &str {
        "failover"
    }

    fn templates(&self) -> Vec<String> {
        vec![self.prompt.clone()]
    }

    fn providers(&self) -> Vec<String> {
        self.chain.iter().map(|c| c.provider.clone()).collect()
    }

    fn execute<'a>(&'a self, rt: &'a StepRuntime) -> BoxFuture<'a, Result<Value, BoxError>> {
        Box::pin(async move {
            let prompt = rt.render(&self.prompt)?;
            let engine = rt.engine();
            let mut entries = Vec::new();
            for f in &self.chain {
                let (_, svc) = engine.provider(&f.provider).ok_or_else(|| {
                    err(format!(
                        "provider `{}` of the failover chain is not registered (registered: {})",
                        f.provider,
                        engine.provider_names().join(", ")
                    ))
                })?;
                let mut e = FailoverEntry::new(f.provider.as_str(), svc).model(f.model.clone());
                if let Some(t) = f.temperature {
                    e = e.temperature(t);
                }
                if let Some(m) = f.max_tokens {
                    e = e.max_tokens(m);
                }
                if let Some(t) = f.timeout {
                    e = e.timeout(t.0);
                }
                entries.push(e);
            }
            let chain = Failover::new(entries).map_err(|e| err(e.to_string()))?;
            let mut req = request_for(rt, &self.config, prompt);
            if let Some(first) = self.chain.first() {
                req.model = first.model.clone();
            }
            req.context = rt.call_context(None);
            let res: Result<LlmResponse, _> = chain.oneshot(req).await;
            match res {
                Ok(r) => {
                    rt.count_calls(1 + r.attempts.len() as u64);
                    rt.record_response(&r);
                    for a in &r.attempts {
                        tracing::warn!(provider = %a.provider, model = %a.model, error = ?a.error, "failover: provider failed, moved on");
                    }
                    Ok(Value::String(r.content))
                }
                Err(e) => {
                    rt.count_calls(self.chain.len() as u64);
                    Err(e.into())
                }
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// consensus

/// The `consensus` mode: one prompt to every execution at once, under one timeout; answers
/// normalized and tallied (see [`tally`](super::tally)).
pub struct Consensus {
    pub(crate) prompt: String,
    pub(crate) executions: Vec<EffectiveConfig>,
    pub(crate) require: Threshold,
    pub(crate) timeout: Duration,
}

impl StepPlugin for Consensus {
    fn name(&self) -> &str {
        "consensus"
    }

    fn templates(&self) -> Vec<String> {
        vec![self.prompt.clone()]
    }

    fn providers(&self) -> Vec<String> {
        self.executions
            .iter()
            .filter_map(|e| e.provider.clone())
            .collect()
    }

    fn execute<'a>(&'a self, rt: &'a StepRuntime) -> BoxFuture<'a, Result<Value, BoxError>> {
        Box::pin(async move {
            let prompt = rt.render(&self.prompt)?;
            let deadline = tokio::time::Instant::now() + self.timeout;
            let calls = self.executions.iter().map(|cfg| {
                let req = request_for(rt, cfg, prompt.clone());
                let limit = cfg
                    .timeout
                    .map(|t| (tokio::time::Instant::now() + t).min(deadline))
                    .unwrap_or(deadline);
                async move {
                    let started = tokio::time::Instant::now();
                    let res = tokio::time::timeout_at(limit, rt.call_llm(cfg.provider.as_deref(), req)).await;
                    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
                    let mut v = Vote {
                        provider: cfg.provider.clone().unwrap_or_default(),
                        model: cfg.model.clone().unwrap_or_default(),
                        answer: None,
                        normalized: None,
                        error: None,
                        usage: None,
                        answered_by: None,
                        latency_ms,
                    };
                    match res {
                        Ok(Ok(r)) => {
                            v.normalized = Some(normalize_answer(&r.content));
                            v.answer = Some(r.content);
                            v.usage = r.usage;
                            v.answered_by = Some(r.model);
                        }
                        Ok(Err(e)) => v.error = Some(e.to_string()),
                        Err(_) => {
                            v.error = Some(format!(
                                "timed out after {:?} (the consensus timeout is shared by all executions)",
                                limit.duration_since(started)
                            ))
                        }
                    }
                    v
                }
            });
            let votes = futures_util::future::join_all(calls).await;
            let verdict = tally(votes, self.require);
            if verdict.tie {
                tracing::info!(tied = ?verdict.tied, chosen = %verdict.normalized, "consensus tie broken by execution order");
            }
            match verdict.failure() {
                None => Ok(serde_json::to_value(&verdict)?),
                Some(why) => Err(err(why)),
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// embeddings

/// The `embeddings` mode.
pub struct Embeddings {
    pub(crate) cfg: EmbeddingsConfig,
    pub(crate) provider: Option<String>,
    pub(crate) explicit_provider: bool,
    pub(crate) model: String,
    pub(crate) base_dir: PathBuf,
}

impl StepPlugin for Embeddings {
    fn name(&self) -> &str {
        "embeddings"
    }

    fn execute<'a>(&'a self, rt: &'a StepRuntime) -> BoxFuture<'a, Result<Value, BoxError>> {
        Box::pin(async move {
            let texts: Vec<String> = match (&self.cfg.input, &self.cfg.input_file) {
                (Some(input), _) => input
                    .texts()
                    .iter()
                    .map(|t| rt.render(t))
                    .collect::<Result<_, _>>()?,
                (None, Some(file)) => {
                    let path = self.base_dir.join(file);
                    let text = read_file(path.clone()).await.map_err(|e| {
                        err(format!("cannot read `input_file` {}: {e}", path.display()))
                    })?;
                    vec![text]
                }
                (None, None) => return Err(err("`embeddings` has no input")),
            };
            let size = self.cfg.max_chunk_size.unwrap_or(512) as usize;
            let overlap = self.cfg.overlap.unwrap_or(0) as usize;
            let mut chunks: Vec<Chunk> = Vec::new();
            for (i, t) in texts.iter().enumerate() {
                chunks
                    .extend(chunk_text(i, t, self.cfg.chunk_strategy, size, overlap).map_err(err)?);
            }
            if chunks.is_empty() {
                return Err(err("`embeddings` input is empty after chunking"));
            }
            let provider = match &self.provider {
                Some(p)
                    if self.explicit_provider || rt.embedding_providers().contains(&p.as_str()) =>
                {
                    Some(p.as_str())
                }
                _ => None,
            };
            let mut vectors: Vec<Vec<f32>> = Vec::with_capacity(chunks.len());
            let mut usage: Option<flowloom_core::TokenUsage> = None;
            let mut answered = (self.model.clone(), String::new());
            for batch in chunks.chunks(256) {
                let mut req = EmbeddingRequest::new(
                    self.model.clone(),
                    batch.iter().map(|c| c.text.clone()).collect(),
                );
                req.dimensions = self.cfg.dimensions;
                req.encoding_format = match self.cfg.encoding_format {
                    Some(EmbeddingEncoding::Base64) => EncodingFormat::Base64,
                    _ => EncodingFormat::Float,
                };
                let res = rt.embed(provider, req).await?;
                if res.embeddings.len() != batch.len() {
                    return Err(err(format!(
                        "the embedding provider returned {} vectors for {} chunks",
                        res.embeddings.len(),
                        batch.len()
                    )));
                }
                if let Some(u) = &res.usage {
                    match &mut usage {
                        Some(acc) => acc.accumulate(u),
                        None => usage = Some(u.clone()),
                    }
                }
                answered = (res.model.clone(), res.provider.clone());
                vectors.extend(res.embeddings);
            }
            let format = self.cfg.output_format.unwrap_or(OutputFormat::Json);
            let out = format_output(
                format,
                &chunks,
                &vectors,
                &answered.0,
                &answered.1,
                usage.as_ref(),
                self.cfg.include_metadata.unwrap_or(true),
            );
            if let Some(file) = &self.cfg.output_file {
                let path = self.base_dir.join(file);
                let text = match &out {
                    Value::String(s) => s.clone(),
                    other if format == OutputFormat::Json => serde_json::to_string_pretty(other)?,
                    other => serde_json::to_string(other)?,
                };
                write_file(path.clone(), text).await.map_err(|e| {
                    err(format!(
                        "cannot write `output_file` {}: {e}",
                        path.display()
                    ))
                })?;
            }
            Ok(out)
        })
    }
}

// ---------------------------------------------------------------------------------------------
// step-level loop: iterate

/// The variable a step loop's own-mode body reads the loop step's `steps` from: the body runs
/// as a one-step workflow, where `steps` would mean that workflow's own (empty) outputs, so
/// its templates' `steps` is renamed to this when the loop is lowered
/// ([`outer_steps_template`]).
pub(crate) const OUTER_STEPS: &str = "__loop_steps";

/// `src` with every template variable `steps` (inside `{{ }}` and `{% %}`, outside string
/// literals, not an attribute such as `x.steps`) renamed to [`OUTER_STEPS`], so that
/// `{{ steps.NAME.output }}` inside a step loop reads the loop step's earlier steps, as it
/// does in a `run` step. Text outside the tags, and `{% raw %}` blocks, stay as written.
pub(crate) fn outer_steps_template(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len() + 16);
    let mut i = 0;
    let mut copied = 0;
    while i + 1 < b.len() {
        let open = &b[i..i + 2];
        if open != b"{{" && open != b"{%" {
            i += 1;
            continue;
        }
        let close: &[u8] = if open == b"{{" { b"}}" } else { b"%}" };
        let start = i + 2;
        let mut j = start;
        let mut quote: Option<u8> = None;
        let mut prev_sig: u8 = b' ';
        let mut edits: Vec<(usize, usize)> = Vec::new();
        let mut end = b.len();
        while j < b.len() {
            let c = b[j];
            if let Some(q) = quote {
                if c == b'\\' {
                    j += 2;
                    continue;
                }
                if c == q {
                    quote = None;
                    prev_sig = c;
                }
                j += 1;
                continue;
            }
            if b[j..].starts_with(close) {
                end = j;
                break;
            }
            if c == b'\'' || c == b'"' {
                quote = Some(c);
                j += 1;
                continue;
            }
            if c.is_ascii_alphabetic() || c == b'_' {
                let k = b[j..]
                    .iter()
                    .position(|x| !(x.is_ascii_alphanumeric() || *x == b'_'))
                    .map_or(b.len(), |n| j + n);
                if &b[j..k] == b"steps" && prev_sig != b'.' {
                    edits.push((j, k));
                }
                prev_sig = b'a';
                j = k;
                continue;
            }
            if !c.is_ascii_whitespace() {
                prev_sig = c;
            }
            j += 1;
        }
        let tag = src[start..end].trim().trim_start_matches('-').trim();
        if open == b"{%" && tag == "raw" {
            // Leave everything up to `{% endraw %}` alone.
            let rest = &src[end..];
            i = match rest.find("endraw") {
                Some(n) => end + n + "endraw".len(),
                None => b.len(),
            };
            continue;
        }
        for (a, z) in edits {
            out.push_str(&src[copied..a]);
            out.push_str(OUTER_STEPS);
            copied = z;
        }
        i = (end + 2).min(b.len());
    }
    out.push_str(&src[copied..]);
    out
}

/// A step-level `loop` with `mode: iterate`: the body runs once per item, sequentially or
/// `parallel` with at most `max_workers` at once; the output is the list of the bodies'
/// outputs, in item order.
pub struct Iterate {
    pub(crate) items: Items,
    pub(crate) body: WorkflowRef,
    /// `Some` for a named workflow called with these `with` values; `None` for the step's own
    /// mode, which sees every variable of the step plus `item` and `loop`.
    pub(crate) with: Option<Map<String, Value>>,
    pub(crate) parallel: bool,
    pub(crate) max_workers: usize,
    pub(crate) max_items: Option<usize>,
    pub(crate) on_failure: OnFailure,
    pub(crate) base_dir: PathBuf,
}

impl Iterate {
    async fn items(&self, rt: &StepRuntime) -> Result<Vec<Value>, BoxError> {
        match &self.items {
            Items::List(v) => Ok(v.clone()),
            Items::Source(s) if s.starts_with("file://") => {
                let path = self.base_dir.join(&s["file://".len()..]);
                let text = read_file(path.clone())
                    .await
                    .map_err(|e| err(format!("cannot read loop items {}: {e}", path.display())))?;
                match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Array(a)) => Ok(a),
                    Ok(_) => Err(err(format!(
                        "loop items {} must hold a JSON array",
                        path.display()
                    ))),
                    Err(e) => Err(err(format!(
                        "loop items {} are not valid JSON: {e}",
                        path.display()
                    ))),
                }
            }
            Items::Source(s) => match rt.render_value(&Value::String(s.clone()))? {
                Value::Array(a) => Ok(a),
                Value::String(t) => match serde_json::from_str::<Value>(t.trim()) {
                    Ok(Value::Array(a)) => Ok(a),
                    _ => Err(err(format!(
                        "loop items {s:?} rendered {t:?}, which is not a JSON array"
                    ))),
                },
                other => Err(err(format!(
                    "loop items {s:?} rendered {other}, which is not a list"
                ))),
            },
        }
    }
}

impl StepPlugin for Iterate {
    fn name(&self) -> &str {
        "iterate"
    }

    fn execute<'a>(&'a self, rt: &'a StepRuntime) -> BoxFuture<'a, Result<Value, BoxError>> {
        Box::pin(async move {
            let items = self.items(rt).await?;
            if let Some(max) = self.max_items
                && items.len() > max
            {
                return Err(err(format!(
                    "the loop has {} items, more than its max_iterations ({max})",
                    items.len()
                )));
            }
            let total = items.len();
            let workers = if self.parallel {
                self.max_workers.max(1)
            } else {
                1
            };
            let jobs = items.into_iter().enumerate().map(|(i, item)| {
                let loop_vars =
                    json!({ "index": i, "iteration": i + 1, "item": item, "total": total });
                let mut extra = Map::new();
                extra.insert("item".into(), item.clone());
                extra.insert("loop".into(), loop_vars);
                async move {
                    let vars = match &self.with {
                        Some(with) => {
                            let ctx = context_of(rt, extra);
                            match render_lenient(&Value::Object(with.clone()), &ctx) {
                                Ok(Value::Object(m)) => m,
                                Ok(_) => Map::new(),
                                Err(e) => return Err(format!("item {}: `with`: {e}", i + 1)),
                            }
                        }
                        None => {
                            let c = rt.ctx();
                            let mut m = c.variables.clone();
                            for (k, v) in &c.previous_outputs {
                                m.insert(k.clone(), v.clone());
                            }
                            m.insert(OUTER_STEPS.into(), outputs_as_steps(rt));
                            m.extend(extra);
                            m
                        }
                    };
                    match rt.run_workflow(self.body.clone(), vars, None).await {
                        Ok(r) => Ok(r.output.unwrap_or(Value::Null)),
                        Err(e) => Err(format!("item {}: {e}", i + 1)),
                    }
                }
            });
            let results: Vec<Result<Value, String>> = futures_util::stream::iter(jobs)
                .buffered(workers)
                .collect()
                .await;
            let mut out = Vec::with_capacity(results.len());
            for r in results {
                match r {
                    Ok(v) => out.push(v),
                    Err(e) if self.on_failure == OnFailure::Fail => return Err(err(e)),
                    Err(e) => out.push(json!({ "error": e })),
                }
            }
            Ok(Value::Array(out))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// top-level loops

/// The prompt the judge model gets after each iteration (`{until}`, `{iteration}`,
/// `{output}` are filled in). The judge runs at temperature 0 and must answer `YES` or `NO`.
pub const JUDGE_PROMPT: &str = "You decide whether a loop may stop.\n\nCondition: {until}\n\nResult of iteration {iteration}:\n{output}\n\nIs the condition met by this result? Answer with exactly one word: YES or NO.";

/// A top-level `loops:` entry: calls `workflow` with `with` until the judge says `until`
/// holds, at most `max_iterations` times (retries included).
pub struct LoopRunner {
    pub(crate) name: String,
    pub(crate) workflow: String,
    pub(crate) with: Map<String, Value>,
    pub(crate) max_iterations: u32,
    pub(crate) until: String,
    pub(crate) on_failure: OnFailure,
    pub(crate) accumulate: Option<String>,
    pub(crate) judge_provider: Option<String>,
    pub(crate) judge_model: Option<String>,
}

impl LoopRunner {
    async fn judge(
        &self,
        rt: &StepRuntime,
        iteration: u32,
        output: &Value,
    ) -> Result<(bool, String), BoxError> {
        let text = match output {
            Value::String(s) => s.clone(),
            other => serde_json::to_string_pretty(other)?,
        };
        let prompt = JUDGE_PROMPT
            .replace("{until}", &self.until)
            .replace("{iteration}", &iteration.to_string())
            .replace("{output}", &text);
        let model = self
            .judge_model
            .clone()
            .unwrap_or_else(|| rt.engine().config().default_model.clone());
        let req = LlmRequest::new(model, prompt)
            .with_temperature(0.0)
            .with_max_tokens(16);
        let r = rt.call_llm(self.judge_provider.as_deref(), req).await?;
        let n = normalize_answer(&r.content);
        Ok((n == "yes" || n.starts_with("yes "), r.content))
    }
}

impl StepPlugin for LoopRunner {
    fn name(&self) -> &str {
        "loop"
    }

    fn providers(&self) -> Vec<String> {
        self.judge_provider.iter().cloned().collect()
    }

    fn execute<'a>(&'a self, rt: &'a StepRuntime) -> BoxFuture<'a, Result<Value, BoxError>> {
        Box::pin(async move {
            let mut history: Vec<Value> = Vec::new();
            let mut last = Value::Null;
            let mut last_output = Value::Null;
            let mut met = false;
            let mut iterations = 0u32;
            let mut failures = 0u32;
            let mut verdicts: Vec<Value> = Vec::new();
            while iterations < self.max_iterations {
                if rt.cancellation().is_cancelled() {
                    return Err(err(format!(
                        "loop `{}` cancelled after {iterations} iterations",
                        self.name
                    )));
                }
                iterations += 1;
                let mut extra = Map::new();
                extra.insert(
                    "loop".into(),
                    json!({
                        "iteration": iterations,
                        "last": last,
                        "history": if self.accumulate.is_some() { Value::Array(history.clone()) } else { json!([]) },
                    }),
                );
                let ctx = context_of(rt, extra);
                let vars = match render_lenient(&Value::Object(self.with.clone()), &ctx) {
                    Ok(Value::Object(m)) => m,
                    Ok(_) => Map::new(),
                    Err(e) => {
                        return Err(err(format!(
                            "loop `{}` iteration {iterations}: `with`: {e}",
                            self.name
                        )));
                    }
                };
                match rt.run_workflow(self.workflow.as_str(), vars, None).await {
                    Ok(r) => {
                        let out = as_data(r.output.as_ref());
                        let (ok, said) = self.judge(rt, iterations, &out).await?;
                        verdicts.push(json!({ "iteration": iterations, "judge": said, "met": ok }));
                        history.push(out.clone());
                        last = json!({ "output": out, "iteration": iterations });
                        last_output = out;
                        if ok {
                            met = true;
                            break;
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        let msg =
                            format!("iteration {iterations} of loop `{}` failed: {e}", self.name);
                        match self.on_failure {
                            OnFailure::Fail => return Err(err(msg)),
                            OnFailure::Continue => {
                                tracing::warn!("{msg}; continuing");
                                let failed = json!({ "error": e.to_string() });
                                history.push(failed.clone());
                                last = json!({ "output": failed, "iteration": iterations });
                            }
                            OnFailure::Retry => {
                                tracing::warn!("{msg}; retrying with the same inputs");
                            }
                        }
                    }
                }
            }
            let mut out = Map::new();
            out.insert("output".into(), last_output);
            out.insert("iterations".into(), json!(iterations));
            out.insert("until_met".into(), json!(met));
            out.insert("failures".into(), json!(failures));
            out.insert("judgements".into(), Value::Array(verdicts));
            if let Some(name) = &self.accumulate {
                out.insert(name.clone(), Value::Array(history));
            }
            if !met {
                tracing::warn!(loop_name = %self.name, iterations, "loop reached max_iterations without meeting `until`");
            }
            Ok(Value::Object(out))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::outer_steps_template as r;

    #[test]
    fn only_the_steps_variable_inside_tags_is_renamed() {
        assert_eq!(
            r("steps: {{ steps.a.output }} {%- if steps['a'] %}x{% endif %}"),
            "steps: {{ __loop_steps.a.output }} {%- if __loop_steps['a'] %}x{% endif %}"
        );
        assert_eq!(
            r("{{ 'steps' ~ \"steps\" ~ x.steps ~ my_steps ~ stepsx }}"),
            "{{ 'steps' ~ \"steps\" ~ x.steps ~ my_steps ~ stepsx }}"
        );
        assert_eq!(
            r("{% raw %}{{ steps }}{% endraw %}{{ steps }}"),
            "{% raw %}{{ steps }}{% endraw %}{{ __loop_steps }}"
        );
        assert_eq!(r("{{ steps"), "{{ __loop_steps");
        assert_eq!(r("no tags, steps.a.output"), "no tags, steps.a.output");
    }
}
