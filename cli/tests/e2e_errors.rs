//! Error reporting: BUILD diagnostics with file:line:col, bad command lines, missing targets,
//! visibility, and `kiln run` passing the program's exit code and stdout through.

mod harness;

use harness::Workspace;

#[test]
fn build_syntax_error_names_location() {
    let ws = Workspace::new();
    ws.write(
        "pkg/BUILD",
        "genrule(\n    name = \"x\",\n    outs = [\"x.txt\"\n    cmd = \"true\",\n)\n",
    );
    let out = ws.kiln(&["build", "//..."]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("pkg/BUILD:4:"),
        "stderr:\n{}",
        out.stderr
    );
}

#[test]
fn unknown_rule_names_location() {
    let ws = Workspace::new();
    ws.write(
        "pkg/BUILD",
        "\n\ncc_library(name = \"lib\", srcs = [\"a.c\"])\n",
    );
    let out = ws.kiln(&["build", "//pkg:all"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("pkg/BUILD:3:1"),
        "stderr:\n{}",
        out.stderr
    );
    assert!(out.stderr.contains("cc_library"), "stderr:\n{}", out.stderr);
}

#[test]
fn bad_label_pattern_is_exit_2() {
    let ws = Workspace::new();
    ws.write("a/BUILD", "");
    ws.write("b/BUILD", "");
    let out = ws.kiln(&["build", "//a/../b"]);
    out.expect_code(2);
    assert!(!out.stderr.is_empty());
}

#[test]
fn unknown_flag_is_exit_2() {
    let ws = Workspace::new();
    ws.kiln(&["build", "//...", "--no_such_flag"])
        .expect_code(2);
}

#[test]
fn missing_dependency_names_referencing_location() {
    let ws = Workspace::new();
    ws.write("a/BUILD", "\ngenrule(\n    name = \"x\",\n    srcs = [\"//b:nope\"],\n    outs = [\"x.txt\"],\n    cmd = \"cat $< > $@\",\n)\n");
    ws.write(
        "b/BUILD",
        "genrule(name = \"y\", outs = [\"y.txt\"], cmd = \"echo > $@\")\n",
    );
    let out = ws.kiln(&["build", "//a:x"]);
    out.expect_code(1);
    assert!(out.stderr.contains("//b:nope"), "stderr:\n{}", out.stderr);
    assert!(
        out.stderr.contains("a/BUILD:2:"),
        "stderr should name the referencing rule's location:\n{}",
        out.stderr
    );
}

#[test]
fn visibility_violation_is_an_error() {
    let ws = Workspace::new();
    ws.write(
        "a/BUILD",
        "genrule(name = \"private\", outs = [\"p.txt\"], cmd = \"echo p > $@\")\n",
    );
    ws.write("b/BUILD", "genrule(name = \"user\", srcs = [\"//a:private\"], outs = [\"u.txt\"], cmd = \"cat $< > $@\")\n");
    let out = ws.kiln(&["build", "//b:user"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("//a:private"),
        "stderr:\n{}",
        out.stderr
    );
    assert!(!ws.out_path("b/u.txt").exists());
    // Made public, it builds.
    ws.write("a/BUILD", "genrule(name = \"private\", outs = [\"p.txt\"], cmd = \"echo p > $@\", visibility = [\"//visibility:public\"])\n");
    ws.kiln(&["build", "//b:user"]).ok();
    assert_eq!(ws.read_out("b/u.txt"), "p\n");
}

#[test]
fn exported_files_and_package_default_visibility_are_enforced() {
    let ws = Workspace::new();
    ws.write("a/shared.txt", "shared\n");
    ws.write("a/secret.txt", "secret\n");
    ws.write(
        "a/BUILD",
        r#"
package(default_visibility = ["//friend:__pkg__"])
exports_files(["shared.txt"], visibility = ["//visibility:public"])
exports_files(["secret.txt"], visibility = ["//friend:__pkg__"])
genrule(name = "gen", outs = ["gen.txt"], cmd = "echo gen > $@")
"#,
    );
    let user = |pkg: &str, src: &str| {
        ws.write(
            &format!("{pkg}/BUILD"),
            &format!(
                r#"genrule(name = "use", srcs = ["{src}"], outs = ["use.txt"], cmd = "cat $< > $@")"#
            ),
        );
        ws.kiln(&["build", &format!("//{pkg}:use")])
    };
    user("stranger", "//a:shared.txt").ok();
    assert_eq!(ws.read_out("stranger/use.txt"), "shared\n");
    for denied in ["//a:secret.txt", "//a:gen"] {
        let out = user("stranger", denied);
        out.expect_code(1);
        assert!(
            out.stderr.contains(denied) && out.stderr.contains("visib"),
            "{denied}: {}",
            out.stderr
        );
    }
    user("friend", "//a:secret.txt").ok();
    assert_eq!(ws.read_out("friend/use.txt"), "secret\n");
    user("friend", "//a:gen").ok();
    assert_eq!(ws.read_out("friend/use.txt"), "gen\n");
}

#[test]
fn run_passes_exit_code_and_stdout() {
    let ws = Workspace::new();
    ws.write(
        "pkg/bin.sh",
        "#!/bin/bash\necho \"program says: $*\"\nexit 7\n",
    );
    ws.write(
        "pkg/BUILD",
        "sh_binary(name = \"bin\", srcs = [\"bin.sh\"])\n",
    );
    let out = ws.kiln(&["run", "//pkg:bin", "--", "a", "b c"]);
    out.expect_code(7);
    assert_eq!(
        out.stdout, "program says: a b c\n",
        "stderr:\n{}",
        out.stderr
    );
}
