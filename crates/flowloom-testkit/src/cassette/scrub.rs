//! Secret scrubbing and request normalization.

use std::sync::{Arc, LazyLock};

use flowloom_core::{CallContext, EmbeddingRequest, LlmRequest, Secret};
use regex::Regex;
use serde_json::{Map, Value};

/// What a scrubbed secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Secrets shorter than this are not scrubbed by value (they would blank out ordinary words).
pub const MIN_SECRET_LEN: usize = 6;

// Credential patterns; group 1 is the part kept (may be empty).
static PATTERNS: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    [
        // `Authorization: Bearer xyz`, `"authorization":"Basic xyz"`
        r#"(?i)(authorization["']?\s*[:=]\s*["']?\s*(?:bearer|basic|token)?\s*)[^\s"',;}\]]+"#,
        // `Bearer xyz`
        r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]{6,}",
        // `x-api-key: xyz`, `api_key=xyz`, `"apiKey": "xyz"`
        r#"(?i)((?:x-)?api[-_]?key["']?\s*[:=]\s*["']?)[^\s"',;}\]]+"#,
        // OpenAI-style keys: sk-..., sk-proj-...
        r"()\bsk-[A-Za-z0-9_-]{8,}",
    ]
    .iter()
    .filter_map(|p| Regex::new(p).ok())
    .collect()
});

/// Object keys whose values are always secrets, wherever they appear (compared in lower case,
/// with `-` read as `_`).
const SECRET_KEYS: &[&str] = &[
    "api_key",
    "apikey",
    "authorization",
    "x_api_key",
    "password",
    "secret",
    "client_secret",
    "access_token",
    "refresh_token",
];

/// Removes secrets from everything written to a cassette: API keys (`sk-…`),
/// `Authorization`/`Bearer` values, `api-key` headers, values under secret-named keys
/// (`api_key`, `authorization`, `password`, ...), and configured secret values (by default the
/// value of `OPENAI_API_KEY`, when set).
///
/// ```
/// use flowloom_testkit::cassette::Scrubber;
/// let s = Scrubber::new().with_secret("hunter2-canary");
/// let clean = s.scrub_str("key hunter2-canary, Authorization: Bearer abc.def, sk-live0123456789");
/// assert!(!clean.contains("hunter2") && !clean.contains("abc.def") && !clean.contains("sk-live"));
/// ```
#[derive(Clone, Default)]
pub struct Scrubber {
    secrets: Arc<Vec<String>>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrubber")
            .field(
                "secrets",
                &format_args!("{} configured", self.secrets.len()),
            )
            .finish()
    }
}

impl Scrubber {
    /// A scrubber with the built-in patterns and no configured values.
    pub fn new() -> Self {
        Self::default()
    }

    /// The built-in patterns plus the values of `OPENAI_API_KEY` and `FLOWLOOM_SECRETS`
    /// (comma-separated), where set.
    pub fn from_env() -> Self {
        let mut s = Self::new();
        if let Ok(k) = std::env::var("OPENAI_API_KEY") {
            s = s.with_secret(k);
        }
        if let Ok(list) = std::env::var("FLOWLOOM_SECRETS") {
            for k in list.split(',') {
                s = s.with_secret(k.trim());
            }
        }
        s
    }

    /// Also scrubs `secret` wherever it appears (ignored when shorter than
    /// [`MIN_SECRET_LEN`]: too short to scrub without blanking ordinary text).
    #[must_use]
    pub fn with_secret(mut self, secret: impl AsRef<str>) -> Self {
        let s = secret.as_ref();
        if s.chars().count() >= MIN_SECRET_LEN && !self.secrets.iter().any(|x| x == s) {
            let mut v = (*self.secrets).clone();
            v.push(s.to_owned());
            // Longest first, so a secret containing another is replaced whole.
            v.sort_by_key(|x| std::cmp::Reverse(x.len()));
            self.secrets = Arc::new(v);
        }
        self
    }

    /// Also scrubs the value of a [`Secret`].
    #[must_use]
    pub fn with_secret_value(self, secret: &Secret) -> Self {
        self.with_secret(secret.expose())
    }

    /// Scrubs one string.
    pub fn scrub_str(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in self.secrets.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), REDACTED);
            }
        }
        for re in PATTERNS.iter() {
            if re.is_match(&out) {
                out = re
                    .replace_all(&out, |c: &regex::Captures<'_>| {
                        let whole = c.get(0).map_or("", |m| m.as_str());
                        let kept = c.get(1).map_or("", |m| m.as_str());
                        // Already scrubbed: keep it, so scrubbing twice changes nothing.
                        if whole[kept.len()..].starts_with("[REDACTED") {
                            whole.to_owned()
                        } else {
                            format!("{kept}{REDACTED}")
                        }
                    })
                    .into_owned();
            }
        }
        out
    }

    /// True when `text` holds something this scrubber would remove.
    pub fn finds_secret(&self, text: &str) -> bool {
        self.scrub_str(text) != text
    }

    /// Scrubs every string of a JSON value, and replaces the value of every secret-named key.
    pub fn scrub_value(&self, value: &mut Value) {
        match value {
            Value::String(s) => {
                let clean = self.scrub_str(s);
                if clean != *s {
                    *s = clean;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_value(v)),
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    if is_secret_key(k) && !v.is_null() {
                        *v = Value::String(REDACTED.to_owned());
                    } else {
                        self.scrub_value(v);
                    }
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

fn is_secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase().replace('-', "_");
    SECRET_KEYS.contains(&k.as_str())
}

/// Sorts the keys of every object, recursively, so that equal requests print equally.
pub(crate) fn sort_keys(value: &mut Value) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(sort_keys),
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut sorted = Map::new();
            for (k, mut v) in entries {
                sort_keys(&mut v);
                sorted.insert(k, v);
            }
            *map = sorted;
        }
        _ => {}
    }
}

/// The match key of a request: the request as JSON without its [`CallContext`] (run ids,
/// correlation ids and step names vary between runs and are not sent to the provider), with the
/// keys of free-form objects (`extra_params`, tool parameters, response schemas) sorted and
/// secrets scrubbed. Matched fields: `model`, `messages`, `temperature`, `max_tokens`, `tools`,
/// `tool_choice`, `response_format` and `extra_params`.
///
/// ```
/// use flowloom_core::{CallContext, LlmRequest};
/// use flowloom_testkit::cassette::{Scrubber, normalize_request};
/// let a = LlmRequest::new("gpt-4o-mini", "hi").with_extra("seed", 1).with_extra("top_p", 0.5);
/// let mut b = LlmRequest::new("gpt-4o-mini", "hi").with_extra("top_p", 0.5).with_extra("seed", 1);
/// b.context = CallContext { step: Some("draft".into()), ..Default::default() };
/// let s = Scrubber::new();
/// assert_eq!(normalize_request(&a, &s), normalize_request(&b, &s));
/// ```
pub fn normalize_request(request: &LlmRequest, scrubber: &Scrubber) -> Value {
    let mut r = request.clone();
    r.context = CallContext::default();
    // Serializing an `LlmRequest` cannot fail (all map keys are strings); fall back to a null
    // key, which matches nothing, rather than panic.
    let mut v = serde_json::to_value(&r).unwrap_or(Value::Null);
    normalize_value(&mut v, scrubber);
    v
}

/// The match key of an embedding request, made as [`normalize_request`] makes a chat
/// request's: without its `CallContext`, free-form keys sorted, secrets scrubbed.
pub fn normalize_embedding_request(request: &EmbeddingRequest, scrubber: &Scrubber) -> Value {
    let mut r = request.clone();
    r.context = CallContext::default();
    let mut v = serde_json::to_value(&r).unwrap_or(Value::Null);
    normalize_value(&mut v, scrubber);
    v
}

/// Normalizes a request already in JSON form (as read from a cassette), the same way
/// [`normalize_request`] does.
pub(crate) fn normalize_value(v: &mut Value, scrubber: &Scrubber) {
    if let Value::Object(map) = v {
        map.remove("context");
        for key in ["extra_params", "tools", "response_format", "tool_choice"] {
            if let Some(x) = map.get_mut(key) {
                sort_keys(x);
            }
        }
    }
    scrubber.scrub_value(v);
}
