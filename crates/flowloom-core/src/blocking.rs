//! Calling a service from code without an async runtime.

use tower::{Service, ServiceExt};

use crate::error::LlmError;

/// Calls any provider service from blocking code, on a small runtime of its own.
///
/// Calling it from inside an async runtime is an error ([`LlmError::Unsupported`]), not a
/// panic or a deadlock: async code should `.await` the service instead. Dropping it inside an
/// async runtime does not panic either: its runtime is then shut down in the background.
///
/// ```
/// use flowloom_core::{AsyncProvider, LlmError, LlmRequest, LlmResponse, provider, BlockingClient};
/// struct Echo;
/// impl AsyncProvider for Echo {
///     fn name(&self) -> &str { "echo" }
///     async fn complete(&self, r: LlmRequest) -> Result<LlmResponse, LlmError> {
///         let text = r.prompt().unwrap_or_default().to_owned();
///         Ok(LlmResponse::text(text, r.model, "echo"))
///     }
/// }
/// let client = BlockingClient::new(provider::from_async(Echo)).unwrap();
/// let res = client.call(LlmRequest::new("m", "hello")).unwrap();
/// assert_eq!(res.content, "hello");
/// ```
#[derive(Debug)]
pub struct BlockingClient<S> {
    service: S,
    /// Always `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

impl<S> BlockingClient<S> {
    /// Wraps `service` with a runtime of one worker thread (timers and I/O enabled). Many
    /// threads may call [`BlockingClient::call`] at once.
    pub fn new(service: S) -> Result<Self, LlmError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("flowloom-blocking")
            .enable_all()
            .build()
            .map_err(|e| LlmError::Other {
                provider: "blocking client".to_owned(),
                message: format!("could not start a runtime: {e}"),
            })?;
        Ok(Self {
            service,
            runtime: Some(runtime),
        })
    }

    /// Calls the service and waits for its answer.
    pub fn call<R>(&self, request: R) -> Result<S::Response, LlmError>
    where
        S: Service<R, Error = LlmError> + Clone,
    {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(LlmError::Unsupported {
                provider: "blocking client".to_owned(),
                feature:
                    "blocking calls from inside an async runtime; `.await` the service instead"
                        .to_owned(),
            });
        }
        match &self.runtime {
            Some(rt) => rt.block_on(self.service.clone().oneshot(request)),
            None => Err(LlmError::Cancelled),
        }
    }
}

impl<S> Drop for BlockingClient<S> {
    fn drop(&mut self) {
        // Dropping a runtime waits for its threads, which tokio forbids (with a panic) inside
        // an async context; there, let it shut down in the background instead.
        if let Some(rt) = self.runtime.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            rt.shutdown_background();
        }
    }
}
