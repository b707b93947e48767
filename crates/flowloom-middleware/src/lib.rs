//! flowloom-middleware (being filled by later work).
