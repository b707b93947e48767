//! `cargo xtask schema [--check]`: the JSON Schemas under `docs/schema/`, generated from the
//! Rust types: `workflow-v2.json` (the `workflow/v2.0` YAML format, from
//! `flowloom_engine::yaml::json_schema`) and `workflow-result.json` (what a run returns,
//! `flowloom_core::WorkflowResult`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The schema files, relative to the workspace root, with their generated content.
pub fn generate() -> Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    out.push((
        PathBuf::from("docs/schema/workflow-v2.json"),
        pretty(&flowloom_engine::yaml::json_schema())?,
    ));
    let result = schemars::schema_for!(flowloom_core::WorkflowResult);
    out.push((
        PathBuf::from("docs/schema/workflow-result.json"),
        pretty(&result.to_value())?,
    ));
    Ok(out)
}

fn pretty(v: &serde_json::Value) -> Result<String> {
    let mut s = serde_json::to_string_pretty(v).context("serializing a schema")?;
    s.push('\n');
    Ok(s)
}

/// The generated files whose committed copy is missing or differs.
pub fn stale(root: &Path, generated: &[(PathBuf, String)]) -> Vec<PathBuf> {
    generated
        .iter()
        .filter(|(p, content)| {
            std::fs::read_to_string(root.join(p)).ok().as_deref() != Some(content)
        })
        .map(|(p, _)| p.clone())
        .collect()
}

/// Writes the schemas, or with `check` only reports the stale ones (an error when any is).
pub fn run(root: &Path, check: bool) -> Result<()> {
    let generated = generate()?;
    if check {
        let stale = stale(root, &generated);
        if !stale.is_empty() {
            let list: Vec<String> = stale.iter().map(|p| p.display().to_string()).collect();
            bail!(
                "these schema files are missing or out of date: {}; run `cargo xtask schema` and \
                 commit the result",
                list.join(", ")
            );
        }
        println!("{} schema files are up to date", generated.len());
        return Ok(());
    }
    for (p, content) in &generated {
        let path = root.join(p);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let old = std::fs::read_to_string(&path).ok();
        if old.as_deref() == Some(content.as_str()) {
            println!("unchanged {}", p.display());
        } else {
            std::fs::write(&path, content)
                .with_context(|| format!("writing {}", path.display()))?;
            println!("wrote     {}", p.display());
        }
    }
    Ok(())
}
