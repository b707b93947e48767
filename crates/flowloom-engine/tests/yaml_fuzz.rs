//! A stable-toolchain randomized harness next to the cargo-fuzz targets in `fuzz/`: mutated
//! workflow files (from the fixtures and the broken corpus) through the loader, and random
//! templates through the engine's template compile/render path and the loop renderer. Nothing
//! may panic; every diagnostic has a location inside the text.
//!
//! Seeded and repeatable: `FLOWLOOM_FUZZ_SEED` picks the seed, `FLOWLOOM_FUZZ_ITERS` the number
//! of cases (default 400 per test; e.g. `FLOWLOOM_FUZZ_ITERS=200000 cargo test --release -p
//! flowloom-engine --test yaml_fuzz` for a long run).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use flowloom_core::{LlmError, LlmRequest, LlmResponse, provider::AsyncProvider};
use flowloom_engine::{Engine, RunOptions, Step, Workflow, yaml};
use serde_json::json;

fn iters() -> usize {
    std::env::var("FLOWLOOM_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400)
}

fn rng() -> fastrand::Rng {
    let seed = std::env::var("FLOWLOOM_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f10a);
    fastrand::Rng::with_seed(seed)
}

fn seeds() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut out = Vec::new();
    for dir in ["fixtures/workflows", "tests/broken_workflows"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "yaml") {
                out.push(std::fs::read_to_string(p).unwrap());
            }
        }
    }
    out
}

const TOKENS: &[&str] = &[
    ":",
    ": ",
    "- ",
    "-",
    "&a ",
    "*a",
    "&b [*a, *a]",
    "{{",
    "}}",
    "{%",
    "%}",
    "[",
    "]",
    "{",
    "}",
    "\n",
    "\n  ",
    "\n    - ",
    "\t",
    "!!str ",
    "!custom ",
    "---\n",
    "? ",
    "|\n  ",
    ">-\n  ",
    "'",
    "\"",
    "#",
    "~",
    "null",
    "true",
    "1e999",
    "-0",
    "0x1F",
    ".inf",
    "steps",
    "needs: [",
    "run: ",
    "if: ",
    "consensus:",
    "loop:",
    "template:",
    "name: ",
    "\u{feff}",
    "é",
    "🦀",
    "\\",
    "%",
];

fn mutate(r: &mut fastrand::Rng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..r.usize(1..6) {
        let len = chars.len();
        match r.u8(0..6) {
            0 if len > 0 => {
                // delete a range
                let a = r.usize(0..len);
                let b = (a + r.usize(0..20)).min(len);
                chars.drain(a..b);
            }
            1 => {
                // insert a token
                let at = r.usize(0..=len);
                let t = TOKENS[r.usize(0..TOKENS.len())];
                for (k, c) in t.chars().enumerate() {
                    chars.insert(at + k, c);
                }
            }
            2 if len > 0 => {
                // replace a char with a random one
                let at = r.usize(0..len);
                chars[at] = char::from_u32(r.u32(0..0x800)).unwrap_or('x');
            }
            3 if len > 0 => {
                // duplicate a slice (duplicate keys, repeated steps)
                let a = r.usize(0..len);
                let b = (a + r.usize(0..80)).min(len);
                let piece: Vec<char> = chars[a..b].to_vec();
                let at = r.usize(0..=chars.len());
                for (k, c) in piece.into_iter().enumerate() {
                    chars.insert(at + k, c);
                }
            }
            4 => {
                // change indentation of a line
                let s: String = chars.iter().collect();
                let mut lines: Vec<String> = s.lines().map(str::to_owned).collect();
                if !lines.is_empty() {
                    let i = r.usize(0..lines.len());
                    if r.bool() {
                        lines[i].insert_str(0, "  ");
                    } else {
                        lines[i] = lines[i].trim_start().to_owned();
                    }
                }
                chars = lines.join("\n").chars().collect();
            }
            _ => {
                // swap two lines
                let s: String = chars.iter().collect();
                let mut lines: Vec<&str> = s.lines().collect();
                if lines.len() > 1 {
                    let (i, j) = (r.usize(0..lines.len()), r.usize(0..lines.len()));
                    lines.swap(i, j);
                }
                chars = lines.join("\n").chars().collect();
            }
        }
    }
    chars.into_iter().collect()
}

#[test]
fn mutated_workflow_files_never_panic_the_loader() {
    let seeds = seeds();
    let mut r = rng();
    let mut errors = 0usize;
    for n in 0..iters() {
        let base = &seeds[r.usize(0..seeds.len())];
        let text = mutate(&mut r, base);
        let t2 = text.clone();
        let d = std::panic::catch_unwind(move || yaml::validate_str(&t2))
            .unwrap_or_else(|_| panic!("case {n} panicked the loader; input:\n{text}"));
        let lines = yaml_lines(&text);
        for diag in d.iter() {
            assert!(
                (1..=lines).contains(&diag.location.line) && diag.location.column >= 1,
                "case {n}: location out of range: {diag}\ninput:\n{text}"
            );
            assert!(!diag.message.is_empty());
        }
        if let Ok(wf) = yaml::load_str(&text) {
            let _ = wf.graph().to_dot();
            let _ = wf.to_workflow();
        }
        errors += usize::from(d.has_errors());
    }
    // The mutations must mostly produce broken files, or they test nothing.
    assert!(
        errors * 2 > iters(),
        "only {errors} of {} cases were errors",
        iters()
    );
}

struct Echo;
impl AsyncProvider for Echo {
    fn name(&self) -> &str {
        "echo"
    }
    async fn complete(&self, r: LlmRequest) -> Result<LlmResponse, LlmError> {
        Ok(LlmResponse::text(
            r.prompt().unwrap_or_default().to_owned(),
            r.model.clone(),
            "echo",
        ))
    }
}

const PIECES: &[&str] = &[
    "{{ input }}",
    "{{ x }}",
    "{{ items[1] }}",
    "{{ items | length }}",
    "{{ a }}",
    "{{ missing }}",
    "{{ missing.deep.er }}",
    "{{ loop.last.output.error }}",
    "{% if x %}",
    "{% endif %}",
    "{% for i in items %}",
    "{% endfor %}",
    "{{ i }}",
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "#}",
    "text ",
    "{{ 1/0 }}",
    "{{ x ~ 'y' }}",
    "{{ input | upper }}",
    "{{ range(100000000) | length }}",
    "{{ steps.a.output }}",
    "{{ env.HOME }}",
    "{{ (x }}",
    "{{ x | nofilter }}",
    "\n",
    "é🦀",
    "{{ '{{ input }}' }}",
    "{% raw %}{{ x }}{% endraw %}",
    "{{ x == 1 and items }}",
];

#[tokio::test]
async fn random_templates_never_panic_the_engine_or_the_loop_renderer() {
    let engine = Engine::builder()
        .provider("mock", flowloom_core::provider::from_async(Echo))
        .build()
        .unwrap();
    let mut r = rng();
    let ctx =
        json!({"input": "x", "x": 1, "items": [1, 2, 3], "loop": {"iteration": 1, "last": null}});
    let n = (iters() / 4).max(50);
    let mut rendered = 0;
    for _ in 0..n {
        let tpl: String = (0..r.usize(1..6))
            .map(|_| PIECES[r.usize(0..PIECES.len())])
            .collect();
        let _ = yaml::render_loop_value(&json!(tpl), &ctx);
        let wf = Workflow::builder("fuzz")
            .open_variables(true)
            .step(Step::llm("a", "fixed"))
            .step(Step::llm("b", tpl.clone()))
            .build();
        let Ok(wf) = wf else { continue };
        let opts = RunOptions::new("input text")
            .var("x", 1)
            .var("items", json!([1, 2, 3]));
        if engine.run_with(&wf, opts).await.is_ok() {
            rendered += 1;
        }
    }
    assert!(rendered > 0, "no template rendered at all");
}

/// Lines as YAML counts them: `\r\n`, `\r` and `\n` each end one (plus the position just
/// after the end).
fn yaml_lines(text: &str) -> usize {
    text.replace("\r\n", "\n")
        .replace('\r', "\n")
        .split('\n')
        .count()
        + 1
}
