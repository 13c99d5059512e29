//! Labels and target patterns: parsing (good and bad input) and selection against a package
//! listing and targets, including `manual` tags and left-to-right subtraction.

use std::collections::BTreeMap;

use expect_test::{expect, Expect};
use kiln_graph::label::Label;
use kiln_graph::load::is_visible;
use kiln_graph::pattern::PatternSet;
use kiln_graph::target::{AttrValue, Location, Target};

fn check_labels(inputs: &[&str], expect: Expect) {
    let out: Vec<String> = inputs
        .iter()
        .map(|text| match Label::parse(text, "cur/pkg") {
            Ok(l) => format!(
                "{text:<16} => {l}  [repo={:?} package={:?} name={:?}]",
                l.repo, l.package, l.name
            ),
            Err(e) => format!("{text:<16} => {e}"),
        })
        .collect();
    expect.assert_eq(&(out.join("\n") + "\n"));
}

#[test]
fn good_labels() {
    check_labels(
        &[
            "//a/b:c",
            "//a/b",
            ":c",
            "c",
            "c/d.txt",
            "@repo//a:b",
            "@@repo//a:b",
            "@//a:b",
            "//:c",
            "@repo",
            "//visibility:public",
            ":__pkg__",
        ],
        expect![[r#"
            //a/b:c          => //a/b:c  [repo="" package="a/b" name="c"]
            //a/b            => //a/b:b  [repo="" package="a/b" name="b"]
            :c               => //cur/pkg:c  [repo="" package="cur/pkg" name="c"]
            c                => //cur/pkg:c  [repo="" package="cur/pkg" name="c"]
            c/d.txt          => //cur/pkg:c/d.txt  [repo="" package="cur/pkg" name="c/d.txt"]
            @repo//a:b       => @repo//a:b  [repo="repo" package="a" name="b"]
            @@repo//a:b      => @repo//a:b  [repo="repo" package="a" name="b"]
            @//a:b           => //a:b  [repo="" package="a" name="b"]
            //:c             => //:c  [repo="" package="" name="c"]
            @repo            => @repo//:repo  [repo="repo" package="" name="repo"]
            //visibility:public => //visibility:public  [repo="" package="visibility" name="public"]
            :__pkg__         => //cur/pkg:__pkg__  [repo="" package="cur/pkg" name="__pkg__"]
        "#]],
    );
}

#[test]
fn bad_labels() {
    check_labels(
        &[
            "",
            "//a:",
            "a//b",
            ":",
            "/abs",
            "//a/../b",
            "//a/./b:c",
            "//a/b/",
            "//a b:c",
            "a:b",
            "//",
            "@//",
            "@bad repo//a:b",
            "//a:b/../c",
            "//a:b\\c",
        ],
        expect![[r#"
                             => Invalid label ``: a label may not be empty; expected `//package:name`
            //a:             => Invalid label `//a:`: the target name after `:` is empty; expected `//package:name` or `//:name`
            a//b             => Invalid label `a//b`: target names may not contain empty segments (`//` inside, or a leading or trailing `/`); expected `//package:name` with a name such as `file.txt` or `dir/file.txt`
            :                => Invalid label `:`: the target name after `:` is empty; expected `//package:name` or `//:name`
            /abs             => Invalid label `/abs`: a package path must start with `//`; expected `//package:name` or `:name`
            //a/../b         => Invalid label `//a/../b`: package names may not contain `..`; expected `//package:name`
            //a/./b:c        => Invalid label `//a/./b:c`: package names may not contain `.`; expected `//package:name`
            //a/b/           => Invalid label `//a/b/`: package names may not contain empty segments (`//` inside, or a leading or trailing `/`); expected `//package:name`
            //a b:c          => Invalid label `//a b:c`: package names may not contain ' '; expected `//package:name`
            a:b              => Invalid label `a:b`: a package path must start with `//`; expected `//package:name` or `:name`
            //               => Invalid label `//`: the root package needs a target name; expected `//package:name` or `//:name`
            @//              => Invalid label `@//`: the root package needs a target name; expected `//package:name` or `//:name`
            @bad repo//a:b   => Invalid label `@bad repo//a:b`: bad repository name `bad repo`; expected `@repo//package:name`
            //a:b/../c       => Invalid label `//a:b/../c`: target names may not contain `..` segments; expected `//package:name` with a name such as `file.txt` or `dir/file.txt`
            //a:b\c          => Invalid label `//a:b\c`: target names may not contain '\\'; expected `//package:name` with a name such as `file.txt` or `dir/file.txt`
        "#]],
    );
}

#[test]
fn package_dir() {
    assert_eq!(
        Label::parse("//a/b:c", "").map(|l| l.package_dir()),
        Ok("a/b".into())
    );
    assert_eq!(
        Label::parse("@r//a:c", "").map(|l| l.package_dir()),
        Ok("external/r/a".into())
    );
    assert!(Label::new("", "", "x").is_main_repo());
}

fn target(label: &str, manual: bool) -> Target {
    let mut attrs = BTreeMap::new();
    if manual {
        attrs.insert(
            "tags".to_string(),
            AttrValue::StringList(vec!["manual".into()]),
        );
    }
    Target {
        label: Label::parse(label, "").expect("test label"),
        kind: "genrule".into(),
        attrs,
        visibility: Vec::new(),
        location: Location {
            file: "BUILD".into(),
            line: 1,
            column: 1,
        },
    }
}

fn check_patterns(patterns: &[&str], cwd: &str, expect: Expect) {
    let packages: Vec<String> = ["", "a", "a/b", "a/bc", "c"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let targets = [
        target("//:root", false),
        target("//a:a", false),
        target("//a:m", true),
        target("//a/b:b", false),
        target("//a/bc:x", false),
        target("//c:c", false),
        target("//c:m", true),
    ];
    let patterns: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
    let actual = match PatternSet::parse(&patterns, cwd) {
        Ok(set) => {
            let load = set.packages_to_load(&packages);
            let selected: Vec<String> = set
                .select(targets.iter())
                .iter()
                .map(|l| l.to_string())
                .collect();
            format!(
                "load [{}]\nselect [{}]\n",
                load.join(", "),
                selected.join(", ")
            )
        }
        Err(e) => format!("{e}\n"),
    };
    expect.assert_eq(&actual);
}

#[test]
fn patterns_select_targets() {
    check_patterns(
        &["//..."],
        "",
        expect![[r#"
        load [, a, a/b, a/bc, c]
        select [//:root, //a:a, //a/b:b, //a/bc:x, //c:c]
    "#]],
    );
    check_patterns(
        &["//a/..."],
        "",
        expect![[r#"
        load [a, a/b, a/bc]
        select [//a:a, //a/b:b, //a/bc:x]
    "#]],
    );
    check_patterns(
        &["//a/b"],
        "",
        expect![[r#"
        load [a/b]
        select [//a/b:b]
    "#]],
    );
    check_patterns(
        &["//a:all"],
        "",
        expect![[r#"
        load [a]
        select [//a:a]
    "#]],
    );
    check_patterns(
        &["//a:*", "//a:m"],
        "",
        expect![[r#"
        load [a]
        select [//a:a, //a:m]
    "#]],
    );
    check_patterns(
        &["//a/...:all", "-//a/b/..."],
        "",
        expect![[r#"
        load [a, a/bc]
        select [//a:a, //a/bc:x]
    "#]],
    );
    check_patterns(
        &["-//a/b/...", "//a/..."],
        "",
        expect![[r#"
        load [a, a/b, a/bc]
        select [//a:a, //a/b:b, //a/bc:x]
    "#]],
    );
    check_patterns(
        &["//...", "-//a:a", "-//c:all"],
        "",
        expect![[r#"
        load [, a, a/b, a/bc]
        select [//:root, //a/b:b, //a/bc:x]
    "#]],
    );
    check_patterns(
        &[":m", "..."],
        "c",
        expect![[r#"
        load [c]
        select [//c:c, //c:m]
    "#]],
    );
    check_patterns(
        &["b:b", "b/..."],
        "a",
        expect![[r#"
        load [a/b]
        select [//a/b:b]
    "#]],
    );
    check_patterns(
        &["//missing:x"],
        "",
        expect![[r#"
        load [missing]
        select []
    "#]],
    );
}

#[test]
fn bad_patterns() {
    check_patterns(
        &["//a:"],
        "",
        expect![[r#"
        Invalid target pattern `//a:`: Invalid label `//a:`: the target name after `:` is empty; expected `//package:name` or `//:name`
    "#]],
    );
    check_patterns(
        &["-"],
        "",
        expect![[r#"
        Invalid target pattern `-`: it is empty; expected a pattern such as `//pkg:name` or `//...`
    "#]],
    );
    check_patterns(
        &["//a/.../b"],
        "",
        expect![[r#"
        Invalid target pattern `//a/.../b`: `...` must be the last package segment; expected `//pkg/...`
    "#]],
    );
    check_patterns(
        &["//a/...:foo"],
        "",
        expect![[r#"
        Invalid target pattern `//a/...:foo`: only `:all` or `:*` may follow `/...`; expected `//pkg/...` or `//pkg/...:all`
    "#]],
    );
    check_patterns(
        &["@repo//..."],
        "",
        expect![[r#"
        Invalid target pattern `@repo//...`: patterns may only name the main repository; expected `//pkg:name`
    "#]],
    );
    check_patterns(
        &["/abs"],
        "",
        expect![[r#"
        Invalid target pattern `/abs`: Invalid label `/abs`: a package path must start with `//`; expected `//package:name` or `:name`
    "#]],
    );
    check_patterns(
        &["//a/../b:c"],
        "",
        expect![[r#"
        Invalid target pattern `//a/../b:c`: Invalid label `//a/../b:c`: package names may not contain `..`; expected `//package:name`
    "#]],
    );
}

#[test]
fn visibility() {
    let parse = |v: &[&str]| -> Vec<Label> {
        v.iter()
            .map(|s| Label::parse(s, "p").expect("test label"))
            .collect()
    };
    assert!(is_visible(&parse(&["//visibility:private"]), "p", "p"));
    assert!(!is_visible(&parse(&["//visibility:private"]), "p", "q"));
    assert!(is_visible(&parse(&["//visibility:public"]), "p", "q"));
    assert!(is_visible(&parse(&["//q:__pkg__"]), "p", "q"));
    assert!(!is_visible(&parse(&["//q:__pkg__"]), "p", "q/r"));
    assert!(is_visible(&parse(&["//q:__subpackages__"]), "p", "q/r"));
    // Another repository's visibility covers that repository's packages only.
    let in_repo = parse(&["@r//q:__subpackages__"]);
    assert!(is_visible(
        &in_repo,
        "external/r/q/internal/x",
        "external/r/q/s"
    ));
    assert!(is_visible(
        &in_repo,
        "external/r/q/internal/x",
        "external/r/q"
    ));
    assert!(!is_visible(&in_repo, "external/r/q/internal/x", "q/s"));
    assert!(!is_visible(
        &in_repo,
        "external/r/q/internal/x",
        "external/other/q/s"
    ));
    assert!(!is_visible(
        &in_repo,
        "external/r/q/internal/x",
        "external/r/qq"
    ));
    assert!(is_visible(
        &parse(&["@r//q/s:__pkg__"]),
        "external/r/x",
        "external/r/q/s"
    ));
    assert!(!is_visible(&parse(&["//q:__subpackages__"]), "p", "qr"));
    assert!(is_visible(&parse(&[":__subpackages__"]), "p", "p/x"));
}
