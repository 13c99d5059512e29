//! Loading: evaluating one package's BUILD file (and the `.bzl` files it loads) with the
//! `starlark` crate into [`Target`]s.
//!
//! The loader does no I/O of its own: it reads through [`PackageFs`] ([`DiskFs`] for the real
//! workspace, [`MemFs`] for tests). Rules come in as [`RuleSchema`]s; the loader knows no
//! language. Besides the rules, files see Bazel's `glob`, `package`, `exports_files`, `select`
//! (resolved for the host, Kiln having one configuration), `package_name`, `repository_name`,
//! `native`, `struct`, `fail`, `print`, `licenses` and `config_setting` (accepted, no effect).
//!
//! A load reports every problem it finds, each at its file:line:col ([`LoadErrors`]), and
//! returns [`LoadDeps`]: the files it read and a fingerprint of every directory a `glob` listed,
//! so a caller can memoize packages and re-evaluate one only when one of those changed.
//!
//! Architecture invariant: nothing here panics on user input; a panic inside the interpreter is
//! caught and reported as an internal error of the package.

mod builtins;
mod context;
mod diag;
mod evaluate;
mod external;
mod fs;
mod glob;
mod rule;
mod select;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Stack of the thread that evaluates a package (reserved, committed only as used).
const EVAL_STACK_BYTES: usize = 256 << 20;

use serde::{Deserialize, Serialize};

use self::context::{PackageBuild, PackageState};
pub use self::diag::{Diagnostic, DiagnosticKind, LoadErrors};
use self::evaluate::Session;
pub use self::evaluate::{repo_file_digest, RepoRoots};
use self::fs::{build_file_in, join};
pub use self::fs::{
    discover_packages, is_tagged_cache_dir, DiskFs, MemFs, PackageFs, BUILD_FILE_NAMES,
    CACHEDIR_TAG,
};
pub use self::glob::listing_fingerprint;
use self::glob::Listings;
use crate::label::Label;
use crate::rule_schema::RuleSchema;
use crate::target::{Location, Target};

/// The platform `select()` resolves against.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HostPlatform {
    /// `linux`, `macos`, `windows`, ...
    pub os: String,
    /// `x86_64` or `aarch64`, ...
    pub cpu: String,
}

impl HostPlatform {
    /// The platform this process runs on.
    pub fn host() -> HostPlatform {
        let os = match std::env::consts::OS {
            "macos" | "ios" => "macos",
            other => other,
        };
        HostPlatform {
            os: os.to_string(),
            cpu: std::env::consts::ARCH.to_string(),
        }
    }
}

/// Which package to load, for which platform.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LoadRequest {
    /// Package path, e.g. `a/b` (empty for the root package).
    pub package: String,
    /// The platform `select()` resolves against.
    pub platform: HostPlatform,
}

/// A loaded package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// Package path, e.g. `a/b`.
    pub name: String,
    /// Workspace-relative path of its BUILD file.
    pub build_file: String,
    /// Its rule targets by name.
    pub targets: BTreeMap<String, Target>,
    /// The `package(default_visibility = ...)` labels (empty when not set).
    pub default_visibility: Vec<Label>,
    /// Files named by `exports_files`, with their visibility and the call's location.
    pub exported_files: BTreeMap<String, (Vec<Label>, Location)>,
}

/// What a package's evaluation read, for memoization: re-evaluate only when one changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadDeps {
    /// The BUILD file and every `.bzl` file loaded (directly or not), workspace-relative, sorted.
    pub files: Vec<String>,
    /// Every directory listed (by `glob`, and the subdirectories it checked for BUILD files),
    /// with [`listing_fingerprint`] of its listing, sorted by directory.
    pub globbed_dirs: Vec<(String, String)>,
    /// Files whose absence decided the result: the preferred BUILD file names that do not exist
    /// next to the one used. One appearing changes the package.
    pub absent_files: Vec<String>,
}

/// A loaded package and what its evaluation read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadedPackage {
    /// The package.
    pub package: Package,
    /// Its dependencies, for memoization.
    pub deps: LoadDeps,
}

/// Loads one package: finds its BUILD file (`BUILD.kiln`, else `BUILD.bazel`, else `BUILD`),
/// evaluates it with `rules` as the available rules, and returns its targets.
pub fn load_package(
    req: &LoadRequest,
    fs: &dyn PackageFs,
    rules: &[RuleSchema],
) -> Result<LoadedPackage, LoadErrors> {
    load_package_with_repos(req, fs, rules, None)
}

/// [`load_package`], where `load()` may also read `.bzl` files of the external repositories
/// `repo_roots` finds (recorded in [`LoadDeps::files`] by label, see [`repo_file_digest`]).
pub fn load_package_with_repos(
    req: &LoadRequest,
    fs: &dyn PackageFs,
    rules: &[RuleSchema],
    repo_roots: Option<RepoRoots<'_>>,
) -> Result<LoadedPackage, LoadErrors> {
    let fail = |message: String, kind| LoadErrors {
        package: req.package.clone(),
        diagnostics: vec![Diagnostic {
            location: None,
            message,
            kind,
        }],
    };
    if !req.package.is_empty() {
        Label::parse(&format!("//{}:x", req.package), "").map_err(|e| {
            fail(
                format!("Invalid package `{}`: {e}", req.package),
                DiagnosticKind::User,
            )
        })?;
    }
    let entries = fs.list_dir(&req.package).map_err(|e| {
        fail(
            format!("No such package `//{}`: {e}", req.package),
            DiagnosticKind::User,
        )
    })?;
    let Some(build_name) = build_file_in(&entries) else {
        return Err(fail(
            format!(
                "No such package `//{}`: no BUILD.kiln, BUILD.bazel or BUILD file in `{}`",
                req.package,
                if req.package.is_empty() {
                    "."
                } else {
                    &req.package
                }
            ),
            DiagnosticKind::User,
        ));
    };
    let build_file = join(&req.package, build_name);
    let absent_files = BUILD_FILE_NAMES
        .iter()
        .take_while(|n| **n != build_name)
        .map(|n| join(&req.package, n))
        .collect();
    let source = fs.read_file(&build_file).map_err(|e| {
        fail(
            format!("Cannot read `{build_file}`: {e}"),
            DiagnosticKind::Environment,
        )
    })?;

    if let Some(line) = too_deep(&source) {
        return Err(LoadErrors {
            package: req.package.clone(),
            diagnostics: vec![Diagnostic::user(
                Some(Location {
                    file: build_file,
                    line,
                    column: 1,
                }),
                format!("Brackets nested deeper than {MAX_NESTING} levels"),
            )],
        });
    }
    // The parser and compiler recurse on nesting; a thread with a large (lazily committed) stack
    // turns deeply nested input into a diagnostic instead of a stack overflow.
    let evaluate = || {
        let session = Session::new(fs, rules, &req.platform, repo_roots);
        let package = PackageBuild {
            name: req.package.clone(),
            build_file: build_file.clone(),
            state: RefCell::new(PackageState::default()),
            listings: RefCell::new(Listings::new(fs)),
        };
        session.eval_build(package, source).map(|built| {
            let state = built.package.state.into_inner();
            let mut files: Vec<String> = built.bzl_files.into_iter().collect();
            files.push(build_file.clone());
            files.sort();
            let deps = LoadDeps {
                files,
                globbed_dirs: built.package.listings.borrow().fingerprints(),
                absent_files,
            };
            let package = Package {
                name: req.package.clone(),
                build_file: build_file.clone(),
                targets: state.targets,
                default_visibility: state.default_visibility.unwrap_or_default(),
                exported_files: state.exported_files,
            };
            LoadedPackage { package, deps }
        })
    };
    let result = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name(format!("load //{}", req.package))
            .stack_size(EVAL_STACK_BYTES)
            .spawn_scoped(scope, || catch_unwind(AssertUnwindSafe(evaluate)))
            .map_err(|_| ())
            .and_then(|handle| handle.join().map_err(|_| ()))
            .and_then(|caught| caught.map_err(|_| ()))
    });
    match result {
        Ok(Ok(loaded)) => Ok(loaded),
        Ok(Err(diagnostics)) => Err(LoadErrors {
            package: req.package.clone(),
            diagnostics,
        }),
        Err(_) => Err(fail(
            format!(
                "Internal error: the Starlark interpreter panicked while loading `{build_file}`"
            ),
            DiagnosticKind::Internal,
        )),
    }
}

/// Deepest bracket nesting accepted (far beyond any real BUILD file, well within the stack).
const MAX_NESTING: usize = 10_000;

/// The line where brackets first nest deeper than [`MAX_NESTING`], counting every bracket
/// (even in strings: only pathological files come near the limit).
fn too_deep(source: &str) -> Option<u32> {
    let (mut depth, mut line) = (0usize, 1u32);
    for c in source.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            '\n' => line += 1,
            _ => {}
        }
        if depth > MAX_NESTING {
            return Some(line);
        }
    }
    None
}

/// Whether a target of `target_pkg` with visibility `target_visibility` may be used from
/// `from_pkg`: always within the same package, else when the list holds `//visibility:public`,
/// `//from_pkg:__pkg__`, or `//p:__subpackages__` for `p` equal to or above `from_pkg`.
/// Packages are package directories (`external/<repo>/<package>` in another repository), and so
/// are the labels of the list: `@repo//p:__subpackages__` (a visibility written in `repo`'s BUILD
/// file as `//p:__subpackages__`) covers `repo`'s packages under `p`, and no other repository's.
pub fn is_visible(target_visibility: &[Label], target_pkg: &str, from_pkg: &str) -> bool {
    if target_pkg == from_pkg {
        return true;
    }
    target_visibility.iter().any(|l| {
        if l.is_main_repo() && l.package == "visibility" {
            return l.name == "public";
        }
        let dir = l.package_dir();
        let p = dir.to_string_lossy();
        match l.name.as_str() {
            "__pkg__" => p == from_pkg,
            "__subpackages__" => {
                p.is_empty()
                    || from_pkg == p
                    || from_pkg
                        .strip_prefix(&*p)
                        .is_some_and(|rest| rest.starts_with('/'))
            }
            _ => false,
        }
    })
}

impl Package {
    /// The package as it is inside external repository `repo`: labels the BUILD file wrote without
    /// a repository (`//a:b`, `:b`) name targets of `repo`, as Bazel resolves them there, and file
    /// locations are shown under `external/<repo>/`. `//visibility:...` labels stay as written.
    pub fn in_repository(mut self, repo: &str) -> Package {
        let rebase = |label: &mut Label| {
            if label.is_main_repo() && label.package != "visibility" {
                label.repo = repo.to_string();
            }
        };
        let prefix = format!("{}/{repo}/", crate::repository::EXTERNAL_DIR);
        self.build_file = format!("{prefix}{}", self.build_file);
        for target in self.targets.values_mut() {
            rebase(&mut target.label);
            target.visibility.iter_mut().for_each(rebase);
            target.location.file = format!("{prefix}{}", target.location.file);
            for value in target.attrs.values_mut() {
                match value {
                    crate::target::AttrValue::Label(l) => rebase(l),
                    crate::target::AttrValue::LabelList(list) => list.iter_mut().for_each(rebase),
                    crate::target::AttrValue::LabelKeyedStringDict(dict) => {
                        dict.iter_mut().for_each(|(l, _)| rebase(l))
                    }
                    _ => {}
                }
            }
        }
        self.default_visibility.iter_mut().for_each(rebase);
        for (visibility, location) in self.exported_files.values_mut() {
            visibility.iter_mut().for_each(rebase);
            location.file = format!("{prefix}{}", location.file);
        }
        self
    }
}
