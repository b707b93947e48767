use std::sync::{Arc, Mutex};

use tower::Layer;

use super::{Retry, RetryBudget, RetryPolicy};

/// Wraps a service with [`Retry`]. See the [module docs](super) for the behaviour.
///
/// Every service built by one layer shares its [`RetryBudget`] and its random generator.
#[derive(Debug, Clone)]
pub struct RetryLayer {
    pub(super) shared: Arc<Shared>,
}

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) policy: RetryPolicy,
    pub(super) budget: Option<Arc<RetryBudget>>,
    pub(super) rng: Mutex<fastrand::Rng>,
}

impl RetryLayer {
    /// A layer retrying as `policy` says, with a budget of its own if the policy has one.
    pub fn new(policy: RetryPolicy) -> Self {
        let budget = policy.new_budget().map(Arc::new);
        Self::build(policy, budget)
    }

    /// The same layer, drawing on a budget shared with other layers (replaces the policy's).
    #[must_use]
    pub fn with_budget(self, budget: Arc<RetryBudget>) -> Self {
        Self::build(self.shared.policy.clone(), Some(budget))
    }

    fn build(policy: RetryPolicy, budget: Option<Arc<RetryBudget>>) -> Self {
        let rng = Mutex::new(policy.rng());
        Self {
            shared: Arc::new(Shared {
                policy,
                budget,
                rng,
            }),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.shared.policy
    }

    /// The budget, if any.
    pub fn budget(&self) -> Option<&Arc<RetryBudget>> {
        self.shared.budget.as_ref()
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;
    fn layer(&self, inner: S) -> Retry<S> {
        Retry {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}
