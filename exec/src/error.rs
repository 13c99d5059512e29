//! Errors of the sandbox, tagged by who has to act on them.

use std::io;
use std::path::PathBuf;

/// Who is at fault when a sandbox run fails (see [`ExecError::kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is malformed (a rule produced a bad action).
    User,
    /// The host refused something: file system, kernel, missing helper.
    Environment,
}

/// Why an action could not be run (an action that runs and fails is not an error: see
/// [`crate::ExitKind`]).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// A path in the request is absolute, empty, or climbs out with `..`.
    #[error("Invalid path `{path}` in sandbox request: {reason}")]
    InvalidPath {
        /// The offending path, as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `argv` is empty.
    #[error("Sandbox request has an empty `argv`")]
    EmptyArgv,
    /// The scratch directory exists and holds files from something else.
    #[error("Scratch directory `{path}` exists and is not empty")]
    ScratchNotEmpty {
        /// The scratch directory.
        path: PathBuf,
    },
    /// An input could not be linked or copied into the staged exec root.
    #[error("Cannot stage input `{path}` from `{source_path}`: {source}")]
    Stage {
        /// Exec-root-relative path of the input.
        path: String,
        /// Host file it should come from.
        source_path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Some other file system operation on a host path failed.
    #[error("Cannot {action} `{path}`: {source}")]
    Io {
        /// What we were doing, e.g. "create directory".
        action: &'static str,
        /// The host path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The helper (namespaces mode) or the command (plain mode) could not be started.
    #[error("Cannot start `{program}`: {source}")]
    Spawn {
        /// The program that failed to start.
        program: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// `argv[0]` could not be executed inside the sandbox (missing, not executable, ...).
    #[error("Cannot execute `{argv0}` in the sandbox: {source}")]
    Exec {
        /// `argv[0]` as requested.
        argv0: String,
        /// The errno from `execve` or `chdir`.
        source: io::Error,
    },
    /// The helper could not build the sandbox (unshare, mounts, pivot_root).
    #[error("Sandbox setup failed: {0}")]
    Setup(String),
    /// The helper died without reporting a result.
    #[error(
        "Sandbox helper `{helper}` exited with {status} without a result (does the binary \
         call `kiln_exec::helper_main` for `{arg}`?); its stderr: {stderr}",
        arg = crate::HELPER_ARG
    )]
    Helper {
        /// The helper binary.
        helper: PathBuf,
        /// Its exit status, as text.
        status: String,
        /// The tail of what it printed on stderr.
        stderr: String,
    },
}

impl ExecError {
    /// Whether the request or the host is to blame.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ExecError::InvalidPath { .. } | ExecError::EmptyArgv | ExecError::Exec { .. } => {
                ErrorKind::User
            }
            _ => ErrorKind::Environment,
        }
    }

    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ExecError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
