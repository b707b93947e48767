//! From text to typed definitions, collecting every problem with its location.
//!
//! 1. The size is checked before anything is parsed.
//! 2. A scan over the YAML events (`yaml-rust2`, which reports line and column for every
//!    event) builds an index from field paths (`steps[2].temperature`) to positions and
//!    rejects, with their locations, syntax errors, duplicate keys, nesting deeper than the
//!    limit, more than one document and aliases that expand past the limit (alias bombs).
//! 3. `serde_yaml` reads the text into a `serde_yaml::Value`.
//! 4. Each part (the header, every step, every loop) is deserialized on its own into the
//!    typed definitions (`deny_unknown_fields`), tracking the failing path with
//!    `serde_path_to_error`; after an error the offending field is removed (or a
//!    placeholder put in for a missing one) and the part is read again, so every problem of
//!    every part is reported, not only the first.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_yaml::Value;
use yaml_rust2::Event;
use yaml_rust2::parser::Parser;

use super::diag::{Diagnostic, Location, Severity, nearest};
use super::model::{LoopDef, Step, WorkflowFile};

/// Limits that keep hostile or broken files from exhausting memory or time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest file accepted, in bytes (default 1 MiB).
    pub max_bytes: usize,
    /// Deepest nesting of mappings and sequences (default 64).
    pub max_depth: usize,
    /// Most nodes that aliases (`*name`) may add by expansion (default 10,000).
    pub max_alias_nodes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 1024 * 1024,
            max_depth: 64,
            max_alias_nodes: 10_000,
        }
    }
}

/// Field path → (line, column) of the key (or of the item, in a sequence), 1-based.
#[derive(Debug, Clone, Default)]
pub struct PosIndex {
    map: HashMap<String, (usize, usize)>,
}

impl PosIndex {
    /// The position of `path`, or of its nearest ancestor that has one, or 1:1.
    pub fn get(&self, path: &str) -> (usize, usize) {
        let mut p = path;
        loop {
            if let Some(pos) = self.map.get(p) {
                return *pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return self.map.get("").copied().unwrap_or((1, 1)),
            }
        }
    }
}

/// A diagnostics sink that knows the file and the position index.
#[derive(Debug)]
pub struct Sink<'a> {
    /// The file name.
    pub file: Arc<str>,
    /// Positions.
    pub index: &'a PosIndex,
    /// Collected problems.
    pub out: Vec<Diagnostic>,
    /// How to name a path in messages (`steps[2]` → "step `review`").
    pub labels: HashMap<String, String>,
}

impl Sink<'_> {
    /// Records an error at `path`.
    pub fn error(&mut self, path: &str, message: impl Into<String>, help: Option<String>) {
        self.push(Severity::Error, path, message.into(), help);
    }

    /// Records a warning at `path`.
    pub fn warn(&mut self, path: &str, message: impl Into<String>, help: Option<String>) {
        self.push(Severity::Warning, path, message.into(), help);
    }

    fn push(&mut self, severity: Severity, path: &str, message: String, help: Option<String>) {
        let (line, column) = self.index.get(path);
        self.out.push(Diagnostic {
            severity,
            location: Location {
                file: self.file.clone(),
                line,
                column,
            },
            path: path.to_owned(),
            message,
            help,
        });
    }
}

pub(crate) fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

pub(crate) fn join_index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

fn diag_at(
    file: &Arc<str>,
    line: usize,
    column: usize,
    message: String,
    help: Option<String>,
) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        location: Location {
            file: file.clone(),
            line,
            column,
        },
        path: String::new(),
        message,
        help,
    }
}

enum Frame {
    Map {
        path: String,
        expecting_key: bool,
        key: String,
        seen: HashMap<String, usize>,
        anchor: usize,
        size: u64,
    },
    Seq {
        path: String,
        index: usize,
        anchor: usize,
        size: u64,
    },
}

/// Scans the YAML events: positions, syntax, duplicates, depth, documents, alias budget.
pub fn scan(src: &str, file: &Arc<str>, limits: &Limits) -> Result<PosIndex, Vec<Diagnostic>> {
    let mut index = PosIndex::default();
    let mut errors = Vec::new();
    let mut frames: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, u64> = HashMap::new();
    let mut alias_nodes: u64 = 0;
    let mut documents = 0usize;
    let mut parser = Parser::new_from_str(src);
    loop {
        let (event, mark) = match parser.next_token() {
            Ok(x) => x,
            Err(e) => {
                let m = e.marker();
                errors.push(diag_at(
                    file,
                    m.line().max(1),
                    m.col() + 1,
                    format!("YAML syntax error: {}", e.info()),
                    Some(
                        "check the indentation and the brackets, quotes and colons around this place"
                            .into(),
                    ),
                ));
                return Err(errors);
            }
        };
        let (line, col) = (mark.line().max(1), mark.col() + 1);
        // The path of a node starting here, and whether it is a mapping key.
        let node_path = |frames: &mut Vec<Frame>, index: &mut PosIndex| -> Option<String> {
            match frames.last_mut() {
                None => {
                    index.map.entry(String::new()).or_insert((line, col));
                    Some(String::new())
                }
                Some(Frame::Map {
                    path,
                    expecting_key,
                    key,
                    ..
                }) => {
                    if *expecting_key {
                        None
                    } else {
                        Some(join_key(path, key))
                    }
                }
                Some(Frame::Seq { path, index: i, .. }) => {
                    let p = join_index(path, *i);
                    index.map.entry(p.clone()).or_insert((line, col));
                    Some(p)
                }
            }
        };
        match event {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    errors.push(diag_at(
                        file,
                        line,
                        col,
                        "a second YAML document starts here; a workflow file holds exactly one"
                            .into(),
                        Some(
                            "remove the `---` line and what follows, or put it in its own file"
                                .into(),
                        ),
                    ));
                    return Err(errors);
                }
            }
            Event::Scalar(text, _, anchor, _) => {
                let is_key = matches!(
                    frames.last(),
                    Some(Frame::Map {
                        expecting_key: true,
                        ..
                    })
                );
                if is_key {
                    if let Some(Frame::Map {
                        path, key, seen, ..
                    }) = frames.last_mut()
                    {
                        let p = join_key(path, &text);
                        if let Some(first) = seen.get(&text) {
                            errors.push(diag_at(
                                file,
                                line,
                                col,
                                format!(
                                    "duplicate key `{text}`: it was already set on line {first}"
                                ),
                                Some(
                                    "remove one of the two; YAML keeps only one value per key"
                                        .into(),
                                ),
                            ));
                        } else {
                            if seen.is_empty() && path.ends_with(']') {
                                // A mapping in a list starts where its first key does.
                                index.map.insert(path.clone(), (line, col));
                            }
                            seen.insert(text.clone(), line);
                            index.map.insert(p, (line, col));
                        }
                        *key = text;
                    }
                } else {
                    node_path(&mut frames, &mut index);
                }
                if anchor > 0 {
                    anchors.insert(anchor, 1);
                }
                finish_node(&mut frames, 1);
            }
            Event::Alias(id) => {
                node_path(&mut frames, &mut index);
                let size = anchors.get(&id).copied().unwrap_or(1);
                alias_nodes = alias_nodes.saturating_add(size);
                if alias_nodes > limits.max_alias_nodes {
                    errors.push(diag_at(
                        file,
                        line,
                        col,
                        format!(
                            "YAML aliases expand to more than {} nodes (an alias bomb); the file is refused",
                            limits.max_alias_nodes
                        ),
                        Some("write the repeated values out, or use fewer nested aliases".into()),
                    ));
                    return Err(errors);
                }
                finish_node(&mut frames, size);
            }
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                if frames.len() >= limits.max_depth {
                    errors.push(diag_at(
                        file,
                        line,
                        col,
                        format!(
                            "the YAML is nested more than {} levels deep",
                            limits.max_depth
                        ),
                        Some(
                            "a workflow file never needs this much nesting; flatten the structure"
                                .into(),
                        ),
                    ));
                    return Err(errors);
                }
                let path = node_path(&mut frames, &mut index)
                    .unwrap_or_else(|| "<complex key>".to_owned());
                if matches!(event, Event::MappingStart(..)) {
                    frames.push(Frame::Map {
                        path,
                        expecting_key: true,
                        key: String::new(),
                        seen: HashMap::new(),
                        anchor,
                        size: 1,
                    });
                } else {
                    frames.push(Frame::Seq {
                        path,
                        index: 0,
                        anchor,
                        size: 1,
                    });
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let (anchor, size) = match frames.pop() {
                    Some(Frame::Map { anchor, size, .. })
                    | Some(Frame::Seq { anchor, size, .. }) => (anchor, size),
                    None => (0, 1),
                };
                if anchor > 0 {
                    anchors.insert(anchor, size);
                }
                finish_node(&mut frames, size);
            }
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok(index)
    } else {
        Err(errors)
    }
}

fn finish_node(frames: &mut [Frame], size: u64) {
    match frames.last_mut() {
        Some(Frame::Map {
            expecting_key,
            size: s,
            ..
        }) => {
            *expecting_key = !*expecting_key;
            *s = s.saturating_add(size);
        }
        Some(Frame::Seq { index, size: s, .. }) => {
            *index += 1;
            *s = s.saturating_add(size);
        }
        None => {}
    }
}

/// The result of reading one file.
#[derive(Debug)]
pub struct Parsed {
    /// The header (everything but steps and loops), when it read without error.
    pub header: Option<WorkflowFile>,
    /// The steps that read without error, with their index in the file.
    pub steps: Vec<(usize, Step)>,
    /// The loops that read without error, with their index in the file.
    pub loops: Vec<(usize, LoopDef)>,
    /// True when `steps` was a list (present).
    pub has_steps_list: bool,
    /// Positions of every field.
    pub index: PosIndex,
    /// Problems so far.
    pub diags: Vec<Diagnostic>,
    /// The steps' names as written (also for steps that did not read), in order.
    pub raw_step_names: Vec<Option<String>>,
    /// The loops' names as written.
    pub raw_loop_names: Vec<Option<String>>,
    /// Paths that had a structural error: semantic checks at or under them are dropped.
    pub error_paths: Vec<String>,
    /// Roots of parts that read only after fixes: semantic checks exactly there are dropped.
    pub partial_roots: Vec<String>,
}

/// Reads `src` as a workflow file. Never panics; every problem is a diagnostic.
pub fn parse(src: &str, file: Arc<str>, limits: &Limits) -> Parsed {
    let mut parsed = Parsed {
        header: None,
        steps: Vec::new(),
        loops: Vec::new(),
        has_steps_list: false,
        index: PosIndex::default(),
        diags: Vec::new(),
        raw_step_names: Vec::new(),
        raw_loop_names: Vec::new(),
        error_paths: Vec::new(),
        partial_roots: Vec::new(),
    };
    if src.len() > limits.max_bytes {
        parsed.diags.push(diag_at(
            &file,
            1,
            1,
            format!(
                "the file is {} bytes, more than the {} bytes a workflow file may have",
                src.len(),
                limits.max_bytes
            ),
            Some("split it into smaller workflows called with `template`, or raise `LoadOptions::limits.max_bytes`".into()),
        ));
        return parsed;
    }
    if src.trim().is_empty() {
        parsed.diags.push(diag_at(
            &file,
            1,
            1,
            "the file is empty".into(),
            Some("a workflow needs `$schema: workflow/v2.0`, `name`, `version`, `description`, `execution` and `steps`".into()),
        ));
        return parsed;
    }
    match scan(src, &file, limits) {
        Ok(index) => parsed.index = index,
        Err(d) => {
            parsed.diags = d;
            return parsed;
        }
    }
    let root: Value = match serde_yaml::from_str(src) {
        Ok(v) => v,
        Err(e) => {
            let (line, col) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            parsed
                .diags
                .push(diag_at(&file, line, col, format!("YAML error: {e}"), None));
            return parsed;
        }
    };
    let mut sink = Sink {
        file: file.clone(),
        index: &parsed.index,
        out: Vec::new(),
        labels: HashMap::new(),
    };
    let mut taint = Taint::default();
    if root.is_null() {
        sink.error(
            "",
            "the file is empty (it holds no YAML value, only comments or nothing)",
            Some("a workflow needs `$schema: workflow/v2.0`, `name`, `version`, `description`, `execution` and `steps`".into()),
        );
        parsed.diags = sink.out;
        return parsed;
    }
    let Value::Mapping(mut map) = root else {
        sink.error(
            "",
            format!(
                "the file's top level is {}, not a mapping of fields",
                describe(&root)
            ),
            Some("start the file with `$schema: workflow/v2.0` and `name: ...` lines".into()),
        );
        parsed.diags = sink.out;
        return parsed;
    };
    // Steps and loops are read one by one; the rest as the header.
    let mut steps = Vec::new();
    let mut raw_step_names = Vec::new();
    let has_steps_list = matches!(map.get("steps"), Some(Value::Sequence(_)));
    if let Some(Value::Sequence(items)) = map.get("steps") {
        let items = items.clone();
        map.insert(Value::from("steps"), Value::Sequence(Vec::new()));
        for (i, item) in items.into_iter().enumerate() {
            let name = item.get("name").and_then(Value::as_str).map(str::to_owned);
            if let Some(n) = &name {
                sink.labels
                    .insert(join_index("steps", i), format!("step `{n}`"));
            }
            raw_step_names.push(name);
            if let Some(s) = read_part::<Step>(item, &join_index("steps", i), &mut sink, &mut taint)
            {
                steps.push((i, s));
            }
        }
    }
    let mut loops = Vec::new();
    let mut raw_loop_names = Vec::new();
    if let Some(Value::Sequence(items)) = map.get("loops") {
        let items = items.clone();
        map.insert(Value::from("loops"), Value::Sequence(Vec::new()));
        for (i, item) in items.into_iter().enumerate() {
            let name = item.get("name").and_then(Value::as_str).map(str::to_owned);
            if let Some(n) = &name {
                sink.labels
                    .insert(join_index("loops", i), format!("loop `{n}`"));
            }
            raw_loop_names.push(name);
            if let Some(l) =
                read_part::<LoopDef>(item, &join_index("loops", i), &mut sink, &mut taint)
            {
                loops.push((i, l));
            }
        }
    }
    let header = read_part::<WorkflowFile>(Value::Mapping(map), "", &mut sink, &mut taint);
    parsed.error_paths = taint.error_paths;
    parsed.partial_roots = taint.partial_roots;
    parsed.diags = sink.out;
    parsed.raw_step_names = raw_step_names;
    parsed.raw_loop_names = raw_loop_names;
    parsed.header = header;
    parsed.steps = steps;
    parsed.loops = loops;
    parsed.has_steps_list = has_steps_list;
    parsed
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "empty (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a text",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

fn segs_of(path: &serde_path_to_error::Path) -> Vec<Seg> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Seq { index } => Some(Seg::Index(*index)),
            Segment::Map { key } => Some(Seg::Key(key.clone())),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect()
}

fn path_string(base: &str, segs: &[Seg]) -> String {
    let mut p = base.to_owned();
    for s in segs {
        p = match s {
            Seg::Key(k) => join_key(&p, k),
            Seg::Index(i) => join_index(&p, *i),
        };
    }
    p
}

fn navigate_mut<'v>(v: &'v mut Value, segs: &[Seg]) -> Option<&'v mut Value> {
    let mut cur = v;
    for s in segs {
        cur = match (s, cur) {
            (Seg::Key(k), Value::Mapping(m)) => m.get_mut(k.as_str())?,
            (Seg::Index(i), Value::Sequence(items)) => items.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn remove_at(v: &mut Value, segs: &[Seg]) -> bool {
    let Some((last, parent)) = segs.split_last() else {
        return false;
    };
    match (last, navigate_mut(v, parent)) {
        (Seg::Key(k), Some(Value::Mapping(m))) => m.remove(k.as_str()).is_some(),
        (Seg::Index(i), Some(Value::Sequence(items))) if *i < items.len() => {
            items.remove(*i);
            true
        }
        _ => false,
    }
}

fn backticked(s: &str) -> Vec<String> {
    s.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, t)| t.to_owned())
        .collect()
}

#[derive(Default)]
struct Taint {
    error_paths: Vec<String>,
    partial_roots: Vec<String>,
}

/// Reads one part; reports every error of it. After errors, the value read with the faulty
/// fields removed (or placeholders for missing ones) is returned, and the paths are recorded
/// so semantic checks skip them; `None` when even that does not read.
fn read_part<T: DeserializeOwned>(
    mut value: Value,
    base: &str,
    sink: &mut Sink<'_>,
    taint: &mut Taint,
) -> Option<T> {
    let mut had_error = false;
    let mut reported: HashSet<String> = HashSet::new();
    let mut placeholders: HashMap<String, usize> = HashMap::new();
    for _ in 0..256 {
        match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(t) => {
                if had_error {
                    taint.partial_roots.push(base.to_owned());
                    taint.error_paths.extend(reported);
                    taint.error_paths.extend(placeholders.into_keys());
                }
                return Some(t);
            }
            Err(e) => {
                had_error = true;
                let segs = segs_of(e.path());
                let path = path_string(base, &segs);
                let msg = e.inner().to_string();
                let in_placeholder = placeholders.keys().any(|p| {
                    path == *p
                        || path.starts_with(&format!("{p}."))
                        || path.starts_with(&format!("{p}["))
                });
                if let Some(rest) = msg.strip_prefix("missing field `") {
                    let field = rest.split('`').next().unwrap_or_default().to_owned();
                    let fpath = join_key(&path, &field);
                    if !in_placeholder && reported.insert(fpath.clone()) {
                        sink.error(
                            &path,
                            format!("missing field `{field}`{}", where_(sink, &path)),
                            Some(format!("add `{field}: ...`")),
                        );
                    }
                    let mut fsegs = segs.clone();
                    fsegs.push(Seg::Key(field));
                    if !insert_placeholder(&mut value, &fsegs, &fpath, &mut placeholders, None) {
                        return None;
                    }
                    continue;
                }
                if in_placeholder {
                    // A placeholder of the wrong type: try the next kind.
                    let p = placeholders
                        .keys()
                        .find(|p| {
                            path == **p
                                || path.starts_with(&format!("{p}."))
                                || path.starts_with(&format!("{p}["))
                        })
                        .cloned()?;
                    let psegs = segs_for_placeholder(&segs, base, &p);
                    let variant = backticked(&msg).into_iter().nth(1);
                    if !insert_placeholder(&mut value, &psegs, &p, &mut placeholders, variant) {
                        return None;
                    }
                    continue;
                }
                if reported.insert(path.clone()) {
                    report(sink, &path, &msg);
                }
                if !remove_at(&mut value, &segs) {
                    return None;
                }
            }
        }
    }
    None
}

fn segs_for_placeholder(segs: &[Seg], base: &str, p: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for s in segs {
        out.push(s.clone());
        if path_string(base, &out) == p {
            return out;
        }
    }
    segs.to_vec()
}

fn insert_placeholder(
    value: &mut Value,
    segs: &[Seg],
    path: &str,
    tried: &mut HashMap<String, usize>,
    variant: Option<String>,
) -> bool {
    let n = tried.entry(path.to_owned()).or_insert(0);
    let kinds: Vec<Value> = vec![
        Value::from(""),
        Value::Mapping(Default::default()),
        Value::Sequence(Vec::new()),
        Value::from(1u32),
        Value::from(false),
    ];
    let placeholder = match variant {
        Some(v) => Value::from(v),
        None => match kinds.get(*n) {
            Some(k) => k.clone(),
            None => return false,
        },
    };
    *n += 1;
    if *n > 8 {
        return false;
    }
    let Some((last, parent)) = segs.split_last() else {
        return false;
    };
    match (last, navigate_mut(value, parent)) {
        (Seg::Key(k), Some(Value::Mapping(m))) => {
            m.insert(Value::from(k.as_str()), placeholder);
            true
        }
        (Seg::Index(i), Some(Value::Sequence(items))) if *i < items.len() => {
            items[*i] = placeholder;
            true
        }
        _ => false,
    }
}

fn where_(sink: &Sink<'_>, path: &str) -> String {
    if let Some(label) = sink.labels.get(path) {
        format!(" in {label}")
    } else if path.is_empty() {
        " at the top level".to_owned()
    } else {
        format!(" in `{path}`")
    }
}

fn plain_type(t: &str) -> String {
    match t.trim() {
        "f64" | "f32" => "a number".into(),
        "u32" | "u64" | "usize" | "u16" | "u8" => "a whole number ≥ 0".into(),
        "i32" | "i64" => "a whole number".into(),
        "a string" => "a text".into(),
        "a boolean" => "true or false".into(),
        "a sequence" => "a list".into(),
        "a map" => "a mapping".into(),
        other if other.starts_with("struct ") => "a mapping of fields".into(),
        other => other.to_owned(),
    }
}

fn report(sink: &mut Sink<'_>, path: &str, msg: &str) {
    let field = path
        .rsplit(['.', '['])
        .next()
        .unwrap_or(path)
        .trim_end_matches(']');
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let found = rest.split('`').next().unwrap_or_default().to_owned();
        let valid: Vec<String> = backticked(msg).into_iter().skip(1).collect();
        let parent = path.strip_suffix(&format!(".{found}")).unwrap_or("");
        let mut help = String::new();
        if let Some(n) = nearest(&found, valid.iter().map(String::as_str)) {
            help.push_str(&format!("did you mean `{n}`? "));
        }
        if valid.is_empty() {
            help.push_str("this mapping takes no fields");
        } else {
            help.push_str(&format!("valid fields: {}", valid.join(", ")));
        }
        sink.error(
            path,
            format!("unknown field `{found}`{}", where_(sink, parent)),
            Some(help),
        );
    } else if let Some(rest) = msg.strip_prefix("unknown variant `") {
        let found = rest.split('`').next().unwrap_or_default().to_owned();
        let valid: Vec<String> = backticked(msg).into_iter().skip(1).collect();
        let mut help = String::new();
        if let Some(n) = nearest(&found, valid.iter().map(String::as_str)) {
            help.push_str(&format!("did you mean `{n}`? "));
        }
        help.push_str(&format!("allowed: {}", valid.join(", ")));
        sink.error(path, format!("`{field}` cannot be `{found}`"), Some(help));
    } else if let Some(rest) = msg.strip_prefix("invalid type: ") {
        let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, "?"));
        let found = found
            .replace("string ", "the text ")
            .replace("sequence", "a list")
            .replace("map", "a mapping")
            .replace("unit value", "nothing (null)");
        sink.error(
            path,
            format!("`{field}` must be {}, found {found}", plain_type(expected)),
            None,
        );
    } else if let Some(rest) = msg.strip_prefix("invalid value: ") {
        let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, "?"));
        sink.error(
            path,
            format!("`{field}` must be {}, found {found}", plain_type(expected)),
            None,
        );
    } else {
        sink.error(path, format!("`{field}`: {msg}"), None);
    }
}
