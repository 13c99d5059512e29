//! Helpers shared by the tests that drive the real runner.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_cache::{DigestFunction, LocalCache};
use kiln_exec::{Sandbox, SandboxConfig, SandboxMode};
use kiln_graph::action::{ActionSpec, OutputSpec};
use kiln_graph::action_key::PlatformProperties;
use kiln_graph::execute::Runner;
use kiln_graph::label::Label;

/// A runner storing into `cache`, with its workspace root (`ws`, created) and scratch under
/// `dir`, on the plain sandbox: no helper binary needed, and staging copies.
pub fn plain_runner(dir: &Path, cache: Arc<LocalCache>) -> Runner {
    let sandbox = Sandbox::new(SandboxConfig {
        helper: PathBuf::from("/nonexistent-helper"),
        mode_override: Some(SandboxMode::Plain),
    });
    let root = dir.join("ws");
    std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("{e}"));
    Runner::new(
        root,
        cache,
        sandbox,
        DigestFunction::Blake3,
        PlatformProperties::default(),
        dir.join("scratch"),
    )
}

/// An action of `//p:name` that runs `script` with `/bin/sh` and declares `p/{name}.txt`.
pub fn shell_action(name: &str, script: &str) -> ActionSpec {
    let owner = Label {
        repo: String::new(),
        package: "p".into(),
        name: name.into(),
    };
    let argv = ["/bin/sh", "-c", script].map(String::from).to_vec();
    let mut spec = ActionSpec::new(owner, "Test", argv);
    spec.outputs.push(OutputSpec {
        path: format!("p/{name}.txt"),
        executable: false,
        optional: false,
    });
    spec
}
