//! Cost budgets for tests (FR-033): add up what the model calls made through a guard cost, and
//! fail the test — with a report of what was spent where — when a per-test or per-suite budget
//! is exceeded.
//!
//! A [`CostBudget`] is a shared handle. Its [`CostBudget::layer`] goes around a provider; each
//! response's reported usage is priced ([`PriceLookup`]) and charged to the budget and to every
//! budget it was put [`within`](CostBudget::within) (e.g. the process-wide
//! [`CostBudget::suite`]). Once a budget is exceeded, further calls through the layer are
//! refused with [`LlmError::BudgetExceeded`] carrying the report, and [`CostBudget::check`]
//! fails with it. Usage a provider did not report, and models the price table does not know, are
//! listed apart and never counted as $0: by default they also fail [`CostBudget::check`]
//! ([`CostBudget::allow_unpriced`] relaxes that, e.g. for mock providers).
//!
//! Put the budget layer *inside* a cassette layer (between it and the provider): replayed calls
//! cost nothing and are then not charged.
//!
//! ```
//! use flowloom_core::{TokenUsage, CallContext};
//! use flowloom_testkit::budget::{CostBudget, PriceTable};
//!
//! let prices = PriceTable::from_yaml(
//!     "as_of: 2025-06-01\nmodels:\n  gpt-4o-mini: { input: 0.15, output: 0.60 }\n",
//! ).unwrap();
//! let budget = CostBudget::new("summarize test", 0.001).with_prices(prices);
//! // 2,000 input and 1,000 output tokens: $0.0003 + $0.0006 = $0.0009, under $0.001.
//! budget.charge(&CallContext::default(), "gpt-4o-mini",
//!     Some(&TokenUsage::new(2_000, 1_000, "gpt-4o-mini", "openai")));
//! let report = budget.check().unwrap();
//! assert!((report.spent_usd - 0.0009).abs() < 1e-12);
//! // One more such call goes over, and the check fails with the report.
//! budget.charge(&CallContext::default(), "gpt-4o-mini",
//!     Some(&TokenUsage::new(2_000, 1_000, "gpt-4o-mini", "openai")));
//! let err = budget.check().unwrap_err();
//! assert!(err.to_string().contains("EXCEEDED"));
//! ```

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};

use flowloom_core::provider::BoxFuture;
use flowloom_core::{
    CallContext, LlmError, LlmRequest, LlmResponse, LlmStream, StreamEvent, StreamRequest,
    TokenUsage,
};
use futures_util::StreamExt;
use tower::{Layer, Service};

pub use flowloom_observability::cost::PriceTable;

/// The default per-test limit, in USD (the project's plan: at most $0.10 per test).
pub const DEFAULT_TEST_BUDGET_USD: f64 = 0.10;
/// The default per-suite limit, in USD (at most $2.00 per full suite).
pub const DEFAULT_SUITE_BUDGET_USD: f64 = 2.00;
/// Overrides the per-test default limit.
pub const TEST_BUDGET_ENV: &str = "FLOWLOOM_TEST_BUDGET_USD";
/// Overrides the per-suite default limit.
pub const SUITE_BUDGET_ENV: &str = "FLOWLOOM_SUITE_BUDGET_USD";

/// Prices a call. Implement it to plug in another price table.
pub trait PriceLookup: Send + Sync + 'static {
    /// The cost in USD of one call of `model`, or `None` when the model's price is unknown.
    /// `cached_prompt_tokens` is part of `prompt_tokens`.
    fn cost_usd(
        &self,
        model: &str,
        prompt_tokens: u64,
        cached_prompt_tokens: u64,
        completion_tokens: u64,
    ) -> Option<f64>;
}

/// Prices with flowloom-observability's [`PriceTable`]: exact names, aliases, dated snapshots
/// (`gpt-4o-mini-2024-07-18` as `gpt-4o-mini`) and `provider/` prefixes.
impl PriceLookup for PriceTable {
    fn cost_usd(&self, model: &str, prompt: u64, cached: u64, completion: u64) -> Option<f64> {
        self.price(model)
            .map(|p| p.cost(prompt, cached, completion).as_usd_f64())
    }
}

/// One line of a budget report: the calls of one step with one model.
#[derive(Debug, Clone, PartialEq)]
pub struct SpendLine {
    /// The step (`-` when the call named none).
    pub step: String,
    /// The model.
    pub model: String,
    /// Calls.
    pub calls: u64,
    /// Input tokens.
    pub prompt_tokens: u64,
    /// Output tokens.
    pub completion_tokens: u64,
    /// Cost in USD; `None` when the model is not priced (unknown, not zero).
    pub cost_usd: Option<f64>,
}

/// What a budget spent, where.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetReport {
    /// The budget's name.
    pub name: String,
    /// Its limit in USD.
    pub limit_usd: f64,
    /// Priced spend in USD.
    pub spent_usd: f64,
    /// Spend by step and model, in first-seen order.
    pub lines: Vec<SpendLine>,
    /// Calls whose provider reported no usage (their cost is unknown).
    pub calls_without_usage: u64,
    /// Whether unpriced usage is accepted.
    pub allow_unpriced: bool,
}

impl BudgetReport {
    /// True when the priced spend is over the limit.
    pub fn is_exceeded(&self) -> bool {
        self.spent_usd > self.limit_usd
    }

    /// Calls whose cost is unknown: unpriced models and missing usage.
    pub fn unknown_cost_calls(&self) -> u64 {
        self.lines
            .iter()
            .filter(|l| l.cost_usd.is_none())
            .map(|l| l.calls)
            .sum::<u64>()
            + self.calls_without_usage
    }

    /// True when the report fails the budget: exceeded, or (unless allowed) with calls of
    /// unknown cost.
    pub fn fails(&self) -> bool {
        self.is_exceeded() || (!self.allow_unpriced && self.unknown_cost_calls() > 0)
    }
}

impl fmt::Display for BudgetReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = if self.limit_usd > 0.0 {
            self.spent_usd / self.limit_usd * 100.0
        } else {
            f64::INFINITY
        };
        let verdict = if self.is_exceeded() {
            "EXCEEDED"
        } else if !self.allow_unpriced && self.unknown_cost_calls() > 0 {
            "UNKNOWN COST"
        } else {
            "within budget"
        };
        writeln!(
            f,
            "cost budget `{}`: spent ${:.6} of ${:.6} ({pct:.1}%) — {verdict}",
            self.name, self.spent_usd, self.limit_usd
        )?;
        if self.lines.is_empty() && self.calls_without_usage == 0 {
            return writeln!(f, "  no calls");
        }
        let sw = self
            .lines
            .iter()
            .map(|l| l.step.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let mw = self
            .lines
            .iter()
            .map(|l| l.model.len())
            .max()
            .unwrap_or(5)
            .max(5);
        writeln!(
            f,
            "  {:<sw$}  {:<mw$}  {:>5}  {:>9}  {:>9}  {:>12}",
            "step", "model", "calls", "input", "output", "cost"
        )?;
        for l in &self.lines {
            let cost = match l.cost_usd {
                Some(c) => format!("${c:.6}"),
                None => "unpriced".to_owned(),
            };
            writeln!(
                f,
                "  {:<sw$}  {:<mw$}  {:>5}  {:>9}  {:>9}  {:>12}",
                l.step, l.model, l.calls, l.prompt_tokens, l.completion_tokens, cost
            )?;
        }
        let unpriced: Vec<&str> = self
            .lines
            .iter()
            .filter(|l| l.cost_usd.is_none())
            .map(|l| l.model.as_str())
            .collect();
        if !unpriced.is_empty() {
            writeln!(
                f,
                "  unpriced models (cost unknown, not zero): {}; add them to the price table{}",
                unpriced.join(", "),
                if self.allow_unpriced {
                    ""
                } else {
                    " or call `allow_unpriced()`"
                }
            )?;
        }
        if self.calls_without_usage > 0 {
            writeln!(
                f,
                "  calls without reported usage (cost unknown, not zero): {}",
                self.calls_without_usage
            )?;
        }
        Ok(())
    }
}

/// A budget was exceeded (or, unless allowed, spent an unknown amount). Its `Debug` is the
/// report, so `budget.check().unwrap()` fails a test with a readable message.
#[derive(Clone, PartialEq, thiserror::Error)]
#[error("{report}")]
pub struct BudgetExceeded {
    /// The report of the budget that failed.
    pub report: BudgetReport,
}

impl fmt::Debug for BudgetExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\n{}", self.report)
    }
}

#[derive(Debug, Default)]
struct Ledger {
    lines: Vec<SpendLine>,
    spent_usd: f64,
    calls_without_usage: u64,
}

struct Inner {
    name: String,
    limit_usd: f64,
    prices: Arc<dyn PriceLookup>,
    parents: Vec<CostBudget>,
    allow_unpriced: bool,
    ledger: Mutex<Ledger>,
}

/// A cost budget; see the [module docs](self). Cheap to clone: clones share the spend.
#[derive(Clone)]
pub struct CostBudget {
    inner: Arc<Inner>,
}

impl fmt::Debug for CostBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CostBudget")
            .field("name", &self.inner.name)
            .field("limit_usd", &self.inner.limit_usd)
            .field("spent_usd", &self.spent_usd())
            .finish_non_exhaustive()
    }
}

fn env_limit(var: &str, default: f64) -> f64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .unwrap_or(default)
}

impl CostBudget {
    /// A budget named `name` of `limit_usd`, priced with [`PriceTable::openai_default`]. A limit
    /// that is negative or not a number is read as 0 (nothing may be spent).
    pub fn new(name: impl Into<String>, limit_usd: f64) -> Self {
        let limit_usd = if limit_usd.is_finite() && limit_usd >= 0.0 {
            limit_usd
        } else {
            0.0
        };
        Self {
            inner: Arc::new(Inner {
                name: name.into(),
                limit_usd,
                prices: Arc::new(PriceTable::openai_default()),
                parents: Vec::new(),
                allow_unpriced: false,
                ledger: Mutex::new(Ledger::default()),
            }),
        }
    }

    /// A per-test budget: `FLOWLOOM_TEST_BUDGET_USD` or $0.10, charged to [`CostBudget::suite`]
    /// as well.
    pub fn for_test(name: impl Into<String>) -> Self {
        Self::new(name, env_limit(TEST_BUDGET_ENV, DEFAULT_TEST_BUDGET_USD)).within(&Self::suite())
    }

    /// The process-wide suite budget: `FLOWLOOM_SUITE_BUDGET_USD` or $2.00. Every test binary
    /// is one process, so this bounds the spend of one test binary's run.
    pub fn suite() -> Self {
        static SUITE: OnceLock<CostBudget> = OnceLock::new();
        SUITE
            .get_or_init(|| {
                CostBudget::new(
                    "suite",
                    env_limit(SUITE_BUDGET_ENV, DEFAULT_SUITE_BUDGET_USD),
                )
            })
            .clone()
    }

    fn rebuild(&self, f: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Inner {
            name: self.inner.name.clone(),
            limit_usd: self.inner.limit_usd,
            prices: Arc::clone(&self.inner.prices),
            parents: self.inner.parents.clone(),
            allow_unpriced: self.inner.allow_unpriced,
            ledger: Mutex::new(Ledger::default()),
        };
        f(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The same budget with another price table (call before charging anything: the spend so
    /// far is not carried over).
    #[must_use]
    pub fn with_prices(self, prices: impl PriceLookup) -> Self {
        self.rebuild(|i| i.prices = Arc::new(prices))
    }

    /// Also charges every call to `parent` (e.g. the suite budget); a call is refused when any
    /// of them is exceeded.
    #[must_use]
    pub fn within(self, parent: &CostBudget) -> Self {
        let parent = parent.clone();
        self.rebuild(|i| i.parents.push(parent))
    }

    /// Accepts calls of unknown cost (unpriced models, missing usage): they are still listed
    /// in the report, but do not fail [`CostBudget::check`].
    #[must_use]
    pub fn allow_unpriced(self) -> Self {
        self.rebuild(|i| i.allow_unpriced = true)
    }

    /// The budget's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The limit in USD.
    pub fn limit_usd(&self) -> f64 {
        self.inner.limit_usd
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.inner
            .ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The priced spend so far, in USD.
    pub fn spent_usd(&self) -> f64 {
        self.ledger().spent_usd
    }

    /// Charges one call: `usage` as the provider reported it (`None` when it did not), the step
    /// from `context`, and `model` when the usage names none. Charged to the parents too.
    pub fn charge(&self, context: &CallContext, model: &str, usage: Option<&TokenUsage>) {
        let step = context.step.as_deref().unwrap_or("-").to_owned();
        {
            let mut l = self.ledger();
            match usage {
                None => l.calls_without_usage += 1,
                Some(u) => {
                    let model = if u.model.is_empty() { model } else { &u.model };
                    let cost = self.inner.prices.cost_usd(
                        model,
                        u.prompt_tokens,
                        u.cached_prompt_tokens.unwrap_or(0),
                        u.completion_tokens,
                    );
                    if let Some(c) = cost {
                        l.spent_usd += c;
                    }
                    match l
                        .lines
                        .iter_mut()
                        .find(|x| x.step == step && x.model == model)
                    {
                        Some(line) => {
                            line.calls += 1;
                            line.prompt_tokens += u.prompt_tokens;
                            line.completion_tokens += u.completion_tokens;
                            line.cost_usd = match (line.cost_usd, cost) {
                                (Some(a), Some(b)) => Some(a + b),
                                _ => None,
                            };
                        }
                        None => l.lines.push(SpendLine {
                            step: step.clone(),
                            model: model.to_owned(),
                            calls: 1,
                            prompt_tokens: u.prompt_tokens,
                            completion_tokens: u.completion_tokens,
                            cost_usd: cost,
                        }),
                    }
                }
            }
        }
        for p in &self.inner.parents {
            p.charge(context, model, usage);
        }
    }

    /// What was spent where, so far.
    pub fn report(&self) -> BudgetReport {
        let l = self.ledger();
        BudgetReport {
            name: self.inner.name.clone(),
            limit_usd: self.inner.limit_usd,
            spent_usd: l.spent_usd,
            lines: l.lines.clone(),
            calls_without_usage: l.calls_without_usage,
            allow_unpriced: self.inner.allow_unpriced,
        }
    }

    /// The report when the budget holds; [`BudgetExceeded`] with the report when it was exceeded
    /// (this budget or a parent) or, unless allowed, when some calls' cost is unknown.
    pub fn check(&self) -> Result<BudgetReport, BudgetExceeded> {
        let report = self.report();
        if report.fails() {
            return Err(BudgetExceeded { report });
        }
        for p in &self.inner.parents {
            p.check()?;
        }
        Ok(report)
    }

    /// The first exceeded budget's report (this one or a parent), if any.
    fn exceeded(&self) -> Option<BudgetReport> {
        let r = self.report();
        if r.is_exceeded() {
            return Some(r);
        }
        self.inner.parents.iter().find_map(CostBudget::exceeded)
    }

    /// The layer that charges every call made through it to this budget, and refuses calls
    /// once it is exceeded.
    pub fn layer(&self) -> CostBudgetLayer {
        CostBudgetLayer {
            budget: self.clone(),
        }
    }
}

/// Charges calls to a [`CostBudget`]; see [`CostBudget::layer`].
#[derive(Debug, Clone)]
pub struct CostBudgetLayer {
    budget: CostBudget,
}

impl<S> Layer<S> for CostBudgetLayer {
    type Service = CostBudgetService<S>;
    fn layer(&self, inner: S) -> CostBudgetService<S> {
        CostBudgetService {
            inner,
            budget: self.budget.clone(),
        }
    }
}

/// The service [`CostBudgetLayer`] makes, for chat and streaming calls.
#[derive(Debug, Clone)]
pub struct CostBudgetService<S> {
    inner: S,
    budget: CostBudget,
}

fn refusal(report: &BudgetReport) -> LlmError {
    LlmError::BudgetExceeded {
        message: format!("the call was not made.\n{report}"),
    }
}

impl<S> Service<LlmRequest> for CostBudgetService<S>
where
    S: Service<LlmRequest, Response = LlmResponse, Error = LlmError>,
    S::Future: Send + 'static,
{
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = BoxFuture<Result<LlmResponse, LlmError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: LlmRequest) -> Self::Future {
        if let Some(report) = self.budget.exceeded() {
            return Box::pin(std::future::ready(Err(refusal(&report))));
        }
        let budget = self.budget.clone();
        let context = req.context.clone();
        let model = req.model.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await?;
            if !res.cached {
                budget.charge(&context, &model, res.usage.as_ref());
            }
            Ok(res)
        })
    }
}

impl<S> Service<StreamRequest> for CostBudgetService<S>
where
    S: Service<StreamRequest, Response = LlmStream, Error = LlmError>,
    S::Future: Send + 'static,
{
    type Response = LlmStream;
    type Error = LlmError;
    type Future = BoxFuture<Result<LlmStream, LlmError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: StreamRequest) -> Self::Future {
        if let Some(report) = self.budget.exceeded() {
            return Box::pin(std::future::ready(Err(refusal(&report))));
        }
        let budget = self.budget.clone();
        let context = req.0.context.clone();
        let model = req.0.model.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let stream = fut.await?;
            let charged = stream.inspect(move |item| {
                if let Ok(StreamEvent::Done(r)) = item
                    && !r.cached
                {
                    budget.charge(&context, &model, r.usage.as_ref());
                }
            });
            Ok(Box::pin(charged) as LlmStream)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowloom_core::{AsyncProvider, provider};
    use tower::ServiceExt;

    /// Answers with usage of `prompt_len * 100` input and 50 output tokens, for `model`;
    /// prompts `nousage` report no usage.
    struct Priced;
    impl AsyncProvider for Priced {
        fn name(&self) -> &str {
            "priced"
        }
        async fn complete(&self, r: LlmRequest) -> Result<LlmResponse, LlmError> {
            let p = r.prompt().unwrap_or_default().to_owned();
            let res = LlmResponse::text("ok", r.model.clone(), "priced");
            if p == "nousage" {
                return Ok(res);
            }
            Ok(res.with_usage(TokenUsage::new(
                p.len() as u64 * 100,
                50,
                r.model.clone(),
                "priced",
            )))
        }
    }

    fn call(step: &str, model: &str, prompt: &str) -> LlmRequest {
        LlmRequest::new(model, prompt).with_context(CallContext {
            step: Some(step.into()),
            ..Default::default()
        })
    }

    fn prices() -> PriceTable {
        // $1 per million input, $2 per million output: easy sums.
        PriceTable::from_yaml("as_of: 2025-01-01\nmodels:\n  m-small: { input: 1, output: 2 }\n")
            .unwrap()
    }

    #[tokio::test]
    async fn passes_under_the_budget_with_a_report_of_each_step_and_model() {
        let budget = CostBudget::new("under", 0.01).with_prices(prices());
        let svc = budget.layer().layer(provider::from_async(Priced));
        // 1000 in + 50 out = $0.001 + $0.0001 each
        svc.clone()
            .oneshot(call("draft", "m-small", "0123456789"))
            .await
            .unwrap();
        svc.clone()
            .oneshot(call("draft", "m-small", "0123456789"))
            .await
            .unwrap();
        svc.clone()
            .oneshot(call("refine", "m-small", "01234"))
            .await
            .unwrap();
        let report = budget.check().unwrap();
        assert!((report.spent_usd - 0.0028).abs() < 1e-12, "{report}");
        assert_eq!(report.lines.len(), 2);
        assert_eq!(
            report.lines[0],
            SpendLine {
                step: "draft".into(),
                model: "m-small".into(),
                calls: 2,
                prompt_tokens: 2000,
                completion_tokens: 100,
                cost_usd: Some(0.0022),
            }
        );
        let text = report.to_string();
        assert!(
            text.contains(
                "cost budget `under`: spent $0.002800 of $0.010000 (28.0%) — within budget"
            ),
            "{text}"
        );
        assert!(text.contains("draft"), "{text}");
        assert!(text.contains("refine"), "{text}");
    }

    #[tokio::test]
    async fn fails_when_exceeded_reports_where_and_refuses_further_calls() {
        let budget = CostBudget::new("over", 0.002).with_prices(prices());
        let svc = budget.layer().layer(provider::from_async(Priced));
        svc.clone()
            .oneshot(call("draft", "m-small", "0123456789"))
            .await
            .unwrap(); // $0.0011
        assert!(budget.check().is_ok());
        svc.clone()
            .oneshot(call("refine", "m-small", "0123456789"))
            .await
            .unwrap(); // $0.0022
        let err = budget.check().unwrap_err();
        assert!(err.report.is_exceeded());
        let text = err.to_string();
        assert!(
            text.contains("spent $0.002200 of $0.002000 (110.0%) — EXCEEDED"),
            "{text}"
        );
        let draft = text
            .lines()
            .find(|l| l.trim_start().starts_with("draft"))
            .unwrap();
        assert!(
            draft.contains("m-small") && draft.contains("$0.001100"),
            "{draft}"
        );
        let refine = text
            .lines()
            .find(|l| l.trim_start().starts_with("refine"))
            .unwrap();
        assert!(refine.contains("1000") && refine.contains("50"), "{refine}");
        // Debug (what `unwrap` prints) is the report too.
        assert!(format!("{err:?}").contains("EXCEEDED"));

        let refused = svc
            .clone()
            .oneshot(call("third", "m-small", "x"))
            .await
            .unwrap_err();
        assert!(matches!(refused, LlmError::BudgetExceeded { .. }));
        assert!(
            refused.to_string().contains("the call was not made"),
            "{refused}"
        );
        assert_eq!(
            budget.report().lines.len(),
            2,
            "a refused call is not charged"
        );
    }

    #[tokio::test]
    async fn unknown_costs_are_listed_apart_and_fail_unless_allowed() {
        let budget = CostBudget::new("unknown", 1.0).with_prices(prices());
        let svc = budget.layer().layer(provider::from_async(Priced));
        svc.clone()
            .oneshot(call("a", "mystery-model", "xx"))
            .await
            .unwrap();
        svc.clone()
            .oneshot(call("b", "m-small", "nousage"))
            .await
            .unwrap();
        let report = budget.report();
        assert_eq!(report.spent_usd, 0.0);
        assert_eq!(report.unknown_cost_calls(), 2);
        let err = budget.check().unwrap_err().to_string();
        assert!(err.contains("UNKNOWN COST"), "{err}");
        assert!(
            err.contains("unpriced models (cost unknown, not zero): mystery-model"),
            "{err}"
        );
        assert!(
            err.contains("calls without reported usage (cost unknown, not zero): 1"),
            "{err}"
        );

        let lenient = CostBudget::new("lenient", 1.0)
            .with_prices(prices())
            .allow_unpriced();
        let svc = lenient.layer().layer(provider::from_async(Priced));
        svc.oneshot(call("a", "mystery-model", "xx")).await.unwrap();
        assert!(lenient.check().is_ok());
    }

    #[tokio::test]
    async fn a_test_budget_charges_its_suite_and_the_suite_can_fail_it() {
        let suite = CostBudget::new("suite", 0.0015).with_prices(prices());
        let t1 = CostBudget::new("t1", 0.01)
            .with_prices(prices())
            .within(&suite);
        let t2 = CostBudget::new("t2", 0.01)
            .with_prices(prices())
            .within(&suite);
        t1.layer()
            .layer(provider::from_async(Priced))
            .oneshot(call("s", "m-small", "0123456789"))
            .await
            .unwrap();
        assert!(t1.check().is_ok());
        t2.layer()
            .layer(provider::from_async(Priced))
            .oneshot(call("s", "m-small", "0123456789"))
            .await
            .unwrap();
        assert!(t2.report().spent_usd < t2.limit_usd());
        let err = t2.check().unwrap_err();
        assert_eq!(err.report.name, "suite");
        assert!((suite.spent_usd() - 0.0022).abs() < 1e-12);
        let refused = t1
            .layer()
            .layer(provider::from_async(Priced))
            .oneshot(call("s", "m-small", "x"))
            .await
            .unwrap_err();
        assert!(
            refused.to_string().contains("cost budget `suite`"),
            "{refused}"
        );
    }

    #[test]
    fn default_prices_match_snapshots_and_bad_limits_are_zero() {
        let p = PriceTable::openai_default();
        let full = p.cost_usd("gpt-4o-mini", 1_000_000, 0, 1_000_000).unwrap();
        let snap = p
            .cost_usd("gpt-4o-mini-2024-07-18", 1_000_000, 0, 1_000_000)
            .unwrap();
        assert_eq!(full, snap);
        let cached = p.cost_usd("gpt-4o-mini", 1_000_000, 1_000_000, 0).unwrap();
        assert!(cached < p.cost_usd("gpt-4o-mini", 1_000_000, 0, 0).unwrap());
        assert!(p.cost_usd("my-local-llama", 10, 0, 10).is_none());
        assert_eq!(CostBudget::new("x", f64::NAN).limit_usd(), 0.0);
        assert_eq!(CostBudget::new("x", -1.0).limit_usd(), 0.0);
    }
}
