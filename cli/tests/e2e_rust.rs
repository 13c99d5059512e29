//! End-to-end Rust rules on the real rustc: build scripts (cfg, env, generated file, a C library
//! built with `CC`, `DEP_<links>_*` for dependents, cargo's environment and working `RUSTC`,
//! `RUSTC_LINKER` and `CXX` in each compilation mode), incremental rebuilds after a leaf edit,
//! rendered compile errors, `--test_filter`/`--test_arg` reaching libtest, reproducibility across
//! checkout directories, and a pinned toolchain that is not installed.

mod harness;

use harness::Workspace;

/// A library with a build script that compiles C with `$CC`, links it statically from `OUT_DIR`,
/// sets a cfg and an env var, generates a source file and publishes metadata (`links`): a value
/// and a header directory in its `OUT_DIR`; and a binary whose own build script reads that
/// metadata as `DEP_NATIVE_ANSWER` and compiles C against `DEP_NATIVE_INCLUDE`, as the
/// dependents of `libz-sys` or `openssl-sys` do.
fn build_script_workspace() -> Workspace {
    let ws = Workspace::new();
    ws.write(
        "native/BUILD.bazel",
        r#"
load("@rules_rust//rust:defs.bzl", "rust_library")
load("@rules_rust//cargo:defs.bzl", "cargo_build_script")

cargo_build_script(
    name = "native_bs",
    srcs = ["build.rs"],
    data = ["ffi.c", "triple.c"],
    links = "native",
    crate_features = ["fancy"],
    version = "2.1.0",
)

rust_library(
    name = "native",
    srcs = ["lib.rs"],
    crate_features = ["fancy"],
    version = "2.1.0",
    deps = [":native_bs"],
    visibility = ["//visibility:public"],
)
"#,
    )
    .write(
        "native/build.rs",
        r##"
use std::process::Command;

fn main() {
    let out = std::env::var("OUT_DIR").unwrap();
    let cc = std::env::var("CC").unwrap();
    let ar = std::env::var("AR").unwrap();
    let ok = Command::new(&cc).args(["-c", "ffi.c", "-o"]).arg(format!("{out}/ffi.o")).status().unwrap();
    assert!(ok.success());
    let ok = Command::new(&ar).arg("crs").arg(format!("{out}/libffi.a")).arg(format!("{out}/ffi.o")).status().unwrap();
    assert!(ok.success());
    // A library linked by name only (no `static=`) is not bundled into the rlib: the final
    // link of every dependent needs this OUT_DIR on its search path.
    let ok = Command::new(&cc).args(["-c", "triple.c", "-o"]).arg(format!("{out}/triple.o")).status().unwrap();
    assert!(ok.success());
    let ok = Command::new(&ar).arg("crs").arg(format!("{out}/libtriple.a")).arg(format!("{out}/triple.o")).status().unwrap();
    assert!(ok.success());
    println!("cargo:rustc-link-search=native={out}");
    println!("cargo:rustc-link-lib=static=ffi");
    println!("cargo:rustc-link-lib=triple");
    println!("cargo::rustc-check-cfg=cfg(native_fancy)");
    if std::env::var("CARGO_FEATURE_FANCY").is_ok() {
        println!("cargo::rustc-cfg=native_fancy");
    }
    let target = std::env::var("TARGET").unwrap();
    println!("cargo:rustc-env=NATIVE_TARGET={target}");
    let version = std::env::var("CARGO_PKG_VERSION").unwrap();
    std::fs::write(format!("{out}/gen.rs"), format!("pub const VERSION: &str = {version:?};\n")).unwrap();
    println!("cargo:answer=42");
    std::fs::create_dir_all(format!("{out}/include")).unwrap();
    std::fs::write(format!("{out}/include/native.h"), "#define NATIVE_MAGIC 7\n").unwrap();
    println!("cargo:include={out}/include");
}
"##,
    )
    .write("native/ffi.c", "int ffi_double(int x) { return 2 * x; }\n")
    .write("native/triple.c", "int ffi_triple(int x) { return 3 * x; }\n")
    .write(
        "app/include_dir.rs",
        "fn main() { println!(\"{}\", env!(\"NATIVE_INCLUDE_DIR\")); }\n",
    )
    .write(
        "app/magic.c",
        "#include <native.h>\nint magic(void) { return NATIVE_MAGIC; }\n",
    )
    .write(
        "native/lib.rs",
        r#"
include!(concat!(env!("OUT_DIR"), "/gen.rs"));

extern "C" {
    fn ffi_double(x: i32) -> i32;
    fn ffi_triple(x: i32) -> i32;
}

pub fn triple(x: i32) -> i32 {
    // SAFETY: ffi_triple is a pure C function of an int.
    unsafe { ffi_triple(x) }
}

pub fn double(x: i32) -> i32 {
    // SAFETY: ffi_double is a pure C function of an int.
    unsafe { ffi_double(x) }
}

pub const TARGET: &str = env!("NATIVE_TARGET");

pub fn fancy() -> bool {
    cfg!(native_fancy)
}
"#,
    )
    .write(
        "app/BUILD.bazel",
        r#"
load("@rules_rust//rust:defs.bzl", "rust_binary")
load("@rules_rust//cargo:defs.bzl", "cargo_build_script")

cargo_build_script(
    name = "app_bs",
    srcs = ["build.rs"],
    data = ["magic.c"],
    link_deps = ["//native"],
)

rust_binary(
    name = "app",
    srcs = ["main.rs"],
    deps = ["//native", ":app_bs"],
)

rust_binary(
    name = "include_dir",
    srcs = ["include_dir.rs"],
    deps = [":app_bs"],
)
"#,
    )
    .write(
        "app/build.rs",
        r#"
use std::process::Command;

fn main() {
    let answer = std::env::var("DEP_NATIVE_ANSWER").expect("DEP_NATIVE_ANSWER from native's build script");
    println!("cargo:rustc-env=ANSWER_FROM_DEP={answer}");
    let include = std::env::var("DEP_NATIVE_INCLUDE").expect("DEP_NATIVE_INCLUDE");
    assert!(include.starts_with('/'), "{include}");
    let header = std::fs::read_to_string(format!("{include}/native.h")).expect("the dependency's header");
    let magic = header.trim().rsplit(' ').next().unwrap();
    println!("cargo:rustc-env=MAGIC_FROM_DEP_HEADER={magic}");
    // The C compiler finds it too.
    let cc = std::env::var("CC").unwrap();
    let ok = Command::new(&cc).args(["-fsyntax-only", "-I", &include, "magic.c"]).status().unwrap();
    assert!(ok.success(), "{cc} could not include native.h from {include}");
    // Recorded output names the dependency's OUT_DIR where the dependency wrote it.
    println!("cargo:rustc-env=NATIVE_INCLUDE_DIR={include}");
}
"#,
    )
    .write(
        "app/main.rs",
        r#"
fn main() {
    println!(
        "double={} triple={} version={} target={} fancy={} answer={} magic={}",
        native::double(21),
        native::triple(21),
        native::VERSION,
        native::TARGET,
        native::fancy(),
        env!("ANSWER_FROM_DEP"),
        env!("MAGIC_FROM_DEP_HEADER"),
    );
}
"#,
    );
    ws
}

fn host_triple() -> String {
    #[allow(clippy::disallowed_methods)] // The test asks the real rustc.
    let out = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc -vV");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("host line")
}

#[test]
fn build_script_cfg_env_generated_file_native_lib_and_dep_metadata_reach_the_crates() {
    let ws = build_script_workspace();
    let out = ws.kiln(&["run", "//app"]);
    out.ok();
    assert_eq!(
        out.stdout.trim(),
        format!(
            "double=42 triple=63 version=2.1.0 target={} fancy=true answer=42 magic=7",
            host_triple()
        )
    );
    let include_dir = ws.kiln(&["run", "//app:include_dir"]);
    include_dir.ok();
    assert!(
        include_dir
            .stdout
            .trim()
            .ends_with("/kiln-out/bin/native/native_bs.out_dir/include"),
        "what the dependent script wrote names the dependency's OUT_DIR: {}",
        include_dir.stdout
    );
}

#[test]
fn reproducible_across_checkout_directories_with_separate_caches() {
    let one = build_script_workspace();
    let two = one.copy_to(false);
    assert_ne!(one.cache_dir(), two.cache_dir());
    for ws in [&one, &two] {
        ws.kiln(&["build", "-c", "dbg", "//..."]).ok();
    }
    let (a, b) = (one.outputs(), two.outputs());
    assert!(a.keys().any(|k| k.ends_with(".rlib")), "{:?}", a.keys());
    assert!(a.contains_key("app/app"), "{:?}", a.keys());
    // No output may name the checkout or the host's sysroot (the sandbox mounts it elsewhere).
    let sysroot = sysroot();
    harness::assert_identical_outputs((&one, &a), (&two, &b), &[sysroot.as_str()]);
}

fn sysroot() -> String {
    #[allow(clippy::disallowed_methods)] // The test asks the real rustc.
    let out = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .expect("rustc --print sysroot");
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(sysroot.len() > 1, "sysroot {sysroot:?}");
    sysroot
}

fn chain_workspace() -> Workspace {
    let ws = Workspace::new();
    let lib = |dir: &str, deps: &str, body: &str| {
        ws.write(
            &format!("{dir}/BUILD.bazel"),
            &format!(
                "load(\"@rules_rust//rust:defs.bzl\", \"rust_library\")\n\
                 rust_library(name = \"{dir}\", srcs = [\"lib.rs\"], deps = [{deps}], visibility = [\"//visibility:public\"])\n"
            ),
        );
        ws.write(&format!("{dir}/lib.rs"), body);
    };
    lib("leaf", "", "pub fn value() -> u32 { 1 }\n");
    lib(
        "middle",
        "\"//leaf\"",
        "pub fn value() -> u32 { leaf::value() + 10 }\n",
    );
    lib("other", "", "pub fn value() -> u32 { 100 }\n");
    ws.write(
        "app/BUILD.bazel",
        "load(\"@rules_rust//rust:defs.bzl\", \"rust_binary\")\n\
         rust_binary(name = \"app\", srcs = [\"main.rs\"], deps = [\"//middle\", \"//other\"])\n",
    )
    .write(
        "app/main.rs",
        "fn main() { println!(\"{}\", middle::value() + other::value()); }\n",
    );
    ws
}

#[test]
fn a_leaf_edit_rebuilds_only_the_leaf_and_its_dependents() {
    let ws = chain_workspace();
    let first = ws.kiln(&["run", "//app"]);
    first.ok();
    assert_eq!(first.stdout.trim(), "111");
    assert!(ws.kiln(&["build", "//..."]).executed().is_empty());

    ws.write("leaf/lib.rs", "pub fn value() -> u32 { 2 }\n");
    let out = ws.kiln(&["build", "//..."]);
    out.ok();
    let executed = out.executed();
    let rustc: Vec<&str> = executed
        .iter()
        .filter(|(_, m)| m == "Rustc")
        .map(|(l, _)| l.as_str())
        .collect();
    assert_eq!(rustc, ["//app:app", "//leaf:leaf", "//middle:middle"]);
    assert_eq!(executed.len(), 3, "{executed:?}");
    assert_eq!(ws.kiln(&["run", "//app"]).stdout.trim(), "112");
}

#[test]
fn compile_errors_are_rendered_text_and_fail_the_build() {
    let ws = chain_workspace();
    ws.write("leaf/lib.rs", "pub fn value() -> u32 { \"one\" }\n");
    let out = ws.kiln(&["build", "//leaf"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("error[E0308]: mismatched types"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("leaf/lib.rs:1:"), "{}", out.stderr);
    assert!(!out.stderr.contains("$message_type"), "{}", out.stderr);
}

#[test]
fn unsupported_rules_rust_attributes_are_errors_naming_the_attribute() {
    let ws = chain_workspace();
    ws.write("leaf/env.txt", "A=1\n");
    for (attr, value) in [
        ("rustc_env_files", "[\"env.txt\"]"),
        ("lint_config", "\"env.txt\""),
        ("crate_type", "\"cdylib\""),
    ] {
        ws.write(
            "leaf/BUILD.bazel",
            &format!(
                "load(\"@rules_rust//rust:defs.bzl\", \"rust_library\")\n\
                 rust_library(name = \"leaf\", srcs = [\"lib.rs\"], {attr} = {value})\n"
            ),
        );
        let out = ws.kiln(&["build", "//leaf"]);
        out.expect_code(1);
        assert!(
            out.stderr.contains(&format!("`{attr}")),
            "{attr}: {}",
            out.stderr
        );
        assert!(out.executed().is_empty(), "{:?}", out.executed());
    }
    // The rule's own crate type is what it builds anyway.
    ws.write(
        "leaf/BUILD.bazel",
        "load(\"@rules_rust//rust:defs.bzl\", \"rust_library\")\n\
         rust_library(name = \"leaf\", srcs = [\"lib.rs\"], crate_type = \"rlib\")\n",
    );
    ws.kiln(&["build", "//leaf"]).ok();
}

#[test]
fn test_filter_and_test_arg_reach_libtest() {
    let ws = Workspace::new();
    ws.write(
        "t/BUILD.bazel",
        "load(\"@rules_rust//rust:defs.bzl\", \"rust_library\", \"rust_test\")\n\
         rust_library(name = \"lib\", srcs = [\"lib.rs\"])\n\
         rust_test(name = \"unit\", crate = \":lib\")\n",
    )
    .write(
        "t/lib.rs",
        "pub fn one() -> u32 { 1 }\n\
         #[cfg(test)]\nmod tests {\n\
         #[test] fn alpha() { assert_eq!(super::one(), 1); }\n\
         #[test] fn beta() { assert_eq!(super::one(), 1); }\n\
         #[test] #[ignore] fn gamma() { assert_eq!(super::one(), 1); }\n}\n",
    );
    let log = || ws.read("kiln-out/testlogs/t/unit/test.log");
    let first = ws.kiln(&["test", "//t:unit"]);
    first.ok();
    assert_eq!(harness::tests(&first.events)[0]["cached"], false);
    assert!(log().contains("test tests::beta ... ok"), "{}", log());
    assert!(log().contains("test tests::gamma ... ignored"), "{}", log());
    // Unchanged: the result comes from the cache, log included.
    let again = ws.kiln(&["test", "//t:unit"]);
    again.ok();
    assert_eq!(harness::tests(&again.events)[0]["cached"], true);
    assert!(log().contains("test tests::beta ... ok"), "{}", log());

    ws.kiln(&["test", "//t:unit", "--test_filter=alpha"]).ok();
    assert!(log().contains("test tests::alpha ... ok"), "{}", log());
    assert!(!log().contains("beta"), "{}", log());

    ws.kiln(&["test", "//t:unit", "--test_arg=--include-ignored"])
        .ok();
    assert!(log().contains("test tests::gamma ... ok"), "{}", log());

    ws.write(
        "t/lib.rs",
        &ws.read("t/lib.rs").replace(
            "one(), 1); }\n#[test] fn beta",
            "one(), 2); }\n#[test] fn beta",
        ),
    );
    let failed = ws.kiln(&["test", "//t:unit"]);
    failed.expect_code(3);
    assert!(log().contains("test tests::alpha ... FAILED"), "{}", log());
}

#[test]
fn a_pinned_toolchain_that_is_not_installed_is_exit_code_36() {
    let ws = chain_workspace();
    ws.write("kiln.toml", "[rust]\nversion = \"1.31.0\"\n");
    let out = ws.kiln(&["build", "//leaf"]);
    out.expect_code(36);
    assert!(
        out.stderr.contains("rustup toolchain install 1.31.0"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_pin_that_a_non_rustup_rustc_on_path_cannot_honour_is_exit_code_36() {
    // A compiler outside rustup's toolchains (as a distribution installs one) ignores
    // RUSTUP_TOOLCHAIN: a copy of the real driver whose sysroot is a directory of our own.
    // rustc finds its sysroot from where its driver library really is, so the files are hard
    // links (copies across file systems), and only `lib/rustlib` is a symlink.
    let real = std::path::PathBuf::from(sysroot());
    let fake = tempfile::tempdir().unwrap();
    let place = |from: &std::path::Path, to: &std::path::Path| {
        if std::fs::hard_link(from, to).is_err() {
            std::fs::copy(from, to).unwrap();
        }
    };
    for dir in ["bin", "lib"] {
        std::fs::create_dir(fake.path().join(dir)).unwrap();
    }
    place(&real.join("bin/rustc"), &fake.path().join("bin/rustc"));
    for entry in std::fs::read_dir(real.join("lib")).unwrap().flatten() {
        let to = fake.path().join("lib").join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::os::unix::fs::symlink(entry.path(), &to).unwrap();
        } else {
            place(&entry.path(), &to);
        }
    }
    let path = format!(
        "{}:{}",
        fake.path().join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let ws = chain_workspace();
    ws.write("kiln.toml", "[rust]\nversion = \"1.31.0\"\n");
    let out = ws
        .command(&["build", "//leaf"])
        .env("PATH", &path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(36), "{stderr}");
    assert!(
        stderr.contains("`1.31.0` is pinned in kiln.toml")
            && stderr.contains("is not rustup's")
            && stderr.contains(&fake.path().join("bin/rustc").display().to_string()),
        "{stderr}"
    );
}

#[test]
fn a_dependent_library_starts_on_the_rmeta_before_codegen_ends() {
    // Pipelining: `mid` compiles against `leaf`'s `.rmeta`, which rustc announces before its long
    // optimised codegen of many functions; `mid` starts (and here also finishes) in that window.
    let ws = Workspace::new();
    let functions: String = (0..800)
        .map(|i| {
            format!(
                "#[inline(never)] pub fn f{i}(x: u64) -> u64 {{ let mut v = x ^ {i}; \
                 for k in 0..(x % 7) {{ v = v.wrapping_mul({}).rotate_left((k as u32) % 13) ^ {i}; }} v }}\n",
                i * 2 + 1
            )
        })
        .collect();
    ws.write("leaf/lib.rs", &format!("{functions}pub fn value() -> u64 {{ f1(3) }}\n"))
        .write(
            "leaf/BUILD.bazel",
            "load(\"@rules_rust//rust:defs.bzl\", \"rust_library\")\n\
             rust_library(name = \"leaf\", srcs = [\"lib.rs\"], visibility = [\"//visibility:public\"])\n",
        )
        .write("mid/lib.rs", "pub fn value() -> u64 { leaf::value() + 1 }\n")
        .write(
            "mid/BUILD.bazel",
            "load(\"@rules_rust//rust:defs.bzl\", \"rust_library\")\n\
             rust_library(name = \"mid\", srcs = [\"lib.rs\"], deps = [\"//leaf\"])\n",
        );
    let out = ws.kiln(&["build", "-c", "opt", "--jobs=2", "//mid"]);
    out.ok();
    let position = |kind: &str, label: &str| {
        out.events
            .iter()
            .position(|e| e["type"] == kind && e["label"] == label && e["mnemonic"] == "Rustc")
            .unwrap_or_else(|| panic!("no {kind} event for {label}: {:?}", out.events))
    };
    assert!(
        position("action_started", "//mid:mid") < position("action", "//leaf:leaf"),
        "{:#?}",
        out.events
    );
}

/// `rust_static_library` (linked into a C program by a genrule), `rustc_env`, `rustc_flags`,
/// `compile_data` and a `rust_test` reading a `data` file from its runfiles.
#[test]
fn static_library_rustc_env_rustc_flags_compile_data_and_test_data_work() {
    let ws = Workspace::new();
    ws.write(
        "s/BUILD.bazel",
        r#"
load("@rules_rust//rust:defs.bzl", "rust_binary", "rust_static_library", "rust_test")

rust_static_library(
    name = "add",
    srcs = ["add.rs"],
)

genrule(
    name = "c_prog",
    srcs = ["main.c", ":add"],
    outs = ["c_prog.out"],
    cmd = "cc $(location main.c) $(location :add) -o $(@D)/c_prog -lpthread -ldl -lm && $(@D)/c_prog > $@",
)

rust_binary(
    name = "flags",
    srcs = ["flags.rs"],
    rustc_env = {"GREETING": "hello from rustc_env"},
    rustc_flags = ["--cfg=kiln_flagged"],
    compile_data = ["words.txt"],
)

rust_test(
    name = "reads_data",
    srcs = ["reads_data.rs"],
    data = ["fixture.txt"],
)
"#,
    )
    .write(
        "s/add.rs",
        "#[no_mangle]\npub extern \"C\" fn kiln_add(a: i32, b: i32) -> i32 { a + b }\n",
    )
    .write(
        "s/main.c",
        "#include <stdio.h>\nint kiln_add(int, int);\nint main(void) { printf(\"%d\\n\", kiln_add(2, 3)); return 0; }\n",
    )
    .write(
        "s/flags.rs",
        r#"
#![allow(unexpected_cfgs)]
const WORDS: &str = include_str!("words.txt");
fn main() {
    let flagged = cfg!(kiln_flagged);
    println!("{} | {} | flagged={flagged}", env!("GREETING"), WORDS.trim());
}
"#,
    )
    .write("s/words.txt", "compile data\n")
    .write(
        "s/reads_data.rs",
        r#"
#[test]
fn fixture_is_in_the_runfiles() {
    // The working directory is the workspace's runfiles root, as under Bazel.
    let text = std::fs::read_to_string("s/fixture.txt").unwrap();
    assert_eq!(text, "runfile\n");
    let srcdir = std::env::var("TEST_SRCDIR").unwrap();
    assert!(std::path::Path::new(&srcdir).is_dir(), "{srcdir}");
}
"#,
    )
    .write("s/fixture.txt", "runfile\n");
    ws.kiln(&["build", "//s:c_prog", "//s:add"]).ok();
    let archive = std::fs::read(ws.out_path("s/libadd.a")).expect("libadd.a");
    assert!(archive.starts_with(b"!<arch>\n"), "an ar archive");
    // A C program linked against it (in the genrule) calls into Rust.
    assert_eq!(ws.read_out("s/c_prog.out"), "5\n");

    let out = ws.kiln(&["run", "//s:flags"]);
    out.ok();
    assert_eq!(
        out.stdout.trim(),
        "hello from rustc_env | compile data | flagged=true"
    );
    // compile_data is an input of the compile: editing it rebuilds.
    ws.write("s/words.txt", "edited data\n");
    let out = ws.kiln(&["run", "//s:flags"]);
    out.ok();
    assert_eq!(
        out.stdout.trim(),
        "hello from rustc_env | edited data | flagged=true"
    );

    let test = ws.kiln(&["test", "//s:reads_data"]);
    test.ok();
    let log = ws.read("kiln-out/testlogs/s/reads_data/test.log");
    assert!(log.contains("fixture_is_in_the_runfiles ... ok"), "{log}");
    // The data file is part of what the cached result rests on.
    ws.write("s/fixture.txt", "changed\n");
    ws.kiln(&["test", "//s:reads_data"]).expect_code(3);
}

/// A build script that reports the environment cargo documents for build scripts and uses the
/// tools it names: `RUSTC` runs, `RUSTC_LINKER` links, `CXX` compiles C++.
fn build_script_env_workspace() -> Workspace {
    let ws = Workspace::new();
    ws.write(
        "probe/BUILD.bazel",
        r#"
load("@rules_rust//rust:defs.bzl", "rust_binary")
load("@rules_rust//cargo:defs.bzl", "cargo_build_script")

cargo_build_script(
    name = "probe_bs",
    srcs = ["build.rs"],
    data = ["twice.cc"],
    links = "probe",
    rustc_flags = ["--cfg=probe_flag", "-Cdebug-assertions=on"],
)

rust_binary(
    name = "probe",
    srcs = ["main.rs"],
    deps = [":probe_bs"],
)
"#,
    )
    .write(
        "probe/build.rs",
        r#"
use std::process::Command;

fn var(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("{key} is not set"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn main() {
    let out = var("OUT_DIR");
    let mut report = String::new();
    for key in [
        "CARGO_MANIFEST_LINKS", "CARGO_ENCODED_RUSTFLAGS", "HOST", "TARGET", "PROFILE",
        "OPT_LEVEL", "DEBUG", "NUM_JOBS",
    ] {
        report.push_str(&format!("{key}={:?}\n", var(key)));
    }
    for key in ["CARGO_CFG_TARGET_OS", "CARGO_CFG_TARGET_POINTER_WIDTH", "CARGO_CFG_UNIX", "CFLAGS"] {
        report.push_str(&format!("{key}={:?}\n", var(key)));
    }
    let assertions = std::env::var("CARGO_CFG_DEBUG_ASSERTIONS").is_ok();
    report.push_str(&format!("debug_assertions={assertions}\n"));
    for key in ["RUSTC", "RUSTC_LINKER", "CXX", "OUT_DIR", "CARGO_MANIFEST_DIR"] {
        report.push_str(&format!("path {key}={}\n", var(key)));
    }
    // RUSTC is a working compiler that knows its own sysroot.
    let version = run(Command::new(var("RUSTC")).arg("-vV"));
    let host = version.lines().find_map(|l| l.strip_prefix("host: ")).unwrap_or("?");
    report.push_str(&format!("rustc host={host}\n"));
    std::fs::write(format!("{out}/probe.rs"), "fn main() { println!(\"probed\"); }\n").unwrap();
    run(Command::new(var("RUSTC"))
        .arg(format!("{out}/probe.rs"))
        .arg("-o")
        .arg(format!("{out}/probe"))
        .arg(format!("-Clinker={}", var("RUSTC_LINKER"))));
    report.push_str(&format!("probe says {}", run(&mut Command::new(format!("{out}/probe")))));
    // CXX compiles and links C++.
    run(Command::new(var("CXX")).arg("twice.cc").arg("-o").arg(format!("{out}/twice")));
    report.push_str(&format!("c++ says {}", run(&mut Command::new(format!("{out}/twice")))));
    std::fs::write(format!("{out}/report.txt"), report).unwrap();
}
"#,
    )
    .write(
        "probe/twice.cc",
        "#include <iostream>\nint main() { std::cout << 2 * 21 << std::endl; return 0; }\n",
    )
    .write(
        "probe/main.rs",
        "fn main() { print!(\"{}\", include_str!(concat!(env!(\"OUT_DIR\"), \"/report.txt\"))); }\n",
    );
    ws
}

/// The variables of cargo's build-script environment that the other tests do not read, in each
/// compilation mode, with every path inside the sandbox rather than the checkout.
#[test]
fn build_scripts_get_cargos_environment_and_working_tools() {
    let ws = build_script_env_workspace();
    let host = host_triple();
    let checkout = ws.root().to_string_lossy().into_owned();
    for (mode, profile, opt_level, debug) in [
        ("fastbuild", "debug", "0", "false"),
        ("dbg", "debug", "0", "true"),
        ("opt", "release", "3", "false"),
    ] {
        let out = ws.kiln(&["run", "-c", mode, "//probe"]);
        out.ok();
        let report = out.stdout.clone();
        let expected = format!(
            "CARGO_MANIFEST_LINKS=\"probe\"\n\
             CARGO_ENCODED_RUSTFLAGS=\"--cfg=probe_flag\\u{{1f}}-Cdebug-assertions=on\"\n\
             HOST={host:?}\n\
             TARGET={host:?}\n\
             PROFILE={profile:?}\n\
             OPT_LEVEL={opt_level:?}\n\
             DEBUG={debug:?}\n\
             NUM_JOBS=\"1\"\n"
        );
        assert!(
            report.starts_with(&expected),
            "-c {mode}: expected\n{expected}\ngot\n{report}"
        );
        // cargo's profiles: debug assertions in dev builds, not in release ones.
        let cfg = format!(
            "CARGO_CFG_TARGET_OS=\"linux\"\n\
             CARGO_CFG_TARGET_POINTER_WIDTH=\"64\"\n\
             CARGO_CFG_UNIX=\"\"\n\
             CFLAGS=\"\"\n\
             debug_assertions={}\n",
            mode != "opt"
        );
        assert!(
            report.contains(&cfg),
            "-c {mode}: expected\n{cfg}\ngot\n{report}"
        );
        assert!(report.contains(&format!("rustc host={host}\n")), "{report}");
        assert!(report.contains("probe says probed\n"), "{report}");
        assert!(report.contains("c++ says 42\n"), "{report}");
        for line in report.lines().filter(|l| l.starts_with("path ")) {
            let (_, path) = line.split_once('=').expect("key=value");
            assert!(path.starts_with('/'), "{line}: absolute inside the sandbox");
            assert!(!path.contains(&checkout), "{line} names the checkout");
        }
    }
}

/// Unpinned, rustup picks the toolchain from a `rust-toolchain.toml` in any directory above the
/// workspace too: one appearing there must end the no-op replay and reach the toolchain lookup.
#[test]
fn a_toolchain_file_above_the_workspace_is_noticed() {
    let outer = tempfile::tempdir().expect("outer dir");
    let ws = Workspace::in_fixed_dir(outer.path());
    ws.write(
        "leaf/BUILD.bazel",
        "load(\"@rules_rust//rust:defs.bzl\", \"rust_library\")\n\
         rust_library(name = \"leaf\", srcs = [\"lib.rs\"])\n",
    )
    .write("leaf/lib.rs", "pub fn one() -> u32 { 1 }\n");
    ws.kiln(&["build", "//leaf"]).ok();
    let again = ws.kiln(&["build", "//leaf"]);
    again.ok();
    assert!(again.executed().is_empty());
    // A sibling of the workspace (not above it) changes nothing.
    std::fs::write(outer.path().join("notes.txt"), "unrelated\n").expect("write sibling");
    assert!(ws.kiln(&["build", "//leaf"]).executed().is_empty());

    std::fs::write(
        outer.path().join("rust-toolchain.toml"),
        "[toolchain]\nchannel = \"1.31.0\"\n",
    )
    .expect("write toolchain file");
    let out = ws.kiln(&["build", "//leaf"]);
    out.expect_code(36);
    assert!(out.stderr.contains("1.31.0"), "{}", out.stderr);
}

#[test]
fn cargo_pkg_name_is_the_target_name_as_rules_rust_sets_it() {
    let ws = Workspace::new();
    ws.write(
        "tool/BUILD.bazel",
        r#"
load("@rules_rust//rust:defs.bzl", "rust_binary")
rust_binary(name = "my_tool", srcs = ["main.rs"])
"#,
    )
    .write(
        "tool/main.rs",
        r#"fn main() { println!("{} {}", env!("CARGO_PKG_NAME"), env!("CARGO_CRATE_NAME")); }"#,
    );
    let out = ws.kiln(&["run", "//tool:my_tool"]);
    out.ok();
    assert_eq!(out.stdout.trim(), "my_tool my_tool");
}
