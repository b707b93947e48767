//! One real call to OpenAI, skipped unless `OPENAI_API_KEY` is set and `FLOWLOOM_LIVE_TESTS=1`.
//! It spends well under $0.01: gpt-4o-mini, a one-line prompt, at most 5 completion tokens.
//!
//! ```text
//! FLOWLOOM_LIVE_TESTS=1 OPENAI_API_KEY=sk-... cargo test -p flowloom-provider-openai --test live -- --ignored
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use flowloom_core::LlmRequest;
use flowloom_provider_openai::OpenAiProvider;
use tower::ServiceExt;

#[tokio::test]
#[ignore = "calls the real OpenAI API; needs OPENAI_API_KEY and FLOWLOOM_LIVE_TESTS=1"]
async fn live_chat_completion_with_usage() {
    if std::env::var("FLOWLOOM_LIVE_TESTS").as_deref() != Ok("1")
        || std::env::var("OPENAI_API_KEY").map_or(true, |k| k.trim().is_empty())
    {
        eprintln!("skipped: set OPENAI_API_KEY and FLOWLOOM_LIVE_TESTS=1 to run");
        return;
    }
    let provider = OpenAiProvider::from_env().unwrap();
    let res = provider
        .oneshot(
            LlmRequest::new("gpt-4o-mini", "Reply with the single word: pong")
                .with_max_tokens(5)
                .with_temperature(0.0),
        )
        .await
        .unwrap();
    assert!(!res.content.is_empty());
    let usage = res.usage.as_ref().expect("OpenAI reports usage");
    assert!(usage.prompt_tokens > 0 && usage.completion_tokens <= 5);
    assert!(res.response_id.is_some());
    res.validate().unwrap();
}
