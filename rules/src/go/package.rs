//! Picks the files of one Go package as `go build` would: build constraints and file-name
//! suffixes, `_test.go` files split into internal and external (`package x_test`) tests, cgo
//! files excluded (Kiln builds with `CGO_ENABLED=0`), one package name per directory.

use std::path::Path;

use super::constraints::BuildContext;
use super::header_memo;
use super::scan::{self, FileInfo};

/// A source file that survived filtering, with what its header said.
#[derive(Clone, Debug)]
pub struct GoFile {
    /// Path as actions see it (exec-root-relative or under the SDK mount).
    pub path: String,
    /// The parsed header.
    pub info: FileInfo,
}

/// The files of a package, sorted by name within each group.
#[derive(Clone, Debug, Default)]
pub struct PackageFiles {
    /// The package name (from non-test files, else from internal test files).
    pub name: String,
    /// Non-test `.go` files.
    pub go: Vec<GoFile>,
    /// Internal `_test.go` files.
    pub test: Vec<GoFile>,
    /// External `_test.go` files (`package <name>_test`).
    pub xtest: Vec<GoFile>,
    /// `.s` files (kept only when they match the build constraints).
    pub asm: Vec<String>,
    /// Other files (`.h`, ...) that are inputs but never passed on a command line.
    pub other: Vec<String>,
    /// `.go` files left out only because they import "C".
    pub cgo_excluded: Vec<String>,
    /// Generated `.go` files (also in `go`, with an empty header): analysis cannot read them, so
    /// they are compiled as they come, without build-constraint filtering.
    pub generated: Vec<String>,
}

impl PackageFiles {
    /// Import paths of the non-test files (sorted, deduplicated, `unsafe` kept).
    pub fn imports(&self, files: &[GoFile]) -> Vec<String> {
        let mut out: Vec<String> = files
            .iter()
            .flat_map(|f| f.info.imports.iter().map(|i| i.path.clone()))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// Adds generated `.go` files, which analysis cannot read, to `files`: each is compiled as it
/// comes (no build-constraint filtering), with an empty header. A generated test file is an error.
pub fn add_generated(files: &mut PackageFiles, generated: &[String]) -> Result<(), String> {
    for path in generated {
        if path.ends_with("_test.go") {
            return Err(format!(
                "`{path}` is a generated test file; Kiln compiles generated Go files only as package sources, not as tests"
            ));
        }
        files.go.push(GoFile {
            path: path.clone(),
            info: FileInfo::default(),
        });
        files.generated.push(path.clone());
    }
    files.go.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(())
}

/// Reads and filters `files` (action paths paired with their host paths).
pub fn select(
    files: &[(String, std::path::PathBuf)],
    ctx: &BuildContext,
) -> Result<PackageFiles, String> {
    let mut out = PackageFiles::default();
    let mut names: Vec<(String, String)> = Vec::new();
    let (mut c_sources, mut cxx_sources, mut objc_sources) = (Vec::new(), Vec::new(), Vec::new());
    let mut sorted: Vec<&(String, std::path::PathBuf)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, host) in sorted {
        let base = Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if base.starts_with('.') || base.starts_with('_') {
            continue;
        }
        let ext = base.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
        if !ctx.matches_file_name(&base) {
            continue;
        }
        match ext {
            "go" => {}
            "s" => {
                let text = std::fs::read_to_string(host).map_err(|e| format!("{path}: {e}"))?;
                if header_constraints_hold(&text, ctx).map_err(|e| format!("{path}:{e}"))? {
                    out.asm.push(path.clone());
                }
                continue;
            }
            // Preprocessed assembly and C-family sources belong to cgo: go/build keeps `.S`
            // files only for cgo packages, and cmd/go refuses C sources without cgo.
            "S" | "sx" | "c" | "cc" | "cpp" | "cxx" | "m" if !ctx.cgo => {
                let text = std::fs::read_to_string(host).map_err(|e| format!("{path}: {e}"))?;
                if header_constraints_hold(&text, ctx).map_err(|e| format!("{path}:{e}"))? {
                    match ext {
                        "S" | "sx" => out.other.push(path.clone()),
                        "c" => c_sources.push(base.clone()),
                        "m" => objc_sources.push(base.clone()),
                        _ => cxx_sources.push(base.clone()),
                    }
                }
                continue;
            }
            _ => {
                out.other.push(path.clone());
                continue;
            }
        }
        let info = header_memo::header(host, path, |text| {
            scan::scan(text).map_err(|e| format!("{path}:{}", e.trim_start_matches("line ")))
        })?;
        // go/build ignores files of `package documentation` (an old convention for doc-only
        // files), tests included.
        if !info.constraints_hold(ctx) || info.package == "documentation" {
            continue;
        }
        if info.cgo && !ctx.cgo {
            out.cgo_excluded.push(path.clone());
            continue;
        }
        let is_test = base.ends_with("_test.go");
        let file = GoFile {
            path: path.clone(),
            info,
        };
        if is_test && file.info.package.ends_with("_test") {
            out.xtest.push(file);
        } else {
            names.push((file.info.package.clone(), path.clone()));
            if is_test {
                out.test.push(file);
            } else {
                out.go.push(file);
            }
        }
    }
    // cmd/go's own check, in its order and words (`go build` with CGO_ENABLED=0).
    for (kind, files) in [
        ("C", &c_sources),
        ("C++", &cxx_sources),
        ("Objective-C", &objc_sources),
    ] {
        if !files.is_empty() {
            return Err(format!(
                "{kind} source files not allowed when not using cgo or SWIG: {}",
                files.join(" ")
            ));
        }
    }
    if let Some((first, first_path)) = names.first() {
        if let Some((other, other_path)) = names.iter().find(|(n, _)| n != first) {
            return Err(format!(
                "Found packages `{first}` ({first_path}) and `{other}` ({other_path}) in one package; a Go package has one name"
            ));
        }
        out.name = first.clone();
    } else if let Some(x) = out.xtest.first() {
        out.name = x.info.package.trim_end_matches("_test").to_string();
    }
    Ok(out)
}

/// Build constraints in the header of a non-Go source file (assembly, C), as go/build reads
/// them from the leading run of `//` comments and blank lines: a `//go:build` line there decides
/// alone; without one, every `// +build` line must hold, counting only those followed by a
/// blank line before the first other line.
fn header_constraints_hold(text: &str, ctx: &BuildContext) -> Result<bool, String> {
    let mut header = Vec::new();
    let mut last_blank = 0;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() {
            last_blank = header.len();
            header.push((n, t));
        } else if t.starts_with("//") {
            header.push((n, t));
        } else {
            break;
        }
    }
    for (n, t) in &header {
        if let Some(expr) = t.strip_prefix("//go:build") {
            return super::constraints::parse(expr)
                .map(|e| e.eval(ctx))
                .map_err(|e| format!("{}: invalid `//go:build` line: {e}", n + 1));
        }
    }
    header.truncate(last_blank);
    for (n, t) in &header {
        let Some(rest) = t.strip_prefix("//") else {
            continue;
        };
        if let Some(expr) = rest.trim_start().strip_prefix("+build") {
            let holds = super::constraints::parse_plus_build(expr)
                .map(|e| e.eval(ctx))
                .map_err(|e| format!("{}: invalid `+build` line: {e}", n + 1))?;
            if !holds {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraints_tests_and_cgo() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).unwrap();
            (format!("p/{name}"), dir.path().join(name))
        };
        let files = vec![
            write("a.go", "package p\nimport \"fmt\"\n"),
            write("a_windows.go", "package p\n"),
            write("b.go", "//go:build ignore\n\npackage main\n"),
            write("c.go", "package p\nimport \"C\"\n"),
            write("a_test.go", "package p\nimport \"testing\"\n"),
            write("x_test.go", "package p_test\nimport \"testing\"\n"),
            write("f_amd64.s", "#include \"textflag.h\"\n"),
            write("f_arm64.s", ""),
            write("g.s", "//go:build arm64\n"),
            write("h.h", ""),
            write("_skip.go", "garbage"),
        ];
        let ctx = BuildContext {
            goos: "linux".into(),
            goarch: "amd64".into(),
            go_minor: 26,
            cgo: false,
            tags: vec![],
            sys: Default::default(),
        };
        let p = select(&files, &ctx).unwrap();
        let paths = |v: &[GoFile]| v.iter().map(|f| f.path.clone()).collect::<Vec<_>>();
        assert_eq!(p.name, "p");
        assert_eq!(paths(&p.go), ["p/a.go"]);
        assert_eq!(paths(&p.test), ["p/a_test.go"]);
        assert_eq!(paths(&p.xtest), ["p/x_test.go"]);
        assert_eq!(p.asm, ["p/f_amd64.s"]);
        assert_eq!(p.other, ["p/h.h"]);
        assert_eq!(p.cgo_excluded, ["p/c.go"]);
        assert_eq!(p.imports(&p.go), ["fmt"]);

        // Legacy `// +build` lines count in assembly when a blank line follows them; `.S`
        // files are cgo's and only inputs; C sources are refused as cmd/go refuses them.
        let legacy = vec![
            write("a.go", "package p\n"),
            write(
                "m_mips64x.s",
                "// Copyright\n\n// +build mips64 mips64le\n\n#include \"textflag.h\"\n",
            ),
            write("n.s", "// +build linux,amd64\n\nTEXT x(SB)\n"),
            write("o.s", "// +build arm64\nTEXT x(SB)\n"),
            write(
                "both.s",
                "//go:build amd64\n// +build arm64\n\nTEXT x(SB)\n",
            ),
            write("pre.S", "#include \"textflag.h\"\n"),
        ];
        let p = select(&legacy, &ctx).unwrap();
        assert_eq!(p.asm, ["p/both.s", "p/n.s", "p/o.s"]);
        assert_eq!(p.other, ["p/pre.S"]);
        let with_c = vec![
            write("a.go", "package p\n"),
            write("z.c", "int z;\n"),
            write("w.c", "//go:build windows\n\nint w;\n"),
            write("y.cc", "int y;\n"),
        ];
        assert_eq!(
            select(&with_c, &ctx).unwrap_err(),
            "C source files not allowed when not using cgo or SWIG: z.c"
        );

        let bad = vec![write("a.go", "package p\n"), write("z.go", "package q\n")];
        assert!(select(&bad, &ctx)
            .unwrap_err()
            .contains("Found packages `p`"));
        let broken = vec![write("a.go", "package p\nimport (\n")];
        assert!(select(&broken, &ctx).unwrap_err().starts_with("p/a.go:"));
        // As go/build: a `package documentation` file is ignored, not compiled.
        let documented = vec![
            write("a.go", "package p\n"),
            write("doc.go", "package documentation\nimport \"unknown/x\"\n"),
        ];
        let p = select(&documented, &ctx).unwrap();
        assert_eq!(paths(&p.go), ["p/a.go"]);
        assert!(p.imports(&p.go).is_empty());
    }

    #[test]
    fn generated_files_join_the_package_unread() {
        let mut files = PackageFiles {
            name: "main".into(),
            go: vec![GoFile {
                path: "p/main.go".into(),
                info: FileInfo::default(),
            }],
            ..Default::default()
        };
        add_generated(&mut files, &["kiln-out/bin/p/gen.go".into()]).unwrap();
        let paths: Vec<&str> = files.go.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["kiln-out/bin/p/gen.go", "p/main.go"]);
        assert_eq!(files.generated, ["kiln-out/bin/p/gen.go"]);
        let err = add_generated(&mut files, &["kiln-out/bin/p/gen_test.go".into()]).unwrap_err();
        assert!(err.contains("generated test file"), "{err}");
    }
}
