//! The same 3-step workflow, run from plain blocking code with a timeout.
//!
//! `cargo run -p flowloom --example quickstart_blocking --features mock`

use std::time::Duration;

use flowloom::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::with_provider("mock", MockProvider::echo())?;
    let wf = Workflow::builder("summarize")
        .llm("draft", "Summarize: {{ input }}")
        .llm("refine", "Tighten this: {{ draft }}")
        .transform("shout", |c| Ok(c.output("refine")?.to_uppercase().into()))
        .build()?;
    let result = engine.run_blocking(&wf, "some text", Some(Duration::from_secs(30)))?;
    println!("{}", result.output_text().unwrap_or_default());
    Ok(())
}
