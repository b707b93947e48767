//! What the layers need to know about a request and its response, so one layer serves both
//! chat ([`LlmRequest`] → [`LlmResponse`]) and embeddings ([`EmbeddingRequest`] →
//! [`EmbeddingResponse`]).
//!
//! Both traits are implemented for the two contracts; a user never needs to implement them.

use flowloom_core::{
    AttemptRecord, CallContext, EmbeddingRequest, EmbeddingResponse, LlmRequest, LlmResponse,
    TokenUsage,
};

/// A request a layer can retry, time, rate-limit, fail over or guard.
pub trait ModelRequest: Clone + Send + 'static {
    /// The model asked for.
    fn model(&self) -> &str;
    /// Replaces the model (a failover entry's override).
    fn set_model(&mut self, model: &str);
    /// Where the call comes from.
    fn context(&self) -> &CallContext;
    /// Where the call comes from, mutably (failover sets the provider it routes to).
    fn context_mut(&mut self) -> &mut CallContext;
    /// The tokens this call is expected to use, before it is made (see
    /// [`estimate_tokens`](crate::rate_limit::estimate_tokens)).
    fn estimated_tokens(&self) -> u64;
    /// Applies a failover entry's overrides of temperature and max tokens (ignored by
    /// embeddings, which have neither).
    fn apply_overrides(&mut self, temperature: Option<f64>, max_tokens: Option<u32>);
    /// Every text the request sends, mutably (message contents, or the texts to embed).
    fn texts_mut(&mut self) -> Vec<&mut String>;
    /// Every text the request sends, with the role it is sent as (`user`, `system`,
    /// `assistant`, `tool`, or `input` for embeddings).
    fn texts(&self) -> Vec<(&'static str, &str)>;
    /// The provider the call is routed to, for error messages: the context's provider, or
    /// `fallback`.
    fn provider_or<'a>(&'a self, fallback: &'a str) -> &'a str {
        self.context().provider.as_deref().unwrap_or(fallback)
    }
}

/// A response a layer can annotate.
pub trait ModelResponse: Send + 'static {
    /// Appends records of attempts that failed before this answer, in front of those the
    /// response already carries (embedding responses have no such field and drop them).
    fn prepend_attempts(&mut self, attempts: Vec<AttemptRecord>);
    /// The usage the provider reported.
    fn usage(&self) -> Option<&TokenUsage>;
    /// Sets the name of the provider that answered.
    fn set_provider(&mut self, provider: &str);
}

fn role_name(role: flowloom_core::Role) -> &'static str {
    match role {
        flowloom_core::Role::System => "system",
        flowloom_core::Role::User => "user",
        flowloom_core::Role::Assistant => "assistant",
        flowloom_core::Role::Tool => "tool",
    }
}

impl ModelRequest for LlmRequest {
    fn model(&self) -> &str {
        &self.model
    }
    fn set_model(&mut self, model: &str) {
        model.clone_into(&mut self.model);
    }
    fn context(&self) -> &CallContext {
        &self.context
    }
    fn context_mut(&mut self) -> &mut CallContext {
        &mut self.context
    }
    fn estimated_tokens(&self) -> u64 {
        crate::rate_limit::estimate_tokens(self)
    }
    fn apply_overrides(&mut self, temperature: Option<f64>, max_tokens: Option<u32>) {
        if let Some(t) = temperature {
            self.temperature = t;
        }
        if let Some(m) = max_tokens {
            self.max_tokens = m;
        }
    }
    fn texts_mut(&mut self) -> Vec<&mut String> {
        self.messages.iter_mut().map(|m| &mut m.content).collect()
    }
    fn texts(&self) -> Vec<(&'static str, &str)> {
        self.messages
            .iter()
            .map(|m| (role_name(m.role), m.content.as_str()))
            .collect()
    }
}

impl ModelRequest for EmbeddingRequest {
    fn model(&self) -> &str {
        &self.model
    }
    fn set_model(&mut self, model: &str) {
        model.clone_into(&mut self.model);
    }
    fn context(&self) -> &CallContext {
        &self.context
    }
    fn context_mut(&mut self) -> &mut CallContext {
        &mut self.context
    }
    fn estimated_tokens(&self) -> u64 {
        crate::rate_limit::estimate_embedding_tokens(self)
    }
    fn apply_overrides(&mut self, _temperature: Option<f64>, _max_tokens: Option<u32>) {}
    fn texts_mut(&mut self) -> Vec<&mut String> {
        self.input.iter_mut().collect()
    }
    fn texts(&self) -> Vec<(&'static str, &str)> {
        self.input.iter().map(|t| ("input", t.as_str())).collect()
    }
}

impl ModelResponse for LlmResponse {
    fn prepend_attempts(&mut self, mut attempts: Vec<AttemptRecord>) {
        if attempts.is_empty() {
            return;
        }
        attempts.append(&mut self.attempts);
        self.attempts = attempts;
    }
    fn usage(&self) -> Option<&TokenUsage> {
        self.usage.as_ref()
    }
    fn set_provider(&mut self, provider: &str) {
        if self.provider != provider {
            provider.clone_into(&mut self.provider);
        }
    }
}

impl ModelResponse for EmbeddingResponse {
    fn prepend_attempts(&mut self, _attempts: Vec<AttemptRecord>) {}
    fn usage(&self) -> Option<&TokenUsage> {
        self.usage.as_ref()
    }
    fn set_provider(&mut self, provider: &str) {
        if self.provider != provider {
            provider.clone_into(&mut self.provider);
        }
    }
}

/// A record of one failed attempt.
pub(crate) fn failed_attempt(
    provider: &str,
    model: &str,
    error: &flowloom_core::LlmError,
    took: std::time::Duration,
) -> AttemptRecord {
    AttemptRecord {
        provider: error.provider().unwrap_or(provider).to_owned(),
        model: model.to_owned(),
        error: Some(error.to_string()),
        status: error.status(),
        duration_ms: took.as_secs_f64() * 1000.0,
    }
}
