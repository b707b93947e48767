//! [`CaptureLayer`]: a `tracing_subscriber::Layer` that keeps every span and event with its
//! fields, for tests that assert what a run emitted.
//!
//! ```
//! use flowloom_observability::capture::CaptureLayer;
//! use tracing_subscriber::prelude::*;
//! let capture = CaptureLayer::new();
//! let subscriber = tracing_subscriber::registry().with(capture.clone());
//! tracing::subscriber::with_default(subscriber, || {
//!     let span = tracing::info_span!("step", step.name = "draft");
//!     let _g = span.enter();
//!     tracing::event!(target: "flowloom::transition", tracing::Level::INFO, step.status = "RUNNING");
//! });
//! let spans = capture.spans_named("step");
//! assert_eq!(spans[0].field("step.name"), Some("draft"));
//! let events = capture.events_with_target("flowloom::transition");
//! assert_eq!(events[0].field("step.status"), Some("RUNNING"));
//! assert_eq!(events[0].span, Some(spans[0].id));
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// A span as captured: its name, fields (last value recorded wins) and parent.
#[derive(Debug, Clone, PartialEq)]
pub struct CapturedSpan {
    /// The capture id: spans are numbered from 1 in creation order.
    pub id: u64,
    /// The parent's capture id.
    pub parent: Option<u64>,
    /// The span's name.
    pub name: String,
    /// The span's target.
    pub target: String,
    /// Fields, as text (strings unquoted, numbers as written).
    pub fields: BTreeMap<String, String>,
    /// True once the span closed.
    pub closed: bool,
}

impl CapturedSpan {
    /// A field's value.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// An event as captured.
#[derive(Debug, Clone, PartialEq)]
pub struct CapturedEvent {
    /// The event's target.
    pub target: String,
    /// Its level.
    pub level: tracing::Level,
    /// Fields, as text; the message is under `message`.
    pub fields: BTreeMap<String, String>,
    /// The capture id of the span it happened in.
    pub span: Option<u64>,
}

impl CapturedEvent {
    /// A field's value.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

#[derive(Debug, Default)]
struct State {
    spans: Vec<CapturedSpan>,
    events: Vec<CapturedEvent>,
}

/// Keeps every span and event; `Clone` shares what was captured.
#[derive(Debug, Clone, Default)]
pub struct CaptureLayer {
    state: Arc<Mutex<State>>,
}

/// The capture id stored in a span's extensions.
struct CaptureId(u64);

struct FieldVisitor<'a>(&'a mut BTreeMap<String, String>);

impl Visit for FieldVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl CaptureLayer {
    /// An empty capture.
    pub fn new() -> Self {
        Self::default()
    }
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    /// Every span, in creation order.
    pub fn spans(&self) -> Vec<CapturedSpan> {
        self.lock().spans.clone()
    }
    /// Spans named `name`, in creation order.
    pub fn spans_named(&self, name: &str) -> Vec<CapturedSpan> {
        self.lock()
            .spans
            .iter()
            .filter(|s| s.name == name)
            .cloned()
            .collect()
    }
    /// The span with capture id `id`.
    pub fn span(&self, id: u64) -> Option<CapturedSpan> {
        self.lock().spans.iter().find(|s| s.id == id).cloned()
    }
    /// Every event, in order.
    pub fn events(&self) -> Vec<CapturedEvent> {
        self.lock().events.clone()
    }
    /// Events with target `target`, in order.
    pub fn events_with_target(&self, target: &str) -> Vec<CapturedEvent> {
        self.lock()
            .events
            .iter()
            .filter(|e| e.target == target)
            .cloned()
            .collect()
    }
    /// Forgets everything captured.
    pub fn clear(&self) {
        let mut s = self.lock();
        s.spans.clear();
        s.events.clear();
    }
}

impl<S> Layer<S> for CaptureLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut FieldVisitor(&mut fields));
        let parent = ctx.span(id).and_then(|s| {
            s.parent()
                .and_then(|p| p.extensions().get::<CaptureId>().map(|c| c.0))
        });
        let mut st = self.lock();
        let cid = st.spans.len() as u64 + 1;
        st.spans.push(CapturedSpan {
            id: cid,
            parent,
            name: attrs.metadata().name().to_owned(),
            target: attrs.metadata().target().to_owned(),
            fields,
            closed: false,
        });
        drop(st);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(CaptureId(cid));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(cid) = ctx
            .span(id)
            .and_then(|s| s.extensions().get::<CaptureId>().map(|c| c.0))
        else {
            return;
        };
        let mut st = self.lock();
        if let Some(s) = st.spans.iter_mut().find(|s| s.id == cid) {
            values.record(&mut FieldVisitor(&mut s.fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut FieldVisitor(&mut fields));
        let span = ctx
            .event_span(event)
            .and_then(|s| s.extensions().get::<CaptureId>().map(|c| c.0));
        self.lock().events.push(CapturedEvent {
            target: event.metadata().target().to_owned(),
            level: *event.metadata().level(),
            fields,
            span,
        });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(cid) = ctx
            .span(&id)
            .and_then(|s| s.extensions().get::<CaptureId>().map(|c| c.0))
        else {
            return;
        };
        let mut st = self.lock();
        if let Some(s) = st.spans.iter_mut().find(|s| s.id == cid) {
            s.closed = true;
        }
    }
}
