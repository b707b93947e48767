//! # flowloom-observability
//!
//! Tracing setup (JSON or pretty), OpenTelemetry export, GenAI span attributes, token
//! accounting, the usage ledger and the cost table.

pub mod semconv;
