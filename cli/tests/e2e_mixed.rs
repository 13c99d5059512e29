//! examples/mixed: a Rust tool (`rust_binary`) generates Go code through a genrule and a
//! `go_binary` compiles it, so one graph spans both languages. An edit to the Rust generator
//! reaches the Go binary; an edit that leaves the generated file byte-identical stops there.
//! One test, one warmed workspace: the first build compiles part of Go's standard library.

mod harness;

use std::path::Path;
use std::process::Command;

use harness::{copy_tree, tests, Workspace};

/// examples/mixed copied into a fresh workspace under `mixed/`.
fn example() -> Workspace {
    let ws = Workspace::new();
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mixed");
    let to = ws.root().join("mixed");
    std::fs::create_dir_all(&to).expect("mkdir mixed");
    copy_tree(&from, &to);
    ws.write("kiln.toml", "[workspace]\nname = \"_main\"\n");
    ws
}

/// `convert` run without arguments: its usage text, which names the generator.
fn usage(ws: &Workspace) -> String {
    #[allow(clippy::disallowed_methods)] // Runs the Go binary Kiln built.
    let out = Command::new(ws.out_path("mixed/convert"))
        .env_clear()
        .output()
        .expect("run convert");
    assert_eq!(out.status.code(), Some(2));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn edit_generator(ws: &Workspace, from: &str, to: &str) {
    let text = ws.read("mixed/gogen/main.rs");
    assert!(text.contains(from), "gogen/main.rs has no `{from}`");
    ws.write("mixed/gogen/main.rs", &text.replace(from, to));
}

#[test]
fn a_rust_generator_feeds_a_go_binary_through_a_genrule() {
    let ws = example();
    let first = ws.kiln(&["test", "//mixed/..."]);
    first.ok();
    let mut results: Vec<(String, String)> = tests(&first.events)
        .iter()
        .map(|t| {
            (
                t["label"].as_str().unwrap_or("").to_string(),
                t["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    results.sort();
    assert_eq!(
        results,
        [
            ("//mixed:convert_test".to_string(), "PASSED".to_string()),
            ("//mixed:gogen_test".to_string(), "PASSED".to_string()),
        ]
    );
    assert_eq!(
        usage(&ws),
        "usage: convert VALUE FROM TO\nunits: [m km cm mi ft in] (tables by gogen 1)\n"
    );
    assert!(ws.kiln(&["build", "//mixed/..."]).executed().is_empty());

    // The generator's output changes: the wave runs through both languages.
    edit_generator(&ws, "\"gogen 1\"", "\"gogen 2\"");
    let out = ws.kiln(&["build", "//mixed:convert"]);
    out.ok();
    let executed = out.executed();
    for step in [
        ("//mixed:gogen", "Rustc"),
        ("//mixed:units_go", "Genrule"),
        ("//mixed:convert", "GoCompile"),
        ("//mixed:convert", "GoLink"),
    ] {
        assert!(
            executed
                .iter()
                .any(|(l, m)| (l.as_str(), m.as_str()) == step),
            "{step:?} did not run: {executed:?}"
        );
    }
    assert!(usage(&ws).ends_with("(tables by gogen 2)\n"));

    // The generator changes but writes the same file: the Go side does not rebuild.
    edit_generator(&ws, "is not a plain word", "is not a single word");
    let out = ws.kiln(&["build", "//mixed:convert"]);
    out.ok();
    let executed = out.executed();
    assert!(
        executed.contains(&("//mixed:units_go".to_string(), "Genrule".to_string())),
        "the genrule did not rerun: {executed:?}"
    );
    assert!(
        !executed.iter().any(|(l, _)| l == "//mixed:convert"),
        "an identical generated file rebuilt the Go binary: {executed:?}"
    );
    assert!(usage(&ws).ends_with("(tables by gogen 2)\n"));

    // Generated code importing a package the target does not link fails in the Go compile,
    // which names the import (analysis cannot read a generated file's imports).
    edit_generator(
        &ws,
        "go.push_str(\"package main\\n\\n\");",
        "go.push_str(\"package main\\n\\nimport \\\"net/http\\\"\\n\\nvar _ = http.Get\\n\\n\");",
    );
    let out = ws.kiln(&["build", "//mixed:convert"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("net/http"),
        "the compile error does not name the import: {}",
        out.stderr
    );
}
