//! `flowloom validate`, `flowloom graph` and `flowloom schema`: thin wrappers over the YAML
//! loader of `flowloom-engine`.

use std::io::Write as _;
use std::path::Path;

use flowloom_engine::yaml::{self, Diagnostic, Diagnostics, Location, Severity};
use serde_json::json;

use crate::cli::{GraphArgs, GraphFormat, ValidateArgs};
use crate::error::{CliError, Exit};
use crate::providers::Providers;

/// Every problem of one file: the format's rules (with the workflows it calls), then the
/// provider names it uses against the configured providers.
pub fn check_file(path: &Path, providers: &Providers, flag: Option<&str>) -> Diagnostics {
    let diags = yaml::validate_file(path);
    if diags.has_errors() {
        return diags;
    }
    let mut diags = diags;
    if let Ok(wf) = yaml::load_file(path) {
        let named: Vec<String> = wf.providers().into_iter().collect();
        for name in &named {
            let alone = std::slice::from_ref(name);
            if let Err(message) = providers.check_named(alone, flag) {
                diags.0.push(Diagnostic {
                    severity: Severity::Error,
                    location: locate_provider(path, name),
                    path: String::new(),
                    message,
                    help: None,
                });
                if flag.is_some() {
                    break; // the same message for every name
                }
            }
        }
        diags
            .0
            .sort_by_key(|d| (d.location.line, d.location.column));
    }
    diags
}

/// Where `name` is first written as a provider in the file (line 1 when not found).
fn locate_provider(path: &Path, name: &str) -> Location {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).unwrap_or_default();
    for (i, line) in text.lines().enumerate() {
        let mut from = 0;
        while let Some(at) = line[from..].find("provider") {
            let start = from + at;
            let rest = line[start + "provider".len()..].trim_start();
            if let Some(value) = rest.strip_prefix(':') {
                let value = value.trim_start();
                let bare = value.trim_start_matches(['"', '\'']);
                if bare.starts_with(name)
                    && !bare[name.len()..]
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                {
                    let col = line.len() - value.len() + 1;
                    return Location {
                        file: file.into(),
                        line: i + 1,
                        column: col,
                    };
                }
            }
            from = start + "provider".len();
        }
    }
    Location {
        file: file.into(),
        line: 1,
        column: 1,
    }
}

/// `flowloom validate FILE...`: every problem of every file; exit 0 when all are valid, 2
/// otherwise. Valid files are listed on standard output, problems on standard error (or all
/// of it as JSON on standard output with `--json`).
pub fn validate(args: &ValidateArgs, providers: &Providers) -> Exit {
    let mut invalid = 0usize;
    let mut report = Vec::new();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut err = std::io::stderr().lock();
    for path in &args.files {
        let diags = check_file(path, providers, args.provider.as_deref());
        let ok = !diags.has_errors();
        if !ok {
            invalid += 1;
        }
        if args.json {
            report.push(json!({
                "file": path.display().to_string(),
                "valid": ok,
                "diagnostics": diags.0,
            }));
            continue;
        }
        for d in diags.iter() {
            let _ = writeln!(err, "{d}");
        }
        if ok {
            let warnings = diags.len();
            let _ = if warnings == 0 {
                writeln!(out, "ok: {}", path.display())
            } else {
                writeln!(out, "ok: {} ({warnings} warning(s))", path.display())
            };
        } else {
            let n = diags.errors().count();
            let _ = writeln!(
                err,
                "invalid: {} ({n} problem{})",
                path.display(),
                if n == 1 { "" } else { "s" }
            );
        }
    }
    if args.json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else if args.files.len() > 1 {
        let _ = writeln!(
            err,
            "{} of {} files valid",
            args.files.len() - invalid,
            args.files.len()
        );
    }
    if invalid == 0 {
        Exit::Completed
    } else {
        Exit::Invalid
    }
}

/// Loads a workflow file, or a definition error listing every problem.
pub fn load(path: &Path) -> Result<yaml::LoadedWorkflow, CliError> {
    yaml::load_file(path).map_err(|e| match e {
        yaml::YamlError::Invalid(d) => CliError::Definition(d.to_string().trim_end().to_owned()),
        other => CliError::usage(other.to_string()),
    })
}

/// `flowloom graph FILE`: the step graph on standard output.
pub fn graph(args: &GraphArgs) -> Result<Exit, CliError> {
    let wf = load(&args.file)?;
    let g = wf.graph();
    let text = match args.format {
        GraphFormat::Mermaid => g.to_mermaid(),
        GraphFormat::Dot => g.to_dot(),
    };
    print!("{text}");
    Ok(Exit::Completed)
}

/// `flowloom schema`: the workflow JSON Schema on standard output.
pub fn schema() -> Result<Exit, CliError> {
    let text = serde_json::to_string_pretty(&yaml::json_schema())
        .map_err(|e| CliError::Runtime(format!("cannot print the schema: {e}")))?;
    println!("{text}");
    Ok(Exit::Completed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_the_provider_a_file_names() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.yaml");
        std::fs::write(
            &p,
            "execution:\n  provider: openai\nsteps:\n  - { name: a, provider: \"mistral\", run: x }\n",
        )
        .unwrap();
        let l = locate_provider(&p, "mistral");
        assert_eq!((l.line, l.column), (4, 26));
        let l = locate_provider(&p, "openai");
        assert_eq!((l.line, l.column), (2, 13));
        let l = locate_provider(&p, "open");
        assert_eq!(l.line, 1);
    }
}
