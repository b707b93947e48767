//! The testkit's layers keep the provider contract: a wrapped service is still
//! `Clone + Send + Sync + 'static` with `Send` futures, for chat and for streaming, so it can be
//! registered with the engine and stacked with any other layer. Checked at compile time.

use flowloom_core::provider::{
    BoxEmbeddingService, BoxLlmService, BoxStreamService, EmbeddingService, LlmService,
    StreamService,
};
use flowloom_testkit::budget::{CostBudget, CostBudgetService};
use flowloom_testkit::cassette::{Cassette, CassetteService, NoProvider};

fn llm<S: LlmService>() {}
fn stream<S: StreamService>() {}
fn embedding<S: EmbeddingService>() {}
fn send_sync<T: Send + Sync + Clone + 'static>() {}

#[test]
fn wrapped_services_keep_the_provider_contract() {
    llm::<CassetteService<BoxLlmService>>();
    stream::<CassetteService<BoxStreamService>>();
    embedding::<CassetteService<BoxEmbeddingService>>();
    embedding::<CassetteService<NoProvider>>();
    llm::<CassetteService<NoProvider>>();
    stream::<CassetteService<NoProvider>>();
    llm::<CostBudgetService<BoxLlmService>>();
    stream::<CostBudgetService<BoxStreamService>>();
    llm::<CassetteService<CostBudgetService<BoxLlmService>>>();
    send_sync::<Cassette>();
    send_sync::<CostBudget>();
}
