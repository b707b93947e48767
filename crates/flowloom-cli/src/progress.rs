//! Live progress of a run (a line per step, from the engine's lifecycle hooks) and the
//! summary table printed when it ends. Both go to standard error.
//!
//! On a terminal each step has an `indicatif` line: a spinner while it runs, then its status,
//! duration, tokens and cost. Elsewhere (a pipe, a CI log) the same facts are printed as plain
//! lines when a step starts and ends.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use flowloom_core::{StepResult, StepStatus, TokenUsage, WorkflowResult};
use flowloom_engine::{BoxFuture, Hooks, StepEvent};
use flowloom_observability::cost::{Cost, Money, PriceTable};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nothing.
    Off,
    /// Plain lines.
    Lines,
    /// Live lines with spinners.
    Live,
}

/// Prices usage: the mock costs nothing; other providers by the price table, where priced.
#[derive(Debug)]
pub struct Pricer {
    table: PriceTable,
}

impl Pricer {
    /// With the built-in OpenAI price table.
    pub fn new() -> Self {
        Self {
            table: PriceTable::openai_default(),
        }
    }

    /// The cost of `usage`.
    pub fn cost(&self, usage: &TokenUsage) -> Cost {
        if usage.provider == "mock" {
            return Cost::Priced(Money::ZERO);
        }
        self.table.cost_of(
            &usage.model,
            usage.prompt_tokens,
            usage.cached_prompt_tokens.unwrap_or(0),
            usage.completion_tokens,
        )
    }

    /// The price table's date.
    pub fn as_of(&self) -> &str {
        &self.table.as_of
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Inner {
    mode: Mode,
    top: String,
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<String, ProgressBar>>,
    width: usize,
    pricer: Pricer,
}

/// The progress display; clones share it. Registered with the engine as [`Hooks`].
#[derive(Clone)]
pub struct Progress(Arc<Inner>);

fn running_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner:.cyan} {prefix} {msg} {elapsed:.dim}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn plain_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} {msg}").unwrap_or_else(|_| ProgressStyle::default_bar())
}

impl Progress {
    /// A display for a run of workflow `top` whose steps are `steps`, in `mode`.
    pub fn new<'a>(mode: Mode, top: &str, steps: impl Iterator<Item = &'a str>) -> Self {
        let steps: Vec<&str> = steps.collect();
        let width = steps.iter().map(|s| s.len()).max().unwrap_or(4).max(4);
        let multi = (mode == Mode::Live)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        let inner = Inner {
            mode,
            top: top.to_owned(),
            multi,
            bars: Mutex::new(HashMap::new()),
            width,
            pricer: Pricer::new(),
        };
        if let Some(m) = &inner.multi {
            let mut bars = lock(&inner.bars);
            for s in steps {
                let bar = m.add(ProgressBar::new_spinner());
                bar.set_style(plain_style());
                bar.set_prefix(format!("  {s:<width$}"));
                bar.set_message(console_dim("pending"));
                bars.insert(s.to_owned(), bar);
            }
        }
        Progress(Arc::new(inner))
    }

    fn key(&self, ev: &StepEvent) -> String {
        if *ev.run.workflow == *self.0.top {
            ev.step.to_string()
        } else {
            format!("{} › {}", ev.run.workflow, ev.step)
        }
    }

    fn started(&self, key: &str) {
        match self.0.mode {
            Mode::Off => {}
            Mode::Lines => {
                let _ = writeln!(std::io::stderr().lock(), "▸ {key} started");
            }
            Mode::Live => {
                let Some(m) = &self.0.multi else { return };
                let mut bars = lock(&self.0.bars);
                let w = self.0.width;
                let bar = bars
                    .entry(key.to_owned())
                    .or_insert_with(|| {
                        let b = m.add(ProgressBar::new_spinner());
                        b.set_prefix(format!("{key:<w$}"));
                        b
                    })
                    .clone();
                bar.reset_elapsed();
                bar.set_prefix(format!("{key:<w$}"));
                bar.set_style(running_style());
                bar.set_message("running");
                bar.enable_steady_tick(Duration::from_millis(100));
            }
        }
    }

    fn ended(&self, key: &str, r: &StepResult) {
        let line = step_line(r, &self.0.pricer);
        match self.0.mode {
            Mode::Off => {}
            Mode::Lines => {
                let _ = writeln!(std::io::stderr().lock(), "{} {key} {line}", mark(r.status));
            }
            Mode::Live => {
                let Some(m) = &self.0.multi else { return };
                let mut bars = lock(&self.0.bars);
                let w = self.0.width;
                let bar = bars
                    .entry(key.to_owned())
                    .or_insert_with(|| m.add(ProgressBar::new_spinner()))
                    .clone();
                bar.set_style(plain_style());
                bar.set_prefix(format!("{} {key:<w$}", mark(r.status)));
                bar.finish_with_message(line);
            }
        }
    }

    /// Prints a note above the live lines (or as a plain line).
    pub fn note(&self, text: &str) {
        match &self.0.multi {
            Some(m) => {
                let _ = m.println(text);
            }
            None => {
                let _ = writeln!(std::io::stderr().lock(), "{text}");
            }
        }
    }

    /// Stops the live display, leaving every line as it is.
    pub fn finish(&self) {
        let bars = lock(&self.0.bars);
        for b in bars.values() {
            if !b.is_finished() {
                b.set_style(plain_style());
                b.abandon();
            }
        }
    }

    /// The pricer.
    pub fn pricer(&self) -> &Pricer {
        &self.0.pricer
    }

    /// Makes log writers that print to standard error above the live lines (which are
    /// cleared while a log line is written, then drawn again).
    pub fn log_writer(&self) -> impl Fn() -> LogWriter + Send + Sync + 'static {
        let multi = self.0.multi.clone();
        move || LogWriter(multi.clone())
    }
}

/// Writes log lines to standard error without garbling the live progress lines.
pub struct LogWriter(Option<MultiProgress>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &self.0 {
            Some(m) => m.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn console_dim(s: &str) -> String {
    format!("\u{1b}[2m{s}\u{1b}[0m")
}

fn mark(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Completed => "✓",
        StepStatus::Failed => "✗",
        StepStatus::Skipped => "-",
        StepStatus::Pending | StepStatus::Running => "·",
    }
}

fn duration_text(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2}s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{ms:.1}ms")
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

/// `COMPLETED 1.20s 35 tok $0.0001` (and the error of a failed step).
fn step_line(r: &StepResult, pricer: &Pricer) -> String {
    let mut s = format!("{} {}", r.status, duration_text(r.duration_ms));
    if let Some(u) = &r.token_usage {
        let _ = write!(s, " {} tok {}", u.total_tokens, cost_text(&pricer.cost(u)));
    }
    if let Some(e) = &r.error
        && r.status != StepStatus::Completed
    {
        let _ = write!(s, " — {e}");
    }
    s
}

impl Hooks for Progress {
    fn on_step_start<'a>(&'a self, step: &'a StepEvent) -> BoxFuture<'a, ()> {
        self.started(&self.key(step));
        Box::pin(async {})
    }

    fn on_step_end<'a>(&'a self, step: &'a StepEvent, result: &'a StepResult) -> BoxFuture<'a, ()> {
        self.ended(&self.key(step), result);
        Box::pin(async {})
    }
}

/// The summary table of a finished run.
pub fn summary(r: &WorkflowResult, pricer: &Pricer) -> String {
    let w = r
        .steps
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(4)
        .max(5);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<w$}  {:<9}  {:>9}  {:>8}  {:>8}  {:>12}",
        "step", "status", "duration", "input", "output", "cost"
    );
    let mut total = Money::ZERO;
    let mut unpriced = false;
    for s in &r.steps {
        let (inp, outp, cost) = match &s.token_usage {
            Some(u) => {
                let c = pricer.cost(u);
                match &c {
                    Cost::Priced(m) => total += *m,
                    _ => unpriced = true,
                }
                (
                    u.prompt_tokens.to_string(),
                    u.completion_tokens.to_string(),
                    cost_text(&c),
                )
            }
            None => ("-".to_owned(), "-".to_owned(), "-".to_owned()),
        };
        let dur = if matches!(s.status, StepStatus::Pending | StepStatus::Skipped) {
            "-".to_owned()
        } else {
            duration_text(s.duration_ms)
        };
        let _ = writeln!(
            out,
            "{:<w$}  {:<9}  {:>9}  {:>8}  {:>8}  {:>12}",
            s.name,
            s.status.as_str(),
            dur,
            inp,
            outp,
            cost
        );
    }
    let (ti, to) = r
        .metrics
        .token_usage_total
        .as_ref()
        .map_or(("-".to_owned(), "-".to_owned()), |u| {
            (u.prompt_tokens.to_string(), u.completion_tokens.to_string())
        });
    let total_text = if unpriced {
        format!("{total} + unpriced")
    } else {
        total.to_string()
    };
    let _ = writeln!(
        out,
        "{:<w$}  {:<9}  {:>9}  {:>8}  {:>8}  {:>12}",
        "total",
        r.status.as_str(),
        duration_text(r.metrics.total_duration_ms),
        ti,
        to,
        total_text
    );
    let _ = write!(
        out,
        "{} model call(s); costs from the OpenAI price table of {}",
        r.metrics.llm_calls,
        pricer.as_of()
    );
    if r.metrics.llm_calls_without_usage > 0 {
        let _ = write!(
            out,
            "; {} call(s) reported no usage",
            r.metrics.llm_calls_without_usage
        );
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowloom_core::{ExecutionMetrics, StepContext, WorkflowStatus};

    fn step(name: &str, status: StepStatus, usage: Option<TokenUsage>) -> StepResult {
        StepResult {
            step_id: StepContext::new(name, serde_json::Value::Null).step_id,
            name: name.into(),
            status,
            output: None,
            error: (status == StepStatus::Failed).then(|| "boom".to_owned()),
            duration_ms: 1500.0,
            token_usage: usage,
        }
    }

    fn result(steps: Vec<StepResult>) -> WorkflowResult {
        let metrics = ExecutionMetrics::from_steps(&steps, 2000.0);
        let ctx = StepContext::new("x", serde_json::Value::Null);
        WorkflowResult {
            workflow_id: ctx.workflow_id,
            workflow_name: "wf".into(),
            correlation_id: ctx.correlation_id,
            status: WorkflowStatus::Failed,
            output: None,
            error: Some("boom".into()),
            failed_step: Some("c".into()),
            steps,
            metrics,
            created_at: time_now(),
            completed_at: None,
        }
    }

    fn time_now() -> time::OffsetDateTime {
        time::OffsetDateTime::UNIX_EPOCH
    }

    #[test]
    fn summary_prices_known_models_and_flags_unpriced_ones() {
        let r = result(vec![
            step(
                "a",
                StepStatus::Completed,
                Some(TokenUsage::new(1_000_000, 0, "gpt-4o-mini", "openai")),
            ),
            step(
                "b",
                StepStatus::Completed,
                Some(TokenUsage::new(10, 5, "my-local-model", "ollama")),
            ),
            step("c", StepStatus::Failed, None),
            step("d", StepStatus::Skipped, None),
        ]);
        let pricer = Pricer::new();
        let t = summary(&r, &pricer);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[1].starts_with("a ") && lines[1].contains("1000000"),
            "{t}"
        );
        // 1M input tokens of gpt-4o-mini at the table's input price.
        let Cost::Priced(expected) =
            pricer.cost(&TokenUsage::new(1_000_000, 0, "gpt-4o-mini", "openai"))
        else {
            panic!("gpt-4o-mini is priced")
        };
        assert!(lines[1].ends_with(&expected.to_string()), "{t}");
        assert!(lines[2].contains("unpriced"), "{t}");
        assert!(lines[3].contains("FAILED"), "{t}");
        assert!(
            lines[4].contains("SKIPPED") && lines[4].contains(" - "),
            "{t}"
        );
        assert!(
            lines[5].starts_with("total") && lines[5].contains("+ unpriced"),
            "{t}"
        );
    }

    #[test]
    fn durations_read_well_at_every_scale() {
        assert_eq!(duration_text(0.27), "0.3ms");
        assert_eq!(duration_text(42.4), "42ms");
        assert_eq!(duration_text(1500.0), "1.50s");
    }

    #[test]
    fn the_mock_costs_nothing() {
        let pricer = Pricer::new();
        let u = TokenUsage::new(100, 100, "gpt-4o", "mock");
        assert_eq!(pricer.cost(&u), Cost::Priced(Money::ZERO));
    }

    #[test]
    fn a_step_line_has_status_duration_tokens_cost_and_error() {
        let pricer = Pricer::new();
        let ok = step(
            "a",
            StepStatus::Completed,
            Some(TokenUsage::new(10, 5, "gpt-4o", "mock")),
        );
        assert_eq!(step_line(&ok, &pricer), "COMPLETED 1.50s 15 tok $0.00");
        let bad = step("b", StepStatus::Failed, None);
        assert_eq!(step_line(&bad, &pricer), "FAILED 1.50s — boom");
    }
}
