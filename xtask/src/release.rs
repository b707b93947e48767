//! `cargo xtask release X.Y.Z [--dry-run]`.
//!
//! The plan is computed without changing anything ([`plan`]): the version bump of the root
//! manifest (`[workspace.package]` and the path dependencies of `[workspace.dependencies]`, plus
//! any member that spells its own version), the CHANGELOG move, the checks to run and the git
//! commit and tag. [`execute`] applies it through a [`Runner`], so tests can run everything but
//! the slow cargo checks.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// A release version: `X.Y.Z`, optionally with a pre-release suffix (`-rc.1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Major, minor, patch.
    pub parts: [u64; 3],
    /// The pre-release suffix without its `-`, if any.
    pub pre: Option<String>,
}

impl Version {
    /// Parses `X.Y.Z` or `X.Y.Z-pre`.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        let (core, pre) = match s.split_once('-') {
            Some((c, p)) => (c, Some(p.to_owned())),
            None => (s, None),
        };
        let nums: Vec<&str> = core.split('.').collect();
        let bad = || {
            anyhow::anyhow!(
                "`{s}` is not a release version; use three numbers like `0.2.0` (optionally \
                 with a suffix like `0.2.0-rc.1`)"
            )
        };
        if nums.len() != 3 {
            return Err(bad());
        }
        let mut parts = [0u64; 3];
        for (p, n) in parts.iter_mut().zip(nums) {
            if n.is_empty()
                || !n.bytes().all(|b| b.is_ascii_digit())
                || (n.len() > 1 && n.starts_with('0'))
            {
                return Err(bad());
            }
            *p = n.parse().map_err(|_| bad())?;
        }
        if let Some(p) = &pre
            && (p.is_empty()
                || !p
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'))
        {
            return Err(bad());
        }
        Ok(Self { parts, pre })
    }

    /// True when `self` comes after `other` (a pre-release comes before its release).
    pub fn is_after(&self, other: &Version) -> bool {
        match self.parts.cmp(&other.parts) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => match (&self.pre, &other.pre) {
                (None, Some(_)) => true,
                (Some(a), Some(b)) => a > b,
                _ => false,
            },
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c] = self.parts;
        write!(f, "{a}.{b}.{c}")?;
        if let Some(p) = &self.pre {
            write!(f, "-{p}")?;
        }
        Ok(())
    }
}

/// One file the release rewrites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEdit {
    /// Relative to the workspace root.
    pub path: PathBuf,
    /// The content now.
    pub before: String,
    /// The content after the release.
    pub after: String,
}

/// A command the release runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    /// What it is for, e.g. `clippy`.
    pub label: String,
    /// The program.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
}

impl Cmd {
    fn new(label: &str, program: &str, args: &[&str]) -> Self {
        Self {
            label: label.to_owned(),
            program: program.to_owned(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            env: Vec::new(),
        }
    }

    fn with_env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_owned(), v.to_owned()));
        self
    }
}

impl std::fmt::Display for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (k, v) in &self.env {
            write!(f, "{k}={v} ")?;
        }
        write!(f, "{}", self.program)?;
        for a in &self.args {
            if a.contains(' ') {
                write!(f, " {a:?}")?;
            } else {
                write!(f, " {a}")?;
            }
        }
        Ok(())
    }
}

/// Everything a release will do.
#[derive(Debug, Clone)]
pub struct ReleasePlan {
    /// The version now.
    pub current: String,
    /// The version to release.
    pub version: Version,
    /// The date written into the CHANGELOG (`YYYY-MM-DD`).
    pub date: String,
    /// Files rewritten.
    pub edits: Vec<FileEdit>,
    /// Checks run after the edits, in order; any failure stops the release and restores the
    /// files.
    pub checks: Vec<Cmd>,
    /// Checks that will not run, and why.
    pub skipped: Vec<String>,
    /// The git commands that commit and tag.
    pub git: Vec<Cmd>,
    /// What stops the release (dirty tree, existing tag, ...): it will not run while any remain.
    pub problems: Vec<String>,
}

impl ReleasePlan {
    /// The plan as text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "release {} → {} ({})",
            self.current, self.version, self.date
        );
        let _ = writeln!(s, "\n1. edit files:");
        for e in &self.edits {
            let _ = writeln!(s, "   {}", e.path.display());
            for line in changed_lines(&e.before, &e.after) {
                let _ = writeln!(s, "     {line}");
            }
        }
        let _ = writeln!(
            s,
            "\n2. run checks (stop and restore the files on the first failure):"
        );
        for c in &self.checks {
            let _ = writeln!(s, "   [{}] {c}", c.label);
        }
        for k in &self.skipped {
            let _ = writeln!(s, "   skipped: {k}");
        }
        let _ = writeln!(s, "\n3. commit and tag:");
        for c in &self.git {
            let _ = writeln!(s, "   {c}");
        }
        if !self.problems.is_empty() {
            let _ = writeln!(s, "\nthe release cannot run:");
            for p in &self.problems {
                let _ = writeln!(s, "   - {p}");
            }
        }
        s
    }
}

/// The lines that differ, as `- old` / `+ new` (line by line; the edits change lines, never
/// the line count, except in the CHANGELOG where new lines are inserted).
fn changed_lines(before: &str, after: &str) -> Vec<String> {
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    let mut out = Vec::new();
    // Common prefix and suffix, then the middle as removed/added.
    let pre = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suf = a[pre..]
        .iter()
        .rev()
        .zip(b[pre..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[pre..a.len() - suf], &b[pre..b.len() - suf]);
    if am.len() == bm.len() {
        for (x, y) in am.iter().zip(bm) {
            if x != y {
                out.push(format!("- {x}"));
                out.push(format!("+ {y}"));
            }
        }
    } else {
        out.extend(am.iter().map(|x| format!("- {x}")));
        out.extend(bm.iter().map(|y| format!("+ {y}")));
    }
    out
}

fn quoted_version(line: &str) -> Option<(usize, usize)> {
    // The span of X in `version = "X"` within `line`.
    let at = line.find("version")?;
    let rest = &line[at + "version".len()..];
    let eq = rest.find('=')?;
    if !rest[..eq].trim().is_empty() {
        return None;
    }
    let after_eq = &rest[eq + 1..];
    let q1 = after_eq.find('"')?;
    if !after_eq[..q1].trim().is_empty() {
        return None;
    }
    let q2 = after_eq[q1 + 1..].find('"')?;
    let start = at + "version".len() + eq + 1 + q1 + 1;
    Some((start, start + q2))
}

/// The root manifest with the new version: `[workspace.package] version`, and the `version` of
/// every path dependency in `[workspace.dependencies]` that had the old one. Returns the old
/// version and the new text.
pub fn bump_root_manifest(text: &str, new: &Version) -> Result<(String, String)> {
    let mut section = String::new();
    let mut current: Option<String> = None;
    let mut out = String::with_capacity(text.len());
    // First pass: find the current version.
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            section = t.to_owned();
        } else if section == "[workspace.package]"
            && t.starts_with("version")
            && let Some((a, b)) = quoted_version(line)
        {
            current = Some(line[a..b].to_owned());
        }
    }
    let Some(current) = current else {
        bail!("the root Cargo.toml has no `version = \"...\"` in [workspace.package]; add one");
    };
    section.clear();
    let mut bumped_deps = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        let mut new_line = line.to_owned();
        if t.starts_with('[') {
            section = t.to_owned();
        } else if let Some((a, b)) = quoted_version(line)
            && line[a..b] == current
        {
            let is_pkg = section == "[workspace.package]" && t.starts_with("version");
            let is_path_dep = section == "[workspace.dependencies]" && t.contains("path =");
            if is_pkg || is_path_dep {
                new_line = format!("{}{new}{}", &line[..a], &line[b..]);
                bumped_deps += usize::from(is_path_dep);
            }
        }
        out.push_str(&new_line);
    }
    if bumped_deps == 0 {
        bail!(
            "no path dependency in [workspace.dependencies] has version {current}; the workspace \
             crates must be declared there with `path = ..., version = \"{current}\"`"
        );
    }
    Ok((current, out))
}

/// A member manifest with a literal `[package] version = "old"` bumped; `None` when it inherits
/// the workspace version (or spells another version, which is left alone).
pub fn bump_member_manifest(text: &str, old: &str, new: &Version) -> Option<String> {
    let mut section = String::new();
    let mut changed = false;
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        if t.starts_with('[') {
            section = t.to_owned();
        }
        if section == "[package]"
            && t.starts_with("version")
            && let Some((a, b)) = quoted_version(line)
            && line[a..b] == *old
        {
            out.push_str(&format!("{}{new}{}", &line[..a], &line[b..]));
            changed = true;
        } else {
            out.push_str(line);
        }
    }
    changed.then_some(out)
}

/// The CHANGELOG with its "Unreleased" section moved under `## [X.Y.Z] - DATE`, and a fresh,
/// empty "Unreleased" section above it.
pub fn move_unreleased(text: &str, version: &Version, date: &str) -> Result<String> {
    let lines: Vec<&str> = text.lines().collect();
    let is_unreleased = |l: &str| {
        let l = l.trim().to_ascii_lowercase();
        l.starts_with("## ")
            && l.trim_start_matches("## ").trim_matches(['[', ']']).trim() == "unreleased"
    };
    let Some(start) = lines.iter().position(|l| is_unreleased(l)) else {
        bail!("CHANGELOG.md has no `## [Unreleased]` section; add one listing the changes");
    };
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.starts_with("## "))
        .map_or(lines.len(), |i| start + 1 + i);
    let body: Vec<&str> = lines[start + 1..end].to_vec();
    if body.iter().all(|l| l.trim().is_empty()) {
        bail!(
            "the `## [Unreleased]` section of CHANGELOG.md is empty: there is nothing to release"
        );
    }
    let heading = format!("## [{version}] - {date}");
    if lines
        .iter()
        .any(|l| l.trim_start().starts_with(&format!("## [{version}]")))
    {
        bail!("CHANGELOG.md already has a section for {version}");
    }
    let mut out: Vec<String> = lines[..start].iter().map(|s| (*s).to_owned()).collect();
    out.push("## [Unreleased]".to_owned());
    out.push(String::new());
    out.push(heading);
    out.extend(body.iter().map(|s| (*s).to_owned()));
    out.extend(lines[end..].iter().map(|s| (*s).to_owned()));
    let mut s = out.join("\n");
    s.push('\n');
    Ok(s)
}

fn git(root: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(root)
        .output()
        .with_context(|| format!("could not run `git {}`; is git installed?", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`git {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The member manifests listed in the root manifest's `members = [...]`.
fn members(root_manifest: &str) -> Vec<String> {
    let mut in_members = false;
    let mut out = Vec::new();
    for line in root_manifest.lines() {
        let t = line.trim();
        if t.starts_with("members") {
            in_members = true;
        }
        if in_members {
            for part in t.split('"').skip(1).step_by(2) {
                out.push(part.to_owned());
            }
            if t.contains(']') {
                break;
            }
        }
    }
    out
}

/// Whether `cargo deny` is installed.
pub fn cargo_deny_available() -> bool {
    Command::new("cargo")
        .args(["deny", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Computes the release plan for the workspace at `root`; changes nothing.
pub fn plan(root: &Path, version: &str, date: &str, deny_available: bool) -> Result<ReleasePlan> {
    let version = Version::parse(version)?;
    let mut problems = Vec::new();
    let manifest_path = root.join("Cargo.toml");
    let manifest = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let (current, bumped) = bump_root_manifest(&manifest, &version)?;
    let cur_v = Version::parse(&current)?;
    if !version.is_after(&cur_v) {
        problems.push(format!(
            "{version} does not come after the current version {current}; pick a higher one"
        ));
    }
    let mut edits = vec![FileEdit {
        path: PathBuf::from("Cargo.toml"),
        before: manifest.clone(),
        after: bumped,
    }];
    for m in members(&manifest) {
        let p = PathBuf::from(&m).join("Cargo.toml");
        if let Ok(text) = std::fs::read_to_string(root.join(&p))
            && let Some(after) = bump_member_manifest(&text, &current, &version)
        {
            edits.push(FileEdit {
                path: p,
                before: text,
                after,
            });
        }
    }
    match std::fs::read_to_string(root.join("CHANGELOG.md")) {
        Ok(text) => match move_unreleased(&text, &version, date) {
            Ok(after) => edits.push(FileEdit {
                path: PathBuf::from("CHANGELOG.md"),
                before: text,
                after,
            }),
            Err(e) => problems.push(e.to_string()),
        },
        Err(_) => problems.push("there is no CHANGELOG.md at the workspace root".to_owned()),
    }

    let status = git(root, &["status", "--porcelain"])?;
    if !status.trim().is_empty() {
        let files: Vec<&str> = status.lines().take(10).collect();
        let more = status.lines().count().saturating_sub(10);
        problems.push(format!(
            "the working tree is not clean; commit or remove these first: {}{}",
            files.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ));
    }
    let tag = format!("v{version}");
    if !git(root, &["tag", "--list", &tag])?.trim().is_empty() {
        problems.push(format!("the tag {tag} already exists"));
    }
    if git(root, &["symbolic-ref", "-q", "HEAD"]).is_err() {
        problems.push("HEAD is detached; check out the branch to release from".to_owned());
    }

    let mut checks = vec![
        Cmd::new("lockfile", "cargo", &["update", "--workspace", "--offline"]),
        Cmd::new("fmt", "cargo", &["fmt", "--all", "--check"]),
        Cmd::new(
            "clippy",
            "cargo",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
        Cmd::new("test", "cargo", &["test", "--workspace", "--all-features"]),
        Cmd::new(
            "doc",
            "cargo",
            &["doc", "--workspace", "--no-deps", "--all-features"],
        )
        .with_env("RUSTDOCFLAGS", "-D warnings"),
    ];
    let mut skipped = Vec::new();
    if deny_available {
        checks.push(Cmd::new("deny", "cargo", &["deny", "--offline", "check"]));
    } else {
        skipped.push(
            "cargo deny --offline check: cargo-deny is not installed (`cargo install --locked \
             cargo-deny` to include it)"
                .to_owned(),
        );
    }
    let mut add = vec!["add", "--"];
    let paths: Vec<String> = edits
        .iter()
        .map(|e| e.path.display().to_string())
        .chain(
            root.join("Cargo.lock")
                .exists()
                .then(|| "Cargo.lock".to_owned()),
        )
        .collect();
    add.extend(paths.iter().map(String::as_str));
    let message = format!("release {version}");
    let tag_message = format!("flowloom {version}");
    let git_cmds = vec![
        Cmd::new("git", "git", &add),
        Cmd::new("git", "git", &["commit", "-m", &message]),
        Cmd::new("git", "git", &["tag", "-a", &tag, "-m", &tag_message]),
    ];
    Ok(ReleasePlan {
        current,
        version,
        date: date.to_owned(),
        edits,
        checks,
        skipped,
        git: git_cmds,
        problems,
    })
}

/// Runs the commands of a release.
pub trait Runner {
    /// Runs `cmd` in `root`; an error when it fails.
    fn run(&mut self, root: &Path, cmd: &Cmd) -> Result<()>;
}

/// Runs commands for real, their output going to the terminal.
#[derive(Debug, Default)]
pub struct SystemRunner;

impl Runner for SystemRunner {
    fn run(&mut self, root: &Path, cmd: &Cmd) -> Result<()> {
        eprintln!("==> {cmd}");
        let status = Command::new(&cmd.program)
            .args(&cmd.args)
            .envs(cmd.env.iter().map(|(k, v)| (k, v)))
            .current_dir(root)
            .status()
            .with_context(|| format!("could not start `{cmd}`"))?;
        if !status.success() {
            bail!("`{cmd}` failed ({status})");
        }
        Ok(())
    }
}

/// Carries out a plan: edits the files, runs the checks (restoring the files if one fails),
/// then commits and tags. Refuses while the plan has problems.
pub fn execute(root: &Path, plan: &ReleasePlan, runner: &mut dyn Runner) -> Result<()> {
    if !plan.problems.is_empty() {
        bail!(
            "the release cannot run:\n  - {}",
            plan.problems.join("\n  - ")
        );
    }
    let lock = root.join("Cargo.lock");
    let lock_before = std::fs::read(&lock).ok();
    for e in &plan.edits {
        std::fs::write(root.join(&e.path), &e.after)
            .with_context(|| format!("writing {}", e.path.display()))?;
    }
    for c in &plan.checks {
        if let Err(err) = runner.run(root, c) {
            for e in &plan.edits {
                let _ = std::fs::write(root.join(&e.path), &e.before);
            }
            if let Some(l) = &lock_before {
                let _ = std::fs::write(&lock, l);
            }
            return Err(err.context(format!(
                "the `{}` check failed; the release stopped and the files were restored",
                c.label
            )));
        }
    }
    for c in &plan.git {
        runner.run(root, c)?;
    }
    Ok(())
}

/// Today's date, `YYYY-MM-DD` (UTC).
pub fn today() -> String {
    let d = time::OffsetDateTime::now_utc().date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// `cargo xtask release VERSION [--dry-run]`.
pub fn run(root: &Path, version: &str, dry_run: bool) -> Result<()> {
    let plan = plan(root, version, &today(), cargo_deny_available())?;
    print!("{}", plan.render());
    if dry_run {
        println!("\ndry run: nothing was changed");
        if !plan.problems.is_empty() {
            bail!("the release would not run: {}", plan.problems.join("; "));
        }
        return Ok(());
    }
    execute(root, &plan, &mut SystemRunner)?;
    println!(
        "\nreleased {} (tag v{}); push with `git push --follow-tags`",
        plan.version, plan.version
    );
    Ok(())
}
