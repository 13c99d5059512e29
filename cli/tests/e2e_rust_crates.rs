//! Registry crates through `@crates`: a crate pinned by Cargo.lock builds and runs, a downloaded
//! `.crate` that no longer matches Cargo.lock's checksum is rejected by Kiln with nothing used, so
//! is a Cargo.lock whose checksum was edited, and a damaged `.crate` in Kiln's own store is a miss
//! that is fetched and verified again.

mod harness;

use std::path::Path;

use harness::Workspace;

/// The member `app`'s Cargo.toml with one `[dependencies]` line.
fn app_manifest(dependency: &str) -> String {
    format!(
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
         [dependencies]\n{dependency}\n"
    )
}

fn workspace(checksum: &str) -> Workspace {
    let (version, _) = harness::examples_rust_pin("itoa");
    let ws = Workspace::new();
    ws.write(
        "Cargo.toml",
        "[workspace]\nresolver = \"2\"\nmembers = [\"app\"]\n",
    )
    .write(
        "app/Cargo.toml",
        &app_manifest(&format!("itoa = \"={version}\""))
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

/// Cargo's home as cargo itself finds it (`$CARGO_HOME`, else `~/.cargo`).
fn real_cargo_home() -> std::path::PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(&std::env::var_os("HOME").expect("HOME")).join(".cargo"))
}

/// A private cargo home holding only what an offline `cargo metadata` needs for `itoa`: the
/// crates.io index's config and cached `itoa` entry, and the downloaded `.crate`.
fn private_cargo_home(into: &Path, version: &str) -> std::path::PathBuf {
    let real = real_cargo_home().join("registry");
    let index = std::fs::read_dir(real.join("cache"))
        .expect("cargo's download cache")
        .flatten()
        .map(|e| e.file_name())
        .find(|n| {
            real.join("cache")
                .join(n)
                .join(format!("itoa-{version}.crate"))
                .is_file()
        })
        .expect("itoa's .crate in cargo's download cache");
    let home = into.join("cargo-home");
    let files = [
        Path::new("cache")
            .join(&index)
            .join(format!("itoa-{version}.crate")),
        Path::new("index").join(&index).join("config.json"),
        Path::new("index").join(&index).join(".cache/it/oa/itoa"),
    ];
    for rel in files {
        let to = home.join("registry").join(&rel);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(real.join(&rel), &to)
            .unwrap_or_else(|e| panic!("copying {}: {e}", rel.display()));
    }
    home.join("registry")
        .join("cache")
        .join(&index)
        .join(format!("itoa-{version}.crate"))
}

/// `kiln args...` with cargo's home at `cargo_home`, offline; returns (exit code, stderr, executed
/// action count).
fn kiln_with_cargo_home(ws: &Workspace, cargo_home: &Path, args: &[&str]) -> (i32, String, usize) {
    let events = ws.root().join("events.jsonl");
    let mut all = vec![
        args[0].to_string(),
        format!("--events={}", events.display()),
    ];
    all.extend(args[1..].iter().map(|a| a.to_string()));
    let refs: Vec<&str> = all.iter().map(|a| a.as_str()).collect();
    let out = ws
        .command(&refs)
        .env("CARGO_HOME", cargo_home)
        .env("CARGO_NET_OFFLINE", "true")
        .output()
        .expect("run kiln");
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&events)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("event line"))
        .collect();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        harness::executed(&events).len(),
    )
}

#[test]
fn a_locked_registry_crate_builds_and_a_tampered_download_is_rejected() {
    let (version, checksum) = harness::examples_rust_pin("itoa");
    let ws = workspace(&checksum);
    let out = ws.kiln(&["run", "//app"]);
    out.ok();
    assert_eq!(out.stdout.trim(), "-1234567");

    // A private cargo home: cargo resolves and unpacks `itoa` there, so Kiln reads its `.crate`.
    let home = tempfile::tempdir().expect("cargo home dir");
    let downloaded = private_cargo_home(home.path(), &version);
    let cargo_home = home.path().join("cargo-home");
    let fresh = workspace(&checksum);
    let (code, stderr, _) = kiln_with_cargo_home(&fresh, &cargo_home, &["build", "//app"]);
    assert_eq!(code, 0, "{stderr}");

    // The downloaded `.crate` changes behind cargo's back (cargo does not check its cache again);
    // Cargo.lock is intact, so only Kiln's own sha256 check can notice. A workspace with an empty
    // Kiln store reads it: the build fails naming the crate, and nothing is built.
    let mut bytes = std::fs::read(&downloaded).expect("read .crate");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&downloaded, &bytes).expect("tamper .crate");
    let bad = workspace(&checksum);
    let (code, stderr, executed) = kiln_with_cargo_home(&bad, &cargo_home, &["build", "//app"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("`itoa "), "{stderr}");
    assert!(
        stderr.contains(&format!("but Cargo.lock says `{checksum}`")),
        "{stderr}"
    );
    assert_eq!(executed, 0);
    assert!(!bad.out_path("app/app").exists());
}

/// A workspace that built `//app` once, and the path of the verified `itoa` `.crate` in
/// Kiln's store.
fn built_itoa_workspace() -> (Workspace, std::path::PathBuf) {
    let (_, checksum) = harness::examples_rust_pin("itoa");
    let ws = workspace(&checksum);
    ws.kiln(&["build", "//app"]).ok();
    let stored = ws
        .cache_dir()
        .join(format!("rust-crates/crate/{checksum}.crate"));
    (ws, stored)
}

#[test]
fn a_damaged_crate_in_kilns_store_is_fetched_again() {
    let (ws, stored) = built_itoa_workspace();
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
fn a_repository_already_made_is_reused_after_clean_expunge_without_unpacking() {
    let (ws, stored) = built_itoa_workspace();
    // Were the crates unpacked again, this damaged archive would be noticed and fetched anew.
    std::fs::write(&stored, b"not a crate").expect("damage the stored .crate");
    ws.kiln(&["clean", "--expunge"]).ok();
    let out = ws.kiln(&["run", "//app"]);
    out.ok();
    assert_eq!(out.stdout.trim(), "-1234567");
    assert!(
        std::fs::read(&stored).expect("stored .crate") == b"not a crate",
        "the crates were unpacked again (the damaged .crate was fetched anew)"
    );
    let repos = std::fs::read_dir(ws.cache_dir().join("rust-crates/repo"))
        .expect("repository store")
        .count();
    assert_eq!(repos, 1, "one repository directory for one resolution");
}

/// The itoa workspace with its crate in a `cargo vendor` directory that `.cargo/config.toml`
/// selects.
fn vendored_workspace() -> Workspace {
    let (_, checksum) = harness::examples_rust_pin("itoa");
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
    ws
}

#[test]
fn crates_from_a_cargo_vendor_directory_are_verified_file_by_file() {
    let ws = vendored_workspace();
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

/// crate_universe's `@crates//:defs.bzl` macros work on the member's own dependencies:
/// `all_crate_deps()` (normal ones by default) with `aliases()` for a renamed dependency, and
/// `crate_deps([...])`, which names what is not a dependency.
#[test]
fn defs_bzl_macros_give_each_member_its_dependencies() {
    let (version, checksum) = harness::examples_rust_pin("itoa");
    let ws = workspace(&checksum);
    ws.write(
        "app/Cargo.toml",
        &app_manifest(&format!(
            "numbers = {{ package = \"itoa\", version = \"={version}\" }}"
        ))
    )
    .write(
        "app/BUILD.bazel",
        "load(\"@rules_rust//rust:defs.bzl\", \"rust_binary\")\n\
         load(\"@crates//:defs.bzl\", \"aliases\", \"all_crate_deps\", \"crate_deps\")\n\
         rust_binary(name = \"app\", srcs = [\"src/main.rs\"], aliases = aliases(), deps = all_crate_deps())\n\
         rust_binary(name = \"plain\", srcs = [\"src/plain.rs\"], deps = crate_deps([\"itoa\"]))\n\
         rust_binary(name = \"none\", srcs = [\"src/none.rs\"], deps = all_crate_deps(build = True, proc_macro = True))\n",
    )
    .write(
        "app/src/main.rs",
        "fn main() { let mut b = numbers::Buffer::new(); println!(\"{}\", b.format(-1234567i64)); }\n",
    )
    .write(
        "app/src/plain.rs",
        "fn main() { let mut b = itoa::Buffer::new(); println!(\"{}\", b.format(42u8)); }\n",
    )
    .write("app/src/none.rs", "fn main() { println!(\"no deps\"); }\n");
    let out = ws.kiln(&["run", "//app"]);
    out.ok();
    assert_eq!(out.stdout.trim(), "-1234567");
    let out = ws.kiln(&["run", "//app:plain"]);
    out.ok();
    assert_eq!(out.stdout.trim(), "42");
    ws.kiln(&["build", "//app:none"]).ok();

    // Cargo.toml drops the rename: the repository is made again, and the package that loaded
    // its defs.bzl is evaluated again (its memo names the old repository), so `aliases()` is
    // empty now and the crate is `itoa` in code.
    ws.write(
        "app/Cargo.toml",
        &app_manifest(&format!("itoa = \"={version}\"")),
    )
    .write(
        "app/src/main.rs",
        "fn main() { let mut b = itoa::Buffer::new(); println!(\"{}\", b.format(7i8)); }\n",
    );
    let out = ws.kiln(&["run", "//app"]);
    out.ok();
    assert_eq!(out.stdout.trim(), "7");

    ws.write(
        "app/BUILD.bazel",
        "load(\"@rules_rust//rust:defs.bzl\", \"rust_binary\")\n\
         load(\"@crates//:defs.bzl\", \"crate_deps\")\n\
         rust_binary(name = \"app\", srcs = [\"src/main.rs\"], deps = crate_deps([\"serde\"]))\n",
    );
    let out = ws.kiln(&["build", "//app"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("`serde` is not a direct dependency of package `app` in Cargo.toml"),
        "{}",
        out.stderr
    );
}

/// Cargo.lock edited so that its checksum no longer matches the published crate (the crate is
/// already in Kiln's store and cargo's cache): the build fails naming the crate, and nothing runs.
#[test]
fn a_tampered_cargo_lock_checksum_is_rejected_and_nothing_is_used() {
    let (ws, _) = built_itoa_workspace();
    let (_, checksum) = harness::examples_rust_pin("itoa");
    let flipped: String = checksum
        .chars()
        .enumerate()
        .map(|(i, c)| match (i, c) {
            (0, '0') => '1',
            (0, _) => '0',
            _ => c,
        })
        .collect();
    assert_ne!(flipped, checksum);
    ws.write(
        "Cargo.lock",
        &ws.read("Cargo.lock").replace(&checksum, &flipped),
    );
    ws.write(
        "app/src/main.rs",
        "fn main() { println!(\"{}\", itoa::Buffer::new().format(7)); }\n",
    );
    let out = ws.kiln(&["build", "//app"]);
    out.expect_code(1);
    // Cargo's resolution (`cargo metadata --locked`) is the first to compare the lock file with
    // the registry's checksum; Kiln reports its refusal as a load error at the label.
    let stderr = &out.stderr;
    assert!(stderr.contains("app/BUILD.bazel:2:1"), "{stderr}");
    assert!(stderr.contains("checksum for `itoa v"), "{stderr}");
    assert!(stderr.contains("no crate was used"), "{stderr}");
    assert!(out.executed().is_empty(), "{:?}", out.executed());
}

/// `sha256sum` of a file, as `.cargo-checksum.json` records it.
fn sha256_of(path: &Path) -> String {
    #[allow(clippy::disallowed_methods)] // coreutils' sha256sum, as a vendoring tool would.
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_string()
}

/// Third-party code builds with `--cap-lints=allow`, as cargo builds registry crates: a lint the
/// crate itself denies does not stop the build (the crate's warnings are not the user's to fix),
/// while the same code in a workspace crate is an error.
#[test]
fn lints_in_registry_crates_are_capped_and_in_workspace_crates_are_not() {
    let ws = vendored_workspace();
    let probe = "\n#[deny(unused_variables)]\n#[allow(dead_code)]\nfn kiln_lint_probe() {\n    let unused = 1;\n}\n";
    // The vendored crate gains code its own attribute forbids; its checksum file is updated as a
    // patched vendor directory would be, so only the lint can stop the build.
    let crate_dir = walkdir::WalkDir::new(ws.root().join("vendor"))
        .into_iter()
        .flatten()
        .find(|e| e.file_name() == ".cargo-checksum.json")
        .expect("a vendored crate")
        .into_path();
    let crate_dir = crate_dir.parent().expect("its directory");
    let lib = crate_dir.join("src/lib.rs");
    let old = sha256_of(&lib);
    let text = std::fs::read_to_string(&lib).expect("read lib.rs");
    std::fs::write(&lib, format!("{text}{probe}")).expect("patch lib.rs");
    let new = sha256_of(&lib);
    let sums = crate_dir.join(".cargo-checksum.json");
    let json = std::fs::read_to_string(&sums).expect("read checksums");
    assert!(json.contains(&old), "{json}");
    std::fs::write(&sums, json.replace(&old, &new)).expect("write checksums");

    let out = ws.kiln(&["run", "//app"]);
    out.ok();
    assert_eq!(out.stdout.trim(), "-1234567");

    let main = ws.read("app/src/main.rs");
    ws.write("app/src/main.rs", &format!("{main}{probe}"));
    let out = ws.kiln(&["build", "//app"]);
    out.expect_code(1);
    assert!(out.stderr.contains("unused variable"), "{}", out.stderr);
}
