//! A small validator for the subset of JSON Schema / OpenAPI 3.x that OpenAI's published API
//! uses: `type` (one or a list, `null` included), `nullable`, `enum`, `required`,
//! `properties`, `additionalProperties` (bool or schema), `items`, `minItems`, `maxItems`,
//! `minLength`, `maxLength`, `minimum`, `maximum`, `allOf`, `anyOf`, `oneOf` (exactly one) and
//! local `$ref`s (`#/components/schemas/...`). Descriptive keywords are ignored.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::PathBuf;

use serde_json::Value;

/// The OpenAI API subset, loaded from `../shared/openai-api-subset.yaml` beside the workspace.
pub struct Spec {
    root: Value,
}

impl Spec {
    /// Loads the YAML; fails clearly when the file is missing.
    pub fn load() -> Spec {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/openai-api-subset.yaml");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read OpenAI's API subset at {} ({e}); it is expected at \
                 ../shared/openai-api-subset.yaml relative to the workspace root",
                path.display()
            )
        });
        // Integers beyond 64 bits (the bounds of `seed`) are read as floats.
        let text = widen_big_integers(&text);
        let root: Value = serde_yaml::from_str(&text).expect("the API subset is YAML");
        Spec { root }
    }

    /// The schema named `name` under `components.schemas`.
    pub fn schema(&self, name: &str) -> &Value {
        self.root
            .pointer(&format!("/components/schemas/{name}"))
            .unwrap_or_else(|| panic!("no schema `{name}` in the API subset"))
    }

    /// Every problem of `value` against schema `name`; empty when it is valid.
    pub fn errors(&self, name: &str, value: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        self.check(self.schema(name), value, "$", &mut errors, 0);
        errors
    }

    /// Panics with every problem when `value` does not follow schema `name`.
    pub fn assert_valid(&self, name: &str, value: &Value) {
        let errors = self.errors(name, value);
        assert!(
            errors.is_empty(),
            "not a valid {name}:\n  {}\nvalue: {}",
            errors.join("\n  "),
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        let mut s = schema;
        for _ in 0..32 {
            match s.get("$ref").and_then(Value::as_str) {
                Some(r) => {
                    let pointer = r
                        .strip_prefix('#')
                        .unwrap_or_else(|| panic!("non-local $ref {r}"));
                    s = self
                        .root
                        .pointer(pointer)
                        .unwrap_or_else(|| panic!("unresolved $ref {r}"));
                }
                None => return s,
            }
        }
        panic!("$ref chain too long")
    }

    fn check(&self, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>, depth: usize) {
        assert!(depth < 64, "schema nesting too deep at {at}");
        // Sibling keywords of a `$ref` (e.g. `nullable`) apply together with the target.
        if v.is_null() && schema.get("nullable") == Some(&Value::Bool(true)) {
            return;
        }
        if schema.get("$ref").is_some() {
            let target = self.resolve(schema);
            self.check(target, v, at, errors, depth + 1);
            return;
        }
        if let Some(t) = schema.get("type") {
            let types: Vec<&str> = match t {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !types.iter().any(|t| type_matches(t, v)) {
                errors.push(format!("{at}: expected type {types:?}, found {}", short(v)));
                return;
            }
        }
        if let Some(e) = schema.get("enum").and_then(Value::as_array)
            && !e.contains(v)
        {
            errors.push(format!(
                "{at}: {} is not one of {}",
                short(v),
                Value::Array(e.clone())
            ));
        }
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for s in all {
                self.check(s, v, at, errors, depth + 1);
            }
        }
        if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
            let ok = any.iter().any(|s| {
                let mut e = Vec::new();
                self.check(s, v, at, &mut e, depth + 1);
                e.is_empty()
            });
            if !ok {
                errors.push(format!("{at}: {} matches none of anyOf", short(v)));
            }
        }
        if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
            let mut failures = Vec::new();
            let matched = one
                .iter()
                .filter(|s| {
                    let mut e = Vec::new();
                    self.check(s, v, at, &mut e, depth + 1);
                    let ok = e.is_empty();
                    failures.extend(e);
                    ok
                })
                .count();
            if matched != 1 {
                errors.push(format!(
                    "{at}: {} matches {matched} of oneOf (exactly 1 wanted); problems: {}",
                    short(v),
                    failures.join(" | ")
                ));
            }
        }
        match v {
            Value::Object(map) => {
                if let Some(req) = schema.get("required").and_then(Value::as_array) {
                    for r in req.iter().filter_map(Value::as_str) {
                        if !map.contains_key(r) {
                            errors.push(format!("{at}: required property `{r}` is missing"));
                        }
                    }
                }
                let props = schema.get("properties").and_then(Value::as_object);
                for (k, val) in map {
                    let path = format!("{at}.{k}");
                    match props.and_then(|p| p.get(k)) {
                        Some(s) => self.check(s, val, &path, errors, depth + 1),
                        None => match schema.get("additionalProperties") {
                            Some(Value::Bool(false)) => {
                                errors.push(format!("{at}: property `{k}` is not allowed"));
                            }
                            Some(s @ Value::Object(_)) => {
                                self.check(s, val, &path, errors, depth + 1);
                            }
                            _ => {}
                        },
                    }
                }
            }
            Value::Array(items) => {
                if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                    && (items.len() as u64) < min
                {
                    errors.push(format!(
                        "{at}: {} items, at least {min} wanted",
                        items.len()
                    ));
                }
                if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                    && (items.len() as u64) > max
                {
                    errors.push(format!(
                        "{at}: {} items, at most {max} allowed",
                        items.len()
                    ));
                }
                if let Some(s) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.check(s, item, &format!("{at}[{i}]"), errors, depth + 1);
                    }
                }
            }
            Value::String(s) => {
                let n = s.chars().count() as u64;
                if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                    && n < min
                {
                    errors.push(format!("{at}: shorter than {min}"));
                }
                if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                    && n > max
                {
                    errors.push(format!("{at}: longer than {max}"));
                }
            }
            Value::Number(n) => {
                let x = n.as_f64().unwrap_or(0.0);
                if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
                    && x < min
                {
                    errors.push(format!("{at}: {x} is below the minimum {min}"));
                }
                if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
                    && x > max
                {
                    errors.push(format!("{at}: {x} is above the maximum {max}"));
                }
            }
            _ => {}
        }
    }
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => v.as_i64().is_some() || v.as_u64().is_some(),
        _ => true,
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

/// Rewrites integer literals too long for 64 bits (e.g. `-9223372036854776000`) as floats.
fn widen_big_integers(text: &str) -> String {
    text.lines()
        .map(|line| {
            let trimmed = line.trim_end();
            let Some((head, value)) = trimmed.rsplit_once(": ") else {
                return line.to_owned();
            };
            let digits = value.trim_start_matches('-');
            if digits.len() >= 19 && digits.chars().all(|c| c.is_ascii_digit()) {
                format!("{head}: {value}.0")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
