//! Registry crates get cargo's resolver-2 features: a crate used by a build script and by normal
//! code with different features is built twice (host and target), a crate used by both with the
//! same features once, and features that only a `[dev-dependencies]` entry asks for reach the
//! test build and not `kiln build` (an integration test links the library's test build, so it
//! shares one memchr with it). The expected feature sets are not written here: they are read
//! from `cargo build -v` and `cargo test --no-run -v` on the same workspace.

mod harness;

use std::collections::BTreeSet;

use harness::Workspace;

/// A member whose library wants `memchr` without features, whose build script wants `std`, and
/// whose tests want `libc`; `itoa` is used by the library and the build script alike.
fn workspace() -> Workspace {
    let (memchr, memchr_sum) = harness::examples_rust_pin("memchr");
    let (itoa, itoa_sum) = harness::examples_rust_pin("itoa");
    let ws = Workspace::new();
    ws.write(
        "Cargo.toml",
        "[workspace]\nresolver = \"2\"\nmembers = [\"app\", \"util\"]\n",
    )
    .write(
        "app/Cargo.toml",
        &format!(
            "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [dependencies]\nmemchr = {{ version = \"={memchr}\", default-features = false }}\n\
             itoa = \"={itoa}\"\n\n\
             [build-dependencies]\nmemchr = {{ version = \"={memchr}\", default-features = false, features = [\"std\"] }}\n\
             itoa = \"={itoa}\"\nutil = {{ path = \"../util\" }}\n\n\
             [dev-dependencies]\nmemchr = {{ version = \"={memchr}\", default-features = false, features = [\"libc\"] }}\n"
        ),
    )
    .write(
        "Cargo.lock",
        &format!(
            "version = 4\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\ndependencies = [\n \"itoa\",\n \"memchr\",\n \"util\",\n]\n\n\
             [[package]]\nname = \"itoa\"\nversion = \"{itoa}\"\n\
             source = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"{itoa_sum}\"\n\n\
             [[package]]\nname = \"memchr\"\nversion = \"{memchr}\"\n\
             source = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"{memchr_sum}\"\n\n\
             [[package]]\nname = \"util\"\nversion = \"0.1.0\"\ndependencies = [\n \"memchr\",\n]\n"
        ),
    )
    // A workspace library the build script uses: it hands the script a memchr value, which
    // compiles only if both see the same (host) build of memchr.
    .write(
        "util/Cargo.toml",
        &format!(
            "[package]\nname = \"util\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [dependencies]\nmemchr = {{ version = \"={memchr}\", default-features = false }}\n"
        ),
    )
    .write(
        "util/BUILD.bazel",
        "load(\"@rules_rust//rust:defs.bzl\", \"rust_library\")\n\
         rust_library(name = \"util\", srcs = [\"src/lib.rs\"], deps = [\"@crates//:memchr\"], visibility = [\"//visibility:public\"])\n",
    )
    .write(
        "util/src/lib.rs",
        "pub fn positions(h: &[u8]) -> memchr::Memchr<'_> { memchr::memchr_iter(b'x', h) }\n",
    )
    .write(
        "app/BUILD.bazel",
        "load(\"@rules_rust//rust:defs.bzl\", \"rust_library\", \"rust_test\")\n\
         load(\"@rules_rust//cargo:defs.bzl\", \"cargo_build_script\")\n\
         cargo_build_script(name = \"app_bs\", srcs = [\"build.rs\"], deps = [\"@crates//:memchr\", \"@crates//:itoa\", \"//util\"])\n\
         rust_library(name = \"app\", srcs = [\"src/lib.rs\"], deps = [\":app_bs\", \"@crates//:memchr\", \"@crates//:itoa\"])\n\
         rust_test(name = \"app_test\", crate = \":app\")\n\
         rust_test(name = \"integ_test\", srcs = [\"tests/integ.rs\"], deps = [\":app\", \"@crates//:memchr\"])\n",
    )
    // The integration test hands a memchr value to the library: it compiles only if both see
    // the same build of memchr (the library's test build, as `cargo test` rebuilds it).
    .write(
        "app/tests/integ.rs",
        "#[test]\nfn shares_memchr_with_the_library() {\n    \
         let it: memchr::Memchr<'_> = app::positions(b\"xax\");\n    \
         assert_eq!(it.count(), 2);\n}\n",
    )
    // `Finder::into_owned` exists only with memchr's `alloc` (which `std` enables): the script
    // compiles only against the host build.
    .write(
        "app/build.rs",
        "fn main() {\n    let owned = memchr::memmem::Finder::new(\"needle\").into_owned();\n    \
         let it: memchr::Memchr<'_> = util::positions(b\"xx\");\n    assert_eq!(it.count(), 2);\n    \
         let mut b = itoa::Buffer::new();\n    \
         println!(\"cargo:rustc-env=NEEDLE_LEN={}\", b.format(owned.needle().len()));\n}\n",
    )
    .write(
        "app/src/lib.rs",
        "pub fn first_x(h: &[u8]) -> Option<usize> { memchr::memchr(b'x', h) }\n\
         pub fn needle_len() -> &'static str { env!(\"NEEDLE_LEN\") }\n\
         pub fn text(n: u8) -> String { itoa::Buffer::new().format(n).to_string() }\n\
         pub fn positions(h: &[u8]) -> memchr::Memchr<'_> { memchr::memchr_iter(b'x', h) }\n\
         #[cfg(test)]\nmod tests {\n    #[test]\n    fn finds() {\n        \
         assert_eq!(super::first_x(b\"abx\"), Some(2));\n        \
         assert_eq!(super::needle_len(), \"6\");\n    }\n}\n",
    );
    ws
}

/// The feature sets of every rustc compile of `krate` that cargo ran (`cargo ARGS -v`, fresh
/// target directory).
fn cargo_feature_sets(ws: &Workspace, krate: &str, args: &[&str]) -> Vec<BTreeSet<String>> {
    let target = tempfile::tempdir().expect("target dir");
    #[allow(clippy::disallowed_methods)] // The reference is the real cargo.
    let out = std::process::Command::new(env!("CARGO"))
        .args(args)
        .arg("-v")
        .current_dir(ws.root())
        .env("CARGO_TARGET_DIR", target.path())
        .env("CARGO_INCREMENTAL", "0")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .expect("run cargo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cargo {args:?} failed:\n{stderr}");
    let mut sets: Vec<BTreeSet<String>> = stderr
        .lines()
        .filter(|l| l.contains("Running") && l.contains(&format!("--crate-name {krate} ")))
        .map(|line| {
            line.split("feature=\"")
                .skip(1)
                .filter_map(|rest| rest.split('"').next())
                .map(str::to_string)
                .collect()
        })
        .collect();
    sets.sort();
    sets
}

/// `crate_features` of every library target in a generated `@crates` package, by target name.
fn generated_features(ws: &Workspace, package_dir: &str) -> Vec<(String, BTreeSet<String>)> {
    let repos = ws.cache_dir().join("rust-crates/repo");
    let build = std::fs::read_dir(&repos)
        .expect("the crates repository")
        .flatten()
        .map(|e| e.path().join(package_dir).join("BUILD.bazel"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("a generated {package_dir}/BUILD.bazel"));
    let text = std::fs::read_to_string(build).expect("read BUILD.bazel");
    let mut out = Vec::new();
    for block in text.split("\nrust_library(").skip(1) {
        let name = block
            .split("name = \"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("name");
        let features = block
            .split("crate_features = [")
            .nth(1)
            .and_then(|r| r.split(']').next())
            .expect("crate_features");
        let set = features
            .split('"')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        out.push((name.to_string(), set));
    }
    out
}

/// The feature sets of the `krate` compiles a Kiln run needed (executed or from the cache).
fn kiln_feature_sets(
    ws: &Workspace,
    events: &[serde_json::Value],
    package_dir: &str,
) -> Vec<BTreeSet<String>> {
    let generated = generated_features(ws, package_dir);
    let prefix = format!("@crates//{package_dir}:");
    let mut sets: Vec<BTreeSet<String>> = events
        .iter()
        .filter(|e| e["type"] == "action" && e["mnemonic"] == "Rustc")
        .filter_map(|e| {
            e["label"]
                .as_str()?
                .strip_prefix(&prefix)
                .map(str::to_string)
        })
        .map(|name| {
            generated
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("`{name}` is a generated library"))
                .1
                .clone()
        })
        .collect();
    sets.sort();
    sets
}

#[test]
fn host_target_and_test_builds_get_cargos_feature_sets() {
    let ws = workspace();
    let (memchr, _) = harness::examples_rust_pin("memchr");
    let (itoa, _) = harness::examples_rust_pin("itoa");
    let memchr_dir = format!("memchr-{memchr}");
    let itoa_dir = format!("itoa-{itoa}");

    let build = ws.kiln(&["build", "//app:app"]);
    build.ok();
    let cargo_build = cargo_feature_sets(&ws, "memchr", &["build", "--lib"]);
    assert_eq!(
        cargo_build.len(),
        2,
        "cargo builds memchr for host and target"
    );
    assert_eq!(
        kiln_feature_sets(&ws, &build.events, &memchr_dir),
        cargo_build
    );
    // `libc` (asked for only by the dev-dependency) is in no build of `kiln build`.
    assert!(cargo_build.iter().all(|s| !s.contains("libc")));
    // itoa: the same features on both sides, so one build, as cargo.
    let itoa_cargo = cargo_feature_sets(&ws, "itoa", &["build", "--lib"]);
    assert_eq!(itoa_cargo.len(), 1);
    assert_eq!(kiln_feature_sets(&ws, &build.events, &itoa_dir), itoa_cargo);
    assert!(generated_features(&ws, &itoa_dir).len() == 1);

    let test = ws.kiln(&["test", "//app:app_test", "//app:integ_test"]);
    test.ok();
    let cargo_test = cargo_feature_sets(&ws, "memchr", &["test", "--no-run"]);
    assert!(cargo_test.iter().any(|s| s.contains("libc")));
    assert_eq!(
        kiln_feature_sets(&ws, &test.events, &memchr_dir),
        cargo_test
    );

    // Nothing of the test build leaks into the normal one: building again does nothing.
    let again = ws.kiln(&["build", "//app:app"]);
    again.ok();
    assert_eq!(again.executed(), Vec::<(String, String)>::new());
}
