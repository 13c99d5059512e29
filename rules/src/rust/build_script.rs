//! `cargo_build_script`: compiles `build.rs` for the host, then runs it through the helper with the
//! environment cargo gives build scripts (paths inside the exec root). What its `cargo:` lines ask
//! for lands in files the crate's compile applies ([`BuildScriptInfo`]).

use std::collections::BTreeMap;

use kiln_graph::action::ActionSpec;
use kiln_graph::analysis::{AnalysisContext, AnalysisError, DefaultInfo, Providers, RuleImpl};
use kiln_graph::rule_schema::{AttrKind, AttrSchema, RuleSchema};

use super::cc_toolchain::{AR, CXX};
use super::compile::{self, version_env};
use super::crate_info::{BuildScriptInfo, CrateInfo, CrateType, DepUse};
use super::rustc_args::{self, Mode};
use super::toolchain::{RustToolchain, SANDBOX_RUSTC, SANDBOX_SYSROOT};
use super::{context, helper, LINKER};

/// The `cargo_build_script` rule.
pub struct CargoBuildScript;

const ATTRS: &[AttrSchema] = &[
    AttrSchema::optional("srcs", AttrKind::LabelList),
    AttrSchema::optional("crate_root", AttrKind::Label),
    AttrSchema::optional("crate_name", AttrKind::String),
    AttrSchema::optional("deps", AttrKind::LabelList),
    AttrSchema::optional("proc_macro_deps", AttrKind::LabelList),
    AttrSchema::optional("link_deps", AttrKind::LabelList),
    AttrSchema::optional("edition", AttrKind::String),
    AttrSchema::optional("crate_features", AttrKind::StringList),
    AttrSchema::optional("rustc_flags", AttrKind::StringList),
    AttrSchema::optional("rustc_env", AttrKind::StringDict),
    AttrSchema::optional("build_script_env", AttrKind::StringDict),
    AttrSchema::optional("data", AttrKind::LabelList),
    AttrSchema::optional("compile_data", AttrKind::LabelList),
    AttrSchema::optional("tools", AttrKind::LabelList),
    AttrSchema::optional("aliases", AttrKind::LabelKeyedStringDict),
    AttrSchema::optional("links", AttrKind::String),
    AttrSchema::optional("version", AttrKind::String),
    AttrSchema::optional("pkg_name", AttrKind::String),
];

impl RuleImpl for CargoBuildScript {
    fn schema(&self) -> RuleSchema {
        RuleSchema {
            name: "cargo_build_script",
            attrs: ATTRS,
            test: false,
            executable: false,
        }
    }

    fn analyze(&self, ctx: &mut AnalysisContext<'_>) -> Result<Providers, AnalysisError> {
        let mut parts = compile::parts_from_attrs(ctx, None, CrateType::Bin, DepUse::Host)?;
        if ctx.target.string("crate_name").is_none_or(str::is_empty) {
            parts.crate_name = "build_script_build".to_string();
        }
        // The script binary gets its own name so that it never collides with the run's outputs.
        let script_label = kiln_graph::label::Label {
            name: format!("{}_script_/build_script_build", ctx.target.label.name),
            ..ctx.target.label.clone()
        };
        parts.label = script_label;
        // Cargo's `build-override` profile: build scripts are not optimised, no debug info.
        parts
            .rustc_flags
            .extend(rustc_args::BUILD_OVERRIDE.iter().map(|f| f.to_string()));
        let script = compile::register(ctx, &parts, CrateType::Bin, false)?.output;

        let toolchain = context::toolchain(ctx)?;
        let helper_bin = context::helper(ctx, &toolchain)?;
        let name = ctx.target.label.name.clone();
        let out = |suffix: &str| ctx.declare_output(&format!("{name}.{suffix}"));
        let info = BuildScriptInfo {
            flags: out("flags"),
            link_search: out("link_search"),
            link_args: out("link_args"),
            env: out("env"),
            dep_env: out("depenv"),
            out_dir_archive: out("out_dir.archive"),
            out_dir: format!("{}/{name}.out_dir", ctx.package_out_dir()),
        };
        let links = ctx.target.string("links").unwrap_or_default().to_string();
        let mut argv = vec![
            helper_bin.path.clone(),
            "build-script".to_string(),
            "--script".to_string(),
            script.path.clone(),
            "--manifest-dir".to_string(),
            non_empty(&parts.package_dir),
            "--out-dir".to_string(),
            info.out_dir.clone(),
            "--out-archive".to_string(),
            info.out_dir_archive.path.clone(),
            "--flags".to_string(),
            info.flags.path.clone(),
            "--link-search".to_string(),
            info.link_search.path.clone(),
            "--link-args".to_string(),
            info.link_args.path.clone(),
            "--env".to_string(),
            info.env.path.clone(),
            "--dep-env".to_string(),
            info.dep_env.path.clone(),
            "--links".to_string(),
            links.clone(),
        ];
        let mut inputs = vec![helper_bin, script];
        for (index, label) in ctx.target.labels("link_deps").into_iter().enumerate() {
            let Some(dep_env) = ctx
                .dep(&label)?
                .get::<CrateInfo>()
                .and_then(|c| c.dep_env.clone())
            else {
                continue;
            };
            // The values may name the dependency's OUT_DIR (`DEP_Z_INCLUDE`, `DEP_Z_ROOT`): the
            // helper unpacks it here when they do and points them at the copy, as cargo's
            // dependents find the real OUT_DIR.
            argv.extend([
                "--dep-env-in".to_string(),
                format!(
                    "{}={}={}/{name}.dep_out/{index}={}",
                    dep_env.file.path,
                    dep_env.out_dir,
                    ctx.package_out_dir(),
                    dep_env.out_dir_archive.path
                ),
            ]);
            inputs.extend([dep_env.file, dep_env.out_dir_archive]);
        }
        inputs.extend(parts.srcs.iter().cloned());
        inputs.extend(ctx.files("data")?);
        inputs.extend(ctx.files("tools")?);

        let mut spec = ActionSpec::new(ctx.target.label.clone(), "CargoBuildScriptRun", argv);
        spec.progress_message = format!("Running Cargo build script {}", ctx.target.label);
        spec.env = script_env(ctx, &parts, &toolchain, &links);
        spec.tool_mounts.push(helper::mount(&toolchain));
        // The whole C toolchain (`CC`, `CXX`, `AR` and what they run) is part of the key.
        spec.host_tools = super::link_tools();
        for file in &inputs {
            spec.input(file);
        }
        spec.inputs.sort();
        spec.inputs.dedup();
        for file in [
            &info.flags,
            &info.link_search,
            &info.link_args,
            &info.env,
            &info.dep_env,
            &info.out_dir_archive,
        ] {
            spec.output(file, false);
        }
        ctx.register(spec);
        let mut providers = Providers::new(DefaultInfo {
            files: vec![info.out_dir_archive.clone()],
            executable: None,
            runfiles: Vec::new(),
        });
        providers.insert(info);
        Ok(providers)
    }
}

/// `CARGO_ENCODED_RUSTFLAGS`: the script target's own `rustc_flags`, separated by `0x1f`, as
/// rules_rust sets it (Kiln has no workspace-wide `RUSTFLAGS`, so there is nothing else to add).
fn encoded_rustflags(ctx: &AnalysisContext<'_>) -> String {
    ctx.target.strings("rustc_flags").join("\u{1f}")
}

fn non_empty(dir: &str) -> String {
    if dir.is_empty() {
        ".".to_string()
    } else {
        dir.to_string()
    }
}

/// The environment cargo documents for build scripts; `OUT_DIR` and `CARGO_MANIFEST_DIR` are set
/// by the helper, `${pwd}` is the exec root.
fn script_env(
    ctx: &AnalysisContext<'_>,
    parts: &compile::CrateParts,
    toolchain: &RustToolchain,
    links: &str,
) -> BTreeMap<String, String> {
    let mode = Mode::from_setting(&ctx.settings.compilation_mode);
    let (opt_level, debug) = mode.opt_level_and_debug();
    let pkg_name = ctx
        .target
        .string("pkg_name")
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| {
            ctx.target
                .label
                .name
                .trim_end_matches("_bs")
                .trim_end_matches("_build_script")
                .replace('_', "-")
        });
    let mut env: BTreeMap<String, String> = [
        ("PATH", crate::ACTION_PATH.to_string()),
        ("CARGO_PKG_NAME", pkg_name.clone()),
        ("CARGO_CRATE_NAME", "build_script_build".to_string()),
        ("CARGO_MANIFEST_LINKS", links.to_string()),
        ("CARGO_ENCODED_RUSTFLAGS", encoded_rustflags(ctx)),
        ("TARGET", toolchain.host.clone()),
        ("HOST", toolchain.host.clone()),
        ("RUSTC", SANDBOX_RUSTC.to_string()),
        ("RUSTDOC", format!("{SANDBOX_SYSROOT}/bin/rustdoc")),
        ("RUSTC_LINKER", LINKER.to_string()),
        ("PROFILE", mode.profile().to_string()),
        ("OPT_LEVEL", opt_level.to_string()),
        ("DEBUG", debug.to_string()),
        ("NUM_JOBS", "1".to_string()),
        ("CC", LINKER.to_string()),
        ("CXX", CXX.to_string()),
        ("AR", AR.to_string()),
        ("CFLAGS", String::new()),
        ("CXXFLAGS", String::new()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
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
    env.extend(cfg_env(&toolchain.cfg, mode));
    for feature in &parts.features {
        env.insert(
            format!("CARGO_FEATURE_{}", feature.to_uppercase().replace('-', "_")),
            "1".to_string(),
        );
    }
    env.extend(ctx.target.string_dict("build_script_env"));
    env
}

/// `CARGO_CFG_*` from `rustc --print cfg`: names upper-cased, several values joined by `,`.
/// `debug_assertions` follows the compilation mode, as cargo's profiles do.
pub fn cfg_env(cfg: &[String], mode: Mode) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in cfg {
        let (name, value) = match line.split_once('=') {
            Some((n, v)) => (n, v.trim_matches('"').to_string()),
            None => (line.as_str(), String::new()),
        };
        if name == "debug_assertions" {
            continue;
        }
        let values = env
            .entry(format!("CARGO_CFG_{}", name.to_uppercase()))
            .or_default();
        if !value.is_empty() {
            values.push(value);
        }
    }
    if mode != Mode::Opt {
        env.entry("CARGO_CFG_DEBUG_ASSERTIONS".to_string())
            .or_default();
    }
    env.into_iter().map(|(k, v)| (k, v.join(","))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cfg_values_are_joined() {
        let cfg: Vec<String> = [
            "debug_assertions",
            "target_os=\"linux\"",
            "target_feature=\"sse\"",
            "target_feature=\"sse2\"",
            "unix",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let env = cfg_env(&cfg, Mode::Fastbuild);
        assert_eq!(env["CARGO_CFG_TARGET_OS"], "linux");
        assert_eq!(env["CARGO_CFG_TARGET_FEATURE"], "sse,sse2");
        assert_eq!(env["CARGO_CFG_UNIX"], "");
        assert_eq!(env["CARGO_CFG_DEBUG_ASSERTIONS"], "");
        assert!(!cfg_env(&cfg, Mode::Opt).contains_key("CARGO_CFG_DEBUG_ASSERTIONS"));
    }
}
