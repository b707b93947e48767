//! `cargo xtask`: project tasks — fixtures, schema, bench and release. Run `cargo xtask --help`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use xtask::{bench, fixtures, release, schema};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "flowloom project tasks")]
struct Cli {
    /// The workspace to work on (default: the one this xtask belongs to).
    #[arg(long, global = true)]
    root: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Cassettes under fixtures/cassettes.
    Fixtures {
        #[command(subcommand)]
        action: FixturesAction,
    },
    /// Regenerate the JSON Schemas under docs/schema.
    Schema {
        /// Only check that the committed schemas are up to date (exit 1 when stale).
        #[arg(long)]
        check: bool,
    },
    /// Run the benchmarks and print one table of their BENCH figures.
    Bench {
        /// Only these packages (repeatable); all workspace bench targets when absent.
        #[arg(short = 'p', long = "package")]
        packages: Vec<String>,
    },
    /// Release a version: bump, changelog, checks, commit and tag.
    Release {
        /// The version, X.Y.Z.
        version: String,
        /// Print the plan and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum FixturesAction {
    /// Check every cassette parses and still matches what the code sends now.
    Verify,
    /// Re-record the cassette of scenario NAME with a real key (OPENAI_API_KEY), under a cost cap.
    Record {
        /// The scenario (also the cassette's file name).
        name: String,
        /// The most the recording may spend, in US dollars.
        #[arg(long, default_value_t = 0.01)]
        max_cost: f64,
        /// Record against the local mock OpenAI server instead (free, no key needed).
        #[arg(long)]
        mock: bool,
    },
}

fn root() -> PathBuf {
    // xtask/ is one level below the workspace root.
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let root = cli.root.clone().unwrap_or_else(root);
    match cli.command {
        Command::Fixtures { action } => match action {
            FixturesAction::Verify => fixtures::verify(&root),
            FixturesAction::Record {
                name,
                max_cost,
                mock,
            } => {
                let backend = if mock {
                    fixtures::Backend::Mock
                } else {
                    fixtures::Backend::OpenAi
                };
                fixtures::record(&root, &name, max_cost, backend)
            }
        },
        Command::Schema { check } => schema::run(&root, check),
        Command::Bench { packages } => bench::run(&root, &packages),
        Command::Release { version, dry_run } => release::run(&root, &version, dry_run),
    }
}
