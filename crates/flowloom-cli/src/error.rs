//! Exit codes and the command's errors.

use std::process::ExitCode;

use flowloom_core::WorkflowStatus;

/// The exit codes, as documented in `docs/src/cli.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: the run completed (or the check passed).
    Completed,
    /// 1: the run failed.
    Failed,
    /// 2: invalid input, arguments, configuration or workflow definition.
    Invalid,
    /// 3: the run timed out.
    Timeout,
    /// 130: interrupted (Ctrl-C).
    Interrupted,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Completed => 0,
            Exit::Failed => 1,
            Exit::Invalid => 2,
            Exit::Timeout => 3,
            Exit::Interrupted => 130,
        }
    }

    /// The exit for a run's terminal status.
    pub fn for_status(status: WorkflowStatus) -> Exit {
        match status {
            WorkflowStatus::Completed => Exit::Completed,
            WorkflowStatus::Timeout => Exit::Timeout,
            WorkflowStatus::Cancelled => Exit::Interrupted,
            WorkflowStatus::Failed | WorkflowStatus::Pending | WorkflowStatus::Running => {
                Exit::Failed
            }
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e.code())
    }
}

/// Why a command could not do its work. Each message says what was wrong and what would fix
/// it; [`CliError::exit_code`] says how the process ends.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments or input (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The providers file or the provider setup is wrong (exit 2).
    #[error("{0}")]
    Providers(String),
    /// The workflow file is invalid (exit 2).
    #[error("{0}")]
    Definition(String),
    /// Something failed while running (exit 1).
    #[error("{0}")]
    Runtime(String),
}

impl CliError {
    /// A usage error.
    pub fn usage(msg: impl Into<String>) -> Self {
        CliError::Usage(msg.into())
    }

    /// How the process ends after this error.
    pub fn exit_code(&self) -> Exit {
        match self {
            CliError::Usage(_) | CliError::Providers(_) | CliError::Definition(_) => Exit::Invalid,
            CliError::Runtime(_) => Exit::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_documented_codes() {
        assert_eq!(Exit::for_status(WorkflowStatus::Completed).code(), 0);
        assert_eq!(Exit::for_status(WorkflowStatus::Failed).code(), 1);
        assert_eq!(Exit::for_status(WorkflowStatus::Timeout).code(), 3);
        assert_eq!(Exit::for_status(WorkflowStatus::Cancelled).code(), 130);
        assert_eq!(Exit::Invalid.code(), 2);
    }
}
