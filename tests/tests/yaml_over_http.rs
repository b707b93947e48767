//! YAML workflows across crates: fixtures from `fixtures/workflows/` loaded through the
//! `flowloom` umbrella crate, run by the engine through the OpenAI provider against the
//! testkit's OpenAI-compatible mock server on 127.0.0.1 (chat, failover, embeddings).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use flowloom::engine::Engine;
use flowloom::engine::yaml::WorkflowSet;
use flowloom::openai::OpenAiProvider;
use flowloom::testkit::server::{Fault, MockOpenAiServer};

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/workflows")
        .join(name)
}

fn provider(server: &MockOpenAiServer) -> OpenAiProvider {
    OpenAiProvider::builder()
        .api_key("sk-test-yaml")
        .base_url(server.base_url())
        .build()
        .unwrap()
}

#[tokio::test]
async fn code_review_dag_runs_over_http_with_inherited_settings() {
    let server = MockOpenAiServer::start().await.unwrap();
    let set = WorkflowSet::load(fixture("code_review.yaml")).unwrap();
    let engine = set
        .register(Engine::builder().provider("mock", provider(&server)))
        .build()
        .unwrap();
    let r = engine
        .run_named(set.root_name(), set.run_options("fn main() {}"))
        .await
        .unwrap();
    // The server echoes the prompt, so the summary holds every earlier answer.
    let out = r.output_text().unwrap();
    assert!(out.starts_with("Summarize the review."), "{out}");
    assert!(
        out.contains("Review this code for bugs (strict style)"),
        "{out}"
    );
    let bodies: Vec<flowloom::engine::prelude::Value> = server
        .requests_to("/v1/chat/completions")
        .into_iter()
        .map(|q| q.body.unwrap())
        .collect();
    assert_eq!(bodies.len(), 4);
    let by_prefix = |p: &str| {
        bodies
            .iter()
            .find(|b| b["messages"][0]["content"].as_str().unwrap().starts_with(p))
            .unwrap()
            .clone()
    };
    assert_eq!(by_prefix("Scan for security")["temperature"], 0.2);
    assert_eq!(by_prefix("Check the style")["model"], "gpt-4o-mini");
    assert_eq!(by_prefix("Review this code")["model"], "gpt-4o");
    server.shutdown().await;
}

#[tokio::test]
async fn failover_chain_moves_on_when_the_primary_server_fails() {
    let down = MockOpenAiServer::start().await.unwrap();
    let up = MockOpenAiServer::start().await.unwrap();
    for _ in 0..10 {
        down.push_fault(Fault::status(503));
    }
    let set = WorkflowSet::load(fixture("failover.yaml")).unwrap();
    let engine = set
        .register(
            Engine::builder()
                .provider("primary", provider(&down))
                .provider("backup", provider(&up)),
        )
        .build()
        .unwrap();
    let r = engine
        .run_named(set.root_name(), set.run_options("why?"))
        .await
        .unwrap();
    assert_eq!(r.output_text(), Some("Answer briefly: why?"));
    assert!(!down.requests_to("/v1/chat/completions").is_empty());
    let b = up.last_request().unwrap().body.unwrap();
    assert_eq!(b["model"], "small-model");
    assert_eq!(b["temperature"], 0.3);
    down.shutdown().await;
    up.shutdown().await;
}

#[tokio::test]
async fn embeddings_step_calls_the_embeddings_endpoint() {
    let server = MockOpenAiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::copy(
        fixture("embeddings.yaml"),
        dir.path().join("embeddings.yaml"),
    )
    .unwrap();
    std::fs::copy(fixture("data/notes.txt"), dir.path().join("data/notes.txt")).unwrap();
    let set = WorkflowSet::load(dir.path().join("embeddings.yaml")).unwrap();
    let p = provider(&server);
    let engine = set
        .register(
            Engine::builder()
                .provider("mock", p.clone())
                .embedding_provider("mock", p),
        )
        .build()
        .unwrap();
    let r = engine
        .run_named(set.root_name(), set.run_options(""))
        .await
        .unwrap();
    let docs = r.step("embed_docs").unwrap().output.clone().unwrap();
    assert_eq!(docs["chunks"].as_array().unwrap().len(), 3);
    assert_eq!(docs["chunks"][0]["embedding"].as_array().unwrap().len(), 4);
    let reqs = server.requests_to("/v1/embeddings");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].body.as_ref().unwrap()["dimensions"], 4);
    assert!(dir.path().join("notes-embeddings.csv").is_file());
    server.shutdown().await;
}
