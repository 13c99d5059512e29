//! BUILD files for a Go module's packages, as Gazelle writes them for `go_repository`: one
//! `go_library` per directory with Go files, named after the directory (with a
//! `go_default_library` alias; a command's is `<name>_lib`, embedded by `go_binary(<name>)`), its imports resolved to labels: the standard library dropped,
//! packages of the same module as `//dir`, other modules as `@<repo>//dir`.
//!
//! A generated library serves every platform a binary may be built for, as Gazelle's do: its
//! `srcs` are all its files (build constraints pick among them per platform at compile time),
//! and its `deps` are the imports of the files of every platform `go tool dist list` names. A
//! dependency that some platform does not use compiles there as an empty package. A package
//! with files for other platforms only is generated too. An import that no module of go.mod
//! provides fails the package only when it is the host's; another platform's is left out.

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

/// The library name Gazelle gives the package with this import path: its last element, or the
/// one before it when that is a major-version suffix (`/v2`), with `.` turned into `_`
/// (`github.com/cespare/xxhash/v2` → `xxhash`, `gopkg.in/yaml.v3` → `yaml_v3`).
pub fn library_name(importpath: &str) -> String {
    let mut parts = importpath.rsplit('/');
    let last = parts.next().unwrap_or(importpath);
    let is_major =
        |p: &str| p.len() > 1 && p.starts_with('v') && p[1..].bytes().all(|b| b.is_ascii_digit());
    let name = match parts.next() {
        Some(before) if is_major(last) => before,
        _ => last,
    };
    name.replace('.', "_")
}

/// The visibility of a module package's library in directory `dir`: a package below an
/// `internal` element is visible only to the tree rooted at that element's parent (cmd/go's rule,
/// which takes the last `internal`, as Gazelle writes it for `go_repository`), the others to all.
fn library_visibility(dir: &str) -> String {
    let parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    match parts.iter().rposition(|p| *p == "internal") {
        Some(i) => format!("//{}:__subpackages__", parts[..i].join("/")),
        None => "//visibility:public".to_string(),
    }
}

/// Whether directory `other` belongs to the package in `dir`: it is `dir`, or below it with no
/// package directory (one with a BUILD file of its own) on the way down, itself included.
fn in_package_tree(
    dir: &str,
    other: &str,
    package_dirs: &std::collections::HashSet<&String>,
) -> bool {
    if other == dir {
        return true;
    }
    let below = match dir {
        "" => other,
        _ => match other.strip_prefix(dir).and_then(|r| r.strip_prefix('/')) {
            Some(rest) => rest,
            None => return false,
        },
    };
    let mut path = dir.to_string();
    below.split('/').all(|part| {
        if !path.is_empty() {
            path.push('/');
        }
        path.push_str(part);
        !package_dirs.contains(&path)
    })
}

/// Writes `BUILD.bazel` into every package directory of the module rooted at `root`, whose path is
/// `module`: a `go_library` per package, plus a `go_binary` for each command (`package main`).
/// Returns the number of packages.
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
    let go_files_of =
        |files: &[(String, std::path::PathBuf)]| -> Vec<(String, std::path::PathBuf)> {
            files
                .iter()
                .filter(|(r, _)| {
                    let name = r.rsplit('/').next().unwrap_or(r);
                    (name.ends_with(".go") && !name.ends_with("_test.go"))
                        || name.ends_with(".s")
                        || name.ends_with(".h")
                })
                .cloned()
                .collect()
        };
    // Directories that get a BUILD file of their own below (a package for some platform, or
    // one refused for its C sources), whose files are theirs, not a parent's to embed. A
    // directory whose Go files never build (`//go:build ignore`) is no package.
    let package_dirs: std::collections::HashSet<&String> = dirs
        .iter()
        .filter(|(_, files)| {
            let go_files = go_files_of(files);
            let c_sources = files.iter().any(|(r, _)| {
                let ext = r.rsplit_once('.').map_or("", |(_, e)| e);
                matches!(ext, "c" | "cc" | "cpp" | "cxx" | "m")
            });
            !go_files.is_empty() && (c_sources || PlatformUnion::of(&go_files, ctx).is_some())
        })
        .map(|(dir, _)| dir)
        .collect();
    let mut count = 0;
    for (dir, files) in &dirs {
        let go_files = go_files_of(files);
        let importpath = if dir.is_empty() {
            module.to_string()
        } else {
            format!("{module}/{dir}")
        };
        let build = root.join(dir).join("BUILD.bazel");
        // C-family sources make `go build` (CGO_ENABLED=0) refuse the package, whatever else it
        // has; so does the generated BUILD file, when something loads the package.
        let with_c_sources: Vec<(String, std::path::PathBuf)> = files
            .iter()
            .filter(|(r, _)| {
                let ext = r.rsplit_once('.').map_or("", |(_, e)| e);
                matches!(ext, "c" | "cc" | "cpp" | "cxx" | "m")
            })
            .chain(go_files.iter())
            .cloned()
            .collect();
        if with_c_sources.len() > go_files.len() {
            if let Err(refused) = package::select(&with_c_sources, ctx) {
                if refused.contains("not allowed when not using cgo") {
                    let text = format!(
                        "# Generated by Kiln: `go build` with CGO_ENABLED=0 refuses this package.\n\nfail({:?})\n",
                        format!("package `{importpath}`: {refused}")
                    );
                    std::fs::write(&build, text)
                        .map_err(|e| format!("{}: {e}", build.display()))?;
                    count += 1;
                    continue;
                }
            }
        }
        let Some(package) = PlatformUnion::of(&go_files, ctx) else {
            continue;
        };
        let is_command = package.name == "main";
        let base_name = library_name(&importpath);
        // A command gets Gazelle's pair: a private `<name>_lib` embedded by `go_binary(<name>)`.
        let name = match is_command {
            true => format!("{base_name}_lib"),
            false => base_name.clone(),
        };
        let mut deps = Vec::new();
        let mut unresolved = None;
        for (import, on_host) in &package.imports {
            if index.is_std(import) || import == "C" {
                continue;
            }
            let label = if let Some(rel) = import
                .strip_prefix(module)
                .filter(|r| r.is_empty() || r.starts_with('/'))
            {
                let rel = rel.trim_start_matches('/');
                format!("//{rel}:{}", library_name(import))
            } else if let Some(owner) = index.owner(import) {
                let rel = import[owner.len()..].trim_start_matches('/');
                format!("@{}//{rel}:{}", repo_name(&owner), library_name(import))
            } else if *on_host {
                // Gazelle writes the label anyway and the build fails only if the package is
                // used: a module's packages that the main module never imports may need modules
                // its go.mod leaves out (x/net's html/charset needs x/text).
                unresolved = Some(format!(
                    "package `{importpath}` imports `{import}`, which no module in go.mod provides"
                ));
                break;
            } else {
                // Another platform's import that go.mod cannot provide: a build for that
                // platform fails to compile, naming the import; the host's is unaffected.
                continue;
            };
            deps.push(label);
        }
        if let Some(message) = unresolved {
            let text = format!(
                "# Generated by Kiln: this package cannot be built with the main module's go.mod.\n\nfail({message:?})\n"
            );
            std::fs::write(&build, text).map_err(|e| format!("{}: {e}", build.display()))?;
            count += 1;
            continue;
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
        if package.embeds {
            for (other, other_files) in &dirs {
                if !in_package_tree(dir, other, &package_dirs) {
                    continue;
                }
                for (rel, _) in other_files {
                    let base = rel.rsplit('/').next().unwrap_or(rel);
                    if !base.ends_with(".go") {
                        embedsrcs.push(strip(rel));
                    }
                }
            }
        }
        let list = |v: &[String]| {
            v.iter()
                .map(|s| format!("        {s:?},\n"))
                .collect::<String>()
        };
        let mut text = String::from(
            "# Generated by Kiln (as Gazelle generates BUILD files for go_repository).\n\n",
        );
        text.push_str(match is_command {
            true => "load(\"@io_bazel_rules_go//go:def.bzl\", \"go_binary\", \"go_library\")\n\n",
            false => "load(\"@io_bazel_rules_go//go:def.bzl\", \"go_library\")\n\n",
        });
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
        if is_command {
            text.push_str("    visibility = [\"//visibility:private\"],\n)\n\n");
            text.push_str(&format!(
                "go_binary(\n    name = {base_name:?},\n    embed = [\":{name}\"],\n    visibility = [\"//visibility:public\"],\n)\n"
            ));
        } else {
            let visibility = library_visibility(dir);
            text.push_str(&format!("    visibility = [{visibility:?}],\n)\n\n"));
            text.push_str(&format!(
                "alias(\n    name = \"go_default_library\",\n    actual = \":{name}\",\n    visibility = [{visibility:?}],\n)\n"
            ));
        }
        std::fs::write(&build, text).map_err(|e| format!("{}: {e}", build.display()))?;
        count += 1;
    }
    Ok(count)
}

/// Every `GOOS/GOARCH` pair `go tool dist list` names (Go 1.26): the platforms a generated
/// library's `deps` serve.
const PLATFORMS: &[(&str, &str)] = &[
    ("aix", "ppc64"),
    ("android", "386"),
    ("android", "amd64"),
    ("android", "arm"),
    ("android", "arm64"),
    ("darwin", "amd64"),
    ("darwin", "arm64"),
    ("dragonfly", "amd64"),
    ("freebsd", "386"),
    ("freebsd", "amd64"),
    ("freebsd", "arm"),
    ("freebsd", "arm64"),
    ("illumos", "amd64"),
    ("ios", "amd64"),
    ("ios", "arm64"),
    ("js", "wasm"),
    ("linux", "386"),
    ("linux", "amd64"),
    ("linux", "arm"),
    ("linux", "arm64"),
    ("linux", "loong64"),
    ("linux", "mips"),
    ("linux", "mips64"),
    ("linux", "mips64le"),
    ("linux", "mipsle"),
    ("linux", "ppc64"),
    ("linux", "ppc64le"),
    ("linux", "riscv64"),
    ("linux", "s390x"),
    ("netbsd", "386"),
    ("netbsd", "amd64"),
    ("netbsd", "arm"),
    ("netbsd", "arm64"),
    ("openbsd", "386"),
    ("openbsd", "amd64"),
    ("openbsd", "arm"),
    ("openbsd", "arm64"),
    ("openbsd", "ppc64"),
    ("openbsd", "riscv64"),
    ("plan9", "386"),
    ("plan9", "amd64"),
    ("plan9", "arm"),
    ("solaris", "amd64"),
    ("wasip1", "wasm"),
    ("windows", "386"),
    ("windows", "amd64"),
    ("windows", "arm64"),
];

/// What a directory's Go files give on every platform together.
struct PlatformUnion {
    /// The package name (the host's files', else the first platform's with files).
    name: String,
    /// Every import of the non-test files on some platform, sorted, with whether the host's
    /// files import it.
    imports: Vec<(String, bool)>,
    /// Whether some selected file has `//go:embed` patterns.
    embeds: bool,
}

impl PlatformUnion {
    /// `None` when no platform selects a `.go` file, or when the host's files cannot be parsed
    /// (Gazelle skips what it cannot parse; so does the build of users).
    fn of(go_files: &[(String, std::path::PathBuf)], host: &BuildContext) -> Option<PlatformUnion> {
        let mut imports: BTreeMap<String, bool> = BTreeMap::new();
        let mut name = None;
        let mut embeds = false;
        let others = PLATFORMS.iter().map(|(goos, goarch)| BuildContext {
            goos: goos.to_string(),
            goarch: goarch.to_string(),
            ..host.clone()
        });
        for (i, ctx) in std::iter::once(host.clone()).chain(others).enumerate() {
            let selected = match package::select(go_files, &ctx) {
                Ok(selected) => selected,
                Err(_) if i == 0 => return None,
                // Files another platform cannot make one package of: that platform fails at
                // compile time with the reason; the host's build is unaffected.
                Err(_) => continue,
            };
            if selected.go.is_empty() {
                continue;
            }
            name.get_or_insert_with(|| selected.name.clone());
            embeds |= selected.go.iter().any(|f| !f.info.embeds.is_empty());
            for import in selected.imports(&selected.go) {
                *imports.entry(import).or_default() |= i == 0;
            }
        }
        Some(PlatformUnion {
            name: name?,
            imports: imports.into_iter().collect(),
            embeds,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn library_names_follow_gazelle() {
        for (importpath, name) in [
            ("github.com/google/go-cmp/cmp", "cmp"),
            ("github.com/cespare/xxhash/v2", "xxhash"),
            ("gopkg.in/yaml.v3", "yaml_v3"),
            ("github.com/a/b/v2/sub", "sub"),
            ("example.com/m/v10", "m"),
            ("example.com/vendor", "vendor"),
            ("example.com/m/v", "v"),
            ("fmt", "fmt"),
        ] {
            assert_eq!(super::library_name(importpath), name, "{importpath}");
        }
    }

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
        // Files below the package, in directories that are no package: its to embed. A
        // subpackage's files are its own.
        w("internal/x/static/css/site.css", "c");
        w("internal/x/sub/sub.go", "package sub\n");
        w("internal/x/sub/page.html", "p");
        // `static/` has only an ignored generator: no package, so its files are x's to embed.
        w(
            "internal/x/static/gen.go",
            "//go:build ignore\n\npackage main\n",
        );
        w(
            "cmd/tool/main.go",
            "package main\nimport (\"fmt\"; \"example.com/m\")\n",
        );
        w(
            "charset/c.go",
            "package charset\nimport \"example.org/absent/enc\"\n",
        );
        w("testdata/t.go", "package broken(");
        w("native/n.go", "package native\n");
        w("native/n.c", "int n;\n");
        // Platform-specific imports and a package with files for another platform only.
        w(
            "term/term_unix.go",
            "//go:build unix\n\npackage term\nimport \"golang.org/x/text/unix\"\n",
        );
        w(
            "term/term_windows.go",
            "package term\nimport (\"golang.org/x/text/windows\"; \"example.org/absent/win\")\n",
        );
        w(
            "winonly/w_windows.go",
            "package winonly\nimport \"example.com/m/term\"\n",
        );
        let ctx = BuildContext {
            goos: "linux".into(),
            goarch: "amd64".into(),
            go_minor: 26,
            cgo: false,
            tags: vec![],
            sys: Default::default(),
        };
        assert_eq!(
            generate(dir.path(), "example.com/m", &ctx, &Index).unwrap(),
            8
        );
        let native = std::fs::read_to_string(dir.path().join("native/BUILD.bazel")).unwrap();
        assert!(
            native.contains("fail(\"package `example.com/m/native`: C source files not allowed when not using cgo or SWIG: n.c\")"),
            "{native}"
        );
        // Every platform's imports are deps; another platform's unresolvable one is left out.
        let term = std::fs::read_to_string(dir.path().join("term/BUILD.bazel")).unwrap();
        assert!(
            term.contains(
                "    srcs = [\n        \"term_unix.go\",\n        \"term_windows.go\",\n    ],"
            ),
            "{term}"
        );
        assert!(
            term.contains("    deps = [\n        \"@org_golang_x_text//unix:unix\",\n        \"@org_golang_x_text//windows:windows\",\n    ],"),
            "{term}"
        );
        let winonly = std::fs::read_to_string(dir.path().join("winonly/BUILD.bazel")).unwrap();
        assert!(winonly.contains("name = \"winonly\""), "{winonly}");
        assert!(winonly.contains("\"//term:term\""), "{winonly}");
        // A package needing a module go.mod leaves out fails only when something loads it.
        let charset = std::fs::read_to_string(dir.path().join("charset/BUILD.bazel")).unwrap();
        assert!(
            charset.contains("fail(\"package `example.com/m/charset` imports `example.org/absent/enc`, which no module in go.mod provides\")"),
            "{charset}"
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
        assert!(
            x.contains(
                "embedsrcs = [\n        \"data.txt\",\n        \"static/css/site.css\",\n    ]"
            ),
            "{x}"
        );
        // Only the module's own tree may import its internal packages, as cmd/go has it.
        assert!(x.contains("visibility = [\"//:__subpackages__\"]"), "{x}");
        assert_eq!(
            library_visibility("a/internal/b/internal/c"),
            "//a/internal/b:__subpackages__"
        );
        assert_eq!(library_visibility("internal"), "//:__subpackages__");
        assert_eq!(library_visibility("a/internals"), "//visibility:public");
        // A command: a private library embedded by a public binary, as Gazelle writes them.
        expect![[r##"
            # Generated by Kiln (as Gazelle generates BUILD files for go_repository).

            load("@io_bazel_rules_go//go:def.bzl", "go_binary", "go_library")

            go_library(
                name = "tool_lib",
                srcs = [
                    "main.go",
                ],
                importpath = "example.com/m/cmd/tool",
                deps = [
                    "//:m",
                ],
                visibility = ["//visibility:private"],
            )

            go_binary(
                name = "tool",
                embed = [":tool_lib"],
                visibility = ["//visibility:public"],
            )
        "##]]
        .assert_eq(&std::fs::read_to_string(dir.path().join("cmd/tool/BUILD.bazel")).unwrap());
    }
}
