//! A 3-step workflow (two model steps and a transform), run async on the mock provider.
//!
//! `cargo run -p flowloom --example quickstart --features mock`

use flowloom::prelude::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::with_provider("mock", MockProvider::echo())?;
    let wf = Workflow::builder("summarize")
        .llm("draft", "Summarize: {{ input }}")
        .llm("refine", "Tighten this: {{ draft }}")
        .transform("shout", |c| Ok(c.output("refine")?.to_uppercase().into()))
        .build()?;
    let result = engine.run(&wf, "some text").await?;
    println!("{}", result.output_text().unwrap_or_default());
    Ok(())
}
