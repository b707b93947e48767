//! The `flowloom` command.
fn main() {}
