//! Actions as rules declare them: a command line, an environment, the files it reads and the files it
//! must write, all as exec-root-relative paths. The engine turns one into a REAPI `Action` (see
//! [`crate::action_key`]) and runs it in the sandbox.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::label::Label;

/// Directory under the exec root (and the workspace) where derived files live.
pub const OUT_DIR: &str = "kiln-out";
/// Directory under [`OUT_DIR`] holding rule outputs, mirroring the package tree.
pub const BIN_DIR: &str = "kiln-out/bin";
/// Where outputs are copied before being renamed into `kiln-out/bin`: a build killed mid-copy
/// leaves its temp files here, and the next build empties it.
pub const MATERIALIZE_STAGING_DIR: &str = "kiln-out/.kiln-tmp";

/// A file an action reads or writes, named by its exec-root-relative path.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Artifact {
    /// Exec-root-relative path, e.g. `pkg/a.txt` or `kiln-out/bin/pkg/out.txt`.
    pub path: String,
    /// Whether the file is a checked-in source (true) or produced by an action (false).
    pub source: bool,
}

impl Artifact {
    /// A source file at a workspace-relative path.
    pub fn source(path: impl Into<String>) -> Self {
        Artifact {
            path: path.into(),
            source: true,
        }
    }

    /// A derived file at an exec-root-relative path.
    pub fn derived(path: impl Into<String>) -> Self {
        Artifact {
            path: path.into(),
            source: false,
        }
    }

    /// The path below the package's output directory, or the path itself for sources.
    pub fn short_path(&self) -> &str {
        if self.source {
            &self.path
        } else {
            self.path
                .strip_prefix(BIN_DIR)
                .map(|p| p.trim_start_matches('/'))
                .unwrap_or(&self.path)
        }
    }
}

impl fmt::Display for Artifact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)
    }
}

/// One input of an action: the artifact, and where it appears in the action's input tree (usually
/// the artifact's own path; runfiles trees place the same artifact under other names too).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ActionInput {
    /// Path inside the exec root where the action sees the file.
    pub exec_path: String,
    /// The artifact supplying its content.
    pub artifact: Artifact,
}

/// Reads a line of an action's stderr and says which declared output, if any, is now complete
/// (rustc's JSON artifact notifications are the motivating case). Supplied by the rule.
pub type EarlyOutputParser = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What kind of action this is for the scheduler and the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionKind {
    /// A build step: every declared output must be produced; results are cached.
    Build,
    /// A test run: outputs are optional, a non-zero exit is a test failure, and only passing
    /// results are cached.
    Test,
}

/// An action as a rule declares it.
#[derive(Clone)]
pub struct ActionSpec {
    /// The target that declared it.
    pub owner: Label,
    /// Short kind name shown in progress and events, e.g. `Genrule`, `GoCompile`.
    pub mnemonic: String,
    /// Human-readable progress message, e.g. `Executing genrule //pkg:gen`.
    pub progress_message: String,
    /// argv; argv\[0\] is exec-root-relative or an absolute system path.
    pub arguments: Vec<String>,
    /// The full environment the command sees.
    pub env: BTreeMap<String, String>,
    /// Working directory relative to the exec root ("" for the exec root).
    pub working_directory: String,
    /// Files the action may read.
    pub inputs: Vec<ActionInput>,
    /// Files the action must write (exec-root-relative), with their executable bit.
    pub outputs: Vec<OutputSpec>,
    /// Build or test.
    pub kind: ActionKind,
    /// Whether the action may reach the network (tests tagged `requires-network`).
    pub network: bool,
    /// Kill the action after this long.
    pub timeout: Option<Duration>,
    /// Names of host tools (absolute paths, e.g. `/bin/bash`) the command calls; their digests go into
    /// the action's platform properties.
    pub host_tools: Vec<String>,
    /// Optional early-output announcements from stderr lines.
    pub early_outputs: Option<EarlyOutputParser>,
    /// Extra read-only host directories exposed at fixed sandbox paths (toolchains): (sandbox path,
    /// identity string that goes into the key). The host path is resolved by the executor config.
    pub tool_mounts: Vec<ToolMount>,
    /// Whether the result may be cached (false for `--nocache_test_results` runs and `no-cache` tags).
    pub cacheable: bool,
    /// Run with no other action running (tests tagged `exclusive`).
    pub exclusive: bool,
    /// Its tool writes each output file in place: opens it with `O_TRUNC` (or writes bytes to
    /// it), never renames another file onto it, never needs to delete it, and never leaves an
    /// output empty without truncating it. The sandbox may then give it output files on the
    /// cache's file system, which the CAS takes by a rename instead of a copy (a Go link's
    /// binary); whether it does depends on where the action stages, so a tool that breaks the
    /// contract would fail on some machines only. Not part of the key: where the bytes are
    /// written does not change them.
    pub outputs_written_in_place: bool,
}

impl fmt::Debug for ActionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActionSpec")
            .field("owner", &self.owner)
            .field("mnemonic", &self.mnemonic)
            .field("arguments", &self.arguments)
            .field("outputs", &self.outputs)
            .finish_non_exhaustive()
    }
}

/// A toolchain directory mounted read-only into the sandbox at a fixed path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolMount {
    /// Absolute path inside the sandbox, e.g. `/kiln/execroot/external/kiln_go_sdk`.
    pub sandbox_path: String,
    /// Host directory to mount.
    pub host_path: std::path::PathBuf,
    /// A content identity (version and digest) recorded in the action key instead of the host path.
    pub identity: String,
}

/// A declared output file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct OutputSpec {
    /// Exec-root-relative path.
    pub path: String,
    /// Whether the produced file must be marked executable when materialized.
    pub executable: bool,
    /// Whether the action may leave it unwritten (test XML and the like).
    pub optional: bool,
}

impl ActionSpec {
    /// A build action with defaults: no env, exec root as cwd, cacheable, no network.
    pub fn new(owner: Label, mnemonic: impl Into<String>, arguments: Vec<String>) -> Self {
        ActionSpec {
            owner,
            mnemonic: mnemonic.into(),
            progress_message: String::new(),
            arguments,
            env: BTreeMap::new(),
            working_directory: String::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            kind: ActionKind::Build,
            network: false,
            timeout: None,
            host_tools: Vec::new(),
            early_outputs: None,
            tool_mounts: Vec::new(),
            cacheable: true,
            exclusive: false,
            outputs_written_in_place: false,
        }
    }

    /// Adds an input seen at its own path.
    pub fn input(&mut self, artifact: &Artifact) {
        self.inputs.push(ActionInput {
            exec_path: artifact.path.clone(),
            artifact: artifact.clone(),
        });
    }

    /// Adds an input seen at `exec_path` instead of its own path.
    pub fn input_at(&mut self, exec_path: &str, artifact: &Artifact) {
        self.inputs.push(ActionInput {
            exec_path: exec_path.to_string(),
            artifact: artifact.clone(),
        });
    }

    /// Adds a required output.
    pub fn output(&mut self, artifact: &Artifact, executable: bool) {
        self.outputs.push(OutputSpec {
            path: artifact.path.clone(),
            executable,
            optional: false,
        });
    }

    /// The environment as (name, value) pairs, sorted by name.
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The path that identifies this action across builds (its first output), used by history.
    pub fn history_key(&self) -> String {
        self.outputs
            .first()
            .map(|o| o.path.clone())
            .unwrap_or_else(|| format!("{}#{}", self.owner, self.mnemonic))
    }
}
