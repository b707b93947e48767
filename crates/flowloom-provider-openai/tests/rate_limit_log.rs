//! `x-ratelimit-*` headers are logged at debug level. In a file of its own: tracing caches
//! whether a log site is enabled per process, and other tests calling the same site while no
//! subscriber is set could make the cached answer "never".

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use flowloom_core::{LlmError, LlmRequest};
use flowloom_provider_openai::OpenAiProvider;
use flowloom_testkit::server::{Fault, MockOpenAiServer};
use tower::ServiceExt;

const KEY: &str = "sk-test-key-0123456789";

#[tokio::test]
async fn rate_limit_headers_are_logged_at_debug() {
    #[derive(Clone, Default)]
    struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }
    let buf = Buf::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(buf.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = MockOpenAiServer::start().await.unwrap();
    server.push_fault(
        Fault::rate_limited(Some(1))
            .with_header("x-ratelimit-remaining-requests", "0")
            .with_header("x-ratelimit-reset-requests", "1s"),
    );
    let provider = OpenAiProvider::builder()
        .api_key(KEY)
        .base_url(server.base_url())
        .build()
        .unwrap();
    let e = provider
        .oneshot(LlmRequest::new("m", "hi"))
        .await
        .unwrap_err();
    assert!(matches!(e, LlmError::RateLimited { .. }));
    let logged = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(
        logged.contains("x-ratelimit-remaining-requests=0"),
        "{logged}"
    );
    assert!(logged.contains("x-ratelimit-reset-requests=1s"), "{logged}");
    assert!(logged.contains("DEBUG"), "{logged}");
    assert!(!logged.contains(KEY), "{logged}");
}
