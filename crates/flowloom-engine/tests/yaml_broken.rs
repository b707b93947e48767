//! The corpus of broken workflow files in `tests/broken_workflows/`: each one gives a clear
//! error, with its location, containing the fragment its first line expects; none panics and
//! none hangs. Plus the files too hostile to commit, generated here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use flowloom_engine::yaml::{self, Diagnostics, LoadOptions};

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/broken_workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn header(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
        .unwrap_or_else(|| panic!("missing `# {key}:` line"))
        .to_owned()
}

fn check(path: &Path) -> Diagnostics {
    let p = path.to_path_buf();
    std::panic::catch_unwind(move || yaml::validate_file(&p))
        .unwrap_or_else(|_| panic!("{} made the loader panic", path.display()))
}

#[test]
fn every_broken_file_gives_a_located_clear_error() {
    let files = corpus();
    assert!(files.len() >= 30, "the corpus has {} files", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let expect = header(&text, "expect");
        let line: usize = header(&text, "line").parse().unwrap();
        let diags = check(path);
        let hit = diags.errors().find(|d| {
            d.message.contains(&expect) || d.help.as_deref().is_some_and(|h| h.contains(&expect))
        });
        match hit {
            None => failures.push(format!(
                "{}: no error contains {expect:?}; got:\n{diags}",
                path.display()
            )),
            Some(d) => {
                if d.location.line != line {
                    failures.push(format!(
                        "{}: {expect:?} reported at line {}, expected line {line}: {d}",
                        path.display(),
                        d.location.line
                    ));
                }
                if !d
                    .location
                    .file
                    .ends_with(path.file_name().unwrap().to_str().unwrap())
                {
                    failures.push(format!(
                        "{}: location names {}",
                        path.display(),
                        d.location.file
                    ));
                }
                assert!(d.location.column >= 1);
            }
        }
        // The display form carries file:line:column.
        let shown = diags.to_string();
        assert!(shown.contains(&format!("{}:", path.display())), "{shown}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn all_problems_of_a_file_are_reported_at_once() {
    let text = r#"$schema: workflow/v2.0
name: many
version: 1.0
description: ""
execution:
  provider: mock
  model: m
  temprature: 0.7
steps:
  - name: first
    run: "Review {{ input }}"
    max_token: 100
  - name: second
    needs: [frist]
    temperature: 3
    run: "Scan"
  - name: third
    consensus:
      prompt: "ok?"
      executions:
        - {provider: a, model: b}
      require: majority
"#;
    let d = yaml::validate_str(text);
    let lines: Vec<usize> = d.errors().map(|d| d.location.line).collect();
    assert_eq!(lines, vec![3, 4, 8, 12, 14, 15, 20], "{d}");
    let shown = d.to_string();
    assert!(
        shown.starts_with("7 problems in the workflow file:"),
        "{shown}"
    );
    assert!(shown.contains("did you mean `max_tokens`?"), "{shown}");
    assert!(shown.contains("did you mean `temperature`?"), "{shown}");
    assert!(shown.contains("did you mean `first`?"), "{shown}");
}

#[test]
fn a_multi_megabyte_file_is_refused_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.yaml");
    let mut text = String::from(
        "$schema: workflow/v2.0\nname: huge\nversion: 1.0.0\ndescription: d\nexecution: {provider: mock, model: m}\nsteps:\n",
    );
    let mut i = 0;
    while text.len() < 3 * 1024 * 1024 {
        text.push_str(&format!(
            "  - name: s{i}\n    run: \"{}\"\n",
            "x".repeat(200)
        ));
        i += 1;
    }
    std::fs::write(&path, &text).unwrap();
    let d = check(&path);
    let e = d.errors().next().unwrap();
    assert!(e.message.contains("more than the 1048576 bytes"), "{e}");
    assert_eq!((e.location.line, e.location.column), (1, 1));
    // The same from memory.
    let d = yaml::validate_str(&text);
    assert!(d.to_string().contains("more than the 1048576 bytes"));
    // A larger limit reads it.
    let opts = LoadOptions {
        limits: yaml::Limits {
            max_bytes: 4 * 1024 * 1024,
            ..Default::default()
        },
    };
    assert!(yaml::load_str_with(&text, "huge.yaml", &opts).is_ok());
}

#[test]
fn alias_bombs_of_any_shape_are_refused() {
    // Wide and deep variants of "billion laughs".
    for (width, depth) in [(9usize, 9usize), (2, 40), (100, 3)] {
        let mut text = String::from("a0: &a0 [x]\n");
        for d in 1..depth {
            let refs = vec![format!("*a{}", d - 1); width].join(", ");
            text.push_str(&format!("a{d}: &a{d} [{refs}]\n"));
        }
        let d = yaml::validate_str(&text);
        assert!(d.to_string().contains("alias bomb"), "{width}x{depth}: {d}");
    }
    // A few aliases are fine.
    let ok = "$schema: workflow/v2.0\nname: a\nversion: 1.0.0\ndescription: d\nexecution: &e {provider: mock, model: m}\nsteps:\n  - name: s\n    run: &r hi\n  - name: t\n    run: *r\n";
    assert!(
        yaml::validate_str(ok).is_empty(),
        "{}",
        yaml::validate_str(ok)
    );
}

#[test]
fn non_utf8_and_missing_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.yaml");
    std::fs::write(&path, b"name: caf\xe9\n").unwrap();
    assert!(check(&path).to_string().contains("not UTF-8"));
    let missing = dir.path().join("nope.yaml");
    assert!(
        check(&missing)
            .to_string()
            .contains("cannot read workflow file")
    );
}
