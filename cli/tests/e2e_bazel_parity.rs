//! A genrule whose command does not print its own paths gives the same output under Bazel and
//! Kiln. `fixtures/bazel_parity/` is built by Kiln and compared with `fixtures/bazel_parity.golden`,
//! which holds what real Bazel (Debian's `bazel-bootstrap` 4.2.3) produced for the same BUILD files.
//! Regenerate the golden file with `UPDATE_BAZEL_GOLDEN=1 cargo test -p kiln-cli --test
//! e2e_bazel_parity` on a machine with `bazel` on its PATH.

mod harness;

use std::path::{Path, PathBuf};

use harness::Workspace;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bazel_parity")
}

fn golden_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bazel_parity.golden")
}

/// `== path` headers followed by each file's content, files sorted by path.
fn render(outputs: &std::collections::BTreeMap<String, Vec<u8>>) -> String {
    let mut text = String::new();
    for (path, bytes) in outputs {
        text.push_str(&format!("== {path}\n"));
        text.push_str(&String::from_utf8_lossy(bytes));
    }
    text
}

fn bazel_outputs() -> String {
    let dir = tempfile::tempdir().unwrap();
    harness::copy_tree(&fixture(), dir.path());
    let _ = std::fs::remove_file(dir.path().join("kiln.toml"));
    let root = tempfile::tempdir().unwrap();
    #[allow(clippy::disallowed_methods)] // Runs the reference tool, not part of Kiln.
    let status = std::process::Command::new("bazel")
        .arg(format!("--output_user_root={}", root.path().display()))
        .args(["build", "//...", "--nosandbox_debug"])
        .current_dir(dir.path())
        .status()
        .expect("bazel on PATH");
    assert!(status.success());
    let bin = dir.path().join("bazel-bin");
    let mut outputs = std::collections::BTreeMap::new();
    for entry in walkdir::WalkDir::new(bin.join("text"))
        .into_iter()
        .flatten()
    {
        if entry.file_type().is_file() {
            let rel = entry
                .path()
                .strip_prefix(&bin)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            outputs.insert(rel, std::fs::read(entry.path()).unwrap());
        }
    }
    render(&outputs)
}

#[test]
fn genrule_outputs_match_bazels() {
    if std::env::var_os("UPDATE_BAZEL_GOLDEN").is_some() {
        std::fs::write(golden_path(), bazel_outputs()).unwrap();
    }
    let golden = std::fs::read_to_string(golden_path()).unwrap();
    let ws = Workspace::new();
    harness::copy_tree(&fixture(), ws.root());
    ws.build_all();
    let kiln: std::collections::BTreeMap<String, Vec<u8>> = ws
        .outputs()
        .into_iter()
        .filter(|(path, _)| path.starts_with("text/"))
        .collect();
    assert_eq!(render(&kiln), golden);
}
