//! # flowloom-testkit
//!
//! Record/replay cassettes, a mock OpenAI-compatible server, cost budgets and assertions, for
//! testing workflows without paying for a single call.

pub mod server;
