//! # flowloom-testkit
//!
//! Test your flowloom workflows for free (FR-031 to FR-033): put this crate in your
//! `[dev-dependencies]`.
//!
//! - [`cassette`] — record/replay cassettes as a `tower` layer: record real model calls once,
//!   replay them offline forever; a changed request fails with a readable diff.
//! - [`server`] — a mock OpenAI-compatible HTTP server on 127.0.0.1, with scripted faults.
//! - [`budget`] — cost budgets per test and per suite, with a report of what was spent where.
//! - [`assert`](mod@assert) — assertions for outputs that vary: contains, regex, length, JSON matching a
//!   schemars schema, similarity.
//!
//! ```
//! use flowloom_testkit::{assert, budget::CostBudget};
//!
//! assert::contains("The answer is 42.", "42").unwrap();
//! assert::similar("the cat sat on the mat", "the cat sat on a mat", 0.8).unwrap();
//!
//! let budget = CostBudget::new("doc example", 0.10);
//! assert!(budget.check().is_ok()); // nothing spent yet
//! ```

pub mod assert;
pub mod budget;
pub mod cassette;
pub mod server;
