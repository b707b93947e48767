//! flowloom-testkit (being filled by later work).
