//! Token usage of one model call, and sums of many.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validation::{ValidationError, ValidationErrors, non_empty};

/// Token consumption of one LLM operation, as the provider reported it.
///
/// A response whose provider did not report usage carries `None` (see
/// [`LlmResponse::usage`](crate::LlmResponse::usage)), never a zeroed `TokenUsage`.
///
/// ```
/// use flowloom_core::TokenUsage;
/// let u = TokenUsage::new(12, 3, "gpt-4o-mini", "openai");
/// assert_eq!(u.total_tokens, 15);
/// assert!(u.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TokenUsage {
    /// Tokens in the input prompt.
    pub prompt_tokens: u64,
    /// Tokens in the generated response.
    pub completion_tokens: u64,
    /// `prompt_tokens + completion_tokens`.
    pub total_tokens: u64,
    /// Of `prompt_tokens`, how many were served from the provider's prompt cache, where reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_prompt_tokens: Option<u64>,
    /// Of `completion_tokens`, how many were reasoning tokens, where reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
    /// Model name, e.g. `gpt-4o-mini`. `mixed` in a sum over several models.
    pub model: String,
    /// Provider name, e.g. `openai`. `mixed` in a sum over several providers.
    pub provider: String,
}

/// The name a sum of usage takes for `model` or `provider` when its parts differ.
pub const MIXED: &str = "mixed";

impl TokenUsage {
    /// Usage with `total_tokens` derived from the two counts.
    pub fn new(
        prompt_tokens: u64,
        completion_tokens: u64,
        model: impl Into<String>,
        provider: impl Into<String>,
    ) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            cached_prompt_tokens: None,
            reasoning_tokens: None,
            model: model.into(),
            provider: provider.into(),
        }
    }

    /// Checks the data model's rules: total = prompt + completion, model and provider non-empty,
    /// cached ≤ prompt and reasoning ≤ completion.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = Vec::new();
        let expected = self.prompt_tokens.checked_add(self.completion_tokens);
        if expected != Some(self.total_tokens) {
            errors.push(ValidationError::new(
                "total_tokens",
                self.total_tokens,
                format!(
                    "prompt_tokens + completion_tokens = {} + {}",
                    self.prompt_tokens, self.completion_tokens
                ),
            ));
        }
        if let Some(c) = self.cached_prompt_tokens
            && c > self.prompt_tokens
        {
            errors.push(ValidationError::new(
                "cached_prompt_tokens",
                c,
                format!("at most prompt_tokens ({})", self.prompt_tokens),
            ));
        }
        if let Some(r) = self.reasoning_tokens
            && r > self.completion_tokens
        {
            errors.push(ValidationError::new(
                "reasoning_tokens",
                r,
                format!("at most completion_tokens ({})", self.completion_tokens),
            ));
        }
        non_empty("model", &self.model, &mut errors);
        non_empty("provider", &self.provider, &mut errors);
        ValidationErrors::check(errors)
    }

    /// Adds `other` into `self`. Counts add exactly (saturating at `u64::MAX`); a model or
    /// provider that differs turns the name into [`MIXED`]; an optional detail stays `None`
    /// only when neither side reported it.
    pub fn accumulate(&mut self, other: &TokenUsage) {
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
        self.total_tokens = self.total_tokens.saturating_add(other.total_tokens);
        self.cached_prompt_tokens = add_opt(self.cached_prompt_tokens, other.cached_prompt_tokens);
        self.reasoning_tokens = add_opt(self.reasoning_tokens, other.reasoning_tokens);
        if self.model != other.model {
            self.model = MIXED.to_owned();
        }
        if self.provider != other.provider {
            self.provider = MIXED.to_owned();
        }
    }

    /// The sum of several usages; `None` when there are none.
    pub fn sum<'a>(usages: impl IntoIterator<Item = &'a TokenUsage>) -> Option<TokenUsage> {
        let mut it = usages.into_iter();
        let mut total = it.next()?.clone();
        for u in it {
            total.accumulate(u);
        }
        Some(total)
    }
}

fn add_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
    }
}
