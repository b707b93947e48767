//! Where called workflows come from: the calling file's directory, a search path, or a
//! registry of workflows added in code; and the check that template calls form no cycle.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::diag::{Diagnostic, Diagnostics, Location, Severity, nearest};
use super::{LoadOptions, LoadedWorkflow, YamlError, load_file_with};

/// Resolves workflow names to workflows.
///
/// A name `review` is looked up, in order: `review.yaml` / `review.yml` in the calling
/// file's directory, then in each search directory, then among registered workflows.
#[derive(Debug, Clone, Default)]
pub struct Library {
    registry: BTreeMap<String, LoadedWorkflow>,
    search_dirs: Vec<PathBuf>,
    options: LoadOptions,
}

impl Library {
    /// An empty library.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `options` for every file it reads.
    #[must_use]
    pub fn with_options(mut self, options: LoadOptions) -> Self {
        self.options = options;
        self
    }

    /// Adds a directory to the search path.
    pub fn add_search_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        let dir = dir.into();
        if !self.search_dirs.contains(&dir) {
            self.search_dirs.push(dir);
        }
        self
    }

    /// Registers a workflow by its name.
    pub fn register(&mut self, wf: LoadedWorkflow) -> &mut Self {
        self.registry.insert(wf.name().to_owned(), wf);
        self
    }

    /// The workflow called `name`, seen from a file in `from_dir`; `Ok(None)` when no
    /// place has it.
    pub fn resolve(
        &self,
        name: &str,
        from_dir: Option<&Path>,
    ) -> Result<Option<LoadedWorkflow>, YamlError> {
        if name.contains(['/', '\\']) || name.starts_with('.') {
            // A path-like name is read as a path relative to the caller.
            let p = from_dir
                .map(|d| d.join(name))
                .unwrap_or_else(|| PathBuf::from(name));
            if p.is_file() {
                return load_file_with(&p, &self.options).map(Some);
            }
        }
        let dirs = from_dir
            .into_iter()
            .chain(self.search_dirs.iter().map(PathBuf::as_path));
        for dir in dirs {
            for ext in ["yaml", "yml"] {
                let p = dir.join(format!("{name}.{ext}"));
                if p.is_file() {
                    return load_file_with(&p, &self.options).map(Some);
                }
            }
        }
        Ok(self.registry.get(name).cloned())
    }

    fn known_names(&self, from_dir: Option<&Path>) -> Vec<String> {
        let mut names: Vec<String> = self.registry.keys().cloned().collect();
        for dir in from_dir
            .into_iter()
            .chain(self.search_dirs.iter().map(PathBuf::as_path))
        {
            if let Ok(rd) = std::fs::read_dir(dir) {
                for e in rd.flatten() {
                    let p = e.path();
                    if matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml"))
                        && let Some(stem) = p.file_stem().and_then(|s| s.to_str())
                    {
                        names.push(stem.to_owned());
                    }
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// `root` and every workflow it calls, directly or not, by name. Unknown workflows,
    /// files that do not validate and cycles of calls are errors, located at the call.
    pub fn closure(
        &self,
        root: &LoadedWorkflow,
    ) -> Result<BTreeMap<String, LoadedWorkflow>, Diagnostics> {
        let mut done: BTreeMap<String, LoadedWorkflow> = BTreeMap::new();
        let mut diags = Vec::new();
        let mut stack: Vec<String> = Vec::new();
        self.visit(root.clone(), &mut stack, &mut done, &mut diags);
        if diags.is_empty() {
            Ok(done)
        } else {
            Err(Diagnostics(diags))
        }
    }

    fn visit(
        &self,
        wf: LoadedWorkflow,
        stack: &mut Vec<String>,
        done: &mut BTreeMap<String, LoadedWorkflow>,
        diags: &mut Vec<Diagnostic>,
    ) {
        let name = wf.name().to_owned();
        if done.contains_key(&name) {
            return;
        }
        stack.push(name.clone());
        let dir = wf.base_dir();
        let mut children: HashMap<String, LoadedWorkflow> = HashMap::new();
        for callee in wf.called_workflows() {
            let site = wf.call_site(&callee).unwrap_or_default();
            if let Some(pos) = stack.iter().position(|s| *s == callee) {
                let mut cycle: Vec<String> = stack[pos..].to_vec();
                cycle.push(callee.clone());
                diags.push(at(
                    &wf,
                    &site,
                    format!("template calls form a cycle: {}", cycle.join(" → ")),
                    Some("a workflow cannot call itself, directly or through others".into()),
                ));
                continue;
            }
            match self.resolve(&callee, Some(&dir)) {
                Ok(Some(child)) if child.name() != callee => {
                    diags.push(at(
                        &child,
                        "name",
                        format!(
                            "this file was found for workflow `{callee}` but names itself `{}`",
                            child.name()
                        ),
                        Some(format!(
                            "rename the file `{}.yaml`, or set `name: {callee}`",
                            child.name()
                        )),
                    ));
                }
                Ok(Some(child)) => {
                    children.insert(callee, child);
                }
                Ok(None) => {
                    let known = self.known_names(Some(&dir));
                    let mut help = format!(
                        "looked for `{callee}.yaml` in {}{}",
                        dir.display(),
                        if self.search_dirs.is_empty() {
                            String::new()
                        } else {
                            " and the search path".into()
                        }
                    );
                    if let Some(n) = nearest(&callee, known.iter().map(String::as_str)) {
                        help.push_str(&format!("; did you mean `{n}`?"));
                    }
                    diags.push(at(
                        &wf,
                        &site,
                        format!("workflow `{callee}` not found"),
                        Some(help),
                    ));
                }
                Err(YamlError::Invalid(d)) => diags.extend(d.0),
                Err(e) => diags.push(at(&wf, &site, e.to_string(), None)),
            }
        }
        let mut order: Vec<String> = children.keys().cloned().collect();
        order.sort();
        for c in order {
            if let Some(child) = children.remove(&c) {
                self.visit(child, stack, done, diags);
            }
        }
        stack.pop();
        done.insert(name, wf);
    }
}

fn at(wf: &LoadedWorkflow, path: &str, message: String, help: Option<String>) -> Diagnostic {
    let (line, column) = wf.index.get(path);
    Diagnostic {
        severity: Severity::Error,
        location: Location {
            file: Arc::from(
                wf.path
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "<input>".into()),
            ),
            line,
            column,
        },
        path: path.to_owned(),
        message,
        help,
    }
}
