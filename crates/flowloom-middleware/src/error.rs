//! The one error of this crate's own: a layer configured with a value it cannot use.

/// A layer was configured with a value it cannot use. Says which setting, the value found,
/// and what is allowed.
///
/// ```
/// use flowloom_middleware::retry::RetryPolicy;
/// let err = RetryPolicy::builder().max_attempts(0).build().unwrap_err();
/// assert_eq!(err.to_string(),
///     "invalid retry setting `max_attempts`: found 0, expected an integer ≥ 1 (1 = no retry)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {layer} setting `{setting}`: found {found}, expected {expected}")]
pub struct ConfigError {
    /// The layer (`retry`, `rate limit`, ...).
    pub layer: &'static str,
    /// The setting's name.
    pub setting: &'static str,
    /// The value found.
    pub found: String,
    /// What is allowed.
    pub expected: String,
}

impl ConfigError {
    pub(crate) fn new(
        layer: &'static str,
        setting: &'static str,
        found: impl std::fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        Self {
            layer,
            setting,
            found: found.to_string(),
            expected: expected.into(),
        }
    }
}
