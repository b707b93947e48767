//! flowloom-provider-mock (being filled by later work).
