//! The action that builds `kiln-rust-helper` (sources in `helper/`) with the build's own rustc. It
//! is registered once per build, by the first Rust target analyzed, and every Rust action runs
//! through the binary it makes. Its key holds only the sources and the toolchain, so it is built
//! once per toolchain and then served from the cache.

use kiln_graph::action::{ActionSpec, Artifact, ToolMount};
use kiln_graph::label::Label;

use super::toolchain::{RustToolchain, SANDBOX_RUSTC};
use super::LINKER;

/// The helper's sources: (file name, text).
pub const SOURCES: &[(&str, &str)] = &[
    ("main.rs", include_str!("helper/main.rs")),
    ("archive.rs", include_str!("helper/archive.rs")),
    ("directives.rs", include_str!("helper/directives.rs")),
    ("paths.rs", include_str!("helper/paths.rs")),
];

/// Where the helper binary is written (exec-root-relative).
pub const HELPER_PATH: &str = "kiln-out/bin/_kiln_rust/kiln-rust-helper";
const SOURCE_DIR: &str = "kiln-out/bin/_kiln_rust/helper_src";

/// The helper as an input artifact.
pub fn artifact() -> Artifact {
    Artifact::derived(HELPER_PATH)
}

/// The toolchain mount every Rust action carries.
pub fn mount(toolchain: &RustToolchain) -> ToolMount {
    ToolMount {
        sandbox_path: super::toolchain::SANDBOX_SYSROOT.to_string(),
        host_path: toolchain.sysroot.clone(),
        identity: toolchain.identity.clone(),
    }
}

/// The action writing the sources and compiling them. Unoptimized: it is the first action of
/// every clean Rust build, alone on the critical path, and `-Copt-level=1` tripled its compile
/// (2.4–2.8 s against 0.8 s) for no measurable gain per wrapped rustc (the helper waits on
/// rustc and passes its messages through).
pub fn action(owner: &Label, toolchain: &RustToolchain) -> ActionSpec {
    let mut script = format!("set -euo pipefail\nmkdir -p {SOURCE_DIR}\n");
    let mut args = Vec::new();
    for (i, (name, _)) in SOURCES.iter().enumerate() {
        script.push_str(&format!(
            "printf '%s' \"${}\" > {SOURCE_DIR}/{name}\n",
            i + 1
        ));
        args.push(SOURCES[i].1.to_string());
    }
    script.push_str(&format!(
        "exec {SANDBOX_RUSTC} --crate-name=kiln_rust_helper --crate-type=bin --edition=2021 \
         -Copt-level=0 -Cdebug-assertions=off -Cdebuginfo=0 -Cstrip=debuginfo -Clinker={LINKER} \
         --remap-path-prefix=\"$PWD/\"= -o {HELPER_PATH} {SOURCE_DIR}/main.rs\n"
    ));
    let mut argv = vec![
        "/bin/bash".to_string(),
        "-c".to_string(),
        script,
        "kiln-rust-helper".to_string(),
    ];
    argv.extend(args);
    let mut spec = ActionSpec::new(owner.clone(), "RustHelper", argv);
    spec.progress_message = "Compiling kiln-rust-helper".to_string();
    spec.env
        .insert("PATH".to_string(), crate::ACTION_PATH.to_string());
    spec.host_tools = super::link_tools();
    spec.host_tools.push("/bin/bash".to_string());
    spec.tool_mounts.push(mount(toolchain));
    for (name, _) in SOURCES {
        spec.output(&Artifact::derived(format!("{SOURCE_DIR}/{name}")), false);
    }
    spec.output(&artifact(), true);
    spec
}
