//! Counters of runs and steps by status, from the engine's `flowloom::transition` events.
//!
//! [`TransitionMetricsLayer`] is a `tracing_subscriber::Layer`: every event with target
//! [`TARGET_TRANSITION`] that carries `step.name` + `step.status` adds one to the
//! [`METRIC_STEPS`] counter under that status; one carrying `workflow.status` (and no step)
//! adds one to [`METRIC_RUNS`]. The same counts are kept in process in
//! [`TransitionCounts`], queryable from code.
//!
//! ```
//! use flowloom_observability::metrics::TransitionMetricsLayer;
//! use tracing_subscriber::prelude::*;
//! let layer = TransitionMetricsLayer::new();
//! let counts = layer.counts();
//! let subscriber = tracing_subscriber::registry().with(layer);
//! tracing::subscriber::with_default(subscriber, || {
//!     tracing::event!(target: "flowloom::transition", tracing::Level::INFO, workflow.id = "r1", workflow.status = "RUNNING");
//!     tracing::event!(target: "flowloom::transition", tracing::Level::INFO, workflow.id = "r1", step.name = "a", step.status = "COMPLETED");
//!     tracing::event!(target: "flowloom::transition", tracing::Level::INFO, workflow.id = "r1", workflow.status = "COMPLETED");
//! });
//! assert_eq!(counts.runs("COMPLETED"), 1);
//! assert_eq!(counts.steps("COMPLETED"), 1);
//! ```

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Meter};
use serde::{Deserialize, Serialize};
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

use crate::semconv::{
    METRIC_ATTR_STATUS, METRIC_RUNS, METRIC_STEPS, STEP_NAME, STEP_STATUS, TARGET_TRANSITION,
    WORKFLOW_NAME, WORKFLOW_STATUS,
};

/// In-process counts of run and step transitions by status. `Clone` shares the counts.
#[derive(Debug, Clone, Default)]
pub struct TransitionCounts {
    inner: Arc<Mutex<TransitionSnapshot>>,
}

/// A copy of [`TransitionCounts`]: status → count, for runs and for steps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionSnapshot {
    /// Run transitions by status (`RUNNING`, `COMPLETED`, ...).
    pub runs: BTreeMap<String, u64>,
    /// Step transitions by status.
    pub steps: BTreeMap<String, u64>,
}

impl TransitionCounts {
    /// Empty counts.
    pub fn new() -> Self {
        Self::default()
    }
    fn with<T>(&self, f: impl FnOnce(&mut TransitionSnapshot) -> T) -> T {
        let mut g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut g)
    }
    /// How many runs reached `status` (e.g. `COMPLETED`).
    pub fn runs(&self, status: &str) -> u64 {
        self.with(|s| s.runs.get(status).copied().unwrap_or(0))
    }
    /// How many steps reached `status`.
    pub fn steps(&self, status: &str) -> u64 {
        self.with(|s| s.steps.get(status).copied().unwrap_or(0))
    }
    /// A copy of every count.
    pub fn snapshot(&self) -> TransitionSnapshot {
        self.with(|s| s.clone())
    }
    fn add_run(&self, status: &str) {
        self.with(|s| bump(&mut s.runs, status));
    }
    fn add_step(&self, status: &str) {
        self.with(|s| bump(&mut s.steps, status));
    }
}

/// Adds one to `status` (allocating its key only the first time).
fn bump(map: &mut BTreeMap<String, u64>, status: &str) {
    match map.get_mut(status) {
        Some(n) => *n += 1,
        None => {
            map.insert(status.to_owned(), 1);
        }
    }
}

/// Counts the engine's transition events into OpenTelemetry counters and
/// [`TransitionCounts`].
#[derive(Debug, Clone)]
pub struct TransitionMetricsLayer {
    counts: TransitionCounts,
    runs: Counter<u64>,
    steps: Counter<u64>,
}

impl Default for TransitionMetricsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl TransitionMetricsLayer {
    /// Counters from the global meter provider (no-ops when none is installed).
    pub fn new() -> Self {
        Self::with_meter(&crate::meter())
    }

    /// Counters from `meter`.
    pub fn with_meter(meter: &Meter) -> Self {
        Self {
            counts: TransitionCounts::new(),
            runs: meter
                .u64_counter(METRIC_RUNS)
                .with_unit("{run}")
                .with_description("Workflow run transitions, by status")
                .build(),
            steps: meter
                .u64_counter(METRIC_STEPS)
                .with_unit("{step}")
                .with_description("Workflow step transitions, by status")
                .build(),
        }
    }

    /// The in-process counts this layer adds to.
    pub fn counts(&self) -> TransitionCounts {
        self.counts.clone()
    }
}

#[derive(Default)]
struct TransitionVisitor {
    workflow_status: Option<Cow<'static, str>>,
    step_status: Option<Cow<'static, str>>,
    step_name: bool,
    workflow_name: Option<Arc<str>>,
}

/// `"Running"`, `RUNNING`, `running` → `RUNNING` (the engine's statuses without allocating).
fn normalize(v: &str) -> Cow<'static, str> {
    const KNOWN: [&str; 7] = [
        "PENDING",
        "RUNNING",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "SKIPPED",
    ];
    let v = v.trim_matches('"');
    match KNOWN.iter().find(|k| k.eq_ignore_ascii_case(v)) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(v.to_ascii_uppercase()),
    }
}

impl Visit for TransitionVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            WORKFLOW_STATUS => self.workflow_status = Some(normalize(value)),
            STEP_STATUS => self.step_status = Some(normalize(value)),
            STEP_NAME => self.step_name = true,
            WORKFLOW_NAME => self.workflow_name = Some(crate::ledger::intern(value)),
            _ => {}
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            WORKFLOW_STATUS | STEP_STATUS | STEP_NAME | WORKFLOW_NAME => {
                let text = format!("{value:?}");
                self.record_str(field, text.trim_matches('"'));
            }
            _ => {}
        }
    }
}

impl<S: Subscriber> Layer<S> for TransitionMetricsLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != TARGET_TRANSITION {
            return;
        }
        let mut v = TransitionVisitor::default();
        event.record(&mut v);
        let (counter, status) = if v.step_name || v.step_status.is_some() {
            let Some(status) = v.step_status else {
                return;
            };
            self.counts.add_step(&status);
            (&self.steps, status)
        } else {
            let Some(status) = v.workflow_status else {
                return;
            };
            self.counts.add_run(&status);
            (&self.runs, status)
        };
        let status = KeyValue::new(METRIC_ATTR_STATUS, status);
        match v.workflow_name {
            Some(w) => counter.add(1, &[KeyValue::new(WORKFLOW_NAME, w), status]),
            None => counter.add(1, &[status]),
        }
    }
}
