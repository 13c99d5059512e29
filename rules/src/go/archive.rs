//! One compiled Go package ([`GoArchive`], the provider dependents read) and the analysis that
//! produces it: file selection, strict dependency checking (every import is the standard library
//! or a direct `deps` entry), embed configuration, and the compile action (plus the standard
//! library actions it needs).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_graph::action::Artifact;
use kiln_graph::analysis::{AnalysisContext, AnalysisError};
use kiln_graph::label::Label;

use super::action::go_action;
use super::compile::{self, CompileRequest};
use super::embed;
use super::env::GoEnv;
use super::godebug;
use super::gomod::GoMod;
use super::link::DepModule;
use super::package::GoFile;
use super::platform::GoPlatform;
use super::rules::Recipe;
use super::scan::Directive;

/// What it takes to compile a package again (for test variants).
#[derive(Clone, Debug)]
pub struct PackageSource {
    /// `.go` files to compile.
    pub go: Vec<GoFile>,
    /// `.s` files.
    pub asm: Vec<String>,
    /// Every source artifact the compile reads (Go, assembly, headers, embedded files).
    pub inputs: Vec<Artifact>,
    /// The embedcfg JSON, if the package embeds files.
    pub embedcfg: Option<String>,
    /// `-lang`.
    pub lang: String,
    /// `gc_goopts`.
    pub gc_flags: Vec<String>,
    /// Directory of the sources (exec path).
    pub src_dir: String,
    /// Whether some `.go` files are generated (their imports are unknown to analysis).
    pub generated: bool,
    /// The test main Kiln writes, which imports `testing/internal/testdeps` as the one
    /// `go test` writes does; any other package may not import the standard library's
    /// internal packages.
    pub test_main: bool,
}

/// A compiled Go package.
#[derive(Debug)]
pub struct GoArchive {
    /// The target that compiled it.
    pub label: Label,
    /// The path other packages import it by.
    pub importpath: String,
    /// The `-p` path (`main` for commands).
    pub package_path: String,
    /// Export data: what dependents' compiles read.
    pub export: Artifact,
    /// Link object: what links read.
    pub link: Artifact,
    /// Direct (non-standard) dependencies it was compiled against.
    pub deps: Vec<Arc<GoArchive>>,
    /// Standard-library packages it imports.
    pub std_imports: Vec<String>,
    /// Its sources, to compile it again against other dependencies.
    pub source: Arc<PackageSource>,
    /// The module providing it, when it is a dependency module (for `go version -m`).
    pub module: Option<DepModule>,
    /// `-X name=value` definitions (a `go_library`'s `x_defs`) for every binary that links it.
    pub x_defs: Vec<String>,
}

/// The provider `go_library` (and the compiled packages of `go_binary`/`go_test`) attach.
#[derive(Clone, Debug)]
pub struct GoInfo {
    /// The compiled package (for the host platform).
    pub archive: Arc<GoArchive>,
    /// The library's own sources and deps, for `embed` by another target.
    pub embed: Arc<Embeddable>,
    /// What it takes to compile the library for another platform.
    pub recipe: Arc<Recipe>,
}

/// What a `go_library` hands to targets that `embed` it.
#[derive(Clone, Debug, Default)]
pub struct Embeddable {
    /// Source artifacts (`srcs`).
    pub srcs: Vec<Artifact>,
    /// Embedded-file artifacts (`embedsrcs`).
    pub embedsrcs: Vec<Artifact>,
    /// `deps` providers.
    pub deps: Vec<GoInfo>,
    /// The import path.
    pub importpath: String,
    /// `x_defs` as written (own and embedded), qualified by the package that compiles them.
    pub x_defs: BTreeMap<String, String>,
}

/// Maps a source artifact to the host file analysis reads.
pub fn host_path(ctx: &AnalysisContext<'_>, artifact: &Artifact) -> PathBuf {
    if let Some(rest) = artifact.path.strip_prefix("external/") {
        let (name, rel) = rest.split_once('/').unwrap_or((rest, ""));
        if let Some(dir) = super::repository::repo_dir(ctx.scoped, name) {
            return dir.join(rel);
        }
    }
    ctx.workspace.root.join(&artifact.path)
}

/// A package ready to compile.
pub struct CompileInput<'a> {
    /// The target the package belongs to (owner of its actions, named in errors).
    pub label: Label,
    /// Import path.
    pub importpath: String,
    /// `-p` path.
    pub package_path: String,
    /// Sources.
    pub source: Arc<PackageSource>,
    /// Direct dependencies available to its imports.
    pub deps: &'a [Arc<GoArchive>],
    /// Dependencies that stand in for others (test variants), by import path.
    pub overrides: &'a HashMap<String, Arc<GoArchive>>,
    /// Exec-root-relative output stem (`<stem>.x`, `<stem>.a`).
    pub out_stem: String,
    /// The owning module, for dependency modules.
    pub module: Option<DepModule>,
    /// Progress text.
    pub mnemonic: &'static str,
    /// `-X` definitions every binary linking the package gets (see [`GoArchive::x_defs`]).
    pub x_defs: Vec<String>,
}

/// The module a package belongs to, for strict-deps hints: its go.mod and the
/// workspace-relative directory holding it (`""` at the root, or outside the main workspace).
#[derive(Clone, Debug)]
pub struct ModuleScope {
    /// The parsed go.mod.
    pub module: Arc<GoMod>,
    /// Workspace-relative directory of the go.mod.
    pub dir: String,
}

/// The label Gazelle would give the package with this import path, for strict-deps errors: a
/// package of the main module by its directory in the workspace, a required module's package in
/// that module's repository, anything else by guessing the module from the path.
pub fn suggested_label(importpath: &str, scope: Option<&ModuleScope>) -> String {
    let last = super::gazelle::library_name;
    // `//dir` names `//dir:<basename>`; spell the name out where Gazelle's differs (`/v2`, `.`).
    let package_label = |repo: &str, rel: &str, importpath: &str| {
        let name = last(importpath);
        if rel.rsplit('/').next() == Some(name.as_str()) {
            format!("{repo}//{rel}")
        } else {
            format!("{repo}//{rel}:{name}")
        }
    };
    if let Some(scope) = scope {
        let module = scope.module.module.as_str();
        if importpath == module {
            return format!("//{}:{}", scope.dir, last(importpath));
        }
        if let Some(rel) = importpath
            .strip_prefix(module)
            .and_then(|r| r.strip_prefix('/'))
        {
            return match scope.dir.as_str() {
                "" => package_label("", rel, importpath),
                dir => package_label("", &format!("{dir}/{rel}"), importpath),
            };
        }
        // The longest required module that contains the import.
        let required = scope
            .module
            .require
            .iter()
            .map(|r| r.path.as_str())
            .filter(|m| importpath == *m || importpath.starts_with(&format!("{m}/")))
            .max_by_key(|m| m.len());
        if let Some(m) = required {
            let repo = super::repository::repo_name(m);
            return match importpath[m.len()..].strip_prefix('/') {
                Some(rest) => package_label(&format!("@{repo}"), rest, importpath),
                None => format!("@{repo}//:{}", last(m)),
            };
        }
    }
    // Without module information, guess the module is the first three elements (host/org/repo).
    let parts: Vec<&str> = importpath.split('/').collect();
    let split = if parts.first().is_some_and(|h| h.contains('.')) {
        3.min(parts.len())
    } else {
        1
    };
    let repo = super::repository::repo_name(&parts[..split].join("/"));
    let rest = parts[split..].join("/");
    package_label(&format!("@{repo}"), &rest, importpath)
}

/// What a strict-deps error says about who provides `importpath`, for a target of the main
/// repository (`in_workspace`) or of an external one. A package of the main module is looked up
/// in its directory's BUILD file (loaded from disk, only on this error path): a `go_library`
/// there whose `importpath` is the import, or has none (inferred from go.mod and the directory,
/// hence the same), is named as it is. A required module's package is named as Kiln's generated
/// repository names it (Gazelle's names: that is what provides it); anything else is a guess, and
/// said to be one.
pub fn provider_hint(
    workspace_root: &Path,
    importpath: &str,
    scope: Option<&ModuleScope>,
    in_workspace: bool,
) -> String {
    let guess = suggested_label(importpath, scope);
    let required = scope.is_some_and(|s| {
        s.module
            .require
            .iter()
            .any(|r| importpath == r.path || importpath.starts_with(&format!("{}/", r.path)))
    });
    let dir = main_module_dir(importpath, scope).filter(|_| in_workspace);
    let Some(dir) = dir else {
        return if required {
            format!("add `{guess}`, which provides it")
        } else {
            format!(
                "add the target that provides it (`{guess}` if its module is required in go.mod and named as Gazelle names it)"
            )
        };
    };
    let fs = kiln_graph::load::DiskFs::new(workspace_root);
    let schemas: Vec<kiln_graph::rule_schema::RuleSchema> =
        crate::all_rules().iter().map(|r| r.schema()).collect();
    let request = kiln_graph::load::LoadRequest {
        package: dir.clone(),
        platform: kiln_graph::load::HostPlatform::host(),
    };
    let has_build_file = kiln_graph::load::BUILD_FILE_NAMES
        .iter()
        .any(|name| workspace_root.join(&dir).join(name).is_file());
    if !has_build_file {
        return format!(
            "`//{dir}` has no BUILD file yet; add one with a `go_library` for it (Gazelle would name it `{guess}`) and depend on it"
        );
    }
    let loaded = match kiln_graph::load::load_package(&request, &fs, &schemas) {
        Ok(loaded) => loaded,
        Err(_) => {
            return format!(
                "add the target that provides it (`//{dir}`'s BUILD file does not load, so Kiln cannot say which; Gazelle would name it `{guess}`)"
            )
        }
    };
    let providers: Vec<String> = loaded
        .package
        .targets
        .values()
        .filter(|t| t.kind == "go_library")
        .filter(|t| {
            t.string("importpath")
                .is_none_or(|p| p.is_empty() || p == importpath)
        })
        .map(|t| t.label.to_string())
        .collect();
    match providers.as_slice() {
        [] => format!(
            "no `go_library` in `//{dir}` declares it; add one (Gazelle would name it `{guess}`) and depend on it"
        ),
        [one] => format!("add `{one}`, which provides it"),
        many => format!(
            "add the one of {} that provides it",
            many.iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The workspace directory of a main-module package with this import path.
fn main_module_dir(importpath: &str, scope: Option<&ModuleScope>) -> Option<String> {
    let scope = scope?;
    let module = scope.module.module.as_str();
    let rel = if importpath == module {
        ""
    } else {
        importpath.strip_prefix(module)?.strip_prefix('/')?
    };
    Some(
        [scope.dir.as_str(), rel]
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/"),
    )
}

/// Compiles one package: checks its imports against `deps`, registers the standard-library actions
/// it needs and its compile action, and returns the archive.
pub fn compile_package(
    ctx: &mut AnalysisContext<'_>,
    env: &GoEnv,
    platform: &GoPlatform,
    input: CompileInput<'_>,
    scope: Option<&ModuleScope>,
) -> Result<Arc<GoArchive>, AnalysisError> {
    let mut by_path: BTreeMap<&str, &Arc<GoArchive>> = BTreeMap::new();
    for dep in input.deps {
        by_path.insert(dep.importpath.as_str(), dep);
    }
    let mut std_imports = Vec::new();
    let mut used: Vec<Arc<GoArchive>> = Vec::new();
    let mut seen = HashSet::new();
    let mut missing = Vec::new();
    let mut forbidden = Vec::new();
    for file in &input.source.go {
        for import in &file.info.imports {
            let path = import.path.as_str();
            if !seen.insert(path.to_string()) {
                continue;
            }
            if path == "unsafe" {
                continue;
            }
            if let Some(over) = input.overrides.get(path) {
                used.push(Arc::clone(over));
            } else if let Some(dep) = by_path.get(path) {
                used.push(Arc::clone(dep));
            } else if platform.std.is_std(path) {
                if is_internal(path) && !input.source.test_main {
                    // cmd/go's rule: only the standard library (and the test main cmd/go
                    // generates, which imports `testing/internal/testdeps`) may import the
                    // standard library's internal packages.
                    forbidden.push(format!(
                        "{}:{}: use of internal package `{path}` not allowed",
                        file.path, import.line
                    ));
                    continue;
                }
                std_imports.push(path.to_string());
            } else {
                missing.push(format!(
                    "{}:{}: import `{path}` is not provided by `deps`; {}",
                    file.path,
                    import.line,
                    provider_hint(
                        &ctx.workspace.root,
                        path,
                        scope,
                        ctx.target.label.repo.is_empty()
                    )
                ));
            }
        }
    }
    let directives: Vec<(&str, &[Directive])> = input
        .source
        .go
        .iter()
        .map(|f| (f.path.as_str(), f.info.go_debug.as_slice()))
        .collect();
    let bad = godebug::check_directives(
        &env.sdk.godebug_table,
        &env.sdk.sandbox.version,
        &directives,
    );
    if !bad.is_empty() {
        return Err(ctx.error(format!(
            "Invalid `//go:debug` directives in `{}`:\n  {}",
            input.label,
            bad.join("\n  ")
        )));
    }
    if !forbidden.is_empty() {
        return Err(ctx.error(format!(
            "`{}` imports the standard library's internal packages:\n  {}",
            input.label,
            forbidden.join("\n  ")
        )));
    }
    if !missing.is_empty() {
        return Err(ctx.error(format!(
            "Missing strict dependencies of `{}`:\n  {}",
            input.label,
            missing.join("\n  ")
        )));
    }
    if input.source.generated {
        generated_imports(platform, &input, &mut used, &mut std_imports)
            .map_err(|e| ctx.error(e))?;
    }
    let std_actions = platform
        .std
        .actions(&std_imports, &input.label)
        .map_err(|e| ctx.error(e))?;
    for action in std_actions {
        ctx.register(action);
    }
    let mut imports = Vec::new();
    let mut inputs: Vec<Artifact> = input.source.inputs.clone();
    for path in &std_imports {
        let pkg = platform.std.package(path).map_err(|e| ctx.error(e))?;
        imports.push((path.clone(), pkg.export.path.clone()));
        inputs.push(pkg.export.clone());
    }
    for dep in &used {
        imports.push((dep.package_path.clone(), dep.export.path.clone()));
        inputs.push(dep.export.clone());
    }
    imports.sort();
    let export = Artifact::derived(format!("{}.x", input.out_stem));
    let link = Artifact::derived(format!("{}.a", input.out_stem));
    let req = CompileRequest {
        package_path: input.package_path.clone(),
        go_files: input.source.go.iter().map(|f| f.path.clone()).collect(),
        s_files: input.source.asm.clone(),
        src_dir: input.source.src_dir.clone(),
        imports,
        importmaps: Vec::new(),
        embedcfg: input.source.embedcfg.clone(),
        lang: input.source.lang.clone(),
        std: false,
        gc_flags: input.source.gc_flags.clone(),
        out_export: export.path.clone(),
        out_link: link.path.clone(),
    };
    let for_platform = if platform.is_host {
        String::new()
    } else {
        format!(" ({})", platform.name())
    };
    let action = go_action(
        &env.sdk,
        &platform.sandbox,
        &input.label,
        input.mnemonic,
        format!(
            "Compiling Go package {} for {}{for_platform}",
            input.importpath, input.label
        ),
        compile::script(&req, &platform.sandbox),
        &inputs,
        &[(&export, false), (&link, false)],
    );
    ctx.register(action);
    Ok(Arc::new(GoArchive {
        label: input.label,
        importpath: input.importpath,
        package_path: input.package_path,
        export,
        link,
        deps: used,
        std_imports,
        source: input.source,
        module: input.module,
        x_defs: input.x_defs,
    }))
}

/// `x_defs` as `name=value` for the linker's `-X`: a key without a dot names a variable of
/// `package` (the package's import path, or `main`), as rules_go qualifies it.
pub fn qualify_x_defs(x_defs: &BTreeMap<String, String>, package: &str) -> Vec<String> {
    x_defs
        .iter()
        .map(|(k, v)| {
            if k.contains('.') {
                format!("{k}={v}")
            } else {
                format!("{package}.{k}={v}")
            }
        })
        .collect()
}

/// What a package with generated `.go` files may import, since analysis cannot read their
/// imports: every direct dependency, and every public standard-library package the target links
/// anyway (the closure of its own and its dependencies' standard-library imports).
fn generated_imports(
    platform: &GoPlatform,
    input: &CompileInput<'_>,
    used: &mut Vec<Arc<GoArchive>>,
    std_imports: &mut Vec<String>,
) -> Result<(), String> {
    for dep in input.deps {
        let dep = input.overrides.get(&dep.importpath).unwrap_or(dep);
        if !used.iter().any(|u| u.package_path == dep.package_path) {
            used.push(Arc::clone(dep));
        }
    }
    let mut roots = std_imports.clone();
    for archive in link_closure(used, input.overrides) {
        roots.extend(archive.std_imports.iter().cloned());
    }
    for pkg in platform.std.closure(&roots)? {
        let public =
            !pkg.path.starts_with("vendor/") && !pkg.path.split('/').any(|e| e == "internal");
        if public && !std_imports.contains(&pkg.path) {
            std_imports.push(pkg.path.clone());
        }
    }
    std_imports.sort();
    Ok(())
}

/// The embedcfg for `go` files' patterns against `embedsrcs` (package-relative paths).
pub fn embed_config(
    go: &[GoFile],
    embedsrcs: &[Artifact],
    package_dir: &str,
) -> Result<Option<String>, String> {
    let patterns: Vec<(String, String)> = go
        .iter()
        .flat_map(|f| {
            f.info
                .embeds
                .iter()
                .map(move |(p, line)| (p.clone(), format!("{}:{line}", f.path)))
        })
        .collect();
    if patterns.is_empty() {
        return Ok(None);
    }
    let prefix = if package_dir.is_empty() {
        String::new()
    } else {
        format!("{package_dir}/")
    };
    let files: Vec<(String, String)> = embedsrcs
        .iter()
        .map(|a| {
            let rel = a
                .path
                .strip_prefix(&prefix)
                .or_else(|| {
                    // Generated files: relative to the package's output directory.
                    a.short_path().strip_prefix(&prefix)
                })
                .unwrap_or(&a.path)
                .to_string();
            (rel, a.path.clone())
        })
        .collect();
    embed::embedcfg(&patterns, &files).map(Some)
}

/// Every package a binary links (dependencies first, each package path once), with `overrides`
/// standing in for the packages they name.
pub fn link_closure(
    roots: &[Arc<GoArchive>],
    overrides: &HashMap<String, Arc<GoArchive>>,
) -> Vec<Arc<GoArchive>> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    fn visit(
        a: &Arc<GoArchive>,
        overrides: &HashMap<String, Arc<GoArchive>>,
        seen: &mut HashSet<String>,
        out: &mut Vec<Arc<GoArchive>>,
    ) {
        let a = overrides.get(&a.importpath).unwrap_or(a);
        if !seen.insert(a.package_path.clone()) {
            return;
        }
        for d in &a.deps {
            visit(d, overrides, seen, out);
        }
        out.push(Arc::clone(a));
    }
    for r in roots {
        visit(r, overrides, &mut seen, &mut out);
    }
    out
}

/// Whether an import path has an `internal` element (`internal/abi`, `net/http/internal`).
fn is_internal(path: &str) -> bool {
    path.split('/').any(|part| part == "internal")
}

#[cfg(test)]
mod suggested_label_tests {
    use super::*;
    use crate::go::gomod::ModuleVersion;

    fn scope(dir: &str) -> ModuleScope {
        let require = ["go.uber.org/zap", "github.com/a/b/v2", "gopkg.in/yaml.v3"]
            .iter()
            .map(|path| ModuleVersion {
                path: path.to_string(),
                version: "v1.0.0".into(),
            })
            .collect();
        ModuleScope {
            module: Arc::new(GoMod {
                module: "example.com/m".into(),
                require,
                ..GoMod::default()
            }),
            dir: dir.into(),
        }
    }

    #[test]
    fn main_module_packages_are_named_by_their_directory_in_the_workspace() {
        let root = scope("");
        assert_eq!(
            suggested_label("example.com/m/greet", Some(&root)),
            "//greet"
        );
        assert_eq!(suggested_label("example.com/m", Some(&root)), "//:m");
        let nested = scope("go");
        assert_eq!(
            suggested_label("example.com/m/greet", Some(&nested)),
            "//go/greet"
        );
        assert_eq!(suggested_label("example.com/m", Some(&nested)), "//go:m");
    }

    #[test]
    fn required_modules_give_their_repository_whatever_the_shape_of_their_path() {
        let s = scope("");
        assert_eq!(
            suggested_label("go.uber.org/zap/zapcore", Some(&s)),
            "@org_uber_go_zap//zapcore"
        );
        assert_eq!(
            suggested_label("github.com/a/b/v2/sub", Some(&s)),
            "@com_github_a_b_v2//sub"
        );
        assert_eq!(
            suggested_label("gopkg.in/yaml.v3", Some(&s)),
            "@in_gopkg_yaml_v3//:yaml_v3"
        );
        assert_eq!(
            suggested_label("github.com/a/b/v2", Some(&s)),
            "@com_github_a_b_v2//:b"
        );
        assert_eq!(
            suggested_label("github.com/a/b/v2/sub/v3", Some(&s)),
            "@com_github_a_b_v2//sub/v3:sub"
        );
        // Not required anywhere: the host/org/repo guess.
        assert_eq!(
            suggested_label("github.com/x/y/z", Some(&s)),
            "@com_github_x_y//z"
        );
    }

    #[test]
    fn internal_packages_are_recognized_by_any_internal_element() {
        assert!(is_internal("internal/abi"));
        assert!(is_internal("net/http/internal/ascii"));
        assert!(is_internal("crypto/internal"));
        assert!(!is_internal("net/http"));
        assert!(!is_internal("internals/x"));
    }
}
