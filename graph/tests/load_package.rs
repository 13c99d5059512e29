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
