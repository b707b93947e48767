//! The committed JSON Schema (`docs/schema/workflow-v2.json`) is the one generated from the
//! Rust types, and it describes the format's rules.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use flowloom_engine::yaml;

const REGENERATE: &str = "cargo xtask schema   (or: FLOWLOOM_WRITE_SCHEMA=1 cargo test -p flowloom-engine --test yaml_schema)";

fn committed_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/schema/workflow-v2.json")
}

fn generated() -> String {
    let mut s = serde_json::to_string_pretty(&yaml::json_schema()).unwrap();
    s.push('\n');
    s
}

#[test]
fn committed_schema_is_up_to_date() {
    let path = committed_path();
    let want = generated();
    if std::env::var_os("FLOWLOOM_WRITE_SCHEMA").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/schema/workflow-v2.json is stale (or missing): it differs from the schema generated from the Rust types.\nRegenerate it with:\n    {REGENERATE}"
    );
}

#[test]
fn schema_carries_the_format_rules() {
    let s = yaml::json_schema();
    assert_eq!(s["properties"]["$schema"]["const"], "workflow/v2.0");
    assert_eq!(s["additionalProperties"], false);
    let req: Vec<&str> = s["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for f in [
        "$schema",
        "name",
        "version",
        "description",
        "execution",
        "steps",
    ] {
        assert!(req.contains(&f), "{f} is required");
    }
    assert_eq!(s["properties"]["steps"]["minItems"], 1);
    let defs = &s["$defs"];
    assert_eq!(defs["Step"]["additionalProperties"], false);
    assert_eq!(defs["Step"]["properties"]["temperature"]["maximum"], 2.0);
    assert_eq!(
        defs["ConsensusConfig"]["properties"]["executions"]["minItems"],
        2
    );
    assert_eq!(
        defs["LoopDef"]["properties"]["max_iterations"]["minimum"],
        1
    );
    let thresholds = serde_json::to_string(&defs["Threshold"]).unwrap();
    for t in ["unanimous", "majority", "2/3"] {
        assert!(thresholds.contains(t), "{thresholds}");
    }
    assert!(defs["Duration"]["pattern"].is_string());
}

#[test]
fn schema_descriptions_say_what_the_code_does() {
    let s = yaml::json_schema();
    let defs = &s["$defs"];
    let desc = |def: &str, field: &str| {
        defs[def]["properties"][field]["description"]
            .as_str()
            .unwrap_or_else(|| panic!("{def}.{field} has a description"))
            .to_owned()
    };
    // No per-step limit unless set; only consensus has a 60s default.
    let t = desc("ExecutionContext", "timeout");
    assert!(!t.contains("default 60s") && t.contains("no"), "{t}");
    assert!(desc("Step", "timeout").contains("no limit"));
    assert!(desc("ConsensusConfig", "timeout").contains("60s"));
    // `output_file` is relative to the workflow file, as `input_file` is.
    let o = desc("EmbeddingsConfig", "output_file");
    assert!(
        o.contains("workflow file") && !o.contains("working directory"),
        "{o}"
    );
    // The CSV header the code writes.
    let csv = serde_json::to_string(&defs["OutputFormat"]).unwrap();
    assert!(csv.contains("input,index,tokens,text,d0,d1"), "{csv}");
    // Accepted, but without effect: the schema says so.
    for f in ["logging", "no_color"] {
        let d = desc("ExecutionContext", f);
        assert!(d.contains("no effect yet"), "{f}: {d}");
    }
    // Unset model settings come from the engine's configuration.
    assert!(desc("ExecutionContext", "temperature").contains("default_temperature"));
    assert!(desc("ExecutionContext", "max_tokens").contains("default_max_tokens"));
}
