//! # flowloom-engine
//!
//! Workflow definitions (builder and YAML), validation, the scheduler, step kinds, templates
//! and expressions, the plugin registry, lifecycle hooks and execution modes.

pub mod yaml;
