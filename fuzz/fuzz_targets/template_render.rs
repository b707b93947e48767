//! Any template in a step prompt, and in a loop `with` value: building the workflow and
//! rendering it either work or fail with an error; nothing panics.
#![no_main]

use std::sync::OnceLock;

use flowloom_core::{
    LlmError, LlmRequest, LlmResponse,
    provider::{self, AsyncProvider},
};
use flowloom_engine::{Engine, RunOptions, Step, Workflow};
use libfuzzer_sys::fuzz_target;

struct Echo;
impl AsyncProvider for Echo {
    fn name(&self) -> &str {
        "echo"
    }
    async fn complete(&self, r: LlmRequest) -> Result<LlmResponse, LlmError> {
        Ok(LlmResponse::text(
            r.prompt().unwrap_or_default().to_owned(),
            r.model.clone(),
            "echo",
        ))
    }
}

fn rt() -> &'static (tokio::runtime::Runtime, Engine) {
    static RT: OnceLock<(tokio::runtime::Runtime, Engine)> = OnceLock::new();
    RT.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let engine = Engine::builder()
            .provider("mock", provider::from_async(Echo))
            .build()
            .unwrap();
        (rt, engine)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The loop `with` renderer (lenient) over a context with nested data.
    let ctx = serde_json::json!({"input": "x", "loop": {"iteration": 1, "last": {"output": {"error": "e"}}}, "items": [1, 2]});
    let _ =
        flowloom_engine::yaml::render_loop_value(&serde_json::Value::String(text.to_owned()), &ctx);
    // The engine's templates: compile at build, render at run.
    let (rt, engine) = rt();
    let Ok(wf) = Workflow::builder("fuzz")
        .open_variables(true)
        .step(Step::llm("a", "fixed"))
        .step(Step::llm("b", text.to_owned()).when(text.to_owned()))
        .build()
    else {
        return;
    };
    let opts = RunOptions::new("input text")
        .var("x", 1)
        .var("items", serde_json::json!([1, 2, 3]));
    let _ = rt.block_on(engine.run_with(&wf, opts));
});
