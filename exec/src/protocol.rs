//! The messages between `kiln` and its sandbox helper: a request file written into scratch
//! before the sandbox starts, and the result, which a spawned helper writes to a file before it
//! exits and a launched init (see `launcher`) sends on its status socket.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::request::FileBind;
use crate::ExtraMount;

/// Everything the helper needs, already resolved to sandbox paths.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HelperRequest {
    /// Pid of the kiln process; a spawned helper exits if its parent is already someone else.
    pub parent_pid: i32,
    /// Absolute path inside the sandbox passed to `execve`.
    pub program: String,
    /// The argv, `argv[0]` as requested.
    pub argv: Vec<String>,
    /// `KEY=VALUE` strings, `TMPDIR` included.
    pub env: Vec<String>,
    /// Absolute working directory inside the sandbox.
    pub cwd: String,
    /// Keep the host network namespace.
    pub network: bool,
    /// Host directory mounted at the exec root.
    pub exec_root: PathBuf,
    /// Host directory mounted at `/tmp`.
    pub tmp: PathBuf,
    /// Empty host directory to mount the new root on.
    pub new_root: PathBuf,
    /// Large immutable inputs to bind read-only from their sources onto their placeholders.
    #[serde(default)]
    pub file_binds: Vec<FileBind>,
    /// Exec-root-relative paths to bind read-only onto themselves.
    pub read_only: Vec<String>,
    /// Extra read-only mounts.
    pub mounts: Vec<ExtraMount>,
    /// Where to write the [`HelperResult`].
    pub result: PathBuf,
}

/// How the sandboxed command ended, as seen by the helper.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum HelperResult {
    /// Exit code.
    Exited(i32),
    /// Killing signal.
    Signaled(i32),
    /// `chdir` or `execve` failed with this errno.
    ExecFailed(i32),
    /// Building the sandbox failed.
    SetupFailed(String),
}
