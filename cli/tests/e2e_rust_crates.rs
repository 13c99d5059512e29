//! Registry crates through `@crates`: a crate pinned by Cargo.lock builds and runs, a tampered
//! Cargo.lock checksum is rejected with nothing used, and a damaged `.crate` in Kiln's own store is
//! a miss that is fetched and verified again, never an answer.

mod harness;

use std::path::Path;

use harness::Workspace;

/// `itoa`'s version and checksum as examples/rust/Cargo.lock pins them (no dependencies, no build
/// script: the smallest real registry crate at hand).
fn itoa_pin() -> (String, String) {
    let lock = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rust/Cargo.lock"),
    )
    .expect("examples/rust/Cargo.lock");
    let table: toml::Table = toml::from_str(&lock).expect("lock parses");
    let package = table["package"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"].as_str() == Some("itoa"))
        .expect("itoa is locked");
    (
        package["version"].as_str().expect("version").to_string(),
        package["checksum"].as_str().expect("checksum").to_string(),
    )
}

fn workspace(checksum: &str) -> Workspace {
    let (version, _) = itoa_pin();
    let ws = Workspace::new();
    ws.write(
        "Cargo.toml",
        "[workspace]\nresolver = \"2\"\nmembers = [\"app\"]\n",
    )
    .write(
        "app/Cargo.toml",
        &format!(
            "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [dependencies]\nitoa = \"={version}\"\n"
        ),
    )
    .write(
        "Cargo.lock",
        &format!(
            "version = 4\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\ndependencies = [\n \"itoa\",\n]\n\n\
             [[package]]\nname = \"itoa\"\nversion = \"{version}\"\n\
             source = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"{checksum}\"\n"
        ),
    )
    .write(
        "app/BUILD.bazel",
        "load(\"@rules_rust//rust:defs.bzl\", \"rust_binary\")\n\
         rust_binary(name = \"app\", srcs = [\"src/main.rs\"], deps = [\"@crates//:itoa\"])\n",
    )
    .write(
        "app/src/main.rs",
        "fn main() { let mut b = itoa::Buffer::new(); println!(\"{}\", b.format(-1234567i64)); }\n",
    );
    ws
}

#[test]
fn a_locked_registry_crate_builds_and_a_tampered_checksum_is_rejected() {
    let (_, checksum) = itoa_pin();
    let ws = workspace(&checksum);
    let out = ws.kiln(&["run", "//app"]);
    out.ok();
    assert_eq!(out.stdout.trim(), "-1234567");

    // One changed digit in Cargo.lock: the build fails and names the crate; nothing is built.
    let flipped = if checksum.starts_with('0') { "1" } else { "0" };
    let tampered = format!("{flipped}{}", &checksum[1..]);
    let bad = workspace(&tampered);
    let out = bad.kiln(&["build", "//app"]);
    out.expect_code(1);
    assert!(out.stderr.contains("itoa"), "{}", out.stderr);
    assert!(out.stderr.contains("checksum"), "{}", out.stderr);
    assert!(out.executed().is_empty(), "{:?}", out.executed());
    assert!(!bad.out_path("app/app").exists());
}

#[test]
fn a_damaged_crate_in_kilns_store_is_fetched_again() {
    let (_, checksum) = itoa_pin();
    let ws = workspace(&checksum);
    ws.kiln(&["build", "//app"]).ok();
    let stored = ws
        .cache_dir()
        .join(format!("rust-crates/crate/{checksum}.crate"));
    assert!(stored.is_file(), "verified .crate kept in the store");
    std::fs::write(&stored, b"not a crate").expect("damage the stored .crate");
    // A new Cargo.lock text (a comment) forces the repository to be made again.
    ws.write(
        "Cargo.lock",
        &format!("# regenerated\n{}", ws.read("Cargo.lock")),
    );
    let out = ws.kiln(&["run", "//app"]);
    out.ok();
    assert_eq!(out.stdout.trim(), "-1234567");
    let bytes = std::fs::read(&stored).expect("stored again");
    assert_ne!(bytes, b"not a crate");
}

#[test]
fn crates_from_a_cargo_vendor_directory_are_verified_file_by_file() {
    let (_, checksum) = itoa_pin();
    let ws = workspace(&checksum);
    #[allow(clippy::disallowed_methods)] // The test runs the real `cargo vendor`.
    let vendored = std::process::Command::new(env!("CARGO"))
        .args(["vendor", "--locked", "vendor"])
        .current_dir(ws.root())
        .output()
        .expect("cargo vendor");
    assert!(
        vendored.status.success(),
        "{}",
        String::from_utf8_lossy(&vendored.stderr)
    );
    ws.write(
        ".cargo/config.toml",
        "[source.crates-io]\nreplace-with = \"vendored-sources\"\n\n\
         [source.vendored-sources]\ndirectory = \"vendor\"\n",
    );
    let out = ws.kiln(&["run", "//app"]);
    out.ok();
    assert_eq!(out.stdout.trim(), "-1234567");

    let lib = walkdir::WalkDir::new(ws.root().join("vendor"))
        .into_iter()
        .flatten()
        .find(|e| e.file_name() == "lib.rs")
        .expect("a vendored lib.rs")
        .into_path();
    let text = std::fs::read_to_string(&lib).expect("read vendored lib.rs");
    std::fs::write(&lib, format!("{text}\n// tampered\n")).expect("tamper");
    ws.write(
        "Cargo.lock",
        &format!("# vendored\n{}", ws.read("Cargo.lock")),
    );
    let out = ws.kiln(&["build", "//app"]);
    out.expect_code(1);
    assert!(out.stderr.contains("does not match"), "{}", out.stderr);
}
