//! `cargo xtask fixtures`: the committed cassettes verify; a cassette whose scenario now sends
//! something else fails with the diff; recording against the mock server works and respects
//! its cost cap; recording for real needs a key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use xtask::fixtures::{self, Backend};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn the_committed_cassettes_verify() {
    let root = repo_root();
    let files = fixtures::cassettes(&fixtures::cassette_dir(&root)).unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.contains(&"provider-roundtrip.yaml".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"summarize-workflow.yaml".to_owned()),
        "{names:?}"
    );
    fixtures::verify(&root).unwrap();
}

fn copy_cassette(name: &str, to: &Path) -> PathBuf {
    let src = fixtures::cassette_dir(&repo_root()).join(name);
    let dst = to.join(name);
    std::fs::copy(src, &dst).unwrap();
    dst
}

#[test]
fn a_cassette_the_scenario_no_longer_matches_fails_with_the_diff() {
    let tmp = tempfile::tempdir().unwrap();
    let path = copy_cassette("summarize-workflow.yaml", tmp.path());
    let text = std::fs::read_to_string(&path).unwrap();
    // As if the workflow's draft prompt had been edited after recording.
    let edited = text.replacen(
        "content: 'Summarize in one sentence: Rust",
        "content: 'Summarize in one short sentence: Rust",
        1,
    );
    assert_ne!(edited, text);
    std::fs::write(&path, edited).unwrap();
    let err = format!(
        "{:#}",
        runtime().block_on(fixtures::verify_one(&path)).unwrap_err()
    );
    assert!(
        err.contains("call 1 (chat) matches no recorded request"),
        "{err}"
    );
    assert!(
        err.contains("- Summarize in one short sentence: Rust"),
        "{err}"
    );
    assert!(err.contains("+ Summarize in one sentence: Rust"), "{err}");
}

#[test]
fn a_cassette_naming_an_unknown_scenario_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let path = copy_cassette("provider-roundtrip.yaml", tmp.path());
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("scenario: provider-roundtrip", "scenario: gone"),
    )
    .unwrap();
    let err = format!(
        "{:#}",
        runtime().block_on(fixtures::verify_one(&path)).unwrap_err()
    );
    assert!(
        err.contains("names the scenario `gone`, which xtask does not know"),
        "{err}"
    );
    assert!(
        err.contains("provider-roundtrip, summarize-workflow"),
        "{err}"
    );
}

#[test]
fn recording_against_the_mock_server_writes_a_cassette_that_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    fixtures::record(tmp.path(), "summarize-workflow", 0.01, Backend::Mock).unwrap();
    let path = fixtures::cassette_dir(tmp.path()).join("summarize-workflow.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("scenario: summarize-workflow"), "{text}");
    assert!(!text.contains("sk-mock-recording-key"), "{text}");
    fixtures::verify(tmp.path()).unwrap();
}

#[test]
fn a_recording_over_its_cost_cap_is_not_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let err = fixtures::record(tmp.path(), "provider-roundtrip", 1e-9, Backend::Mock).unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("went over its cost cap"), "{text}");
    assert!(text.contains("EXCEEDED"), "{text}");
    let dir = fixtures::cassette_dir(tmp.path());
    let left: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "nothing may be left behind: {left:?}");
}

#[test]
fn recording_for_real_needs_a_key_and_a_known_scenario() {
    let tmp = tempfile::tempdir().unwrap();
    let err = fixtures::record(tmp.path(), "nope", 0.01, Backend::Mock)
        .unwrap_err()
        .to_string();
    assert!(err.contains("there is no scenario `nope`"), "{err}");
    let err = fixtures::record(tmp.path(), "provider-roundtrip", -1.0, Backend::Mock)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--max-cost must be a positive number"),
        "{err}"
    );
    if std::env::var_os("OPENAI_API_KEY").is_none() {
        let err = fixtures::record(tmp.path(), "provider-roundtrip", 0.01, Backend::OpenAi)
            .unwrap_err()
            .to_string();
        assert!(err.contains("OPENAI_API_KEY is not set"), "{err}");
        assert!(err.contains("--mock"), "{err}");
    }
}
