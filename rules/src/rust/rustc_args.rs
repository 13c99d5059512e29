//! The rustc command line for one crate, as cargo and rules_rust write it: one process per crate
//! that emits the `.rmeta` (announced through `--json=artifacts`) and the `.rlib` or binary. Pure:
//! paths in, arguments out.

use super::crate_info::CrateType;

/// Bazel's compilation modes (`-c`), mapped to rustc's codegen options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `fastbuild`: no optimisation, no debug info (rules_rust's mapping).
    Fastbuild,
    /// `dbg`: no optimisation, full debug info (cargo's dev profile).
    Dbg,
    /// `opt`: `-C opt-level=3`, debug info stripped (cargo's release profile).
    Opt,
}

impl Mode {
    /// The mode named by `-c`; anything else is `fastbuild`, Bazel's default.
    pub fn from_setting(name: &str) -> Mode {
        match name {
            "dbg" => Mode::Dbg,
            "opt" => Mode::Opt,
            _ => Mode::Fastbuild,
        }
    }

    /// `-C` options for this mode. Under `opt`, debug assertions and overflow checks are off by
    /// name, as cargo's release profile (and its build-override) has them: rustc's own default
    /// follows the opt-level, so the `-Copt-level=0` of build scripts, proc-macros and crates only
    /// they use would otherwise turn them back on.
    pub fn codegen(self) -> &'static [&'static str] {
        match self {
            Mode::Fastbuild => &["opt-level=0", "debuginfo=0", "strip=none"],
            Mode::Dbg => &["opt-level=0", "debuginfo=2", "strip=none"],
            Mode::Opt => &[
                "opt-level=3",
                "debuginfo=0",
                "strip=debuginfo",
                "debug-assertions=off",
                "overflow-checks=off",
            ],
        }
    }

    /// Cargo's `PROFILE` for build scripts.
    pub fn profile(self) -> &'static str {
        match self {
            Mode::Opt => "release",
            _ => "debug",
        }
    }

    /// Cargo's `OPT_LEVEL` and `DEBUG` for build scripts.
    pub fn opt_level_and_debug(self) -> (&'static str, &'static str) {
        match self {
            Mode::Fastbuild => ("0", "false"),
            Mode::Dbg => ("0", "true"),
            Mode::Opt => ("3", "false"),
        }
    }
}

/// Everything that shapes one rustc invocation; paths are exec-root-relative.
#[derive(Clone, Debug)]
pub struct CompileRequest {
    /// `--crate-name`.
    pub crate_name: String,
    /// `--crate-type`.
    pub crate_type: CrateType,
    /// The crate root source file.
    pub crate_root: String,
    /// `--edition`.
    pub edition: String,
    /// Compilation mode.
    pub mode: Mode,
    /// `-C metadata`: distinguishes this crate's symbols from any other crate of the same name.
    pub metadata: String,
    /// Enabled cargo features (`--cfg feature="..."`).
    pub features: Vec<String>,
    /// Direct dependencies: (name in code, file).
    pub externs: Vec<(String, String)>,
    /// Directories holding the transitive dependencies (`-L dependency=`).
    pub dependency_dirs: Vec<String>,
    /// `--test`: the libtest harness.
    pub test: bool,
    /// `--cap-lints=allow`: third-party code, whose warnings are not the user's to fix.
    pub cap_lints: bool,
    /// Where the `.rmeta` goes (libraries only).
    pub rmeta: Option<String>,
    /// Where the rlib, dylib, archive or executable goes.
    pub output: String,
    /// The C compiler rustc links with.
    pub linker: String,
    /// The `rustc_flags` attribute, last so that it can override.
    pub extra_flags: Vec<String>,
}

/// Cargo's default `build-override` profile (`opt-level = 0`, `debug = false`) as rustc flags:
/// build scripts, proc-macros and the crates only they use run at build time only, so they are
/// neither optimised nor given debug info, in every compilation mode.
pub const BUILD_OVERRIDE: &[&str] = &["-Copt-level=0", "-Cdebuginfo=0"];

/// The arguments after the rustc binary.
pub fn arguments(req: &CompileRequest) -> Vec<String> {
    let mut args = vec![
        format!("--crate-name={}", req.crate_name),
        format!("--edition={}", req.edition),
        req.crate_root.clone(),
        "--error-format=json".to_string(),
        "--json=artifacts".to_string(),
        format!("--crate-type={}", req.crate_type.flag()),
    ];
    args.push(match &req.rmeta {
        Some(rmeta) => format!("--emit=metadata={rmeta},link={}", req.output),
        None => format!("--emit=link={}", req.output),
    });
    if req.test {
        args.push("--test".to_string());
    }
    for option in req.mode.codegen() {
        // Cargo's `build-override` profile: proc-macros (and build scripts, see
        // `build_script.rs`) run at build time only: not optimised, no debug info.
        if req.crate_type == CrateType::ProcMacro
            && (option.starts_with("opt-level=") || option.starts_with("debuginfo="))
        {
            continue;
        }
        args.push(format!("-C{option}"));
    }
    if req.crate_type == CrateType::ProcMacro {
        args.extend(BUILD_OVERRIDE.iter().map(|flag| flag.to_string()));
    }
    args.push("-Cembed-bitcode=no".to_string());
    args.push(format!("-Cmetadata={}", req.metadata));
    if req.crate_type.links() || req.test {
        args.push(format!("-Clinker={}", req.linker));
    }
    for feature in &req.features {
        args.push(format!("--cfg=feature=\"{feature}\""));
    }
    if req.crate_type == CrateType::ProcMacro {
        args.push("--extern=proc_macro".to_string());
    }
    for (name, path) in &req.externs {
        args.push(format!("--extern={name}={path}"));
    }
    for dir in &req.dependency_dirs {
        args.push(format!("-Ldependency={dir}"));
    }
    if req.cap_lints {
        args.push("--cap-lints=allow".to_string());
    }
    args.push("--remap-path-prefix=${pwd}/=".to_string());
    args.extend(req.extra_flags.iter().cloned());
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn request() -> CompileRequest {
        CompileRequest {
            crate_name: "greet".into(),
            crate_type: CrateType::Rlib,
            crate_root: "greet/src/lib.rs".into(),
            edition: "2021".into(),
            mode: Mode::Fastbuild,
            metadata: "0123abcd".into(),
            features: vec!["std".into()],
            externs: vec![("util".into(), "kiln-out/bin/util/libutil-1.rmeta".into())],
            dependency_dirs: vec!["kiln-out/bin/util".into()],
            test: false,
            cap_lints: false,
            rmeta: Some("kiln-out/bin/greet/libgreet-0123abcd.rmeta".into()),
            output: "kiln-out/bin/greet/libgreet-0123abcd.rlib".into(),
            linker: "/usr/bin/cc".into(),
            extra_flags: vec!["-Dwarnings".into()],
        }
    }

    #[test]
    fn library_emits_rmeta_and_rlib_in_one_process() {
        expect![[r#"
            --crate-name=greet
            --edition=2021
            greet/src/lib.rs
            --error-format=json
            --json=artifacts
            --crate-type=rlib
            --emit=metadata=kiln-out/bin/greet/libgreet-0123abcd.rmeta,link=kiln-out/bin/greet/libgreet-0123abcd.rlib
            -Copt-level=0
            -Cdebuginfo=0
            -Cstrip=none
            -Cembed-bitcode=no
            -Cmetadata=0123abcd
            --cfg=feature="std"
            --extern=util=kiln-out/bin/util/libutil-1.rmeta
            -Ldependency=kiln-out/bin/util
            --remap-path-prefix=${pwd}/=
            -Dwarnings"#]]
        .assert_eq(&arguments(&request()).join("\n"));
    }

    #[test]
    fn opt_test_binary_of_third_party_crate() {
        let mut req = request();
        req.crate_type = CrateType::Bin;
        req.test = true;
        req.mode = Mode::Opt;
        req.cap_lints = true;
        req.rmeta = None;
        req.output = "kiln-out/bin/greet/greet_test".into();
        let args = arguments(&req);
        for wanted in [
            "--test",
            "-Copt-level=3",
            "-Cstrip=debuginfo",
            "-Clinker=/usr/bin/cc",
            "--cap-lints=allow",
            "--emit=link=kiln-out/bin/greet/greet_test",
        ] {
            assert!(
                args.iter().any(|a| a == wanted),
                "{wanted} missing: {args:?}"
            );
        }
    }

    #[test]
    fn proc_macros_are_not_optimised() {
        let mut req = request();
        req.crate_type = CrateType::ProcMacro;
        req.mode = Mode::Opt;
        let args = arguments(&req);
        assert!(args.contains(&"-Copt-level=0".to_string()), "{args:?}");
        assert!(!args.contains(&"-Copt-level=3".to_string()), "{args:?}");
        // Cargo's release build-override: not optimised, but no debug assertions either.
        assert!(
            args.contains(&"-Cdebug-assertions=off".to_string()),
            "{args:?}"
        );
        assert!(
            args.contains(&"-Coverflow-checks=off".to_string()),
            "{args:?}"
        );
        // Cargo's dev build-override: no debug info either, under `dbg` too.
        req.mode = Mode::Dbg;
        let args = arguments(&req);
        assert!(args.contains(&"-Cdebuginfo=0".to_string()), "{args:?}");
        assert!(!args.contains(&"-Cdebuginfo=2".to_string()), "{args:?}");
        req.crate_type = CrateType::Rlib;
        assert!(arguments(&req).contains(&"-Cdebuginfo=2".to_string()));
    }

    #[test]
    fn debug_assertions_follow_the_opt_level_outside_opt() {
        let args = arguments(&request());
        assert!(
            !args.iter().any(|a| a.contains("debug-assertions")),
            "{args:?}"
        );
    }

    #[test]
    fn modes_map_to_cargo_profiles() {
        assert_eq!(Mode::from_setting("dbg").codegen()[1], "debuginfo=2");
        assert_eq!(Mode::from_setting("opt").profile(), "release");
        assert_eq!(Mode::from_setting("fastbuild"), Mode::Fastbuild);
        assert_eq!(Mode::from_setting(""), Mode::Fastbuild);
    }
}
