//! Transitions and spans in `tracing`: one test binary, one global subscriber, so callsite
//! interest is never cached for another subscriber.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flowloom_engine::prelude::*;
use flowloom_provider_mock::MockProvider;

#[derive(Clone, Default)]
struct Warns(Arc<Mutex<Vec<String>>>);
impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warns {
    fn on_event(&self, e: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *e.metadata().level() == tracing::Level::WARN {
            struct M(String);
            impl tracing::field::Visit for M {
                fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                    self.0.push_str(&format!("{}={v:?} ", f.name()));
                }
            }
            let mut m = M(String::new());
            e.record(&mut m);
            self.0.lock().unwrap().push(m.0);
        }
    }
}
// ---- tracing: transitions and span nesting ----

mod capture {
    use std::sync::{Arc, Mutex};
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id};
    use tracing::{Event, Subscriber};
    use tracing_subscriber::layer::{Context, Layer};
    use tracing_subscriber::registry::LookupSpan;

    /// Field name and value pairs.
    pub type Fields = Vec<(String, String)>;
    /// A span's name, its parent's name and its fields.
    pub type SpanRecord = (String, Option<String>, Fields);

    #[derive(Default, Clone)]
    pub struct Captured {
        pub events: Arc<Mutex<Vec<Fields>>>,
        pub spans: Arc<Mutex<Vec<SpanRecord>>>,
    }

    struct V<'a>(&'a mut Vec<(String, String)>);
    impl Visit for V<'_> {
        fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
            self.0.push((
                f.name().to_owned(),
                format!("{v:?}").trim_matches('"').to_owned(),
            ));
        }
        fn record_str(&mut self, f: &Field, v: &str) {
            self.0.push((f.name().to_owned(), v.to_owned()));
        }
    }

    impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Captured {
        fn on_event(&self, e: &Event<'_>, _ctx: Context<'_, S>) {
            if e.metadata().target() == "flowloom::transition" {
                let mut f = vec![("level".to_owned(), e.metadata().level().to_string())];
                e.record(&mut V(&mut f));
                self.events.lock().unwrap().push(f);
            }
        }
        fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, ctx: Context<'_, S>) {
            let parent = ctx.current_span().metadata().map(|m| m.name().to_owned());
            let parent = attrs
                .parent()
                .and_then(|p| ctx.span(p))
                .map(|s| s.name().to_owned())
                .or(parent);
            let mut f = Vec::new();
            attrs.record(&mut V(&mut f));
            self.spans
                .lock()
                .unwrap()
                .push((attrs.metadata().name().to_owned(), parent, f));
        }
    }
}

async fn transitions_are_traced_with_ids_and_steps_nest_under_the_workflow_span(
    cap: capture::Captured,
) {
    let engine = Engine::builder()
        .provider("mock", MockProvider::echo())
        .build()
        .unwrap();
    let wf = Workflow::builder("traced")
        .llm("a", "x")
        .transform("b", |_| Ok(1.into()))
        .build()
        .unwrap();
    let cid = uuid::Uuid::new_v4();
    let r = engine
        .run_with(&wf, RunOptions::new("x").correlation_id(cid))
        .await
        .unwrap();
    let events = cap.events.lock().unwrap().clone();
    let get =
        |e: &Vec<(String, String)>, k: &str| e.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let wf_states: Vec<String> = events
        .iter()
        .filter(|e| get(e, "step.name").is_none())
        .filter_map(|e| get(e, "workflow.status"))
        .collect();
    assert_eq!(wf_states, ["PENDING", "RUNNING", "COMPLETED"]);
    let a_states: Vec<String> = events
        .iter()
        .filter(|e| get(e, "step.name").as_deref() == Some("a"))
        .filter_map(|e| get(e, "step.status"))
        .collect();
    assert_eq!(a_states, ["PENDING", "RUNNING", "COMPLETED"]);
    // At INFO a run logs its own transitions and each step's end; a step's PENDING and
    // RUNNING are DEBUG.
    let levels: Vec<(Option<String>, String, String)> = events
        .iter()
        .map(|e| {
            let status = get(e, "step.status").or(get(e, "workflow.status")).unwrap();
            (get(e, "step.name"), status, get(e, "level").unwrap())
        })
        .collect();
    for (step, status, level) in &levels {
        let want = if step.is_some() && (status == "PENDING" || status == "RUNNING") {
            "DEBUG"
        } else {
            "INFO"
        };
        assert_eq!(level, want, "{step:?} {status}");
    }
    for e in &events {
        assert_eq!(get(e, "workflow.id"), Some(r.workflow_id.to_string()));
        assert_eq!(get(e, "correlation_id"), Some(cid.to_string()));
        assert_eq!(get(e, "workflow.name").as_deref(), Some("traced"));
    }
    let spans = cap.spans.lock().unwrap().clone();
    let steps: Vec<_> = spans.iter().filter(|s| s.0 == "step").collect();
    assert_eq!(steps.len(), 2);
    assert!(
        steps.iter().all(|s| s.1.as_deref() == Some("workflow")),
        "{spans:?}"
    );
    let w = spans.iter().find(|s| s.0 == "workflow").unwrap();
    assert!(
        w.2.iter()
            .any(|(k, v)| k == "workflow.id" && *v == r.workflow_id.to_string())
    );
}

async fn plugin_failures_are_logged_with_the_plugin_named(w: Warns) {
    let engine = Engine::builder().build().unwrap();
    let wf = Workflow::builder("p")
        .plugin("custom", Exploder)
        .build()
        .unwrap();
    let _ = engine.run(&wf, "x").await;
    let warns = w.0.lock().unwrap().clone();
    assert!(
        warns.iter().any(|m| m.contains("lifecycle")
            && m.contains("panicked: plugin blew up")
            && m.contains("step.kind=plugin:lifecycle")),
        "{warns:?}"
    );
}

struct Exploder;
impl StepPlugin for Exploder {
    fn name(&self) -> &str {
        "lifecycle"
    }
    fn execute<'a>(&'a self, _rt: &'a StepRuntime) -> BoxFuture<'a, Result<Value, BoxError>> {
        Box::pin(async move { panic!("plugin blew up") })
    }
}

#[test]
fn tracing_transitions_spans_and_plugin_failures() {
    use tracing_subscriber::layer::SubscriberExt;
    let cap = capture::Captured::default();
    let w = Warns::default();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(cap.clone())
            .with(w.clone()),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(transitions_are_traced_with_ids_and_steps_nest_under_the_workflow_span(cap));
    rt.block_on(plugin_failures_are_logged_with_the_plugin_named(w));
    let _ = Duration::ZERO;
}
