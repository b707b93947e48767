//! # flowloom
//!
//! The `flowloom` command: run, check and inspect `workflow/v2.0` workflow files without
//! writing Rust. It holds no logic of its own beyond the command line: loading, validating and
//! running workflows is the engine's, calling models the providers'.
//!
//! ```sh
//! flowloom run fixtures/workflows/hello.yaml --provider mock --input "Rust workflows"
//! flowloom validate fixtures/workflows/*.yaml --provider mock
//! flowloom graph fixtures/workflows/code_review.yaml --format dot
//! ```
//!
//! Exit codes: 0 completed, 1 failed, 2 invalid input or definition, 3 timeout,
//! 130 interrupted. See `docs/src/cli.md`.

mod cli;
mod error;
mod estimate;
mod input;
mod progress;
mod providers;
mod run;
mod validate;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::{CliError, Exit};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code().into()
        }
    }
}

fn dispatch(cli: Cli) -> Result<Exit, CliError> {
    match &cli.command {
        Command::Schema => validate::schema(),
        Command::Graph(args) => validate::graph(args),
        Command::Validate(args) => {
            let providers = providers::Providers::load(cli.providers.as_deref())?;
            Ok(validate::validate(args, &providers))
        }
        Command::Estimate(args) => estimate::run(args),
        Command::Run(args) => run::run(args, cli.providers.as_deref()),
    }
}
