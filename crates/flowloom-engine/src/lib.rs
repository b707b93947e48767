//! flowloom-engine (being filled by later work).
