//! Data-driven tests of package loading: each fixture is a small workspace written inline
//! (`//- path` starts a file), loaded in memory against a small rule set.

use expect_test::{expect, Expect};
use kiln_graph::load::{load_package, HostPlatform, LoadRequest, MemFs};
use kiln_graph::rule_schema::{AttrKind, AttrSchema, RuleSchema};
use kiln_graph::target::AttrValue;

const RULES: &[RuleSchema] = &[
    RuleSchema {
        name: "genrule",
        attrs: &[
            AttrSchema::optional("srcs", AttrKind::LabelList),
            AttrSchema::mandatory("outs", AttrKind::StringList),
            AttrSchema::mandatory("cmd", AttrKind::String),
            AttrSchema::optional("tools", AttrKind::LabelList),
        ],
        test: false,
        executable: false,
    },
    RuleSchema {
        name: "filegroup",
        attrs: &[
            AttrSchema::optional("srcs", AttrKind::LabelList),
            AttrSchema::optional("data", AttrKind::LabelList),
        ],
        test: false,
        executable: false,
    },
    RuleSchema {
        name: "go_library",
        attrs: &[
            AttrSchema::optional("srcs", AttrKind::LabelList),
            AttrSchema::optional("deps", AttrKind::LabelList),
            AttrSchema::optional("importpath", AttrKind::String),
            AttrSchema::optional("cgo", AttrKind::Bool),
        ],
        test: false,
        executable: false,
    },
    RuleSchema {
        name: "rust_test",
        attrs: &[
            AttrSchema::optional("srcs", AttrKind::LabelList),
            AttrSchema::optional("crate_features", AttrKind::StringList),
            AttrSchema::optional("rustc_env", AttrKind::StringDict),
        ],
        test: true,
        executable: true,
    },
];

fn linux() -> HostPlatform {
    HostPlatform {
        os: "linux".into(),
        cpu: "x86_64".into(),
    }
}

fn render_value(value: &AttrValue) -> String {
    let quote = |s: &String| format!("{s:?}");
    match value {
        AttrValue::Bool(b) => b.to_string(),
        AttrValue::Int(i) => i.to_string(),
        AttrValue::String(s) => quote(s),
        AttrValue::Label(l) => l.to_string(),
        AttrValue::StringList(v) => {
            format!("[{}]", v.iter().map(quote).collect::<Vec<_>>().join(", "))
        }
        AttrValue::LabelList(v) => {
            format!(
                "[{}]",
                v.iter()
                    .map(|l| l.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        AttrValue::StringDict(d) => format!(
            "{{{}}}",
            d.iter()
                .map(|(k, v)| format!("{k:?}: {v:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        AttrValue::LabelKeyedStringDict(d) => format!(
            "{{{}}}",
            d.iter()
                .map(|(k, v)| format!("{k}: {v:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn labels(v: &[kiln_graph::label::Label]) -> String {
    v.iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Loads `package` from `fixture` on linux/x86_64 and renders the result or the errors.
fn check_on(platform: HostPlatform, package: &str, fixture: &str, expect: Expect) {
    let fs = MemFs::from_fixture(fixture);
    let req = LoadRequest {
        package: package.to_string(),
        platform,
    };
    let actual = match load_package(&req, &fs, RULES) {
        Ok(loaded) => {
            let mut out = String::new();
            let p = &loaded.package;
            if !p.default_visibility.is_empty() {
                out += &format!("default_visibility [{}]\n", labels(&p.default_visibility));
            }
            for t in p.targets.values() {
                out += &format!(
                    "{} {} at {} visibility [{}]\n",
                    t.label,
                    t.kind,
                    t.location,
                    labels(&t.visibility)
                );
                for (name, value) in &t.attrs {
                    out += &format!("  {name} = {}\n", render_value(value));
                }
            }
            for (file, (vis, loc)) in &p.exported_files {
                out += &format!("exports {file} at {loc} visibility [{}]\n", labels(vis));
            }
            out += &format!("files: {}\n", loaded.deps.files.join(", "));
            let dirs: Vec<&str> = loaded
                .deps
                .globbed_dirs
                .iter()
                .map(|(d, _)| d.as_str())
                .collect();
            if !dirs.is_empty() {
                out += &format!("dirs: {}\n", dirs.join(", "));
            }
            out
        }
        Err(errors) => format!("{errors}\n"),
    };
    expect.assert_eq(&actual);
}

fn check(package: &str, fixture: &str, expect: Expect) {
    check_on(linux(), package, fixture, expect)
}

#[test]
fn genrule_and_filegroup() {
    check(
        "a",
        r#"
//- a/BUILD.bazel
genrule(
    name = "gen",
    srcs = ["in.txt", "//b:tool", ":local"],
    outs = ["out.txt"],
    cmd = "cp $< $@",
)
filegroup(name = "files", srcs = glob(["*.txt"]), visibility = ["//visibility:public"])
//- a/in.txt
//- a/z.txt
"#,
        expect![[r#"
            //a:files filegroup at a/BUILD.bazel:7:1 visibility [//visibility:public]
              srcs = [//a:in.txt, //a:z.txt]
            //a:gen genrule at a/BUILD.bazel:1:1 visibility [//visibility:private]
              cmd = "cp $< $@"
              outs = ["out.txt"]
              srcs = [//a:in.txt, //b:tool, //a:local]
            files: a/BUILD.bazel
            dirs: a
        "#]],
    );
}

#[test]
fn glob_excludes_subpackages_and_applies_exclude() {
    check(
        "a",
        r#"
//- a/BUILD
filegroup(
    name = "all",
    srcs = glob(["**/*.txt"], exclude = ["skip/**", "*_test.txt"]),
)
filegroup(name = "hidden", srcs = glob(["*"], exclude = ["BUILD"]))
filegroup(name = "dirs", srcs = glob(["d*"], exclude_directories = 0))
//- a/x.txt
//- a/x_test.txt
//- a/.hidden.txt
//- a/deep/er/y.txt
//- a/skip/z.txt
//- a/sub/BUILD.bazel
//- a/sub/not_mine.txt
"#,
        expect![[r#"
            //a:all filegroup at a/BUILD:1:1 visibility [//visibility:private]
              srcs = [//a:.hidden.txt, //a:deep/er/y.txt, //a:x.txt]
            //a:dirs filegroup at a/BUILD:6:1 visibility [//visibility:private]
              srcs = [//a:deep]
            //a:hidden filegroup at a/BUILD:5:1 visibility [//visibility:private]
              srcs = [//a:.hidden.txt, //a:x.txt, //a:x_test.txt]
            files: a/BUILD
            dirs: a, a/deep, a/deep/er, a/skip, a/sub
        "#]],
    );
}

#[test]
fn load_chain_and_relative_loads() {
    check(
        "app",
        r#"
//- app/BUILD.kiln
load(":macros.bzl", "double")
load("//tools:defs.bzl", gen = "my_genrule")
double("x")
gen(name = "g")
//- app/macros.bzl
load("//tools:defs.bzl", "my_genrule")
def double(name):
    native.filegroup(name = name + "_1", srcs = [name + ".txt"])
    my_genrule(name = name + "_2")
//- tools/BUILD
//- tools/defs.bzl
load(":consts.bzl", "CMD")
def my_genrule(name):
    native.genrule(name = name, outs = [name + ".out"], cmd = CMD)
//- tools/consts.bzl
CMD = "touch $@"
"#,
        expect![[r#"
            //app:g genrule at app/BUILD.kiln:4:1 visibility [//visibility:private]
              cmd = "touch $@"
              outs = ["g.out"]
            //app:x_1 filegroup at app/BUILD.kiln:3:1 visibility [//visibility:private]
              srcs = [//app:x.txt]
            //app:x_2 genrule at app/BUILD.kiln:3:1 visibility [//visibility:private]
              cmd = "touch $@"
              outs = ["x_2.out"]
            files: app/BUILD.kiln, app/macros.bzl, tools/consts.bzl, tools/defs.bzl
        "#]],
    );
}

#[test]
fn select_resolves_for_the_host() {
    let fixture = r#"
//- BUILD.bazel
filegroup(
    name = "f",
    srcs = ["common.c"] + select({
        "@platforms//os:linux": ["linux.c"],
        "@platforms//os:macos": ["mac.c"],
        "//conditions:default": ["other.c"],
    }) + select({
        "@io_bazel_rules_go//go/platform:linux": ["go_linux.c"],
        "@rules_go//go/platform:linux_arm64": ["go_linux_arm64.c"],
        "//conditions:default": [],
    }),
    data = select({"@platforms//cpu:aarch64": [":arm"], "@platforms//cpu:x86_64": [":x86"]}),
)
"#;
    check(
        "",
        fixture,
        expect![[r#"
            //:f filegroup at BUILD.bazel:1:1 visibility [//visibility:private]
              data = [//:x86]
              srcs = [//:common.c, //:linux.c, //:go_linux.c]
            files: BUILD.bazel
        "#]],
    );
    check_on(
        HostPlatform {
            os: "linux".into(),
            cpu: "aarch64".into(),
        },
        "",
        fixture,
        expect![[r#"
            //:f filegroup at BUILD.bazel:1:1 visibility [//visibility:private]
              data = [//:arm]
              srcs = [//:common.c, //:linux.c, //:go_linux_arm64.c]
            files: BUILD.bazel
        "#]],
    );
    check_on(
        HostPlatform {
            os: "windows".into(),
            cpu: "x86_64".into(),
        },
        "",
        r#"
//- BUILD.bazel
filegroup(name = "f", srcs = select({"@platforms//os:linux": ["a"]}))
"#,
        expect![[r#"
            BUILD.bazel:1:30: error: No key of this `select()` matches the host platform (windows x86_64) and there is no `//conditions:default`
        "#]],
    );
}

#[test]
fn visibility_defaults_and_exports_files() {
    check(
        "p",
        r#"
//- p/BUILD
package(default_visibility = ["//visibility:public"], features = ["x"])
licenses(["notice"])
exports_files(["a.txt"])
exports_files(["b.txt"], visibility = ["//q:__pkg__", ":__subpackages__"])
filegroup(name = "pub")
filegroup(name = "own", visibility = ["//other:__pkg__"])
config_setting(name = "opt", values = {"compilation_mode": "opt"})
"#,
        expect![[r#"
            default_visibility [//visibility:public]
            //p:own filegroup at p/BUILD:6:1 visibility [//other:__pkg__]
            //p:pub filegroup at p/BUILD:5:1 visibility [//visibility:public]
            exports a.txt at p/BUILD:3:1 visibility [//visibility:public]
            exports b.txt at p/BUILD:4:1 visibility [//q:__pkg__, //p:__subpackages__]
            files: p/BUILD
        "#]],
    );
}

#[test]
fn well_known_external_loads() {
    check(
        "svc",
        r#"
//- svc/BUILD.bazel
load("@io_bazel_rules_go//go:def.bzl", "go_library")
load("@rules_rust//rust:defs.bzl", "rust_test")
load("@bazel_gazelle//:def.bzl", "gazelle")
load("@bazel_skylib//lib:paths.bzl", "paths")
gazelle(name = "gazelle", prefix = "example.com/svc")
go_library(name = "svc", srcs = [paths.join("x", "y.go")], importpath = "example.com/" + package_name(), cgo = 1)
rust_test(name = "t", rustc_env = {"A": "b"}, crate_features = ["x"], tags = ["manual"], size = "small")
"#,
        expect![[r#"
            //svc:svc go_library at svc/BUILD.bazel:6:1 visibility [//visibility:private]
              cgo = true
              importpath = "example.com/svc"
              srcs = [//svc:x/y.go]
            //svc:t rust_test at svc/BUILD.bazel:7:1 visibility [//visibility:private]
              crate_features = ["x"]
              rustc_env = {"A": "b"}
              size = "small"
              tags = ["manual"]
            files: svc/BUILD.bazel
        "#]],
    );
}

#[test]
fn attribute_errors_are_all_reported_at_the_call() {
    check(
        "a",
        r#"
//- a/BUILD.bazel
genrule(name = "g", outs = ["o"], cmd = "x", foo = 1, srcs = "a.txt")
filegroup(srcs = [])
filegroup(name = "f", srcs = [1])
filegroup(name = "f")
filegroup(name = "f")
genrule(name = "m", outs = [])
filegroup(name = "l", srcs = ["//a/../b:c", "//x:y", "//x:y"])
filegroup(name = "bad/../name")
"#,
        expect![[r#"
            a/BUILD.bazel:1:1: error: `genrule` has no attribute `foo`; expected one of `name`, `cmd`, `compatible_with`, `deprecation`, `exec_compatible_with`, `features`, `licenses`, `outs`, `restricted_to`, `srcs`, `tags`, `target_compatible_with`, `testonly`, `tools`, `visibility`
            a/BUILD.bazel:1:1: error: `genrule` attribute `srcs`: expected a list of label strings, got `string`
            a/BUILD.bazel:2:1: error: `filegroup` is missing mandatory attribute `name`
            a/BUILD.bazel:3:1: error: `filegroup` attribute `srcs`: expected a list of label strings, got `list`
            a/BUILD.bazel:5:1: error: Target `f` is already declared at a/BUILD.bazel:4:1
            a/BUILD.bazel:6:1: error: `genrule` rule `m` is missing mandatory attribute `cmd`
            a/BUILD.bazel:7:1: error: `filegroup` attribute `srcs`: Invalid label `//a/../b:c`: package names may not contain `..`; expected `//package:name`
            a/BUILD.bazel:8:1: error: `filegroup` attribute `name`: Invalid label `:bad/../name`: target names may not contain `..` segments; expected `//package:name` with a name such as `file.txt` or `dir/file.txt`
        "#]],
    );
}

#[test]
fn errors_carry_file_line_col() {
    check(
        "a",
        "//- a/BUILD\nfilegroup(name = \"x\"\n",
        expect![[r#"
        a/BUILD:2:1: error: Parse error: unexpected new line, expected symbol ')'
    "#]],
    );
    check(
        "a",
        "//- a/BUILD\nx = 'unterminated\n",
        expect![[r#"
        a/BUILD:1:5: error: Parse error: unfinished string literal
    "#]],
    );
    check(
        "a",
        "//- a/BUILD\n\ncc_library(name = \"x\")\n",
        expect![[r#"
        a/BUILD:2:1: error: `cc_library` is not a rule Kiln provides (nor a function defined or loaded here)
    "#]],
    );
    check(
        "a",
        "//- a/BUILD\nload(\"//a:missing.bzl\", \"x\")\n",
        expect![[r#"
        a/BUILD:1:6: error: Cannot load `//a:missing.bzl`: file `a/missing.bzl` does not exist
    "#]],
    );
    check(
        "a",
        "//- a/BUILD\nload(\"@rules_cc//cc:defs.bzl\", \"cc_library\")\n",
        expect![[r#"
        a/BUILD:1:6: error: Kiln does not provide repository `@rules_cc` (loading `@rules_cc//cc:defs.bzl`); it provides `@io_bazel_rules_go`, `@rules_go`, `@rules_rust`, `@bazel_gazelle`, `@bazel_skylib`, `@rules_shell`
    "#]],
    );
    check(
        "a",
        "//- a/BUILD\nload(\"@rules_go//go:def.bzl\", \"go_library\", \"cc_library\")\n",
        expect![[r#"
        a/BUILD:1:6: error: `cc_library` is not provided by Kiln (loading `@rules_go//go:def.bzl`); known rules: go_library
    "#]],
    );
    check(
        "a",
        "//- a/BUILD\nload(\":m.bzl\", \"m\")\nm()\n//- a/m.bzl\ndef m():\n    fail(\"nope\")\n",
        expect![[r#"
            a/m.bzl:2:5: error: fail: nope
        "#]],
    );
    check("a", "//- a/BUILD\nload(\":c1.bzl\", \"x\")\n//- a/c1.bzl\nload(\":c2.bzl\", \"x\")\n//- a/c2.bzl\nload(\":c1.bzl\", \"y\")\nx = 1\n", expect![[r#"
        a/c2.bzl:1:6: error: Cycle in `load()` graph: a/c1.bzl -> a/c2.bzl -> a/c1.bzl
    "#]]);
    check(
        "a",
        "//- a/BUILD\nfilegroup(\"positional\")\n",
        expect![[r#"
        a/BUILD:1:1: error: `filegroup` takes keyword arguments only, as in `filegroup(name = "...", ...)`
    "#]],
    );
    check(
        "a",
        "//- a/BUILD\nfilegroup(name = \"x\")\npackage(default_visibility = [])\n",
        expect![[r#"
        a/BUILD:2:1: error: `package()` must be called before any rule of the package
    "#]],
    );
    check(
        "a",
        "//- a/BUILD\nx = glob([\"../*\"])\n",
        expect![[r#"
        a/BUILD:1:5: error: Invalid glob pattern `../*`: `.` and `..` segments are not allowed
    "#]],
    );
    check(
        "a",
        "//- a/m.bzl\n",
        expect![[r#"
        error: No such package `//a`: no BUILD.kiln, BUILD.bazel or BUILD file in `a`
    "#]],
    );
    check(
        "a",
        "//- a/BUILD\nload(':x.bzl', 'y')\n//- a/x.bzl\ny = glob(['*'])\n",
        expect![[r#"
        a/x.bzl:1:5: error: `glob` can only be called while a BUILD file is evaluated (from the BUILD file or a macro it calls), not at the top level of a `.bzl` file
    "#]],
    );
}

#[test]
fn garbage_never_panics() {
    let inputs = [
        "def f(): return f()\nf()\n",
        "x = 1 << 100000\nfilegroup(name = str(x)[:3], srcs = [x])\n",
        "x = 99999999999999999999999999999\ngenrule(name = 'g', outs = [], cmd = 'x', tools = x)\n",
        "(((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((",
        "\u{0}\u{1}\u{ff}",
        "load(",
        "filegroup(name = 'x', **{'srcs': 1})",
        "x = [1] * 100\nfor i in x:\n  filegroup(name = 'a%d' % i)\n",
    ];
    for input in inputs {
        let fs = MemFs::from_fixture(&format!("//- a/BUILD\n{input}\n"));
        let req = LoadRequest {
            package: "a".into(),
            platform: linux(),
        };
        let result = load_package(&req, &fs, RULES);
        assert!(result.is_err(), "{input:?} loaded");
    }
}

#[test]
fn deeply_nested_input_loads_without_a_crash() {
    let deep = format!("x = {}1{}\n", "(".repeat(5000), ")".repeat(5000));
    let fs = MemFs::from_fixture(&format!("//- a/BUILD\n{deep}"));
    let req = LoadRequest {
        package: "a".into(),
        platform: linux(),
    };
    // Within the parser's and evaluator's limits: it loads (and has no targets).
    let package = load_package(&req, &fs, RULES).expect("loads without a crash");
    assert!(package.package.targets.is_empty());
}

#[test]
fn deps_fingerprint_changes_with_the_listing() {
    let load = |fixture: &str| {
        let fs = MemFs::from_fixture(fixture);
        let req = LoadRequest {
            package: "a".into(),
            platform: linux(),
        };
        load_package(&req, &fs, RULES)
            .map(|l| l.deps)
            .map_err(|e| e.to_string())
    };
    let before = load("//- a/BUILD\nfilegroup(name = 'f', srcs = glob(['*.txt']))\n//- a/x.txt\n");
    let after = load(
        "//- a/BUILD\nfilegroup(name = 'f', srcs = glob(['*.txt']))\n//- a/x.txt\n//- a/y.md\n",
    );
    let (Ok(before), Ok(after)) = (before, after) else {
        panic!("load failed")
    };
    assert_eq!(before.files, after.files);
    assert_ne!(before.globbed_dirs, after.globbed_dirs);
    assert_eq!(
        before.absent_files,
        vec!["a/BUILD.kiln".to_string(), "a/BUILD.bazel".to_string()]
    );
    let entries = [("y.md".to_string(), false), ("x.txt".to_string(), false)];
    let mut reversed = entries.clone();
    reversed.reverse();
    assert_eq!(
        kiln_graph::load::listing_fingerprint(&entries),
        kiln_graph::load::listing_fingerprint(&reversed)
    );
}

#[test]
fn disk_fs_and_package_discovery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    for (path, text) in [
        (
            "BUILD.bazel",
            "filegroup(name = 'r', srcs = glob(['**/*.txt']))",
        ),
        ("a.txt", ""),
        ("sub/BUILD", "filegroup(name = 's')"),
        ("sub/b.txt", ""),
        ("plain/c.txt", ""),
        (".git/BUILD", ""),
        ("kiln-out/BUILD", ""),
        // A cargo `target/` (tagged as a cache directory) holds no packages.
        (
            "target/CACHEDIR.TAG",
            "Signature: 8a477f597d28d172789f06886806bc55\n# cargo\n",
        ),
        ("target/debug/BUILD", ""),
        ("target/BUILD", ""),
        // A tag without the signature does not count.
        ("faketag/CACHEDIR.TAG", "Signature: wrong"),
        ("faketag/BUILD", ""),
    ] {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    #[cfg(unix)]
    std::os::unix::fs::symlink(root.join("sub"), root.join("bazel-out")).expect("symlink");
    assert_eq!(
        kiln_graph::load::discover_packages(root),
        vec!["".to_string(), "faketag".to_string(), "sub".to_string()]
    );
    let fs = kiln_graph::load::DiskFs::new(root);
    let req = LoadRequest {
        package: String::new(),
        platform: linux(),
    };
    let loaded = load_package(&req, &fs, RULES).expect("loads");
    let srcs: Vec<String> = loaded.package.targets["r"]
        .labels("srcs")
        .iter()
        .map(|l| l.to_string())
        .collect();
    // `bazel-out` links to a package, so its files belong to that package, not to the root.
    assert_eq!(srcs, vec!["//:a.txt", "//:plain/c.txt"]);
}

#[test]
fn long_operator_chains_load_without_a_crash() {
    let chain = format!("x = 1{}\n", "+1".repeat(50000));
    let fs = MemFs::from_fixture(&format!("//- a/BUILD\n{chain}"));
    let req = LoadRequest {
        package: "a".into(),
        platform: linux(),
    };
    // Within the parser's and evaluator's limits: it loads (and has no targets).
    let package = load_package(&req, &fs, RULES).expect("loads without a crash");
    assert!(package.package.targets.is_empty());
}

#[test]
fn absurd_nesting_is_a_diagnostic() {
    let fs = MemFs::from_fixture(&format!("//- a/BUILD\nx = 1\ny = {}\n", "[".repeat(20000)));
    let req = LoadRequest {
        package: "a".into(),
        platform: linux(),
    };
    let err = load_package(&req, &fs, RULES)
        .map(|_| ())
        .map_err(|e| e.to_string());
    assert_eq!(
        err,
        Err("a/BUILD:2:1: error: Brackets nested deeper than 10000 levels".to_string())
    );
}

#[test]
fn bzl_files_of_repositories_a_rule_defines_load_by_label() {
    let repo = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        repo.path().join("defs.bzl"),
        "def srcs_of(name):\n    return [name + '.txt', native.package_name() + '.md']\n",
    )
    .expect("write defs.bzl");
    let fs = MemFs::from_fixture(
        "//- app/BUILD\nload('@ext//:defs.bzl', 'srcs_of')\nfilegroup(name = 'g', srcs = srcs_of('a'))\n",
    );
    let req = LoadRequest {
        package: "app".to_string(),
        platform: linux(),
    };
    let dir = repo.path().to_path_buf();
    let roots = move |name: &str| -> Result<std::path::PathBuf, String> {
        match name {
            "ext" => Ok(dir.clone()),
            other => Err(format!("no repository `@{other}`")),
        }
    };
    let loaded =
        kiln_graph::load::load_package_with_repos(&req, &fs, RULES, Some(&roots)).expect("loads");
    assert_eq!(
        labels(&loaded.package.targets["g"].labels("srcs")),
        "//app:a.txt, //app:app.md"
    );
    // Recorded by label, for the package memo to check through the same resolver.
    assert!(loaded.deps.files.iter().any(|f| f == "@ext//:defs.bzl"));

    // Without a resolver, or for a repository it does not know, the error names the label.
    let plain = load_package(&req, &fs, RULES).expect_err("no resolver");
    assert!(plain.to_string().contains("`@ext//:defs.bzl`"), "{plain}");
    let fs = MemFs::from_fixture("//- app/BUILD\nload('@nope//:defs.bzl', 'x')\n");
    let err = kiln_graph::load::load_package_with_repos(&req, &fs, RULES, Some(&roots))
        .expect_err("unknown repository");
    assert!(err.to_string().contains("no repository `@nope`"), "{err}");
}
