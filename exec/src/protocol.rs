//! The messages between `kiln` and its sandbox helper: a request file written into scratch
//! before the helper starts, and a result file the helper writes before it exits.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::request::FileBind;
use crate::ExtraMount;

/// Everything the helper needs, already resolved to sandbox paths.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HelperRequest {
    /// Pid of the kiln process; the helper exits if its parent is already someone else.
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
    /// Pid of the namespace holder whose user and network namespaces to join, if any.
    #[serde(default)]
    pub join: Option<i32>,
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
