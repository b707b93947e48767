//! The spec's "Validation Rules", over everything that read, every problem reported.

use std::collections::{BTreeMap, HashMap};

use super::diag::nearest;
use super::model::{
    ExecutionContext, Items, LoopDef, SCHEMA_VERSION, Step, TextOrList, WorkflowFile,
};
use super::parse::{Parsed, Sink, join_index, join_key};

/// Runs every semantic rule over what `parsed` holds.
pub fn validate(parsed: &Parsed, sink: &mut Sink<'_>) {
    let chain = parsed
        .header
        .as_ref()
        .is_some_and(|h| h.execution.providers.is_some());
    if let Some(h) = &parsed.header {
        header(h, sink);
    }
    if parsed.raw_step_names.is_empty() {
        sink.error(
            "steps",
            "the workflow has no steps; `steps` must have at least one element",
            Some(
                "add `steps:` with at least one step, e.g. `- name: hello` / `run: \"Say hello\"`"
                    .into(),
            ),
        );
    }
    names(&parsed.raw_step_names, &parsed.raw_loop_names, sink);
    let exec_servers = parsed
        .header
        .as_ref()
        .and_then(|h| h.execution.servers.clone());
    for (i, step) in &parsed.steps {
        one_step(*i, step, chain, &exec_servers, &parsed.raw_step_names, sink);
    }
    cycles(parsed, sink);
    for (i, l) in &parsed.loops {
        one_loop(*i, l, sink);
    }
}

/// True for a name usable as a template variable: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_identifier(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

/// True for `MAJOR.MINOR.PATCH` with optional `-pre` and `+build`.
pub fn is_semver(s: &str) -> bool {
    let core = s.split(['+']).next().unwrap_or_default();
    let (core, pre) = match core.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (core, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    let num_ok = |p: &&str| {
        !p.is_empty()
            && p.chars().all(|c| c.is_ascii_digit())
            && (p.len() == 1 || !p.starts_with('0'))
    };
    parts.len() == 3
        && parts.iter().all(num_ok)
        && pre.is_none_or(|p| {
            !p.is_empty()
                && p.split('.').all(|x| {
                    !x.is_empty() && x.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                })
        })
}

fn non_empty(path: &str, what: &str, value: &str, sink: &mut Sink<'_>) -> bool {
    if value.trim().is_empty() {
        sink.error(path, format!("{what} must not be empty"), None);
        false
    } else {
        true
    }
}

fn temperature(path: &str, t: Option<f64>, sink: &mut Sink<'_>) {
    if let Some(t) = t
        && !(0.0..=2.0).contains(&t)
    {
        sink.error(
            path,
            format!("`temperature` must be from 0.0 to 2.0, found {t}"),
            Some("0.0 is deterministic, 2.0 the most random".into()),
        );
    }
}

fn max_tokens(path: &str, m: Option<u32>, sink: &mut Sink<'_>) {
    if let Some(m) = m
        && !(1..=128_000).contains(&m)
    {
        sink.error(
            path,
            format!("`max_tokens` must be from 1 to 128000, found {m}"),
            None,
        );
    }
}

fn positive(path: &str, field: &str, v: Option<u32>, sink: &mut Sink<'_>) {
    if v == Some(0) {
        sink.error(path, format!("`{field}` must be at least 1, found 0"), None);
    }
}

fn name_list(path: &str, what: &str, list: &Option<Vec<String>>, sink: &mut Sink<'_>) {
    let Some(list) = list else { return };
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, s) in list.iter().enumerate() {
        let p = join_index(path, i);
        if s.trim().is_empty() {
            sink.error(&p, format!("a {what} name must not be empty"), None);
        } else if s.chars().any(char::is_whitespace) {
            sink.error(&p, format!("the {what} name `{s}` contains spaces"), None);
        } else if let Some(first) = seen.insert(s, i) {
            sink.error(
                &p,
                format!("the {what} `{s}` is listed twice (also at index {first})"),
                Some("remove the repeated entry".into()),
            );
        }
    }
}

/// Runs a template-engine check, turning its error (or a panic inside the template engine,
/// which some malformed input has been seen to cause) into a message.
fn compiles(
    check: impl FnOnce(&minijinja::Environment<'static>) -> Result<(), minijinja::Error>,
) -> Result<(), String> {
    let env = minijinja::Environment::new();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&env))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!(
            "{}{}",
            e.detail().unwrap_or("syntax error"),
            e.line()
                .map(|l| format!(" (line {l} of the template)"))
                .unwrap_or_default()
        )),
        Err(_) => Err("the template engine could not read it".to_owned()),
    }
}

/// Checks a `{{ }}` template's syntax.
pub fn template_syntax(path: &str, field: &str, text: &str, sink: &mut Sink<'_>) {
    if let Err(why) = compiles(|env| env.template_from_str(text).map(|_| ())) {
        sink.error(
            path,
            format!("the template in `{field}` does not parse: {why}"),
            Some(
                "templates use `{{ name }}` for values and `{% if %}...{% endif %}` for logic"
                    .into(),
            ),
        );
    }
}

/// The expression of an `if`: the inside of `{{ ... }}` when the text is one such block,
/// else the text itself.
pub fn if_expression(text: &str) -> &str {
    let t = text.trim();
    if let Some(inner) = t.strip_prefix("{{").and_then(|r| r.strip_suffix("}}"))
        && !inner.contains("{{")
        && !inner.contains("}}")
    {
        inner.trim()
    } else {
        t
    }
}

fn header(h: &WorkflowFile, sink: &mut Sink<'_>) {
    if h.schema != SCHEMA_VERSION {
        sink.error(
            "$schema",
            format!("`$schema` must be `{SCHEMA_VERSION}`, found `{}`", h.schema),
            Some(format!("write `$schema: \"{SCHEMA_VERSION}\"`")),
        );
    }
    if non_empty("name", "the workflow `name`", &h.name, sink)
        && h.name.chars().any(char::is_whitespace)
    {
        sink.error(
            "name",
            format!(
                "the workflow name `{}` contains spaces; it is how other workflows call this one",
                h.name
            ),
            Some("use letters, digits, `_` or `-`".into()),
        );
    }
    if !is_semver(&h.version) {
        sink.error(
            "version",
            format!(
                "`version` must be a semantic version, found `{}`",
                h.version
            ),
            Some("write MAJOR.MINOR.PATCH, e.g. \"1.0.0\"".into()),
        );
    }
    non_empty("description", "`description`", &h.description, sink);
    execution(&h.execution, sink);
    for key in h.env.keys() {
        if !is_identifier(key) {
            sink.error(
                &join_key("env", key),
                format!("the env name `{key}` is not usable as `{{{{ env.{key} }}}}`"),
                Some("use letters, digits and `_`, not starting with a digit".into()),
            );
        }
    }
}

fn execution(e: &ExecutionContext, sink: &mut Sink<'_>) {
    let p = "execution";
    match (&e.provider, &e.model, &e.providers) {
        (Some(_), _, Some(_)) => sink.error(
            "execution.providers",
            "`execution` has both `provider` and `providers`; they are mutually exclusive",
            Some("keep `provider` + `model` for one provider, or `providers` for a failover chain".into()),
        ),
        (None, Some(_), Some(_)) => sink.error(
            "execution.model",
            "`execution.model` cannot be combined with `providers`; each chain entry names its model",
            None,
        ),
        (Some(pr), Some(m), None) => {
            non_empty("execution.provider", "`provider`", pr, sink);
            non_empty("execution.model", "`model`", m, sink);
        }
        (Some(_), None, None) => sink.error(
            p,
            "`execution` names a `provider` but no `model`",
            Some("add `model: ...`".into()),
        ),
        (None, Some(_), None) => sink.error(
            p,
            "`execution` names a `model` but no `provider`",
            Some("add `provider: ...`".into()),
        ),
        (None, None, None) => sink.error(
            p,
            "`execution` must have `provider` + `model`, or a `providers` failover chain",
            Some("e.g. `provider: openai` and `model: gpt-4o-mini`".into()),
        ),
        (None, None, Some(chain)) => {
            if chain.is_empty() {
                sink.error(
                    "execution.providers",
                    "`providers` must list at least one provider",
                    None,
                );
            }
            for (i, f) in chain.iter().enumerate() {
                let fp = join_index("execution.providers", i);
                non_empty(&join_key(&fp, "provider"), "`provider`", &f.provider, sink);
                non_empty(&join_key(&fp, "model"), "`model`", &f.model, sink);
                temperature(&join_key(&fp, "temperature"), f.temperature, sink);
                max_tokens(&join_key(&fp, "max_tokens"), f.max_tokens, sink);
            }
        }
    }
    temperature("execution.temperature", e.temperature, sink);
    max_tokens("execution.max_tokens", e.max_tokens, sink);
    positive("execution.max_workers", "max_workers", e.max_workers, sink);
    name_list("execution.servers", "server", &e.servers, sink);
    name_list("execution.skills", "skill", &e.skills, sink);
}

fn names(steps: &[Option<String>], loops: &[Option<String>], sink: &mut Sink<'_>) {
    let mut seen: BTreeMap<&str, String> = BTreeMap::new();
    let all = steps
        .iter()
        .enumerate()
        .map(|(i, n)| (join_index("steps", i), n))
        .chain(
            loops
                .iter()
                .enumerate()
                .map(|(i, n)| (join_index("loops", i), n)),
        );
    for (path, n) in all {
        let Some(n) = n else { continue };
        let np = join_key(&path, "name");
        if n.trim().is_empty() {
            sink.error(&np, "a step or loop `name` must not be empty", None);
            continue;
        }
        if n.chars().any(char::is_whitespace) {
            sink.error(
                &np,
                format!("the name `{n}` contains spaces; later steps read its output as `{{{{ name }}}}`"),
                Some("use letters, digits and `_`".into()),
            );
        }
        if matches!(n.as_str(), "input" | "env" | "steps" | "loop" | "item") {
            sink.error(
                &np,
                format!("`{n}` is a reserved variable name and cannot name a step or loop"),
                Some("choose another name".into()),
            );
        }
        if let Some(first) = seen.get(n.as_str()) {
            let (line, _) = sink.index.get(&join_key(first, "name"));
            sink.error(
                &np,
                format!("the name `{n}` is used twice (first at line {line}); names must be unique within a workflow"),
                Some("rename one of them".into()),
            );
        } else {
            seen.insert(n, path);
        }
    }
}

fn step_names_before(raw: &[Option<String>], i: usize) -> Vec<&str> {
    raw[..i.min(raw.len())]
        .iter()
        .filter_map(|n| n.as_deref())
        .collect()
}

fn one_step(
    i: usize,
    s: &Step,
    chain: bool,
    exec_servers: &Option<Vec<String>>,
    raw: &[Option<String>],
    sink: &mut Sink<'_>,
) {
    let p = join_index("steps", i);
    let at = |f: &str| join_key(&p, f);
    // Exactly one mode.
    let mut modes = Vec::new();
    if s.run.is_some() {
        modes.push("run");
    }
    if s.template.is_some() {
        modes.push("template");
    }
    if s.embeddings.is_some() {
        modes.push("embeddings");
    }
    if s.consensus.is_some() {
        modes.push("consensus");
    }
    if s.loop_.as_ref().is_some_and(|l| l.workflow.is_some()) {
        modes.push("loop.workflow");
    }
    match modes.len() {
        0 => sink.error(
            &p,
            format!("step `{}` has no execution mode", s.name),
            Some("give it exactly one of `run`, `template`, `embeddings` or `consensus`".into()),
        ),
        1 => {}
        _ => {
            let second = if modes[1] == "loop.workflow" {
                at("loop.workflow")
            } else {
                at(modes[1])
            };
            sink.error(
                &second,
                format!(
                    "step `{}` has {} execution modes ({}); a step has exactly one",
                    s.name,
                    modes.len(),
                    modes
                        .iter()
                        .map(|m| format!("`{m}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Some("split it into one step per mode".into()),
            );
        }
    }
    // needs
    if let Some(needs) = &s.needs {
        let before = step_names_before(raw, i);
        let mut seen = Vec::new();
        for (k, n) in needs.iter().enumerate() {
            let np = join_index(&at("needs"), k);
            if seen.contains(&n.as_str()) {
                sink.error(&np, format!("`{n}` is listed twice in `needs`"), None);
                continue;
            }
            seen.push(n);
            if *n == s.name {
                sink.error(
                    &np,
                    format!("step `{n}` needs itself"),
                    Some("remove it from `needs`".into()),
                );
            } else if before.contains(&n.as_str()) {
            } else if let Some(j) = raw.iter().position(|r| r.as_deref() == Some(n.as_str())) {
                let (line, _) = sink.index.get(&join_index("steps", j));
                sink.error(
                    &np,
                    format!(
                        "step `{}` needs `{n}`, which is declared after it (line {line}); `needs` can only reference previous steps",
                        s.name
                    ),
                    Some(format!("move `{n}` above `{}`", s.name)),
                );
            } else {
                let help = match nearest(n, before.iter().copied()) {
                    Some(m) => format!(
                        "did you mean `{m}`? steps before this one: {}",
                        before.join(", ")
                    ),
                    None if before.is_empty() => {
                        "this is the first step; nothing comes before it".into()
                    }
                    None => format!("steps before this one: {}", before.join(", ")),
                };
                sink.error(
                    &np,
                    format!(
                        "step `{}` needs `{n}`, which is not a step of this workflow",
                        s.name
                    ),
                    Some(help),
                );
            }
        }
    }
    if let Some(c) = &s.condition {
        if c.trim().is_empty() {
            sink.error(
                &at("if"),
                "`if` must not be empty",
                Some("remove it, or write an expression such as \"{{ check == 'YES' }}\"".into()),
            );
        } else {
            let expr = if_expression(c);
            let markup = ["{{", "}}", "{%", "%}", "{#", "#}"]
                .iter()
                .find(|m| expr.contains(**m));
            let parsed = match markup {
                Some(m) => Err(format!(
                    "`{m}` inside the expression (write one `{{{{ ... }}}}` around all of it, or none)"
                )),
                None => compiles(|env| env.compile_expression(expr).map(|_| ())),
            };
            if let Err(why) = parsed {
                sink.error(
                    &at("if"),
                    format!("the `if` expression does not parse: {why}"),
                    Some("write an expression such as \"{{ check == 'YES' }}\" or \"{{ score > 3 }}\"".into()),
                );
            }
        }
    }
    if let Some(r) = &s.run
        && non_empty(&at("run"), "`run`", r, sink)
    {
        template_syntax(&at("run"), "run", r, sink);
    }
    temperature(&at("temperature"), s.temperature, sink);
    max_tokens(&at("max_tokens"), s.max_tokens, sink);
    positive(
        &at("max_iterations"),
        "max_iterations",
        s.max_iterations,
        sink,
    );
    if s.on_failure == Some(super::model::OnFailure::Retry) {
        sink.error(
            &at("on_failure"),
            "`on_failure: retry` applies to loops; a step takes `continue` or `fail`",
            Some("use `continue` to let the run go on, or `fail` (the default)".into()),
        );
    }
    let servers = s
        .servers
        .as_ref()
        .or(exec_servers.as_ref())
        .filter(|v| !v.is_empty());
    if let Some(servers) = servers {
        sink.warn(
            &p,
            format!(
                "step `{}` uses MCP servers ({}): tool execution from MCP servers is not supported yet, so running it stops before the first call",
                s.name,
                servers.join(", ")
            ),
            None,
        );
    }
    name_list(&at("servers"), "server", &s.servers, sink);
    name_list(&at("skills"), "skill", &s.skills, sink);
    if chain && s.model.is_some() && s.provider.is_none() {
        sink.error(
            &at("model"),
            "a step `model` without `provider` is ambiguous when the workflow uses a `providers` failover chain",
            Some("set `provider` too (this replaces the chain for the step), or drop `model`".into()),
        );
    }
    if let Some(pr) = &s.provider {
        non_empty(&at("provider"), "`provider`", pr, sink);
    }
    if let Some(t) = &s.template {
        let tp = at("template");
        non_empty(&join_key(&tp, "name"), "the template `name`", &t.name, sink);
        with_values(&join_key(&tp, "with"), &t.with_, sink);
    }
    if let Some(e) = &s.embeddings {
        let ep = at("embeddings");
        match (&e.input, &e.input_file) {
            (Some(_), Some(_)) => sink.error(
                &join_key(&ep, "input_file"),
                "`embeddings` has both `input` and `input_file`; give one",
                None,
            ),
            (None, None) => sink.error(
                &ep,
                "`embeddings` needs `input` (text or list of texts) or `input_file`",
                None,
            ),
            (Some(TextOrList::Many(v)), None) if v.is_empty() => sink.error(
                &join_key(&ep, "input"),
                "`input` must list at least one text",
                None,
            ),
            (Some(input), None) => {
                for (k, t) in input.texts().iter().enumerate() {
                    if t.trim().is_empty() {
                        sink.error(
                            &join_index(&join_key(&ep, "input"), k),
                            "an `input` text must not be empty",
                            None,
                        );
                    }
                }
            }
            (None, Some(f)) => {
                non_empty(&join_key(&ep, "input_file"), "`input_file`", f, sink);
            }
        }
        positive(
            &join_key(&ep, "max_chunk_size"),
            "max_chunk_size",
            e.max_chunk_size,
            sink,
        );
        positive(
            &join_key(&ep, "dimensions"),
            "dimensions",
            e.dimensions,
            sink,
        );
        let size = e.max_chunk_size.unwrap_or(512);
        if let Some(o) = e.overlap
            && o >= size
        {
            sink.error(
                &join_key(&ep, "overlap"),
                format!("`overlap` ({o}) must be smaller than `max_chunk_size` ({size})"),
                None,
            );
        }
        if let Some(f) = &e.output_file {
            non_empty(&join_key(&ep, "output_file"), "`output_file`", f, sink);
        }
    }
    if let Some(c) = &s.consensus {
        let cp = at("consensus");
        if non_empty(
            &join_key(&cp, "prompt"),
            "the consensus `prompt`",
            &c.prompt,
            sink,
        ) {
            template_syntax(
                &join_key(&cp, "prompt"),
                "consensus.prompt",
                &c.prompt,
                sink,
            );
        }
        if c.executions.len() < 2 {
            sink.error(
                &join_key(&cp, "executions"),
                format!(
                    "consensus needs at least 2 executions, found {}",
                    c.executions.len()
                ),
                Some("add another `- provider: ...` / `model: ...` entry; agreement needs more than one answer".into()),
            );
        }
        for (k, x) in c.executions.iter().enumerate() {
            let xp = join_index(&join_key(&cp, "executions"), k);
            non_empty(&join_key(&xp, "provider"), "`provider`", &x.provider, sink);
            non_empty(&join_key(&xp, "model"), "`model`", &x.model, sink);
            temperature(&join_key(&xp, "temperature"), x.temperature, sink);
            max_tokens(&join_key(&xp, "max_tokens"), x.max_tokens, sink);
            name_list(&join_key(&xp, "servers"), "server", &x.servers, sink);
        }
    }
    if let Some(l) = &s.loop_ {
        let lp = at("loop");
        match &l.items {
            Items::List(v) if v.is_empty() => {
                sink.error(&join_key(&lp, "items"), "`items` must list at least one item", None)
            }
            Items::Source(src) if src.trim().is_empty() => {
                sink.error(&join_key(&lp, "items"), "`items` must not be empty", Some("give a list, or \"file://items.json\"".into()))
            }
            Items::Source(src) if src.starts_with("file://") && src.len() == "file://".len() => {
                sink.error(&join_key(&lp, "items"), "`file://` names no file", None)
            }
            Items::Source(src) if !src.starts_with("file://") && !src.contains("{{") => sink.error(
                &join_key(&lp, "items"),
                format!("`items` is the text `{src}`, which is neither a list nor a `file://` reference"),
                Some("give a list, \"file://items.json\", or a template such as \"{{ step_output }}\" that renders a JSON array".into()),
            ),
            _ => {}
        }
        positive(
            &join_key(&lp, "max_workers"),
            "max_workers",
            l.max_workers,
            sink,
        );
        positive(
            &join_key(&lp, "max_iterations"),
            "max_iterations",
            l.max_iterations,
            sink,
        );
        if let Some(w) = &l.workflow {
            non_empty(&join_key(&lp, "workflow"), "`loop.workflow`", w, sink);
        }
        with_values(&join_key(&lp, "with"), &l.with_, sink);
    }
}

fn with_values(path: &str, with: &serde_json::Map<String, serde_json::Value>, sink: &mut Sink<'_>) {
    for (k, v) in with {
        let kp = join_key(path, k);
        if !is_identifier(k) {
            sink.error(
                &kp,
                format!("`{k}` cannot be a variable name"),
                Some("use letters, digits and `_`, not starting with a digit".into()),
            );
        }
        if let Some(s) = v.as_str() {
            template_syntax(&kp, k, s, sink);
        }
    }
}

fn one_loop(i: usize, l: &LoopDef, sink: &mut Sink<'_>) {
    let p = join_index("loops", i);
    let at = |f: &str| join_key(&p, f);
    non_empty(&at("workflow"), "the loop `workflow`", &l.workflow, sink);
    if l.max_iterations == 0 {
        sink.error(
            &at("max_iterations"),
            "`max_iterations` must be a positive integer, found 0",
            Some("it is the loop's safety limit; e.g. `max_iterations: 5`".into()),
        );
    }
    non_empty(&at("until"), "`until`", &l.until, sink);
    if let Some(a) = &l.accumulate
        && !is_identifier(a)
    {
        sink.error(
            &at("accumulate"),
            format!("`accumulate` must be a variable name, found `{a}`"),
            Some("use letters, digits and `_`".into()),
        );
    }
    with_values(&at("with"), &l.with_, sink);
}

fn cycles(parsed: &Parsed, sink: &mut Sink<'_>) {
    // Edges step -> needed step, over steps that read.
    let by_name: HashMap<&str, usize> = parsed
        .raw_step_names
        .iter()
        .enumerate()
        .filter_map(|(i, n)| n.as_deref().map(|n| (n, i)))
        .collect();
    let mut edges: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, s) in &parsed.steps {
        for n in s.needs.iter().flatten() {
            if let Some(&j) = by_name.get(n.as_str())
                && j != *i
            {
                edges.entry(*i).or_default().push(j);
            }
        }
    }
    // Iterative DFS with colours; each cycle reported once, at its first step.
    let n = parsed.raw_step_names.len();
    let mut colour = vec![0u8; n];
    let mut reported = std::collections::HashSet::new();
    for start in 0..n {
        if colour[start] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        let mut path: Vec<usize> = vec![start];
        colour[start] = 1;
        while let Some((node, next)) = stack.last().copied() {
            let outs = edges.get(&node).map(Vec::as_slice).unwrap_or(&[]);
            if next < outs.len() {
                if let Some(top) = stack.last_mut() {
                    top.1 += 1;
                }
                let m = outs[next];
                if colour[m] == 1 {
                    let pos = path.iter().position(|&x| x == m).unwrap_or(0);
                    let mut cyc: Vec<usize> = path[pos..].to_vec();
                    let mut key = cyc.clone();
                    key.sort_unstable();
                    if reported.insert(key) {
                        let first = *cyc.iter().min().unwrap_or(&m);
                        cyc.push(m);
                        let names: Vec<String> = cyc
                            .iter()
                            .map(|&k| parsed.raw_step_names[k].clone().unwrap_or_default())
                            .collect();
                        sink.error(
                            &join_key(&join_index("steps", first), "needs"),
                            format!("the steps' `needs` form a cycle: {}", names.join(" → ")),
                            Some("a step can only need steps declared before it; remove one of these dependencies".into()),
                        );
                    }
                } else if colour[m] == 0 {
                    colour[m] = 1;
                    stack.push((m, 0));
                    path.push(m);
                }
            } else {
                colour[node] = 2;
                stack.pop();
                path.pop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_and_identifiers() {
        for ok in ["1.0.0", "0.10.2", "1.2.3-rc.1", "1.2.3+build.5"] {
            assert!(is_semver(ok), "{ok}");
        }
        for bad in ["1.0", "v1.0.0", "01.0.0", "1.0.0-", "one"] {
            assert!(!is_semver(bad), "{bad}");
        }
        assert!(is_identifier("draft_2"));
        assert!(!is_identifier("2draft"));
        assert!(!is_identifier("a-b"));
    }

    #[test]
    fn if_expressions_lose_their_braces() {
        assert_eq!(if_expression("{{ a == 'YES' }}"), "a == 'YES'");
        assert_eq!(if_expression("a > 3"), "a > 3");
        assert_eq!(if_expression("{{ a }} and {{ b }}"), "{{ a }} and {{ b }}");
    }
}
