//! The external `.bzl` files Kiln answers itself, so that BUILD files written for Bazel work
//! unchanged: rules_go's and rules_rust's rule entry points resolve to Kiln's native rules,
//! Gazelle's `gazelle` is a no-op, and a few bazel_skylib and rules_shell files are provided.
//! Nothing is read from disk or network for them.

use crate::label::Label;
use crate::rule_schema::RuleSchema;

/// What a well-known external file provides.
pub(crate) enum External {
    /// Rule symbols (Kiln's native rules or no-op ones), by name.
    Rules(Vec<String>),
    /// A Starlark source Kiln embeds, evaluated like a workspace `.bzl`.
    Embedded(&'static str),
}

/// The repositories Kiln knows, for messages.
const KNOWN_REPOS: &str =
    "`@io_bazel_rules_go`, `@rules_go`, `@rules_rust`, `@bazel_gazelle`, `@bazel_skylib`, `@rules_shell`";

const PATHS_BZL: &str = r#"
def _basename(p):
    return p.rpartition("/")[-1]

def _dirname(p):
    prefix, sep, _ = p.rpartition("/")
    if not prefix:
        return sep
    return prefix.rstrip("/")

def _join(path, *others):
    result = path
    for p in others:
        if p.startswith("/"):
            result = p
        elif not result or result.endswith("/"):
            result += p
        else:
            result += "/" + p
    return result

def _split_extension(p):
    b = _basename(p)
    last_dot = b.rfind(".")
    if last_dot <= 0:
        return (p, "")
    n = len(b) - last_dot
    return (p[:-n], p[-n:])

def _is_absolute(path):
    return path.startswith("/")

paths = struct(
    basename = _basename,
    dirname = _dirname,
    is_absolute = _is_absolute,
    join = _join,
    split_extension = _split_extension,
)
"#;

/// Resolves `label` (of an external repository) to what Kiln provides for it, or explains why
/// Kiln provides nothing.
pub(crate) fn resolve(label: &Label, rules: &[RuleSchema]) -> Result<External, String> {
    let with_prefix = |prefix: &str| -> Vec<String> {
        rules
            .iter()
            .filter(|r| r.name.starts_with(prefix))
            .map(|r| r.name.to_string())
            .collect()
    };
    let named = |name: &str| -> Vec<String> {
        rules
            .iter()
            .filter(|r| r.name == name)
            .map(|r| r.name.to_string())
            .collect()
    };
    let stem = label.name.strip_suffix(".bzl").unwrap_or(&label.name);
    let provided = match (label.repo.as_str(), label.package.as_str(), label.name.as_str()) {
        ("io_bazel_rules_go" | "rules_go", "go", "def.bzl") => with_prefix("go_"),
        ("rules_rust", "rust", "defs.bzl") => with_prefix("rust_"),
        ("rules_rust", "cargo", "defs.bzl" | "cargo_build_script.bzl") => with_prefix("cargo_"),
        ("bazel_gazelle", "", "def.bzl") => vec!["gazelle".to_string(), "gazelle_binary".to_string()],
        ("bazel_skylib", "lib", "paths.bzl") => return Ok(External::Embedded(PATHS_BZL)),
        ("bazel_skylib", "rules", _) => named(stem),
        ("rules_shell", "shell", "sh_binary.bzl" | "sh_test.bzl" | "sh_library.bzl") => named(stem),
        (
            "io_bazel_rules_go" | "rules_go" | "rules_rust" | "bazel_gazelle" | "bazel_skylib"
            | "rules_shell",
            _,
            _,
        ) => {
            return Err(format!(
                "Kiln does not provide `{label}`; of `@{}` it provides only the files BUILD files load rules from",
                label.repo
            ))
        }
        _ => {
            return Err(format!(
                "Kiln does not provide repository `@{}` (loading `{label}`); it provides {KNOWN_REPOS}",
                label.repo
            ))
        }
    };
    Ok(External::Rules(provided))
}

/// Whether `repo` is one of the repositories Kiln answers itself (never read from disk).
pub(crate) fn is_builtin_repo(repo: &str) -> bool {
    matches!(
        repo,
        "io_bazel_rules_go"
            | "rules_go"
            | "rules_rust"
            | "bazel_gazelle"
            | "bazel_skylib"
            | "rules_shell"
    )
}

/// The name Kiln gives an embedded file in diagnostics.
pub(crate) fn embedded_filename(label: &Label) -> String {
    label.to_string()
}
