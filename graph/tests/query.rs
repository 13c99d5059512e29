//! Data-driven tests of `kiln query`'s core: each case runs one expression over a multi-package
//! in-memory workspace (`//- path` starts a file) and shows the rendered output or the error.

use std::collections::HashMap;
use std::sync::Arc;

use expect_test::{expect, Expect};
use kiln_graph::load::{load_package, HostPlatform, LoadRequest, MemFs, Package};
use kiln_graph::query::output::{render, OutputFormat};
use kiln_graph::query::{self, QueryEnv};
use kiln_graph::rule_schema::{AttrKind, AttrSchema, RuleSchema};
use kiln_graph::target::Target;

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
        name: "sh_test",
        attrs: &[
            AttrSchema::optional("srcs", AttrKind::LabelList),
            AttrSchema::optional("deps", AttrKind::LabelList),
        ],
        test: true,
        executable: true,
    },
];

/// `//lib:gen` ← `//lib:lib` ← `//app:app` ← `//app:app_test`, plus a tool in `//tools` and a
/// `manual` rule.
const WORKSPACE: &str = r#"
//- lib/BUILD
genrule(
    name = "gen",
    srcs = ["in.txt"],
    outs = ["gen.txt"],
    cmd = "cp $< $@",
    tools = ["//tools:tool"],
    visibility = ["//visibility:public"],
)
filegroup(name = "lib", srcs = [":gen.txt", "lib.txt"], visibility = ["//visibility:public"])
//- lib/in.txt
//- lib/lib.txt
//- tools/BUILD
filegroup(name = "tool", srcs = ["tool.sh"], target_compatible_with = ["//platforms:linux"])
//- tools/tool.sh
//- app/BUILD
filegroup(name = "app", srcs = ["main.sh", "//lib"], data = ["//tools:tool"])
sh_test(name = "app_test", srcs = ["test.sh"], deps = [":app"], tags = ["manual"])
//- app/main.sh
//- app/test.sh
"#;

/// [`QueryEnv`] over a [`MemFs`]; genrule `outs` are the declared outputs.
struct MemEnv {
    fs: MemFs,
    loaded: HashMap<String, Result<Arc<Package>, String>>,
}

impl QueryEnv for MemEnv {
    fn packages(&mut self) -> Result<Vec<String>, String> {
        let mut packages: Vec<String> = self
            .fs
            .files
            .keys()
            .filter_map(|path| {
                path.strip_suffix("/BUILD")
                    .or((path == "BUILD").then_some(""))
            })
            .map(str::to_string)
            .collect();
        packages.sort();
        Ok(packages)
    }

    fn package(&mut self, name: &str) -> Result<Arc<Package>, String> {
        let fs = &self.fs;
        self.loaded
            .entry(name.to_string())
            .or_insert_with(|| {
                let platform = HostPlatform {
                    os: "linux".into(),
                    cpu: "x86_64".into(),
                };
                let request = LoadRequest {
                    package: name.to_string(),
                    platform,
                };
                load_package(&request, fs, RULES)
                    .map(|l| Arc::new(l.package))
                    .map_err(|e| e.to_string())
            })
            .clone()
    }

    fn declared_outputs(&self, target: &Target) -> Vec<String> {
        if target.kind == "genrule" {
            target.strings("outs")
        } else {
            Vec::new()
        }
    }

    fn file_exists(&self, path: &str) -> bool {
        self.fs.files.contains_key(path)
    }
}

fn check_in(
    fixture: &str,
    cwd_package: &str,
    expression: &str,
    format: OutputFormat,
    expect: Expect,
) {
    let mut env = MemEnv {
        fs: MemFs::from_fixture(fixture),
        loaded: HashMap::new(),
    };
    let actual = match query::run(expression, cwd_package, &mut env) {
        Ok(result) => render(&result, format, "/ws"),
        Err(e) => format!("error: {e}\n"),
    };
    expect.assert_eq(&actual);
}

fn check(expression: &str, expect: Expect) {
    check_in(WORKSPACE, "", expression, OutputFormat::Label, expect)
}

fn check_kind(expression: &str, expect: Expect) {
    check_in(WORKSPACE, "", expression, OutputFormat::LabelKind, expect)
}

#[test]
fn patterns_include_manual_rules_but_not_files() {
    check(
        "//...",
        expect![[r#"
            //app:app
            //app:app_test
            //lib:gen
            //lib:lib
            //tools:tool
        "#]],
    );
    check(
        "'//app:all'",
        expect![[r#"
            //app:app
            //app:app_test
        "#]],
    );
    check(
        "//lib",
        expect![[r#"
        //lib:lib
    "#]],
    );
    check_in(
        WORKSPACE,
        "lib",
        ":gen",
        OutputFormat::Label,
        expect![[r#"
        //lib:gen
    "#]],
    );
}

#[test]
fn single_labels_name_files_too() {
    check_kind(
        "//lib:in.txt + //lib:gen.txt + \"//lib:gen\"",
        expect![[r#"
            genrule rule //lib:gen
            generated file //lib:gen.txt
            source file //lib:in.txt
        "#]],
    );
    check(
        "//lib:missing.txt",
        expect![[r#"
        error: No such target `//lib:missing.txt`: no rule, output or source file named `missing.txt` in package `//lib`
    "#]],
    );
    check(
        "//nowhere/...",
        expect![[r#"
        error: No packages found beneath `//nowhere` for the pattern `//nowhere/...`
    "#]],
    );
}

#[test]
fn deps_follows_attributes_but_not_visibility_or_constraints() {
    check_kind(
        "deps(//app)",
        expect![[r#"
            filegroup rule //app:app
            source file //app:main.sh
            genrule rule //lib:gen
            generated file //lib:gen.txt
            source file //lib:in.txt
            filegroup rule //lib:lib
            source file //lib:lib.txt
            filegroup rule //tools:tool
            source file //tools:tool.sh
        "#]],
    );
    check(
        "deps(//app, 1)",
        expect![[r#"
            //app:app
            //app:main.sh
            //lib:lib
            //tools:tool
        "#]],
    );
    check(
        "deps(//app, 0)",
        expect![[r#"
        //app:app
    "#]],
    );
}

#[test]
fn rdeps_within_a_universe() {
    check(
        "rdeps(//..., //tools:tool.sh)",
        expect![[r#"
            //app:app
            //app:app_test
            //lib:gen
            //lib:gen.txt
            //lib:lib
            //tools:tool
            //tools:tool.sh
        "#]],
    );
    check(
        "rdeps(//lib/..., //tools:tool, 1)",
        expect![[r#"
            //lib:gen
            //tools:tool
        "#]],
    );
    check("rdeps(//tools/..., //lib:lib)", expect![""]);
}

#[test]
fn kind_filter_attr_labels() {
    check(
        "kind(genrule, deps(//app))",
        expect![[r#"
        //lib:gen
    "#]],
    );
    check(
        "kind('source file', deps(//lib))",
        expect![[r#"
            //lib:in.txt
            //lib:lib.txt
            //tools:tool.sh
        "#]],
    );
    check(
        "kind(test, //...)",
        expect![[r#"
        //app:app_test
    "#]],
    );
    check(
        "filter('\\.sh$', deps(//app:app_test))",
        expect![[r#"
        //app:main.sh
        //app:test.sh
        //tools:tool.sh
    "#]],
    );
    check(
        "attr(tags, manual, //...)",
        expect![[r#"
        //app:app_test
    "#]],
    );
    check(
        "attr(srcs, '//lib:gen.txt', //...)",
        expect![[r#"
        //lib:lib
    "#]],
    );
    check(
        "labels(srcs, //lib:lib + //app:app)",
        expect![[r#"
            //app:main.sh
            //lib:gen.txt
            //lib:lib
            //lib:lib.txt
        "#]],
    );
}

#[test]
fn allpaths_and_somepath() {
    check(
        "allpaths(//app:app_test, //tools:tool)",
        expect![[r#"
            //app:app
            //app:app_test
            //lib:gen
            //lib:gen.txt
            //lib:lib
            //tools:tool
        "#]],
    );
    check(
        "somepath(//app:app_test, //tools:tool)",
        expect![[r#"
            //app:app
            //app:app_test
            //tools:tool
        "#]],
    );
    check("somepath(//tools:tool, //app:app)", expect![""]);
}

#[test]
fn set_operators() {
    check(
        "//lib:all + //tools:tool",
        expect![[r#"
        //lib:gen
        //lib:lib
        //tools:tool
    "#]],
    );
    check(
        "//lib:all union //tools:tool",
        expect![[r#"
        //lib:gen
        //lib:lib
        //tools:tool
    "#]],
    );
    check(
        "//... - //app/...",
        expect![[r#"
        //lib:gen
        //lib:lib
        //tools:tool
    "#]],
    );
    check(
        "//... except //app/... except //lib:gen",
        expect![[r#"
        //lib:lib
        //tools:tool
    "#]],
    );
    check(
        "deps(//app) ^ //lib/...",
        expect![[r#"
        //lib:gen
        //lib:lib
    "#]],
    );
    check(
        "deps(//app) intersect //tools:all",
        expect![[r#"
        //tools:tool
    "#]],
    );
    // Equal precedence, left to right; parentheses regroup.
    check(
        "//lib:all - //lib:gen + //lib:gen",
        expect![[r#"
        //lib:gen
        //lib:lib
    "#]],
    );
    check(
        "//lib:all - (//lib:gen + //lib:gen)",
        expect![[r#"
        //lib:lib
    "#]],
    );
    check(
        "set(//lib:gen //tools:tool)",
        expect![[r#"
        //lib:gen
        //tools:tool
    "#]],
    );
}

#[test]
fn parse_errors_name_the_column_and_what_was_expected() {
    check(
        "deps(//app",
        expect![[r#"
        error: Invalid query expression at column 11: expected `)` to close `deps(`, found the end of the expression
    "#]],
    );
    check(
        "deps(//app,)",
        expect![[r#"
        error: Invalid query expression at column 12: expected a depth, found `)`
    "#]],
    );
    check(
        "deps(//app, x)",
        expect![[r#"
        error: Invalid query expression at column 13: expected a depth (a non-negative integer), found `x`
    "#]],
    );
    check(
        "//a + ",
        expect![[r#"
        error: Invalid query expression at column 7: expected a target pattern, a function or `(`, found the end of the expression
    "#]],
    );
    check(
        "//a //b",
        expect![[r#"
        error: Invalid query expression at column 5: expected an operator (`+`, `-`, `^`, `union`, `except`, `intersect`) or the end of the expression, found `//b`
    "#]],
    );
    check(
        "frobnicate(//a)",
        expect![[r#"
        error: Invalid query expression at column 1: unknown function `frobnicate`; expected one of `deps`, `rdeps`, `kind`, `filter`, `attr`, `labels`, `allpaths`, `somepath`, `set`
    "#]],
    );
    check(
        "kind('(', //a)",
        expect![[r#"
        error: Invalid query expression at column 6: invalid regular expression `(`: error: unclosed group
    "#]],
    );
    check(
        "rdeps(//a)",
        expect![[r#"
        error: Invalid query expression at column 10: expected `,` after the universe of `rdeps`, found `)`
    "#]],
    );
    check(
        "'//a",
        expect![[r#"
        error: Invalid query expression at column 1: unterminated string; expected a closing `'`
    "#]],
    );
    check(
        "//a/.../b",
        expect![[r#"
        error: Invalid query expression at column 1: Invalid target pattern `//a/.../b`: `...` must be the last package segment; expected `//pkg/...`
    "#]],
    );
    check(
        "union",
        expect![[r#"
        error: Invalid query expression at column 1: expected a target pattern or a function, found the keyword `union`
    "#]],
    );
    check(
        "//a & //b",
        expect![[r#"
        error: Invalid query expression at column 5: unexpected character `&`; expected a target pattern, a function, an operator or a parenthesis
    "#]],
    );
}

#[test]
fn label_kind_build_and_graph_outputs() {
    check_kind(
        "//app:app_test + //lib:gen.txt",
        expect![[r#"
        sh_test rule //app:app_test
        generated file //lib:gen.txt
    "#]],
    );
    check_in(
        WORKSPACE,
        "",
        "//lib:gen + //lib:in.txt",
        OutputFormat::Build,
        expect![[r#"
            # /ws/lib/BUILD:1:1
            genrule(
              name = "gen",
              cmd = "cp $< $@",
              outs = ["gen.txt"],
              srcs = ["//lib:in.txt"],
              tools = ["//tools:tool"],
              visibility = ["//visibility:public"],
            )

            # //lib:in.txt (source file)

        "#]],
    );
    check_in(
        WORKSPACE,
        "",
        "deps(//lib)",
        OutputFormat::Graph,
        expect![[r#"
            digraph mygraph {
              node [shape=box];
              "//lib:gen"
              "//lib:gen.txt"
              "//lib:in.txt"
              "//lib:lib"
              "//lib:lib.txt"
              "//tools:tool"
              "//tools:tool.sh"
              "//lib:gen" -> "//lib:in.txt"
              "//lib:gen" -> "//tools:tool"
              "//lib:gen.txt" -> "//lib:gen"
              "//lib:lib" -> "//lib:gen.txt"
              "//lib:lib" -> "//lib:lib.txt"
              "//tools:tool" -> "//tools:tool.sh"
            }
        "#]],
    );
}

#[test]
fn a_package_that_does_not_load_is_an_error() {
    check_in(
        "//- a/BUILD\nfilegroup(name = \"a\", srcs = [\"//missing:x\"])\n",
        "",
        "deps(//a)",
        OutputFormat::Label,
        expect![[r#"
            error: error: No such package `//missing`: no directory `missing`
        "#]],
    );
}
