//! flowloom umbrella crate.
