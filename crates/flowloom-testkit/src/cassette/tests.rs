use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use flowloom_core::{
    AsyncProvider, BlockingClient, CallContext, LlmError, LlmRequest, LlmResponse, LlmStream,
    StreamEvent, StreamRequest, TokenUsage, provider,
};
use futures_util::StreamExt;
use tower::{Layer, Service, ServiceExt};

use super::*;

/// Answers `echo: <prompt>` and counts calls; prompts starting with `fail` fail with a 429.
#[derive(Clone, Default)]
struct Echo {
    calls: Arc<AtomicUsize>,
}

impl AsyncProvider for Echo {
    fn name(&self) -> &str {
        "echo"
    }
    async fn complete(&self, r: LlmRequest) -> Result<LlmResponse, LlmError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let p = r.prompt().unwrap_or_default().to_owned();
        if p.starts_with("fail") {
            return Err(LlmError::RateLimited {
                provider: "echo".into(),
                message: "slow down".into(),
                retry_after: Some(std::time::Duration::from_millis(1500)),
            });
        }
        Ok(
            LlmResponse::text(format!("echo #{n}: {p}"), r.model, "echo")
                .with_usage(TokenUsage::new(3, 4, "m", "echo")),
        )
    }
}

/// A streaming service: yields the prompt's words as deltas, then `Done`; prompts starting with
/// `break` break off with an error after the first word.
#[derive(Clone, Default)]
struct Words {
    calls: Arc<AtomicUsize>,
}

impl Service<StreamRequest> for Words {
    type Response = LlmStream;
    type Error = LlmError;
    type Future = std::future::Ready<Result<LlmStream, LlmError>>;
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), LlmError>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: StreamRequest) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let p = req.0.prompt().unwrap_or_default().to_owned();
        let words: Vec<String> = p.split(' ').map(|w| format!("{w} ")).collect();
        let mut events: Vec<Result<StreamEvent, LlmError>> = Vec::new();
        if p.starts_with("break") {
            events.push(Ok(StreamEvent::Delta(words[0].clone())));
            events.push(Err(LlmError::Connection {
                provider: "words".into(),
                message: "connection reset".into(),
            }));
        } else {
            events.extend(words.iter().cloned().map(|w| Ok(StreamEvent::Delta(w))));
            events.push(Ok(StreamEvent::Done(
                LlmResponse::text(words.concat(), req.0.model.clone(), "words")
                    .with_usage(TokenUsage::new(2, 2, "m", "words")),
            )));
        }
        std::future::ready(Ok(Box::pin(futures_util::stream::iter(events)) as LlmStream))
    }
}

fn rec(path: &std::path::Path) -> Cassette {
    Cassette::builder(path)
        .mode(CassetteMode::Record)
        .scrubber(Scrubber::new())
        .build()
        .unwrap()
}

fn play(path: &std::path::Path) -> Cassette {
    Cassette::builder(path)
        .mode(CassetteMode::Replay)
        .scrubber(Scrubber::new())
        .build()
        .unwrap()
}

fn req(prompt: &str) -> LlmRequest {
    LlmRequest::new("gpt-4o-mini", prompt).with_temperature(0.2)
}

#[tokio::test]
async fn records_and_replays_responses_and_errors_without_the_provider() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    let echo = Echo::default();
    let r = rec(&path);
    let svc = r.layer().layer(provider::from_async(echo.clone()));
    let a = svc.clone().oneshot(req("one")).await.unwrap();
    let b = svc.clone().oneshot(req("two")).await.unwrap();
    let e = svc.clone().oneshot(req("fail now")).await.unwrap_err();
    assert_eq!(r.finish().unwrap().interactions, 3);
    assert_eq!(echo.calls.load(Ordering::SeqCst), 3);

    // Human-readable YAML.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("# flowloom cassette"), "{text}");
    assert!(text.contains("content: one"), "{text}");
    assert!(text.contains("kind: rate_limited"), "{text}");

    let p = play(&path);
    let svc = p.layer().layer(provider::from_async(echo.clone()));
    // Order of different requests does not matter.
    assert_eq!(svc.clone().oneshot(req("two")).await.unwrap(), b);
    assert_eq!(svc.clone().oneshot(req("one")).await.unwrap(), a);
    let e2 = svc.clone().oneshot(req("fail now")).await.unwrap_err();
    assert_eq!(e2, e);
    assert_eq!(
        e2.retry_after(),
        Some(std::time::Duration::from_millis(1500))
    );
    assert_eq!(
        echo.calls.load(Ordering::SeqCst),
        3,
        "replay must not call the provider"
    );
    p.finish().unwrap();
}

#[tokio::test]
async fn a_changed_request_fails_with_a_diff_against_the_nearest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    let r = rec(&path);
    let svc = r.layer().layer(provider::from_async(Echo::default()));
    svc.clone()
        .oneshot(req("Summarize this text:\nline two\nline three").with_system("Be brief."))
        .await
        .unwrap();
    svc.clone()
        .oneshot(req("something else entirely"))
        .await
        .unwrap();
    r.finish().unwrap();

    let p = play(&path);
    let changed = req("Summarize this text:\nline 2\nline three")
        .with_system("Be brief.")
        .with_temperature(0.9);
    let err = p.replayer().oneshot(changed).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("call 1 (chat) matches no recorded request"),
        "{msg}"
    );
    assert!(msg.contains("Nearest recorded: interaction 0"), "{msg}");
    assert!(msg.contains("temperature: recorded 0.2, now 0.9"), "{msg}");
    assert!(
        msg.contains("messages[1].content: (- recorded, + now)"),
        "{msg}"
    );
    assert!(msg.contains("    - line two\n    + line 2\n"), "{msg}");
    assert!(msg.contains("FLOWLOOM_CASSETTE=record"), "{msg}");
    assert!(!err.is_retryable());
    // finish reports the mismatch and the recordings never played.
    let fin = p.finish().unwrap_err().to_string();
    assert!(fin.contains("matches no recorded request"), "{fin}");
    assert!(
        fin.contains("interaction 1 (chat) was recorded but never requested"),
        "{fin}"
    );
}

#[tokio::test]
async fn repeated_identical_requests_play_back_in_order_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    let r = rec(&path);
    let svc = r.layer().layer(provider::from_async(Echo::default()));
    let first = svc.clone().oneshot(req("same")).await.unwrap();
    let second = svc.clone().oneshot(req("same")).await.unwrap();
    assert_ne!(first.content, second.content);
    r.finish().unwrap();

    let p = play(&path);
    assert_eq!(p.replayer().oneshot(req("same")).await.unwrap(), first);
    assert_eq!(p.replayer().oneshot(req("same")).await.unwrap(), second);
    let err = p
        .replayer()
        .oneshot(req("same"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("recorded 2 time(s)"), "{err}");

    let lenient = Cassette::builder(&path)
        .mode(CassetteMode::Replay)
        .repeat_last(true)
        .build()
        .unwrap();
    for want in [&first, &second, &second] {
        assert_eq!(
            &lenient.replayer().oneshot(req("same")).await.unwrap(),
            want
        );
    }
}

#[tokio::test]
async fn call_context_is_not_part_of_the_match_but_the_step_is_noted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    let r = rec(&path);
    let ctx = CallContext {
        step: Some("draft".into()),
        workflow: Some("wf".into()),
        ..Default::default()
    };
    r.layer()
        .layer(provider::from_async(Echo::default()))
        .oneshot(req("x").with_context(ctx))
        .await
        .unwrap();
    r.finish().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("step: draft"), "{text}");
    assert!(!text.contains("context"), "{text}");
    let other = CallContext {
        step: Some("other".into()),
        provider: Some("openai".into()),
        ..Default::default()
    };
    play(&path)
        .replayer()
        .oneshot(req("x").with_context(other))
        .await
        .unwrap();
}

#[tokio::test]
async fn streams_are_recorded_and_replayed_chunk_by_chunk_errors_included() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.yaml");
    let words = Words::default();
    let r = rec(&path);
    let svc = r.layer().layer(words.clone());
    let good = collect_stream(
        svc.clone()
            .oneshot(StreamRequest(req("a b c")))
            .await
            .unwrap(),
    )
    .await;
    let broken = collect_stream(
        svc.clone()
            .oneshot(StreamRequest(req("break here")))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(good.chunks, ["a ", "b ", "c "]);
    assert!(good.done.is_some());
    assert!(matches!(
        broken.error,
        Some(RecordedError::Connection { .. })
    ));
    r.finish().unwrap();

    let p = play(&path);
    let svc = p.layer().layer(words.clone());
    let mut s = svc
        .clone()
        .oneshot(StreamRequest(req("a b c")))
        .await
        .unwrap();
    let mut events = Vec::new();
    while let Some(e) = s.next().await {
        events.push(e.unwrap());
    }
    assert_eq!(events.len(), 4);
    assert!(matches!(&events[3], StreamEvent::Done(r) if r.content == "a b c "));
    let replayed = collect_stream(
        svc.clone()
            .oneshot(StreamRequest(req("break here")))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(replayed, broken);
    assert_eq!(words.calls.load(Ordering::SeqCst), 2);
    // A chat call does not match a stream recording: the kind is part of the key.
    let err = p
        .replayer()
        .oneshot(req("a b c"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("call kind: recorded stream, now chat"),
        "{err}"
    );
}

#[tokio::test]
async fn a_stream_dropped_early_is_recorded_with_what_was_seen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.yaml");
    let r = rec(&path);
    let svc = r.layer().layer(Words::default());
    let mut s = svc.oneshot(StreamRequest(req("x y z"))).await.unwrap();
    let _ = s.next().await;
    drop(s);
    let it = r.interactions();
    assert_eq!(it.len(), 1);
    let st = it[0].stream.as_ref().unwrap();
    assert_eq!(st.chunks, ["x "]);
    assert!(st.done.is_none() && st.error.is_none());
}

#[tokio::test]
async fn secrets_are_scrubbed_and_the_request_still_matches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    let canary = "canary-secret-4242";
    let r = Cassette::builder(&path)
        .mode(CassetteMode::Record)
        .scrubber(Scrubber::new())
        .secret(canary)
        .build()
        .unwrap();
    let request = req(&format!("use {canary} and sk-abcdefghijklmnop1234"))
        .with_extra("api_key", "whatever-value")
        .with_extra(
            "headers",
            serde_json::json!({"Authorization": "Bearer tok.tok.tok"}),
        );
    r.layer()
        .layer(provider::from_async(Echo::default()))
        .oneshot(request.clone())
        .await
        .unwrap();
    r.finish().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    for leaked in [
        canary,
        "sk-abcdefghijklmnop1234",
        "whatever-value",
        "tok.tok.tok",
    ] {
        assert!(!text.contains(leaked), "{leaked} leaked into:\n{text}");
    }
    assert!(text.contains(REDACTED));
    // Replay scrubs the live request the same way, so it matches.
    let p = Cassette::builder(&path)
        .mode(CassetteMode::Replay)
        .secret(canary)
        .build()
        .unwrap();
    let res = p.replayer().oneshot(request).await.unwrap();
    assert!(!res.content.contains(canary));
    // And the verifier accepts it.
    verify_file(&path).await.unwrap();
}

#[test]
fn works_the_same_through_the_blocking_client() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.yaml");
    let r = rec(&path);
    let client =
        BlockingClient::new(r.layer().layer(provider::from_async(Echo::default()))).unwrap();
    let live = client.call(req("sync")).unwrap();
    r.finish().unwrap();
    let p = play(&path);
    let client = BlockingClient::new(p.replayer()).unwrap();
    assert_eq!(client.call(req("sync")).unwrap(), live);
    let err = client.call(req("async")).unwrap_err().to_string();
    assert!(err.contains(r#"recorded "sync", now "async""#), "{err}");
}

#[test]
fn modes_parse_and_bad_values_say_what_is_allowed() {
    assert_eq!(
        CassetteMode::parse(" Record ").unwrap(),
        CassetteMode::Record
    );
    assert_eq!(CassetteMode::parse("auto").unwrap(), CassetteMode::Auto);
    let e = CassetteMode::parse("replya").unwrap_err().to_string();
    assert!(
        e.contains(r#""replya""#) && e.contains("`record`, `replay` or `auto`"),
        "{e}"
    );
}

#[tokio::test]
async fn auto_records_when_missing_and_replays_when_present() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auto.yaml");
    let echo = Echo::default();
    let a = Cassette::builder(&path)
        .mode(CassetteMode::Auto)
        .build()
        .unwrap();
    assert_eq!(a.mode(), CassetteMode::Record);
    a.layer()
        .layer(provider::from_async(echo.clone()))
        .oneshot(req("q"))
        .await
        .unwrap();
    a.finish().unwrap();
    let b = Cassette::builder(&path)
        .mode(CassetteMode::Auto)
        .build()
        .unwrap();
    assert_eq!(b.mode(), CassetteMode::Replay);
    b.layer()
        .layer(provider::from_async(echo.clone()))
        .oneshot(req("q"))
        .await
        .unwrap();
    assert_eq!(echo.calls.load(Ordering::SeqCst), 1);
}

#[test]
fn replay_of_a_missing_or_broken_cassette_says_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.yaml");
    let e = Cassette::builder(&missing)
        .mode(CassetteMode::Replay)
        .build()
        .unwrap_err();
    assert!(matches!(e, CassetteError::Missing { .. }));
    assert!(e.to_string().contains("FLOWLOOM_CASSETTE=record"), "{e}");

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "version: 1\ninteractions:\n- kind: chat\n  request: {model: m, messages: []}\n",
    )
    .unwrap();
    let e = Cassette::builder(&bad)
        .mode(CassetteMode::Replay)
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("interaction 0 has 0 of `response`, `error`, `stream`"),
        "{e}"
    );

    std::fs::write(&bad, "version: 9\ninteractions: []\n").unwrap();
    let e = Cassette::builder(&bad)
        .mode(CassetteMode::Replay)
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("version 9 is not supported"), "{e}");

    std::fs::write(&bad, "version: 1\nbogus: 1\n").unwrap();
    let e = Cassette::builder(&bad)
        .mode(CassetteMode::Replay)
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("bogus"), "{e}");
}

#[tokio::test]
async fn verify_rejects_a_cassette_with_a_secret_or_a_stale_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.yaml");
    let r = rec(&path);
    r.layer()
        .layer(provider::from_async(Echo::default()))
        .oneshot(req("hello"))
        .await
        .unwrap();
    r.finish().unwrap();
    verify_file(&path).await.unwrap();

    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("content: hello", "content: hello sk-abcdefghijklmnopqrs"),
    )
    .unwrap();
    let e = verify_file(&path).await.unwrap_err().to_string();
    assert!(e.contains("looks like it holds a secret"), "{e}");

    // A request written without a field the normalizer now adds (max_tokens default) is stale.
    std::fs::write(&path, text.replace("\n    max_tokens: 1024\n", "\n")).unwrap();
    let e = verify_file(&path).await.unwrap_err().to_string();
    assert!(e.contains("not what the request normalizes to now"), "{e}");
    assert!(e.contains("max_tokens: not recorded, now 1024"), "{e}");
}

#[tokio::test]
async fn concurrent_calls_record_and_replay_by_key_in_any_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("par.yaml");
    let r = rec(&path);
    let svc = r.layer().layer(provider::from_async(Echo::default()));
    let calls = (0..16).map(|i| svc.clone().oneshot(req(&format!("prompt {i}"))));
    let recorded: Vec<LlmResponse> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(r.finish().unwrap().interactions, 16);

    let p = play(&path);
    let calls = (0..16)
        .rev()
        .map(|i| p.replayer().oneshot(req(&format!("prompt {i}"))));
    let mut replayed: Vec<LlmResponse> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    replayed.reverse();
    assert_eq!(replayed, recorded);
    p.finish().unwrap();
}

/// Embeds each text as `[len, words]`.
struct Lengths;
impl flowloom_core::AsyncEmbedder for Lengths {
    fn name(&self) -> &str {
        "lengths"
    }
    async fn embed(
        &self,
        r: flowloom_core::EmbeddingRequest,
    ) -> Result<flowloom_core::EmbeddingResponse, LlmError> {
        if r.input.iter().any(|t| t == "fail") {
            return Err(LlmError::InvalidRequest {
                provider: "lengths".into(),
                message: "bad input".into(),
            });
        }
        Ok(flowloom_core::EmbeddingResponse {
            embeddings: r
                .input
                .iter()
                .map(|t| vec![t.len() as f32 / 3.0, t.split_whitespace().count() as f32])
                .collect(),
            model: r.model.clone(),
            provider: "lengths".into(),
            usage: Some(TokenUsage::new(2, 0, r.model, "lengths")),
            latency_ms: 0.5,
        })
    }
}

#[tokio::test]
async fn embeddings_are_recorded_and_replayed_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.yaml");
    let r = rec(&path);
    let svc = r.layer().layer(provider::from_async(Lengths));
    let req = |texts: &[&str]| {
        serde_json::from_value::<flowloom_core::EmbeddingRequest>(serde_json::json!({
            "model": "text-embedding-3-small",
            "input": texts,
        }))
        .unwrap()
    };
    let live = svc
        .clone()
        .oneshot(req(&["one two", "three"]))
        .await
        .unwrap();
    let failed = svc.clone().oneshot(req(&["fail"])).await.unwrap_err();
    r.finish().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("kind: embedding"), "{text}");

    let p = play(&path);
    assert_eq!(
        p.replayer()
            .oneshot(req(&["one two", "three"]))
            .await
            .unwrap(),
        live
    );
    assert_eq!(
        p.replayer().oneshot(req(&["fail"])).await.unwrap_err(),
        failed
    );
    let err = p
        .replayer()
        .oneshot(req(&["one two", "four"]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("call 3 (embedding) matches no recorded request"),
        "{err}"
    );
    assert!(
        err.contains(r#"input[1]: recorded "three", now "four""#),
        "{err}"
    );
    verify_file(&path).await.unwrap();
}
