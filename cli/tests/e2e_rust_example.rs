//! examples/rust built by Kiln and by cargo from the same sources: the binaries behave the same
//! and `kiln test` runs the same tests with the same results as `cargo test`.

mod harness;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use harness::{copy_tree, Workspace};

/// The example copied into a fresh workspace under `rust/`, as it sits in examples/.
fn example() -> Workspace {
    let ws = Workspace::new();
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rust");
    let to = ws.root().join("rust");
    std::fs::create_dir_all(&to).expect("mkdir rust");
    copy_tree(&from, &to);
    let _ = std::fs::remove_dir_all(to.join("target"));
    ws.write(
        "kiln.toml",
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/kiln.toml"),
        )
        .expect("examples/kiln.toml"),
    );
    ws
}

fn cargo(ws: &Workspace, target_dir: &Path, args: &[&str]) -> std::process::Output {
    #[allow(clippy::disallowed_methods)] // The comparison runs the real cargo.
    let out = Command::new(env!("CARGO"))
        .args(args)
        .current_dir(ws.root().join("rust"))
        .env("CARGO_TARGET_DIR", target_dir)
        .env("CARGO_INCREMENTAL", "0")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .expect("run cargo");
    assert!(
        out.status.success() || args.first() != Some(&"build"),
        "cargo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn run(binary: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    #[allow(clippy::disallowed_methods)] // Runs the binaries under comparison.
    let out = Command::new(binary)
        .args(args)
        .env_clear()
        .output()
        .expect("run binary");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `test NAME ... RESULT` lines, as libtest prints them.
fn test_lines(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| l.starts_with("test ") && l.contains(" ... "))
        .map(str::to_string)
        .collect()
}

#[test]
fn binaries_and_test_results_match_cargo() {
    let ws = example();
    let target = tempfile::tempdir().expect("cargo target dir");
    ws.kiln(&["build", "-c", "dbg", "//rust/..."]).ok();
    cargo(&ws, target.path(), &["build", "--locked"]);
    let kiln_hello = ws.out_path("rust/hello/hello");
    let cargo_hello = target.path().join("debug/hello");
    for args in [
        &[][..],
        &["fr", "Ada"],
        &["de", "Grace", "--json"],
        &["xx", "nobody"],
    ] {
        assert_eq!(
            run(&kiln_hello, args),
            run(&cargo_hello, args),
            "hello {args:?} differs between kiln and cargo"
        );
    }

    let tested = ws.kiln(&["test", "-c", "dbg", "//rust/..."]);
    tested.ok();
    let mut kiln_lines = BTreeSet::new();
    for entry in walkdir::WalkDir::new(ws.root().join("kiln-out/testlogs"))
        .into_iter()
        .flatten()
    {
        if entry.file_name() == "test.log" {
            let text = std::fs::read_to_string(entry.path()).expect("read log");
            kiln_lines.extend(test_lines(&text));
        }
    }
    let cargo_test = cargo(&ws, target.path(), &["test", "--locked"]);
    assert!(cargo_test.status.success());
    let cargo_lines = test_lines(&String::from_utf8_lossy(&cargo_test.stdout));
    assert!(cargo_lines.len() >= 5, "{cargo_lines:?}");
    assert_eq!(kiln_lines, cargo_lines);
}

/// The whole example (proc-macro, build script, and a binary linking `@crates` built with their
/// own build scripts and proc-macros) in `-c opt`, from two checkout directories with separate
/// caches: every output is bit-identical, and none names its checkout.
#[test]
fn the_example_is_bit_identical_across_checkouts_in_opt() {
    let one = example();
    let two = one.copy_to(false);
    assert_ne!(one.cache_dir(), two.cache_dir());
    for ws in [&one, &two] {
        ws.kiln(&["build", "-c", "opt", "//rust/..."]).ok();
    }
    let (a, b) = (one.outputs(), two.outputs());
    // Registry crates are not materialized in kiln-out/, but `hello` links serde, serde_json
    // and what serde_derive generated, and the library carries its build script's output.
    for expected in [
        "rust/hello/hello",
        "rust/shout/libshout-",
        "rust/greet/libgreet-",
        "rust/greet/greet_bs.out_dir.archive",
    ] {
        assert!(
            a.keys().any(|k| k.starts_with(expected)),
            "{expected}: {:?}",
            a.keys()
        );
    }
    harness::assert_identical_outputs((&one, &a), (&two, &b), &[]);
}
