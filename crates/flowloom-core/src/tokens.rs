//! Token estimates made before a call, when no tokenizer is at hand: one rule shared by the
//! rate limiter, the budget layer and the mock provider.
//!
//! The rule: a text is `ceil(characters / 4)` tokens, counting Unicode scalar values (so a
//! non-ASCII text is not counted three times over as it would be by bytes). A chat request's
//! prompt is, per message, its text plus 4 tokens of message framing, plus the tool
//! definitions serialized as JSON, when there are any ([`LlmRequest::estimated_prompt_tokens`]).
//!
//! ```
//! use flowloom_core::{LlmRequest, tokens};
//! assert_eq!(tokens::estimate_text_tokens("abcde"), 2);
//! let req = LlmRequest::new("m", "12345678");
//! assert_eq!(req.estimated_prompt_tokens(), 2 + 4);
//! ```

use crate::LlmRequest;

/// Tokens of message framing counted per message by [`LlmRequest::estimated_prompt_tokens`].
pub const TOKENS_PER_MESSAGE: u64 = 4;

/// Tokens estimated for `chars` characters: `ceil(chars / 4)`.
pub fn estimate_tokens_for_chars(chars: u64) -> u64 {
    chars.div_ceil(4)
}

/// Tokens estimated for one text: `ceil(characters / 4)`, so `""` is 0.
///
/// ```
/// use flowloom_core::estimate_text_tokens;
/// assert_eq!(estimate_text_tokens(""), 0);
/// assert_eq!(estimate_text_tokens("abcd"), 1);
/// assert_eq!(estimate_text_tokens("héllo wörld"), 3); // 11 characters
/// ```
pub fn estimate_text_tokens(text: &str) -> u64 {
    estimate_tokens_for_chars(text.chars().count() as u64)
}

impl LlmRequest {
    /// The estimated input tokens of this request before it is made: for every message,
    /// [`estimate_text_tokens`] of its content plus [`TOKENS_PER_MESSAGE`]; plus, when
    /// `tools` is not empty, [`estimate_text_tokens`] of the tools serialized as JSON.
    /// `max_tokens` is not included (add it for a whole-call estimate).
    ///
    /// ```
    /// use flowloom_core::LlmRequest;
    /// let req = LlmRequest::new("m", "1234").with_system("12345678");
    /// assert_eq!(req.estimated_prompt_tokens(), (1 + 4) + (2 + 4));
    /// ```
    pub fn estimated_prompt_tokens(&self) -> u64 {
        let messages: u64 = self
            .messages
            .iter()
            .map(|m| estimate_text_tokens(&m.content) + TOKENS_PER_MESSAGE)
            .sum();
        let tools = if self.tools.is_empty() {
            0
        } else {
            serde_json::to_string(&self.tools)
                .map(|s| estimate_text_tokens(&s))
                .unwrap_or(0)
        };
        messages + tools
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rule_counts_characters_not_bytes() {
        assert_eq!(estimate_text_tokens(""), 0);
        assert_eq!(estimate_text_tokens("abcd"), 1);
        assert_eq!(estimate_text_tokens("abcde"), 2);
        assert_eq!(estimate_text_tokens("éééé"), 1);
        assert_eq!(estimate_tokens_for_chars(9), 3);
    }

    #[test]
    fn prompt_counts_messages_and_framing() {
        assert_eq!(
            LlmRequest::new("m", "12345678").estimated_prompt_tokens(),
            6
        );
        let two = LlmRequest::new("m", "1234").with_system("12345678");
        assert_eq!(two.estimated_prompt_tokens(), 1 + 4 + 2 + 4);
        // max_tokens is not part of the prompt.
        let big = LlmRequest::new("m", "1234").with_max_tokens(500);
        assert_eq!(big.estimated_prompt_tokens(), 5);
    }

    #[test]
    fn prompt_counts_tool_definitions() {
        let mut req = LlmRequest::new("m", "1234");
        req.tools.push(crate::ToolDefinition {
            name: "lookup".into(),
            description: None,
            parameters: serde_json::json!({"type": "object"}),
            strict: None,
        });
        let json = serde_json::to_string(&req.tools).unwrap();
        assert!(req.estimated_prompt_tokens() > 5);
        assert_eq!(
            req.estimated_prompt_tokens(),
            5 + estimate_text_tokens(&json)
        );
    }
}
