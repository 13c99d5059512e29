//! Tidy checks that keep the architecture honest: the allowed dependency edges between Kiln's
//! crates (docs/architecture.md), a `//!` doc atop every module, and no `todo!`/`unimplemented!`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Kiln's crates and the Kiln crates each may depend on (normal dependencies).
pub const ALLOWED_EDGES: &[(&str, &[&str])] = &[
    ("kiln-cache", &[]),
    ("kiln-exec", &[]),
    ("kiln-graph", &["kiln-cache", "kiln-exec"]),
    ("kiln-rules", &["kiln-graph", "kiln-cache", "kiln-exec"]),
    // `remote` implements the engine's `RemoteCache` tier (graph::remote_tier).
    ("kiln-remote", &["kiln-graph", "kiln-cache"]),
    (
        "kiln-cli",
        &[
            "kiln-cache",
            "kiln-graph",
            "kiln-rules",
            "kiln-remote",
            "kiln-exec",
        ],
    ),
];

/// Crate directories checked.
pub const CRATE_DIRS: &[&str] = &["cache", "exec", "graph", "rules", "remote", "cli", "xtask"];

/// The repository root (this crate's parent directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Runs every check; returns every problem found.
pub fn check_all(root: &Path) -> Result<(), Vec<String>> {
    let mut problems = dependency_edges(root);
    problems.extend(module_docs(root));
    problems.extend(no_stubs(root));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Every `kiln-*` dependency of each crate must be an allowed edge.
pub fn dependency_edges(root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for dir in CRATE_DIRS {
        let manifest = root.join(dir).join("Cargo.toml");
        let text = match std::fs::read_to_string(&manifest) {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("cannot read {}: {e}", manifest.display()));
                continue;
            }
        };
        let value: toml::Value = match toml::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{}: {e}", manifest.display()));
                continue;
            }
        };
        let name = value
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .unwrap_or("?");
        let deps: BTreeSet<&str> = value
            .get("dependencies")
            .and_then(|d| d.as_table())
            .map(|t| {
                t.keys()
                    .map(String::as_str)
                    .filter(|k| k.starts_with("kiln-"))
                    .collect()
            })
            .unwrap_or_default();
        let allowed: &[&str] = ALLOWED_EDGES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| *a)
            .unwrap_or(&[]);
        for dep in deps {
            if !allowed.contains(&dep) {
                problems.push(format!(
                    "{name} must not depend on {dep} (see docs/architecture.md)"
                ));
            }
        }
    }
    problems
}

/// Every Rust source file under `src/` starts with a `//!` module doc.
pub fn module_docs(root: &Path) -> Vec<String> {
    rust_files(root)
        .into_iter()
        .filter(|path| path.components().any(|c| c.as_os_str() == "src"))
        .filter_map(|path| {
            let text = std::fs::read_to_string(&path).ok()?;
            let first = text.lines().find(|l| !l.trim().is_empty())?;
            (!first.starts_with("//!"))
                .then(|| format!("{} has no `//!` module doc", path.display()))
        })
        .collect()
}

/// No todo or unimplemented macro calls in the code: a stub is not done.
pub fn no_stubs(root: &Path) -> Vec<String> {
    let needles = [concat!("todo", "!("), concat!("unimplemented", "!(")];
    rust_files(root)
        .into_iter()
        .filter_map(|path| {
            let text = std::fs::read_to_string(&path).ok()?;
            needles
                .iter()
                .any(|n| text.contains(n))
                .then(|| format!("{} contains a stub macro", path.display()))
        })
        .collect()
}

fn rust_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack: Vec<PathBuf> = CRATE_DIRS.iter().map(|d| root.join(d)).collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_dependency_edges_are_allowed() {
        assert_eq!(dependency_edges(&repo_root()), Vec::<String>::new());
    }

    #[test]
    fn every_module_has_a_doc_comment() {
        assert_eq!(module_docs(&repo_root()), Vec::<String>::new());
    }

    #[test]
    fn no_stub_macros() {
        assert_eq!(no_stubs(&repo_root()), Vec::<String>::new());
    }

    #[test]
    fn a_forbidden_edge_is_reported() {
        let dir = std::env::temp_dir().join(format!("kiln-tidy-{}", std::process::id()));
        let _ = std::fs::create_dir_all(dir.join("cache"));
        let manifest = "[package]\nname = \"kiln-cache\"\n[dependencies]\nkiln-graph = { path = \"../graph\" }\n";
        let _ = std::fs::write(dir.join("cache/Cargo.toml"), manifest);
        let problems = dependency_edges(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("kiln-cache must not depend on kiln-graph")),
            "{problems:?}"
        );
    }
}
