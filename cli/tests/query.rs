//! End-to-end tests of `kiln query`: the real binary in a temporary workspace.

use std::path::Path;
use std::process::{Command, Output};

fn write(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn kiln_query(root: &Path, cache: &Path, args: &[&str]) -> Output {
    #[allow(clippy::disallowed_methods)] // Tests drive the real binary.
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("query")
        .args(args)
        .current_dir(root)
        .env("KILN_CACHE_DIR", cache)
        .output()
        .unwrap()
}

fn workspace() -> (tempfile::TempDir, tempfile::TempDir) {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let root = ws.path();
    write(root, "kiln.toml", "");
    write(
        root,
        "a/BUILD",
        r#"genrule(name = "a", srcs = ["in.txt"], outs = ["a.txt"], cmd = "cp $< $@", visibility = ["//visibility:public"])
"#,
    );
    write(root, "a/in.txt", "hello\n");
    write(
        root,
        "b/BUILD",
        "filegroup(name = \"b\", srcs = [\"//a\", \"//a:a.txt\"])\n",
    );
    (ws, cache)
}

#[test]
fn deps_prints_sorted_labels() {
    let (ws, cache) = workspace();
    let out = kiln_query(ws.path(), cache.path(), &["deps(//b:b)"]);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "//a:a\n//a:a.txt\n//a:in.txt\n//b:b\n"
    );

    // A second run is served from the package memo and says the same.
    let again = kiln_query(
        ws.path(),
        cache.path(),
        &["deps(//b:b)", "--output", "label_kind"],
    );
    assert_eq!(
        String::from_utf8_lossy(&again.stdout),
        "genrule rule //a:a\ngenerated file //a:a.txt\nsource file //a:in.txt\nfilegroup rule //b:b\n"
    );
}

#[test]
fn graph_output_is_dot() {
    let (ws, cache) = workspace();
    let out = kiln_query(
        ws.path(),
        cache.path(),
        &["deps(//b) - //a:in.txt", "--output", "graph"],
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "digraph mygraph {\n  node [shape=box];\n  \"//a:a\"\n  \"//a:a.txt\"\n  \"//b:b\"\n  \"//a:a.txt\" -> \"//a:a\"\n  \"//b:b\" -> \"//a:a\"\n  \"//b:b\" -> \"//a:a.txt\"\n}\n"
    );
}

#[test]
fn malformed_expression_exits_2() {
    let (ws, cache) = workspace();
    let out = kiln_query(ws.path(), cache.path(), &["deps(//b:b"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(out.stdout, b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("column 11: expected `)` to close `deps(`"),
        "{stderr}"
    );
}

#[test]
fn missing_target_exits_1() {
    let (ws, cache) = workspace();
    let out = kiln_query(ws.path(), cache.path(), &["//a:nope"]);
    assert_eq!(out.status.code(), Some(1));
}
