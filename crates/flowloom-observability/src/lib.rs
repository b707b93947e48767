//! flowloom-observability (being filled by later work).
