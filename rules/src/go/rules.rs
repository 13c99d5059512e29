//! `go_library`, `go_binary` and `go_test` with rules_go's attribute names. `goos`/`goarch` on a
//! `go_binary` or `go_test` build it, and everything it links, for that platform (see
//! `platform.rs`); on a `go_library` they are accepted and ignored, as rules_go has no such
//! attributes there.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use kiln_graph::action::Artifact;
use kiln_graph::analysis::{
    label_dir, AnalysisContext, AnalysisError, DefaultInfo, Providers, RuleImpl,
};
use kiln_graph::label::Label;
use kiln_graph::rule_schema::{AttrKind, AttrSchema, RuleSchema};

use super::archive::{
    compile_package, embed_config, host_path, qualify_x_defs, CompileInput, Embeddable, GoArchive,
    GoInfo, ModuleScope, PackageSource,
};
use super::env::GoEnv;
use super::gomod::GoMod;
use super::link::DepModule;
use super::package::{self, PackageFiles};
use super::platform::GoPlatform;
use super::testbin;

const ATTRS: &[AttrSchema] = &[
    AttrSchema::optional("srcs", AttrKind::LabelList),
    AttrSchema::optional("deps", AttrKind::LabelList),
    AttrSchema::optional("embed", AttrKind::LabelList),
    AttrSchema::optional("embedsrcs", AttrKind::LabelList),
    AttrSchema::optional("data", AttrKind::LabelList),
    AttrSchema::optional("importpath", AttrKind::String),
    AttrSchema::optional("importmap", AttrKind::String),
    AttrSchema::optional("importpath_aliases", AttrKind::StringList),
    AttrSchema::optional("x_defs", AttrKind::StringDict),
    AttrSchema::optional("gc_goopts", AttrKind::StringList),
    AttrSchema::optional("gc_linkopts", AttrKind::StringList),
    AttrSchema::optional("goos", AttrKind::String),
    AttrSchema::optional("goarch", AttrKind::String),
    AttrSchema::optional("pure", AttrKind::String),
    AttrSchema::optional("static", AttrKind::String),
    AttrSchema::optional("race", AttrKind::String),
    AttrSchema::optional("msan", AttrKind::String),
    AttrSchema::optional("gotags", AttrKind::StringList),
    AttrSchema::optional("linkmode", AttrKind::String),
    AttrSchema::optional("cgo", AttrKind::Bool),
    AttrSchema::optional("cdeps", AttrKind::LabelList),
    AttrSchema::optional("copts", AttrKind::StringList),
    AttrSchema::optional("clinkopts", AttrKind::StringList),
    AttrSchema::optional("out", AttrKind::String),
    AttrSchema::optional("rundir", AttrKind::String),
];

/// Which of the three rules.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// `go_library`
    Library,
    /// `go_binary`
    Binary,
    /// `go_test`
    Test,
}

/// One of the Go rules.
pub struct GoRule(pub Kind);

impl RuleImpl for GoRule {
    fn schema(&self) -> RuleSchema {
        RuleSchema {
            name: match self.0 {
                Kind::Library => "go_library",
                Kind::Binary => "go_binary",
                Kind::Test => "go_test",
            },
            attrs: ATTRS,
            test: self.0 == Kind::Test,
            executable: self.0 != Kind::Library,
        }
    }

    fn analyze(&self, ctx: &mut AnalysisContext<'_>) -> Result<Providers, AnalysisError> {
        refuse_unsupported_modes(ctx)?;
        let env = GoEnv::get(ctx)?;
        let platform = if self.0 == Kind::Library {
            Arc::clone(&env.host)
        } else {
            target_platform(ctx, &env)?
        };
        let unit = Unit::gather(ctx, &env, &platform)?;
        match self.0 {
            Kind::Library => library(ctx, &env, unit),
            Kind::Binary => binary(ctx, &env, &platform, unit),
            Kind::Test => testbin::test(ctx, &env, &platform, unit),
        }
    }
}

/// The platform of a `go_binary`/`go_test`: `goos`/`goarch`, each defaulting to the host's,
/// with the build tags of `gotags` (which, as in rules_go, hold for every package it links).
fn target_platform(
    ctx: &AnalysisContext<'_>,
    env: &GoEnv,
) -> Result<Arc<GoPlatform>, AnalysisError> {
    let attr = |name: &str, host: &str| {
        ctx.target
            .string(name)
            .filter(|s| !s.is_empty() && *s != "auto")
            .unwrap_or(host)
            .to_string()
    };
    let goos = attr("goos", &env.host.build.goos);
    let goarch = attr("goarch", &env.host.build.goarch);
    let mut tags = ctx.target.strings("gotags");
    if let Some(bad) = tags.iter().find(|t| !is_build_tag(t)) {
        return Err(ctx.error(format!(
            "`gotags` entry `{bad}` is not a build tag: expected letters, digits, `_` and `.`"
        )));
    }
    tags.sort();
    tags.dedup();
    env.platform(&goos, &goarch, &tags, ctx.host)
        .map_err(|e| ctx.error(format!("`{}`: {e}", ctx.target.label)))
}

/// Refuses rules_go modes Kiln cannot build rather than ignore them: everything is pure Go
/// (`CGO_ENABLED=0`, so statically linked), the race detector and msan need cgo, and only
/// ordinary executables are linked.
fn refuse_unsupported_modes(ctx: &AnalysisContext<'_>) -> Result<(), AnalysisError> {
    let value = |name: &str| ctx.target.string(name).unwrap_or_default().to_string();
    let no_cgo = "Kiln builds Go with CGO_ENABLED=0";
    if ctx.target.bool("cgo") || !ctx.target.labels("cdeps").is_empty() {
        return Err(ctx.error(format!(
            "`cgo`/`cdeps` are not supported: {no_cgo}; remove them (a package that needs cgo cannot be built yet)"
        )));
    }
    if value("pure") == "off" {
        return Err(ctx.error(format!(
            "`pure = \"off\"` asks for cgo, which is not supported: {no_cgo}; use \"on\" or \"auto\""
        )));
    }
    for mode in ["race", "msan"] {
        if value(mode) == "on" {
            return Err(ctx.error(format!(
                "`{mode} = \"on\"` is not supported: the {mode} runtime needs cgo, and {no_cgo}; use \"off\" or \"auto\""
            )));
        }
    }
    if !value("rundir").is_empty() {
        return Err(ctx.error(
            "`rundir` is not supported: a go_test runs in its package's directory in the runfiles tree, as rules_go's default does; remove it",
        ));
    }
    let linkmode = value("linkmode");
    if !matches!(linkmode.as_str(), "" | "auto" | "normal") {
        return Err(ctx.error(format!(
            "`linkmode = \"{linkmode}\"` is not supported: Kiln links ordinary executables; expected \"normal\" or \"auto\""
        )));
    }
    Ok(())
}

/// Whether `tag` can be a build tag (what `go build -tags` accepts).
fn is_build_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// What it takes to compile a `go_library` again for another platform: its unit as gathered
/// for the host (sources unselected, dependencies' own recipes) and its module.
#[derive(Debug)]
pub struct Recipe {
    /// The library.
    pub label: Label,
    /// Its unit, selected for the host.
    pub unit: Unit,
    /// The module providing it, when it is a dependency module.
    pub module: Option<DepModule>,
}

/// Everything a Go target's attributes (and `embed`ded libraries) contribute, for one platform.
#[derive(Clone, Debug)]
pub struct Unit {
    /// Sources, with embedded libraries' sources.
    pub srcs: Vec<Artifact>,
    /// Readable sources: (action path, host path), before selection.
    pub host_srcs: Vec<(String, PathBuf)>,
    /// Generated `.go` sources (action paths).
    pub generated: Vec<String>,
    /// `embedsrcs` (own and embedded).
    pub embedsrcs: Vec<Artifact>,
    /// Dependency archives for the unit's platform (own and embedded libraries').
    pub deps: Vec<Arc<GoArchive>>,
    /// The providers of those dependencies (to compile them for another platform).
    pub dep_infos: Vec<GoInfo>,
    /// Selected files.
    pub files: PackageFiles,
    /// Import path.
    pub importpath: String,
    /// The governing go.mod.
    pub module: Option<Arc<GoMod>>,
    /// Workspace-relative directory of that go.mod (`""` at the root or outside the workspace).
    pub module_dir: String,
    /// `-lang`.
    pub lang: String,
    /// The package's exec-path directory.
    pub dir: String,
    /// `gc_goopts`.
    pub gc_flags: Vec<String>,
    /// `x_defs` as written: embedded libraries' first, the target's own over them.
    pub x_defs: BTreeMap<String, String>,
}

impl Unit {
    fn gather(
        ctx: &mut AnalysisContext<'_>,
        env: &GoEnv,
        platform: &GoPlatform,
    ) -> Result<Unit, AnalysisError> {
        let mut srcs = ctx.files("srcs")?;
        let mut embedsrcs = ctx.files("embedsrcs")?;
        let mut dep_infos: Vec<GoInfo> = Vec::new();
        let mut embedded_importpath = None;
        let mut x_defs = BTreeMap::new();
        for label in ctx.target.labels("embed") {
            let info = ctx
                .dep(&label)?
                .get::<GoInfo>()
                .ok_or_else(|| ctx.error(format!("`{label}` in `embed` is not a `go_library`")))?;
            srcs.extend(info.embed.srcs.iter().cloned());
            embedsrcs.extend(info.embed.embedsrcs.iter().cloned());
            dep_infos.extend(info.embed.deps.iter().cloned());
            embedded_importpath.get_or_insert(info.embed.importpath.clone());
            x_defs.extend(info.embed.x_defs.clone());
        }
        x_defs.extend(ctx.target.string_dict("x_defs"));
        for label in ctx.target.labels("deps") {
            let info = ctx
                .dep(&label)?
                .get::<GoInfo>()
                .ok_or_else(|| ctx.error(format!("`{label}` in `deps` is not a Go library")))?;
            dep_infos.push(info.clone());
        }
        // Generated Go files cannot be read while analyzing: they are compiled as they come.
        let generated: Vec<String> = srcs
            .iter()
            .filter(|a| !a.source && a.path.ends_with(".go"))
            .map(|a| a.path.clone())
            .collect();
        if let Some(asm) = srcs.iter().find(|a| !a.source && a.path.ends_with(".s")) {
            return Err(ctx.error(format!(
                "`{}` is generated assembly; Kiln reads assembly build constraints while analyzing, so generated `.s` files in `srcs` are not supported yet",
                asm.short_path()
            )));
        }
        let host: Vec<(String, PathBuf)> = srcs
            .iter()
            .filter(|a| a.source)
            .map(|a| (a.path.clone(), host_path(ctx, a)))
            .collect();
        for (_, h) in &host {
            ctx.host.observe(h);
        }
        let files = select(ctx, platform, &host, &generated)?;
        // The content each header came from: right after an edit the stat alone cannot vouch
        // for it, and the no-op check compares the content instead.
        for (_, h) in &host {
            if let Some(digest) = super::header_memo::scanned_digest(h) {
                ctx.host.observe_content(h, digest);
            }
        }
        let dir = label_dir(&ctx.target.label);
        let (host_dir, stop) = if ctx.target.label.repo.is_empty() {
            (
                ctx.workspace.root.join(&ctx.target.label.package),
                ctx.workspace.root.clone(),
            )
        } else {
            let repo = super::repository::repo_dir(ctx.scoped, &ctx.target.label.repo)
                .unwrap_or_else(|| ctx.workspace.root.join(&dir));
            (repo.join(&ctx.target.label.package), repo)
        };
        let found = env
            .module_for(&host_dir, &stop, ctx.host)
            .map_err(|e| ctx.error(e))?;
        let importpath = match ctx.target.string("importpath").filter(|s| !s.is_empty()) {
            Some(p) => p.to_string(),
            None => match (embedded_importpath, &found) {
                (Some(p), _) if !p.is_empty() => p,
                (_, Some((root, m))) => {
                    let rel = host_dir
                        .strip_prefix(root)
                        .map(|r| r.to_string_lossy().to_string())
                        .unwrap_or_default();
                    if rel.is_empty() {
                        m.module.clone()
                    } else {
                        format!("{}/{rel}", m.module)
                    }
                }
                _ => String::new(),
            },
        };
        if let Some((root, wanted)) = found
            .as_ref()
            .and_then(|(root, m)| Some((root, m.newer_than(&env.sdk.sandbox.version)?)))
        {
            return Err(ctx.error(format!(
                "`{}` requires go >= {wanted}, and the Go SDK is {} (as `go build` refuses it): set `[go] version = \"{wanted}\"` (or later) in kiln.toml, or put a newer Go on PATH",
                root.join("go.mod").display(),
                env.sdk.sandbox.version
            )));
        }
        let lang = found.as_ref().map(|(_, m)| m.lang()).unwrap_or_else(|| {
            if ctx.target.label.repo.is_empty() {
                format!("go1.{}", env.sdk.minor())
            } else {
                // A dependency module without go.mod: cmd/go's default language version.
                GoMod::default().lang()
            }
        });
        let mut deps = Vec::new();
        for info in imported(&files, &dep_infos, platform) {
            deps.push(platform.archive(ctx, env, info)?);
        }
        Ok(Unit {
            srcs,
            host_srcs: host,
            generated,
            embedsrcs,
            deps,
            dep_infos,
            files,
            importpath,
            module_dir: found
                .as_ref()
                .and_then(|(root, _)| root.strip_prefix(&ctx.workspace.root).ok())
                .map(|rel| rel.to_string_lossy().to_string())
                .unwrap_or_default(),
            module: found.map(|(_, m)| m),
            lang,
            dir,
            gc_flags: ctx.target.strings("gc_goopts"),
            x_defs,
        })
    }

    /// This unit (of library `label`, gathered for the host) for `platform`: its files selected
    /// again and its dependencies compiled for it.
    pub fn for_platform(
        &self,
        ctx: &mut AnalysisContext<'_>,
        env: &GoEnv,
        platform: &GoPlatform,
        label: &Label,
    ) -> Result<Unit, AnalysisError> {
        let files = select(ctx, platform, &self.host_srcs, &self.generated)
            .map_err(|e| ctx.error(format!("`{label}` for {}: {}", platform.name(), e.message)))?;
        let mut deps = Vec::new();
        for info in imported(&files, &self.dep_infos, platform) {
            deps.push(platform.archive(ctx, env, info)?);
        }
        Ok(Unit {
            files,
            deps,
            ..self.clone()
        })
    }

    /// The package's module and where its go.mod sits, for error messages.
    pub fn module_scope(&self) -> Option<ModuleScope> {
        self.module.as_ref().map(|m| ModuleScope {
            module: Arc::clone(m),
            dir: self.module_dir.clone(),
        })
    }

    /// The compile sources from `go` files of this unit.
    pub fn source(
        &self,
        ctx: &AnalysisContext<'_>,
        go: Vec<package::GoFile>,
    ) -> Result<Arc<PackageSource>, AnalysisError> {
        let embedcfg = embed_config(&go, &self.embedsrcs, &self.dir).map_err(|e| ctx.error(e))?;
        let mut inputs: Vec<Artifact> = go
            .iter()
            .map(|f| Artifact::source(f.path.clone()))
            .collect();
        // Generated sources keep their derived artifact.
        for a in &self.srcs {
            if let Some(slot) = inputs.iter_mut().find(|i| i.path == a.path) {
                *slot = a.clone();
            }
        }
        for a in &self.srcs {
            if self.files.asm.contains(&a.path) || self.files.other.contains(&a.path) {
                inputs.push(a.clone());
            }
        }
        if embedcfg.is_some() {
            inputs.extend(self.embedsrcs.iter().cloned());
        }
        let generated = go.iter().any(|f| self.files.generated.contains(&f.path));
        Ok(Arc::new(PackageSource {
            go,
            asm: self.files.asm.clone(),
            inputs,
            embedcfg,
            lang: self.lang.clone(),
            gc_flags: self.gc_flags.clone(),
            src_dir: self.dir.clone(),
            generated,
            test_main: false,
        }))
    }

    /// An error for a package left without Go files on `platform`.
    pub fn no_files_error(
        &self,
        ctx: &AnalysisContext<'_>,
        platform: &GoPlatform,
    ) -> AnalysisError {
        if self.files.cgo_excluded.is_empty() {
            ctx.error(format!(
                "`{}` has no Go files that build for {}",
                ctx.target.label,
                platform.name()
            ))
        } else {
            ctx.error(format!(
                "`{}` cannot build without cgo: {} import \"C\", and Kiln builds with CGO_ENABLED=0 (as `CGO_ENABLED=0 go build` would)",
                ctx.target.label,
                self.files.cgo_excluded.join(", ")
            ))
        }
    }
}

/// The dependencies a unit's files need on `platform`: all of them on the host (compiled
/// already), elsewhere only those its selected files import (a dependency only another
/// platform's files import may have no files here), or all when generated files hide imports.
fn imported<'a>(
    files: &PackageFiles,
    infos: &'a [GoInfo],
    platform: &GoPlatform,
) -> Vec<&'a GoInfo> {
    if platform.is_host || !files.generated.is_empty() {
        return infos.iter().collect();
    }
    let imports: std::collections::HashSet<&str> = files
        .go
        .iter()
        .chain(&files.test)
        .chain(&files.xtest)
        .flat_map(|f| f.info.imports.iter().map(|i| i.path.as_str()))
        .collect();
    infos
        .iter()
        .filter(|i| imports.contains(i.archive.importpath.as_str()))
        .collect()
}

/// Reads and filters a unit's sources for `platform`, generated ones added unread.
fn select(
    ctx: &AnalysisContext<'_>,
    platform: &GoPlatform,
    host: &[(String, PathBuf)],
    generated: &[String],
) -> Result<PackageFiles, AnalysisError> {
    let mut files = package::select(host, &platform.build).map_err(|e| ctx.error(e))?;
    package::add_generated(&mut files, generated).map_err(|e| ctx.error(e))?;
    Ok(files)
}

/// Runfiles from `data` and from dependencies' runfiles.
pub fn data_runfiles(ctx: &AnalysisContext<'_>) -> Result<Vec<(String, Artifact)>, AnalysisError> {
    let mut out = Vec::new();
    for label in ctx.target.labels("data") {
        let dep = ctx.dep(&label)?;
        out.extend(
            dep.default
                .files
                .iter()
                .map(|a| (a.short_path().to_string(), a.clone())),
        );
        if let Some(exe) = &dep.default.executable {
            out.push((exe.short_path().to_string(), exe.clone()));
        }
        out.extend(dep.default.runfiles.iter().cloned());
    }
    for label in ctx.target.labels("deps") {
        out.extend(ctx.dep(&label)?.default.runfiles.iter().cloned());
    }
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    Ok(out)
}

fn library(
    ctx: &mut AnalysisContext<'_>,
    env: &GoEnv,
    unit: Unit,
) -> Result<Providers, AnalysisError> {
    if unit.importpath.is_empty() {
        return Err(
            ctx.error("`go_library` needs `importpath` (or a go.mod above it to infer it from)")
        );
    }
    let source = if !unit.files.go.is_empty() {
        unit.source(ctx, unit.files.go.clone())?
    } else {
        match (
            unit.files.cgo_excluded.is_empty(),
            excluded_package_name(&unit),
        ) {
            (true, Some(name)) => empty_package(ctx, env, &unit, &name),
            _ => return Err(unit.no_files_error(ctx, &env.host)),
        }
    };
    let module = super::modules::dep_module(ctx.scoped, &ctx.target.label.repo);
    let archive = compile_package(
        ctx,
        env,
        &env.host,
        CompileInput {
            label: ctx.target.label.clone(),
            importpath: unit.importpath.clone(),
            package_path: unit.importpath.clone(),
            source,
            deps: &unit.deps,
            overrides: &HashMap::new(),
            out_stem: ctx.declare_output(&ctx.target.label.name).path,
            module: module.clone(),
            mnemonic: "GoCompile",
            x_defs: qualify_x_defs(&unit.x_defs, &unit.importpath),
        },
        unit.module_scope().as_ref(),
    )?;
    let runfiles = data_runfiles(ctx)?;
    let mut providers = Providers::new(DefaultInfo {
        files: vec![archive.link.clone()],
        executable: None,
        runfiles,
    });
    providers.insert(GoInfo {
        archive,
        embed: Arc::new(Embeddable {
            srcs: unit.srcs.clone(),
            embedsrcs: unit.embedsrcs.clone(),
            deps: unit.dep_infos.clone(),
            importpath: unit.importpath.clone(),
            x_defs: unit.x_defs.clone(),
        }),
        recipe: Arc::new(Recipe {
            label: ctx.target.label.clone(),
            unit,
            module,
        }),
    });
    Ok(providers)
}

/// The package name of a library whose files all belong to other platforms (from its first
/// non-test `.go` file), if it has any.
fn excluded_package_name(unit: &Unit) -> Option<String> {
    let (path, host) = unit
        .host_srcs
        .iter()
        .find(|(p, _)| p.ends_with(".go") && !p.ends_with("_test.go"))?;
    let info = super::header_memo::header(host, path, super::scan::scan).ok()?;
    (!info.package.is_empty()).then_some(info.package)
}

/// The sources of a library with no files for the host (only `_windows.go` files, say): one
/// generated file holding just its package clause, as rules_go compiles such a library, so that
/// `kiln build //...` succeeds on the host and binaries for the library's platforms (which
/// compile its real files again, see `platform.rs`) can link it. A host binary that uses it fails
/// to compile, naming what is undefined.
fn empty_package(
    ctx: &mut AnalysisContext<'_>,
    env: &GoEnv,
    unit: &Unit,
    name: &str,
) -> Arc<PackageSource> {
    let file = ctx.declare_output(&format!("{}.empty/{name}.go", ctx.target.label.name));
    let script = format!(
        "set -euo pipefail\n{}",
        super::compile::write_file(
            &super::compile::sh(&file.path),
            &[format!("package {name}")]
        )
    );
    let action = super::action::go_action(
        &env.sdk,
        &env.host.sandbox,
        &ctx.target.label,
        "GoEmptyPackage",
        format!(
            "Writing an empty package for {} (no files for {})",
            ctx.target.label,
            env.host.name()
        ),
        script,
        &[],
        &[(&file, false)],
    );
    ctx.register(action);
    let go = vec![package::GoFile {
        path: file.path.clone(),
        info: super::scan::FileInfo {
            package: name.to_string(),
            ..Default::default()
        },
    }];
    Arc::new(PackageSource {
        go,
        asm: Vec::new(),
        inputs: vec![file],
        embedcfg: None,
        lang: unit.lang.clone(),
        gc_flags: unit.gc_flags.clone(),
        src_dir: unit.dir.clone(),
        generated: false,
        test_main: false,
    })
}

fn binary(
    ctx: &mut AnalysisContext<'_>,
    env: &GoEnv,
    platform: &GoPlatform,
    unit: Unit,
) -> Result<Providers, AnalysisError> {
    if unit.files.go.is_empty() {
        return Err(unit.no_files_error(ctx, platform));
    }
    // A package of generated files only has no name analysis could read: the compiler checks it.
    let named = !unit.files.name.is_empty() || unit.files.generated.is_empty();
    if named && unit.files.name != "main" {
        return Err(ctx.error(format!(
            "`go_binary` `{}` compiles package `{}`; a binary needs `package main`",
            ctx.target.label, unit.files.name
        )));
    }
    let source = unit.source(ctx, unit.files.go.clone())?;
    let name = ctx.target.label.name.clone();
    // Without `importpath` or a go.mod above it, the binary is named by its label (as
    // `go_test` does), which the link's importcfg and build information need.
    let importpath = if unit.importpath.is_empty() {
        format!("{}/{name}", unit.dir)
    } else {
        unit.importpath.clone()
    };
    let main = compile_package(
        ctx,
        env,
        platform,
        CompileInput {
            label: ctx.target.label.clone(),
            importpath: importpath.clone(),
            package_path: "main".into(),
            source,
            deps: &unit.deps,
            overrides: &HashMap::new(),
            out_stem: ctx.declare_output(&format!("{name}.main")).path,
            module: None,
            mnemonic: "GoCompile",
            x_defs: Vec::new(),
        },
        unit.module_scope().as_ref(),
    )?;
    let out_name = ctx
        .target
        .string("out")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| platform.executable_name(&name));
    let exe = ctx.declare_output(&out_name);
    let x_defs = qualify_x_defs(&unit.x_defs, "main");
    testbin::link(
        ctx,
        env,
        platform,
        testbin::LinkSpec {
            main: &main,
            overrides: &HashMap::new(),
            module: unit.module.as_deref(),
            importpath: &importpath,
            directives: testbin::directives_of(&unit.files.go),
            x_defs,
            flags: ctx.target.strings("gc_linkopts"),
            test: false,
            out: &exe,
        },
    )?;
    let runfiles = data_runfiles(ctx)?;
    Ok(Providers::new(DefaultInfo {
        files: vec![exe.clone()],
        executable: Some(exe),
        runfiles,
    }))
}
