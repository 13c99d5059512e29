//! The providers Rust targets hand to their dependents: what a crate is and which files compiling
//! or linking against it needs ([`CrateInfo`]), and what a build script produced
//! ([`BuildScriptInfo`]).

use std::sync::Arc;

use kiln_graph::action::Artifact;

/// What kind of crate rustc makes (`--crate-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrateType {
    /// `rlib`: a library other crates compile against.
    Rlib,
    /// `proc-macro`: a host dylib the compiler loads.
    ProcMacro,
    /// `bin`: an executable (tests too).
    Bin,
    /// `staticlib`: an archive for C linkers.
    StaticLib,
}

impl CrateType {
    /// The `--crate-type` value.
    pub fn flag(self) -> &'static str {
        match self {
            CrateType::Rlib => "rlib",
            CrateType::ProcMacro => "proc-macro",
            CrateType::Bin => "bin",
            CrateType::StaticLib => "staticlib",
        }
    }

    /// Whether rustc links native code for it (needs the C toolchain).
    pub fn links(self) -> bool {
        !matches!(self, CrateType::Rlib)
    }
}

/// One library crate as dependents see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepCrate {
    /// The crate's name (`--crate-name`).
    pub name: String,
    /// rlib or proc-macro.
    pub crate_type: CrateType,
    /// What dependent *library* compiles read: the `.rmeta` (pipelining), or the proc-macro dylib.
    pub metadata: Artifact,
    /// What links read: the `.rlib`, or the proc-macro dylib.
    pub link: Artifact,
}

impl DepCrate {
    /// The file a compile of `for_type` reads for this crate.
    pub fn file_for(&self, for_type: CrateType) -> &Artifact {
        if for_type == CrateType::Rlib {
            &self.metadata
        } else {
            &self.link
        }
    }
}

/// A build script's `-L` flags file, with the `OUT_DIR` those flags may point into (a native
/// library the script built there): a final link unpacks it and moves the flags along.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkSearch {
    /// The `-L` flags file.
    pub flags: Artifact,
    /// Exec-root path the script wrote `OUT_DIR` at.
    pub out_dir: String,
    /// The packed `OUT_DIR`.
    pub out_dir_archive: Artifact,
}

/// What the build scripts of a crate's direct dependents get from its build script: the
/// `DEP_<links>_*` values, and the `OUT_DIR` those values may name (`DEP_Z_INCLUDE` pointing at
/// headers the script left there), which a dependent's script run unpacks and points them at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepEnv {
    /// The `DEP_<links>_*` file.
    pub file: Artifact,
    /// Exec-root path the script wrote `OUT_DIR` at.
    pub out_dir: String,
    /// The packed `OUT_DIR`.
    pub out_dir_archive: Artifact,
}

impl BuildScriptInfo {
    /// What this script hands the build scripts of its crate's direct dependents.
    pub fn dep_env(&self) -> DepEnv {
        DepEnv {
            file: self.dep_env.clone(),
            out_dir: self.out_dir.clone(),
            out_dir_archive: self.out_dir_archive.clone(),
        }
    }

    /// This script's `-L` flags with its `OUT_DIR`.
    pub fn link_search(&self) -> LinkSearch {
        LinkSearch {
            flags: self.link_search.clone(),
            out_dir: self.out_dir.clone(),
            out_dir_archive: self.out_dir_archive.clone(),
        }
    }
}

/// Provider of `rust_library` and `rust_proc_macro` targets (and of rendered registry crates).
#[derive(Clone, Debug)]
pub struct CrateInfo {
    /// The crate itself.
    pub krate: DepCrate,
    /// Every crate it depends on, transitively (not through proc-macros), deduplicated, deps first.
    pub transitive: Vec<DepCrate>,
    /// `-L` flags from build scripts of it and its transitive dependencies.
    pub link_search: Vec<LinkSearch>,
    /// What its build script hands the build scripts of direct dependents.
    pub dep_env: Option<DepEnv>,
    /// Runfiles (`data`) that travel to binaries and tests.
    pub runfiles: Vec<(String, Artifact)>,
    /// Other builds of the same registry crate that some dependents use instead (cargo's
    /// resolver 2: different host or test features).
    pub twins: Twins,
}

/// How a dependent uses its dependencies, which decides which build of a registry crate it gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DepUse {
    /// Normal code: the crate's own build.
    Normal,
    /// A build script or proc-macro: the host build.
    Host,
    /// A test: the build with the workspace's dev-dependency features.
    Test,
}

/// The host and test builds of a registry crate, when they differ from its ordinary one (set
/// through the `kiln_host_twin` / `kiln_test_twin` attributes `@crates` BUILD files carry).
#[derive(Clone, Debug, Default)]
pub struct Twins {
    /// What a workspace member's build script or proc-macro uses.
    pub host: Option<Arc<CrateInfo>>,
    /// What a workspace member's `rust_test` uses.
    pub test: Option<Arc<CrateInfo>>,
}

impl CrateInfo {
    /// The build a dependent using the crate as `dep_use` links.
    pub fn for_use(&self, dep_use: DepUse) -> &CrateInfo {
        let twin = match dep_use {
            DepUse::Normal => None,
            DepUse::Host => self.twins.host.as_deref(),
            DepUse::Test => self.twins.test.as_deref(),
        };
        twin.unwrap_or(self)
    }
}

/// Provider of `cargo_build_script` targets: the files its run wrote.
#[derive(Clone, Debug)]
pub struct BuildScriptInfo {
    /// `--cfg`, `--check-cfg` and `-l` flags for the crate.
    pub flags: Artifact,
    /// `-L` flags for the crate and everything linking it.
    pub link_search: Artifact,
    /// `-C link-arg=` flags for binaries and tests of the package.
    pub link_args: Artifact,
    /// `rustc-env` values.
    pub env: Artifact,
    /// `DEP_<links>_*` values.
    pub dep_env: Artifact,
    /// The packed `OUT_DIR`.
    pub out_dir_archive: Artifact,
    /// Exec-root path the script wrote `OUT_DIR` at.
    pub out_dir: String,
}
