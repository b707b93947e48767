//! [`ScriptError`]: why a mock script was rejected.

use std::fmt;
use std::path::PathBuf;

/// A mock script that could not be read or is malformed. Errors inside a rule name the rule
/// (1-based, with its `match`) and the field:
///
/// ```text
/// rule 2 (match "flaky"): field `sequence[0].error`: unknown error kind "ratelimit", expected one of rate_limit, server, timeout, auth, invalid_request, quota
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScriptError {
    /// The file could not be read.
    #[error("could not read the mock script `{}`: {message}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        message: String,
    },
    /// The text is not YAML.
    #[error("the mock script is not valid YAML: {message}")]
    Yaml {
        /// What the YAML parser said, with line and column.
        message: String,
    },
    /// The YAML does not describe a valid script.
    #[error("{}", InvalidDisplay { rule: *rule, rule_match: rule_match.as_deref(), field: field.as_deref(), message })]
    Invalid {
        /// The rule, counted from 1; `None` for top-level fields.
        rule: Option<usize>,
        /// The rule's `match`, when it has one.
        rule_match: Option<String>,
        /// The field path within the rule (or the script), e.g. `sequence[0].error`.
        field: Option<String>,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// An error in a script file.
    #[error("mock script `{}`: {source}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// The error.
        source: Box<ScriptError>,
    },
}

impl ScriptError {
    /// The rule the error is in (counted from 1), where it is in one.
    pub fn rule(&self) -> Option<usize> {
        match self {
            ScriptError::Invalid { rule, .. } => *rule,
            ScriptError::InFile { source, .. } => source.rule(),
            _ => None,
        }
    }

    /// The field the error is about, where there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ScriptError::Invalid { field, .. } => field.as_deref(),
            ScriptError::InFile { source, .. } => source.field(),
            _ => None,
        }
    }
}

struct InvalidDisplay<'a> {
    rule: Option<usize>,
    rule_match: Option<&'a str>,
    field: Option<&'a str>,
    message: &'a str,
}

impl fmt::Display for InvalidDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.rule {
            write!(f, "rule {n}")?;
            if let Some(m) = self.rule_match {
                write!(f, " (match {m:?})")?;
            }
            f.write_str(": ")?;
        }
        if let Some(field) = self.field {
            write!(f, "field `{field}`: ")?;
        }
        f.write_str(self.message)
    }
}
