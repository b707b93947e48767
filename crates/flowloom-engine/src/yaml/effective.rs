//! Inheritance: `execution` → step → consensus execution (the spec's "Effective
//! configuration").
//!
//! A value set at a more specific level wins; an unset one is inherited. With a `providers`
//! failover chain, a step that sets no `provider` uses the chain; a step `provider` replaces
//! the chain for that step. A step's `temperature`, `max_tokens` and `timeout` override the
//! chain entries' own values (the step is the more specific level).

use std::time::Duration;

use serde::Serialize;

use super::model::{ConsensusExecution, ExecutionContext, ProviderFallback, Step};

/// The settings a model call of a step (or of one consensus execution) runs with.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct EffectiveConfig {
    /// Provider name (`None` with a failover chain: see `chain`).
    pub provider: Option<String>,
    /// Model name.
    pub model: Option<String>,
    /// Temperature.
    pub temperature: Option<f64>,
    /// Completion-token limit.
    pub max_tokens: Option<u32>,
    /// MCP servers.
    pub servers: Vec<String>,
    /// Skills.
    pub skills: Vec<String>,
    /// Call timeout.
    pub timeout: Option<Duration>,
    /// The failover chain, when the call goes through one (each entry already merged).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<ProviderFallback>,
}

impl EffectiveConfig {
    /// The workflow-level configuration.
    pub fn of_execution(e: &ExecutionContext) -> Self {
        Self {
            provider: e.provider.clone(),
            model: e.model.clone(),
            temperature: e.temperature,
            max_tokens: e.max_tokens,
            servers: e.servers.clone().unwrap_or_default(),
            skills: e.skills.clone().unwrap_or_default(),
            timeout: e.timeout.map(|d| d.0),
            chain: e.providers.clone().unwrap_or_default(),
        }
    }

    /// A step's configuration: the step's values over the execution's.
    pub fn of_step(e: &ExecutionContext, s: &Step) -> Self {
        let mut c = Self::of_execution(e);
        if let Some(p) = &s.provider {
            c.provider = Some(p.clone());
            c.chain.clear();
        }
        if let Some(m) = &s.model {
            c.model = Some(m.clone());
        }
        if let Some(t) = s.temperature {
            c.temperature = Some(t);
        }
        if let Some(m) = s.max_tokens {
            c.max_tokens = Some(m);
        }
        if let Some(v) = &s.servers {
            c.servers = v.clone();
        }
        if let Some(v) = &s.skills {
            c.skills = v.clone();
        }
        if let Some(t) = s.timeout {
            c.timeout = Some(t.0);
        }
        c.merge_chain(s);
        c
    }

    fn merge_chain(&mut self, s: &Step) {
        for f in &mut self.chain {
            if s.temperature.is_some() || f.temperature.is_none() {
                f.temperature = self.temperature;
            }
            if s.max_tokens.is_some() || f.max_tokens.is_none() {
                f.max_tokens = self.max_tokens;
            }
            if s.timeout.is_some() || f.timeout.is_none() {
                f.timeout = self.timeout.map(super::duration::DurationStr);
            }
        }
    }

    /// One consensus execution's configuration: its values over the step's.
    pub fn of_consensus(e: &ExecutionContext, s: &Step, x: &ConsensusExecution) -> Self {
        let mut c = Self::of_step(e, s);
        c.provider = Some(x.provider.clone());
        c.model = Some(x.model.clone());
        c.chain.clear();
        if let Some(t) = x.temperature {
            c.temperature = Some(t);
        }
        if let Some(m) = x.max_tokens {
            c.max_tokens = Some(m);
        }
        if let Some(v) = &x.servers {
            c.servers = v.clone();
        }
        if let Some(t) = x.timeout {
            c.timeout = Some(t.0);
        }
        c
    }
}
