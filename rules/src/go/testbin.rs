//! `go_test` as `go test` builds it: the package with its internal test files, the external
//! `_test` package, the packages between them recompiled against the test variant, a generated
//! test main, and the link; plus the link step shared with `go_binary`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kiln_graph::action::Artifact;
use kiln_graph::analysis::{AnalysisContext, AnalysisError, DefaultInfo, Providers, TestInfo};

use super::action::go_action;
use super::archive::{
    compile_package, host_path, link_closure, qualify_x_defs, CompileInput, GoArchive,
    PackageSource,
};
use super::compile::write_file;
use super::env::GoEnv;
use super::godebug;
use super::gomod::GoMod;
use super::link::{self, LinkRequest, ModInfo};
use super::package::GoFile;
use super::platform::GoPlatform;
use super::rules::{data_runfiles, Unit};
use super::scan::{Directive, FileInfo, Import};
use super::testfuncs::{self, TestFuncs};
use super::testmain::{self, TestPackages};

/// A link to perform.
pub struct LinkSpec<'a> {
    /// The main package.
    pub main: &'a Arc<GoArchive>,
    /// Test variants standing in for packages.
    pub overrides: &'a HashMap<String, Arc<GoArchive>>,
    /// The main module.
    pub module: Option<&'a GoMod>,
    /// Import path of the main package (for `go version -m`).
    pub importpath: &'a str,
    /// `//go:debug` directives of the main package (and, for tests, of the package under test and
    /// its test files), in cmd/go's order.
    pub directives: Vec<Directive>,
    /// `-X` definitions.
    pub x_defs: Vec<String>,
    /// Extra linker flags.
    pub flags: Vec<String>,
    /// Whether this is a test binary (no module information, always `-s -w`).
    pub test: bool,
    /// The executable.
    pub out: &'a Artifact,
}

/// Registers the link action.
pub fn link(
    ctx: &mut AnalysisContext<'_>,
    env: &GoEnv,
    platform: &GoPlatform,
    spec: LinkSpec<'_>,
) -> Result<(), AnalysisError> {
    let closure = link_closure(std::slice::from_ref(spec.main), spec.overrides);
    let mut std_roots: Vec<String> = vec!["runtime".into()];
    for a in &closure {
        std_roots.extend(a.std_imports.iter().cloned());
    }
    std_roots.sort();
    std_roots.dedup();
    for action in platform
        .std
        .actions(&std_roots, &ctx.target.label)
        .map_err(|e| ctx.error(e))?
    {
        ctx.register(action);
    }
    let std_pkgs = platform.std.closure(&std_roots).map_err(|e| ctx.error(e))?;
    // Every archive is staged in one directory of the link's sandbox, as `go build` hands the
    // linker `$WORK/bNNN/_pkg_.a`: a binary of 500 packages then costs its sandbox 500 links
    // into one directory, not also 500 directories to make and remove.
    let mut packages = Vec::new();
    let mut inputs: Vec<(String, Artifact)> = Vec::new();
    let mut stage = |path: String, archive: &Artifact| {
        let name = archive.path.rsplit('/').next().unwrap_or("pkg.a");
        let exec_path = format!("{LINK_ARCHIVE_DIR}/{:03}-{name}", inputs.len());
        packages.push((path, exec_path.clone()));
        inputs.push((exec_path, archive.clone()));
    };
    for a in &closure {
        let path = if Arc::ptr_eq(a, spec.main) {
            spec.importpath.to_string()
        } else {
            a.package_path.clone()
        };
        stage(path, &a.link);
    }
    for p in &std_pkgs {
        stage(p.path.clone(), &p.link);
    }
    let main_archive = inputs
        .iter()
        .find(|(_, artifact)| *artifact == spec.main.link)
        .map(|(exec_path, _)| exec_path.clone())
        .ok_or_else(|| {
            ctx.error(format!(
                "internal error: the main package's archive `{}` is not in its own link closure",
                spec.main.link.path
            ))
        })?;
    let godebug = default_godebug(env, spec.module, &spec.directives);
    // rules_go links with `-s -w` under Bazel's default `--strip=sometimes` in fastbuild (and
    // always for tests); `-c dbg` and `-c opt` keep the symbol table and DWARF. The flags are
    // recorded in the build information as `go build -ldflags` records them.
    let strip = spec.test || ctx.settings.compilation_mode == "fastbuild";
    let mut ldflags: Vec<String> = Vec::new();
    if strip {
        ldflags.extend(["-s".to_string(), "-w".to_string()]);
    }
    // The libraries' definitions first, so that the binary's own win for the same variable.
    let x_defs: Vec<String> = closure
        .iter()
        .flat_map(|a| a.x_defs.iter().cloned())
        .chain(spec.x_defs)
        .collect();
    ldflags.extend(x_defs.iter().map(|x| format!("-X={x}")));
    // `gc_linkopts`, what a `go build` user passes in `-ldflags`, after the definitions as on
    // the linker's command line (a `-X` there wins).
    ldflags.extend(spec.flags.iter().cloned());
    let modinfo = (!spec.test).then(|| {
        let mut deps: Vec<_> = closure.iter().filter_map(|a| a.module.clone()).collect();
        deps.sort();
        deps.dedup();
        ModInfo {
            main_package: spec.importpath.to_string(),
            main_module: spec.module.map(|m| m.module.clone()).unwrap_or_default(),
            deps,
            godebug: godebug.clone(),
            ldflags: super::link::quoted_join(&ldflags),
        }
    });
    let mut flags = Vec::new();
    if strip {
        flags.extend(["-s".to_string(), "-w".to_string()]);
    }
    flags.extend(spec.flags);
    let req = LinkRequest {
        packages,
        main_archive,
        modinfo,
        godebug,
        x_defs,
        flags,
        out: spec.out.path.clone(),
    };
    let for_platform = if platform.is_host {
        String::new()
    } else {
        format!(" for {}", platform.name())
    };
    let importcfg = Artifact::derived(format!("{}.importcfg", spec.out.path));
    let mut config = go_action(
        &env.sdk,
        &platform.sandbox,
        &ctx.target.label,
        "GoLinkConfig",
        format!(
            "Writing the link configuration of {}{for_platform}",
            ctx.target.label
        ),
        String::new(),
        &[],
        &[(&importcfg, false)],
    );
    config.arguments = link::importcfg_arguments(&req, &platform.sandbox, &importcfg.path);
    ctx.register(config);
    let mut action = go_action(
        &env.sdk,
        &platform.sandbox,
        &ctx.target.label,
        "GoLink",
        format!("Linking {}{for_platform}", ctx.target.label),
        String::new(),
        std::slice::from_ref(&importcfg),
        &[(spec.out, true)],
    );
    action.arguments = link::arguments(&req, &platform.sandbox, &importcfg.path);
    action.env.insert("GOROOT".into(), String::new());
    action
        .env
        .insert("GOGC".into(), LINKER_GC_PERCENT.to_string());
    action.host_tools.clear();
    // cmd/link opens its output with O_TRUNC and writes it through a mapping; it never
    // renames a file onto it (a failed link removes it, which a bound file survives).
    action.outputs_written_in_place = true;
    for (exec_path, archive) in &inputs {
        action.input_at(exec_path, archive);
    }
    ctx.register(action);
    Ok(())
}

/// The linker's `GOGC`. cmd/link's heap is nearly all live data that grows from a few MiB to its
/// peak, so at Go's default of 100 it collects at every doubling and rescans what it still holds.
/// On two x/tools commands (7–8 MiB stripped; 20 interleaved runs each) 400 took 15–20% less CPU
/// than 100 and 800 another 3%, with the same peak RSS (136–148 MiB for all three: the linker
/// makes little garbage, so collecting less often keeps little more memory; larger binaries were
/// not measured). Links are most of an
/// incremental build's time. The output does not depend on it (it is a runtime setting of the
/// linker process).
const LINKER_GC_PERCENT: u32 = 800;

/// Where a link's sandbox holds the archives it links (exec-root-relative).
const LINK_ARCHIVE_DIR: &str = "_golink";

/// The default GODEBUG: the main module's go line and `godebug` lines, then the directives. A
/// binary outside any module gets only its directives.
fn default_godebug(env: &GoEnv, module: Option<&GoMod>, directives: &[Directive]) -> String {
    let table = &env.sdk.godebug_table;
    let toolchain = &env.sdk.sandbox.version;
    let mut settings = module.map(|m| m.godebug.clone()).unwrap_or_default();
    settings.extend(godebug::directive_settings(table, toolchain, directives));
    match module {
        Some(m) => godebug::default_godebug(table, m.go.as_deref().unwrap_or("1.16"), &settings),
        None if settings.is_empty() => String::new(),
        None => godebug::default_godebug(table, &format!("1.{}", env.sdk.minor()), &settings),
    }
}

/// The `//go:debug` directives of `files`, in order.
pub fn directives_of<'a>(files: impl IntoIterator<Item = &'a GoFile>) -> Vec<Directive> {
    files
        .into_iter()
        .flat_map(|f| f.info.go_debug.iter().cloned())
        .collect()
}

/// Whether `a` depends (transitively) on the package `target`.
fn depends_on(a: &GoArchive, target: &str, memo: &mut HashMap<String, bool>) -> bool {
    if let Some(&known) = memo.get(&a.package_path) {
        return known;
    }
    let result = a
        .deps
        .iter()
        .any(|d| d.importpath == target || depends_on(d, target, memo));
    memo.insert(a.package_path.clone(), result);
    result
}

fn read_funcs(ctx: &AnalysisContext<'_>, files: &[GoFile]) -> Result<TestFuncs, AnalysisError> {
    let mut all = TestFuncs::default();
    for f in files {
        let host = host_path(ctx, &Artifact::source(f.path.clone()));
        let text =
            std::fs::read_to_string(&host).map_err(|e| ctx.error(format!("{}: {e}", f.path)))?;
        let found = testfuncs::find(&text).map_err(|e| ctx.error(format!("{}: {e}", f.path)))?;
        all.tests.extend(found.tests);
        all.benchmarks.extend(found.benchmarks);
        all.fuzz.extend(found.fuzz);
        all.examples.extend(found.examples);
        all.test_main |= found.test_main;
    }
    Ok(all)
}

/// Analyzes a `go_test`.
pub fn test(
    ctx: &mut AnalysisContext<'_>,
    env: &GoEnv,
    platform: &GoPlatform,
    unit: Unit,
) -> Result<Providers, AnalysisError> {
    let name = ctx.target.label.name.clone();
    let files = &unit.files;
    if files.go.is_empty() && files.test.is_empty() && files.xtest.is_empty() {
        return Err(unit.no_files_error(ctx, platform));
    }
    let out = |ctx: &AnalysisContext<'_>, stem: String| ctx.declare_output(&stem).path;
    let importpath = if unit.importpath.is_empty() {
        format!("{}/{name}", unit.dir)
    } else {
        unit.importpath.clone()
    };
    let scope = unit.module_scope();
    let mut overrides: HashMap<String, Arc<GoArchive>> = HashMap::new();
    let internal = if files.go.is_empty() && files.test.is_empty() {
        None
    } else {
        let mut go = files.go.clone();
        go.extend(files.test.iter().cloned());
        go.sort_by(|a, b| a.path.cmp(&b.path));
        let source = unit.source(ctx, go)?;
        let archive = compile_package(
            ctx,
            env,
            platform,
            CompileInput {
                label: ctx.target.label.clone(),
                importpath: importpath.clone(),
                package_path: importpath.clone(),
                source,
                deps: &unit.deps,
                overrides: &HashMap::new(),
                out_stem: out(ctx, format!("{name}.internal")),
                module: None,
                mnemonic: "GoCompile",
                x_defs: Vec::new(),
            },
            scope.as_ref(),
        )?;
        overrides.insert(importpath.clone(), Arc::clone(&archive));
        Some(archive)
    };
    let external = if files.xtest.is_empty() {
        None
    } else {
        // Packages the external test reaches that import the package under test are compiled
        // again against its test variant, as `go test` does.
        if internal.is_some() {
            let mut memo = HashMap::new();
            let mut done = HashSet::new();
            for a in link_closure(&unit.deps, &HashMap::new()) {
                if a.importpath == importpath || !depends_on(&a, &importpath, &mut memo) {
                    continue;
                }
                if !done.insert(a.importpath.clone()) {
                    continue;
                }
                let variant = compile_package(
                    ctx,
                    env,
                    platform,
                    CompileInput {
                        label: ctx.target.label.clone(),
                        importpath: a.importpath.clone(),
                        package_path: a.package_path.clone(),
                        source: Arc::clone(&a.source),
                        deps: &a.deps,
                        overrides: &overrides,
                        out_stem: out(ctx, format!("{name}.variant/{}", a.importpath)),
                        module: a.module.clone(),
                        mnemonic: "GoCompileVariant",
                        x_defs: a.x_defs.clone(),
                    },
                    scope.as_ref(),
                )?;
                overrides.insert(a.importpath.clone(), variant);
            }
        }
        let mut deps = unit.deps.clone();
        deps.extend(internal.iter().cloned());
        let source = unit.source(ctx, files.xtest.clone())?;
        Some(compile_package(
            ctx,
            env,
            platform,
            CompileInput {
                label: ctx.target.label.clone(),
                importpath: format!("{importpath}_test"),
                package_path: format!("{importpath}_test"),
                source,
                deps: &deps,
                overrides: &overrides,
                out_stem: out(ctx, format!("{name}.external")),
                module: None,
                mnemonic: "GoCompile",
                x_defs: Vec::new(),
            },
            scope.as_ref(),
        )?)
    };

    // The generated main.
    let internal_funcs = match &internal {
        Some(_) => Some(read_funcs(ctx, &files.test)?),
        None => None,
    };
    let external_funcs = match &external {
        Some(_) => Some(read_funcs(ctx, &files.xtest)?),
        None => None,
    };
    let uses_test_main = internal_funcs
        .iter()
        .chain(&external_funcs)
        .any(|f| f.test_main);
    let source_text = testmain::render(&TestPackages {
        importpath: importpath.clone(),
        internal: internal_funcs,
        external: external_funcs,
    });
    let testmain_go = ctx.declare_output(&format!("{name}.testmain.go"));
    let lines: Vec<String> = source_text.lines().map(str::to_string).collect();
    let script = format!(
        "set -euo pipefail\n{}",
        write_file(&compile_quote(&testmain_go.path), &lines)
    );
    let action = go_action(
        &env.sdk,
        &platform.sandbox,
        &ctx.target.label,
        "GoTestMain",
        format!("Generating test main for {}", ctx.target.label),
        script,
        &[],
        &[(&testmain_go, false)],
    );
    ctx.register(action);
    let mut imports: Vec<&str> = vec!["os", "testing", "testing/internal/testdeps"];
    if uses_test_main {
        imports.push("reflect");
    }
    let mut file_imports: Vec<Import> = imports
        .iter()
        .map(|p| Import {
            path: p.to_string(),
            line: 1,
        })
        .collect();
    let mut main_deps = Vec::new();
    for a in internal.iter().chain(external.iter()) {
        file_imports.push(Import {
            path: a.importpath.clone(),
            line: 1,
        });
        main_deps.push(Arc::clone(a));
    }
    let main_source = Arc::new(PackageSource {
        go: vec![GoFile {
            path: testmain_go.path.clone(),
            info: FileInfo {
                package: "main".into(),
                imports: file_imports,
                ..Default::default()
            },
        }],
        asm: Vec::new(),
        inputs: vec![testmain_go.clone()],
        embedcfg: None,
        lang: unit.lang.clone(),
        gc_flags: vec!["-dwarf=false".into()],
        src_dir: unit.dir.clone(),
        generated: false,
        test_main: true,
    });
    let main = compile_package(
        ctx,
        env,
        platform,
        CompileInput {
            label: ctx.target.label.clone(),
            importpath: format!("{importpath}.test"),
            package_path: "main".into(),
            source: main_source,
            deps: &main_deps,
            overrides: &HashMap::new(),
            out_stem: out(ctx, format!("{name}.testmain")),
            module: None,
            mnemonic: "GoCompile",
            x_defs: Vec::new(),
        },
        scope.as_ref(),
    )?;
    let exe = ctx.declare_output(&platform.executable_name(&name));
    link(
        ctx,
        env,
        platform,
        LinkSpec {
            main: &main,
            overrides: &overrides,
            module: unit.module.as_deref(),
            importpath: &format!("{importpath}.test"),
            directives: directives_of(files.go.iter().chain(&files.test).chain(&files.xtest)),
            x_defs: std::iter::once("testing.testBinary=1".to_string())
                .chain(qualify_x_defs(&unit.x_defs, &importpath))
                .collect(),
            flags: ctx.target.strings("gc_linkopts"),
            test: true,
            out: &exe,
        },
    )?;
    let runfiles = data_runfiles(ctx)?;
    let mut providers = Providers::new(DefaultInfo {
        files: vec![exe.clone()],
        executable: Some(exe),
        runfiles,
    });
    // As `go test` runs a test binary: a test that calls os.Exit(0) fails (`-test.paniconexit0`),
    // and the process starts in the package's directory, so that package initializers reading
    // `testdata/` find it (a chdir in the generated main would come after them).
    let args = std::iter::once("-test.paniconexit0".to_string())
        .chain(ctx.target.strings("args"))
        .collect();
    providers.test = Some(TestInfo {
        env: ctx.target.string_dict("env"),
        args,
        // A main-repository package's directory; another repository's test starts at the root.
        working_dir: ctx
            .target
            .label
            .repo
            .is_empty()
            .then(|| ctx.target.label.package.clone()),
        filter_env: None,
        filter_args: Some(|filter| vec![format!("-test.run={filter}")]),
        cannot_run: (platform.build.goos != env.host.build.goos
            || platform.build.goarch != env.host.build.goarch)
            .then(|| {
                format!(
                    "built for {} (`goos`/`goarch`), and this machine is {}",
                    platform.name(),
                    env.host.name()
                )
            }),
    });
    Ok(providers)
}

fn compile_quote(path: &str) -> String {
    super::compile::sh(path)
}
