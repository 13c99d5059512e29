//! The `cargo:` / `cargo::` lines a build script prints, parsed into what cargo does with them.
//! Part of the Rust helper program (compiled by rustc inside the build, std only); also compiled
//! into `kiln-rules` for its unit tests.

/// What a build script asked for, in the order it printed it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Directives {
    /// Flags for the crate's own rustc (`--cfg`, `--check-cfg`, `-l`).
    pub crate_flags: Vec<String>,
    /// `-L` flags: for the crate and every crate that links it.
    pub link_search: Vec<String>,
    /// `-C link-arg=` flags, each with the targets it is for: `all` (`rustc-link-arg`), `bins`,
    /// `tests`, or `bin=NAME` (`rustc-link-arg-bin=NAME=ARG`).
    pub link_args: Vec<(String, String)>,
    /// Environment for the crate's rustc (`env!`).
    pub env: Vec<(String, String)>,
    /// `DEP_<LINKS>_<KEY>` values for the build scripts of direct dependents, as (KEY, value).
    pub metadata: Vec<(String, String)>,
    /// `warning=` messages.
    pub warnings: Vec<String>,
    /// `error=` messages: the build script failed.
    pub errors: Vec<String>,
}

/// Keys that are directives in the old one-colon syntax; any other `cargo:KEY=VALUE` is metadata.
const KNOWN: &[&str] = &[
    "rerun-if-changed",
    "rerun-if-env-changed",
    "rustc-link-arg",
    "rustc-link-arg-bins",
    "rustc-link-arg-bin",
    "rustc-link-arg-tests",
    "rustc-link-arg-examples",
    "rustc-link-arg-benches",
    "rustc-link-arg-cdylib",
    "rustc-cdylib-link-arg",
    "rustc-link-lib",
    "rustc-link-search",
    "rustc-flags",
    "rustc-cfg",
    "rustc-check-cfg",
    "rustc-env",
    "warning",
    "error",
];

/// Parses a build script's stdout. Lines that are not directives are ignored, as cargo does.
pub fn parse(stdout: &str) -> Result<Directives, String> {
    let mut d = Directives::default();
    for (number, line) in stdout.lines().enumerate() {
        let (new_syntax, rest) = if let Some(rest) = line.strip_prefix("cargo::") {
            (true, rest)
        } else if let Some(rest) = line.strip_prefix("cargo:") {
            (false, rest)
        } else {
            continue;
        };
        let Some((key, value)) = rest.split_once('=') else {
            return Err(format!(
                "line {}: `{line}` is not of the form `cargo::KEY=VALUE`",
                number + 1
            ));
        };
        if !new_syntax && !KNOWN.contains(&key) {
            d.metadata.push((key.to_string(), value.to_string()));
            continue;
        }
        apply(&mut d, key, value).map_err(|e| format!("line {}: {e}", number + 1))?;
    }
    if d.crate_flags.iter().any(|f| f.starts_with("--check-cfg=")) {
        // Any `--check-cfg` turns rustc's cfg checking on. Cargo always declares `docsrs`, `test`
        // and the package's features; Kiln knows only the enabled features here, so it accepts
        // any feature name rather than warn about a declared but disabled one.
        d.crate_flags
            .extend(CARGO_CHECK_CFG.iter().map(|f| f.to_string()));
    }
    Ok(d)
}

/// The names cargo declares for every crate whenever cfg checking is on.
const CARGO_CHECK_CFG: &[&str] = &[
    "--check-cfg=cfg(docsrs,test)",
    "--check-cfg=cfg(feature,values(any()))",
];

fn apply(d: &mut Directives, key: &str, value: &str) -> Result<(), String> {
    match key {
        "rustc-cfg" => d.crate_flags.push(format!("--cfg={value}")),
        "rustc-check-cfg" => d.crate_flags.push(format!("--check-cfg={value}")),
        "rustc-env" => {
            let (k, v) = value
                .split_once('=')
                .ok_or_else(|| format!("`rustc-env={value}` needs `NAME=VALUE`"))?;
            d.env.push((k.to_string(), v.to_string()));
        }
        "rustc-link-lib" => d.crate_flags.push(format!("-l{value}")),
        "rustc-link-search" => d.link_search.push(format!("-L{value}")),
        "rustc-flags" => {
            let mut words = value.split_whitespace();
            while let Some(word) = words.next() {
                let (flag, arg) = match word {
                    "-l" | "-L" => (
                        word,
                        words
                            .next()
                            .ok_or_else(|| format!("`{word}` in `rustc-flags` needs a value"))?,
                    ),
                    w if w.starts_with("-l") || w.starts_with("-L") => (&w[..2], &w[2..]),
                    other => {
                        return Err(format!(
                            "`rustc-flags` accepts only `-l` and `-L`, found `{other}`"
                        ))
                    }
                };
                if flag == "-l" {
                    d.crate_flags.push(format!("-l{arg}"));
                } else {
                    d.link_search.push(format!("-L{arg}"));
                }
            }
        }
        "rustc-link-arg" | "rustc-link-arg-bins" | "rustc-link-arg-tests" => {
            let scope = match key {
                "rustc-link-arg" => "all",
                "rustc-link-arg-bins" => "bins",
                _ => "tests",
            };
            d.link_args
                .push((scope.to_string(), format!("-Clink-arg={value}")))
        }
        "rustc-link-arg-bin" => {
            let (bin, arg) = value
                .split_once('=')
                .ok_or_else(|| format!("`rustc-link-arg-bin={value}` needs `BIN=ARG`"))?;
            d.link_args
                .push((format!("bin={bin}"), format!("-Clink-arg={arg}")));
        }
        "metadata" => {
            let (k, v) = value
                .split_once('=')
                .ok_or_else(|| format!("`metadata={value}` needs `KEY=VALUE`"))?;
            d.metadata.push((k.to_string(), v.to_string()));
        }
        "warning" => d.warnings.push(value.to_string()),
        "error" => d.errors.push(value.to_string()),
        // Content digests decide what reruns; examples, benches and cdylibs are not built.
        "rerun-if-changed"
        | "rerun-if-env-changed"
        | "rustc-link-arg-examples"
        | "rustc-link-arg-benches"
        | "rustc-link-arg-cdylib"
        | "rustc-cdylib-link-arg" => {}
        other => return Err(format!("unknown build script instruction `cargo::{other}`")),
    }
    Ok(())
}

/// Whether a link argument for `scope` (see [`Directives::link_args`]) applies to the target
/// `target`: `test`, or `bin=NAME` for the binary `NAME`.
pub fn link_arg_applies(scope: &str, target: &str) -> bool {
    match scope {
        "all" => true,
        "bins" => target.starts_with("bin="),
        "tests" => target == "test",
        bin => bin.starts_with("bin=") && bin == target,
    }
}

/// `DEP_<LINKS>_<KEY>` as cargo names it: upper case, `-` as `_`.
pub fn dep_var(links: &str, key: &str) -> String {
    format!("DEP_{}_{}", links, key)
        .to_uppercase()
        .replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_syntaxes_and_metadata() {
        let out = "\
cargo:rustc-cfg=has_foo
cargo::rustc-cfg=feature=\"x\"
cargo:rustc-env=GREETING=hi=there
cargo::rustc-check-cfg=cfg(has_foo)
cargo:rustc-link-lib=static=foo
cargo:rustc-link-search=native=/kiln/execroot/out
cargo:rustc-flags=-l bar -L/usr/lib
cargo:include=/some/dir
cargo::metadata=version=3
cargo:rerun-if-changed=build.rs
cargo:warning=careful
not a directive
";
        let d = parse(out).unwrap();
        assert_eq!(
            d.crate_flags,
            [
                "--cfg=has_foo",
                "--cfg=feature=\"x\"",
                "--check-cfg=cfg(has_foo)",
                "-lstatic=foo",
                "-lbar",
                "--check-cfg=cfg(docsrs,test)",
                "--check-cfg=cfg(feature,values(any()))",
            ]
        );
        // Without a `rustc-check-cfg`, cfg checking stays off, as before.
        assert_eq!(
            parse("cargo:rustc-cfg=x\n").unwrap().crate_flags,
            ["--cfg=x"]
        );
        assert_eq!(d.link_search, ["-Lnative=/kiln/execroot/out", "-L/usr/lib"]);
        assert_eq!(d.env, [("GREETING".to_string(), "hi=there".to_string())]);
        assert_eq!(
            d.metadata,
            [
                ("include".to_string(), "/some/dir".to_string()),
                ("version".to_string(), "3".to_string())
            ]
        );
        assert_eq!(d.warnings, ["careful"]);
    }

    #[test]
    fn new_syntax_rejects_unknown_keys_and_bad_values() {
        assert!(parse("cargo::include=/x\n")
            .unwrap_err()
            .contains("unknown"));
        assert!(parse("cargo:rustc-env=NOVALUE\n")
            .unwrap_err()
            .starts_with("line 1"));
        assert!(parse("cargo:rustc-flags=-O\n").is_err());
    }

    #[test]
    fn link_args_reach_the_targets_cargo_gives_them_to() {
        let d = parse(
            "cargo:rustc-link-arg=-all\ncargo:rustc-link-arg-bins=-bins\n\
             cargo:rustc-link-arg-tests=-tests\ncargo:rustc-link-arg-bin=tool=-tool\n",
        )
        .unwrap();
        let for_target = |target: &str| -> Vec<&str> {
            d.link_args
                .iter()
                .filter(|(scope, _)| link_arg_applies(scope, target))
                .map(|(_, arg)| arg.as_str())
                .collect()
        };
        assert_eq!(for_target("test"), ["-Clink-arg=-all", "-Clink-arg=-tests"]);
        assert_eq!(
            for_target("bin=tool"),
            ["-Clink-arg=-all", "-Clink-arg=-bins", "-Clink-arg=-tool"]
        );
        assert_eq!(
            for_target("bin=app"),
            ["-Clink-arg=-all", "-Clink-arg=-bins"]
        );
    }

    #[test]
    fn dep_var_names() {
        assert_eq!(dep_var("openssl-sys", "include"), "DEP_OPENSSL_SYS_INCLUDE");
    }
}
