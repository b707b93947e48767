//! A mock OpenAI-compatible HTTP server for tests, on 127.0.0.1.
