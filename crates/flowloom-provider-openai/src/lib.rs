//! flowloom-provider-openai (being filled by later work).
