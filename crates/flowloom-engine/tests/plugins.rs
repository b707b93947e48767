//! User story 3: custom providers and step plugins through the registry, lifecycle,
//! isolation; hooks; transitions and spans in `tracing`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flowloom_core::provider::{self, AsyncProvider, BlockingProvider};
use flowloom_core::{
    EmbeddingRequest, LlmError, LlmRequest, LlmResponse, StepResult, StepStatus, TokenUsage,
};
use flowloom_engine::prelude::*;
use flowloom_engine::{RunEvent, StepEvent};
use flowloom_provider_mock::MockProvider;

type Log = Arc<Mutex<Vec<String>>>;

struct Shouty;
impl AsyncProvider for Shouty {
    fn name(&self) -> &str {
        "shouty"
    }
    async fn complete(&self, r: LlmRequest) -> Result<LlmResponse, LlmError> {
        Ok(LlmResponse::text(
            r.prompt().unwrap_or_default().to_uppercase(),
            r.model,
            "shouty",
        )
        .with_usage(TokenUsage::new(3, 2, "m", "shouty")))
    }
}

struct Reverse;
impl BlockingProvider for Reverse {
    fn name(&self) -> &str {
        "reverse"
    }
    fn complete(&self, r: LlmRequest) -> Result<LlmResponse, LlmError> {
        Ok(LlmResponse::text(
            r.prompt()
                .unwrap_or_default()
                .chars()
                .rev()
                .collect::<String>(),
            r.model,
            "reverse",
        ))
    }
}

#[tokio::test]
async fn custom_providers_registered_by_name_work_beside_built_in_ones() {
    let engine = Engine::builder()
        .provider("mock", MockProvider::echo())
        .provider("shouty", provider::from_async(Shouty))
        .provider("reverse", provider::from_blocking(Reverse))
        .default_provider("mock")
        .build()
        .unwrap();
    assert_eq!(engine.provider_names(), ["mock", "reverse", "shouty"]);
    let wf = Workflow::builder("mix")
        .llm("a", "hello")
        .step(Step::llm("b", "{{ a }} there").provider("shouty"))
        .step(Step::llm("c", "{{ b }}").provider("reverse"))
        .build()
        .unwrap();
    let r = engine.run(&wf, "x").await.unwrap();
    assert_eq!(r.step_output("b"), Some("HELLO THERE"));
    assert_eq!(r.output_text(), Some("EREHT OLLEH"));
    assert_eq!(r.metrics.step_token_usage["b"].total_tokens, 5);
    assert_eq!(r.metrics.llm_calls, 3);
    // The blocking provider reports no usage: counted apart, never as zero.
    assert!(!r.metrics.step_token_usage.contains_key("c"));
    assert!(r.metrics.llm_calls_without_usage >= 1);
}

/// Records its lifecycle; fails, panics or waits for cancellation as told.
struct Lifecycle {
    log: Log,
    mode: &'static str,
}

impl StepPlugin for Lifecycle {
    fn name(&self) -> &str {
        "lifecycle"
    }
    fn init<'a>(&'a self, rt: &'a StepRuntime) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            self.log
                .lock()
                .unwrap()
                .push(format!("init {}", rt.step_name()));
            rt.put_state(String::from("resource"));
            if self.mode == "init-fails" {
                return Err("no resource".into());
            }
            Ok(())
        })
    }
    fn execute<'a>(&'a self, rt: &'a StepRuntime) -> BoxFuture<'a, Result<Value, BoxError>> {
        Box::pin(async move {
            self.log.lock().unwrap().push("execute".into());
            match self.mode {
                "fails" => Err("it broke".into()),
                "panics" => panic!("plugin blew up"),
                "waits" => {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    Ok(Value::Null)
                }
                "until-cancelled" => {
                    rt.cancellation().cancelled().await;
                    Err("stopped: run cancelled".into())
                }
                _ => {
                    let used = rt.with_state(|s: &mut String| s.clone()).unwrap();
                    Ok(json!({ "used": used, "input": rt.ctx().input() }))
                }
            }
        })
    }
    fn cleanup<'a>(&'a self, rt: &'a StepRuntime) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let state: Option<String> = rt.take_state();
            self.log
                .lock()
                .unwrap()
                .push(format!("cleanup {}", state.unwrap_or_default()));
        })
    }
}

fn lifecycle(mode: &'static str) -> (Workflow, Log) {
    let log: Log = Arc::default();
    let wf = Workflow::builder("p")
        .transform("before", |_| Ok("b".into()))
        .plugin(
            "custom",
            Lifecycle {
                log: log.clone(),
                mode,
            },
        )
        .transform("after", |_| Ok("a".into()))
        .build()
        .unwrap();
    (wf, log)
}

#[tokio::test]
async fn a_plugin_step_runs_init_execute_cleanup() {
    let engine = Engine::builder().build().unwrap();
    let (wf, log) = lifecycle("ok");
    assert_eq!(
        wf.step_kinds().collect::<Vec<_>>(),
        ["transform", "plugin:lifecycle", "transform"]
    );
    let r = engine.run(&wf, "in").await.unwrap();
    assert_eq!(
        r.step("custom").unwrap().output,
        Some(json!({"used": "resource", "input": "in"}))
    );
    assert_eq!(
        *log.lock().unwrap(),
        ["init custom", "execute", "cleanup resource"]
    );
}

#[tokio::test]
async fn cleanup_runs_after_failure_and_panic_and_the_plugin_is_named() {
    let engine = Engine::builder().build().unwrap();
    for (mode, expected, log_expected) in [
        (
            "fails",
            r#"step "custom" failed: plugin "lifecycle" failed: it broke"#,
            vec!["init custom", "execute", "cleanup resource"],
        ),
        (
            "panics",
            r#"step "custom" failed: plugin "lifecycle" panicked: plugin blew up"#,
            vec!["init custom", "execute", "cleanup resource"],
        ),
        (
            "init-fails",
            r#"step "custom" failed: plugin "lifecycle" failed in init: no resource"#,
            vec!["init custom", "cleanup resource"],
        ),
    ] {
        let (wf, log) = lifecycle(mode);
        let err = engine.run(&wf, "x").await.unwrap_err();
        assert!(err.to_string().contains(expected), "{mode}: {err}");
        let r = err.result().unwrap();
        assert_eq!(r.step("before").unwrap().status, StepStatus::Completed);
        assert_eq!(r.step("after").unwrap().status, StepStatus::Pending);
        assert_eq!(*log.lock().unwrap(), log_expected, "{mode}");
    }
    // The engine goes on.
    let (wf, _) = lifecycle("ok");
    engine.run(&wf, "x").await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn cleanup_runs_after_a_timeout_before_the_result_returns() {
    let engine = Engine::builder().build().unwrap();
    let (wf, log) = lifecycle("waits");
    let err = engine
        .run_with(&wf, RunOptions::new("x").timeout(Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(
        *log.lock().unwrap(),
        ["init custom", "execute", "cleanup resource"]
    );
}

#[tokio::test(start_paused = true)]
async fn cleanup_runs_after_cancellation() {
    let engine = Engine::builder().build().unwrap();
    let (wf, log) = lifecycle("until-cancelled");
    let handle = engine.start(&wf, "x");
    tokio::time::sleep(Duration::from_millis(100)).await;
    handle.cancel();
    let err = handle.result().await.unwrap_err();
    assert!(err.is_cancelled(), "{err}");
    assert_eq!(
        *log.lock().unwrap(),
        ["init custom", "execute", "cleanup resource"]
    );
}

/// A plugin using the runtime: templates, conditions, model calls, sub-workflows.
struct Council;
impl StepPlugin for Council {
    fn name(&self) -> &str {
        "council"
    }
    fn templates(&self) -> Vec<String> {
        vec!["Judge: {{ draft }}".into()]
    }
    fn providers(&self) -> Vec<String> {
        vec!["a".into(), "b".into()]
    }
    fn execute<'a>(&'a self, rt: &'a StepRuntime) -> BoxFuture<'a, Result<Value, BoxError>> {
        Box::pin(async move {
            let prompt = rt.render("Judge: {{ draft }}")?;
            let mut votes = Vec::new();
            for p in ["a", "b"] {
                let res = rt.call_llm(Some(p), rt.request(prompt.clone())).await?;
                votes.push(res.content);
            }
            let agree = rt.eval("draft | length > 3")?;
            let sub = rt
                .run_workflow(
                    "summarize",
                    serde_json::Map::new(),
                    Some(json!("sub input")),
                )
                .await?;
            let emb = rt
                .embed(None, EmbeddingRequest::new("e", vec!["x".into()]))
                .await?;
            Ok(json!({
                "votes": votes,
                "agree": agree,
                "sub": sub.output,
                "dims": emb.embeddings[0].len(),
                "providers": rt.providers(),
                "model": rt.config().model,
            }))
        })
    }
}

#[tokio::test]
async fn a_plugin_uses_the_runtime_and_its_calls_are_counted_to_its_step() {
    let sub = Workflow::builder("summarize")
        .llm("s", "Sum {{ input }}")
        .build()
        .unwrap();
    let engine = Engine::builder()
        .provider("a", MockProvider::fixed("yes").with_name("a"))
        .provider("b", MockProvider::fixed("no").with_name("b"))
        .default_provider("a")
        .embedding_provider("emb", MockProvider::echo())
        .workflow(sub)
        .build()
        .unwrap();
    let wf = Workflow::builder("c")
        .transform("draft", |_| Ok("a long draft".into()))
        .plugin("council", Council)
        .build()
        .unwrap();
    let r = engine.run(&wf, "x").await.unwrap();
    let out = r.output.unwrap();
    assert_eq!(out["votes"], json!(["yes", "no"]));
    assert_eq!(out["agree"], json!(true));
    assert_eq!(out["sub"], json!("yes"));
    assert_eq!(out["dims"], json!(8));
    assert_eq!(out["providers"], json!(["a", "b"]));
    assert_eq!(out["model"], json!("gpt-4o-mini"));
    // Two direct calls, one in the sub-workflow.
    assert_eq!(r.metrics.llm_calls, 3);
    assert!(r.metrics.step_token_usage["council"].total_tokens > 0);

    // A plugin naming an unregistered provider fails before the run.
    let engine2 = Engine::builder()
        .provider("a", MockProvider::echo())
        .build()
        .unwrap();
    let err = engine2.run(&wf, "x").await.unwrap_err();
    assert!(err.is_before_start());
    assert!(
        err.to_string()
            .contains(r#"provider "b", which is not registered"#),
        "{err}"
    );
}

/// A plugin calling the engine's providers through a service of its own (here: first
/// provider that answers), counting its calls through the public runtime API.
struct FirstThatAnswers(Vec<&'static str>);
impl StepPlugin for FirstThatAnswers {
    fn name(&self) -> &str {
        "first-that-answers"
    }
    fn providers(&self) -> Vec<String> {
        self.0.iter().map(|p| (*p).to_owned()).collect()
    }
    fn execute<'a>(&'a self, rt: &'a StepRuntime) -> BoxFuture<'a, Result<Value, BoxError>> {
        use tower::ServiceExt;
        Box::pin(async move {
            let mut last = None;
            for name in &self.0 {
                let (pname, svc) = rt.engine().provider(name).ok_or("not registered")?;
                let mut req = rt.request("hello");
                req.context = rt.call_context(Some(pname));
                let res = svc.oneshot(req).await;
                rt.count_calls(1);
                match res {
                    Ok(r) => {
                        rt.record_response(&r);
                        return Ok(json!(r.content));
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(last.map_or_else(|| "no providers".into(), Into::into))
        })
    }
}

#[tokio::test]
async fn a_plugin_with_its_own_service_over_the_engines_providers_is_counted_like_call_llm() {
    let down = MockProvider::from_yaml_str("rules:\n  - error: server\n").unwrap();
    let engine = Engine::builder()
        .provider("down", down)
        .provider("shouty", provider::from_async(Shouty))
        .provider("reverse", provider::from_blocking(Reverse))
        .build()
        .unwrap();
    let wf = Workflow::builder("own")
        .plugin("ask", FirstThatAnswers(vec!["down", "shouty"]))
        .build()
        .unwrap();
    let r = engine.run(&wf, "x").await.unwrap();
    assert_eq!(r.output, Some(json!("HELLO")));
    // Both calls counted; the answer's usage (3 + 2) recorded to the step.
    assert_eq!(r.metrics.llm_calls, 2);
    assert_eq!(r.metrics.llm_calls_without_usage, 0);
    assert_eq!(r.metrics.step_token_usage["ask"].total_tokens, 5);

    // An answer without usage is counted as such, never as zero tokens.
    let wf = Workflow::builder("own")
        .plugin("ask", FirstThatAnswers(vec!["reverse"]))
        .build()
        .unwrap();
    let r = engine.run(&wf, "x").await.unwrap();
    assert_eq!(r.output, Some(json!("olleh")));
    assert_eq!(r.metrics.llm_calls, 1);
    assert_eq!(r.metrics.llm_calls_without_usage, 1);
    assert!(!r.metrics.step_token_usage.contains_key("ask"));
}

#[tokio::test]
async fn registered_step_kinds_make_plugins_from_parameters() {
    let log: Log = Arc::default();
    let l2 = log.clone();
    let engine = Engine::builder()
        .step_kind("lifecycle", move |params: &Value| {
            let mode = if params["fail"] == json!(true) {
                "fails"
            } else {
                "ok"
            };
            Ok(Arc::new(Lifecycle {
                log: l2.clone(),
                mode,
            }) as Arc<dyn StepPlugin>)
        })
        .build()
        .unwrap();
    assert_eq!(engine.step_kind_names(), ["lifecycle"]);
    let wf = Workflow::builder("k")
        .step(Step::kind("s", "lifecycle", json!({})))
        .build()
        .unwrap();
    let r = engine.run(&wf, "x").await.unwrap();
    assert_eq!(r.output.unwrap()["used"], json!("resource"));
    let bad = Workflow::builder("k")
        .step(Step::kind("s", "nope", json!({})))
        .build()
        .unwrap();
    let err = engine.run(&bad, "x").await.unwrap_err();
    assert!(
        err.to_string()
            .contains(r#"kind "nope", which is not registered (registered kinds: lifecycle)"#),
        "{err}"
    );
}

#[derive(Clone, Default)]
struct Recorder(Log);
impl Hooks for Recorder {
    fn on_workflow_start<'a>(&'a self, run: &'a RunEvent) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.0
                .lock()
                .unwrap()
                .push(format!("start {}", run.workflow))
        })
    }
    fn on_workflow_end<'a>(
        &'a self,
        run: &'a RunEvent,
        r: &'a WorkflowResult,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.0
                .lock()
                .unwrap()
                .push(format!("end {} {}", run.workflow, r.status))
        })
    }
    fn on_step_start<'a>(&'a self, s: &'a StepEvent) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            self.0
                .lock()
                .unwrap()
                .push(format!("step {} {}", s.step, s.kind))
        })
    }
    fn on_step_end<'a>(&'a self, s: &'a StepEvent, r: &'a StepResult) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.0
                .lock()
                .unwrap()
                .push(format!("done {} {}", s.step, r.status))
        })
    }
}

#[tokio::test]
async fn hooks_see_workflow_and_step_starts_and_ends() {
    let rec = Recorder::default();
    let engine = Engine::builder()
        .provider("mock", MockProvider::echo())
        .hook(rec.clone())
        .build()
        .unwrap();
    let wf = Workflow::builder("h")
        .llm("a", "x")
        .step(Step::transform("t", |_| Ok(1.into())).when("false"))
        .transform("u", |_| Ok(2.into()))
        .build()
        .unwrap();
    engine.run(&wf, "x").await.unwrap();
    assert_eq!(
        *rec.0.lock().unwrap(),
        [
            "start h",
            "step a llm",
            "done a COMPLETED",
            "done t SKIPPED",
            "step u transform",
            "done u COMPLETED",
            "end h COMPLETED"
        ]
    );
}

#[test]
fn hooks_run_for_blocking_runs_too() {
    let rec = Recorder::default();
    let engine = Engine::builder().hook(rec.clone()).build().unwrap();
    let wf = Workflow::builder("b")
        .transform("t", |_| Ok(1.into()))
        .build()
        .unwrap();
    engine.run_blocking(&wf, "x", None).unwrap();
    assert_eq!(rec.0.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn a_layer_wraps_every_provider() {
    let a = MockProvider::echo();
    let b = MockProvider::echo();
    let mark = |mut r: LlmRequest| {
        r.extra_params.insert("seen_by_layer".into(), true.into());
        r
    };
    let engine = Engine::builder()
        .provider("a", a.clone())
        .provider("b", b.clone())
        .default_provider("a")
        .layer(tower::util::MapRequestLayer::new(mark))
        .build()
        .unwrap();
    let wf = Workflow::builder("l")
        .llm("x", "one")
        .step(Step::llm("y", "two").provider("b"))
        .build()
        .unwrap();
    engine.run(&wf, "in").await.unwrap();
    for m in [&a, &b] {
        assert_eq!(
            m.last_request().unwrap().extra_params["seen_by_layer"],
            json!(true)
        );
    }
}
