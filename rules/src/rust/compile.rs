//! From a crate target's attributes to its rustc action: [`CrateParts`] gathers sources, features
//! and dependencies (a `rust_test` with `crate = ":lib"` starts from the library's parts), and
//! [`register`] lowers them to one action through the helper. Library compiles read their
//! dependencies' `.rmeta` files and announce their own, so dependents start before codegen ends.

use std::collections::BTreeMap;
use std::sync::Arc;

use kiln_cache::{Digest, DigestFunction};
use kiln_graph::action::{ActionSpec, Artifact};
use kiln_graph::analysis::{AnalysisContext, AnalysisError};
use kiln_graph::label::Label;
use kiln_graph::target::AttrValue;

use super::crate_info::{BuildScriptInfo, CrateInfo, CrateType, DepCrate, DepUse, LinkSearch};
use super::rustc_args::{self, CompileRequest, Mode};
use super::toolchain::SANDBOX_RUSTC;
use super::{artifacts, context, helper, LINKER};

/// Everything a crate's compile is made of; also the provider a `rust_test` with `crate` reads.
#[derive(Clone, Debug)]
pub struct CrateParts {
    /// The target compiling it.
    pub label: Label,
    /// `--crate-name`.
    pub crate_name: String,
    /// The root source file.
    pub crate_root: Artifact,
    /// Sources and `compile_data`.
    pub srcs: Vec<Artifact>,
    /// `--edition`.
    pub edition: String,
    /// Enabled features.
    pub features: Vec<String>,
    /// `rustc_flags`.
    pub rustc_flags: Vec<String>,
    /// `rustc_env`.
    pub rustc_env: BTreeMap<String, String>,
    /// `version` (cargo's `CARGO_PKG_VERSION`).
    pub version: String,
    /// Direct dependencies with the name the code uses for them.
    pub deps: Vec<(String, DepCrate)>,
    /// Every crate the compile may load (direct, transitive, re-exported proc-macros).
    pub transitive: Vec<DepCrate>,
    /// `-L` flags from build scripts of this crate and its dependencies.
    pub link_search: Vec<LinkSearch>,
    /// This crate's build script, if one is among its deps.
    pub build_script: Option<BuildScriptInfo>,
    /// Runfiles from `data` and dependencies.
    pub data: Vec<(String, Artifact)>,
    /// The direct library dependencies as providers (name in code, build used), so that a test
    /// of the crate can pick their test builds.
    pub dep_infos: Vec<(String, Arc<CrateInfo>)>,
    /// Runfiles from the target's own `data`.
    pub own_data: Vec<(String, Artifact)>,
    /// Exec-root directory of the package (cargo's `CARGO_MANIFEST_DIR`).
    pub package_dir: String,
}

impl CrateParts {
    /// What dependents add to their own transitive set besides this crate.
    pub fn transitive_for_dependents(&self) -> Vec<DepCrate> {
        self.transitive.clone()
    }
}

/// Exec-root directory of a label's package (`external/<repo>/<pkg>` for external repositories).
pub fn package_dir(label: &Label) -> String {
    label.package_dir().to_string_lossy().into_owned()
}

/// rules_rust attributes the schema accepts so BUILD files load, but Kiln does not implement: any
/// value other than the default is an error naming the attribute, never silently ignored.
fn reject_unsupported(
    ctx: &AnalysisContext<'_>,
    crate_type: CrateType,
) -> Result<(), AnalysisError> {
    let target = ctx.target;
    for name in ["rustc_env_files", "lint_config"] {
        if !target.labels(name).is_empty() {
            return Err(ctx.error(format!(
                "`{name}` is not supported by Kiln's Rust rules yet; remove it (it would be ignored)"
            )));
        }
    }
    if let Some(given) = target.string("crate_type").filter(|t| !t.is_empty()) {
        if given != crate_type.flag() {
            return Err(ctx.error(format!(
                "`crate_type = \"{given}\"` is not supported by Kiln's Rust rules; this rule builds a `{}` crate (use the rule for the crate type you want)",
                crate_type.flag()
            )));
        }
    }
    Ok(())
}

/// Gathers a crate's parts from the target's attributes, on top of `base` for tests of a crate.
/// `dep_use` picks which build of a registry crate each dependency resolves to (only for targets
/// of the main repository: generated `@crates` targets name the exact builds they need).
pub fn parts_from_attrs(
    ctx: &AnalysisContext<'_>,
    base: Option<CrateParts>,
    crate_type: CrateType,
    dep_use: DepUse,
) -> Result<CrateParts, AnalysisError> {
    let dep_use = if ctx.target.label.is_main_repo() {
        dep_use
    } else {
        DepUse::Normal
    };
    reject_unsupported(ctx, crate_type)?;
    let target = ctx.target;
    let mut srcs = ctx.files("srcs")?;
    srcs.extend(ctx.files("compile_data")?);
    let crate_name = match target.string("crate_name").filter(|n| !n.is_empty()) {
        Some(name) => name.to_string(),
        None => match &base {
            Some(base) => base.crate_name.clone(),
            None => target.label.name.replace('-', "_"),
        },
    };
    if !crate_name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(ctx.error(format!(
            "Crate name `{crate_name}` may contain only letters, digits and `_`; set `crate_name`"
        )));
    }
    let mut parts = match base {
        Some(mut base) => {
            base.label = target.label.clone();
            base.srcs.extend(srcs);
            rechoose_deps(&mut base, dep_use);
            base
        }
        None => {
            let crate_root = crate_root(ctx, &srcs, &crate_name, crate_type)?;
            CrateParts {
                label: target.label.clone(),
                crate_name,
                crate_root,
                srcs,
                edition: String::new(),
                features: Vec::new(),
                rustc_flags: Vec::new(),
                rustc_env: BTreeMap::new(),
                version: String::new(),
                deps: Vec::new(),
                transitive: Vec::new(),
                link_search: Vec::new(),
                build_script: None,
                data: Vec::new(),
                dep_infos: Vec::new(),
                own_data: Vec::new(),
                package_dir: package_dir(&target.label),
            }
        }
    };
    if let Some(edition) = target.string("edition").filter(|e| !e.is_empty()) {
        parts.edition = edition.to_string();
    }
    if parts.edition.is_empty() {
        parts.edition = "2021".to_string();
    }
    if let Some(version) = target.string("version").filter(|v| !v.is_empty()) {
        parts.version = version.to_string();
    }
    if parts.version.is_empty() {
        parts.version = "0.0.0".to_string();
    }
    parts.features.extend(target.strings("crate_features"));
    parts.features.sort();
    parts.features.dedup();
    parts.rustc_flags.extend(target.strings("rustc_flags"));
    parts.rustc_env.extend(target.string_dict("rustc_env"));
    let aliases: Vec<(Label, String)> = match target.attrs.get("aliases") {
        Some(AttrValue::LabelKeyedStringDict(v)) => v.clone(),
        _ => Vec::new(),
    };
    for attr in ["deps", "proc_macro_deps"] {
        for label in target.labels(attr) {
            add_dep(ctx, &mut parts, &label, &aliases, dep_use)?;
        }
    }
    let own_data = crate::runfiles::collect(ctx, &[], &["data"])?;
    parts.data.extend(own_data.iter().cloned());
    parts.own_data.extend(own_data);
    Ok(parts)
}

/// Re-picks the builds of the crate's dependencies for `dep_use` (a test of the crate, or the
/// crate's own test build), rebuilding everything derived from them; false if none changes.
pub fn rechoose_deps(parts: &mut CrateParts, dep_use: DepUse) -> bool {
    if !deps_change_for(parts, dep_use) {
        return false;
    }
    let infos = std::mem::take(&mut parts.dep_infos);
    parts.deps.clear();
    parts.transitive.clear();
    parts.link_search = parts.build_script.iter().map(|b| b.link_search()).collect();
    parts.data = parts.own_data.clone();
    for (name, info) in infos {
        let chosen = Arc::new(info.for_use(dep_use).clone());
        add_crate(parts, name, chosen);
    }
    true
}

/// Whether some dependency has another build for `dep_use`.
pub fn deps_change_for(parts: &CrateParts, dep_use: DepUse) -> bool {
    parts
        .dep_infos
        .iter()
        .any(|(_, info)| !std::ptr::eq(info.for_use(dep_use), info.as_ref()))
}

/// Adds a library dependency (already the build wanted) and what it brings along.
fn add_crate(parts: &mut CrateParts, name: String, info: Arc<CrateInfo>) {
    parts.deps.push((name.clone(), info.krate.clone()));
    push_unique(&mut parts.transitive, info.krate.clone());
    if info.krate.crate_type != CrateType::ProcMacro {
        for krate in &info.transitive {
            push_unique(&mut parts.transitive, krate.clone());
        }
        for file in &info.link_search {
            if !parts.link_search.contains(file) {
                parts.link_search.push(file.clone());
            }
        }
        parts.data.extend(info.runfiles.iter().cloned());
    }
    parts.dep_infos.push((name, info));
}

fn add_dep(
    ctx: &AnalysisContext<'_>,
    parts: &mut CrateParts,
    label: &Label,
    aliases: &[(Label, String)],
    dep_use: DepUse,
) -> Result<(), AnalysisError> {
    let providers = ctx.dep(label)?;
    if let Some(info) = providers.get::<CrateInfo>() {
        let info = info.for_use(dep_use);
        let name = aliases
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| info.krate.name.clone());
        add_crate(parts, name, Arc::new(info.clone()));
        return Ok(());
    }
    if let Some(script) = providers.get::<BuildScriptInfo>() {
        if parts.build_script.is_some() {
            return Err(ctx.error(format!(
                "Only one `cargo_build_script` may be among the deps; `{label}` is a second"
            )));
        }
        if !parts.link_search.contains(&script.link_search()) {
            parts.link_search.push(script.link_search());
        }
        parts.build_script = Some(script.clone());
        return Ok(());
    }
    Err(ctx.error(format!(
        "`{label}` in `deps` is not a Rust crate (`rust_library`, `rust_proc_macro`) or `cargo_build_script`"
    )))
}

fn push_unique(list: &mut Vec<DepCrate>, krate: DepCrate) {
    if !list.iter().any(|k| k.link == krate.link) {
        list.push(krate);
    }
}

fn crate_root(
    ctx: &AnalysisContext<'_>,
    srcs: &[Artifact],
    crate_name: &str,
    crate_type: CrateType,
) -> Result<Artifact, AnalysisError> {
    if !ctx.target.labels("crate_root").is_empty() {
        let files = ctx.files("crate_root")?;
        return files
            .into_iter()
            .next()
            .ok_or_else(|| ctx.error("`crate_root` names no file"));
    }
    let wanted = if crate_type == CrateType::Bin {
        "main.rs"
    } else {
        "lib.rs"
    };
    let by_name = |name: &str| {
        srcs.iter()
            .find(|a| a.path.rsplit('/').next() == Some(name))
            .cloned()
    };
    if let Some(found) = by_name(wanted).or_else(|| by_name(&format!("{crate_name}.rs"))) {
        return Ok(found);
    }
    let rust_srcs: Vec<&Artifact> = srcs.iter().filter(|a| a.path.ends_with(".rs")).collect();
    match rust_srcs.as_slice() {
        [only] => Ok((*only).clone()),
        [] => Err(ctx.error("No `.rs` file in `srcs`")),
        _ => Err(ctx.error(format!(
            "Cannot tell the crate root among {} sources: name one `{wanted}` or `{crate_name}.rs`, or set `crate_root`",
            rust_srcs.len()
        ))),
    }
}

/// What [`register`] produced.
pub struct Compiled {
    /// The rlib, dylib, archive or executable.
    pub output: Artifact,
    /// The crate as dependents see it (libraries and proc-macros).
    pub dep_crate: Option<DepCrate>,
}

/// A short, checkout-independent hash for `-C metadata` and file names.
pub fn metadata_hash(parts: &CrateParts, crate_type: CrateType, test: bool) -> String {
    let text = format!(
        "{}\0{}\0{}\0{test}\0{}",
        parts.label,
        parts.crate_name,
        crate_type.flag(),
        parts.features.join(",")
    );
    Digest::of_bytes(DigestFunction::Blake3, text.as_bytes()).hex()[..16].to_string()
}

/// Registers the rustc action for `parts`.
pub fn register(
    ctx: &mut AnalysisContext<'_>,
    parts: &CrateParts,
    crate_type: CrateType,
    test: bool,
) -> Result<Compiled, AnalysisError> {
    let toolchain = context::toolchain(ctx)?;
    let helper_bin = context::helper(ctx, &toolchain)?;
    let hash = metadata_hash(parts, crate_type, test);
    let name = &parts.crate_name;
    let (output, rmeta) = match crate_type {
        CrateType::Rlib => (
            ctx.declare_output(&format!("lib{name}-{hash}.rlib")),
            Some(ctx.declare_output(&format!("lib{name}-{hash}.rmeta"))),
        ),
        CrateType::ProcMacro => (ctx.declare_output(&format!("lib{name}-{hash}.so")), None),
        CrateType::StaticLib => (ctx.declare_output(&format!("lib{name}.a")), None),
        CrateType::Bin => (ctx.declare_output(&parts.label.name), None),
    };
    let reads = if crate_type == CrateType::Rlib && !test {
        CrateType::Rlib
    } else {
        CrateType::Bin
    };
    let mut dependency_dirs: Vec<String> = parts
        .transitive
        .iter()
        .map(|k| parent(&k.file_for(reads).path).to_string())
        .collect();
    dependency_dirs.sort();
    dependency_dirs.dedup();
    let request = CompileRequest {
        crate_name: name.clone(),
        crate_type,
        crate_root: parts.crate_root.path.clone(),
        edition: parts.edition.clone(),
        mode: Mode::from_setting(&ctx.settings.compilation_mode),
        metadata: hash.clone(),
        features: parts.features.clone(),
        externs: parts
            .deps
            .iter()
            .map(|(alias, k)| (alias.clone(), k.file_for(reads).path.clone()))
            .collect(),
        dependency_dirs,
        test,
        cap_lints: !parts.label.repo.is_empty(),
        rmeta: rmeta.as_ref().map(|a| a.path.clone()),
        output: output.path.clone(),
        linker: LINKER.to_string(),
        extra_flags: parts.rustc_flags.clone(),
    };

    let mut argv = vec![helper_bin.path.clone(), "rustc".to_string()];
    let mut spec_inputs: Vec<Artifact> = vec![helper_bin.clone()];
    if let Some(script) = &parts.build_script {
        argv.extend([
            "--env-file".to_string(),
            script.env.path.clone(),
            "--flags-file".to_string(),
            script.flags.path.clone(),
            "--out-dir".to_string(),
            format!(
                "{}={}/{}.out_dir={}",
                script.out_dir,
                ctx.package_out_dir(),
                parts.label.name,
                script.out_dir_archive.path
            ),
        ]);
        spec_inputs.extend([
            script.env.clone(),
            script.flags.clone(),
            script.out_dir_archive.clone(),
        ]);
        if crate_type == CrateType::Bin {
            // Cargo's scopes: tests get `-tests` arguments, a binary `-bins` and its own `-bin=`.
            let target = if test {
                "test".to_string()
            } else {
                format!("bin={}", parts.label.name)
            };
            argv.extend([
                "--link-args-file".to_string(),
                format!("{target}={}", script.link_args.path),
            ]);
            spec_inputs.push(script.link_args.clone());
        }
    }
    let own_out_dir = parts.build_script.as_ref().map(|b| b.out_dir.as_str());
    for (index, search) in parts.link_search.iter().enumerate() {
        argv.extend(["--flags-file".to_string(), search.flags.path.clone()]);
        spec_inputs.push(search.flags.clone());
        // A final link needs the native libraries a dependency's build script left in its
        // OUT_DIR: the helper unpacks that OUT_DIR (only if the flags point into it) and moves
        // the flags along. The crate's own OUT_DIR is unpacked by `--out-dir` above.
        if (crate_type.links() || test) && Some(search.out_dir.as_str()) != own_out_dir {
            argv.extend([
                "--native-dir".to_string(),
                format!(
                    "{}={}/{}.native/{index}={}",
                    search.out_dir,
                    ctx.package_out_dir(),
                    parts.label.name,
                    search.out_dir_archive.path
                ),
            ]);
            spec_inputs.push(search.out_dir_archive.clone());
        }
    }
    argv.push("--".to_string());
    argv.push(SANDBOX_RUSTC.to_string());
    argv.extend(rustc_args::arguments(&request));

    let kind = match (crate_type, test) {
        (_, true) => "test",
        (CrateType::Rlib, _) => "library",
        (CrateType::ProcMacro, _) => "proc-macro",
        (CrateType::Bin, _) => "binary",
        (CrateType::StaticLib, _) => "static library",
    };
    let mut spec = ActionSpec::new(ctx.target.label.clone(), "Rustc", argv);
    spec.progress_message = format!("Compiling Rust {kind} {}", parts.label);
    spec.env = crate_env(parts);
    spec.tool_mounts.push(helper::mount(&toolchain));
    spec.host_tools = super::link_tools();
    for file in spec_inputs
        .iter()
        .chain(&parts.srcs)
        .chain(std::iter::once(&parts.crate_root))
    {
        spec.input(file);
    }
    for krate in &parts.transitive {
        spec.input(krate.file_for(reads));
    }
    spec.inputs.sort();
    spec.inputs.dedup();
    if let Some(rmeta) = &rmeta {
        spec.output(rmeta, false);
        spec.early_outputs = Some(artifacts::parser());
    }
    spec.output(&output, crate_type == CrateType::Bin);
    ctx.register(spec);

    let dep_crate = match crate_type {
        CrateType::Rlib if !test => rmeta.map(|rmeta| DepCrate {
            name: name.clone(),
            crate_type,
            metadata: rmeta,
            link: output.clone(),
        }),
        CrateType::ProcMacro => Some(DepCrate {
            name: name.clone(),
            crate_type,
            metadata: output.clone(),
            link: output.clone(),
        }),
        _ => None,
    };
    Ok(Compiled { output, dep_crate })
}

/// The environment cargo gives rustc for a crate (`env!("CARGO_PKG_VERSION")` and friends), plus
/// `rustc_env`. `${pwd}` is the exec root; the helper substitutes it.
pub fn crate_env(parts: &CrateParts) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("PATH".to_string(), crate::ACTION_PATH.to_string());
    env.insert("CARGO_CRATE_NAME".to_string(), parts.crate_name.clone());
    // The target's name, as rules_rust sets it (`attr.name`): a BUILD file has no package name,
    // and guessing one from the crate name turned `my_pkg` into `my-pkg`. Registry crates set
    // their real package name through `rustc_env`.
    env.insert("CARGO_PKG_NAME".to_string(), parts.label.name.clone());
    env.insert(
        "CARGO_MANIFEST_DIR".to_string(),
        format!("${{pwd}}/{}", parts.package_dir)
            .trim_end_matches('/')
            .to_string(),
    );
    env.extend(version_env(&parts.version));
    for key in [
        "AUTHORS",
        "DESCRIPTION",
        "HOMEPAGE",
        "REPOSITORY",
        "LICENSE",
        "LICENSE_FILE",
        "RUST_VERSION",
        "README",
    ] {
        env.insert(format!("CARGO_PKG_{key}"), String::new());
    }
    env.extend(parts.rustc_env.clone());
    env
}

/// `CARGO_PKG_VERSION` and its parts.
pub fn version_env(version: &str) -> Vec<(String, String)> {
    let (core, pre) = version.split_once('-').unwrap_or((version, ""));
    let mut numbers = core.split('.');
    let mut next = || numbers.next().unwrap_or("0").to_string();
    vec![
        ("CARGO_PKG_VERSION".to_string(), version.to_string()),
        ("CARGO_PKG_VERSION_MAJOR".to_string(), next()),
        ("CARGO_PKG_VERSION_MINOR".to_string(), next()),
        (
            "CARGO_PKG_VERSION_PATCH".to_string(),
            next().split('+').next().unwrap_or("0").to_string(),
        ),
        ("CARGO_PKG_VERSION_PRE".to_string(), pre.to_string()),
    ]
}

/// Runfiles of a binary or test: its `data` and its dependencies' runfiles.
pub fn runfiles(
    _ctx: &AnalysisContext<'_>,
    parts: &CrateParts,
) -> Result<Vec<(String, Artifact)>, AnalysisError> {
    let mut files = parts.data.clone();
    files.sort();
    files.dedup_by(|a, b| a.0 == b.0);
    Ok(files)
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_parts() {
        let env: BTreeMap<_, _> = version_env("1.2.3-beta.1").into_iter().collect();
        assert_eq!(env["CARGO_PKG_VERSION_MAJOR"], "1");
        assert_eq!(env["CARGO_PKG_VERSION_PATCH"], "3");
        assert_eq!(env["CARGO_PKG_VERSION_PRE"], "beta.1");
    }

    #[test]
    fn external_package_dirs() {
        let label = Label::parse("@crates//serde:serde", "").unwrap();
        assert_eq!(package_dir(&label), "external/crates/serde");
    }
}
