//! Record/replay cassettes (FR-032): a `tower` layer over the provider contract.
//!
//! In **record** mode, [`CassetteLayer`] wraps a real provider and writes every call — chat,
//! streamed chat and embeddings: the normalized request and the response, the error, or a
//! stream's chunks — to a YAML cassette,
//! with secrets scrubbed ([`Scrubber`]). In **replay** mode it answers from the cassette and never
//! calls the provider; a request that matches no recorded one fails loudly with a field-by-field
//! diff against the nearest recorded request. The mode comes from `FLOWLOOM_CASSETTE`
//! (`record`, `replay` or `auto`: replay when the file exists, record otherwise), or from code
//! ([`CassetteBuilder::mode`], which wins over the variable); when neither says, it is `replay`,
//! so a test never spends money by accident.
//!
//! **Matching.** The key is the request without its [`CallContext`](flowloom_core::CallContext)
//! (run, step and correlation ids vary between runs) — model, messages, temperature,
//! `max_tokens`, tools, `tool_choice`, `response_format`, `extra_params` — with free-form
//! objects' keys sorted and secrets scrubbed ([`normalize_request`]), plus the call kind (chat or
//! stream). **Repeated identical requests** are played back in recorded order, each recording
//! once: the n-th call with a key gets the n-th recording of that key, and an (n+1)-th call
//! fails, unless [`CassetteBuilder::repeat_last`] lets the last recording answer again. Calls
//! with different keys may come in any order, so parallel steps replay deterministically.
//!
//! The layer is a plain `tower` service, so it works the same from async code and through
//! [`flowloom_core::BlockingClient`].
//!
//! ```
//! use flowloom_core::{AsyncProvider, LlmError, LlmRequest, LlmResponse, provider};
//! use flowloom_testkit::cassette::{Cassette, CassetteMode};
//! use tower::{Layer, ServiceExt};
//!
//! struct Echo;
//! impl AsyncProvider for Echo {
//!     fn name(&self) -> &str { "echo" }
//!     async fn complete(&self, r: LlmRequest) -> Result<LlmResponse, LlmError> {
//!         Ok(LlmResponse::text(r.prompt().unwrap_or_default().to_owned(), r.model, "echo"))
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("echo.yaml");
//!
//! // Record through the real provider...
//! let rec = Cassette::builder(&path).mode(CassetteMode::Record).build().unwrap();
//! let svc = rec.layer().layer(provider::from_async(Echo));
//! let live = svc.oneshot(LlmRequest::new("m", "hello")).await.unwrap();
//! rec.finish().unwrap();
//!
//! // ...and replay without it.
//! let play = Cassette::builder(&path).mode(CassetteMode::Replay).build().unwrap();
//! let replayed = play.replayer().oneshot(LlmRequest::new("m", "hello")).await.unwrap();
//! assert_eq!(replayed, live);
//! let err = play.replayer().oneshot(LlmRequest::new("m", "bye")).await.unwrap_err();
//! assert!(err.to_string().contains(r#"messages[0].content: recorded "hello", now "bye""#));
//! # });
//! ```

mod diff;
mod format;
mod scrub;
mod service;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use flowloom_core::{EmbeddingRequest, LlmError, LlmRequest, LlmResponse, StreamEvent};
use serde_json::Value;

pub use diff::{FieldChange, changes, line_diff, render_changes};
pub use format::{
    CASSETTE_VERSION, CallKind, CassetteFile, CassetteSource, Interaction, RecordedError,
    RecordedFailure, RecordedStream,
};
pub use scrub::{
    MIN_SECRET_LEN, REDACTED, Scrubber, normalize_embedding_request, normalize_request,
};
pub use service::{CassetteLayer, CassetteService, NoProvider};

/// The environment variable that sets the mode.
pub const CASSETTE_ENV: &str = "FLOWLOOM_CASSETTE";

/// The provider name used in errors the cassette itself raises.
pub const CASSETTE_PROVIDER: &str = "cassette";

/// Whether a cassette records or replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CassetteMode {
    /// Call the real provider and write every call to the cassette (replacing its content).
    Record,
    /// Answer from the cassette; never call the provider.
    Replay,
    /// Replay when the cassette file exists, record otherwise.
    Auto,
}

impl CassetteMode {
    /// Parses `record`, `replay` or `auto` (any case, surrounding spaces ignored).
    pub fn parse(value: &str) -> Result<Self, CassetteError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "record" => Ok(CassetteMode::Record),
            "replay" => Ok(CassetteMode::Replay),
            "auto" => Ok(CassetteMode::Auto),
            _ => Err(CassetteError::BadMode {
                value: value.to_owned(),
            }),
        }
    }

    /// The mode `FLOWLOOM_CASSETTE` asks for; `None` when it is unset or empty.
    pub fn from_env() -> Result<Option<Self>, CassetteError> {
        match std::env::var(CASSETTE_ENV) {
            Ok(v) if !v.trim().is_empty() => Self::parse(&v).map(Some),
            _ => Ok(None),
        }
    }

    /// `record`, `replay` or `auto`.
    pub fn as_str(self) -> &'static str {
        match self {
            CassetteMode::Record => "record",
            CassetteMode::Replay => "replay",
            CassetteMode::Auto => "auto",
        }
    }
}

impl std::fmt::Display for CassetteMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What went wrong with a cassette.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CassetteError {
    /// `FLOWLOOM_CASSETTE` (or a mode string) is not a mode.
    #[error(
        "`{CASSETTE_ENV}` is {value:?}, which is not a cassette mode; use `record`, `replay` or \
         `auto` (replay when the cassette exists, record otherwise)"
    )]
    BadMode {
        /// The value found.
        value: String,
    },
    /// Replay was asked for and there is no cassette.
    #[error(
        "cassette {path} does not exist, so there is nothing to replay; record it first with \
         `{CASSETTE_ENV}=record` (or `auto`), or `cargo xtask fixtures record <name>`"
    )]
    Missing {
        /// The path looked at.
        path: PathBuf,
    },
    /// Reading or writing failed.
    #[error("cassette {path}: {action} failed: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// `reading`, `writing`...
        action: &'static str,
        /// The OS error.
        message: String,
    },
    /// The file is not a valid cassette.
    #[error("cassette {path} is not valid: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and where.
        message: String,
    },
    /// Replay ended with failures: requests that matched nothing, or recordings never played.
    #[error("cassette {path}: replay did not match the recording:\n{report}")]
    Replay {
        /// The file.
        path: PathBuf,
        /// Every failure, readable.
        report: String,
    },
}

/// Builds a [`Cassette`].
#[derive(Debug, Clone)]
pub struct CassetteBuilder {
    path: PathBuf,
    mode: Option<CassetteMode>,
    scrubber: Scrubber,
    source: Option<CassetteSource>,
    repeat_last: bool,
}

impl CassetteBuilder {
    /// Sets the mode, over `FLOWLOOM_CASSETTE`.
    #[must_use]
    pub fn mode(mut self, mode: CassetteMode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Scrubs this secret value too, wherever it appears.
    #[must_use]
    pub fn secret(mut self, secret: impl AsRef<str>) -> Self {
        self.scrubber = self.scrubber.with_secret(secret);
        self
    }

    /// Replaces the scrubber (the default is [`Scrubber::from_env`]).
    #[must_use]
    pub fn scrubber(mut self, scrubber: Scrubber) -> Self {
        self.scrubber = scrubber;
        self
    }

    /// Names what produces the calls (a scenario known to `cargo xtask fixtures`), written into
    /// the cassette when recording.
    #[must_use]
    pub fn source(mut self, scenario: impl Into<String>, input: impl Into<Value>) -> Self {
        self.source = Some(CassetteSource {
            scenario: scenario.into(),
            input: input.into(),
        });
        self
    }

    /// In replay, let the last recording of a request answer again once its recordings are used
    /// up (off by default: an extra call is an error).
    #[must_use]
    pub fn repeat_last(mut self, on: bool) -> Self {
        self.repeat_last = on;
        self
    }

    /// Resolves the mode and, for replay, loads and checks the cassette.
    pub fn build(self) -> Result<Cassette, CassetteError> {
        let asked = match self.mode {
            Some(m) => m,
            None => CassetteMode::from_env()?.unwrap_or(CassetteMode::Replay),
        };
        let mode = match asked {
            CassetteMode::Auto if self.path.exists() => CassetteMode::Replay,
            CassetteMode::Auto => CassetteMode::Record,
            m => m,
        };
        let state = match mode {
            CassetteMode::Replay => {
                let file = load_checked(&self.path, &self.scrubber)?;
                State {
                    used: vec![false; file.interactions.len()],
                    file,
                    slots: Vec::new(),
                    failures: Vec::new(),
                    calls: 0,
                }
            }
            _ => State {
                file: CassetteFile {
                    source: self.source.clone(),
                    recorded_at: Some(now_rfc3339()),
                    ..CassetteFile::new()
                },
                used: Vec::new(),
                slots: Vec::new(),
                failures: Vec::new(),
                calls: 0,
            },
        };
        Ok(Cassette {
            shared: Arc::new(Shared {
                path: self.path,
                mode,
                scrubber: self.scrubber,
                repeat_last: self.repeat_last,
                state: Mutex::new(state),
            }),
        })
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[derive(Debug)]
struct State {
    /// Replay: the loaded cassette (requests normalized). Record: the header.
    file: CassetteFile,
    /// Replay: which interactions were played.
    used: Vec<bool>,
    /// Record: one slot per call, in call order, filled when the call completes.
    slots: Vec<Option<Interaction>>,
    /// Replay: every failure, for [`Cassette::finish`].
    failures: Vec<String>,
    /// Calls made through the cassette.
    calls: u64,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    mode: CassetteMode,
    scrubber: Scrubber,
    repeat_last: bool,
    state: Mutex<State>,
}

/// A cassette: one file, in record or replay mode, shared by every service made from it.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Cassette {
    shared: Arc<Shared>,
}

/// What [`Cassette::finish`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CassetteSummary {
    /// The file.
    pub path: PathBuf,
    /// `Record` or `Replay` (never `Auto`: that is resolved at build).
    pub mode: CassetteMode,
    /// Calls made through the cassette.
    pub calls: u64,
    /// Interactions in the cassette.
    pub interactions: usize,
}

impl Cassette {
    /// A builder for the cassette at `path`.
    pub fn builder(path: impl Into<PathBuf>) -> CassetteBuilder {
        CassetteBuilder {
            path: path.into(),
            mode: None,
            scrubber: Scrubber::from_env(),
            source: None,
            repeat_last: false,
        }
    }

    /// The cassette at `path`, mode from `FLOWLOOM_CASSETTE` (replay when unset).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, CassetteError> {
        Self::builder(path).build()
    }

    /// A builder for `fixtures/cassettes/<name>.yaml` in the nearest directory, from the current
    /// one upwards, that has a `fixtures/cassettes` folder (or `FLOWLOOM_CASSETTE_DIR`, when
    /// set).
    pub fn named(name: &str) -> CassetteBuilder {
        Self::builder(cassette_dir().join(format!("{name}.yaml")))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// `Record` or `Replay`, as resolved at build.
    pub fn mode(&self) -> CassetteMode {
        self.shared.mode
    }

    /// True in record mode.
    pub fn is_recording(&self) -> bool {
        self.shared.mode == CassetteMode::Record
    }

    /// The layer that records into or replays from this cassette.
    pub fn layer(&self) -> CassetteLayer {
        CassetteLayer::new(self.clone())
    }

    /// A service that answers from the cassette alone (replay; in record mode every call fails,
    /// there being no provider to record).
    pub fn replayer(&self) -> CassetteService<NoProvider> {
        CassetteService::new(NoProvider, self.clone())
    }

    /// The interactions: recorded so far (record) or loaded (replay).
    pub fn interactions(&self) -> Vec<Interaction> {
        let st = self.lock();
        match self.shared.mode {
            CassetteMode::Record => st.slots.iter().flatten().cloned().collect(),
            _ => st.file.interactions.clone(),
        }
    }

    /// Ends the cassette. Record: writes it (even when empty). Replay: fails when a request
    /// matched nothing or a recording was never played, with every such failure in the error.
    pub fn finish(&self) -> Result<CassetteSummary, CassetteError> {
        let st = self.lock();
        match self.shared.mode {
            CassetteMode::Record => {
                let file = recorded_file(&st);
                write_file(&self.shared.path, &file)?;
                Ok(self.summary(&st, file.interactions.len()))
            }
            _ => {
                let mut report = String::new();
                for f in &st.failures {
                    let _ = writeln!(report, "- {}", f.replace('\n', "\n  "));
                }
                for (i, used) in st.used.iter().enumerate() {
                    if !used && let Some(it) = st.file.interactions.get(i) {
                        let _ = writeln!(
                            report,
                            "- interaction {i} ({}{}) was recorded but never requested: {}",
                            it.kind,
                            it.step
                                .as_deref()
                                .map(|s| format!(", step `{s}`"))
                                .unwrap_or_default(),
                            prompt_of(&it.request)
                        );
                    }
                }
                if report.is_empty() {
                    Ok(self.summary(&st, st.file.interactions.len()))
                } else {
                    Err(CassetteError::Replay {
                        path: self.shared.path.clone(),
                        report,
                    })
                }
            }
        }
    }

    fn summary(&self, st: &State, interactions: usize) -> CassetteSummary {
        CassetteSummary {
            path: self.shared.path.clone(),
            mode: self.shared.mode,
            calls: st.calls,
            interactions,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn scrubber(&self) -> &Scrubber {
        &self.shared.scrubber
    }

    /// Record: reserves the slot of a call that starts now.
    pub(crate) fn begin(&self) -> usize {
        let mut st = self.lock();
        st.calls += 1;
        st.slots.push(None);
        st.slots.len() - 1
    }

    /// Record: stores a finished call and rewrites the file.
    pub(crate) fn complete(
        &self,
        slot: usize,
        mut interaction: Interaction,
    ) -> Result<(), LlmError> {
        let scrub = &self.shared.scrubber;
        if let Some(r) = interaction.response.as_mut() {
            scrub_response(scrub, r);
        }
        if let Some(e) = interaction.error.as_mut() {
            scrub_error(scrub, e);
        }
        if let Some(s) = interaction.stream.as_mut() {
            for c in &mut s.chunks {
                *c = scrub.scrub_str(c);
            }
            if let Some(r) = s.done.as_mut() {
                scrub_response(scrub, r);
            }
            if let Some(e) = s.error.as_mut() {
                scrub_error(scrub, e);
            }
        }
        let mut st = self.lock();
        if let Some(s) = st.slots.get_mut(slot) {
            *s = Some(interaction);
        }
        let file = recorded_file(&st);
        drop(st);
        write_file(&self.shared.path, &file).map_err(|e| LlmError::Other {
            provider: CASSETTE_PROVIDER.to_owned(),
            message: e.to_string(),
        })
    }

    /// Replay: the recording that answers `request`, or the error that says why none does.
    pub(crate) fn replay(&self, kind: CallKind, key: Value) -> Result<Interaction, LlmError> {
        let mut st = self.lock();
        st.calls += 1;
        let call_no = st.calls;
        let same: Vec<usize> = st
            .file
            .interactions
            .iter()
            .enumerate()
            .filter(|(_, it)| it.kind == kind && it.request == key)
            .map(|(i, _)| i)
            .collect();
        if let Some(&i) = same.iter().find(|&&i| !st.used[i]) {
            st.used[i] = true;
            return Ok(st.file.interactions[i].clone());
        }
        let message = if let Some(&last) = same.last() {
            if self.shared.repeat_last {
                return Ok(st.file.interactions[last].clone());
            }
            format!(
                "cassette {}: call {call_no} ({kind}) repeats a request recorded {} time(s), and \
                 every recording of it was already played. Identical requests are played back \
                 in recorded order, each once; record again (`{CASSETTE_ENV}=record`) or allow \
                 repeats with `CassetteBuilder::repeat_last(true)`.\nThe request: {}",
                self.shared.path.display(),
                same.len(),
                prompt_of(&key),
            )
        } else {
            mismatch_message(
                &self.shared.path,
                &st.file.interactions,
                &st.used,
                kind,
                &key,
                call_no,
            )
        };
        st.failures.push(message.clone());
        drop(st);
        tracing::error!(cassette = %self.shared.path.display(), "{message}");
        Err(LlmError::Other {
            provider: CASSETTE_PROVIDER.to_owned(),
            message,
        })
    }
}

fn scrub_response(scrub: &Scrubber, r: &mut LlmResponse) {
    r.content = scrub.scrub_str(&r.content);
    for t in &mut r.tool_calls {
        t.arguments = scrub.scrub_str(&t.arguments);
    }
    for a in &mut r.attempts {
        if let Some(e) = a.error.as_mut() {
            *e = scrub.scrub_str(e);
        }
    }
}

fn scrub_error(scrub: &Scrubber, e: &mut RecordedError) {
    // Round-trip through JSON so every text field of every variant is scrubbed.
    if let Ok(mut v) = serde_json::to_value(&*e) {
        scrub.scrub_value(&mut v);
        if let Ok(clean) = serde_json::from_value(v) {
            *e = clean;
        }
    }
}

fn recorded_file(st: &State) -> CassetteFile {
    CassetteFile {
        interactions: st.slots.iter().flatten().cloned().collect(),
        ..st.file.clone()
    }
}

/// The prompt (or an embedding's first input) of a normalized request, shortened, for
/// messages.
fn prompt_of(request: &Value) -> String {
    let last_user = request
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| {
            m.iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        })
        .and_then(|m| m.get("content"))
        .or_else(|| request.get("input").and_then(|i| i.get(0)))
        .and_then(Value::as_str)
        .unwrap_or("");
    let model = request.get("model").and_then(Value::as_str).unwrap_or("?");
    let short: String = last_user.chars().take(80).collect();
    let more = if last_user.chars().count() > 80 {
        "…"
    } else {
        ""
    };
    format!("model `{model}`, prompt {short:?}{more}")
}

/// A request read from a cassette, typed by its kind.
enum AnyRequest {
    Llm(LlmRequest),
    Embedding(EmbeddingRequest),
}

impl AnyRequest {
    fn parse(kind: CallKind, value: &Value) -> Result<Self, String> {
        match kind {
            CallKind::Chat | CallKind::Stream => serde_json::from_value(value.clone())
                .map(AnyRequest::Llm)
                .map_err(|e| format!("`request` is not a model request: {e}")),
            CallKind::Embedding => serde_json::from_value(value.clone())
                .map(AnyRequest::Embedding)
                .map_err(|e| format!("`request` is not an embedding request: {e}")),
        }
    }

    fn normalize(&self, scrubber: &Scrubber) -> Value {
        match self {
            AnyRequest::Llm(r) => normalize_request(r, scrubber),
            AnyRequest::Embedding(r) => normalize_embedding_request(r, scrubber),
        }
    }
}

fn mismatch_message(
    path: &Path,
    recorded: &[Interaction],
    used: &[bool],
    kind: CallKind,
    key: &Value,
    call_no: u64,
) -> String {
    let mut out = format!(
        "cassette {}: call {call_no} ({kind}) matches no recorded request.\n",
        path.display()
    );
    // The nearest: same kind first, then recordings not played yet, then the fewest and
    // smallest changes.
    let nearest = recorded
        .iter()
        .enumerate()
        .map(|(i, it)| {
            let c = changes(&it.request, key);
            let w: f64 = c.iter().map(FieldChange::weight).sum();
            (
                it.kind != kind,
                used.get(i).copied().unwrap_or(false),
                w,
                i,
                c,
            )
        })
        .min_by(|a, b| {
            (a.0, a.1)
                .cmp(&(b.0, b.1))
                .then(a.2.total_cmp(&b.2))
                .then(a.3.cmp(&b.3))
        });
    match nearest {
        None => {
            let _ = writeln!(
                out,
                "The cassette has no recorded calls. The request: {}",
                prompt_of(key)
            );
        }
        Some((other_kind, _, _, i, c)) => {
            let it = &recorded[i];
            let _ = writeln!(
                out,
                "Nearest recorded: interaction {i} ({}{}). What changed (recorded → now):",
                it.kind,
                it.step
                    .as_deref()
                    .map(|s| format!(", step `{s}`"))
                    .unwrap_or_default()
            );
            if other_kind {
                let _ = writeln!(out, "  call kind: recorded {}, now {kind}", it.kind);
            }
            out.push_str(&render_changes(&c));
        }
    }
    let _ = write!(
        out,
        "If the change is intended, record again: `{CASSETTE_ENV}=record` (or \
         `cargo xtask fixtures record <name>`)."
    );
    out
}

/// The directory cassettes are looked for in: `FLOWLOOM_CASSETTE_DIR`, else the nearest
/// `fixtures/cassettes` from the current directory upwards, else `fixtures/cassettes` under the
/// current directory.
pub fn cassette_dir() -> PathBuf {
    if let Ok(d) = std::env::var("FLOWLOOM_CASSETTE_DIR")
        && !d.trim().is_empty()
    {
        return PathBuf::from(d);
    }
    let here = std::env::current_dir().unwrap_or_default();
    here.ancestors()
        .map(|a| a.join("fixtures").join("cassettes"))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| here.join("fixtures").join("cassettes"))
}

const HEADER: &str = "# flowloom cassette: recorded model calls, replayed by flowloom-testkit.\n\
# Re-record with FLOWLOOM_CASSETTE=record (or `cargo xtask fixtures record <name>`).\n";

/// Writes a cassette (atomically: a temporary file renamed over the old one).
pub fn write_file(path: &Path, file: &CassetteFile) -> Result<(), CassetteError> {
    let io = |action: &'static str| {
        move |e: std::io::Error| CassetteError::Io {
            path: path.to_owned(),
            action,
            message: e.to_string(),
        }
    };
    let yaml = serde_yaml::to_string(file).map_err(|e| CassetteError::Invalid {
        path: path.to_owned(),
        message: format!("could not serialize: {e}"),
    })?;
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(io("creating the directory"))?;
    }
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, format!("{HEADER}{yaml}")).map_err(io("writing"))?;
    std::fs::rename(&tmp, path).map_err(io("renaming into place"))
}

/// Reads a cassette and checks its structure (version, one outcome per interaction), without
/// normalizing its requests.
pub fn read_file(path: &Path) -> Result<CassetteFile, CassetteError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CassetteError::Missing {
                path: path.to_owned(),
            });
        }
        Err(e) => {
            return Err(CassetteError::Io {
                path: path.to_owned(),
                action: "reading",
                message: e.to_string(),
            });
        }
    };
    let invalid = |message: String| CassetteError::Invalid {
        path: path.to_owned(),
        message,
    };
    let file: CassetteFile = serde_yaml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    if file.version != CASSETTE_VERSION {
        return Err(invalid(format!(
            "version {} is not supported (this flowloom-testkit reads version {CASSETTE_VERSION}); \
             record it again",
            file.version
        )));
    }
    for (i, it) in file.interactions.iter().enumerate() {
        it.check_shape()
            .map_err(|m| invalid(format!("interaction {i} {m}")))?;
        if let Some(s) = &it.stream
            && s.done.is_some()
            && s.error.is_some()
        {
            return Err(invalid(format!(
                "interaction {i}: a stream has both `done` and `error`; it ends one way"
            )));
        }
    }
    Ok(file)
}

/// Reads a cassette and brings every request into normalized form (as a request read from
/// the file is matched), reporting requests that are not requests.
fn load_checked(path: &Path, scrubber: &Scrubber) -> Result<CassetteFile, CassetteError> {
    let mut file = read_file(path)?;
    for (i, it) in file.interactions.iter_mut().enumerate() {
        let req = AnyRequest::parse(it.kind, &it.request).map_err(|m| CassetteError::Invalid {
            path: path.to_owned(),
            message: format!("interaction {i}: {m}"),
        })?;
        it.request = req.normalize(scrubber);
    }
    Ok(file)
}

/// What [`verify_file`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The file.
    pub path: PathBuf,
    /// Interactions checked.
    pub interactions: usize,
    /// The source scenario, when the cassette names one.
    pub scenario: Option<String>,
}

/// Checks a cassette without a provider: it parses; each request is a model request already in
/// normalized form (what [`normalize_request`] makes of it now — so a change in how requests
/// are normalized or serialized shows up); nothing in it looks like a secret; and replaying
/// every recorded request in order through [`Cassette::replayer`] gives back exactly what was
/// recorded (responses, errors, stream chunks).
pub async fn verify_file(path: &Path) -> Result<VerifyReport, CassetteError> {
    use tower::ServiceExt;
    let invalid = |message: String| CassetteError::Invalid {
        path: path.to_owned(),
        message,
    };
    let raw = read_file(path)?;
    let scrubber = Scrubber::new();
    let text = std::fs::read_to_string(path).map_err(|e| CassetteError::Io {
        path: path.to_owned(),
        action: "reading",
        message: e.to_string(),
    })?;
    for (n, line) in text.lines().enumerate() {
        if scrubber.finds_secret(line) {
            return Err(invalid(format!(
                "line {} looks like it holds a secret (an API key or an Authorization value); \
                 scrub it and record again",
                n + 1
            )));
        }
    }
    let mut requests = Vec::new();
    for (i, it) in raw.interactions.iter().enumerate() {
        let req = AnyRequest::parse(it.kind, &it.request)
            .map_err(|m| invalid(format!("interaction {i}: {m}")))?;
        let now = req.normalize(&scrubber);
        if now != it.request {
            return Err(invalid(format!(
                "interaction {i}: the stored request is not what the request normalizes to now:\n{}",
                render_changes(&changes(&it.request, &now))
            )));
        }
        requests.push(req);
    }
    let cassette = Cassette::builder(path)
        .mode(CassetteMode::Replay)
        .scrubber(scrubber)
        .build()?;
    for (i, (it, req)) in raw.interactions.iter().zip(requests).enumerate() {
        let differs =
            |what: &str| invalid(format!("interaction {i}: replay gave a different {what}"));
        let same_error = |e: &LlmError| it.error.as_ref() == Some(&RecordedError::from(e));
        match (it.kind, req) {
            (CallKind::Chat, AnyRequest::Llm(req)) => {
                match cassette.replayer().oneshot(req).await {
                    Ok(r) if it.response.as_ref() == Some(&r) => {}
                    Err(e) if same_error(&e) => {}
                    _ => return Err(differs("outcome")),
                }
            }
            (CallKind::Stream, AnyRequest::Llm(req)) => {
                match cassette
                    .replayer()
                    .oneshot(flowloom_core::StreamRequest(req))
                    .await
                {
                    Ok(stream) => {
                        if it.stream.as_ref() != Some(&collect_stream(stream).await) {
                            return Err(differs("stream"));
                        }
                    }
                    Err(e) if same_error(&e) => {}
                    Err(_) => return Err(differs("stream outcome")),
                }
            }
            (CallKind::Embedding, AnyRequest::Embedding(req)) => {
                match cassette.replayer().oneshot(req).await {
                    Ok(r) if it.embedding.as_ref() == Some(&r) => {}
                    Err(e) if same_error(&e) => {}
                    _ => return Err(differs("embedding outcome")),
                }
            }
            _ => return Err(differs("kind of request")),
        }
    }
    cassette.finish()?;
    Ok(VerifyReport {
        path: path.to_owned(),
        interactions: raw.interactions.len(),
        scenario: raw.source.map(|s| s.scenario),
    })
}

/// Drains a stream into its recorded form.
pub async fn collect_stream(mut stream: flowloom_core::LlmStream) -> RecordedStream {
    use futures_util::StreamExt;
    let mut out = RecordedStream {
        chunks: Vec::new(),
        done: None,
        error: None,
    };
    while let Some(item) = stream.next().await {
        match item {
            Ok(StreamEvent::Delta(t)) => out.chunks.push(t),
            Ok(StreamEvent::Done(r)) => out.done = Some(r),
            Ok(_) => {}
            Err(e) => out.error = Some(RecordedError::from(&e)),
        }
    }
    out
}

#[cfg(test)]
mod tests;
