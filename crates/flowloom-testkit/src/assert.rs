//! Assertions for model outputs that vary from run to run.
//!
//! Each returns `Ok` or an [`AssertionFailure`] that prints what was expected and what was
//! found; its `Debug` is the same text, so `.unwrap()` (or `?` in a test returning `Result`)
//! fails the test readably.
//!
//! ```
//! use flowloom_testkit::assert;
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct Verdict { safe: bool, reason: String }
//!
//! let out = r#"```json
//! {"safe": true, "reason": "no PII"}
//! ```"#;
//! let v: Verdict = assert::json_matching(out).unwrap();
//! assert!(v.safe);
//!
//! assert::matches_regex("Total: 42 items", r"Total: \d+").unwrap();
//! assert::char_len_between("short", 1, 10).unwrap();
//! let err = assert::contains("hello world", "goodbye").unwrap_err();
//! assert!(err.to_string().contains(r#"expected: text containing "goodbye""#));
//! ```

use std::fmt;

use regex::Regex;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// An assertion that did not hold: what was expected, what was found.
#[derive(Clone, PartialEq, thiserror::Error)]
pub struct AssertionFailure {
    /// The assertion's name, e.g. `contains`.
    pub assertion: &'static str,
    /// What was expected.
    pub expected: String,
    /// What was found.
    pub found: String,
    /// Details (e.g. every schema violation).
    pub details: Vec<String>,
}

impl AssertionFailure {
    fn new(assertion: &'static str, expected: impl Into<String>, found: impl Into<String>) -> Self {
        Self {
            assertion,
            expected: expected.into(),
            found: found.into(),
            details: Vec::new(),
        }
    }
}

impl fmt::Display for AssertionFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "assertion `{}` failed", self.assertion)?;
        writeln!(f, "  expected: {}", self.expected)?;
        write!(f, "  found:    {}", self.found)?;
        for d in &self.details {
            write!(f, "\n    - {d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for AssertionFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\n{self}")
    }
}

/// The text, quoted and shortened to 300 characters, with its length.
fn show(text: &str) -> String {
    let n = text.chars().count();
    if n > 300 {
        let cut: String = text.chars().take(300).collect();
        format!("{cut:?}… ({n} chars)")
    } else {
        format!("{text:?} ({n} chars)")
    }
}

/// `found` contains `needle`.
pub fn contains(found: &str, needle: &str) -> Result<(), AssertionFailure> {
    if found.contains(needle) {
        Ok(())
    } else {
        Err(AssertionFailure::new(
            "contains",
            format!("text containing {needle:?}"),
            show(found),
        ))
    }
}

/// `found` contains `needle`, ignoring case.
pub fn contains_ignore_case(found: &str, needle: &str) -> Result<(), AssertionFailure> {
    if found.to_lowercase().contains(&needle.to_lowercase()) {
        Ok(())
    } else {
        Err(AssertionFailure::new(
            "contains_ignore_case",
            format!("text containing {needle:?} (any case)"),
            show(found),
        ))
    }
}

/// `found` contains every one of `needles`; the failure lists the missing ones.
pub fn contains_all(found: &str, needles: &[&str]) -> Result<(), AssertionFailure> {
    let missing: Vec<&str> = needles
        .iter()
        .copied()
        .filter(|n| !found.contains(n))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(AssertionFailure::new(
            "contains_all",
            format!("text containing all of {needles:?}"),
            format!("{} — missing {missing:?}", show(found)),
        ))
    }
}

/// `found` does not contain `needle`.
pub fn not_contains(found: &str, needle: &str) -> Result<(), AssertionFailure> {
    match found.find(needle) {
        None => Ok(()),
        Some(at) => Err(AssertionFailure::new(
            "not_contains",
            format!("text without {needle:?}"),
            format!("{} — it occurs at byte {at}", show(found)),
        )),
    }
}

/// `found` has a match of the regular expression `pattern` (anchor it with `^…$` to match the
/// whole text). An invalid pattern is a failure that says why.
pub fn matches_regex(found: &str, pattern: &str) -> Result<(), AssertionFailure> {
    let re = Regex::new(pattern).map_err(|e| {
        AssertionFailure::new(
            "matches_regex",
            format!("a valid regular expression, got {pattern:?}"),
            format!("the pattern does not compile: {e}"),
        )
    })?;
    if re.is_match(found) {
        Ok(())
    } else {
        Err(AssertionFailure::new(
            "matches_regex",
            format!("text matching /{pattern}/"),
            show(found),
        ))
    }
}

/// `found` has from `min` to `max` characters (Unicode scalar values), both included.
pub fn char_len_between(found: &str, min: usize, max: usize) -> Result<(), AssertionFailure> {
    let n = found.chars().count();
    if (min..=max).contains(&n) {
        Ok(())
    } else {
        Err(AssertionFailure::new(
            "char_len_between",
            format!("{min} to {max} characters"),
            format!("{n} characters: {}", show(found)),
        ))
    }
}

/// `found` has from `min` to `max` words (runs of non-whitespace), both included.
pub fn word_count_between(found: &str, min: usize, max: usize) -> Result<(), AssertionFailure> {
    let n = found.split_whitespace().count();
    if (min..=max).contains(&n) {
        Ok(())
    } else {
        Err(AssertionFailure::new(
            "word_count_between",
            format!("{min} to {max} words"),
            format!("{n} words: {}", show(found)),
        ))
    }
}

/// The JSON text inside `text`: the text itself, or the body of a Markdown code fence
/// (```` ```json ... ``` ````) around it, as models often write.
fn strip_fence(text: &str) -> &str {
    let t = text.trim();
    if let Some(rest) = t.strip_prefix("```")
        && let Some(body) = rest.strip_suffix("```")
    {
        // Drop the info string (`json`) on the opening line.
        return match body.split_once('\n') {
            Some((_, inner)) => inner.trim(),
            None => body.trim(),
        };
    }
    t
}

/// `found` is JSON (optionally inside a Markdown code fence) that both satisfies the JSON
/// Schema schemars generates for `T` and deserializes into `T`, which is returned. Every schema
/// violation is listed with its JSON path.
pub fn json_matching<T: DeserializeOwned + JsonSchema>(found: &str) -> Result<T, AssertionFailure> {
    let name = T::schema_name();
    let expected = format!("JSON matching the schema of `{name}`");
    let value: Value = serde_json::from_str(strip_fence(found)).map_err(|e| {
        AssertionFailure::new(
            "json_matching",
            expected.clone(),
            format!("not JSON ({e}): {}", show(found)),
        )
    })?;
    let schema = schemars::schema_for!(T).to_value();
    let violations = validate(&value, &schema);
    if !violations.is_empty() {
        let mut f = AssertionFailure::new(
            "json_matching",
            expected,
            format!(
                "{} schema violation(s) in {}",
                violations.len(),
                show(found)
            ),
        );
        f.details = violations;
        return Err(f);
    }
    serde_json::from_value(value).map_err(|e| {
        AssertionFailure::new(
            "json_matching",
            expected,
            format!("JSON that does not deserialize ({e}): {}", show(found)),
        )
    })
}

/// Checks `value` against a JSON Schema (the subset schemars generates: `type`, `properties`,
/// `required`, `additionalProperties`, `items`, `enum`, `const`, `anyOf`, `oneOf`, `allOf`,
/// `$ref` into `$defs`/`definitions`, numeric and length bounds). Returns every violation, each
/// with its JSON path; an empty list means valid.
///
/// ```
/// use serde_json::json;
/// let schema = json!({"type": "object", "required": ["n"], "properties": {"n": {"type": "integer", "minimum": 0}}});
/// assert!(flowloom_testkit::assert::validate(&json!({"n": 3}), &schema).is_empty());
/// assert_eq!(flowloom_testkit::assert::validate(&json!({"n": -1}), &schema),
///            ["$.n: -1 is less than the minimum 0"]);
/// ```
pub fn validate(value: &Value, schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check(value, schema, schema, "$", &mut out, 0);
    out
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_ok(v: &Value, t: &str) -> bool {
    match t {
        "integer" => match v {
            Value::Number(n) => {
                n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            _ => false,
        },
        "number" => v.is_number(),
        other => type_name(v) == other,
    }
}

fn resolve<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    root.pointer(pointer)
}

fn check(v: &Value, s: &Value, root: &Value, path: &str, out: &mut Vec<String>, depth: usize) {
    if depth > 64 {
        out.push(format!(
            "{path}: the schema nests too deeply (a recursive $ref?)"
        ));
        return;
    }
    let Value::Object(s) = s else {
        if s == &Value::Bool(false) {
            out.push(format!("{path}: no value is allowed here"));
        }
        return;
    };
    if let Some(Value::String(r)) = s.get("$ref") {
        match resolve(root, r) {
            Some(target) => check(v, target, root, path, out, depth + 1),
            None => out.push(format!("{path}: the schema's $ref {r:?} points nowhere")),
        }
    }
    if let Some(t) = s.get("type") {
        let allowed: Vec<&str> = match t {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !allowed.is_empty() && !allowed.iter().any(|t| type_ok(v, t)) {
            out.push(format!(
                "{path}: expected {}, found {} {}",
                allowed.join(" or "),
                type_name(v),
                short(v)
            ));
            return;
        }
    }
    if let Some(Value::Array(options)) = s.get("enum")
        && !options.contains(v)
    {
        out.push(format!(
            "{path}: {} is not one of {}",
            short(v),
            Value::Array(options.clone())
        ));
    }
    if let Some(c) = s.get("const")
        && c != v
    {
        out.push(format!(
            "{path}: expected exactly {}, found {}",
            short(c),
            short(v)
        ));
    }
    let sub_ok = |sub: &Value| {
        let mut tmp = Vec::new();
        check(v, sub, root, path, &mut tmp, depth + 1);
        tmp.is_empty()
    };
    if let Some(Value::Array(all)) = s.get("allOf") {
        for sub in all {
            check(v, sub, root, path, out, depth + 1);
        }
    }
    if let Some(Value::Array(any)) = s.get("anyOf")
        && !any.iter().any(sub_ok)
    {
        out.push(format!(
            "{path}: {} matches none of the allowed shapes (anyOf)",
            short(v)
        ));
    }
    if let Some(Value::Array(one)) = s.get("oneOf") {
        let n = one.iter().filter(|sub| sub_ok(sub)).count();
        if n != 1 {
            out.push(format!(
                "{path}: {} matches {n} of the shapes, exactly one is required (oneOf)",
                short(v)
            ));
        }
    }
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(req)) = s.get("required") {
                for r in req.iter().filter_map(Value::as_str) {
                    if !map.contains_key(r) {
                        out.push(format!("{path}: missing required field `{r}`"));
                    }
                }
            }
            let props = s.get("properties").and_then(Value::as_object);
            for (k, val) in map {
                let p = format!("{path}.{k}");
                match props.and_then(|p| p.get(k)) {
                    Some(sub) => check(val, sub, root, &p, out, depth + 1),
                    None => match s.get("additionalProperties") {
                        Some(Value::Bool(false)) => {
                            out.push(format!("{path}: unexpected field `{k}`"));
                        }
                        Some(sub @ Value::Object(_)) => check(val, sub, root, &p, out, depth + 1),
                        _ => {}
                    },
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = s.get("items") {
                for (i, it) in items.iter().enumerate() {
                    check(it, sub, root, &format!("{path}[{i}]"), out, depth + 1);
                }
            }
            bound(
                path,
                "items",
                items.len() as f64,
                s.get("minItems"),
                s.get("maxItems"),
                out,
            );
        }
        Value::String(text) => {
            bound(
                path,
                "characters",
                text.chars().count() as f64,
                s.get("minLength"),
                s.get("maxLength"),
                out,
            );
        }
        Value::Number(n) => {
            if let Some(x) = n.as_f64() {
                if let Some(min) = s.get("minimum").and_then(Value::as_f64)
                    && x < min
                {
                    out.push(format!(
                        "{path}: {n} is less than the minimum {}",
                        fmt_num(min)
                    ));
                }
                if let Some(max) = s.get("maximum").and_then(Value::as_f64)
                    && x > max
                {
                    out.push(format!(
                        "{path}: {n} is more than the maximum {}",
                        fmt_num(max)
                    ));
                }
            }
        }
        Value::Null | Value::Bool(_) => {}
    }
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

fn bound(
    path: &str,
    unit: &str,
    n: f64,
    min: Option<&Value>,
    max: Option<&Value>,
    out: &mut Vec<String>,
) {
    if let Some(min) = min.and_then(Value::as_f64)
        && n < min
    {
        out.push(format!(
            "{path}: {} {unit}, at least {} required",
            fmt_num(n),
            fmt_num(min)
        ));
    }
    if let Some(max) = max.and_then(Value::as_f64)
        && n > max
    {
        out.push(format!(
            "{path}: {} {unit}, at most {} allowed",
            fmt_num(n),
            fmt_num(max)
        ));
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        let cut: String = s.chars().take(60).collect();
        format!("{cut}…")
    } else {
        s
    }
}

/// Similarity of two texts from 0.0 to 1.0: normalized Levenshtein distance over characters,
/// after trimming, lower-casing and collapsing whitespace. Good for short answers that differ
/// in wording details.
pub fn similarity(a: &str, b: &str) -> f64 {
    let norm = |s: &str| {
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    strsim::normalized_levenshtein(&norm(a), &norm(b))
}

/// Similarity of two texts from 0.0 to 1.0 as sets of words (Jaccard: shared words over all
/// words), ignoring case and punctuation at word edges. Good for longer answers whose words
/// matter more than their order.
pub fn token_jaccard(a: &str, b: &str) -> f64 {
    use std::collections::BTreeSet;
    let words = |s: &str| -> BTreeSet<String> {
        s.split_whitespace()
            .map(|w| {
                w.trim_matches(|c: char| !c.is_alphanumeric())
                    .to_lowercase()
            })
            .filter(|w| !w.is_empty())
            .collect()
    };
    let (x, y) = (words(a), words(b));
    if x.is_empty() && y.is_empty() {
        return 1.0;
    }
    let shared = x.intersection(&y).count();
    let all = x.union(&y).count();
    shared as f64 / all as f64
}

/// `found` is at least `threshold` similar to `expected` by the larger of [`similarity`] and
/// [`token_jaccard`]; returns the score. A threshold outside 0.0–1.0 is a failure that says so.
pub fn similar(found: &str, expected: &str, threshold: f64) -> Result<f64, AssertionFailure> {
    if !(0.0..=1.0).contains(&threshold) {
        return Err(AssertionFailure::new(
            "similar",
            "a threshold from 0.0 to 1.0",
            format!("{threshold}"),
        ));
    }
    let lev = similarity(found, expected);
    let jac = token_jaccard(found, expected);
    let score = lev.max(jac);
    if score >= threshold {
        Ok(score)
    } else {
        Err(AssertionFailure::new(
            "similar",
            format!("text at least {threshold:.2} similar to {}", show(expected)),
            format!(
                "{} — similarity {score:.3} (levenshtein {lev:.3}, word jaccard {jac:.3})",
                show(found)
            ),
        ))
    }
}

/// The parts of a run's result that a replay must reproduce: everything but the run and step
/// ids, the correlation id, timestamps and durations.
pub fn stable_view(result: &flowloom_core::WorkflowResult) -> Value {
    let mut v = serde_json::to_value(result).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        for k in [
            "workflow_id",
            "correlation_id",
            "created_at",
            "completed_at",
        ] {
            m.remove(k);
        }
        if let Some(Value::Array(steps)) = m.get_mut("steps") {
            for s in steps.iter_mut().filter_map(Value::as_object_mut) {
                s.remove("step_id");
                s.remove("duration_ms");
            }
        }
        if let Some(Value::Object(metrics)) = m.get_mut("metrics") {
            metrics.remove("total_duration_ms");
            metrics.remove("step_durations");
        }
    }
    v
}

/// `found` is the same run result as `expected` — status, output, error, every step's name,
/// status, output, error and token usage, and the metrics' counts and usage — ignoring ids,
/// timestamps and durations ([`stable_view`]). The failure lists every field that differs.
///
/// ```
/// # use flowloom_core::{WorkflowResult, WorkflowStatus, ExecutionMetrics};
/// # let make = || WorkflowResult { workflow_id: uuid::Uuid::new_v4(), workflow_name: "w".into(),
/// #     correlation_id: uuid::Uuid::new_v4(), status: WorkflowStatus::Completed,
/// #     output: Some("hi".into()), error: None, failed_step: None, steps: vec![],
/// #     metrics: ExecutionMetrics::default(), created_at: time::OffsetDateTime::now_utc(),
/// #     completed_at: None };
/// let (a, mut b) = (make(), make());
/// flowloom_testkit::assert::same_result(&a, &b).unwrap(); // ids and times differ: still the same
/// b.output = Some("bye".into());
/// let err = flowloom_testkit::assert::same_result(&b, &a).unwrap_err();
/// assert!(err.to_string().contains(r#"output: recorded "hi", now "bye""#));
/// ```
pub fn same_result(
    found: &flowloom_core::WorkflowResult,
    expected: &flowloom_core::WorkflowResult,
) -> Result<(), AssertionFailure> {
    let changes = crate::cassette::changes(&stable_view(expected), &stable_view(found));
    if changes.is_empty() {
        return Ok(());
    }
    let mut f = AssertionFailure::new(
        "same_result",
        format!(
            "the result of workflow `{}` as recorded",
            expected.workflow_name
        ),
        format!("{} difference(s) (recorded → now)", changes.len()),
    );
    f.details = crate::cassette::render_changes(&changes)
        .lines()
        .map(|l| l.trim_start().to_owned())
        .collect();
    Err(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, serde::Deserialize, schemars::JsonSchema, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Review {
        score: u8,
        label: Label,
        tags: Vec<String>,
        note: Option<String>,
    }

    #[derive(Debug, serde::Deserialize, schemars::JsonSchema, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Label {
        Good,
        Bad,
    }

    #[test]
    fn contains_reports_expected_and_found() {
        contains("abc", "b").unwrap();
        let e = contains("hello", "bye").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("assertion `contains` failed"), "{text}");
        assert!(
            text.contains(r#"expected: text containing "bye""#),
            "{text}"
        );
        assert!(text.contains(r#"found:    "hello" (5 chars)"#), "{text}");
        assert_eq!(format!("{e:?}"), format!("\n{text}"));
        contains_ignore_case("Hello", "hELLO").unwrap();
        let e = contains_all("a b", &["a", "c", "d"]).unwrap_err();
        assert!(e.to_string().contains(r#"missing ["c", "d"]"#), "{e}");
        let e = not_contains("a secret", "secret").unwrap_err();
        assert!(e.to_string().contains("occurs at byte 2"), "{e}");
    }

    #[test]
    fn regex_and_lengths() {
        matches_regex("order #123", r"#\d{3}$").unwrap();
        let e = matches_regex("order #12", r"#\d{3}$").unwrap_err();
        assert!(e.to_string().contains(r"text matching /#\d{3}$/"), "{e}");
        let e = matches_regex("x", "(").unwrap_err();
        assert!(e.to_string().contains("does not compile"), "{e}");
        char_len_between("héllo", 5, 5).unwrap();
        let e = char_len_between("héllo", 6, 10).unwrap_err();
        assert!(
            e.to_string().contains("expected: 6 to 10 characters"),
            "{e}"
        );
        assert!(e.to_string().contains("found:    5 characters"), "{e}");
        word_count_between("one two three", 2, 3).unwrap();
        assert!(word_count_between("one", 2, 3).is_err());
    }

    #[test]
    fn json_matching_accepts_valid_and_fenced_json() {
        let r: Review =
            json_matching(r#"{"score": 4, "label": "good", "tags": ["x"], "note": null}"#).unwrap();
        assert_eq!(r.label, Label::Good);
        let fenced = "```json\n{\"score\": 1, \"label\": \"bad\", \"tags\": []}\n```";
        assert_eq!(json_matching::<Review>(fenced).unwrap().score, 1);
    }

    #[test]
    fn json_matching_lists_every_violation() {
        let e =
            json_matching::<Review>(r#"{"score": 300, "label": "meh", "tags": [1], "extra": 1}"#)
                .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("JSON matching the schema of `Review`"),
            "{text}"
        );
        for want in [
            "$.score: 300 is more than the maximum 255",
            "$.label: \"meh\" is not one of",
            "$.tags[0]: expected string, found integer 1",
            "$: unexpected field `extra`",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        let e = json_matching::<Review>(r#"{"score": 3}"#).unwrap_err();
        assert!(
            e.to_string().contains("missing required field `label`"),
            "{e}"
        );
        let e = json_matching::<Review>("not json").unwrap_err();
        assert!(e.to_string().contains("not JSON"), "{e}");
    }

    #[test]
    fn validate_handles_refs_and_unions() {
        let schema = json!({
            "$defs": {"P": {"type": "object", "required": ["x"], "properties": {"x": {"type": "number"}}}},
            "type": "array", "items": {"$ref": "#/$defs/P"}, "maxItems": 2
        });
        assert!(validate(&json!([{"x": 1.5}]), &schema).is_empty());
        let v = validate(&json!([{"x": "a"}, {}, {"x": 1}]), &schema);
        assert_eq!(
            v,
            [
                "$[0].x: expected number, found string \"a\"",
                "$[1]: missing required field `x`",
                "$: 3 items, at most 2 allowed",
            ]
        );
        let one = json!({"oneOf": [{"type": "string"}, {"type": "integer"}]});
        assert!(validate(&json!(3), &one).is_empty());
        assert_eq!(validate(&json!(true), &one).len(), 1);
    }

    #[test]
    fn similarity_scores() {
        assert_eq!(similarity("Hello  World", "hello world"), 1.0);
        assert!(similarity("kitten", "sitting") < 0.6);
        assert!((token_jaccard("a b c", "b c d") - 0.5).abs() < 1e-12);
        assert_eq!(token_jaccard("", ""), 1.0);
        let s = similar(
            "The capital of France is Paris.",
            "Paris is the capital of France",
            0.8,
        )
        .unwrap();
        assert!(s >= 0.8);
        let e = similar("cats", "quantum physics", 0.5).unwrap_err();
        assert!(e.to_string().contains("similarity 0."), "{e}");
        assert!(
            similar("a", "a", 1.5)
                .unwrap_err()
                .to_string()
                .contains("0.0 to 1.0")
        );
    }
}
