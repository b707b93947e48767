//! `cargo xtask fixtures verify` and `cargo xtask fixtures record NAME`.
//!
//! **What "the requests still match what the code sends now" means here.** Each cassette under
//! `fixtures/cassettes/` names the scenario it was recorded from (`source.scenario`, see
//! [`crate::scenarios`]) and its input. `verify` checks each cassette on its own (it parses,
//! every request is in the normalized form the testkit produces now, nothing in it looks like a
//! secret, and replaying every recorded request gives back exactly what was recorded), then runs
//! its scenario again in replay mode: any request the code makes now that the cassette does not
//! hold, and any recording the code no longer asks for, fails verification with the diff.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use flowloom_core::provider::{BoxLlmService, BoxStreamService};
use flowloom_testkit::budget::CostBudget;
use flowloom_testkit::cassette::{Cassette, CassetteMode, Scrubber, read_file, verify_file};
use tower::Layer;
use tower::util::BoxCloneSyncService;

use crate::scenarios::{self, Services};

/// The cassette directory of the workspace at `root`.
pub fn cassette_dir(root: &Path) -> PathBuf {
    root.join("fixtures").join("cassettes")
}

/// Every cassette file in `dir`, sorted.
pub fn cassettes(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = entry?.path();
        if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

fn services<S>(svc: S) -> Services
where
    S: tower::Service<
            flowloom_core::LlmRequest,
            Response = flowloom_core::LlmResponse,
            Error = flowloom_core::LlmError,
        > + tower::Service<
            flowloom_core::StreamRequest,
            Response = flowloom_core::LlmStream,
            Error = flowloom_core::LlmError,
        > + Clone
        + Send
        + Sync
        + 'static,
    <S as tower::Service<flowloom_core::LlmRequest>>::Future: Send + 'static,
    <S as tower::Service<flowloom_core::StreamRequest>>::Future: Send + 'static,
{
    let chat: BoxLlmService = BoxCloneSyncService::new(svc.clone());
    let stream: BoxStreamService = BoxCloneSyncService::new(svc);
    Services { chat, stream }
}

/// Verifies one cassette; returns a one-line summary.
pub async fn verify_one(path: &Path) -> Result<String> {
    let report = verify_file(path).await?;
    let file = read_file(path)?;
    let Some(source) = file.source else {
        return Ok(format!(
            "{}: {} interactions replayed (no source scenario: not re-run)",
            path.display(),
            report.interactions
        ));
    };
    let Some(scenario) = scenarios::find(&source.scenario) else {
        bail!(
            "{}: names the scenario `{}`, which xtask does not know (known: {})",
            path.display(),
            source.scenario,
            scenarios::names()
        );
    };
    let cassette = Cassette::builder(path)
        .mode(CassetteMode::Replay)
        .scrubber(Scrubber::new())
        .build()?;
    let run = (scenario.run)(services(cassette.replayer()), &source.input).await;
    // The cassette's own report (every mismatch with its diff, recordings never played) says
    // more than the scenario's error, so it goes first.
    cassette.finish()?;
    run.with_context(|| {
        format!(
            "{}: the scenario `{}` failed in replay",
            path.display(),
            scenario.name
        )
    })?;
    Ok(format!(
        "{}: {} interactions replayed; scenario `{}` re-run and matched",
        path.display(),
        report.interactions,
        scenario.name
    ))
}

/// `cargo xtask fixtures verify`.
pub fn verify(root: &Path) -> Result<()> {
    let dir = cassette_dir(root);
    let files = cassettes(&dir)?;
    let rt = runtime()?;
    let mut failures = Vec::new();
    for f in &files {
        match rt.block_on(verify_one(f)) {
            Ok(line) => println!("ok    {line}"),
            Err(e) => {
                println!("FAIL  {}: {e:#}", f.display());
                failures.push(f.display().to_string());
            }
        }
    }
    if files.is_empty() {
        println!("no cassettes in {}", dir.display());
    }
    if !failures.is_empty() {
        bail!(
            "{} of {} cassettes failed verification: {}",
            failures.len(),
            files.len(),
            failures.join(", ")
        );
    }
    println!("{} cassettes verified", files.len());
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting a tokio runtime")
}

/// Where `record` gets its model calls answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The real OpenAI API (`OPENAI_API_KEY`, and `OPENAI_BASE_URL` when set).
    OpenAi,
    /// The testkit's mock OpenAI-compatible server, started on 127.0.0.1 for the recording.
    Mock,
}

/// Records the scenario `name` into `fixtures/cassettes/<name>.yaml` under a cost cap.
pub fn record(root: &Path, name: &str, max_cost_usd: f64, backend: Backend) -> Result<()> {
    let Some(scenario) = scenarios::find(name) else {
        bail!(
            "there is no scenario `{name}`; the scenarios are: {}",
            scenarios::names()
        );
    };
    if !(max_cost_usd.is_finite() && max_cost_usd > 0.0) {
        bail!("--max-cost must be a positive number of US dollars, got {max_cost_usd}");
    }
    let key = std::env::var("OPENAI_API_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty());
    if backend == Backend::OpenAi && key.is_none() {
        bail!(
            "OPENAI_API_KEY is not set: `cargo xtask fixtures record {name}` calls the real \
             OpenAI API (at most ${max_cost_usd} with --max-cost). Set OPENAI_API_KEY, or pass \
             --mock to record against the local mock server for free."
        );
    }
    let dir = cassette_dir(root);
    let path = dir.join(format!("{name}.yaml"));
    let partial = dir.join(format!("{name}.yaml.partial"));
    let rt = runtime()?;
    let input = (scenario.input)();
    let budget = CostBudget::new(format!("recording {name}"), max_cost_usd);
    let outcome: Result<serde_json::Value> = rt.block_on(async {
        let mut scrubber = Scrubber::from_env();
        let (server, provider) = match backend {
            Backend::Mock => {
                let server = flowloom_testkit::server::MockOpenAiServer::start()
                    .await
                    .context("starting the mock OpenAI server")?;
                let provider = flowloom_provider_openai::OpenAiProvider::builder()
                    .api_key("sk-mock-recording-key")
                    .base_url(server.base_url())
                    .build()?;
                scrubber = scrubber.with_secret("sk-mock-recording-key");
                (Some(server), provider)
            }
            Backend::OpenAi => (None, flowloom_provider_openai::OpenAiProvider::from_env()?),
        };
        let cassette = Cassette::builder(&partial)
            .mode(CassetteMode::Record)
            .scrubber(scrubber)
            .source(scenario.name, input.clone())
            .build()?;
        let svc = cassette.layer().layer(budget.layer().layer(provider));
        let out = (scenario.run)(services(svc), &input).await;
        cassette.finish()?;
        if let Some(s) = server {
            s.shutdown().await;
        }
        out
    });
    println!("{}", budget.report());
    let checked = budget.check();
    match (outcome, checked) {
        (Ok(out), Ok(_)) => {
            std::fs::rename(&partial, &path)
                .with_context(|| format!("moving the recording to {}", path.display()))?;
            println!("recorded {} → {}", name, path.display());
            println!("output: {out}");
            Ok(())
        }
        (out, budget) => {
            let _ = std::fs::remove_file(&partial);
            if let Err(b) = budget {
                bail!("the recording went over its cost cap, so it was not kept:\n{b}");
            }
            Err(out
                .err()
                .unwrap_or_else(|| anyhow::anyhow!("the recording failed")))
            .with_context(|| {
                format!(
                    "recording `{name}` failed; {} was left as it was",
                    path.display()
                )
            })
        }
    }
}
