//! The [`UsageLedger`]: one record per model call, queryable per step, run, model and
//! provider, and across runs; serializable (FR-016).
//!
//! Tokens are summed with integer arithmetic, so the totals are exactly what the providers
//! reported (SC-003). A call whose provider did not report usage is counted under
//! `calls_without_usage`, never as zero tokens; a call answered from a cache
//! (`LlmResponse.cached`) is counted under `cache_hits` and its tokens apart from provider
//! spend.
//!
//! ```
//! use flowloom_core::{CallContext, TokenUsage};
//! use flowloom_observability::ledger::{CallOutcome, UsageLedger, UsageRecord};
//! let ledger = UsageLedger::new();
//! let ctx = CallContext { run_id: Some(uuid::Uuid::new_v4()), step: Some("draft".into()), ..Default::default() };
//! ledger.record(UsageRecord::from_usage(&ctx, "chat", &TokenUsage::new(10, 5, "gpt-4o-mini", "openai")));
//! ledger.record(UsageRecord::new(&ctx, "chat", "gpt-4o-mini", "openai", CallOutcome::NoUsage));
//! let run = ledger.run(ctx.run_id.unwrap());
//! assert_eq!(run.tokens.total_tokens, 15);
//! assert_eq!(run.calls, 2);
//! assert_eq!(run.calls_without_usage, 1);
//! ```

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use flowloom_core::{CallContext, TokenUsage};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::cost::{Cost, CostReport, PriceTable};
use crate::semconv::{OPERATION_CHAT, OPERATION_EMBEDDINGS};

/// Token counts, summed exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCounts {
    /// Prompt (input) tokens.
    pub prompt_tokens: u64,
    /// Completion (output) tokens.
    pub completion_tokens: u64,
    /// Total tokens as reported.
    pub total_tokens: u64,
    /// Of the prompt tokens, those served from the provider's prompt cache (0 when not
    /// reported).
    pub cached_prompt_tokens: u64,
    /// Of the completion tokens, reasoning tokens (0 when not reported).
    pub reasoning_tokens: u64,
}

impl TokenCounts {
    /// The counts of one reported usage.
    pub fn from_usage(u: &TokenUsage) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens,
            cached_prompt_tokens: u.cached_prompt_tokens.unwrap_or(0),
            reasoning_tokens: u.reasoning_tokens.unwrap_or(0),
        }
    }

    /// Adds `other` (saturating at `u64::MAX`).
    pub fn add(&mut self, other: &TokenCounts) {
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
        self.total_tokens = self.total_tokens.saturating_add(other.total_tokens);
        self.cached_prompt_tokens = self
            .cached_prompt_tokens
            .saturating_add(other.cached_prompt_tokens);
        self.reasoning_tokens = self.reasoning_tokens.saturating_add(other.reasoning_tokens);
    }
}

/// How a recorded call ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CallOutcome {
    /// The provider answered and reported usage.
    Usage {
        /// The reported counts.
        tokens: TokenCounts,
    },
    /// The provider answered without reporting usage (unknown, not zero).
    NoUsage,
    /// A cache answered without calling the provider; `tokens` are what the cached answer
    /// had cost when it was made, if known. Not provider spend.
    CacheHit {
        /// The cached answer's usage, if it carried one.
        tokens: Option<TokenCounts>,
    },
    /// The call failed.
    Failed {
        /// The error kind (`error.type`), e.g. `rate_limited`.
        error_type: String,
    },
}

/// One model call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Order of recording across the ledger.
    pub seq: u64,
    /// When it was recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    /// The run, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<Uuid>,
    /// The workflow's name, where known (shared with the request's `CallContext`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<Arc<str>>,
    /// The step's name, where known (shared with the request's `CallContext`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<Arc<str>>,
    /// The correlation id, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// `chat` or `embeddings`.
    pub operation: Cow<'static, str>,
    /// The model that answered (or was asked for, when the call failed).
    pub model: String,
    /// The provider.
    pub provider: String,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: CallOutcome,
}

impl UsageRecord {
    /// A record attributed by `ctx`.
    pub fn new(
        ctx: &CallContext,
        operation: &'static str,
        model: impl Into<String>,
        provider: impl Into<String>,
        outcome: CallOutcome,
    ) -> Self {
        Self {
            seq: 0,
            recorded_at: OffsetDateTime::now_utc(),
            run_id: ctx.run_id,
            workflow: ctx.workflow.clone(),
            step: ctx.step.clone(),
            correlation_id: ctx.correlation_id,
            operation: Cow::Borrowed(operation),
            model: model.into(),
            provider: provider.into(),
            outcome,
        }
    }

    /// A record of a reported usage (its model and provider).
    pub fn from_usage(ctx: &CallContext, operation: &'static str, usage: &TokenUsage) -> Self {
        Self::new(
            ctx,
            operation,
            usage.model.clone(),
            usage.provider.clone(),
            CallOutcome::Usage {
                tokens: TokenCounts::from_usage(usage),
            },
        )
    }

    /// The provider-reported tokens of this call (`None` for cache hits, failures and calls
    /// without usage).
    pub fn spend(&self) -> Option<&TokenCounts> {
        match &self.outcome {
            CallOutcome::Usage { tokens } => Some(tokens),
            _ => None,
        }
    }

    /// What this call cost at `prices`.
    pub fn cost(&self, prices: &PriceTable) -> Cost {
        match &self.outcome {
            CallOutcome::Usage { tokens } => prices.cost_of(
                &self.model,
                tokens.prompt_tokens,
                tokens.cached_prompt_tokens,
                tokens.completion_tokens,
            ),
            CallOutcome::NoUsage => Cost::UsageUnknown,
            CallOutcome::CacheHit { .. } => Cost::CacheHit,
            // A failed call reported no usage: its cost, if any, is unknown.
            CallOutcome::Failed { .. } => Cost::UsageUnknown,
        }
    }
}

/// Sums over a set of calls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageSummary {
    /// Every recorded call (with usage, without, cache hits and failures).
    pub calls: u64,
    /// Calls whose provider reported usage.
    pub calls_with_usage: u64,
    /// Calls answered without reported usage: their tokens are unknown, not zero.
    pub calls_without_usage: u64,
    /// Calls that failed.
    pub failed_calls: u64,
    /// Calls answered from a cache.
    pub cache_hits: u64,
    /// Provider-reported tokens (cache hits excluded): the spend.
    pub tokens: TokenCounts,
    /// Tokens of cached answers, kept apart from the spend.
    pub cache_hit_tokens: TokenCounts,
}

impl UsageSummary {
    /// Adds one record.
    pub fn add(&mut self, r: &UsageRecord) {
        self.calls += 1;
        match &r.outcome {
            CallOutcome::Usage { tokens } => {
                self.calls_with_usage += 1;
                self.tokens.add(tokens);
            }
            CallOutcome::NoUsage => self.calls_without_usage += 1,
            CallOutcome::CacheHit { tokens } => {
                self.cache_hits += 1;
                if let Some(t) = tokens {
                    self.cache_hit_tokens.add(t);
                }
            }
            CallOutcome::Failed { .. } => self.failed_calls += 1,
        }
    }

    /// True when every answered call reported its usage, so `tokens` is the whole spend.
    pub fn is_complete(&self) -> bool {
        self.calls_without_usage == 0
    }

    fn of<'a>(records: impl IntoIterator<Item = &'a UsageRecord>) -> Self {
        let mut s = Self::default();
        for r in records {
            s.add(r);
        }
        s
    }
}

/// A serializable copy of a ledger: every record, plus the totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerSnapshot {
    /// When the snapshot was taken.
    #[serde(with = "time::serde::rfc3339")]
    pub taken_at: OffsetDateTime,
    /// Totals over every record.
    pub totals: UsageSummary,
    /// Every record, in recording order.
    pub records: Vec<UsageRecord>,
}

impl LedgerSnapshot {
    /// A ledger holding these records again (e.g. to query a saved snapshot).
    pub fn into_ledger(self) -> UsageLedger {
        let ledger = UsageLedger::new();
        for r in self.records {
            ledger.insert(r);
        }
        ledger
    }
}

const SHARDS: usize = 16;
/// Entries per storage chunk: a full chunk is never moved, so the ledger grows without
/// copying what it holds.
const CHUNK: usize = 256;

/// Model and provider names shared by whoever names them (a per-thread table, no lock): a
/// name missing from the table is allocated, and kept when the table has room.
pub(crate) fn intern(name: &str) -> Arc<str> {
    const KEEP: usize = 64;
    thread_local! {
        static NAMES: std::cell::RefCell<Vec<Arc<str>>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    NAMES
        .try_with(|names| {
            let Ok(mut names) = names.try_borrow_mut() else {
                return Arc::from(name);
            };
            if let Some(n) = names.iter().find(|n| ***n == *name) {
                return Arc::clone(n);
            }
            let n: Arc<str> = Arc::from(name);
            if names.len() < KEEP {
                names.push(Arc::clone(&n));
            }
            n
        })
        .unwrap_or_else(|_| Arc::from(name))
}

/// A small per-thread table of shared values: `find` or make, without a lock. A value not
/// found is made, and kept when the table has room (else the oldest is replaced).
struct Table<T, const N: usize> {
    items: Vec<Arc<T>>,
    next: usize,
}

impl<T, const N: usize> Table<T, N> {
    const fn new() -> Self {
        Self {
            items: Vec::new(),
            next: 0,
        }
    }

    fn get(&mut self, is: impl Fn(&T) -> bool, make: impl FnOnce() -> T) -> Arc<T> {
        if let Some(t) = self.items.iter().find(|t| is(t)) {
            return Arc::clone(t);
        }
        let t = Arc::new(make());
        if self.items.len() < N {
            self.items.push(Arc::clone(&t));
        } else {
            self.items[self.next] = Arc::clone(&t);
            self.next = (self.next + 1) % N;
        }
        t
    }
}

/// What the calls of one run share: kept once per run, not once per call.
#[derive(Debug, PartialEq, Eq)]
struct RunKey {
    run_id: Option<Uuid>,
    correlation_id: Option<Uuid>,
    workflow: Option<Arc<str>>,
}

/// What the calls of one step to one model share across runs: the step, the operation, the
/// model and the provider.
#[derive(Debug, PartialEq, Eq)]
struct CallKey {
    step: Option<Arc<str>>,
    operation: Cow<'static, str>,
    model: Arc<str>,
    provider: Arc<str>,
}

fn same_name(a: &Option<Arc<str>>, b: Option<&Arc<str>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || **a == **b,
        (None, None) => true,
        _ => false,
    }
}

fn run_key(
    run_id: Option<Uuid>,
    correlation_id: Option<Uuid>,
    workflow: Option<&Arc<str>>,
) -> Arc<RunKey> {
    thread_local! {
        static RUNS: std::cell::RefCell<Table<RunKey, 16>> = const { std::cell::RefCell::new(Table::new()) };
    }
    let make = || RunKey {
        run_id,
        correlation_id,
        workflow: workflow.cloned(),
    };
    RUNS.try_with(|t| match t.try_borrow_mut() {
        Ok(mut t) => t.get(
            |k| {
                k.run_id == run_id
                    && k.correlation_id == correlation_id
                    && same_name(&k.workflow, workflow)
            },
            make,
        ),
        Err(_) => Arc::new(make()),
    })
    .unwrap_or_else(|_| Arc::new(make()))
}

fn call_key(step: Option<&Arc<str>>, operation: &str, model: &str, provider: &str) -> Arc<CallKey> {
    thread_local! {
        static CALLS: std::cell::RefCell<Table<CallKey, 64>> = const { std::cell::RefCell::new(Table::new()) };
    }
    let make = || CallKey {
        step: step.cloned(),
        operation: match operation {
            OPERATION_CHAT => Cow::Borrowed(OPERATION_CHAT),
            OPERATION_EMBEDDINGS => Cow::Borrowed(OPERATION_EMBEDDINGS),
            other => Cow::Owned(other.to_owned()),
        },
        model: Arc::from(model),
        provider: Arc::from(provider),
    };
    CALLS
        .try_with(|t| match t.try_borrow_mut() {
            Ok(mut t) => t.get(
                |k| {
                    *k.model == *model
                        && *k.provider == *provider
                        && k.operation == operation
                        && same_name(&k.step, step)
                },
                make,
            ),
            Err(_) => Arc::new(make()),
        })
        .unwrap_or_else(|_| Arc::new(make()))
}

/// How a stored call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Usage,
    NoUsage,
    CacheHit,
    CacheHitWithoutUsage,
    Failed,
}

/// What does not fit a stored call's inline fields (rare: counts beyond `u32`, failures).
#[derive(Debug, Clone)]
enum Extra {
    Counts(TokenCounts),
    Failed(Cow<'static, str>),
}

/// How a call ended, as the accounting layer reports it.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Usage(TokenCounts),
    NoUsage,
    CacheHit(Option<TokenCounts>),
    Failed(Cow<'static, str>),
}

impl Outcome {
    fn from_public(o: CallOutcome) -> Self {
        match o {
            CallOutcome::Usage { tokens } => Outcome::Usage(tokens),
            CallOutcome::NoUsage => Outcome::NoUsage,
            CallOutcome::CacheHit { tokens } => Outcome::CacheHit(tokens),
            CallOutcome::Failed { error_type } => Outcome::Failed(Cow::Owned(error_type)),
        }
    }
}

/// One stored call, in 64 bytes: its run's ids and its step, model and provider are shared
/// with the other calls that have them ([`RunKey`], [`CallKey`]), and its token counts are
/// kept as `u32`s when they fit.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    seq: u64,
    /// Nanoseconds since the Unix epoch.
    at: i64,
    run: Arc<RunKey>,
    call: Arc<CallKey>,
    counts: [u32; 5],
    kind: Kind,
    extra: Option<Box<Extra>>,
}

/// What the accounting layer knows of a call before it is made.
#[derive(Debug)]
pub(crate) struct PendingCall {
    run: Arc<RunKey>,
    /// The attribution expected: the model asked for, the provider routed to.
    call: Arc<CallKey>,
    operation: &'static str,
}

impl PendingCall {
    /// The attribution of a `operation` request with `ctx` asking for `model`.
    pub(crate) fn new(ctx: &CallContext, operation: &'static str, model: &str) -> Self {
        Self {
            run: run_key(ctx.run_id, ctx.correlation_id, ctx.workflow.as_ref()),
            call: call_key(
                ctx.step.as_ref(),
                operation,
                model,
                ctx.provider.as_deref().unwrap_or(UNKNOWN_PROVIDER),
            ),
            operation,
        }
    }

    /// The provider the engine routed the call to, if any.
    pub(crate) fn routed_provider(&self) -> Option<&str> {
        Some(&*self.call.provider).filter(|p| *p != UNKNOWN_PROVIDER)
    }

    /// The stored call, ending with `outcome`: recorded under the model and provider the
    /// answer named (when it did), else the model asked for and the provider routed to,
    /// else the provider a failure named.
    pub(crate) fn finish(
        self,
        model: Option<&str>,
        provider: Option<&str>,
        error_provider: Option<&str>,
        outcome: Outcome,
    ) -> Entry {
        let expected = &self.call;
        let model = model.filter(|m| !m.is_empty()).unwrap_or(&expected.model);
        let provider = provider
            .filter(|p| !p.is_empty())
            .or(self.routed_provider())
            .or(error_provider)
            .unwrap_or(UNKNOWN_PROVIDER);
        let call = if *expected.model == *model && *expected.provider == *provider {
            self.call
        } else {
            call_key(expected.step.as_ref(), self.operation, model, provider)
        };
        let at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        Entry::new(0, at, self.run, call, outcome)
    }
}

/// The provider of a call nobody named.
const UNKNOWN_PROVIDER: &str = "unknown";

fn small(t: &TokenCounts) -> Option<[u32; 5]> {
    Some([
        u32::try_from(t.prompt_tokens).ok()?,
        u32::try_from(t.completion_tokens).ok()?,
        u32::try_from(t.total_tokens).ok()?,
        u32::try_from(t.cached_prompt_tokens).ok()?,
        u32::try_from(t.reasoning_tokens).ok()?,
    ])
}

impl Entry {
    fn new(seq: u64, at: i64, run: Arc<RunKey>, call: Arc<CallKey>, outcome: Outcome) -> Self {
        let mut e = Entry {
            seq,
            at,
            run,
            call,
            counts: [0; 5],
            kind: Kind::NoUsage,
            extra: None,
        };
        let put = |e: &mut Entry, t: &TokenCounts| match small(t) {
            Some(c) => e.counts = c,
            None => e.extra = Some(Box::new(Extra::Counts(*t))),
        };
        match outcome {
            Outcome::Usage(t) => {
                e.kind = Kind::Usage;
                put(&mut e, &t);
            }
            Outcome::NoUsage => {}
            Outcome::CacheHit(Some(t)) => {
                e.kind = Kind::CacheHit;
                put(&mut e, &t);
            }
            Outcome::CacheHit(None) => e.kind = Kind::CacheHitWithoutUsage,
            Outcome::Failed(error) => {
                e.kind = Kind::Failed;
                e.extra = Some(Box::new(Extra::Failed(error)));
            }
        }
        e
    }

    fn tokens(&self) -> TokenCounts {
        match self.extra.as_deref() {
            Some(Extra::Counts(t)) => *t,
            _ => {
                let [p, c, t, cached, reasoning] = self.counts.map(u64::from);
                TokenCounts {
                    prompt_tokens: p,
                    completion_tokens: c,
                    total_tokens: t,
                    cached_prompt_tokens: cached,
                    reasoning_tokens: reasoning,
                }
            }
        }
    }

    fn outcome(&self) -> CallOutcome {
        match self.kind {
            Kind::Usage => CallOutcome::Usage {
                tokens: self.tokens(),
            },
            Kind::NoUsage => CallOutcome::NoUsage,
            Kind::CacheHit => CallOutcome::CacheHit {
                tokens: Some(self.tokens()),
            },
            Kind::CacheHitWithoutUsage => CallOutcome::CacheHit { tokens: None },
            Kind::Failed => CallOutcome::Failed {
                error_type: match self.extra.as_deref() {
                    Some(Extra::Failed(e)) => e.clone().into_owned(),
                    _ => String::new(),
                },
            },
        }
    }

    fn run_id(&self) -> Option<Uuid> {
        self.run.run_id
    }

    fn to_record(&self) -> UsageRecord {
        UsageRecord {
            seq: self.seq,
            recorded_at: OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.at))
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            run_id: self.run.run_id,
            workflow: self.run.workflow.clone(),
            step: self.call.step.clone(),
            correlation_id: self.run.correlation_id,
            operation: self.call.operation.clone(),
            model: self.call.model.to_string(),
            provider: self.call.provider.to_string(),
            outcome: self.outcome(),
        }
    }

    fn from_record(r: UsageRecord) -> Self {
        // Times outside 1677..2262 (never recorded by a ledger) are clamped.
        let at = i64::try_from(r.recorded_at.unix_timestamp_nanos()).unwrap_or(
            if r.recorded_at.unix_timestamp() < 0 {
                i64::MIN
            } else {
                i64::MAX
            },
        );
        Self::new(
            r.seq,
            at,
            run_key(r.run_id, r.correlation_id, r.workflow.as_ref()),
            call_key(r.step.as_ref(), &r.operation, &r.model, &r.provider),
            Outcome::from_public(r.outcome),
        )
    }

    fn in_step(&self, run_id: Uuid, step: &str) -> bool {
        self.run.run_id == Some(run_id) && self.call.step.as_deref() == Some(step)
    }

    fn cost(&self, prices: &PriceTable) -> Cost {
        match self.kind {
            Kind::Usage => {
                let t = self.tokens();
                prices.cost_of(
                    &self.call.model,
                    t.prompt_tokens,
                    t.cached_prompt_tokens,
                    t.completion_tokens,
                )
            }
            Kind::NoUsage | Kind::Failed => Cost::UsageUnknown,
            Kind::CacheHit | Kind::CacheHitWithoutUsage => Cost::CacheHit,
        }
    }
}

impl UsageSummary {
    fn add_entry(&mut self, e: &Entry) {
        self.calls += 1;
        match e.kind {
            Kind::Usage => {
                self.calls_with_usage += 1;
                self.tokens.add(&e.tokens());
            }
            Kind::NoUsage => self.calls_without_usage += 1,
            Kind::CacheHit => {
                self.cache_hits += 1;
                self.cache_hit_tokens.add(&e.tokens());
            }
            Kind::CacheHitWithoutUsage => self.cache_hits += 1,
            Kind::Failed => self.failed_calls += 1,
        }
    }
}

/// One shard's calls, in chunks of [`CHUNK`].
#[derive(Debug, Default)]
struct Shard {
    chunks: Vec<Vec<Entry>>,
    len: usize,
}

impl Shard {
    fn push(&mut self, e: Entry) {
        match self.chunks.last_mut() {
            Some(c) if c.len() < CHUNK => c.push(e),
            _ => {
                let mut c = Vec::with_capacity(CHUNK);
                c.push(e);
                self.chunks.push(c);
            }
        }
        self.len += 1;
    }
    fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.chunks.iter().flatten()
    }
}

#[derive(Debug, Default)]
struct Inner {
    seq: AtomicU64,
    shards: [Mutex<Shard>; SHARDS],
}

/// Records of model calls; `Clone` shares the same ledger (an `Arc` inside).
///
/// Recording a call takes one of 16 shard locks, chosen by run id, for the time of a push,
/// so concurrent runs rarely wait on each other; queries read every shard. A call is kept in
/// 64 bytes: what the calls of a run share (run id, correlation id, workflow) is kept once
/// per run, and what calls of the same step to the same model share (step, operation,
/// model, provider) once across runs. Records are kept until taken out: a long-lived
/// process that records millions of calls should [`drain`](UsageLedger::drain) the ledger
/// now and then.
#[derive(Debug, Clone, Default)]
pub struct UsageLedger {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned shard still holds complete entries (a push cannot half-happen).
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl UsageLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    fn shard_of(run_id: Option<Uuid>, seq: u64) -> usize {
        let key = match run_id {
            Some(id) => id.as_u128() as u64,
            None => seq,
        };
        (key as usize) % SHARDS
    }

    /// Records one call; returns its sequence number.
    pub fn record(&self, record: UsageRecord) -> u64 {
        self.record_entry(Entry::from_record(record))
    }

    /// Records one stored call (the accounting layer's path: no record to convert).
    pub(crate) fn record_entry(&self, mut e: Entry) -> u64 {
        e.seq = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        let seq = e.seq;
        lock(&self.inner.shards[Self::shard_of(e.run_id(), seq)]).push(e);
        seq
    }

    fn insert(&self, record: UsageRecord) {
        let e = Entry::from_record(record);
        self.inner.seq.fetch_max(e.seq + 1, Ordering::Relaxed);
        lock(&self.inner.shards[Self::shard_of(e.run_id(), e.seq)]).push(e);
    }

    /// Visits every stored call matching `keep` (shard by shard, not in order).
    fn each(&self, keep: impl Fn(&Entry) -> bool, mut f: impl FnMut(&Entry)) {
        for s in &self.inner.shards {
            for e in lock(s).iter().filter(|e| keep(e)) {
                f(e);
            }
        }
    }

    fn entries_where(&self, keep: impl Fn(&Entry) -> bool) -> Vec<UsageRecord> {
        let mut out = Vec::new();
        self.each(keep, |e| out.push(e.to_record()));
        out.sort_by_key(|r| r.seq);
        out
    }

    /// Every record, in recording order.
    pub fn records(&self) -> Vec<UsageRecord> {
        self.entries_where(|_| true)
    }

    /// Records matching `keep`, in recording order.
    pub fn records_where(&self, keep: impl Fn(&UsageRecord) -> bool) -> Vec<UsageRecord> {
        let mut out = Vec::new();
        self.each(
            |_| true,
            |e| {
                let r = e.to_record();
                if keep(&r) {
                    out.push(r);
                }
            },
        );
        out.sort_by_key(|r| r.seq);
        out
    }

    fn summary_where(&self, keep: impl Fn(&Entry) -> bool) -> UsageSummary {
        let mut sum = UsageSummary::default();
        self.each(keep, |e| sum.add_entry(e));
        sum
    }

    fn group_by(&self, key: impl Fn(&Entry) -> &Arc<str>) -> BTreeMap<String, UsageSummary> {
        let mut map: BTreeMap<Arc<str>, UsageSummary> = BTreeMap::new();
        self.each(
            |_| true,
            |e| match map.get_mut(key(e)) {
                Some(s) => s.add_entry(e),
                None => map.entry(Arc::clone(key(e))).or_default().add_entry(e),
            },
        );
        map.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// How many calls are recorded.
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| lock(s).len).sum()
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Totals across every run.
    pub fn totals(&self) -> UsageSummary {
        self.summary_where(|_| true)
    }

    /// Totals of one run.
    pub fn run(&self, run_id: Uuid) -> UsageSummary {
        self.summary_where(|e| e.run_id() == Some(run_id))
    }

    /// Totals of one step of one run.
    pub fn step(&self, run_id: Uuid, step: &str) -> UsageSummary {
        self.summary_where(|e| e.in_step(run_id, step))
    }

    /// Totals of one model, across runs.
    pub fn model(&self, model: &str) -> UsageSummary {
        self.summary_where(|e| &*e.call.model == model)
    }

    /// Totals of one provider, across runs.
    pub fn provider(&self, provider: &str) -> UsageSummary {
        self.summary_where(|e| &*e.call.provider == provider)
    }

    /// Totals of every run of a workflow.
    pub fn workflow(&self, workflow: &str) -> UsageSummary {
        self.summary_where(|e| e.run.workflow.as_deref() == Some(workflow))
    }

    /// Totals per run (calls without a run id are left out).
    pub fn by_run(&self) -> BTreeMap<Uuid, UsageSummary> {
        let mut map: BTreeMap<Uuid, UsageSummary> = BTreeMap::new();
        self.each(
            |e| e.run_id().is_some(),
            |e| {
                if let Some(id) = e.run_id() {
                    map.entry(id).or_default().add_entry(e);
                }
            },
        );
        map
    }

    /// Totals per step of one run.
    pub fn by_step(&self, run_id: Uuid) -> BTreeMap<String, UsageSummary> {
        let mut map: BTreeMap<String, UsageSummary> = BTreeMap::new();
        self.each(
            |e| e.run_id() == Some(run_id),
            |e| {
                let step = e.call.step.as_deref().unwrap_or_default();
                match map.get_mut(step) {
                    Some(s) => s.add_entry(e),
                    None => map.entry(step.to_owned()).or_default().add_entry(e),
                }
            },
        );
        map
    }

    /// Totals per model.
    pub fn by_model(&self) -> BTreeMap<String, UsageSummary> {
        self.group_by(|e| &e.call.model)
    }

    /// Totals per provider.
    pub fn by_provider(&self) -> BTreeMap<String, UsageSummary> {
        self.group_by(|e| &e.call.provider)
    }

    fn cost_of_entries(&self, prices: &PriceTable, keep: impl Fn(&Entry) -> bool) -> CostReport {
        let mut report = CostReport {
            prices_as_of: prices.as_of.clone(),
            ..CostReport::default()
        };
        self.each(keep, |e| report.add(&e.cost(prices)));
        report
    }

    /// Cost of every call at `prices`.
    pub fn cost(&self, prices: &PriceTable) -> CostReport {
        self.cost_of_entries(prices, |_| true)
    }

    /// Cost of one run.
    pub fn run_cost(&self, run_id: Uuid, prices: &PriceTable) -> CostReport {
        self.cost_of_entries(prices, |e| e.run_id() == Some(run_id))
    }

    /// Cost of one step of one run.
    pub fn step_cost(&self, run_id: Uuid, step: &str, prices: &PriceTable) -> CostReport {
        self.cost_of_entries(prices, |e| e.in_step(run_id, step))
    }

    /// Cost of the calls matching `keep`.
    pub fn cost_where(
        &self,
        prices: &PriceTable,
        keep: impl Fn(&UsageRecord) -> bool,
    ) -> CostReport {
        let mut report = CostReport {
            prices_as_of: prices.as_of.clone(),
            ..CostReport::default()
        };
        self.each(
            |_| true,
            |e| {
                if keep(&e.to_record()) {
                    report.add(&e.cost(prices));
                }
            },
        );
        report
    }

    /// A serializable copy of everything recorded.
    pub fn snapshot(&self) -> LedgerSnapshot {
        let records = self.records();
        LedgerSnapshot {
            taken_at: OffsetDateTime::now_utc(),
            totals: UsageSummary::of(&records),
            records,
        }
    }

    /// The snapshot as pretty JSON.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(&self.snapshot())
    }

    /// Takes every record out, as a snapshot, and leaves the ledger empty: for a long-lived
    /// process that exports its usage now and then instead of holding every call forever. A
    /// call recorded meanwhile is either in the snapshot or still in the ledger, never lost
    /// and never in both. Sequence numbers continue.
    pub fn drain(&self) -> LedgerSnapshot {
        let mut records = Vec::new();
        for s in &self.inner.shards {
            let shard = std::mem::take(&mut *lock(s));
            records.extend(shard.iter().map(Entry::to_record));
        }
        records.sort_by_key(|r| r.seq);
        LedgerSnapshot {
            taken_at: OffsetDateTime::now_utc(),
            totals: UsageSummary::of(&records),
            records,
        }
    }

    /// Forgets every record.
    pub fn clear(&self) {
        for s in &self.inner.shards {
            *lock(s) = Shard::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(run: Uuid, step: &str) -> CallContext {
        CallContext {
            run_id: Some(run),
            workflow: Some("wf".into()),
            step: Some(step.into()),
            ..CallContext::default()
        }
    }

    #[test]
    fn queries_split_by_step_model_provider() {
        let l = UsageLedger::new();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        l.record(UsageRecord::from_usage(
            &ctx(a, "s1"),
            "chat",
            &TokenUsage::new(10, 1, "m1", "p1"),
        ));
        l.record(UsageRecord::from_usage(
            &ctx(a, "s2"),
            "chat",
            &TokenUsage::new(20, 2, "m2", "p1"),
        ));
        l.record(UsageRecord::from_usage(
            &ctx(b, "s1"),
            "chat",
            &TokenUsage::new(40, 4, "m1", "p2"),
        ));
        assert_eq!(l.step(a, "s1").tokens.prompt_tokens, 10);
        assert_eq!(l.run(a).tokens.total_tokens, 33);
        assert_eq!(l.model("m1").tokens.completion_tokens, 5);
        assert_eq!(l.provider("p1").calls, 2);
        assert_eq!(l.by_run().len(), 2);
        assert_eq!(l.by_step(a).len(), 2);
        assert_eq!(l.by_model()["m2"].tokens.total_tokens, 22);
        assert_eq!(l.by_provider()["p2"].tokens.total_tokens, 44);
        assert_eq!(l.workflow("wf").calls, 3);
        assert_eq!(l.totals().tokens.total_tokens, 77);
        let seqs: Vec<u64> = l.records().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![0, 1, 2]);
    }

    #[test]
    fn missing_usage_is_not_zero_and_cache_hits_are_apart() {
        let l = UsageLedger::new();
        let r = Uuid::new_v4();
        l.record(UsageRecord::new(
            &ctx(r, "s"),
            "chat",
            "m",
            "p",
            CallOutcome::NoUsage,
        ));
        l.record(UsageRecord::new(
            &ctx(r, "s"),
            "chat",
            "m",
            "p",
            CallOutcome::CacheHit {
                tokens: Some(TokenCounts::from_usage(&TokenUsage::new(7, 3, "m", "p"))),
            },
        ));
        let s = l.run(r);
        assert_eq!(s.calls, 2);
        assert_eq!(s.calls_without_usage, 1);
        assert!(!s.is_complete());
        assert_eq!(s.cache_hits, 1);
        assert_eq!(s.tokens, TokenCounts::default());
        assert_eq!(s.cache_hit_tokens.total_tokens, 10);
    }

    #[test]
    fn drain_takes_everything_once_and_the_sequence_goes_on() {
        let l = UsageLedger::new();
        let r = Uuid::new_v4();
        for n in [3, 4] {
            l.record(UsageRecord::from_usage(
                &ctx(r, "s"),
                "chat",
                &TokenUsage::new(n, 1, "m", "p"),
            ));
        }
        let first = l.drain();
        assert_eq!(first.records.len(), 2);
        assert_eq!(first.totals.tokens.total_tokens, 9);
        assert!(l.is_empty());
        assert_eq!(l.totals(), UsageSummary::default());
        let seq = l.record(UsageRecord::from_usage(
            &ctx(r, "s"),
            "chat",
            &TokenUsage::new(5, 1, "m", "p"),
        ));
        assert_eq!(seq, 2);
        let second = l.drain();
        assert_eq!(second.totals.tokens.total_tokens, 6);
        assert!(l.drain().records.is_empty());
    }

    #[test]
    fn a_stored_call_stays_small() {
        // What a long-lived ledger holds per call (the public record is larger).
        assert_eq!(std::mem::size_of::<Entry>(), 64);
    }

    #[test]
    fn runs_and_names_are_shared_between_calls() {
        let l = UsageLedger::new();
        let r = Uuid::new_v4();
        for _ in 0..2 {
            l.record_entry(
                PendingCall::new(&ctx(r, "s"), "chat", "gpt-4o-mini").finish(
                    Some("gpt-4o-mini"),
                    Some("openai"),
                    None,
                    Outcome::NoUsage,
                ),
            );
        }
        let shard = lock(&l.inner.shards[UsageLedger::shard_of(Some(r), 0)]);
        let e: Vec<&Entry> = shard.iter().collect();
        assert!(Arc::ptr_eq(&e[0].run, &e[1].run));
        assert!(Arc::ptr_eq(&e[0].call, &e[1].call));
        assert_eq!(&*e[0].call.provider, "openai");
    }

    #[test]
    fn counts_beyond_u32_and_failures_are_kept_exactly() {
        let l = UsageLedger::new();
        let r = Uuid::new_v4();
        let big = TokenUsage::new(u64::from(u32::MAX) + 7, 3, "m", "p");
        l.record(UsageRecord::from_usage(&ctx(r, "s"), "chat", &big));
        l.record(UsageRecord::new(
            &ctx(r, "s"),
            "chat",
            "m",
            "p",
            CallOutcome::Failed {
                error_type: "rate_limited".into(),
            },
        ));
        l.record(UsageRecord::new(
            &ctx(r, "s"),
            "chat",
            "m",
            "p",
            CallOutcome::CacheHit { tokens: None },
        ));
        let recs = l.records();
        assert_eq!(
            recs[0].spend().unwrap().prompt_tokens,
            u64::from(u32::MAX) + 7
        );
        assert_eq!(
            recs[1].outcome,
            CallOutcome::Failed {
                error_type: "rate_limited".into()
            }
        );
        assert_eq!(recs[2].outcome, CallOutcome::CacheHit { tokens: None });
        assert_eq!(l.run(r).tokens.total_tokens, u64::from(u32::MAX) + 10);
        assert_eq!(l.run(r).cache_hits, 1);
    }

    #[test]
    fn snapshot_round_trips_through_json() {
        let l = UsageLedger::new();
        let r = Uuid::new_v4();
        l.record(UsageRecord::from_usage(
            &ctx(r, "s"),
            "chat",
            &TokenUsage::new(3, 4, "m", "p"),
        ));
        l.record(UsageRecord::new(
            &ctx(r, "s"),
            "chat",
            "m",
            "p",
            CallOutcome::Failed {
                error_type: "timeout".into(),
            },
        ));
        let json = l.to_json().unwrap();
        assert!(json.contains("\"outcome\": \"failed\""));
        let back: LedgerSnapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back.totals.failed_calls, 1);
        assert_eq!(back.totals.tokens.total_tokens, 7);
        let again = back.clone().into_ledger();
        assert_eq!(again.records(), back.records);
        // New records after a reload continue the sequence.
        let seq = again.record(UsageRecord::new(
            &ctx(r, "s"),
            "chat",
            "m",
            "p",
            CallOutcome::NoUsage,
        ));
        assert_eq!(seq, 2);
    }
}
