//! Helpers shared by the tests that drive the real runner.

use kiln_graph::action::{ActionSpec, OutputSpec};
use kiln_graph::label::Label;

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
