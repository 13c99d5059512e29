//! What the caller asks for (`SandboxRequest`) and what it gets back (`SandboxOutcome`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::scratch::Scratch;

/// One input file, staged at `path` (exec-root relative) from the host file `source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// Where the action sees the file, relative to [`crate::EXEC_ROOT`].
    pub path: String,
    /// Host file to hard-link (or copy) from; it is never modified.
    pub source: PathBuf,
    /// Whether the staged file must carry the executable bits.
    pub executable: bool,
    /// The source never changes while it exists (a CAS blob): in namespaces mode a large one
    /// may be shown to the action by a read-only bind mount instead of a copy when it cannot be
    /// hard-linked (see `staging.rs`). Leave `false` for files someone may edit in place.
    pub immutable: bool,
}

/// A host file bind-mounted onto an empty placeholder in the staged tree (namespaces mode): a
/// large immutable input, read-only, or an output written in place, read-write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileBind {
    /// Exec-root-relative path of the placeholder.
    pub path: String,
    /// The host file mounted on it.
    pub source: PathBuf,
    /// Read-write (an output written in place, see [`SandboxRequest::output_files_dir`]);
    /// otherwise read-only.
    pub writable: bool,
}

/// A host directory (or file) exposed read-only at a fixed absolute path in the sandbox,
/// e.g. a toolchain at `/kiln/toolchains/go` or `/kiln/execroot/external/kiln_rust_toolchain`.
/// Plain mode has no mounts: it rewrites the sandbox path to the host path in the action's
/// arguments and environment instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraMount {
    /// The host path.
    pub host: PathBuf,
    /// Absolute path inside the sandbox: outside [`crate::EXEC_ROOT`], or strictly inside it where
    /// no input or output lies at or under it.
    pub sandbox_path: String,
}

/// One action to run.
#[derive(Debug, Clone, Default)]
pub struct SandboxRequest {
    /// `argv[0]` is exec-root relative, or an absolute system path such as `/bin/bash`.
    /// There is no `PATH` lookup.
    pub argv: Vec<String>,
    /// The complete environment; the sandbox adds only `TMPDIR` (a private writable dir).
    pub env: Vec<(String, String)>,
    /// Exec-root-relative working directory; `""` is the exec root. Created if missing.
    pub working_directory: String,
    /// Files the action may read.
    pub inputs: Vec<InputFile>,
    /// Extra (possibly empty) directories that are part of the input tree.
    pub input_dirs: Vec<String>,
    /// Exec-root-relative output files the action should produce; parents are created.
    pub outputs: Vec<String>,
    /// Exec-root-relative output directories (tree outputs); created empty before the run.
    pub output_dirs: Vec<String>,
    /// `false`: a private network namespace with only loopback; `true`: the host network.
    pub network: bool,
    /// Kill the whole process tree after this long.
    pub timeout: Option<Duration>,
    /// Host directory for staging; must be absent or empty. It lives until the
    /// [`SandboxOutcome`] (its `scratch` field) is dropped, and is removed in the background
    /// then: gone once the [`crate::Sandbox`] is dropped as well.
    pub scratch: PathBuf,
    /// Extra read-only mounts (namespaces mode only).
    pub mounts: Vec<ExtraMount>,
    /// A host directory (absent or empty, removed with the scratch tree) for the output files,
    /// for an action whose tool writes each of them in place (opens, truncates and writes it;
    /// it never renames another file onto it nor deletes it for good). In namespaces mode
    /// each output is then an empty file there, bound read-write onto its path in the exec
    /// root, and [`SandboxOutcome::outputs`] names that file: on a directory beside the
    /// cache, an output the scratch tree would hold on `/dev/shm` is written once, to the file
    /// system the cache can rename it into, instead of copied there. An output left untouched
    /// (empty, and neither truncated nor written) counts as not produced; so does one only
    /// appended nothing to (`: >> out`). Deleting or renaming onto an output fails there
    /// (`EBUSY`: it is a mount point). Ignored in plain mode.
    pub output_files_dir: Option<PathBuf>,
}

/// How the action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
    /// It ran past `timeout` and was killed with its whole process tree.
    TimedOut,
    /// The caller's cancel flag was raised and the process tree was killed.
    Cancelled,
}

/// How actions are isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxMode {
    /// User, mount, pid, net, uts and ipc namespaces; inputs read-only; nothing else visible.
    Namespaces,
    /// A staged directory, a cleared environment and a process group; no isolation.
    Plain,
}

/// The result of a run that started.
#[derive(Debug)]
pub struct SandboxOutcome {
    /// How the action ended.
    pub exit: ExitKind,
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
    /// Each declared output file with its host path, `None` if missing or not a regular file.
    pub outputs: Vec<(String, Option<PathBuf>)>,
    /// Each declared output directory with its host path, `None` if missing.
    pub output_dirs: Vec<(String, Option<PathBuf>)>,
    /// Wall time from the start of staging to the collection of outputs.
    pub duration: Duration,
    /// The mode the action ran in.
    pub mode: SandboxMode,
    /// Owns the scratch directory: outputs live there until this is dropped.
    pub scratch: Scratch,
}

impl SandboxOutcome {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.exit == ExitKind::Code(0)
    }
}
