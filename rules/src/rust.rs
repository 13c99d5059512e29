//! Rust rules on rustc, after rules_rust's attribute names and cargo's behaviour:
//!
//! - [`toolchain`], [`context`]: the rustup toolchain, resolved to its sysroot once per build and
//!   mounted at a fixed sandbox path; its identity is in every Rust action's key.
//! - [`helper`] (sources in `rust/helper/`): the small program every Rust action runs through; it
//!   applies build-script output, renders rustc's JSON diagnostics and runs build scripts.
//! - [`crate_rule`], [`compile`], [`rustc_args`], [`crate_info`]: one rustc per crate; libraries
//!   emit `.rmeta` and `.rlib` from one process, and [`artifacts`] announces the `.rmeta` early so
//!   dependents start compiling while codegen runs (pipelining).
//! - [`build_script`]: the `cargo_build_script` rule.
//! - [`crates`]: registry crates from Cargo.toml/Cargo.lock as the `@crates` repository.

pub mod artifacts;
pub mod build_script;
pub mod cc_toolchain;
pub mod compile;
pub mod context;
pub mod crate_info;
pub mod crate_rule;
pub mod crates;
pub mod helper;
pub mod rustc_args;
pub mod toolchain;

#[cfg(test)]
#[path = "rust/helper/archive.rs"]
mod helper_archive;
#[cfg(test)]
#[path = "rust/helper/directives.rs"]
mod helper_directives;
#[cfg(test)]
#[path = "rust/helper/paths.rs"]
mod helper_paths;

use kiln_graph::analysis::RuleImpl;

/// The C compiler rustc links with and build scripts get as `CC`.
pub const LINKER: &str = "/usr/bin/cc";

/// Host tools Rust actions call: the C toolchain (linking, `cc` in build scripts; see
/// [`cc_toolchain`]); their digests go into the actions' platform properties.
pub fn link_tools() -> Vec<String> {
    cc_toolchain::default_toolchain().tools.clone()
}

/// The Rust rules.
pub fn rules() -> Vec<Box<dyn RuleImpl>> {
    use crate_rule::{Kind, RustCrateRule};
    vec![
        Box::new(RustCrateRule(Kind::Library)),
        Box::new(RustCrateRule(Kind::ProcMacro)),
        Box::new(RustCrateRule(Kind::Binary)),
        Box::new(RustCrateRule(Kind::StaticLibrary)),
        Box::new(RustCrateRule(Kind::Test)),
        Box::new(build_script::CargoBuildScript),
    ]
}
