//! The shape every Go action shares: a bash script run with the SDK mounted at
//! [`super::toolchain::SDK_MOUNT`], the SDK's environment, and bash (with `stat` and `cat`) as
//! its host tools. The link replaces the script by the linker's own argv and has no host tool;
//! the link's importcfg is written by `printf` with one argument per line (see
//! `link::importcfg_arguments`).

use kiln_graph::action::{ActionSpec, Artifact};
use kiln_graph::label::Label;

use super::toolchain::{SandboxSdk, Sdk};

/// A Go action running `script` for the platform of `sandbox`.
#[allow(clippy::too_many_arguments)] // Each is one part of the action; a struct would only rename them.
pub fn go_action(
    sdk: &Sdk,
    sandbox: &SandboxSdk,
    owner: &Label,
    mnemonic: &str,
    progress: String,
    script: String,
    inputs: &[Artifact],
    outputs: &[(&Artifact, bool)],
) -> ActionSpec {
    let mut spec = ActionSpec::new(
        owner.clone(),
        mnemonic,
        vec!["/bin/bash".into(), "-c".into(), script],
    );
    spec.progress_message = progress;
    spec.env = sandbox.env().into_iter().collect();
    spec.host_tools = vec![
        "/bin/bash".into(),
        super::compile::STAT.into(),
        super::compile::CAT.into(),
    ];
    spec.tool_mounts = vec![sdk.mount()];
    let mut seen = std::collections::HashSet::new();
    for input in inputs {
        if seen.insert(input.path.clone()) {
            spec.input(input);
        }
    }
    for (output, executable) in outputs {
        spec.output(output, *executable);
    }
    spec
}
