//! `rust_library`, `rust_proc_macro`, `rust_binary`, `rust_static_library` and `rust_test` with
//! rules_rust's attribute names: one rustc action per crate (through the helper), providers for
//! dependents, runfiles and test information for binaries and tests.

use std::sync::Arc;

use kiln_graph::analysis::{
    AnalysisContext, AnalysisError, DefaultInfo, Providers, RuleImpl, TestInfo,
};
use kiln_graph::rule_schema::{AttrKind, AttrSchema, RuleSchema};

use super::compile::{self, CrateParts};
use super::crate_info::{CrateInfo, CrateType, DepUse, Twins};
use super::rustc_args;

/// Which of the five rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `rust_library`.
    Library,
    /// `rust_proc_macro`.
    ProcMacro,
    /// `rust_binary`.
    Binary,
    /// `rust_static_library`.
    StaticLibrary,
    /// `rust_test`.
    Test,
}

/// One of the Rust crate rules.
pub struct RustCrateRule(pub Kind);

/// Attributes shared by the crate rules and `cargo_build_script`.
pub const CRATE_ATTRS: &[AttrSchema] = &[
    AttrSchema::optional("srcs", AttrKind::LabelList),
    AttrSchema::optional("crate_root", AttrKind::Label),
    AttrSchema::optional("crate_name", AttrKind::String),
    AttrSchema::optional("deps", AttrKind::LabelList),
    AttrSchema::optional("proc_macro_deps", AttrKind::LabelList),
    AttrSchema::optional("edition", AttrKind::String),
    AttrSchema::optional("crate_features", AttrKind::StringList),
    AttrSchema::optional("rustc_flags", AttrKind::StringList),
    AttrSchema::optional("rustc_env", AttrKind::StringDict),
    AttrSchema::optional("data", AttrKind::LabelList),
    AttrSchema::optional("compile_data", AttrKind::LabelList),
    AttrSchema::optional("aliases", AttrKind::LabelKeyedStringDict),
    AttrSchema::optional("version", AttrKind::String),
    AttrSchema::optional("crate", AttrKind::Label),
    AttrSchema::optional("use_libtest_harness", AttrKind::Bool),
    AttrSchema::optional("rustc_env_files", AttrKind::LabelList),
    AttrSchema::optional("lint_config", AttrKind::Label),
    AttrSchema::optional("crate_type", AttrKind::String),
    // Kiln's own, written only into generated `@crates` BUILD files (see `Twins`).
    AttrSchema::optional("kiln_host_twin", AttrKind::Label),
    AttrSchema::optional("kiln_test_twin", AttrKind::Label),
];

impl RuleImpl for RustCrateRule {
    fn schema(&self) -> RuleSchema {
        let name = match self.0 {
            Kind::Library => "rust_library",
            Kind::ProcMacro => "rust_proc_macro",
            Kind::Binary => "rust_binary",
            Kind::StaticLibrary => "rust_static_library",
            Kind::Test => "rust_test",
        };
        RuleSchema {
            name,
            attrs: CRATE_ATTRS,
            test: self.0 == Kind::Test,
            executable: matches!(self.0, Kind::Binary | Kind::Test),
        }
    }

    fn analyze(&self, ctx: &mut AnalysisContext<'_>) -> Result<Providers, AnalysisError> {
        let crate_type = match self.0 {
            Kind::Library => CrateType::Rlib,
            Kind::ProcMacro => CrateType::ProcMacro,
            Kind::Binary | Kind::Test => CrateType::Bin,
            Kind::StaticLibrary => CrateType::StaticLib,
        };
        let test = self.0 == Kind::Test;
        let dep_use = match self.0 {
            Kind::Test => DepUse::Test,
            Kind::ProcMacro => DepUse::Host,
            _ => DepUse::Normal,
        };
        let parts = if test {
            match ctx.target.labels("crate").first() {
                Some(lib) => {
                    let base = ctx.dep(lib)?.get::<CrateParts>().cloned().ok_or_else(|| {
                        ctx.error(format!(
                            "`crate = \"{lib}\"` must name a `rust_library` or `rust_binary`"
                        ))
                    })?;
                    compile::parts_from_attrs(ctx, Some(base), CrateType::Bin, dep_use)?
                }
                None => compile::parts_from_attrs(ctx, None, CrateType::Bin, dep_use)?,
            }
        } else {
            compile::parts_from_attrs(ctx, None, crate_type, dep_use)?
        };
        let harness = test
            && !matches!(
                ctx.target.attrs.get("use_libtest_harness"),
                Some(kiln_graph::target::AttrValue::Bool(false))
            );
        let compiled = compile::register(ctx, &parts, crate_type, harness)?;
        let runfiles = compile::runfiles(ctx, &parts)?;
        let mut providers = Providers::new(DefaultInfo {
            files: vec![compiled.output.clone()],
            executable: crate_type
                .eq(&CrateType::Bin)
                .then(|| compiled.output.clone()),
            runfiles: runfiles.clone(),
        });
        if let Some(krate) = compiled.dep_crate {
            let mut twins = twins(ctx)?;
            if self.0 == Kind::Library {
                if twins.host.is_none() {
                    twins.host = other_build(ctx, &parts, DepUse::Host)?;
                }
                if twins.test.is_none() {
                    twins.test = other_build(ctx, &parts, DepUse::Test)?;
                }
            }
            providers.insert(CrateInfo {
                krate,
                transitive: parts.transitive_for_dependents(),
                link_search: parts.link_search.clone(),
                dep_env: parts.build_script.as_ref().map(|b| b.dep_env()),
                runfiles,
                twins,
            });
        }
        if test {
            providers.test = Some(TestInfo {
                env: ctx.target.string_dict("env"),
                args: ctx.target.strings("args"),
                filter_env: None,
                filter_args: Some(|filter| vec![filter.to_string()]),
                cannot_run: None,
                working_dir: None,
            });
        }
        providers.insert(parts);
        Ok(providers)
    }
}

/// A workspace library whose dependencies have other builds for `dep_use` (registry crates with
/// host or dev-dependency features, or libraries like this one) gets such a build of its own,
/// against those, so that a build script or proc-macro (host) or a `rust_test` linking it links one
/// build of each crate, as cargo does. Its action is registered here and runs only if something
/// needs it. The host build is neither optimised nor given debug info, as cargo's
/// `build-override`.
fn other_build(
    ctx: &mut AnalysisContext<'_>,
    parts: &CrateParts,
    dep_use: DepUse,
) -> Result<Option<Arc<CrateInfo>>, AnalysisError> {
    if !ctx.target.label.is_main_repo() || !compile::deps_change_for(parts, dep_use) {
        return Ok(None);
    }
    let mut other = parts.clone();
    compile::rechoose_deps(&mut other, dep_use);
    let suffix = match dep_use {
        DepUse::Host => {
            other
                .rustc_flags
                .extend(rustc_args::BUILD_OVERRIDE.iter().map(|f| f.to_string()));
            "host_build"
        }
        _ => "test_build",
    };
    other.label = kiln_graph::label::Label {
        name: format!("{}.{suffix}", parts.label.name),
        ..parts.label.clone()
    };
    let compiled = compile::register(ctx, &other, CrateType::Rlib, false)?;
    let Some(krate) = compiled.dep_crate else {
        return Ok(None);
    };
    Ok(Some(Arc::new(CrateInfo {
        krate,
        transitive: other.transitive_for_dependents(),
        link_search: other.link_search.clone(),
        dep_env: other.build_script.as_ref().map(|b| b.dep_env()),
        runfiles: compile::runfiles(ctx, &other)?,
        twins: Twins::default(),
    })))
}

/// The other builds `kiln_host_twin` / `kiln_test_twin` name.
fn twins(ctx: &AnalysisContext<'_>) -> Result<Twins, AnalysisError> {
    let twin = |attr: &str| -> Result<Option<Arc<CrateInfo>>, AnalysisError> {
        match ctx.target.labels(attr).first() {
            None => Ok(None),
            Some(label) => {
                let info = ctx.dep(label)?.get::<CrateInfo>().cloned().ok_or_else(|| {
                    ctx.error(format!("`{attr}` must name a Rust library, not `{label}`"))
                })?;
                Ok(Some(Arc::new(info)))
            }
        }
    };
    Ok(Twins {
        host: twin("kiln_host_twin")?,
        test: twin("kiln_test_twin")?,
    })
}
