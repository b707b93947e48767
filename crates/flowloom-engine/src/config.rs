//! Loading [`FrameworkConfig`]: `FLOWLOOM_*` environment variables over an optional YAML file
//! over the defaults, validated once, with every bad value reported at once.
//!
//! | Variable | Field | Example |
//! | --- | --- | --- |
//! | `FLOWLOOM_CONFIG` | path of a YAML file with the fields below | `flowloom.yaml` |
//! | `FLOWLOOM_DEFAULT_MODEL` | `default_model` | `gpt-4o-mini` |
//! | `FLOWLOOM_DEFAULT_TEMPERATURE` | `default_temperature` | `0.7` |
//! | `FLOWLOOM_DEFAULT_MAX_TOKENS` | `default_max_tokens` | `1024` |
//! | `FLOWLOOM_DEFAULT_TIMEOUT` | `default_timeout_seconds` | `30`, `30s`, `5m`, `1m30s`, `none` |
//! | `FLOWLOOM_DEFAULT_MODE` | `default_execution_mode` | `async` or `sync` |
//! | `FLOWLOOM_MAX_RETRIES` | `max_retry_attempts` | `3` |
//! | `FLOWLOOM_RETRY_BACKOFF` | `retry_backoff_factor` | `2.0` |
//! | `FLOWLOOM_LOG_LEVEL` | `log_level` | `INFO` |
//! | `FLOWLOOM_LOG_PROMPTS` | `log_prompts` | `true` / `false` |
//! | `OPENAI_API_KEY` | `openai_api_key` (never printed) | |
//! | `OPENAI_BASE_URL` | `openai_base_url` | `https://api.openai.com/v1` |
//!
//! ```
//! use flowloom_engine::ConfigLoader;
//! let err = ConfigLoader::new()
//!     .env_var("FLOWLOOM_DEFAULT_TEMPERATURE", "hot")
//!     .env_var("FLOWLOOM_MAX_RETRIES", "0")
//!     .load()
//!     .unwrap_err();
//! let text = err.to_string();
//! assert!(text.contains(r#"FLOWLOOM_DEFAULT_TEMPERATURE="hot": expected a number from 0.0 to 2.0, e.g. 0.7"#), "{text}");
//! assert!(text.contains(r#"FLOWLOOM_MAX_RETRIES="0""#), "{text}");
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use flowloom_core::{ExecutionMode, FrameworkConfig, LogLevel, Secret};

/// One bad configuration value: where it came from, what was found, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The source: an environment variable name, or `file.yaml: field`.
    pub source: String,
    /// The value found (secrets are never put here).
    pub found: String,
    /// What is expected, with an example.
    pub expected: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={}: expected {}",
            self.source, self.found, self.expected
        )
    }
}

/// The configuration is invalid; every problem is listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Values are invalid.
    #[error("{}", fmt_problems(.0))]
    Invalid(Vec<ConfigProblem>),
    /// The config file could not be read or parsed.
    #[error("config file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong, with line and column where known.
        message: String,
    },
}

fn fmt_problems(p: &[ConfigProblem]) -> String {
    let mut s = format!(
        "invalid configuration ({} problem{}):",
        p.len(),
        if p.len() == 1 { "" } else { "s" }
    );
    for x in p {
        s.push_str("\n  - ");
        s.push_str(&x.to_string());
    }
    s
}

impl ConfigError {
    /// The individual problems (empty for file errors).
    pub fn problems(&self) -> &[ConfigProblem] {
        match self {
            ConfigError::Invalid(p) => p,
            ConfigError::File { .. } => &[],
        }
    }
}

/// Loads a [`FrameworkConfig`] from environment variables, a file and defaults. The
/// environment is injectable so tests need not touch the process's.
#[derive(Debug, Clone, Default)]
pub struct ConfigLoader {
    env: BTreeMap<String, String>,
    file: Option<PathBuf>,
}

const VARS: &[&str] = &[
    "FLOWLOOM_CONFIG",
    "FLOWLOOM_DEFAULT_MODEL",
    "FLOWLOOM_DEFAULT_TEMPERATURE",
    "FLOWLOOM_DEFAULT_MAX_TOKENS",
    "FLOWLOOM_DEFAULT_TIMEOUT",
    "FLOWLOOM_DEFAULT_MODE",
    "FLOWLOOM_MAX_RETRIES",
    "FLOWLOOM_RETRY_BACKOFF",
    "FLOWLOOM_LOG_LEVEL",
    "FLOWLOOM_LOG_PROMPTS",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
];

impl ConfigLoader {
    /// A loader with no environment and no file (defaults only).
    pub fn new() -> Self {
        Self::default()
    }

    /// A loader reading the process environment (the variables in the module docs).
    pub fn from_process_env() -> Self {
        let mut l = Self::new();
        for v in VARS {
            if let Ok(val) = std::env::var(v) {
                l.env.insert((*v).to_owned(), val);
            }
        }
        l
    }

    /// Sets one environment variable for this loader.
    #[must_use]
    pub fn env_var(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(name.into(), value.into());
        self
    }

    /// Reads this YAML file (under the environment variables); overrides `FLOWLOOM_CONFIG`.
    #[must_use]
    pub fn file(mut self, path: impl AsRef<Path>) -> Self {
        self.file = Some(path.as_ref().to_path_buf());
        self
    }

    /// Loads and validates the configuration.
    pub fn load(&self) -> Result<FrameworkConfig, ConfigError> {
        let path = self
            .file
            .clone()
            .or_else(|| self.env.get("FLOWLOOM_CONFIG").map(PathBuf::from));
        let mut config = match &path {
            Some(p) => read_file(p)?,
            None => FrameworkConfig::default(),
        };
        let from_file = |field: &str| -> String {
            match &path {
                Some(p) => format!("{}: {field}", p.display()),
                None => field.to_owned(),
            }
        };
        let mut problems = Vec::new();
        let mut sources: BTreeMap<&str, String> = BTreeMap::new();
        let mut bad = |var: &str, val: &str, expected: &str| {
            problems.push(ConfigProblem {
                source: var.to_owned(),
                found: format!("{val:?}"),
                expected: expected.to_owned(),
            });
        };
        let get = |k: &str| self.env.get(k).map(|v| v.trim().to_owned());

        if let Some(v) = get("FLOWLOOM_DEFAULT_MODEL") {
            sources.insert("default_model", "FLOWLOOM_DEFAULT_MODEL".into());
            config.default_model = v;
        }
        if let Some(v) = get("FLOWLOOM_DEFAULT_TEMPERATURE") {
            sources.insert("default_temperature", "FLOWLOOM_DEFAULT_TEMPERATURE".into());
            match v.parse::<f64>() {
                Ok(t) => config.default_temperature = t,
                Err(_) => bad(
                    "FLOWLOOM_DEFAULT_TEMPERATURE",
                    &v,
                    "a number from 0.0 to 2.0, e.g. 0.7",
                ),
            }
        }
        if let Some(v) = get("FLOWLOOM_DEFAULT_MAX_TOKENS") {
            sources.insert("default_max_tokens", "FLOWLOOM_DEFAULT_MAX_TOKENS".into());
            match v.parse::<u32>() {
                Ok(t) => config.default_max_tokens = t,
                Err(_) => bad(
                    "FLOWLOOM_DEFAULT_MAX_TOKENS",
                    &v,
                    "an integer from 1 to 128000, e.g. 1024",
                ),
            }
        }
        if let Some(v) = get("FLOWLOOM_DEFAULT_TIMEOUT") {
            sources.insert("default_timeout_seconds", "FLOWLOOM_DEFAULT_TIMEOUT".into());
            match parse_timeout(&v) {
                Some(t) => config.default_timeout_seconds = t,
                None => bad(
                    "FLOWLOOM_DEFAULT_TIMEOUT",
                    &v,
                    "seconds > 0 (`30`) or a duration (`30s`, `5m`, `1h`, `500ms`, `1m30s`), or `none` for no timeout",
                ),
            }
        }
        if let Some(v) = get("FLOWLOOM_DEFAULT_MODE") {
            match v.to_ascii_lowercase().as_str() {
                "async" => config.default_execution_mode = ExecutionMode::Async,
                "sync" => config.default_execution_mode = ExecutionMode::Sync,
                _ => bad("FLOWLOOM_DEFAULT_MODE", &v, "`async` or `sync`"),
            }
        }
        if let Some(v) = get("FLOWLOOM_MAX_RETRIES") {
            sources.insert("max_retry_attempts", "FLOWLOOM_MAX_RETRIES".into());
            match v.parse::<u32>() {
                Ok(t) => config.max_retry_attempts = t,
                Err(_) => bad(
                    "FLOWLOOM_MAX_RETRIES",
                    &v,
                    "an integer from 1 to 10 (attempts per call; 1 = no retry), e.g. 3",
                ),
            }
        }
        if let Some(v) = get("FLOWLOOM_RETRY_BACKOFF") {
            sources.insert("retry_backoff_factor", "FLOWLOOM_RETRY_BACKOFF".into());
            match v.parse::<f64>() {
                Ok(t) => config.retry_backoff_factor = t,
                Err(_) => bad(
                    "FLOWLOOM_RETRY_BACKOFF",
                    &v,
                    "a number from 1.0 to 10.0, e.g. 2.0",
                ),
            }
        }
        if let Some(v) = get("FLOWLOOM_LOG_LEVEL") {
            match LogLevel::parse(&v) {
                Ok(l) => config.log_level = l,
                Err(_) => bad(
                    "FLOWLOOM_LOG_LEVEL",
                    &v,
                    "one of TRACE, DEBUG, INFO, WARN, ERROR, e.g. INFO",
                ),
            }
        }
        if let Some(v) = get("FLOWLOOM_LOG_PROMPTS") {
            match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => config.log_prompts = true,
                "0" | "false" | "no" | "off" | "" => config.log_prompts = false,
                _ => bad("FLOWLOOM_LOG_PROMPTS", &v, "`true` or `false`"),
            }
        }
        if let Some(v) = self.env.get("OPENAI_API_KEY") {
            config.openai_api_key = Secret::new(v.trim());
        }
        if let Some(v) = get("OPENAI_BASE_URL") {
            sources.insert("openai_base_url", "OPENAI_BASE_URL".into());
            config.openai_base_url = if v.is_empty() { None } else { Some(v) };
        }
        // Range checks on the merged values, reported against where each came from.
        if let Err(errs) = config.validate() {
            for e in errs.errors() {
                let source = sources
                    .get(e.field.as_str())
                    .cloned()
                    .unwrap_or_else(|| from_file(&e.field));
                let found = match sources.get(e.field.as_str()) {
                    Some(var) => format!("{:?}", self.env.get(var).map(|s| s.trim()).unwrap_or("")),
                    None => e.value.clone(),
                };
                if problems.iter().any(|p| p.source == source) {
                    continue;
                }
                problems.push(ConfigProblem {
                    source,
                    found,
                    expected: example_for(&e.field, &e.expected),
                });
            }
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}

fn example_for(field: &str, expected: &str) -> String {
    let eg = match field {
        "default_temperature" => ", e.g. 0.7",
        "default_max_tokens" => ", e.g. 1024",
        "max_retry_attempts" => ", e.g. 3",
        "retry_backoff_factor" => ", e.g. 2.0",
        "default_model" => ", e.g. gpt-4o-mini",
        "default_timeout_seconds" => ", e.g. 30",
        _ => "",
    };
    format!("{expected}{eg}")
}

/// `30`, `2.5` (bare seconds), `30s`, `5m`, `1h`, `500ms`, `1m30s` (the shared
/// [`flowloom_core::duration`] forms), `none`/`off`/`` → seconds (`None` = no timeout).
fn parse_timeout(v: &str) -> Option<Option<f64>> {
    let v = v.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("none") || v.eq_ignore_ascii_case("off") {
        return Some(None);
    }
    if v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = v.parse().ok()?;
        return (secs > 0.0 && secs.is_finite()).then_some(Some(secs));
    }
    flowloom_core::duration::parse_positive(v)
        .ok()
        .map(|d| Some(d.as_secs_f64()))
}

fn read_file(path: &Path) -> Result<FrameworkConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.to_path_buf(),
        message: format!("cannot be read: {e}; check FLOWLOOM_CONFIG or the path given"),
    })?;
    if text.trim().is_empty() {
        return Ok(FrameworkConfig::default());
    }
    serde_yaml::from_str(&text).map_err(|e| ConfigError::File {
        path: path.to_path_buf(),
        message: match e.location() {
            Some(l) => format!(
                "line {}, column {}: {e}; fields are those of FrameworkConfig, e.g. `default_model: gpt-4o-mini`",
                l.line(),
                l.column()
            ),
            None => format!("{e}"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse() {
        assert_eq!(parse_timeout("30"), Some(Some(30.0)));
        assert_eq!(parse_timeout("5m"), Some(Some(300.0)));
        assert_eq!(parse_timeout("none"), Some(None));
        assert_eq!(parse_timeout("-1"), None);
        assert_eq!(parse_timeout("soon"), None);
        assert_eq!(parse_timeout("1m30s"), Some(Some(90.0)));
        assert_eq!(parse_timeout("500ms"), Some(Some(0.5)));
        assert_eq!(parse_timeout("0s"), None);
    }
}
