//! The command tree: `run`, `validate`, `graph`, `schema`, `estimate`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Run, check and inspect flowloom workflow files (`workflow/v2.0`).
#[derive(Debug, Parser)]
#[command(name = "flowloom", version, about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 completed, 1 failed, 2 invalid input or definition, \
3 timeout, 130 interrupted.\nDocumentation: docs/src/cli.md"
)]
pub struct Cli {
    /// The providers file mapping provider names to OpenAI-compatible endpoints
    /// [default: ./flowloom.yaml when it exists, else the built-in endpoints].
    #[arg(long, global = true, env = "FLOWLOOM_PROVIDERS", value_name = "PATH")]
    pub providers: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a workflow file and print its output (or its whole result with --json).
    Run(RunArgs),
    /// Check workflow files and report every problem, with its location. Exit 0 or 2.
    Validate(ValidateArgs),
    /// Print a workflow's step graph, as Mermaid or Graphviz dot.
    Graph(GraphArgs),
    /// Print the JSON Schema of the workflow format.
    Schema,
    /// Estimate a run's tokens and cost before running it.
    Estimate(EstimateArgs),
}

/// Where a run's input comes from. Without `--input` or `--input-file`, standard input is read
/// when it is not a terminal; otherwise the input is empty.
#[derive(Debug, Args, Clone, Default)]
pub struct InputArgs {
    /// The workflow input, as text.
    #[arg(long, value_name = "TEXT", conflicts_with = "input_file")]
    pub input: Option<String>,

    /// Read the workflow input from a file (`-` for standard input).
    #[arg(long, value_name = "PATH")]
    pub input_file: Option<PathBuf>,

    /// A workflow variable, visible to templates as `{{ KEY }}` (repeatable).
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,
}

/// `flowloom run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The workflow file.
    pub file: PathBuf,

    /// The input and variables.
    #[command(flatten)]
    pub input: InputArgs,

    /// Route every provider the workflow names to this one. `mock` runs offline on the mock
    /// provider (echo, or the script given by --mock-script).
    #[arg(long, value_name = "NAME")]
    pub provider: Option<String>,

    /// Use this model for every model call, whatever the workflow says.
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,

    /// Run on a scripted mock provider read from this file (implies `--provider mock`).
    #[arg(long, value_name = "PATH")]
    pub mock_script: Option<PathBuf>,

    /// Stop the run after this long, e.g. `30s`, `500ms`, `5m`, `1h` (exit code 3).
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub timeout: Option<std::time::Duration>,

    /// Print the whole result (the data model's WorkflowResult) as JSON on standard output.
    #[arg(long)]
    pub json: bool,

    /// Also write the whole result, as JSON, to this file.
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// No progress lines and no summary table on standard error.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `--timeout` values, as the workflow format writes durations (`30s`, `5m`, `1h`, `500ms`,
/// `1m30s`): the shared rule of [`flowloom_core::duration::parse_positive`].
fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    flowloom_core::duration::parse_positive(s).map_err(|e| e.to_string())
}

/// `flowloom validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The workflow files to check.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Check provider names as a run with `--provider NAME` would (`mock` accepts any name).
    #[arg(long, value_name = "NAME")]
    pub provider: Option<String>,

    /// Print the result as JSON (one entry per file, with its diagnostics).
    #[arg(long)]
    pub json: bool,
}

/// The graph formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum GraphFormat {
    /// A Mermaid flowchart (renders in GitHub markdown).
    #[default]
    Mermaid,
    /// Graphviz dot.
    Dot,
}

/// `flowloom graph`.
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// The workflow file.
    pub file: PathBuf,

    /// The output format.
    #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
    pub format: GraphFormat,
}

/// `flowloom estimate`.
#[derive(Debug, Args)]
pub struct EstimateArgs {
    /// The workflow file.
    pub file: PathBuf,

    /// The input and variables, as for `run`.
    #[command(flatten)]
    pub input: InputArgs,

    /// Price every call as this model, as `run --model` would call it.
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,

    /// A price table (YAML) instead of the built-in OpenAI prices.
    #[arg(long, value_name = "PATH")]
    pub prices: Option<PathBuf>,

    /// Print the estimate as JSON.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn input_and_input_file_conflict() {
        let r = Cli::try_parse_from([
            "flowloom",
            "run",
            "wf.yaml",
            "--input",
            "x",
            "--input-file",
            "in.txt",
        ]);
        assert!(r.is_err());
    }

    #[test]
    fn run_parses_every_flag() {
        let cli = Cli::try_parse_from([
            "flowloom",
            "run",
            "wf.yaml",
            "--input",
            "hello",
            "--var",
            "a=1",
            "--var",
            "b=two",
            "--provider",
            "mock",
            "--model",
            "gpt-4o",
            "--mock-script",
            "m.yaml",
            "--timeout",
            "30s",
            "--json",
            "--output",
            "out.json",
        ])
        .unwrap();
        let Command::Run(r) = cli.command else {
            panic!("not run")
        };
        assert_eq!(r.input.input.as_deref(), Some("hello"));
        assert_eq!(r.input.vars, ["a=1", "b=two"]);
        assert_eq!(r.timeout, Some(std::time::Duration::from_secs(30)));
        assert!(r.json);
        assert_eq!(r.output, Some(PathBuf::from("out.json")));
    }

    #[test]
    fn bad_timeout_is_a_usage_error() {
        let err =
            Cli::try_parse_from(["flowloom", "run", "wf.yaml", "--timeout", "soon"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("30s"), "{err}");
        assert!(err.to_string().contains("`soon`"), "{err}");
    }

    #[test]
    fn timeout_takes_compound_durations() {
        let Command::Run(r) =
            Cli::try_parse_from(["flowloom", "run", "wf.yaml", "--timeout", "1m30s"])
                .unwrap()
                .command
        else {
            panic!("expected run");
        };
        assert_eq!(r.timeout, Some(std::time::Duration::from_secs(90)));
    }
}
