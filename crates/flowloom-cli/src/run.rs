//! `flowloom run`: load the file and the workflows it calls, route its providers, run it on
//! the engine with live progress, print the result, and end with the status's exit code.

use std::io::{IsTerminal, Write as _};
use std::path::Path;

use flowloom_core::LogLevel;
use flowloom_core::{LlmRequest, WorkflowResult};
use flowloom_engine::yaml::{LowerError, WorkflowSet, YamlError};
use flowloom_engine::{Engine, EngineBuilder, RunError};
use flowloom_observability::ObservabilityConfig;
use flowloom_provider_mock::MockProvider;
use flowloom_provider_openai::OpenAiProvider;
use tower::util::MapRequestLayer;

use crate::cli::RunArgs;
use crate::error::{CliError, Exit};
use crate::input::{parse_vars, read_input};
use crate::progress::{Mode, Progress};
use crate::providers::{MOCK, Providers, Route, Target};

/// Loads a workflow file and every workflow it calls; a problem is a definition error
/// listing every diagnostic.
pub(crate) fn load_set(path: &Path) -> Result<WorkflowSet, CliError> {
    WorkflowSet::load(path).map_err(|e| match e {
        LowerError::Load(YamlError::Invalid(d)) => {
            CliError::Definition(d.to_string().trim_end().to_owned())
        }
        LowerError::Load(io @ YamlError::Io { .. }) => CliError::usage(io.to_string()),
        other => CliError::Definition(other.to_string()),
    })
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// The provider names to route: the set's, or `openai` when it names none.
fn named_providers(set: &WorkflowSet) -> Vec<String> {
    let mut named: Vec<String> = set.providers().into_iter().collect();
    if named.is_empty() {
        named.push("openai".to_owned());
    }
    named
}

/// Registers a service for every route: one mock shared by every name routed to it, one
/// OpenAI-compatible client per configured provider.
fn register(
    mut b: EngineBuilder,
    routes: &[Route],
    mock_script: Option<&Path>,
) -> Result<EngineBuilder, CliError> {
    let mut mock: Option<MockProvider> = None;
    let mut clients: Vec<(String, OpenAiProvider)> = Vec::new();
    for r in routes {
        match &r.target {
            Target::Mock => {
                let m = match &mock {
                    Some(m) => m.clone(),
                    None => {
                        let m = match mock_script {
                            Some(p) => MockProvider::from_file(p).map_err(|e| {
                                CliError::usage(format!(
                                    "cannot use the mock script {}: {e}",
                                    p.display()
                                ))
                            })?,
                            None => MockProvider::echo(),
                        }
                        .with_recording(false);
                        mock = Some(m.clone());
                        m
                    }
                };
                b = b
                    .provider(r.name.clone(), m.clone())
                    .embedding_provider(r.name.clone(), m);
            }
            Target::OpenAiCompatible {
                provider,
                base_url,
                api_key,
            } => {
                let client = match clients.iter().find(|(n, _)| n == provider) {
                    Some((_, c)) => c.clone(),
                    None => {
                        let c = openai_client(provider, base_url, api_key.as_deref())?;
                        clients.push((provider.clone(), c.clone()));
                        c
                    }
                };
                b = b
                    .provider(r.name.clone(), client.clone())
                    .embedding_provider(r.name.clone(), client);
            }
        }
    }
    Ok(b)
}

fn openai_client(
    provider: &str,
    base_url: &str,
    api_key: Option<&str>,
) -> Result<OpenAiProvider, CliError> {
    let mut b = OpenAiProvider::builder()
        .provider_name(provider)
        .base_url(base_url);
    b = match api_key {
        Some(k) => b.api_key(k),
        None => b.allow_missing_key(true),
    };
    if provider == "openai" {
        if let Some(org) = env("OPENAI_ORG_ID").filter(|v| !v.trim().is_empty()) {
            b = b.organization(org);
        }
        if let Some(p) = env("OPENAI_PROJECT_ID").filter(|v| !v.trim().is_empty()) {
            b = b.project(p);
        }
    }
    // A command someone waits on must not hang on a server that accepts and never answers:
    // each HTTP request is bounded (the library itself imposes no limit).
    b = b.request_timeout(CLI_REQUEST_TIMEOUT);
    b.build()
        .map_err(|e| CliError::Providers(format!("provider `{provider}`: {e}")))
}

/// The most time one HTTP request to a provider may take in `flowloom run` (a whole answer,
/// streamed or not); the run's own `--timeout` bounds the run.
const CLI_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Logs to standard error: `FLOWLOOM_LOG_LEVEL` (default WARN here, so progress stays
/// readable), `FLOWLOOM_LOG_FORMAT`, with every key in use redacted.
fn init_logs(
    routes: &[Route],
    progress: &Progress,
) -> Result<Option<flowloom_observability::ObservabilityGuard>, CliError> {
    let mut config =
        ObservabilityConfig::from_env().map_err(|e| CliError::usage(format!("logging: {e}")))?;
    if env("FLOWLOOM_LOG_LEVEL").is_none() {
        config = config.with_level(LogLevel::Warn);
    }
    for r in routes {
        if let Target::OpenAiCompatible {
            api_key: Some(k), ..
        } = &r.target
        {
            config = config.with_secret(k);
        }
    }
    // A subscriber already set (never, in this binary) is not worth failing the run for.
    Ok(flowloom_observability::init_with_writer(config, progress.log_writer()).ok())
}

/// `flowloom run`.
pub fn run(args: &RunArgs, providers_file: Option<&Path>) -> Result<Exit, CliError> {
    if let (Some(_), Some(p)) = (&args.mock_script, &args.provider)
        && p != MOCK
    {
        return Err(CliError::usage(format!(
            "--mock-script runs on the mock provider, but --provider is `{p}`; drop one of them"
        )));
    }
    let vars = parse_vars(&args.input.vars)?;
    let set = load_set(&args.file)?;
    let providers = Providers::load(providers_file)?;
    let flag = if args.mock_script.is_some() {
        Some(MOCK)
    } else {
        args.provider.as_deref()
    };
    let routes = providers.route(&named_providers(&set), flag, &|k| env(k))?;
    let input = read_input(&args.input)?;

    let stderr_tty = std::io::stderr().is_terminal();
    let mode = match (args.quiet, stderr_tty) {
        (true, _) => Mode::Off,
        (false, true) => Mode::Live,
        (false, false) => Mode::Lines,
    };
    let root = set.root().ok_or_else(|| {
        CliError::Definition(format!(
            "{}: the file holds no workflow to run",
            args.file.display()
        ))
    })?;
    let progress = Progress::new(mode, root.name(), root.step_names());

    let _logs = init_logs(&routes, &progress)?;
    let mut builder = Engine::from_env().map_err(|e| CliError::usage(e.to_string()))?;
    builder = register(builder, &routes, args.mock_script.as_deref())?;
    if let Some(model) = args.model.clone() {
        builder = builder.layer(MapRequestLayer::new(move |mut r: LlmRequest| {
            r.model.clone_from(&model);
            r
        }));
    }
    if mode != Mode::Off {
        builder = builder.hook(progress.clone());
    }
    let engine = set
        .register(builder)
        .build()
        .map_err(|e| CliError::Definition(e.to_string()))?;

    let mut opts = set.run_options(input);
    opts.vars.extend(vars);
    if let Some(t) = args.timeout {
        opts.timeout = Some(t);
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Runtime(format!("cannot start the async runtime: {e}")))?;
    let outcome = rt.block_on(execute(&engine, root, opts, &progress));
    progress.finish();
    let result = match outcome {
        Ok(r) => r,
        Err(e) if e.result().is_some() => e
            .into_result()
            .ok_or_else(|| CliError::Runtime("the run ended without a result".to_owned()))?,
        Err(e) => return Err(before_start(e)),
    };
    report(args, &result, &progress)?;
    Ok(Exit::for_status(result.status))
}

/// An error that ended the run before any step ran: a definition problem (exit 2) or
/// something else (exit 1).
fn before_start(e: RunError) -> CliError {
    match e {
        RunError::UnknownProvider { .. }
        | RunError::NoProvider { .. }
        | RunError::AmbiguousProvider { .. }
        | RunError::UnknownWorkflow { .. }
        | RunError::UnknownStepKind { .. }
        | RunError::InvalidStep { .. }
        | RunError::WorkflowCycle { .. }
        | RunError::InvalidOptions(_) => CliError::Definition(e.to_string()),
        other => CliError::Runtime(other.to_string()),
    }
}

/// Starts the run and waits for it. The first Ctrl-C cancels it gracefully (calls in flight
/// finish, nothing new starts); a second one quits at once with 130.
async fn execute(
    engine: &Engine,
    workflow: &flowloom_engine::Workflow,
    opts: flowloom_engine::RunOptions,
    progress: &Progress,
) -> Result<WorkflowResult, RunError> {
    let mut interrupts = Interrupts::new();
    let handle = engine.start_with(workflow, opts);
    tokio::select! {
        () = handle.wait() => {}
        () = interrupts.next() => {
            handle.cancel();
            progress.note(
                "interrupted: letting calls in flight finish (Ctrl-C again to quit at once)",
            );
            tokio::select! {
                () = handle.wait() => {}
                () = interrupts.next() => {
                    progress.finish();
                    let _ = writeln!(std::io::stderr(), "interrupted again: quitting");
                    std::process::exit(i32::from(Exit::Interrupted.code()));
                }
            }
        }
    }
    handle.result().await
}

/// SIGINT (Ctrl-C), listened for from creation on.
struct Interrupts {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Interrupts {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                signal: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    /// Waits for the next interrupt (forever when none can be received).
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            match &mut self.signal {
                Some(s) => {
                    if s.recv().await.is_none() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending::<()>().await,
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Prints the result: the whole of it as JSON with `--json`, else the final output; the
/// summary table and the reason of a run that did not complete on standard error; the JSON
/// to `--output` as well.
fn report(args: &RunArgs, r: &WorkflowResult, progress: &Progress) -> Result<(), CliError> {
    let json = serde_json::to_string_pretty(r)
        .map_err(|e| CliError::Runtime(format!("cannot serialize the result: {e}")))?;
    let mut err = std::io::stderr().lock();
    if !args.quiet {
        let _ = write!(err, "\n{}", crate::progress::summary(r, progress.pricer()));
    }
    if let Some(e) = &r.error
        && !r.is_success()
    {
        let _ = writeln!(err, "{}: {e}", r.status);
    }
    drop(err);
    let mut out = std::io::stdout().lock();
    if args.json {
        let _ = writeln!(out, "{json}");
    } else if let Some(o) = &r.output {
        let _ = match o.as_str() {
            Some(text) => writeln!(out, "{text}"),
            None => writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(o).unwrap_or_default()
            ),
        };
    }
    drop(out);
    if let Some(path) = &args.output {
        std::fs::write(path, format!("{json}\n")).map_err(|e| {
            CliError::Runtime(format!(
                "cannot write the result to {}: {e}; check the --output path",
                path.display()
            ))
        })?;
    }
    Ok(())
}
