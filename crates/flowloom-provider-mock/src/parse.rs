//! Reading a [`MockScript`] from YAML, strictly, with errors that name the rule and field.

use std::time::Duration;

use regex::Regex;
use serde_yaml::{Mapping, Value};

use crate::error::ScriptError;
use crate::script::{MockAnswer, MockError, MockErrorKind, MockRule, MockScript, MockUsage};

const TOP_KEYS: &str = "`default`, `rules`";
const RULE_KEYS: [&str; 10] = [
    "match",
    "model",
    "respond",
    "error",
    "message",
    "status",
    "retry_after",
    "usage",
    "latency",
    "sequence",
];
const ANSWER_KEYS: [&str; 7] = [
    "respond",
    "error",
    "message",
    "status",
    "retry_after",
    "usage",
    "latency",
];

/// Where in the script we are, for error messages.
#[derive(Clone, Copy)]
struct At<'a> {
    rule: Option<usize>,
    rule_match: Option<&'a str>,
}

impl At<'_> {
    const TOP: At<'static> = At {
        rule: None,
        rule_match: None,
    };

    fn err(&self, field: Option<String>, message: impl Into<String>) -> ScriptError {
        ScriptError::Invalid {
            rule: self.rule,
            rule_match: self.rule_match.map(str::to_owned),
            field,
            message: message.into(),
        }
    }

    fn field(&self, field: &str, message: impl Into<String>) -> ScriptError {
        self.err(Some(field.to_owned()), message)
    }
}

fn path(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".to_owned(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(s) => format!("the text {s:?}"),
        Value::Sequence(_) => "a list".to_owned(),
        Value::Mapping(_) => "a mapping".to_owned(),
        Value::Tagged(t) => format!("a tagged value ({})", t.tag),
    }
}

fn list(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The string keys of a mapping, rejecting keys that are not strings or not in `allowed`.
fn keys<'m>(
    at: At<'_>,
    prefix: &str,
    map: &'m Mapping,
    allowed: &[&str],
) -> Result<Vec<(&'m str, &'m Value)>, ScriptError> {
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map {
        let Some(key) = k.as_str() else {
            return Err(at.err(
                (!prefix.is_empty()).then(|| prefix.to_owned()),
                format!("keys must be field names, found {}", describe(k)),
            ));
        };
        if !allowed.contains(&key) {
            return Err(at.field(
                &path(prefix, key),
                format!("unknown field, expected one of {}", list(allowed)),
            ));
        }
        out.push((key, v));
    }
    Ok(out)
}

pub(crate) fn parse_script(yaml: &str) -> Result<MockScript, ScriptError> {
    let value: Value = serde_yaml::from_str(yaml).map_err(|e| ScriptError::Yaml {
        message: e.to_string(),
    })?;
    let map = match value {
        Value::Null => return Ok(MockScript::echo()),
        Value::Mapping(m) => m,
        other => {
            return Err(At::TOP.err(
                None,
                format!(
                    "a mock script is a mapping with {TOP_KEYS}, found {}",
                    describe(&other)
                ),
            ));
        }
    };
    let mut script = MockScript::echo();
    for (key, v) in &map {
        match key.as_str() {
            Some("default") => script.default = parse_default(v)?,
            Some("rules") => script.rules = parse_rules(v)?,
            Some(other) => {
                return Err(
                    At::TOP.field(other, format!("unknown field, expected one of {TOP_KEYS}"))
                );
            }
            None => {
                return Err(At::TOP.err(
                    None,
                    format!("keys must be field names, found {}", describe(key)),
                ));
            }
        }
    }
    Ok(script)
}

fn parse_default(v: &Value) -> Result<MockAnswer, ScriptError> {
    match v {
        Value::String(s) if s == "echo" => Ok(MockAnswer::echo()),
        Value::Mapping(m) => {
            let fields = keys(At::TOP, "default", m, &ANSWER_KEYS)?;
            parse_answer(At::TOP, "default", &fields, Defaults::NONE)
        }
        other => Err(At::TOP.field(
            "default",
            format!(
                "expected `echo` or an answer such as {{ respond: \"fixed text\" }}, found {}",
                describe(other)
            ),
        )),
    }
}

fn parse_rules(v: &Value) -> Result<Vec<MockRule>, ScriptError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| parse_rule(i + 1, item))
            .collect(),
        other => Err(At::TOP.field(
            "rules",
            format!(
                "expected a list of rules (- match: ...), found {}",
                describe(other)
            ),
        )),
    }
}

fn parse_rule(n: usize, v: &Value) -> Result<MockRule, ScriptError> {
    let at = At {
        rule: Some(n),
        rule_match: None,
    };
    let Value::Mapping(map) = v else {
        return Err(at.err(
            None,
            format!(
                "a rule is a mapping with `match` and one of `respond`, `error` or `sequence`, found {}",
                describe(v)
            ),
        ));
    };
    let match_src = match map.get("match") {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(other) => {
            return Err(at.field(
                "match",
                format!(
                    "expected a regular expression as text, found {}",
                    describe(other)
                ),
            ));
        }
    };
    let at = At {
        rule: Some(n),
        rule_match: match_src,
    };
    let fields = keys(at, "", map, &RULE_KEYS)?;
    let pattern = match_src
        .map(|src| {
            Regex::new(src)
                .map_err(|e| at.field("match", format!("not a valid regular expression: {e}")))
        })
        .transpose()?;
    let mut model = None;
    let mut sequence = None;
    let mut rest = Vec::with_capacity(fields.len());
    for (key, value) in fields {
        match key {
            "match" => {}
            "model" => match value {
                Value::String(s) if !s.trim().is_empty() => model = Some(s.clone()),
                other => {
                    return Err(at.field(
                        "model",
                        format!("expected a model name, found {}", describe(other)),
                    ));
                }
            },
            "sequence" => sequence = Some(value),
            _ => rest.push((key, value)),
        }
    }
    let answers = match sequence {
        None => vec![parse_answer(at, "", &rest, Defaults::NONE)?],
        Some(seq) => {
            let mut defaults = Defaults::NONE;
            for (key, value) in rest {
                match key {
                    "usage" => defaults.usage = Some(parse_usage(at, "usage", value)?),
                    "latency" => defaults.latency = Some(parse_duration(at, "latency", value)?),
                    other => {
                        return Err(at.field(
                            "sequence",
                            format!(
                                "`sequence` and `{other}` are both set; put `{other}` inside each answer of the sequence"
                            ),
                        ));
                    }
                }
            }
            let Value::Sequence(items) = seq else {
                return Err(at.field(
                    "sequence",
                    format!(
                        "expected a list of answers such as - {{ respond: \"ok\" }}, found {}",
                        describe(seq)
                    ),
                ));
            };
            if items.is_empty() {
                return Err(at.field(
                    "sequence",
                    "the sequence is empty; give at least one answer",
                ));
            }
            let mut answers = Vec::with_capacity(items.len());
            for (j, item) in items.iter().enumerate() {
                let prefix = format!("sequence[{j}]");
                let Value::Mapping(m) = item else {
                    return Err(at.field(
                        &prefix,
                        format!(
                            "expected an answer such as {{ respond: \"ok\" }} or {{ error: rate_limit }}, found {}",
                            describe(item)
                        ),
                    ));
                };
                let fields = keys(at, &prefix, m, &ANSWER_KEYS)?;
                answers.push(parse_answer(at, &prefix, &fields, defaults)?);
            }
            answers
        }
    };
    Ok(MockRule::from_parts(pattern, model, answers))
}

#[derive(Clone, Copy)]
struct Defaults {
    usage: Option<MockUsage>,
    latency: Option<Duration>,
}

impl Defaults {
    const NONE: Defaults = Defaults {
        usage: None,
        latency: None,
    };
}

fn parse_answer(
    at: At<'_>,
    prefix: &str,
    fields: &[(&str, &Value)],
    defaults: Defaults,
) -> Result<MockAnswer, ScriptError> {
    let mut respond = None;
    let mut kind = None;
    let mut message = None;
    let mut status = None;
    let mut retry_after = None;
    let mut usage = defaults.usage;
    let mut latency = defaults.latency;
    for &(key, value) in fields {
        let field = path(prefix, key);
        match key {
            "respond" => respond = Some(scalar_text(at, &field, value)?),
            "error" => {
                let Value::String(s) = value else {
                    return Err(at.field(
                        &field,
                        format!(
                            "expected an error kind, one of {}, found {}",
                            MockErrorKind::names(),
                            describe(value)
                        ),
                    ));
                };
                kind = Some(MockErrorKind::parse(s).ok_or_else(|| {
                    at.field(
                        &field,
                        format!(
                            "unknown error kind {s:?}, expected one of {}",
                            MockErrorKind::names()
                        ),
                    )
                })?);
            }
            "message" => message = Some(scalar_text(at, &field, value)?),
            "status" => {
                let s = value
                    .as_u64()
                    .and_then(|s| u16::try_from(s).ok())
                    .ok_or_else(|| {
                        at.field(
                            &field,
                            format!(
                                "expected an HTTP status such as 503, found {}",
                                describe(value)
                            ),
                        )
                    })?;
                status = Some(s);
            }
            "retry_after" => retry_after = Some(parse_duration(at, &field, value)?),
            "usage" => usage = Some(parse_usage(at, &field, value)?),
            "latency" => latency = Some(parse_duration(at, &field, value)?),
            _ => {}
        }
    }
    let reply = match (respond, kind) {
        (Some(_), Some(_)) => {
            return Err(at.field(
                &path(prefix, "error"),
                "`respond` and `error` are both set; an answer is either a text or an error",
            ));
        }
        (None, None) => {
            let what = if prefix.is_empty() {
                "the rule needs one of `respond: <text>`, `error: <kind>` or `sequence: [...]`"
            } else {
                "the answer needs `respond: <text>` or `error: <kind>`"
            };
            return Err(at.err((!prefix.is_empty()).then(|| prefix.to_owned()), what));
        }
        (Some(text), None) => {
            for (name, set) in [
                ("message", message.is_some()),
                ("status", status.is_some()),
                ("retry_after", retry_after.is_some()),
            ] {
                if set {
                    return Err(at.field(
                        &path(prefix, name),
                        format!("`{name}` applies only to an `error` answer, not to `respond`"),
                    ));
                }
            }
            MockAnswer::text(text)
        }
        (None, Some(kind)) => {
            let mut e = MockError::new(kind);
            if let Some(m) = message {
                e = e.with_message(m);
            }
            if let Some(s) = status {
                e = e.with_status(s);
            }
            if let Some(r) = retry_after {
                e = e.with_retry_after(r);
            }
            e.check()
                .map_err(|(name, msg)| at.field(&path(prefix, name), msg))?;
            MockAnswer::error(e)
        }
    };
    Ok(reply
        .with_usage(usage.unwrap_or_default())
        .with_latency(latency.unwrap_or_default()))
}

fn scalar_text(at: At<'_>, field: &str, v: &Value) -> Result<String, ScriptError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(at.field(field, format!("expected text, found {}", describe(other)))),
    }
}

fn parse_usage(at: At<'_>, field: &str, v: &Value) -> Result<MockUsage, ScriptError> {
    const USAGE_KEYS: [&str; 3] = ["prompt_tokens", "completion_tokens", "total_tokens"];
    match v {
        Value::String(s) if s == "none" => Ok(MockUsage::None),
        Value::Mapping(m) => {
            let mut prompt = None;
            let mut completion = None;
            let mut total = None;
            for (key, value) in keys(at, field, m, &USAGE_KEYS)? {
                let f = path(field, key);
                let n = value.as_u64().ok_or_else(|| {
                    at.field(
                        &f,
                        format!("expected a whole number ≥ 0, found {}", describe(value)),
                    )
                })?;
                match key {
                    "prompt_tokens" => prompt = Some(n),
                    "completion_tokens" => completion = Some(n),
                    _ => total = Some(n),
                }
            }
            let (Some(p), Some(c)) = (prompt, completion) else {
                let missing = if prompt.is_none() {
                    "prompt_tokens"
                } else {
                    "completion_tokens"
                };
                return Err(at.field(
                    &path(field, missing),
                    "missing; give both `prompt_tokens` and `completion_tokens`",
                ));
            };
            if let Some(t) = total
                && Some(t) != p.checked_add(c)
            {
                return Err(at.field(
                    &path(field, "total_tokens"),
                    format!("found {t}, expected prompt_tokens + completion_tokens = {p} + {c}"),
                ));
            }
            Ok(MockUsage::Fixed {
                prompt_tokens: p,
                completion_tokens: c,
            })
        }
        other => Err(at.field(
            field,
            format!(
                "expected `none` or {{ prompt_tokens: <n>, completion_tokens: <n> }}, found {}",
                describe(other)
            ),
        )),
    }
}

fn parse_duration(at: At<'_>, field: &str, v: &Value) -> Result<Duration, ScriptError> {
    let bad = |found: String| {
        at.field(
            field,
            format!("expected a duration with a unit such as 20ms, 1s, 2m or 1h, found {found}"),
        )
    };
    let Value::String(s) = v else {
        return Err(bad(describe(v)));
    };
    parse_duration_str(s).ok_or_else(|| bad(format!("{s:?}")))
}

/// Reads `20ms`, `1s`, `1.5s`, `2m`, `1h`, `250us`, compounds such as `1m30s`; zero is
/// allowed. The shared rule of [`flowloom_core::duration::parse`].
pub(crate) fn parse_duration_str(s: &str) -> Option<Duration> {
    flowloom_core::duration::parse(s).ok()
}

#[cfg(test)]
mod tests {
    use super::parse_duration_str as d;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(d("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(d("1s"), Some(Duration::from_secs(1)));
        assert_eq!(d("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(d("2m"), Some(Duration::from_secs(120)));
        assert_eq!(d("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(d("0s"), Some(Duration::ZERO));
        assert_eq!(d("250us"), Some(Duration::from_micros(250)));
        assert_eq!(d("1m30s"), Some(Duration::from_secs(90)));
        for bad in [
            "",
            "20",
            "ms",
            "-1s",
            "1 parsec",
            "1.s",
            ".5s",
            "1e3s",
            "1..2s",
            "99999999999999999999999h",
        ] {
            assert_eq!(d(bad), None, "{bad:?}");
        }
    }
}
