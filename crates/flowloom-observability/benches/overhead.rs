//! Overhead benchmark (filled in below).
fn main() {}
