//! Validation errors shared by every model type.

use std::fmt;

/// One invalid value: which field, what was found, and what is allowed.
///
/// ```
/// use flowloom_core::ValidationError;
/// let e = ValidationError::new("temperature", "3.5", "a number from 0.0 to 2.0");
/// assert_eq!(e.to_string(), "invalid `temperature`: found 3.5, expected a number from 0.0 to 2.0");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    /// The field path, e.g. `temperature` or `usage.total_tokens`.
    pub field: String,
    /// The value found, rendered for people (secrets are never put here).
    pub value: String,
    /// What is allowed, e.g. `a number from 0.0 to 2.0`.
    pub expected: String,
}

impl ValidationError {
    /// Builds an error for `field`, with the `value` found and the `expected` range.
    pub fn new(
        field: impl Into<String>,
        value: impl fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }

    /// Prefixes the field path, e.g. `usage` + `total_tokens` = `usage.total_tokens`.
    #[must_use]
    pub fn within(mut self, parent: &str) -> Self {
        self.field = format!("{parent}.{}", self.field);
        self
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid `{}`: found {}, expected {}",
            self.field, self.value, self.expected
        )
    }
}

/// Every invalid value of one object, reported together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl ValidationErrors {
    /// The individual errors.
    pub fn errors(&self) -> &[ValidationError] {
        &self.0
    }

    /// `Ok(())` when `errors` is empty, otherwise all of them.
    pub fn check(errors: Vec<ValidationError>) -> Result<(), ValidationErrors> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(errors))
        }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

pub(crate) fn non_empty(field: &str, value: &str, errors: &mut Vec<ValidationError>) {
    if value.trim().is_empty() {
        errors.push(ValidationError::new(
            field,
            format!("{value:?}"),
            "a non-empty string",
        ));
    }
}

pub(crate) fn temperature(field: &str, value: f64, errors: &mut Vec<ValidationError>) {
    if !(0.0..=2.0).contains(&value) || value.is_nan() {
        errors.push(ValidationError::new(
            field,
            value,
            "a number from 0.0 to 2.0",
        ));
    }
}

/// The largest `max_tokens` the data model allows.
pub const MAX_TOKENS_LIMIT: u32 = 128_000;

pub(crate) fn max_tokens(field: &str, value: u32, errors: &mut Vec<ValidationError>) {
    if !(1..=MAX_TOKENS_LIMIT).contains(&value) {
        errors.push(ValidationError::new(
            field,
            value,
            "an integer from 1 to 128000",
        ));
    }
}
