//! The release task on real git repositories: a temporary clone of this one (dry run), and a
//! small synthetic workspace (the full run, with the slow cargo checks faked).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::path::{Path, PathBuf};
use std::process::Command;

use xtask::release::{self, Cmd, Runner, Version};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Everything git knows of a tree's state: status, HEAD, tags.
fn snapshot(dir: &Path) -> (String, String, String) {
    (
        git(dir, &["status", "--porcelain", "--untracked-files=all"]),
        git(dir, &["rev-parse", "HEAD"]),
        git(dir, &["tag", "--list"]),
    )
}

#[test]
fn dry_run_on_a_clone_of_this_repository_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let clone = tmp.path().join("repo");
    let out = Command::new("git")
        .args(["clone", "--quiet", "--no-hardlinks"])
        .arg(repo_root())
        .arg(&clone)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // CI may check out a detached HEAD; a release is made from a branch.
    git(&clone, &["checkout", "--quiet", "-B", "release-dry-run"]);
    // The next minor version after the committed one (0.2.0 while the workspace is at 0.1.x).
    let manifest = std::fs::read_to_string(clone.join("Cargo.toml")).unwrap();
    let (current, _) =
        release::bump_root_manifest(&manifest, &Version::parse("9.9.9").unwrap()).unwrap();
    let cur = Version::parse(&current).unwrap();
    let next = format!("{}.{}.0", cur.parts[0], cur.parts[1] + 1);

    // Right after a release the Unreleased section is empty; give the clone something to
    // release so the dry run is exercised all the same.
    let log = std::fs::read_to_string(clone.join("CHANGELOG.md")).unwrap();
    if release::move_unreleased(&log, &Version::parse(&next).unwrap(), "2030-01-02").is_err() {
        let log = log.replacen("## [Unreleased]\n", "## [Unreleased]\n\n- a change\n", 1);
        std::fs::write(clone.join("CHANGELOG.md"), log).unwrap();
        git(
            &clone,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@example.invalid",
                "commit",
                "-qam",
                "entry",
            ],
        );
    }
    let before = snapshot(&clone);
    let changelog = std::fs::read_to_string(clone.join("CHANGELOG.md")).unwrap();
    let plan = release::plan(&clone, &next, "2030-01-02", false).unwrap();
    assert!(plan.problems.is_empty(), "{}", plan.render());
    assert_eq!(plan.current, current);
    let text = plan.render();
    assert!(text.contains(&format!("+ version = \"{next}\"")), "{text}");
    assert!(
        text.contains(&format!("+ ## [{next}] - 2030-01-02")),
        "{text}"
    );
    assert!(
        text.contains("cargo clippy --workspace --all-targets -- -D warnings"),
        "{text}"
    );
    assert!(
        text.contains("skipped: cargo deny --offline check"),
        "{text}"
    );
    assert!(text.contains(&format!("git tag -a v{next}")), "{text}");

    release::run(&clone, &next, true).unwrap();
    assert_eq!(
        snapshot(&clone),
        before,
        "a dry run must leave git status, HEAD and tags as they were"
    );
    assert_eq!(
        std::fs::read_to_string(clone.join("Cargo.toml")).unwrap(),
        manifest
    );
    assert_eq!(
        std::fs::read_to_string(clone.join("CHANGELOG.md")).unwrap(),
        changelog
    );
}

const ROOT_MANIFEST: &str = r#"[workspace]
resolver = "3"
members = [
    "crates/a",
    "crates/b",
]

[workspace.package]
version = "0.1.0"
edition = "2024"

[workspace.dependencies]
a = { path = "crates/a", version = "0.1.0" }
b = { path = "crates/b", version = "0.1.0" }
serde = { version = "0.1.0" }
"#;

const CHANGELOG: &str = "# Changelog\n\n## [Unreleased]\n\n### Added\n\n- a thing\n\n## [0.1.0] - 2020-01-01\n\n- first\n";

/// A committed two-crate workspace: `a` inherits the version, `b` spells its own.
fn synthetic() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir_all(d.join("crates/a")).unwrap();
    std::fs::create_dir_all(d.join("crates/b")).unwrap();
    std::fs::write(d.join("Cargo.toml"), ROOT_MANIFEST).unwrap();
    std::fs::write(
        d.join("crates/a/Cargo.toml"),
        "[package]\nname = \"a\"\nversion.workspace = true\n",
    )
    .unwrap();
    std::fs::write(d.join("crates/b/Cargo.toml"), "[package]\nname = \"b\"\nversion = \"0.1.0\"\n\n[dependencies]\nx = { version = \"0.1.0\" }\n").unwrap();
    std::fs::write(d.join("CHANGELOG.md"), CHANGELOG).unwrap();
    git(d, &["init", "--quiet", "-b", "main"]);
    git(d, &["config", "user.name", "Release Test"]);
    git(d, &["config", "user.email", "release-test@example.invalid"]);
    git(d, &["add", "-A"]);
    git(d, &["commit", "--quiet", "-m", "init"]);
    tmp
}

/// Fakes the cargo checks (recording them), runs git for real; fails on `fail_on`.
struct FakeCargo {
    ran: Vec<String>,
    fail_on: Option<&'static str>,
}

impl Runner for FakeCargo {
    fn run(&mut self, root: &Path, cmd: &Cmd) -> anyhow::Result<()> {
        self.ran.push(cmd.label.clone());
        if self.fail_on == Some(cmd.label.as_str()) {
            anyhow::bail!("{} failed", cmd.label);
        }
        if cmd.program == "git" {
            let args: Vec<&str> = cmd.args.iter().map(String::as_str).collect();
            git(root, &args);
        }
        Ok(())
    }
}

#[test]
fn a_release_bumps_every_version_moves_the_changelog_commits_and_tags() {
    let tmp = synthetic();
    let d = tmp.path();
    let plan = release::plan(d, "0.2.0", "2030-01-02", true).unwrap();
    assert!(plan.problems.is_empty(), "{}", plan.render());
    let labels: Vec<&str> = plan.checks.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(labels, ["lockfile", "fmt", "clippy", "test", "doc", "deny"]);
    let deny = plan.checks.last().unwrap().to_string();
    assert_eq!(deny, "cargo deny --offline check");

    let mut runner = FakeCargo {
        ran: Vec::new(),
        fail_on: None,
    };
    release::execute(d, &plan, &mut runner).unwrap();

    let root = std::fs::read_to_string(d.join("Cargo.toml")).unwrap();
    assert!(
        root.contains("[workspace.package]\nversion = \"0.2.0\""),
        "{root}"
    );
    assert!(
        root.contains(r#"a = { path = "crates/a", version = "0.2.0" }"#),
        "{root}"
    );
    assert!(
        root.contains(r#"b = { path = "crates/b", version = "0.2.0" }"#),
        "{root}"
    );
    assert!(
        root.contains(r#"serde = { version = "0.1.0" }"#),
        "a registry dependency keeps its version: {root}"
    );
    let b = std::fs::read_to_string(d.join("crates/b/Cargo.toml")).unwrap();
    assert!(
        b.contains("version = \"0.2.0\"") && b.contains("x = { version = \"0.1.0\" }"),
        "{b}"
    );
    let log = std::fs::read_to_string(d.join("CHANGELOG.md")).unwrap();
    assert_eq!(
        log,
        "# Changelog\n\n## [Unreleased]\n\n## [0.2.0] - 2030-01-02\n\n### Added\n\n- a thing\n\n## [0.1.0] - 2020-01-01\n\n- first\n"
    );
    assert_eq!(git(d, &["status", "--porcelain"]), "");
    assert_eq!(
        git(d, &["log", "-1", "--format=%s"]).trim(),
        "release 0.2.0"
    );
    assert_eq!(git(d, &["tag", "--list"]).trim(), "v0.2.0");

    // Releasing the same version again is refused, and says why.
    let again = release::plan(d, "0.2.0", "2030-01-03", true).unwrap();
    let problems = again.problems.join("\n");
    assert!(
        problems.contains("0.2.0 does not come after the current version 0.2.0"),
        "{problems}"
    );
    assert!(
        problems.contains("the tag v0.2.0 already exists"),
        "{problems}"
    );
    assert!(
        problems.contains("`## [Unreleased]` section of CHANGELOG.md is empty"),
        "{problems}"
    );
}

#[test]
fn a_failing_check_stops_the_release_and_restores_the_files() {
    let tmp = synthetic();
    let d = tmp.path();
    let plan = release::plan(d, "0.2.0", "2030-01-02", false).unwrap();
    let mut runner = FakeCargo {
        ran: Vec::new(),
        fail_on: Some("clippy"),
    };
    let err = release::execute(d, &plan, &mut runner).unwrap_err();
    assert!(
        format!("{err:#}").contains("the `clippy` check failed"),
        "{err:#}"
    );
    assert_eq!(runner.ran, ["lockfile", "fmt", "clippy"]);
    assert_eq!(git(d, &["status", "--porcelain"]), "", "files restored");
    assert_eq!(git(d, &["tag", "--list"]), "");
}

#[test]
fn a_dirty_tree_or_a_bad_version_is_refused_before_anything_changes() {
    let tmp = synthetic();
    let d = tmp.path();
    std::fs::write(d.join("stray.txt"), "x").unwrap();
    let before = snapshot(d);
    let plan = release::plan(d, "0.2.0", "2030-01-02", false).unwrap();
    assert!(
        plan.problems
            .iter()
            .any(|p| p.contains("not clean") && p.contains("stray.txt")),
        "{:?}",
        plan.problems
    );
    let mut runner = FakeCargo {
        ran: Vec::new(),
        fail_on: None,
    };
    assert!(release::execute(d, &plan, &mut runner).is_err());
    assert!(runner.ran.is_empty());
    assert!(
        release::run(d, "0.2.0", true).is_err(),
        "a dry run reports that the release would not run"
    );
    assert_eq!(snapshot(d), before);

    for bad in ["0.2", "v0.2.0", "0.02.0", "1.2.3.4", "0.2.0-"] {
        let e = release::plan(d, bad, "2030-01-02", false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a release version"), "{bad}: {e}");
    }
    let older = release::plan(d, "0.0.9", "2030-01-02", false).unwrap();
    assert!(
        older
            .problems
            .iter()
            .any(|p| p.contains("does not come after"))
    );
}

#[test]
fn versions_order_pre_releases_before_releases() {
    let v = |s| Version::parse(s).unwrap();
    assert!(v("0.2.0").is_after(&v("0.1.9")));
    assert!(v("0.2.0").is_after(&v("0.2.0-rc.1")));
    assert!(!v("0.2.0-rc.1").is_after(&v("0.2.0")));
    assert!(v("1.0.0").is_after(&v("0.99.99")));
    assert_eq!(v("1.2.3-rc.1").to_string(), "1.2.3-rc.1");
}
