//! Rule implementations: each turns a loaded target into actions and providers through
//! `kiln_graph::analysis`. The engine knows none of them by name; it receives [`all_rules`].
//!
//! - [`genrule`]: Bazel's `genrule`, a bash command with make-variable expansion.
//! - [`filegroup`]: `filegroup` and `alias`.
//! - [`shell`]: `sh_binary`, `sh_test`, `sh_library`.
//! - [`rust`]: `rust_library`, `rust_binary`, `rust_test`, `rust_proc_macro`,
//!   `rust_static_library`, `cargo_build_script`.

pub mod filegroup;
pub mod genrule;
pub mod go;
pub mod make_vars;
pub mod runfiles;
pub mod rust;
pub mod settled_stat;
pub mod shell;

use kiln_graph::analysis::RuleImpl;
use kiln_graph::repository::RepositoryRule;

/// Every rule Kiln provides.
pub fn all_rules() -> Vec<Box<dyn RuleImpl>> {
    let mut rules: Vec<Box<dyn RuleImpl>> = vec![
        Box::new(genrule::Genrule),
        Box::new(filegroup::Filegroup),
        Box::new(filegroup::Alias),
        Box::new(shell::ShRule::binary()),
        Box::new(shell::ShRule::test()),
        Box::new(shell::ShRule::library()),
        Box::new(go::rules::GoRule(go::rules::Kind::Library)),
        Box::new(go::rules::GoRule(go::rules::Kind::Binary)),
        Box::new(go::rules::GoRule(go::rules::Kind::Test)),
    ];
    rules.extend(rust::rules());
    rules
}

/// Every repository rule Kiln provides (external repositories such as Go modules and crates),
/// consulted in order.
pub fn all_repository_rules() -> Vec<Box<dyn RepositoryRule>> {
    vec![
        Box::new(go::module_repo::GoModules),
        Box::new(rust::crates::CratesRepository),
    ]
}

/// The `PATH` Bazel gives actions with a strict action environment.
pub const ACTION_PATH: &str = "/bin:/usr/bin:/usr/local/bin";

/// Host tools a shell-based action may call: the shell itself and every tool on [`ACTION_PATH`]
/// (directories are digested by their executables' names, sizes and mtimes). Their digests go into
/// the action's platform properties, so a cache never serves an output made with other tools.
pub const SHELL_TOOLS: &[&str] = &["/bin/bash", "/bin", "/usr/bin", "/usr/local/bin"];
