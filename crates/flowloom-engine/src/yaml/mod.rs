//! The `workflow/v2.0` YAML format: loader, validation, schema and step modes.
//!
//! - [`load_str`] / [`load_file`] read a file strictly into [`WorkflowFile`]: an unknown field
//!   is an error with file, line, column, the valid fields and the nearest one; every rule of
//!   the format is checked; **every** problem of the file is reported at once
//!   ([`Diagnostics`]).
//! - [`validate_str`] / [`validate_file`] do the same without keeping the result (what
//!   `flowloom validate` prints); `validate_file` also resolves `template` and loop
//!   workflows next to the file and rejects cycles of template calls.
//! - [`EffectiveConfig`] is the inheritance execution → step → consensus execution.
//! - [`StepGraph`] is the step graph, as Mermaid or dot.
//! - [`json_schema`] is the JSON Schema of the format (committed at
//!   `docs/schema/workflow-v2.json`).
//!
//! ```
//! use flowloom_engine::yaml;
//! let text = r#"
//! $schema: workflow/v2.0
//! name: hello
//! version: 1.0.0
//! description: Says hello
//! execution: { provider: mock, model: m, temperature: 0.7 }
//! steps:
//!   - name: greet
//!     run: "Say hello to {{ input }}"
//!     max_token: 20
//! "#;
//! let err = yaml::load_str(text).unwrap_err();
//! let text = err.to_string();
//! assert!(text.contains("<input>:10:5: error: unknown field `max_token`"));
//! assert!(text.contains("did you mean `max_tokens`?"));
//! ```

mod chunk;
mod diag;
mod duration;
mod effective;
mod graph;
mod lower;
mod model;
mod parse;
mod plugins;
mod validate;
mod vote;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use chunk::{Chunk, chunk_text, count_tokens, format_output, paragraphs, sentences};
pub use diag::{Diagnostic, Diagnostics, Location, Severity};
pub use duration::{DurationError, DurationStr, parse_duration};
pub use effective::EffectiveConfig;
pub use graph::{GraphEdge, GraphNode, NodeKind, StepGraph};
pub use library::Library;
pub use lower::{LowerError, WorkflowSet};
pub use model::*;
pub use parse::Limits;
pub use plugins::{
    Consensus, DEFAULT_CONSENSUS_TIMEOUT, DEFAULT_EMBEDDING_MODEL, Embeddings, FailoverRun,
    Iterate, JUDGE_PROMPT, LoopRunner,
};
pub use validate::if_expression;
pub use vote::{Verdict, Vote, normalize_answer, tally};

/// How files are read.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Size, depth and alias limits.
    pub limits: Limits,
}

/// Why a workflow file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum YamlError {
    /// The file could not be read.
    #[error("cannot read workflow file `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file has problems; all of them are listed.
    #[error("{0}")]
    Invalid(Diagnostics),
}

impl YamlError {
    /// The diagnostics, when the file was read but is invalid.
    pub fn diagnostics(&self) -> Option<&Diagnostics> {
        match self {
            YamlError::Invalid(d) => Some(d),
            YamlError::Io { .. } => None,
        }
    }
}

/// A workflow file that read and validated.
#[derive(Debug, Clone)]
pub struct LoadedWorkflow {
    /// The definition.
    pub definition: WorkflowFile,
    /// The file it came from (`None` when loaded from text).
    pub path: Option<PathBuf>,
    /// Warnings (the file is usable).
    pub warnings: Vec<Diagnostic>,
    pub(crate) index: Arc<parse::PosIndex>,
}

impl LoadedWorkflow {
    /// The workflow's name.
    pub fn name(&self) -> &str {
        &self.definition.name
    }

    /// The directory template calls are resolved from first (the file's directory, or the
    /// current directory for text).
    pub fn base_dir(&self) -> PathBuf {
        self.path
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// Every provider name the workflow may call (execution, failover chain, steps,
    /// consensus executions, embeddings, loop judges), sorted.
    pub fn providers(&self) -> BTreeSet<String> {
        let d = &self.definition;
        let mut out = BTreeSet::new();
        out.extend(d.execution.provider.clone());
        out.extend(
            d.execution
                .providers
                .iter()
                .flatten()
                .map(|p| p.provider.clone()),
        );
        for s in &d.steps {
            out.extend(s.provider.clone());
            if let Some(c) = &s.consensus {
                out.extend(c.executions.iter().map(|x| x.provider.clone()));
            }
            if let Some(e) = &s.embeddings {
                out.extend(e.provider.clone());
            }
        }
        for l in &d.loops {
            out.extend(l.judge.as_ref().and_then(|j| j.provider.clone()));
        }
        out
    }

    /// The step graph.
    pub fn graph(&self) -> StepGraph {
        StepGraph::of(&self.definition)
    }

    /// The effective configuration of the step named `step`.
    pub fn effective_config(&self, step: &str) -> Option<EffectiveConfig> {
        let s = self.definition.steps.iter().find(|s| s.name == step)?;
        Some(EffectiveConfig::of_step(&self.definition.execution, s))
    }

    /// Names of the workflows this one calls (templates, loops, step loops), in order of
    /// first appearance.
    pub fn called_workflows(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut add = |n: &str| {
            if !out.iter().any(|x| x == n) {
                out.push(n.to_owned());
            }
        };
        for s in &self.definition.steps {
            if let Some(t) = &s.template {
                add(&t.name);
            }
            if let Some(w) = s.loop_.as_ref().and_then(|l| l.workflow.as_deref()) {
                add(w);
            }
        }
        for l in &self.definition.loops {
            add(&l.workflow);
        }
        out
    }

    /// The field path where this workflow calls `name` (for error locations).
    pub fn call_site(&self, name: &str) -> Option<String> {
        for (i, s) in self.definition.steps.iter().enumerate() {
            if s.template.as_ref().is_some_and(|t| t.name == name) {
                return Some(format!("steps[{i}].template.name"));
            }
            if s.loop_.as_ref().and_then(|l| l.workflow.as_deref()) == Some(name) {
                return Some(format!("steps[{i}].loop.workflow"));
            }
        }
        self.definition
            .loops
            .iter()
            .position(|l| l.workflow == name)
            .map(|i| format!("loops[{i}].workflow"))
    }
}

/// Reads every problem of `text` (named `file` in locations), without building anything.
pub(crate) fn check(
    text: &str,
    file: &str,
    opts: &LoadOptions,
) -> (Option<WorkflowFile>, parse::PosIndex, Diagnostics) {
    let file: Arc<str> = Arc::from(file);
    let parsed = parse::parse(text, file.clone(), &opts.limits);
    let mut diags = parsed.diags.clone();
    let structural_ok = diags.is_empty();
    let index = parsed.index.clone();
    if parsed.header.is_some()
        || !parsed.steps.is_empty()
        || !parsed.loops.is_empty()
        || structural_ok
    {
        let mut sink = parse::Sink {
            file,
            index: &index,
            out: Vec::new(),
            labels: Default::default(),
        };
        if parsed.header.is_some() || !parsed.raw_step_names.is_empty() {
            validate::validate(&parsed, &mut sink);
        }
        let under = |p: &str, root: &str| {
            p == root || p.starts_with(&format!("{root}.")) || p.starts_with(&format!("{root}["))
        };
        diags.extend(sink.out.into_iter().filter(|d| {
            !parsed.error_paths.iter().any(|e| under(&d.path, e))
                && !parsed.partial_roots.contains(&d.path)
        }));
    }
    diags.sort_by(|a, b| {
        (a.location.line, a.location.column).cmp(&(b.location.line, b.location.column))
    });
    let complete = parsed.steps.len() == parsed.raw_step_names.len()
        && parsed.loops.len() == parsed.raw_loop_names.len();
    let wf = match parsed.header {
        Some(mut h)
            if complete
                && structural_ok
                && !diags.iter().any(|d| d.severity == Severity::Error) =>
        {
            h.steps = parsed.steps.into_iter().map(|(_, s)| s).collect();
            h.loops = parsed.loops.into_iter().map(|(_, l)| l).collect();
            Some(h)
        }
        _ => None,
    };
    (wf, index, Diagnostics(diags))
}

/// Loads a workflow from text (locations name it `<input>`).
pub fn load_str(text: &str) -> Result<LoadedWorkflow, YamlError> {
    load_str_with(text, "<input>", &LoadOptions::default())
}

/// Loads a workflow from text, naming it `file` in locations.
pub fn load_str_with(
    text: &str,
    file: &str,
    opts: &LoadOptions,
) -> Result<LoadedWorkflow, YamlError> {
    let (wf, index, diags) = check(text, file, opts);
    match wf {
        Some(definition) => Ok(LoadedWorkflow {
            definition,
            path: None,
            warnings: diags.0,
            index: Arc::new(index),
        }),
        None => Err(YamlError::Invalid(diags)),
    }
}

/// Loads a workflow file. Files larger than the size limit are refused before they are read.
pub fn load_file(path: impl AsRef<Path>) -> Result<LoadedWorkflow, YamlError> {
    load_file_with(path, &LoadOptions::default())
}

/// Loads a workflow file with options.
pub fn load_file_with(
    path: impl AsRef<Path>,
    opts: &LoadOptions,
) -> Result<LoadedWorkflow, YamlError> {
    let path = path.as_ref();
    let text = read_limited(path, opts)?;
    let mut wf = load_str_with(&text, &path.display().to_string(), opts)?;
    wf.path = Some(path.to_path_buf());
    Ok(wf)
}

fn read_limited(path: &Path, opts: &LoadOptions) -> Result<String, YamlError> {
    let io = |source| YamlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.len() > opts.limits.max_bytes as u64 {
        return Err(YamlError::Invalid(Diagnostics(vec![Diagnostic {
            severity: Severity::Error,
            location: Location {
                file: Arc::from(path.display().to_string()),
                line: 1,
                column: 1,
            },
            path: String::new(),
            message: format!(
                "the file is {} bytes, more than the {} bytes a workflow file may have",
                meta.len(),
                opts.limits.max_bytes
            ),
            help: Some("split it into smaller workflows called with `template`, or raise `LoadOptions::limits.max_bytes`".into()),
        }])));
    }
    let bytes = std::fs::read(path).map_err(io)?;
    String::from_utf8(bytes).map_err(|e| {
        YamlError::Invalid(Diagnostics(vec![Diagnostic {
            severity: Severity::Error,
            location: Location {
                file: Arc::from(path.display().to_string()),
                line: 1,
                column: 1,
            },
            path: String::new(),
            message: format!(
                "the file is not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
            help: Some("save the file as UTF-8".into()),
        }]))
    })
}

/// Every problem of `text`, with locations (empty when it is valid).
pub fn validate_str(text: &str) -> Diagnostics {
    check(text, "<input>", &LoadOptions::default()).2
}

/// Every problem of the file at `path` and of the workflows it calls (resolved next to it),
/// including cycles of template calls. Empty when everything is valid.
pub fn validate_file(path: impl AsRef<Path>) -> Diagnostics {
    let path = path.as_ref();
    match load_file(path) {
        Err(YamlError::Invalid(d)) => d,
        Err(e @ YamlError::Io { .. }) => Diagnostics(vec![Diagnostic {
            severity: Severity::Error,
            location: Location {
                file: Arc::from(path.display().to_string()),
                line: 1,
                column: 1,
            },
            path: String::new(),
            message: e.to_string(),
            help: None,
        }]),
        Ok(wf) => {
            let mut lib = library::Library::new();
            lib.add_search_dir(wf.base_dir());
            match lib.closure(&wf) {
                Ok(_) => Diagnostics(wf.warnings),
                Err(d) => d,
            }
        }
    }
}

/// Renders every string inside `value` with the variables in `context` the way loop `with`
/// values are rendered: a string that is one `{{ expression }}` keeps its type, and missing
/// attributes render as empty text.
///
/// ```
/// use serde_json::json;
/// let ctx = json!({"loop": {"iteration": 2, "last": null}});
/// let v = flowloom_engine::yaml::render_loop_value(
///     &json!({"round": "{{ loop.iteration }}", "err": "{{ loop.last.output.error }}"}), &ctx).unwrap();
/// assert_eq!(v, json!({"round": 2, "err": ""}));
/// ```
pub fn render_loop_value(
    value: &serde_json::Value,
    context: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    plugins::render_lenient(value, &minijinja::Value::from_serialize(context))
}

/// The JSON Schema of `workflow/v2.0`, generated from [`WorkflowFile`].
pub fn json_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(WorkflowFile).to_value();
    if let Some(obj) = schema.as_object_mut() {
        obj.insert(
            "$id".into(),
            serde_json::Value::from("https://flowloom.dev/schema/workflow-v2.json"),
        );
    }
    schema
}

pub mod estimate;
pub mod library;
