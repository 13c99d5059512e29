//! A Go configuration: the (GOOS, GOARCH) packages are compiled for and any extra build tags,
//! with its build context (the SDK's tool tags for that platform), its standard library and its
//! command-line facts ([`SandboxSdk`]). The host platform compiles libraries into their targets'
//! own output directories (`kiln-out/bin/...`); any other configuration — a `go_binary` or
//! `go_test` with `goos` / `goarch` or `gotags` — compiles the libraries it reaches again, once
//! per build, into `kiln-out/go/<goos>_<goarch>[+tag...]/<package>/`, so one configuration's
//! outputs never overwrite another's and the two builds of a library are distinct actions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kiln_graph::analysis::{AnalysisContext, AnalysisError};
use kiln_graph::label::Label;

use super::archive::{compile_package, CompileInput, GoArchive, GoInfo};
use super::constraints::BuildContext;
use super::env::GoEnv;
use super::stdlib::StdLib;
use super::toolchain::SandboxSdk;

/// The output directory name of the configuration `goos`/`goarch` with extra `tags`.
pub fn dir_name(goos: &str, goarch: &str, tags: &[String]) -> String {
    let mut name = format!("{goos}_{goarch}");
    for tag in tags {
        name.push('+');
        name.push_str(tag);
    }
    name
}

/// One platform of a build.
pub struct GoPlatform {
    /// Command-line facts (target GOOS/GOARCH, the host's tool directory).
    pub sandbox: SandboxSdk,
    /// What files are matched against.
    pub build: BuildContext,
    /// Its standard library.
    pub std: StdLib,
    /// Whether this is the platform Kiln runs on, in its default configuration (what
    /// libraries are compiled for in their own output directories).
    pub is_host: bool,
    /// Build tags of this configuration beyond the workspace's (a `go_binary`'s `gotags`),
    /// sorted; empty for the default one.
    pub target_tags: Vec<String>,
    archives: Mutex<HashMap<Label, Arc<GoArchive>>>,
}

impl GoPlatform {
    /// A platform of `env`'s SDK.
    pub fn new(
        sandbox: SandboxSdk,
        build: BuildContext,
        std: StdLib,
        is_host: bool,
        target_tags: Vec<String>,
    ) -> Self {
        GoPlatform {
            sandbox,
            build,
            std,
            is_host,
            target_tags,
            archives: Mutex::new(HashMap::new()),
        }
    }

    /// `linux/arm64`, or `linux/amd64 with tags netgo` for a `gotags` configuration.
    pub fn name(&self) -> String {
        let platform = format!("{}/{}", self.build.goos, self.build.goarch);
        if self.target_tags.is_empty() {
            platform
        } else {
            format!("{platform} with tags {}", self.target_tags.join(","))
        }
    }

    /// The directory name of this configuration's outputs: `linux_arm64`, or
    /// `linux_amd64+netgo` with `gotags`.
    pub fn dir_name(&self) -> String {
        dir_name(&self.build.goos, &self.build.goarch, &self.target_tags)
    }

    /// The executable name `go build` (and rules_go) gives `name` here: `.exe` on Windows.
    pub fn executable_name(&self, name: &str) -> String {
        if self.build.goos == "windows" {
            format!("{name}.exe")
        } else {
            name.to_string()
        }
    }

    /// The output stem of `label`'s package compiled for this (non-host) platform:
    /// `kiln-out/go/<goos>_<goarch>/<package dir>/<name>`. Host outputs live under `kiln-out/bin`
    /// and the standard library under `kiln-out/go/std/`, so no two configurations share a path.
    pub fn out_stem(&self, label: &Label) -> String {
        let dir = kiln_graph::analysis::label_dir(label);
        let platform = format!("kiln-out/go/{}", self.dir_name());
        if dir.is_empty() {
            format!("{platform}/{}", label.name)
        } else {
            format!("{platform}/{dir}/{}", label.name)
        }
    }

    /// The library of `info` compiled for this platform: the host archive on the host;
    /// elsewhere its sources selected again for this platform and compiled (with its
    /// dependencies, recursively) once per build, the first target to need it registering the
    /// actions.
    pub fn archive(
        &self,
        ctx: &mut AnalysisContext<'_>,
        env: &GoEnv,
        info: &GoInfo,
    ) -> Result<Arc<GoArchive>, AnalysisError> {
        if self.is_host {
            return Ok(Arc::clone(&info.archive));
        }
        let recipe = &info.recipe;
        if let Some(found) = self.lock().get(&recipe.label) {
            return Ok(Arc::clone(found));
        }
        let unit = recipe.unit.for_platform(ctx, env, self, &recipe.label)?;
        if unit.files.go.is_empty() {
            return Err(ctx.error(format!(
                "`{}` (needed by `{}` for {}) has no Go files that build for {}",
                recipe.label,
                ctx.target.label,
                self.name(),
                self.name()
            )));
        }
        let source = unit.source(ctx, unit.files.go.clone())?;
        let archive = compile_package(
            ctx,
            env,
            self,
            CompileInput {
                label: recipe.label.clone(),
                importpath: unit.importpath.clone(),
                package_path: unit.importpath.clone(),
                source,
                deps: &unit.deps,
                overrides: &HashMap::new(),
                out_stem: self.out_stem(&recipe.label),
                module: recipe.module.clone(),
                mnemonic: "GoCompile",
                x_defs: info.archive.x_defs.clone(),
            },
            unit.module_scope().as_ref(),
        )?;
        self.lock()
            .insert(recipe.label.clone(), Arc::clone(&archive));
        Ok(archive)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Label, Arc<GoArchive>>> {
        self.archives.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(goos: &str, goarch: &str) -> GoPlatform {
        let sdk = Arc::new(super::super::toolchain::Sdk {
            host_root: "/nonexistent".into(),
            sandbox: SandboxSdk::host("go1.26.8", "linux", "amd64"),
            identity: "test".into(),
            godebug_table: Default::default(),
            syslist: Default::default(),
        });
        let sandbox = sdk.sandbox.for_target(goos, goarch, None);
        let build = BuildContext {
            goos: goos.into(),
            goarch: goarch.into(),
            go_minor: 26,
            cgo: false,
            tags: vec![],
            sys: Default::default(),
        };
        let std = StdLib::new(
            sdk,
            sandbox.clone(),
            build.clone(),
            dir_name(goos, goarch, &[]),
        );
        GoPlatform::new(sandbox, build, std, false, Vec::new())
    }

    #[test]
    fn outputs_of_each_configuration_have_their_own_directory() {
        let lib = Label::parse("//greet:greet", "").unwrap();
        let ext = Label::parse("@com_github_google_go_cmp//cmp:cmp", "").unwrap();
        let root = Label::parse("//:app", "").unwrap();
        let win = platform("windows", "amd64");
        let arm = platform("linux", "arm64");
        assert_eq!(win.out_stem(&lib), "kiln-out/go/windows_amd64/greet/greet");
        assert_eq!(arm.out_stem(&lib), "kiln-out/go/linux_arm64/greet/greet");
        assert_eq!(
            arm.out_stem(&ext),
            "kiln-out/go/linux_arm64/external/com_github_google_go_cmp/cmp/cmp"
        );
        assert_eq!(win.out_stem(&root), "kiln-out/go/windows_amd64/app");
        assert_eq!(win.executable_name("app"), "app.exe");
        assert_eq!(arm.executable_name("app"), "app");
        assert_eq!(win.name(), "windows/amd64");
    }

    #[test]
    fn pie_platforms_link_and_compile_as_go_build() {
        let win = platform("windows", "amd64").sandbox;
        assert_eq!(win.link_buildmode(), "pie");
        assert_eq!(win.codegen_flag(), None);
        let mac = platform("darwin", "arm64").sandbox;
        assert_eq!(mac.link_buildmode(), "pie");
        assert_eq!(mac.codegen_flag(), Some("-shared"));
        let arm = platform("linux", "arm64").sandbox;
        assert_eq!(arm.link_buildmode(), "exe");
        assert_eq!(arm.codegen_flag(), None);
        assert_eq!(
            arm.tool("compile"),
            "/kiln/execroot/external/kiln_go_sdk/pkg/tool/linux_amd64/compile"
        );
        let lse = arm.for_target(
            "linux",
            "arm64",
            Some(("GOARM64".into(), "v8.1,lse".into())),
        );
        assert_eq!(lse.asm_defines(), ["GOARM64_LSE"]);
        let v7 = arm.for_target("linux", "arm", Some(("GOARM".into(), "7".into())));
        assert_eq!(v7.asm_defines(), ["GOARM_7", "GOARM_6", "GOARM_5"]);
    }
}
