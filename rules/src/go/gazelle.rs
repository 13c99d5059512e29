//! BUILD files for a Go module's packages, as Gazelle writes them for `go_repository`: one
//! `go_library` per directory with Go files, named after the directory (with a
//! `go_default_library` alias), its imports resolved to labels: the standard library dropped,
//! packages of the same module as `//dir`, other modules as `@<repo>//dir`.

use std::collections::BTreeMap;
use std::path::Path;

use super::constraints::BuildContext;
use super::package;
use super::repository::repo_name;

/// Finds the module providing an import path (the longest module path that prefixes it).
pub trait ModuleIndex {
    /// The module path owning `importpath`, if any module in the build list does.
    fn owner(&self, importpath: &str) -> Option<String>;
    /// Whether `importpath` is a standard-library package.
    fn is_std(&self, importpath: &str) -> bool;
}

/// Writes `BUILD.bazel` into every package directory of the module rooted at `root`, whose path is
/// `module`. Returns the number of packages.
pub fn generate(
    root: &Path,
    module: &str,
    ctx: &BuildContext,
    index: &dyn ModuleIndex,
) -> Result<usize, String> {
    let mut dirs: BTreeMap<String, Vec<(String, std::path::PathBuf)>> = BTreeMap::new();
    let mut walker = walkdir::WalkDir::new(root).sort_by_file_name().into_iter();
    while let Some(entry) = walker.next() {
        let entry = entry.map_err(|e| e.to_string())?;
        let rel = entry
            .path()
            .strip_prefix(root)
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .to_string();
        if entry.file_type().is_dir() {
            let base = entry.file_name().to_string_lossy();
            let skip = !rel.is_empty()
                && (base == "testdata"
                    || base == "vendor"
                    || base.starts_with('.')
                    || base.starts_with('_')
                    || entry.path().join("go.mod").is_file());
            if skip {
                walker.skip_current_dir();
            }
            continue;
        }
        let dir = Path::new(&rel)
            .parent()
            .map(|p| p.to_string_lossy().to_string())
            .unwrap_or_default();
        dirs.entry(dir)
            .or_default()
            .push((rel.clone(), entry.path().to_path_buf()));
    }
    let mut count = 0;
    for (dir, files) in &dirs {
        let go_files: Vec<(String, std::path::PathBuf)> = files
            .iter()
            .filter(|(r, _)| {
                let name = r.rsplit('/').next().unwrap_or(r);
                (name.ends_with(".go") && !name.ends_with("_test.go"))
                    || name.ends_with(".s")
                    || name.ends_with(".h")
            })
            .cloned()
            .collect();
        let selected = match package::select(&go_files, ctx) {
            Ok(s) => s,
            Err(_) => continue, // Gazelle skips what it cannot parse; so does the build of users.
        };
        if selected.go.is_empty() || selected.name == "main" {
            continue;
        }
        let importpath = if dir.is_empty() {
            module.to_string()
        } else {
            format!("{module}/{dir}")
        };
        let name = importpath.rsplit('/').next().unwrap_or("lib").to_string();
        let mut deps = Vec::new();
        for import in selected.imports(&selected.go) {
            if index.is_std(&import) || import == "C" {
                continue;
            }
            let label = if let Some(rel) = import
                .strip_prefix(module)
                .filter(|r| r.is_empty() || r.starts_with('/'))
            {
                let rel = rel.trim_start_matches('/');
                format!("//{rel}:{}", import.rsplit('/').next().unwrap_or(rel))
            } else if let Some(owner) = index.owner(&import) {
                let rel = import[owner.len()..].trim_start_matches('/');
                let last = import.rsplit('/').next().unwrap_or(rel);
                format!("@{}//{rel}:{last}", repo_name(&owner))
            } else {
                return Err(format!(
                    "package `{importpath}` imports `{import}`, which no module in go.mod provides"
                ));
            };
            deps.push(label);
        }
        let strip = |p: &String| {
            if dir.is_empty() {
                p.clone()
            } else {
                p[dir.len() + 1..].to_string()
            }
        };
        let mut srcs: Vec<String> = go_files.iter().map(|(r, _)| strip(r)).collect();
        srcs.sort();
        // Files the package embeds: every other file of the directory tree below it that is not in
        // a subpackage (resolved against the package's patterns at compile time).
        let mut embedsrcs = Vec::new();
        if selected.go.iter().any(|f| !f.info.embeds.is_empty()) {
            for (rel, _) in files {
                let base = rel.rsplit('/').next().unwrap_or(rel);
                if !base.ends_with(".go") {
                    embedsrcs.push(strip(rel));
                }
            }
        }
        let list = |v: &[String]| {
            v.iter()
                .map(|s| format!("        {s:?},\n"))
                .collect::<String>()
        };
        let mut text = String::from(
            "# Generated by Kiln (as Gazelle generates BUILD files for go_repository).\n\nload(\"@io_bazel_rules_go//go:def.bzl\", \"go_library\")\n\n",
        );
        text.push_str(&format!(
            "go_library(\n    name = {name:?},\n    srcs = [\n{}    ],\n    importpath = {importpath:?},\n",
            list(&srcs)
        ));
        if !embedsrcs.is_empty() {
            text.push_str(&format!("    embedsrcs = [\n{}    ],\n", list(&embedsrcs)));
        }
        if !deps.is_empty() {
            text.push_str(&format!("    deps = [\n{}    ],\n", list(&deps)));
        }
        text.push_str("    visibility = [\"//visibility:public\"],\n)\n\n");
        text.push_str(&format!(
            "alias(\n    name = \"go_default_library\",\n    actual = \":{name}\",\n    visibility = [\"//visibility:public\"],\n)\n"
        ));
        let build = root.join(dir).join("BUILD.bazel");
        std::fs::write(&build, text).map_err(|e| format!("{}: {e}", build.display()))?;
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    struct Index;
    impl ModuleIndex for Index {
        fn owner(&self, importpath: &str) -> Option<String> {
            importpath
                .starts_with("golang.org/x/text")
                .then(|| "golang.org/x/text".to_string())
        }
        fn is_std(&self, importpath: &str) -> bool {
            !importpath.split('/').next().unwrap_or("").contains('.')
        }
    }

    #[test]
    fn libraries_with_deps_across_modules() {
        let dir = tempfile::tempdir().unwrap();
        let w = |p: &str, t: &str| {
            let path = dir.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, t).unwrap();
        };
        w("cmp.go", "package cmp\nimport (\"fmt\"; \"example.com/m/internal/x\"; \"golang.org/x/text/width\")\n");
        w("cmp_test.go", "package cmp\nimport \"example.com/other\"\n");
        w(
            "internal/x/x.go",
            "package x\nimport _ \"embed\"\n//go:embed data.txt\nvar D string\n",
        );
        w("internal/x/data.txt", "d");
        w("cmd/tool/main.go", "package main\n");
        w("testdata/t.go", "package broken(");
        let ctx = BuildContext {
            goos: "linux".into(),
            goarch: "amd64".into(),
            go_minor: 26,
            cgo: false,
            tags: vec![],
        };
        assert_eq!(
            generate(dir.path(), "example.com/m", &ctx, &Index).unwrap(),
            2
        );
        expect![[r#"
            # Generated by Kiln (as Gazelle generates BUILD files for go_repository).

            load("@io_bazel_rules_go//go:def.bzl", "go_library")

            go_library(
                name = "m",
                srcs = [
                    "cmp.go",
                ],
                importpath = "example.com/m",
                deps = [
                    "//internal/x:x",
                    "@org_golang_x_text//width:width",
                ],
                visibility = ["//visibility:public"],
            )

            alias(
                name = "go_default_library",
                actual = ":m",
                visibility = ["//visibility:public"],
            )
        "#]]
        .assert_eq(&std::fs::read_to_string(dir.path().join("BUILD.bazel")).unwrap());
        let x = std::fs::read_to_string(dir.path().join("internal/x/BUILD.bazel")).unwrap();
        assert!(x.contains("embedsrcs = [\n        \"data.txt\","), "{x}");
        assert!(!dir.path().join("cmd/tool/BUILD.bazel").exists());
    }
}
