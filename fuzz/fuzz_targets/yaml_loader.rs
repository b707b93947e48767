//! Any text: the loader returns a workflow or diagnostics, never panics, never hangs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let diags = flowloom_engine::yaml::validate_str(text);
        // Every diagnostic has a location inside the text (or 1:1).
        let lines = yaml_lines(text);
        for d in diags.iter() {
            assert!(d.location.line >= 1 && d.location.line <= lines, "{d}");
            assert!(d.location.column >= 1, "{d}");
        }
        if let Ok(wf) = flowloom_engine::yaml::load_str(text) {
            let _ = wf.graph().to_mermaid();
            let _ = wf.to_workflow();
        }
    }
});

/// Lines as YAML counts them: `\r\n`, `\r` and `\n` each end one (plus the position just
/// after the end).
fn yaml_lines(text: &str) -> usize {
    text.replace("\r\n", "\n")
        .replace('\r', "\n")
        .split('\n')
        .count()
        + 1
}
