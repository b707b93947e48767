//! Every YAML example in `docs/` validates, so the docs cannot rot.
//!
//! Each ```yaml block is classified by its top-level keys and checked with the loader that
//! reads that kind of file: workflow files (and fragments of them: a step, a list of steps, an
//! `execution` block) with the workflow/v2.0 loader, mock scripts with the mock provider, price
//! tables with the observability price table, configuration files as `FrameworkConfig`, and the
//! CLI's providers file by its documented shape. A block of no known kind fails the test.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use flowloom::core::FrameworkConfig;
use flowloom::engine::yaml;
use flowloom::mock::MockProvider;
use flowloom::observability::PriceTable;
use serde::Deserialize;
use serde_yaml::Value;

fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            markdown_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "md") {
            out.push(p);
        }
    }
}

/// (line of the opening fence, block text) for each ```yaml block.
fn yaml_blocks(text: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match &mut current {
            None => {
                if let Some(info) = trimmed.strip_prefix("```")
                    && (info.trim() == "yaml" || info.trim().starts_with("yaml,"))
                {
                    current = Some((i + 1, String::new()));
                }
            }
            Some((_, body)) => {
                if trimmed.starts_with("```") {
                    blocks.push(current.take().unwrap());
                } else {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    blocks
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ProvidersFile {
    providers: BTreeMap<String, ProviderEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ProviderEntry {
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    api_key_env: Option<String>,
}

const STEP_MODES: &[&str] = &["run", "template", "consensus", "embeddings", "loop"];

fn wrap_steps(steps: &str) -> String {
    format!(
        "$schema: workflow/v2.0\nname: doc-fragment\nversion: 1.0.0\ndescription: a docs fragment\nexecution:\n  provider: mock\n  model: m\nsteps:\n{}",
        indent(steps)
    )
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}

fn check_workflow(text: &str) -> Result<(), String> {
    let d = yaml::validate_str(text);
    if d.has_errors() {
        Err(d.to_string())
    } else {
        Ok(())
    }
}

/// Validates one block; `Err` says why it is invalid or unknown.
fn check_block(text: &str) -> Result<&'static str, String> {
    let value: Value = serde_yaml::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    let keys: Vec<String> = match &value {
        Value::Mapping(m) => m
            .keys()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect(),
        Value::Sequence(items) => {
            // A list of steps.
            if items.iter().all(|i| i.get("name").is_some()) {
                check_workflow(&wrap_steps(text))?;
                return Ok("steps fragment");
            }
            return Err("a list that is not a list of steps".into());
        }
        _ => return Err("neither a mapping nor a list".into()),
    };
    let has = |k: &str| keys.iter().any(|x| x == k);
    if has("$schema") || (has("steps") && has("name")) || (has("loops") && has("name")) {
        check_workflow(text)?;
        Ok("workflow")
    } else if has("name") && STEP_MODES.iter().any(|m| has(m)) {
        check_workflow(&wrap_steps(&format!("- {}", text.replace('\n', "\n  "))))?;
        Ok("step fragment")
    } else if has("execution") && keys.len() == 1 {
        let wf = format!(
            "$schema: workflow/v2.0\nname: doc-fragment\nversion: 1.0.0\ndescription: d\n{text}steps:\n  - name: s\n    run: hi\n"
        );
        check_workflow(&wf)?;
        Ok("execution fragment")
    } else if has("rules") || has("default") {
        MockProvider::from_yaml_str(text).map_err(|e| e.to_string())?;
        Ok("mock script")
    } else if has("models") {
        PriceTable::from_yaml(text).map_err(|e| e.to_string())?;
        Ok("price table")
    } else if has("providers") && keys.len() == 1 {
        serde_yaml::from_str::<ProvidersFile>(text).map_err(|e| e.to_string())?;
        Ok("providers file")
    } else if keys
        .iter()
        .any(|k| k.starts_with("default_") || k == "log_level")
    {
        let c: FrameworkConfig = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok("configuration file")
    } else {
        Err(format!(
            "unknown kind of YAML block (top-level keys {keys:?}); teach tests/tests/docs_yaml.rs to validate it"
        ))
    }
}

#[test]
fn every_yaml_block_in_the_docs_validates() {
    let mut files = Vec::new();
    markdown_files(&docs_dir(), &mut files);
    assert!(!files.is_empty(), "no markdown files under docs/");
    let mut checked = 0;
    let mut failures = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (line, block) in yaml_blocks(&text) {
            match check_block(&block) {
                Ok(_) => checked += 1,
                Err(e) => failures.push(format!("{}:{line}: {e}", f.display())),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "invalid YAML examples in the docs:\n{}",
        failures.join("\n\n")
    );
    assert!(checked >= 5, "only {checked} YAML blocks found in docs/");
}

#[test]
fn the_checker_rejects_a_broken_workflow_and_unknown_blocks() {
    let broken = "$schema: workflow/v2.0\nname: x\nversion: 1.0.0\ndescription: d\nexecution: {provider: mock, model: m}\nsteps:\n  - name: a\n    rnu: hi\n";
    assert!(check_block(broken).is_err());
    assert!(check_block("something: else\n").is_err());
    assert!(check_block("- name: a\n  run: hi\n").is_ok());
}
