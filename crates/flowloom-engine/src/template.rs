//! Templates and conditions: one minijinja environment per workflow, templates compiled once at
//! build time, contexts built from only the names a template uses.
//!
//! Variables a template may use:
//! - `input` — the workflow's input;
//! - each step's output by name (`{{ draft }}`), and `steps.<name>.output`;
//! - `env.NAME` — the workflow's `env` entries, then the process environment;
//! - workflow variables (declared with `.var(..)`, passed with `RunOptions::var` or a
//!   sub-workflow call's `with`), including `loop` (`loop.iteration`, `loop.last.output`,
//!   `loop.history`) when a loop supplies it.
//!
//! Values are inserted as data: minijinja never renders a value again, so `{{ }}` inside a
//! model's answer or the input stays literal text. An undefined variable is an error
//! (`UndefinedBehavior::Strict`) that names the template and the variable.

use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr};
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value as MjValue};
use serde_json::{Map, Value};

use crate::error::TemplateError;

/// Names that templates always have; steps and variables may not take them.
pub(crate) const RESERVED: &[&str] = &["input", "env", "steps", "loop"];

/// A new environment with flowloom's settings.
pub(crate) fn new_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_keep_trailing_newline(true);
    env
}

/// What a top-level template name refers to, resolved at build time.
#[derive(Debug, Clone)]
pub(crate) enum Ref {
    Input,
    Env,
    Steps,
    /// A step's output: index and name.
    Step(u32, Arc<str>),
    /// A workflow variable (or `loop`).
    Var(Arc<str>),
}

/// A compiled template: either plain text (no markup) or a named template in the workflow's
/// environment, with the names it uses.
#[derive(Debug, Clone)]
pub(crate) enum Tpl {
    Static(Arc<str>),
    Compiled {
        name: Arc<str>,
        refs: Arc<[Ref]>,
        /// For templates that are only text and `{{ name }}` interpolations: the pieces, so
        /// that text values are spliced in without running the template engine (same output).
        fast: Option<Arc<[Seg]>>,
    },
}

/// A piece of a plain interpolation template.
#[derive(Debug, Clone)]
pub(crate) enum Seg {
    Text(Box<str>),
    /// An index into the template's `refs`.
    Var(usize),
}

/// Splits `src` into text and `{{ identifier }}` pieces, when that is all it is.
pub(crate) fn plain_segments(src: &str, refs: &[Ref]) -> Option<Arc<[Seg]>> {
    if src.contains("{%") || src.contains("{#") {
        return None;
    }
    let mut segs = Vec::new();
    let mut rest = src;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            segs.push(Seg::Text(rest[..open].into()));
        }
        let after = &rest[open + 2..];
        let close = after.find("}}")?;
        let ident = after[..close].trim();
        let ok = !ident.is_empty()
            && ident
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && ident.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return None;
        }
        let pos = refs.iter().position(|r| match r {
            Ref::Input => ident == "input",
            Ref::Step(_, n) | Ref::Var(n) => &**n == ident,
            Ref::Env | Ref::Steps => false,
        })?;
        segs.push(Seg::Var(pos));
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        segs.push(Seg::Text(rest.into()));
    }
    Some(segs.into())
}

impl Scope<'_> {
    /// The text value a ref points to, when it is text.
    fn text_of(&self, r: &Ref) -> Option<&str> {
        match r {
            Ref::Input => self.input.as_str(),
            Ref::Step(i, name) => self.outputs.get(*i, name)?.as_str(),
            Ref::Var(name) => self.vars.get(&**name)?.as_str(),
            Ref::Env | Ref::Steps => None,
        }
    }

    /// Renders a plain interpolation template when every value it uses is text.
    fn render_fast(&self, segs: &[Seg], refs: &[Ref]) -> Option<String> {
        let mut len = 0;
        for seg in segs {
            len += match seg {
                Seg::Text(t) => t.len(),
                Seg::Var(i) => self.text_of(refs.get(*i)?)?.len(),
            };
        }
        let mut out = String::with_capacity(len);
        for seg in segs {
            match seg {
                Seg::Text(t) => out.push_str(t),
                Seg::Var(i) => out.push_str(self.text_of(refs.get(*i)?)?),
            }
        }
        Some(out)
    }
}

/// A compiled condition or typed expression, stored as a template rendering `tojson`.
#[derive(Debug, Clone)]
pub(crate) struct Expr {
    pub(crate) tpl: Tpl,
}

/// The source of a condition: accepts `"{{ check == 'YES' }}"` and bare `check == 'YES'`.
pub(crate) fn expression_source(src: &str) -> &str {
    let t = src.trim();
    if let Some(inner) = t.strip_prefix("{{").and_then(|r| r.strip_suffix("}}"))
        && !inner.contains("{{")
        && !inner.contains("}}")
    {
        return inner.trim();
    }
    t
}

/// True when `src` is exactly one `{{ expression }}` (its value keeps its type).
pub(crate) fn is_single_expression(src: &str) -> bool {
    let t = src.trim();
    t.starts_with("{{")
        && t.ends_with("}}")
        && t.len() >= 4
        && !t[2..t.len() - 2].contains("{{")
        && !t[2..t.len() - 2].contains("}}")
        && !t.contains("{%")
}

/// Wraps an expression so rendering yields its JSON.
pub(crate) fn json_wrapper(expr: &str) -> String {
    format!("{{{{ ({expr}) | tojson }}}}")
}

/// Wraps a condition so rendering yields `1` when true.
pub(crate) fn bool_wrapper(expr: &str) -> String {
    format!("{{% if ({expr}) %}}1{{% endif %}}")
}

/// True when the text has template markup.
pub(crate) fn has_markup(src: &str) -> bool {
    src.contains("{{") || src.contains("{%") || src.contains("{#")
}

/// The workflow-level `env` values, with the process environment behind them.
#[derive(Debug, Default)]
pub(crate) struct EnvVars {
    pub(crate) map: Map<String, Value>,
}

impl Object for EnvVars {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &MjValue) -> Option<MjValue> {
        let k = key.as_str()?;
        if let Some(v) = self.map.get(k) {
            return Some(to_mj(v));
        }
        std::env::var(k).ok().map(MjValue::from)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let keys: Vec<MjValue> = self.map.keys().map(|k| MjValue::from(k.as_str())).collect();
        Enumerator::Values(keys)
    }
}

/// JSON to a template value (strings without a serde round trip).
pub(crate) fn to_mj(v: &Value) -> MjValue {
    match v {
        Value::String(s) => MjValue::from(s.as_str()),
        Value::Bool(b) => MjValue::from(*b),
        Value::Null => MjValue::from(()),
        other => MjValue::from_serialize(other),
    }
}

/// Where step outputs come from when a template is rendered.
pub(crate) enum Outputs<'a> {
    /// By step index (the scheduler's own table), with the workflow's step names.
    Indexed {
        names: &'a [Arc<str>],
        values: &'a [Option<Value>],
    },
    /// By step name (a step context's `previous_outputs`).
    Named(&'a BTreeMap<String, Value>),
}

impl Outputs<'_> {
    fn get(&self, idx: u32, name: &str) -> Option<&Value> {
        match self {
            Outputs::Indexed { values, .. } => values.get(idx as usize)?.as_ref(),
            Outputs::Named(m) => m.get(name),
        }
    }

    fn by_name(&self, name: &str) -> Option<&Value> {
        match self {
            Outputs::Indexed { names, values } => {
                let i = names.iter().position(|n| &**n == name)?;
                values.get(i)?.as_ref()
            }
            Outputs::Named(m) => m.get(name),
        }
    }

    fn all(&self) -> Vec<(&str, &Value)> {
        match self {
            Outputs::Indexed { names, values } => names
                .iter()
                .zip(values.iter())
                .filter_map(|(n, v)| Some((&**n, v.as_ref()?)))
                .collect(),
            Outputs::Named(m) => m.iter().map(|(k, v)| (k.as_str(), v)).collect(),
        }
    }
}

/// Everything a template can see during a run.
pub(crate) struct Scope<'a> {
    pub(crate) input: &'a Value,
    pub(crate) vars: &'a Map<String, Value>,
    pub(crate) env: &'a Arc<EnvVars>,
    pub(crate) outputs: Outputs<'a>,
}

impl Scope<'_> {
    fn steps_value(&self) -> MjValue {
        MjValue::from_iter(self.outputs.all().into_iter().map(|(n, v)| {
            (
                MjValue::from(n),
                MjValue::from_iter([(MjValue::from("output"), to_mj(v))]),
            )
        }))
    }

    fn resolve(&self, r: &Ref) -> Option<(Arc<str>, MjValue)> {
        match r {
            Ref::Input => Some((Arc::from("input"), to_mj(self.input))),
            Ref::Env => Some((
                Arc::from("env"),
                MjValue::from_dyn_object(Arc::clone(self.env)),
            )),
            Ref::Steps => Some((Arc::from("steps"), self.steps_value())),
            Ref::Step(i, name) => self
                .outputs
                .get(*i, name)
                .map(|v| (Arc::clone(name), to_mj(v))),
            Ref::Var(name) => self.vars.get(&**name).map(|v| (Arc::clone(name), to_mj(v))),
        }
    }

    /// Resolves a name at run time (templates compiled on the fly).
    fn resolve_name(&self, name: &str) -> Option<MjValue> {
        match name {
            "input" => Some(to_mj(self.input)),
            "env" => Some(MjValue::from_dyn_object(Arc::clone(self.env))),
            "steps" => Some(self.steps_value()),
            _ => self
                .outputs
                .by_name(name)
                .or_else(|| self.vars.get(name))
                .map(to_mj),
        }
    }

    /// The names defined in this scope, for error messages.
    pub(crate) fn available(&self) -> String {
        let mut names: Vec<&str> = vec!["input", "env", "steps"];
        names.extend(self.outputs.all().into_iter().map(|(n, _)| n));
        names.extend(self.vars.keys().map(String::as_str));
        names.join(", ")
    }

    fn context(&self, refs: &[Ref]) -> (MjValue, Option<Arc<str>>) {
        let mut missing = None;
        let ctx = MjValue::from_iter(refs.iter().filter_map(|r| match self.resolve(r) {
            Some((k, v)) => Some((MjValue::from(k), v)),
            None => {
                if missing.is_none() {
                    missing = Some(match r {
                        Ref::Step(_, n) | Ref::Var(n) => Arc::clone(n),
                        Ref::Input => Arc::from("input"),
                        Ref::Env => Arc::from("env"),
                        Ref::Steps => Arc::from("steps"),
                    });
                }
                None
            }
        }));
        (ctx, missing)
    }
}

fn map_error(
    e: minijinja::Error,
    what: &str,
    missing: Option<&str>,
    scope: &Scope<'_>,
) -> TemplateError {
    if e.kind() == minijinja::ErrorKind::UndefinedError
        && let Some(var) = missing
    {
        return TemplateError::Undefined {
            what: what.to_owned(),
            variable: var.to_owned(),
            available: scope.available(),
        };
    }
    if e.kind() == minijinja::ErrorKind::SyntaxError {
        return TemplateError::Syntax {
            what: what.to_owned(),
            message: error_text(&e),
        };
    }
    TemplateError::Render {
        what: what.to_owned(),
        message: error_text(&e),
    }
}

/// A one-line description of a minijinja error.
pub(crate) fn error_text(e: &minijinja::Error) -> String {
    let mut s = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    if let Some(line) = e.line() {
        s.push_str(&format!(" (line {line})"));
    }
    s
}

/// Renders a compiled template.
pub(crate) fn render(
    env: &Environment<'static>,
    tpl: &Tpl,
    scope: &Scope<'_>,
    what: &dyn Fn() -> String,
) -> Result<String, TemplateError> {
    match tpl {
        Tpl::Static(s) => Ok(s.to_string()),
        Tpl::Compiled { name, refs, fast } => {
            if let Some(segs) = fast
                && let Some(out) = scope.render_fast(segs, refs)
            {
                return Ok(out);
            }
            let (ctx, missing) = scope.context(refs);
            let t = env
                .get_template(name)
                .map_err(|e| map_error(e, &what(), None, scope))?;
            t.render(ctx)
                .map_err(|e| map_error(e, &what(), missing.as_deref(), scope))
        }
    }
}

/// Evaluates a compiled condition.
pub(crate) fn eval_bool(
    env: &Environment<'static>,
    expr: &Expr,
    scope: &Scope<'_>,
    what: &dyn Fn() -> String,
) -> Result<bool, TemplateError> {
    Ok(render(env, &expr.tpl, scope, what)? == "1")
}

/// Evaluates a compiled typed expression to JSON.
pub(crate) fn eval_json(
    env: &Environment<'static>,
    expr: &Expr,
    scope: &Scope<'_>,
    what: &dyn Fn() -> String,
) -> Result<Value, TemplateError> {
    let text = render(env, &expr.tpl, scope, what)?;
    serde_json::from_str(&text).map_err(|e| TemplateError::Render {
        what: what(),
        message: format!("the expression's value is not data: {e}"),
    })
}

/// Renders a template source compiled on the fly (plugins' templates).
pub(crate) fn render_str(
    env: &Environment<'static>,
    source: &str,
    scope: &Scope<'_>,
    what: &dyn Fn() -> String,
) -> Result<String, TemplateError> {
    if !has_markup(source) {
        return Ok(source.to_owned());
    }
    let t = env
        .template_from_str(source)
        .map_err(|e| TemplateError::Syntax {
            what: what(),
            message: error_text(&e),
        })?;
    let names = t.undeclared_variables(false);
    let mut missing = None;
    let ctx = MjValue::from_iter(names.iter().filter_map(|n| match scope.resolve_name(n) {
        Some(v) => Some((MjValue::from(n.as_str()), v)),
        None => {
            if missing.is_none() && !is_builtin_global(n) {
                missing = Some(n.clone());
            }
            None
        }
    }));
    t.render(ctx)
        .map_err(|e| map_error(e, &what(), missing.as_deref(), scope))
}

/// Names minijinja provides itself (functions), never variables.
pub(crate) fn is_builtin_global(name: &str) -> bool {
    matches!(
        name,
        "range"
            | "dict"
            | "namespace"
            | "debug"
            | "true"
            | "false"
            | "none"
            | "True"
            | "False"
            | "None"
    )
}

/// Renders every string inside `value` as a template (compiled on the fly); a string that is
/// exactly one `{{ expression }}` keeps the expression's type.
pub(crate) fn render_value_str(
    env: &Environment<'static>,
    value: &Value,
    scope: &Scope<'_>,
    what: &dyn Fn() -> String,
) -> Result<Value, TemplateError> {
    match value {
        Value::String(s) if is_single_expression(s) => {
            let src = json_wrapper(expression_source(s));
            let text = render_str(env, &src, scope, what)?;
            serde_json::from_str(&text).map_err(|e| TemplateError::Render {
                what: what(),
                message: format!("the expression's value is not data: {e}"),
            })
        }
        Value::String(s) => Ok(Value::String(render_str(env, s, scope, what)?)),
        Value::Array(a) => a
            .iter()
            .map(|v| render_value_str(env, v, scope, what))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(o) => {
            let mut out = Map::new();
            for (k, v) in o {
                out.insert(k.clone(), render_value_str(env, v, scope, what)?);
            }
            Ok(Value::Object(out))
        }
        other => Ok(other.clone()),
    }
}

/// Evaluates a condition compiled on the fly.
pub(crate) fn eval_str(
    env: &Environment<'static>,
    expr: &str,
    scope: &Scope<'_>,
    what: &dyn Fn() -> String,
) -> Result<bool, TemplateError> {
    Ok(render_str(env, &bool_wrapper(expression_source(expr)), scope, what)? == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain-interpolation fast path gives exactly what minijinja gives.
    #[test]
    fn fast_path_matches_the_template_engine() {
        let mut env = new_environment();
        let outputs: Vec<Option<Value>> = vec![Some(Value::String("{{ x }} é\n".into()))];
        let names: Vec<Arc<str>> = vec![Arc::from("draft")];
        let mut vars = Map::new();
        vars.insert("tone".into(), Value::String("dry".into()));
        let env_vars = Arc::new(EnvVars::default());
        let input = Value::String("  in  ".into());
        let scope = Scope {
            input: &input,
            vars: &vars,
            env: &env_vars,
            outputs: Outputs::Indexed {
                names: &names,
                values: &outputs,
            },
        };
        let refs: Vec<Ref> = vec![
            Ref::Input,
            Ref::Step(0, Arc::from("draft")),
            Ref::Var(Arc::from("tone")),
        ];
        for (i, src) in [
            "A {{ input }} B {{draft}} C {{ tone }}\n",
            "{{ draft }}{{ draft }}",
            "no vars at {{input}}",
        ]
        .iter()
        .enumerate()
        {
            let name = format!("t{i}");
            env.add_template_owned(name.clone(), src.to_string())
                .unwrap();
            let segs = plain_segments(src, &refs).unwrap();
            let fast = scope.render_fast(&segs, &refs).unwrap();
            let (ctx, _) = scope.context(&refs);
            let slow = env.get_template(&name).unwrap().render(ctx).unwrap();
            assert_eq!(fast, slow, "{src}");
        }
        // Anything else takes the template engine.
        assert!(plain_segments("{{ draft | upper }}", &refs).is_none());
        assert!(plain_segments("{% if x %}{% endif %}", &refs).is_none());
        assert!(plain_segments("{{- draft }}", &refs).is_none());
        // Non-text values fall back too.
        let n = Value::from(3);
        let scope2 = Scope { input: &n, ..scope };
        assert!(
            scope2
                .render_fast(&plain_segments("{{ input }}", &refs).unwrap(), &refs)
                .is_none()
        );
    }
}
