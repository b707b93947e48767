//! Compile-time checks: public types are `Send + Sync` and public futures are `Send`, so runs
//! can be spawned on multi-threaded runtimes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use flowloom_engine::prelude::*;
use flowloom_engine::{EngineBuilder, WorkflowBuilder};

fn send<T: Send>(_: &T) {}
fn send_sync<T: Send + Sync>() {}

#[test]
fn public_types_are_send_and_sync() {
    send_sync::<Engine>();
    send_sync::<EngineBuilder>();
    send_sync::<Workflow>();
    send_sync::<WorkflowBuilder>();
    send_sync::<Step>();
    send_sync::<RunHandle>();
    send_sync::<RunError>();
    send_sync::<StepRuntime>();
}

#[test]
fn public_futures_are_send() {
    let engine = Engine::builder().build().unwrap();
    let wf = Workflow::builder("w")
        .transform("t", |_| Ok(1.into()))
        .build()
        .unwrap();
    send(&engine.run(&wf, "x"));
    send(&engine.run_with(&wf, RunOptions::new("x")));
    send(&engine.run_named("w", RunOptions::new("x")));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let handle = rt.block_on(async { engine.start(&wf, "x") });
    send(&handle.wait());
    send(&handle.result());
}

#[allow(dead_code)]
fn runtime_futures_are_send(rt: &StepRuntime) {
    send(&rt.prompt("x"));
    send(&rt.call_llm(None, LlmRequest::new("m", "x")));
    send(&rt.run_workflow("w", Default::default(), None));
    send(&rt.embed(
        None,
        flowloom_core::EmbeddingRequest::new("m", vec!["x".into()]),
    ));
}
