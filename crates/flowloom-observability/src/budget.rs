//! Token and cost budgets as a tower layer: [`BudgetLayer`] over a shared [`Budget`].
//!
//! Limits apply per run (keyed by the request's `CallContext.run_id`) and across everything
//! the budget sees (per engine, when one `Budget` is shared by all its providers). A call that
//! would pass a limit is refused before it is made with `LlmError::BudgetExceeded`, whose
//! message names the limit and the spend so far; the engine fails the step (and the run) with
//! that reason.
//!
//! ## The estimate rule
//!
//! Before a call, its spend is estimated as:
//! - input tokens: for each message, `ceil(characters / 4) + 4`, plus `ceil(characters / 4)`
//!   of the tool definitions' JSON; for embeddings, `ceil(characters / 4)` per text;
//! - output tokens: the request's `max_tokens` (the most the model may write); 0 for
//!   embeddings;
//! - cost: those tokens at the model's input and output prices (no cache discount).
//!
//! The token rule is flowloom-core's ([`flowloom_core::tokens`]), shared with the rate
//! limiter and the mock provider.
//!
//! The estimate is *reserved* while the call is in flight, so concurrent calls cannot pass a
//! limit together. When the call returns, the reservation is replaced by what the provider
//! reported. A call whose provider reported no usage is charged its estimate (unknown is not
//! zero); a cache hit and a failed call are charged nothing. If the reported spend passes a
//! limit (the input estimate was short), the call's answer is replaced by `BudgetExceeded`:
//! the tokens are counted, and the run stops there.
//!
//! A cost limit needs the model's price: a call of a model missing from the price table is
//! refused while a cost limit is set (its cost could not be checked).
//!
//! ```
//! use flowloom_core::{LlmError, LlmRequest, LlmResponse, TokenUsage};
//! use flowloom_observability::budget::{Budget, BudgetLayer, BudgetLimits};
//! use tower::{Layer, ServiceExt};
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let echo = tower::service_fn(|r: LlmRequest| async move {
//!     Ok::<_, LlmError>(LlmResponse::text("ok", r.model.clone(), "echo")
//!         .with_usage(TokenUsage::new(10, 10, r.model, "echo")))
//! });
//! let budget = Budget::new(BudgetLimits::new().total_tokens(100));
//! let svc = BudgetLayer::new(budget.clone()).layer(echo);
//! // Each call is estimated at 55 tokens (5 input + 50 max_tokens) and reports 20.
//! let req = LlmRequest::new("gpt-4o-mini", "hi").with_max_tokens(50);
//! for _ in 0..3 {
//!     svc.clone().oneshot(req.clone()).await.unwrap(); // 0, 20, 40 spent + 55 ≤ 100
//! }
//! let err = svc.oneshot(req).await.unwrap_err(); // 60 spent + 55 > 100: refused
//! assert!(matches!(err, LlmError::BudgetExceeded { .. }));
//! assert!(err.to_string().contains("60 tokens spent so far"), "{err}");
//! assert_eq!(budget.spent_total().tokens, 60);
//! # });
//! ```

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use flowloom_core::provider::BoxFuture;
use flowloom_core::{
    EmbeddingRequest, EmbeddingResponse, LlmError, LlmRequest, LlmResponse, LlmStream, StreamEvent,
    StreamRequest, TokenUsage,
};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tower::{Layer, Service};
use uuid::Uuid;

use crate::cost::{Money, PriceTable};
use crate::semconv::TARGET_USAGE;

/// Limits on tokens and cost; unset limits do not apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetLimits {
    /// Most tokens one run may spend.
    pub per_run_tokens: Option<u64>,
    /// Most one run may cost.
    pub per_run_cost: Option<Money>,
    /// Most tokens everything under this budget may spend.
    pub total_tokens: Option<u64>,
    /// Most everything under this budget may cost.
    pub total_cost: Option<Money>,
}

impl BudgetLimits {
    /// No limits.
    pub fn new() -> Self {
        Self::default()
    }
    /// Limits the tokens of each run.
    #[must_use]
    pub fn per_run_tokens(mut self, tokens: u64) -> Self {
        self.per_run_tokens = Some(tokens);
        self
    }
    /// Limits the cost of each run.
    #[must_use]
    pub fn per_run_cost(mut self, cost: Money) -> Self {
        self.per_run_cost = Some(cost);
        self
    }
    /// Limits the tokens of everything under the budget.
    #[must_use]
    pub fn total_tokens(mut self, tokens: u64) -> Self {
        self.total_tokens = Some(tokens);
        self
    }
    /// Limits the cost of everything under the budget.
    #[must_use]
    pub fn total_cost(mut self, cost: Money) -> Self {
        self.total_cost = Some(cost);
        self
    }
    fn has_cost_limit(&self) -> bool {
        self.per_run_cost.is_some() || self.total_cost.is_some()
    }
}

/// Spend so far: settled (reported) and reserved (estimates of calls in flight).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spend {
    /// Tokens spent by finished calls.
    pub tokens: u64,
    /// Cost of finished calls (priced models only).
    pub cost: Money,
    /// Tokens reserved by calls in flight.
    pub reserved_tokens: u64,
    /// Cost reserved by calls in flight.
    pub reserved_cost: Money,
    /// Finished calls charged.
    pub calls: u64,
}

impl Spend {
    fn committed_tokens(&self) -> u64 {
        self.tokens.saturating_add(self.reserved_tokens)
    }
    fn committed_cost(&self) -> Money {
        self.cost.saturating_add(self.reserved_cost)
    }
}

/// An estimate or an actual charge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Charge {
    input: u64,
    output: u64,
    cost: Option<Money>,
}

impl Charge {
    fn tokens(&self) -> u64 {
        self.input.saturating_add(self.output)
    }
}

#[derive(Debug, Default)]
struct State {
    total: Spend,
    runs: HashMap<Uuid, Spend>,
}

#[derive(Debug)]
struct Inner {
    limits: BudgetLimits,
    prices: PriceTable,
    state: Mutex<State>,
}

/// Shared budget state: the limits, the prices and the spend so far. `Clone` shares it.
#[derive(Debug, Clone)]
pub struct Budget {
    inner: Arc<Inner>,
}

pub use flowloom_core::estimate_text_tokens;

/// The estimated input tokens of a chat request (see the module's estimate rule): the shared
/// [`LlmRequest::estimated_prompt_tokens`].
pub fn estimate_prompt_tokens(req: &LlmRequest) -> u64 {
    req.estimated_prompt_tokens()
}

enum Scope {
    Run(Uuid),
    Total,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Run(id) => write!(f, "per-run limit (run {id})"),
            Scope::Total => f.write_str("total limit"),
        }
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Budget {
    /// A budget with `limits`, pricing with the default OpenAI table.
    pub fn new(limits: BudgetLimits) -> Self {
        Self::with_prices(limits, PriceTable::openai_default())
    }

    /// A budget with `limits`, pricing with `prices`.
    pub fn with_prices(limits: BudgetLimits, prices: PriceTable) -> Self {
        Self {
            inner: Arc::new(Inner {
                limits,
                prices,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// The limits.
    pub fn limits(&self) -> BudgetLimits {
        self.inner.limits
    }

    /// Spend across everything under the budget.
    pub fn spent_total(&self) -> Spend {
        lock(&self.inner.state).total
    }

    /// Spend of one run (zero when it made no call).
    pub fn spent_run(&self, run_id: Uuid) -> Spend {
        lock(&self.inner.state)
            .runs
            .get(&run_id)
            .copied()
            .unwrap_or_default()
    }

    /// Forgets a finished run's spend (its share of the total stays).
    pub fn forget_run(&self, run_id: Uuid) {
        lock(&self.inner.state).runs.remove(&run_id);
    }

    fn price(&self, model: &str, input: u64, output: u64) -> Option<Money> {
        self.inner
            .prices
            .price(model)
            .map(|p| p.cost(input, 0, output))
    }

    /// Checks `estimate` against every limit and reserves it, or says which limit it would
    /// pass.
    fn reserve(
        &self,
        run: Option<Uuid>,
        model: &str,
        estimate: Charge,
    ) -> Result<Reservation, LlmError> {
        let limits = &self.inner.limits;
        if limits.has_cost_limit() && estimate.cost.is_none() {
            return Err(LlmError::BudgetExceeded {
                message: format!(
                    "model `{model}` is not in the price table (as of {}), so the cost limit \
                     cannot be checked; add its prices to the table or remove the cost limit",
                    self.inner.prices.as_of
                ),
            });
        }
        let mut st = lock(&self.inner.state);
        let run_spend = run.map(|id| st.runs.get(&id).copied().unwrap_or_default());
        if let (Some(id), Some(spend)) = (run, run_spend) {
            check(
                &Scope::Run(id),
                &spend,
                limits.per_run_tokens,
                limits.per_run_cost,
                &estimate,
                true,
            )?;
        }
        check(
            &Scope::Total,
            &st.total,
            limits.total_tokens,
            limits.total_cost,
            &estimate,
            true,
        )?;
        let cost = estimate.cost.unwrap_or_default();
        let add = |s: &mut Spend| {
            s.reserved_tokens = s.reserved_tokens.saturating_add(estimate.tokens());
            s.reserved_cost = s.reserved_cost.saturating_add(cost);
        };
        add(&mut st.total);
        if let Some(id) = run {
            add(st.runs.entry(id).or_default());
        }
        Ok(Reservation {
            budget: self.clone(),
            run,
            model: model.to_owned(),
            estimate,
            settled: false,
        })
    }
}

/// Refuses when `spend` (+ the estimate, before a call) is past a limit.
fn check(
    scope: &Scope,
    spend: &Spend,
    token_limit: Option<u64>,
    cost_limit: Option<Money>,
    charge: &Charge,
    before: bool,
) -> Result<(), LlmError> {
    let (tokens_after, cost_after) = if before {
        (
            spend.committed_tokens().saturating_add(charge.tokens()),
            spend
                .committed_cost()
                .saturating_add(charge.cost.unwrap_or_default()),
        )
    } else {
        (spend.committed_tokens(), spend.committed_cost())
    };
    let in_flight = if spend.reserved_tokens > 0 {
        format!(
            " (plus {} tokens reserved by calls in flight)",
            spend.reserved_tokens
        )
    } else {
        String::new()
    };
    if let Some(limit) = token_limit
        && tokens_after > limit
    {
        let message = if before {
            format!(
                "the {scope} of {limit} tokens would be passed: {} tokens spent so far{in_flight}, \
                 and this call is estimated at {} tokens ({} input + {} max_tokens)",
                spend.tokens,
                charge.tokens(),
                charge.input,
                charge.output
            )
        } else {
            format!(
                "the {scope} of {limit} tokens was passed by this call: {} tokens spent so far{in_flight}",
                spend.tokens
            )
        };
        tracing::warn!(target: TARGET_USAGE, %message, "budget exceeded");
        return Err(LlmError::BudgetExceeded { message });
    }
    if let Some(limit) = cost_limit
        && cost_after > limit
    {
        let message = if before {
            format!(
                "the {scope} of {limit} would be passed: {} spent so far{in_flight}, and this \
                 call is estimated at {} ({} input tokens + {} max_tokens)",
                spend.cost,
                charge.cost.unwrap_or_default(),
                charge.input,
                charge.output
            )
        } else {
            format!(
                "the {scope} of {limit} was passed by this call: {} spent so far{in_flight}",
                spend.cost
            )
        };
        tracing::warn!(target: TARGET_USAGE, %message, "budget exceeded");
        return Err(LlmError::BudgetExceeded { message });
    }
    Ok(())
}

/// An estimate held while a call is in flight; settling replaces it with the actual charge.
/// Dropped unsettled (a cancelled call or stream), it is charged as estimated.
struct Reservation {
    budget: Budget,
    run: Option<Uuid>,
    model: String,
    estimate: Charge,
    settled: bool,
}

/// What a finished call is charged.
enum Actual<'a> {
    Usage(&'a TokenUsage, &'a str),
    Estimate,
    Nothing,
}

impl Reservation {
    fn settle(&mut self, actual: Actual<'_>) -> Result<(), LlmError> {
        if self.settled {
            return Ok(());
        }
        self.settled = true;
        let b = &self.budget;
        let charge = match actual {
            Actual::Usage(u, model) => {
                let model = if model.is_empty() { &self.model } else { model };
                Charge {
                    input: u.prompt_tokens,
                    output: u.completion_tokens,
                    cost: b.inner.prices.price(model).map(|p| {
                        p.cost(
                            u.prompt_tokens,
                            u.cached_prompt_tokens.unwrap_or(0),
                            u.completion_tokens,
                        )
                    }),
                }
            }
            Actual::Estimate => self.estimate,
            Actual::Nothing => Charge {
                cost: Some(Money::ZERO),
                ..Charge::default()
            },
        };
        let est_cost = self.estimate.cost.unwrap_or_default();
        let limits = &b.inner.limits;
        let mut st = lock(&b.inner.state);
        let apply = |s: &mut Spend| {
            s.reserved_tokens = s.reserved_tokens.saturating_sub(self.estimate.tokens());
            s.reserved_cost = s.reserved_cost.saturating_sub(est_cost);
            s.tokens = s.tokens.saturating_add(charge.tokens());
            s.cost = s.cost.saturating_add(charge.cost.unwrap_or_default());
            s.calls += 1;
        };
        apply(&mut st.total);
        if let Some(id) = self.run {
            let spend = st.runs.entry(id).or_default();
            apply(spend);
            let spend = *spend;
            check(
                &Scope::Run(id),
                &spend,
                limits.per_run_tokens,
                limits.per_run_cost,
                &charge,
                false,
            )?;
        }
        check(
            &Scope::Total,
            &st.total,
            limits.total_tokens,
            limits.total_cost,
            &charge,
            false,
        )
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // An unsettled reservation is a call that never reported back: charge the estimate.
        let _ = self.settle(Actual::Estimate);
    }
}

/// Refuses calls that would pass a [`Budget`]'s limits.
#[derive(Debug, Clone)]
pub struct BudgetLayer {
    budget: Budget,
}

impl BudgetLayer {
    /// A layer enforcing `budget`.
    pub fn new(budget: Budget) -> Self {
        Self { budget }
    }
}

impl<S> Layer<S> for BudgetLayer {
    type Service = BudgetService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BudgetService {
            inner,
            budget: self.budget.clone(),
        }
    }
}

/// The service of [`BudgetLayer`].
#[derive(Debug, Clone)]
pub struct BudgetService<S> {
    inner: S,
    budget: Budget,
}

fn settle_response(
    r: &mut Reservation,
    res: &Result<LlmResponse, LlmError>,
) -> Result<(), LlmError> {
    match res {
        Ok(res) if res.cached => r.settle(Actual::Nothing),
        Ok(res) => match &res.usage {
            Some(u) => r.settle(Actual::Usage(u, &res.model)),
            None => r.settle(Actual::Estimate),
        },
        Err(_) => r.settle(Actual::Nothing),
    }
}

impl<S> BudgetService<S> {
    /// Reserves a chat call's estimate (prompt estimate in, `max_tokens` out), streamed or not.
    fn reserve_chat(&self, req: &LlmRequest) -> Result<Reservation, LlmError> {
        let input = estimate_prompt_tokens(req);
        let output = u64::from(req.max_tokens);
        let estimate = Charge {
            input,
            output,
            cost: self.budget.price(&req.model, input, output),
        };
        self.budget
            .reserve(req.context.run_id, &req.model, estimate)
    }
}

impl<S> Service<LlmRequest> for BudgetService<S>
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
        let mut reservation = match self.reserve_chat(&req) {
            Ok(r) => r,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            settle_response(&mut reservation, &res)?;
            res
        })
    }
}

impl<S> Service<EmbeddingRequest> for BudgetService<S>
where
    S: Service<EmbeddingRequest, Response = EmbeddingResponse, Error = LlmError>,
    S::Future: Send + 'static,
{
    type Response = EmbeddingResponse;
    type Error = LlmError;
    type Future = BoxFuture<Result<EmbeddingResponse, LlmError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: EmbeddingRequest) -> Self::Future {
        let input: u64 = req.input.iter().map(|t| estimate_text_tokens(t)).sum();
        let estimate = Charge {
            input,
            output: 0,
            cost: self.budget.price(&req.model, input, 0),
        };
        let mut reservation = match self
            .budget
            .reserve(req.context.run_id, &req.model, estimate)
        {
            Ok(r) => r,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            match &res {
                Ok(r) => match &r.usage {
                    Some(u) => reservation.settle(Actual::Usage(u, &r.model))?,
                    None => reservation.settle(Actual::Estimate)?,
                },
                Err(_) => reservation.settle(Actual::Nothing)?,
            }
            res
        })
    }
}

impl<S> Service<StreamRequest> for BudgetService<S>
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
        let mut reservation = match self.reserve_chat(&req.0) {
            Ok(r) => r,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let fut = self.inner.call(req);
        Box::pin(async move {
            match fut.await {
                Ok(stream) => {
                    let s: LlmStream = Box::pin(BudgetStream {
                        inner: stream,
                        reservation,
                        finished: false,
                    });
                    Ok(s)
                }
                Err(e) => {
                    reservation.settle(Actual::Nothing)?;
                    Err(e)
                }
            }
        })
    }
}

/// Settles its reservation at `Done`; a limit passed then turns `Done` into the error.
struct BudgetStream {
    inner: LlmStream,
    reservation: Reservation,
    finished: bool,
}

impl Stream for BudgetStream {
    type Item = Result<StreamEvent, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        let item = this.inner.as_mut().poll_next(cx);
        match item {
            Poll::Ready(Some(Ok(StreamEvent::Done(res)))) => {
                let res = Ok(res);
                if let Err(e) = settle_response(&mut this.reservation, &res) {
                    this.finished = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(res.map(StreamEvent::Done)))
            }
            Poll::Ready(Some(Err(e))) => {
                let _ = this.reservation.settle(Actual::Nothing);
                Poll::Ready(Some(Err(e)))
            }
            other => other,
        }
    }
}
