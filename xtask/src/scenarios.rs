//! The scenarios cassettes are recorded from: each names what calls it makes, so
//! `cargo xtask fixtures verify` can make them again against the cassette and
//! `cargo xtask fixtures record` can re-record them.

use std::future::Future;
use std::pin::Pin;

use anyhow::{Context, Result};
use flowloom_core::{
    BoxLlmService, BoxStreamService, LlmRequest, LlmStream, StreamEvent, StreamRequest,
};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The services a scenario calls: chat and streaming, both behind the cassette.
#[derive(Clone)]
pub struct Services {
    /// Chat completions.
    pub chat: BoxLlmService,
    /// Streamed chat completions.
    pub stream: BoxStreamService,
}

type Run =
    for<'a> fn(Services, &'a Value) -> Pin<Box<dyn Future<Output = Result<Value>> + Send + 'a>>;

/// A named scenario.
pub struct Scenario {
    /// Its name, also the cassette's file stem.
    pub name: &'static str,
    /// What it does.
    pub about: &'static str,
    /// The input it is recorded with.
    pub input: fn() -> Value,
    /// Makes its calls; returns a summary of what came back.
    pub run: Run,
}

/// Every scenario.
pub fn all() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "provider-roundtrip",
            about: "two chat calls (one with a system prompt and extra parameters) and one streamed call",
            input: || json!("The quick brown fox jumps over the lazy dog."),
            run: |s, input| Box::pin(provider_roundtrip(s, input)),
        },
        Scenario {
            name: "summarize-workflow",
            about: "a two-step workflow (draft, then refine) run by the engine",
            input: || {
                json!(
                    "Rust is a systems programming language focused on safety, speed and concurrency. It has no garbage collector."
                )
            },
            run: |s, input| Box::pin(summarize_workflow(s, input)),
        },
        Scenario {
            name: "summarize-yaml",
            about: "the workflow/v2.0 file fixtures/cassettes/workflows/summarize.yaml, loaded and run by the engine",
            input: || {
                json!(
                    "Cassettes record model calls once and replay them offline, so tests cost nothing and never flake."
                )
            },
            run: |s, input| Box::pin(summarize_yaml(s, input)),
        },
    ]
}

/// The scenario named `name`.
pub fn find(name: &str) -> Option<Scenario> {
    all().into_iter().find(|s| s.name == name)
}

/// The names of every scenario, comma-separated.
pub fn names() -> String {
    all().iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
}

async fn provider_roundtrip(s: Services, input: &Value) -> Result<Value> {
    let text = input.as_str().unwrap_or_default();
    let first = s
        .chat
        .clone()
        .oneshot(
            LlmRequest::new("gpt-4o-mini", format!("Summarize in five words: {text}"))
                .with_system("You are terse.")
                .with_temperature(0.0)
                .with_max_tokens(30),
        )
        .await
        .context("the first chat call")?;
    let second = s
        .chat
        .clone()
        .oneshot(
            LlmRequest::new("gpt-4o-mini", "Reply with the single word OK.")
                .with_temperature(0.0)
                .with_max_tokens(5)
                .with_extra("seed", 7),
        )
        .await
        .context("the second chat call")?;
    let stream = s
        .stream
        .clone()
        .oneshot(StreamRequest(
            LlmRequest::new("gpt-4o-mini", format!("Repeat back: {text}"))
                .with_temperature(0.0)
                .with_max_tokens(20),
        ))
        .await
        .context("the streamed call")?;
    let streamed = collect_text(stream).await.context("reading the stream")?;
    Ok(json!({
        "first": first.content,
        "second": second.content,
        "streamed": streamed,
    }))
}

/// The text of a stream: its final response's content, or the deltas when it has none; an
/// error when the stream broke off.
async fn collect_text(mut stream: LlmStream) -> Result<String> {
    let mut deltas = String::new();
    while let Some(event) = stream.next().await {
        match event? {
            StreamEvent::Delta(t) => deltas.push_str(&t),
            StreamEvent::Done(r) => return Ok(r.content),
            _ => {}
        }
    }
    anyhow::bail!("the stream ended without its final response (after {deltas:?})")
}

async fn summarize_workflow(s: Services, input: &Value) -> Result<Value> {
    use flowloom_engine::{Engine, Step, Workflow};
    let engine = Engine::builder()
        .provider("openai", s.chat.clone())
        .build()
        .context("building the engine")?;
    let wf = Workflow::builder("summarize")
        .model("gpt-4o-mini")
        .temperature(0.0)
        .max_tokens(60)
        .llm_step(
            Step::llm("draft", "Summarize in one sentence: {{ input }}").system("You are terse."),
        )
        .llm("refine", "Make this shorter: {{ draft }}")
        .build()
        .context("building the workflow")?;
    let result = engine
        .run(&wf, input.clone())
        .await
        .context("running the workflow")?;
    Ok(json!({
        "output": result.output,
        "draft": result.step_output("draft"),
        "llm_calls": result.metrics.llm_calls,
    }))
}

/// The workflow file of the `summarize-yaml` scenario.
pub fn summarize_yaml_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/cassettes/workflows/summarize.yaml")
}

async fn summarize_yaml(s: Services, input: &Value) -> Result<Value> {
    use flowloom_engine::Engine;
    let path = summarize_yaml_path();
    let loaded = flowloom_engine::yaml::load_file(&path)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("loading {}", path.display()))?;
    let wf = loaded.to_workflow().context("lowering the workflow")?;
    let mut builder = Engine::builder();
    for name in loaded.providers() {
        builder = builder.provider(name, s.chat.clone());
    }
    let engine = builder.build().context("building the engine")?;
    let result = engine
        .run(&wf, input.clone())
        .await
        .context("running the workflow")?;
    Ok(json!({
        "output": result.output,
        "draft": result.step_output("draft"),
        "llm_calls": result.metrics.llm_calls,
    }))
}
