//! The library behind `cargo xtask`: fixtures, schema, bench and release tasks, kept apart
//! from the command line so that tests can drive them on a temporary copy of the repository.

pub mod bench;
pub mod fixtures;
pub mod release;
pub mod scenarios;
pub mod schema;
