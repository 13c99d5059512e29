//! Go rules end to end on the real `go` SDK and the example module (`examples/go`): binaries
//! behave as `go build`'s, `kiln test` agrees with `go test`, body edits recompile one package,
//! go.sum tampering is rejected, builds are reproducible across checkouts, errors are clear.
//!
//! The standard library is compiled once into a cache shared by the tests of this file (they run
//! one at a time: each would otherwise compile it again in parallel on a small machine).

#![allow(clippy::disallowed_methods)] // Tests run `go` and the binaries Kiln built.

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

use harness::{copy_tree, tests, Workspace};

/// Serializes the tests of this file and keeps the warm shared cache alive (under Cargo's
/// target temp directory, emptied at the first use in each run).
fn shared() -> (MutexGuard<'static, ()>, &'static Workspace) {
    static LOCK: Mutex<()> = Mutex::new(());
    static CACHE: OnceLock<Workspace> = OnceLock::new();
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let cache = CACHE.get_or_init(|| {
        Workspace::in_fixed_dir(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e_go-shared"))
    });
    (guard, cache)
}

fn examples_go() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/go")
}

/// A workspace holding a copy of `examples/go` under `go/`, with the examples' `[go]` settings.
fn example_workspace(cache: Option<&Workspace>) -> Workspace {
    let ws = match cache {
        Some(c) => Workspace::sharing_cache(c),
        None => Workspace::new(),
    };
    copy_tree(&examples_go(), &ws.root().join("go"));
    ws.write("kiln.toml", "[go]\ngo_mod = \"go/go.mod\"\n");
    ws
}

/// Runs a command, asserting success, and returns its stdout.
#[track_caller]
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `go` with a private build cache, CGO off and no VCS stamping, in `dir`.
fn go(dir: &Path, gocache: &Path) -> Command {
    let mut cmd = Command::new("go");
    cmd.current_dir(dir)
        .env("CGO_ENABLED", "0")
        .env("GOCACHE", gocache)
        .env("GOFLAGS", "-buildvcs=false -mod=mod")
        .env("GOTOOLCHAIN", "local");
    cmd
}

/// Whether `go test -vet=off .` passes in `dir`.
fn go_test_passes(dir: &Path, gocache: &Path) -> bool {
    go(dir, gocache)
        .args(["test", "-vet=off", "."])
        .output()
        .expect("go test")
        .status
        .success()
}

/// `go version -m` output without its first line (the file name).
fn build_info(go_cmd: Command, binary: &Path) -> String {
    let mut cmd = go_cmd;
    cmd.arg("version").arg("-m").arg(binary);
    run(&mut cmd).lines().skip(1).collect::<Vec<_>>().join("\n")
}

/// Executed compile and link actions as (label, mnemonic), standard library left out.
fn compiles_and_links(events: &[serde_json::Value]) -> Vec<(String, String)> {
    harness::executed(events)
        .into_iter()
        .filter(|(_, m)| m != "GoStdlib")
        .collect()
}

#[test]
fn binaries_behave_as_go_build_and_record_the_same_build_info() {
    let (_guard, cache) = shared();
    let ws = example_workspace(Some(cache));
    ws.kiln(&["build", "//go/cmd/hello", "//go/cmd/wordfreq"])
        .ok();
    let gocache = tempfile::tempdir().unwrap();
    let bin = tempfile::tempdir().unwrap();
    let module = ws.root().join("go");
    // Kiln links with `-s -w` in fastbuild, as rules_go does under Bazel's `--strip=sometimes`.
    run(go(&module, gocache.path())
        .args(["build", "-ldflags=-s -w -X=main.version=1.0", "-o"])
        .arg(bin.path().join("hello"))
        .arg("./cmd/hello"));
    run(go(&module, gocache.path())
        .args(["build", "-ldflags=-s -w", "-o"])
        .arg(bin.path().join("wordfreq"))
        .arg("./cmd/wordfreq"));

    let kiln_hello = ws.out_path("go/cmd/hello/hello");
    for args in [vec![], vec!["Ada"]] {
        let ours = run(Command::new(&kiln_hello).args(&args));
        let theirs = run(Command::new(bin.path().join("hello")).args(&args));
        assert_eq!(ours, theirs);
        assert!(ours.contains("version: 1.0"), "{ours}");
    }
    let text = "the cat and the hat and the bat";
    let feed = |exe: PathBuf| {
        let mut child = Command::new(exe)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
    };
    assert_eq!(
        feed(ws.out_path("go/cmd/wordfreq/wordfreq")),
        feed(bin.path().join("wordfreq"))
    );

    // Module information, the dependency's go.sum hash, DefaultGODEBUG and -ldflags included.
    let ours = build_info(go(&module, gocache.path()), &kiln_hello);
    let theirs = build_info(go(&module, gocache.path()), &bin.path().join("hello"));
    assert_eq!(ours, theirs);
    assert!(
        ours.contains("dep\tgithub.com/google/go-cmp\tv0.6.0\th1:"),
        "{ours}"
    );

    // `-c opt` keeps the symbol table and DWARF: the build information says no `-s -w`, as
    // `go build` without them.
    ws.kiln(&["build", "-c", "opt", "//go/cmd/hello"]).ok();
    run(go(&module, gocache.path())
        .args(["build", "-ldflags=-X=main.version=1.0", "-o"])
        .arg(bin.path().join("hello"))
        .arg("./cmd/hello"));
    let ours = build_info(go(&module, gocache.path()), &kiln_hello);
    let theirs = build_info(go(&module, gocache.path()), &bin.path().join("hello"));
    assert_eq!(ours, theirs);
    assert!(ours.contains("-ldflags=-X=main.version=1.0"), "{ours}");
}

#[test]
fn kiln_test_agrees_with_go_test_including_a_failure() {
    let (_guard, cache) = shared();
    let ws = example_workspace(Some(cache));
    ws.write(
        "go/mathx/broken_test.go",
        "package mathx\n\nimport \"testing\"\n\nfunc TestBroken(t *testing.T) {\n\tif Add(2, 2) != 5 {\n\t\tt.Fatal(\"2+2 is not 5\")\n\t}\n}\n",
    );
    ws.write(
        "go/mathx/BUILD.bazel",
        &std::fs::read_to_string(examples_go().join("mathx/BUILD.bazel"))
            .unwrap()
            .replace(
                "srcs = [\"mathx_test.go\"]",
                "srcs = [\"broken_test.go\", \"mathx_test.go\"]",
            ),
    );
    let out = ws.kiln(&["test", "//go/..."]);
    out.expect_code(3);
    let ours: BTreeMap<String, bool> = tests(&out.events)
        .iter()
        .filter(|t| {
            t["label"].as_str().unwrap().ends_with("_test")
                && !t["label"].as_str().unwrap().starts_with("//go:")
        })
        .map(|t| {
            let label = t["label"].as_str().unwrap();
            let dir = label
                .trim_start_matches("//go/")
                .split(':')
                .next()
                .unwrap()
                .to_string();
            (dir, t["status"] == "PASSED")
        })
        .collect();

    let gocache = tempfile::tempdir().unwrap();
    let output = go(&ws.root().join("go"), gocache.path())
        .args(["test", "-vet=off", "./..."])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    let theirs: BTreeMap<String, bool> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let status = f.next()?;
            let pkg = f.next()?.strip_prefix("example.com/kilnexample/")?;
            match status {
                "ok" => Some((pkg.to_string(), true)),
                "FAIL" => Some((pkg.to_string(), false)),
                _ => None,
            }
        })
        .collect();
    assert_eq!(ours, theirs, "go test said:\n{text}");
    assert_eq!(ours.get("mathx"), Some(&false));
    assert_eq!(ours.get("greet"), Some(&true));

    // greettest imports greet and is pulled in by greet's external test: like `go test`, Kiln
    // recompiles it against the test variant of greet, once, for that test only.
    let variants: Vec<(String, String)> = out
        .events
        .iter()
        .filter(|e| e["type"] == "action" && e["mnemonic"] == "GoCompileVariant")
        .map(|e| {
            (
                e["label"].as_str().unwrap().to_string(),
                e["output"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(variants.len(), 1, "{variants:?}");
    assert_eq!(variants[0].0, "//go/greet:greet_test");
    assert!(
        variants[0]
            .1
            .contains("example.com/kilnexample/greet/greettest"),
        "{variants:?}"
    );

    // A passing test's result is cached: run again, it is not executed.
    let again = ws.kiln(&["test", "//go/greet:greet_test"]);
    again.ok();
    assert!(
        again.stdout.contains("(cached)") || again.stderr.contains("(cached)"),
        "{}{}",
        again.stdout,
        again.stderr
    );
    assert_eq!(harness::executed(&again.events), vec![]);

    // --test_filter maps to -test.run.
    let out = ws.kiln(&[
        "test",
        "//go/greet:greet_test",
        "--test_filter=TestShout",
        "--test_arg=-test.v",
        "--test_output=all",
    ]);
    out.ok();
    assert!(
        out.stdout.contains("--- PASS: TestShout") || out.stderr.contains("--- PASS: TestShout")
    );
    let log = ws.read("kiln-out/testlogs/go/greet/greet_test/test.log");
    assert!(
        log.contains("TestShout") && !log.contains("TestNamesFromTestdata"),
        "{log}"
    );
}

#[test]
fn body_edit_recompiles_one_package_signature_edit_recompiles_importers() {
    let (_guard, cache) = shared();
    let ws = example_workspace(Some(cache));
    // Three binaries: hello (through report) and server import greet; wordfreq does not.
    let target = "//go/cmd/...";
    ws.kiln(&["build", target]).ok();
    let greet = ws.read("go/greet/greet.go");

    // The body of a non-inlinable function: greet recompiles, its export data is unchanged, so
    // no importer recompiles; the binaries that link it re-link, and only those.
    ws.write(
        "go/greet/greet.go",
        &greet.replace(
            "return len(strings.Fields(Hello(name)))",
            "return len(strings.Fields(Hello(name) + \" \"))",
        ),
    );
    let out = ws.kiln(&["build", target]);
    out.ok();
    assert_eq!(
        compiles_and_links(&out.events),
        vec![
            ("//go/cmd/hello:hello".to_string(), "GoLink".to_string()),
            ("//go/cmd/server:server".to_string(), "GoLink".to_string()),
            ("//go/greet:greet".to_string(), "GoCompile".to_string()),
        ]
    );

    // A comment edit that moves no line: greet recompiles to the same export data and the same
    // object, so nothing else runs (the link is cut off too).
    ws.write(
        "go/greet/greet.go",
        &ws.read("go/greet/greet.go")
            .replace("// shout is unexported", "// shout is private,"),
    );
    let out = ws.kiln(&["build", target]);
    out.ok();
    assert_eq!(
        compiles_and_links(&out.events),
        vec![("//go/greet:greet".to_string(), "GoCompile".to_string())]
    );

    // An exported signature: greet and the packages importing it recompile.
    ws.write(
        "go/greet/greet.go",
        &greet.replace(
            "func Words(name string) int {",
            "func Words(name string, _ ...int) int {",
        ),
    );
    let out = ws.kiln(&["build", target]);
    out.ok();
    let labels: BTreeSet<String> = compiles_and_links(&out.events)
        .into_iter()
        .map(|(l, _)| l)
        .collect();
    assert!(labels.contains("//go/greet:greet"), "{labels:?}");
    assert!(labels.contains("//go/report:report"), "{labels:?}");
    assert!(!labels.contains("//go/mathx:mathx"), "{labels:?}");
    assert!(!labels.contains("//go/textdiff:textdiff"), "{labels:?}");

    // Once settled, an unchanged Go workspace is answered from the no-op record (no package is
    // loaded): everything Go analysis read from the host was observed, and only files that exist.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    ws.kiln(&["build", target]).ok();
    let out = ws.kiln(&["build", target]);
    out.ok();
    let replayed = out
        .events
        .iter()
        .find(|e| e["type"] == "planned")
        .is_some_and(|e| e["packages_loaded"] == 0);
    assert!(replayed, "{:?}", out.events);
}

/// A module's `internal/` packages are its own, as cmd/go has it: the generated BUILD files give
/// them Gazelle's `__subpackages__` visibility, so the module's packages use them (the examples'
/// textdiff links go-cmp, whose cmp imports cmp/internal/...) and the main module may not.
#[test]
fn a_modules_internal_packages_are_not_visible_to_the_main_module() {
    let (_guard, cache) = shared();
    let ws = example_workspace(Some(cache));
    ws.kiln(&["build", "//go/textdiff"]).ok();
    ws.write(
        "go/peek/peek.go",
        "package peek\n\nimport \"github.com/google/go-cmp/cmp/internal/value\"\n\nvar _ = value.TypeString\n",
    )
    .write(
        "go/peek/BUILD.bazel",
        "load(\"@io_bazel_rules_go//go:def.bzl\", \"go_library\")\ngo_library(name = \"peek\", srcs = [\"peek.go\"], deps = [\"@com_github_google_go_cmp//cmp/internal/value\"])\n",
    );
    let out = ws.kiln(&["build", "//go/peek"]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("@com_github_google_go_cmp//cmp/internal/value")
            && out
                .stderr
                .contains("is not visible from package `//go/peek`"),
        "{}",
        out.stderr
    );
}

#[test]
fn go_sum_tampering_is_rejected_and_nothing_is_used() {
    let (_guard, cache) = shared();
    let ws = example_workspace(Some(cache));
    let sum = ws.read("go/go.sum");
    let line = sum
        .lines()
        .find(|l| l.starts_with("github.com/google/go-cmp v0.6.0 h1:"))
        .unwrap()
        .to_string();
    let (head, hash) = line.rsplit_once("h1:").unwrap();
    let forged = format!("{head}h1:{}", hash.chars().rev().collect::<String>());
    ws.write("go/go.sum", &sum.replace(&line, &forged));
    let out = ws.kiln(&["build", "//go/textdiff"]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("checksum mismatch for `github.com/google/go-cmp v0.6.0`"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("go.sum:"), "{}", out.stderr);
    assert!(harness::executed(&out.events).is_empty());
}

#[test]
fn reproducible_across_checkout_directories_with_separate_caches() {
    let (_guard, _cache) = shared();
    let one = example_workspace(None);
    let two = example_workspace(None);
    assert_ne!(one.root(), two.root());
    let targets = [
        "build",
        "//go/cmd/hello",
        "//go/cmd/wordfreq",
        "//go/greet",
        "//go/greet:greet_test",
        "//go/mathx",
    ];
    one.kiln(&targets).ok();
    two.kiln(&targets).ok();
    let a = one.outputs();
    let b = two.outputs();
    for output in [
        "go/cmd/hello/hello",
        "go/cmd/wordfreq/wordfreq",
        "go/mathx/mathx.a",
    ] {
        assert!(a.contains_key(output), "{output} missing: {:?}", a.keys());
    }
    assert!(
        a.keys()
            .any(|k| k.starts_with("go/greet/") && k.contains("greet_test")),
        "no test binary: {:?}",
        a.keys()
    );
    // Nor may any output name the host's GOROOT or either cache (the SDK is mounted in the
    // exec root, and archives are compiled with -trimpath).
    let gocache = tempfile::tempdir().unwrap();
    let goroot = run(go(one.root(), gocache.path()).args(["env", "GOROOT"]));
    let goroot = goroot.trim();
    assert!(!goroot.is_empty());
    let caches = [
        one.cache_dir().to_string_lossy().to_string(),
        two.cache_dir().to_string_lossy().to_string(),
    ];
    harness::assert_identical_outputs(
        (&one, &a),
        (&two, &b),
        &[goroot, caches[0].as_str(), caches[1].as_str()],
    );
}

#[test]
fn clear_errors_strict_deps_cgo_and_a_missing_toolchain() {
    let (_guard, cache) = shared();
    let ws = Workspace::sharing_cache(cache);
    ws.write("go.mod", "module example.com/errs\n\ngo 1.22\n")
        .write("util/util.go", "package util\n\nfunc X() int { return 1 }\n")
        .write(
            "util/BUILD.bazel",
            "load(\"@io_bazel_rules_go//go:def.bzl\", \"go_library\")\ngo_library(name = \"util\", srcs = [\"util.go\"], visibility = [\"//visibility:public\"])\n",
        )
        .write(
            "app/app.go",
            "package app\n\nimport (\n\t\"example.com/errs/nothere\"\n\t\"example.com/errs/util\"\n)\n\nvar Y = util.X() + nothere.N\n",
        )
        .write(
            "app/BUILD.bazel",
            "load(\"@io_bazel_rules_go//go:def.bzl\", \"go_library\")\ngo_library(name = \"app\", srcs = [\"app.go\"])\n",
        )
        .write("native/native.go", "package native\n\n// #include <stdio.h>\nimport \"C\"\n")
        .write(
            "native/BUILD.bazel",
            "load(\"@io_bazel_rules_go//go:def.bzl\", \"go_library\")\ngo_library(name = \"native\", srcs = [\"native.go\"])\n",
        );
    let out = ws.kiln(&["build", "//app"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains(
            "app/app.go:5: import `example.com/errs/util` is not provided by `deps`; add `//util:util`, which provides it"
        ) && out.stderr.contains(
            "app/app.go:4: import `example.com/errs/nothere` is not provided by `deps`; `//nothere` has no BUILD file yet; add one with a `go_library` for it (Gazelle would name it `//nothere`) and depend on it"
        ),
        "{}",
        out.stderr
    );
    // A module in a subdirectory of the workspace: the hint names the target its BUILD file
    // really has (not Gazelle's name for it).
    ws.write("nested/go.mod", "module example.com/nested\n\ngo 1.22\n")
        .write("nested/lib/lib.go", "package lib\n\nfunc Z() int { return 2 }\n")
        .write(
            "nested/lib/BUILD.bazel",
            "load(\"@io_bazel_rules_go//go:def.bzl\", \"go_library\")\ngo_library(name = \"go_default_library\", srcs = [\"lib.go\"], importpath = \"example.com/nested/lib\")\n",
        )
        .write(
            "nested/use/use.go",
            "package use\n\nimport \"example.com/nested/lib\"\n\nvar W = lib.Z()\n",
        )
        .write(
            "nested/use/BUILD.bazel",
            "load(\"@io_bazel_rules_go//go:def.bzl\", \"go_library\")\ngo_library(name = \"use\", srcs = [\"use.go\"])\n",
        );
    // A module whose go line asks for a newer Go than the SDK: refused, as `go build` refuses it.
    ws.write("newer/go.mod", "module example.com/newer\n\ngo 1.99.1\n")
        .write("newer/n.go", "package newer\n")
        .write(
            "newer/BUILD.bazel",
            "load(\"@io_bazel_rules_go//go:def.bzl\", \"go_library\")\ngo_library(name = \"newer\", srcs = [\"n.go\"])\n",
        );
    let out = ws.kiln(&["build", "//newer"]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("newer/go.mod` requires go >= 1.99.1, and the Go SDK is go1.")
            && out
                .stderr
                .contains("set `[go] version = \"1.99.1\"` (or later) in kiln.toml"),
        "{}",
        out.stderr
    );
    let out = ws.kiln(&["build", "//nested/use"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains(
            "nested/use/use.go:3: import `example.com/nested/lib` is not provided by `deps`; add `//nested/lib:go_default_library`, which provides it"
        ),
        "{}",
        out.stderr
    );
    let out = ws.kiln(&["build", "//native"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("cannot build without cgo"),
        "{}",
        out.stderr
    );
    // The standard library's internal packages are its own, as cmd/go says.
    ws.write(
        "inner/inner.go",
        "package inner\n\nimport _ \"internal/abi\"\n",
    )
    .write(
        "inner/BUILD.bazel",
        "load(\"@io_bazel_rules_go//go:def.bzl\", \"go_library\")\ngo_library(name = \"inner\", srcs = [\"inner.go\"])\n",
    );
    let out = ws.kiln(&["build", "//inner"]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("inner/inner.go:3: use of internal package `internal/abi` not allowed"),
        "{}",
        out.stderr
    );

    // No `go` on PATH (an empty directory) and no pin: exit 36 with a way out.
    let empty_path = tempfile::tempdir().unwrap();
    let build_without_go = || {
        let out = ws
            .command(&["build", "//util"])
            .env("PATH", empty_path.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(36), "{stderr}");
        stderr
    };
    let stderr = build_without_go();
    assert!(
        stderr.contains("No Go toolchain") && stderr.contains("[go]"),
        "{stderr}"
    );
    // A pin cannot be fetched without a bootstrap `go`: the message says that, not "pin one".
    let config = std::fs::read_to_string(ws.root().join("kiln.toml")).unwrap();
    ws.write(
        "kiln.toml",
        &format!("{config}\n[go]\nversion = \"1.26.0\"\n"),
    );
    let stderr = build_without_go();
    assert!(
        stderr.contains("Go 1.26.0 is pinned in kiln.toml")
            && stderr.contains("needs a bootstrap `go` on PATH")
            && stderr.contains("sdk_sum")
            && !stderr.contains("or pin one"),
        "{stderr}"
    );
}

#[test]
fn pinned_sdk_is_downloaded_verified_and_used() {
    let (_guard, cache) = shared();
    let ws = Workspace::sharing_cache(cache);
    ws.write("go.mod", "module example.com/pinned\n\ngo 1.22\n")
        .write(
            "hello/main.go",
            "package main\n\nimport \"os\"\n\nfunc main() { os.Stdout.WriteString(\"pinned\\n\") }\n",
        )
        .write(
            "hello/BUILD.bazel",
            "load(\"@io_bazel_rules_go//go:def.bzl\", \"go_binary\")\ngo_binary(name = \"hello\", srcs = [\"main.go\"])\n",
        );
    // A pinned hash that does not match: nothing is used.
    ws.write(
        "kiln.toml",
        "[go]\nversion = \"1.25.5\"\nsdk_sum = \"h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\n",
    );
    let out = ws.kiln(&["build", "//hello"]);
    out.expect_code(36);
    assert!(out.stderr.contains("kiln.toml pins"), "{}", out.stderr);

    ws.write("kiln.toml", "[go]\nversion = \"1.25.5\"\n");
    ws.kiln(&["build", "//hello"]).ok();
    let exe = ws.out_path("hello/hello");
    assert_eq!(run(&mut Command::new(&exe)), "pinned\n");
    let version = run(Command::new("go").arg("version").arg(&exe));
    assert!(version.contains("go1.25.5"), "{version}");
    // Stored content-addressed, with executable bits restored.
    let sdk_dir = stored_sdk(&ws);
    use std::os::unix::fs::PermissionsExt;
    for tool in ["go/bin/go", "go/pkg/tool/linux_amd64/compile"] {
        let mode = std::fs::metadata(sdk_dir.join(tool))
            .unwrap()
            .permissions()
            .mode();
        assert!(mode & 0o111 != 0, "{tool} is not executable");
    }
}

/// The directory of the SDK Kiln stored in the workspace's cache (`go/sdk/<hash>`).
fn stored_sdk(ws: &Workspace) -> std::path::PathBuf {
    std::fs::read_dir(ws.cache_dir().join("go/sdk"))
        .expect("the SDK store")
        .flatten()
        .find(|e| e.path().join("go/bin/go").is_file())
        .expect("stored SDK")
        .path()
}

/// The `h1:` hash of `golang.org/toolchain@v0.0.1-go1.25.5.linux-amd64` in the checksum database.
const GO_1_25_5_LINUX_AMD64_SUM: &str = "h1:IkknVKy/4hLMR+ZwWfP4Oqhjz2sKqNtEXz1meP8P3Nc=";

/// Without any `go` on PATH, a pinned `sdk_sum` is enough: Kiln fetches the toolchain module from
/// GOPROXY itself, checks the hash (a wrong one is refused and nothing is kept), extracts it with
/// executable bits and builds with it.
#[test]
fn pinned_sdk_is_fetched_without_a_local_go() {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        return; // the pinned hash is linux-amd64's
    }
    let ws = Workspace::new();
    ws.write("go.mod", "module example.com/nogo\n\ngo 1.22\n")
        .write(
            "hello/main.go",
            "package main\n\nimport \"os\"\n\nfunc main() { os.Stdout.WriteString(\"fetched\\n\") }\n",
        )
        .write(
            "hello/BUILD.bazel",
            "load(\"@io_bazel_rules_go//go:def.bzl\", \"go_binary\")\ngo_binary(name = \"hello\", srcs = [\"main.go\"])\n",
        );
    let empty_path = tempfile::tempdir().unwrap();
    let build_without_go = || {
        let out = ws
            .command(&["build", "//hello"])
            .env("PATH", empty_path.path())
            .env_remove("GOPROXY")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    ws.write(
        "kiln.toml",
        "[go]\nversion = \"1.25.5\"\nsdk_sum = \"h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\n",
    );
    let (code, stderr) = build_without_go();
    assert_eq!(code, Some(36), "{stderr}");
    assert!(
        stderr.contains("kiln.toml pins") && stderr.contains(GO_1_25_5_LINUX_AMD64_SUM),
        "{stderr}"
    );
    let kept = std::fs::read_dir(ws.cache_dir().join("go/sdk"))
        .map(|d| d.flatten().count())
        .unwrap_or(0);
    assert_eq!(kept, 0, "a refused SDK leaves nothing in the store");

    ws.write(
        "kiln.toml",
        &format!("[go]\nversion = \"1.25.5\"\nsdk_sum = \"{GO_1_25_5_LINUX_AMD64_SUM}\"\n"),
    );
    let (code, stderr) = build_without_go();
    assert_eq!(code, Some(0), "{stderr}");
    let exe = ws.out_path("hello/hello");
    assert_eq!(run(&mut Command::new(&exe)), "fetched\n");
    let version = run(Command::new("go").arg("version").arg(&exe));
    assert!(version.contains("go1.25.5"), "{version}");
    let sdk_dir = stored_sdk(&ws);
    use std::os::unix::fs::PermissionsExt;
    for (file, executable) in [
        ("go/bin/go", true),
        ("go/pkg/tool/linux_amd64/link", true),
        ("go/src/fmt/print.go", false),
    ] {
        let mode = std::fs::metadata(sdk_dir.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111 != 0, executable, "{file}: {mode:o}");
        assert_eq!(mode & 0o222, 0, "{file} is read-only in the store");
    }
}

/// `go build`'s binary for the workspace's `//:app` (`-s -w`, as Kiln links in fastbuild), with
/// `goflags`; returns its output and its build information.
fn go_build_app_as_kiln_links(ws: &Workspace, goflags: &str) -> (String, String) {
    let gocache = tempfile::tempdir().unwrap();
    let bin = tempfile::tempdir().unwrap();
    let exe = bin.path().join("app");
    run(go(ws.root(), gocache.path())
        .env("GOFLAGS", goflags)
        .args(["build", "-ldflags=-s -w", "-o"])
        .arg(&exe)
        .arg("."));
    (
        run(&mut Command::new(&exe)),
        build_info(go(ws.root(), gocache.path()), &exe),
    )
}

#[test]
fn local_replace_and_vendor_directories_supply_modules() {
    let (_guard, cache) = shared();
    let ws = Workspace::sharing_cache(cache);
    let sum = std::fs::read_to_string(examples_go().join("go.sum")).unwrap();
    ws.write(
        "go.mod",
        "module example.com/app\n\ngo 1.22\n\nrequire (\n\tgithub.com/google/go-cmp v0.6.0\n\texample.com/local v0.0.0\n)\n\nreplace example.com/local => ./third_party/local\n",
    )
    .write("go.sum", &sum)
    .write("third_party/local/go.mod", "module example.com/local\n\ngo 1.21\n")
    .write(
        "third_party/local/local.go",
        "package local\n\n// Name is the local module's name.\nfunc Name() string { return \"local\" }\n",
    )
    // The module's own language version: type parameters need go1.18, and before go1.22 a
    // loop's closures share one variable (the main module, at 1.22, would print [0 1 2]).
    .write(
        "third_party/local/lang.go",
        "package local\n\n// Max needs go1.18.\nfunc Max[T int | string](a, b T) T {\n\tif a > b {\n\t\treturn a\n\t}\n\treturn b\n}\n\n// Captured shows the loop variable semantics.\nfunc Captured() []int {\n\tvar fs []func() int\n\tfor i := 0; i < 3; i++ {\n\t\tfs = append(fs, func() int { return i })\n\t}\n\tvar out []int\n\tfor _, f := range fs {\n\t\tout = append(out, f())\n\t}\n\treturn out\n}\n",
    )
    .write(
        "main.go",
        "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/local\"\n\t\"github.com/google/go-cmp/cmp\"\n)\n\nfunc main() { fmt.Println(local.Name(), cmp.Equal(1, 1), local.Max(1, 2), local.Captured()) }\n",
    )
    .write(
        "BUILD.bazel",
        "load(\"@io_bazel_rules_go//go:def.bzl\", \"go_binary\")\ngo_binary(\n    name = \"app\",\n    srcs = [\"main.go\"],\n    deps = [\"@com_example_local//:local\", \"@com_github_google_go_cmp//cmp:go_default_library\"],\n)\n",
    );
    ws.kiln(&["build", "//:app"]).ok();
    let app = ws.out_path("app");
    assert_eq!(run(&mut Command::new(&app)), "local true 2 [3 3 3]\n");
    // The replacement is recorded as `go build` records it (a `=>` line, no sum).
    let gocache = tempfile::tempdir().unwrap();
    let (output, info) = go_build_app_as_kiln_links(&ws, "-buildvcs=false -mod=mod");
    assert_eq!(output, "local true 2 [3 3 3]\n");
    assert_eq!(build_info(go(ws.root(), gocache.path()), &app), info);
    assert!(
        info.contains("dep\texample.com/local\tv0.0.0\n\t=>\t./third_party/local\t(devel)\t\n"),
        "{info}"
    );

    // An edit to the replacement directory is seen by the next build.
    ws.write(
        "third_party/local/local.go",
        "package local\n\n// Name is the local module's name.\nfunc Name() string { return \"edited\" }\n",
    );
    ws.kiln(&["build", "//:app"]).ok();
    assert_eq!(run(&mut Command::new(&app)), "edited true 2 [3 3 3]\n");

    // A module's command gets Gazelle's go_binary (and its library is not public).
    ws.write(
        "third_party/local/cmd/greet/main.go",
        "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/local\"\n)\n\nfunc main() { fmt.Println(\"greet\", local.Name()) }\n",
    );
    let build = std::fs::read_to_string(ws.root().join("BUILD.bazel")).unwrap();
    ws.write(
        "BUILD.bazel",
        &format!("{build}genrule(\n    name = \"greeting\",\n    outs = [\"greeting.txt\"],\n    cmd = \"$(execpath @com_example_local//cmd/greet) > $@\",\n    tools = [\"@com_example_local//cmd/greet\"],\n)\n"),
    );
    ws.kiln(&["build", "//:greeting"]).ok();
    assert_eq!(
        std::fs::read_to_string(ws.out_path("greeting.txt")).unwrap(),
        "greet edited\n"
    );

    // With vendor/, its copies are what builds: change one to prove it. `go mod vendor` leaves
    // out the module's go.mod; its language version comes from vendor/modules.txt, and the
    // build information has no sums, as `go build -mod=vendor` writes it.
    run(go(ws.root(), gocache.path()).args(["mod", "vendor"]));
    assert!(!ws.root().join("vendor/example.com/local/go.mod").exists());
    ws.kiln(&["build", "//:app"]).ok();
    let (output, info) = go_build_app_as_kiln_links(&ws, "-buildvcs=false -mod=vendor");
    assert_eq!(output, "edited true 2 [3 3 3]\n");
    assert_eq!(run(&mut Command::new(&app)), output);
    assert_eq!(build_info(go(ws.root(), gocache.path()), &app), info);
    assert!(
        info.contains("dep\tgithub.com/google/go-cmp\tv0.6.0\t\n"),
        "{info}"
    );
    ws.write(
        "vendor/example.com/local/local.go",
        "package local\n\n// Name is the local module's name.\nfunc Name() string { return \"vendored\" }\n",
    );
    ws.kiln(&["build", "//:app"]).ok();
    assert_eq!(run(&mut Command::new(&app)), "vendored true 2 [3 3 3]\n");
    ws.write(
        "vendor/example.com/local/local.go",
        "package local\n\n// Name is the local module's name.\nfunc Name() string { return \"vendored again\" }\n",
    );
    ws.kiln(&["build", "//:app"]).ok();
    assert_eq!(
        run(&mut Command::new(&app)),
        "vendored again true 2 [3 3 3]\n"
    );

    // GOFLAGS decides as it does for `go build`: `-mod=mod` ignores vendor/, `-mod=vendor` uses it.
    let build_with = |goflags: &str| {
        let out = ws
            .command(&["build", "//:app"])
            .env("GOFLAGS", goflags)
            .output()
            .expect("run kiln");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        run(&mut Command::new(&app))
    };
    // Settled files, so that the no-op record would answer were GOFLAGS not part of it.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(build_with("-mod=mod"), "edited true 2 [3 3 3]\n");
    assert_eq!(build_with("-mod=vendor"), "vendored again true 2 [3 3 3]\n");

    // GOFLAGS set with `go env -w` counts too, and the environment wins over it, as in cmd/go.
    let goenv_dir = tempfile::tempdir().expect("temp dir");
    let goenv = goenv_dir.path().join("env").to_string_lossy().to_string();
    let env_file_build = |goflags: Option<&str>| {
        let mut cmd = ws.command(&["build", "//:app"]);
        cmd.env("GOENV", &goenv).env_remove("GOFLAGS");
        if let Some(flags) = goflags {
            cmd.env("GOFLAGS", flags);
        }
        let out = cmd.output().expect("run kiln");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        run(&mut Command::new(&app))
    };
    run(go(ws.root(), gocache.path())
        .env("GOENV", &goenv)
        .env_remove("GOFLAGS")
        .args(["env", "-w", "GOFLAGS=-mod=mod"]));
    assert_eq!(env_file_build(None), "edited true 2 [3 3 3]\n");
    // A change to the file alone (the environment as before) is noticed.
    run(go(ws.root(), gocache.path())
        .env("GOENV", &goenv)
        .env_remove("GOFLAGS")
        .args(["env", "-w", "GOFLAGS=-mod=vendor"]));
    assert_eq!(env_file_build(None), "vendored again true 2 [3 3 3]\n");
    run(go(ws.root(), gocache.path())
        .env("GOENV", &goenv)
        .env_remove("GOFLAGS")
        .args(["env", "-w", "GOFLAGS=-mod=mod"]));
    assert_eq!(env_file_build(None), "edited true 2 [3 3 3]\n");
    assert_eq!(
        env_file_build(Some("-mod=vendor")),
        "vendored again true 2 [3 3 3]\n"
    );
    run(go(ws.root(), gocache.path())
        .env("GOENV", &goenv)
        .env_remove("GOFLAGS")
        .args(["env", "-u", "GOFLAGS"]));
    assert_eq!(env_file_build(None), "vendored again true 2 [3 3 3]\n");

    // go.mod and vendor/modules.txt that disagree: cmd/go's "inconsistent vendoring" error.
    let go_mod = std::fs::read_to_string(ws.root().join("go.mod")).unwrap();
    ws.write("go.mod", &go_mod.replace("go-cmp v0.6.0", "go-cmp v0.5.9"));
    let out = ws.kiln(&["build", "//:app"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("inconsistent vendoring")
            && out.stderr.contains("github.com/google/go-cmp@v0.5.9: is required in go.mod, but vendor/modules.txt requires github.com/google/go-cmp@v0.6.0"),
        "{}",
        out.stderr
    );
}

/// Modules come through GOPROXY (here a `file://` proxy) and are checked against the checksum
/// database unless GONOSUMDB or GOPRIVATE exempt them, whether the environment or `go env -w`
/// set those; a proxy without the module is an error naming it.
#[test]
fn modules_are_fetched_through_goproxy_honouring_the_users_go_settings() {
    let (_guard, _cache) = shared();
    let proxy_home = tempfile::tempdir().unwrap();
    let modcache = proxy_home.path().join("modcache");
    let gocache = tempfile::tempdir().unwrap();
    run(go(proxy_home.path(), gocache.path())
        .env("GOMODCACHE", &modcache)
        .env("GOFLAGS", "-modcacherw")
        .args(["mod", "download", "github.com/google/go-cmp@v0.6.0"]));
    let full = format!("file://{}", modcache.join("cache/download").display());
    let empty_dir = proxy_home.path().join("empty");
    std::fs::create_dir_all(&empty_dir).unwrap();
    let empty = format!("file://{}", empty_dir.display());

    // A workspace with its own fresh cache, so that the module must come through the proxy.
    let workspace = || {
        let ws = Workspace::new();
        ws.write(
            "go.mod",
            &std::fs::read_to_string(examples_go().join("go.mod")).unwrap(),
        )
        .write(
            "go.sum",
            &std::fs::read_to_string(examples_go().join("go.sum")).unwrap(),
        )
        .write(
            "uses.go",
            "package uses\n\nimport \"github.com/google/go-cmp/cmp\"\n\nvar Same = cmp.Equal(1, 1)\n",
        )
        .write(
            "BUILD.bazel",
            "load(\"@io_bazel_rules_go//go:def.bzl\", \"go_library\")\n\
             go_library(name = \"uses\", srcs = [\"uses.go\"], deps = [\"@com_github_google_go_cmp//cmp\"])\n",
        );
        ws
    };
    // The checksum database is unreachable (a refused port), so only a module exempted from it
    // can be fetched; GOENV names the file `go env -w` writes.
    let go_env_file = proxy_home.path().join("go-env");
    std::fs::write(&go_env_file, "").unwrap();
    let build = |ws: &Workspace, proxy: &str, settings: &[(&str, &str)]| {
        let mut cmd = ws.command(&["build", "//:uses"]);
        cmd.env("GOPROXY", proxy)
            .env("GOSUMDB", "sum.golang.org http://127.0.0.1:9")
            .env("GOENV", &go_env_file)
            .env("GOFLAGS", "-mod=mod");
        for name in ["GONOSUMDB", "GOPRIVATE", "GONOPROXY"] {
            cmd.env_remove(name);
        }
        cmd.envs(settings.iter().copied());
        cmd.output().expect("run kiln")
    };
    let exempt = [("GONOSUMDB", "github.com/google/go-cmp")];
    let ws = workspace();
    let out = build(&ws, &empty, &exempt);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("go mod download github.com/google/go-cmp@v0.6.0")
            && stderr.contains("github.com/google/go-cmp/@v/v0.6.0.info: no such file"),
        "{stderr}"
    );

    // Not exempted: the checksum database is asked, and its failure stops the build.
    let out = build(&ws, &full, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("verifying") && stderr.contains("127.0.0.1:9"),
        "{stderr}"
    );

    // GONOSUMDB, from the environment.
    let out = build(&ws, &full, &exempt);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(ws.out_path("uses.a").is_file());

    // GONOSUMDB written by `go env -w` (into the GOENV file), as `go` would read it.
    std::fs::write(&go_env_file, "GONOSUMDB=github.com/google/go-cmp\n").unwrap();
    let ws = workspace();
    let out = build(&ws, &full, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    std::fs::write(&go_env_file, "").unwrap();

    // GOPRIVATE skips the checksum database too (GONOPROXY keeps the proxy in use).
    let ws = workspace();
    let private = [
        ("GOPRIVATE", "github.com/google/go-cmp"),
        ("GONOPROXY", "none.invalid"),
    ];
    let out = build(&ws, &full, &private);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
}

#[test]
fn plain_mode_points_the_sdk_path_at_the_host_sdk() {
    let (_guard, cache) = shared();
    let ws = Workspace::sharing_cache(cache);
    ws.write("go.mod", "module example.com/plain\n\ngo 1.22\n")
        .write(
            "p/main.go",
            "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"plain mode\", 7*6) }\n",
        )
        .write(
            "p/BUILD.bazel",
            "load(\"@io_bazel_rules_go//go:def.bzl\", \"go_binary\")\ngo_binary(name = \"p\", srcs = [\"main.go\"])\n",
        );
    let out = ws.kiln(&["build", "//p", "--spawn_strategy=local"]);
    out.ok();
    assert!(
        compiles_and_links(&out.events).len() >= 2,
        "{:?}",
        out.executed()
    );
    assert_eq!(
        run(&mut Command::new(ws.out_path("p/p"))),
        "plain mode 42\n"
    );
}

/// A module with a library that has a `_windows.go` file and `//go:build arm64` files, a main
/// package with a `//go:debug` directive, and the same binary for the host, windows/amd64 and
/// linux/arm64; tests for the host and for windows.
fn cross_workspace(cache: &Workspace) -> Workspace {
    let ws = Workspace::sharing_cache(cache);
    let lib = "load(\"@io_bazel_rules_go//go:def.bzl\", \"go_library\", \"go_test\")\n\
        go_library(name = \"greet\", srcs = [\"greet.go\", \"os_windows.go\", \"os_other.go\", \"wide.go\", \"narrow.go\"], deps = [\"//winonly\"], visibility = [\"//visibility:public\"])\n\
        go_test(name = \"greet_test\", srcs = [\"greet_test.go\"], embed = [\":greet\"])\n\
        go_test(name = \"greet_windows_test\", srcs = [\"greet_test.go\"], embed = [\":greet\"], goos = \"windows\", goarch = \"amd64\")\n";
    let bin = "load(\"@io_bazel_rules_go//go:def.bzl\", \"go_binary\")\n\
        go_binary(name = \"app\", srcs = [\"main.go\"], deps = [\"//greet\"])\n\
        go_binary(name = \"app_windows\", srcs = [\"main.go\"], deps = [\"//greet\"], goos = \"windows\", goarch = \"amd64\")\n\
        go_binary(name = \"app_arm64\", srcs = [\"main.go\"], deps = [\"//greet\"], goos = \"linux\", goarch = \"arm64\")\n";
    ws.write("kiln.toml", "")
        .write("go.mod", "module example.com/cross\n\ngo 1.22\n")
        .write("greet/BUILD.bazel", lib)
        .write(
            "greet/greet.go",
            "package greet\n\nfunc Hello() string { return \"hello from \" + osName() }\n",
        )
        // A dependency only the Windows files import, with Windows files only.
        .write(
            "greet/os_windows.go",
            "package greet\n\nimport \"example.com/cross/winonly\"\n\nfunc osName() string { return winonly.Name() }\n",
        )
        .write(
            "winonly/BUILD.bazel",
            "load(\"@io_bazel_rules_go//go:def.bzl\", \"go_library\")\ngo_library(name = \"winonly\", srcs = [\"winonly_windows.go\"], visibility = [\"//visibility:public\"])\n",
        )
        .write(
            "winonly/winonly_windows.go",
            "package winonly\n\nfunc Name() string { return \"the windows build\" }\n",
        )
        .write(
            "greet/os_other.go",
            "//go:build !windows\n\npackage greet\n\nfunc osName() string { return \"the other build\" }\n",
        )
        .write("greet/wide.go", "//go:build arm64\n\npackage greet\n\nconst Wide = \"arm64\"\n")
        .write("greet/narrow.go", "//go:build !arm64\n\npackage greet\n\nconst Wide = \"not arm64\"\n")
        // `go test` of a go 1.22 module panics with a *runtime.PanicNilError on panic(nil) unless
        // a directive (here in a test file) restores the old behaviour.
        .write(
            "greet/greet_test.go",
            "//go:debug panicnil=1\npackage greet\n\nimport \"testing\"\n\nfunc TestPanicNil(t *testing.T) {\n\tdefer func() {\n\t\tif r := recover(); r != nil {\n\t\t\tt.Fatalf(\"recovered %T\", r)\n\t\t}\n\t}()\n\tpanic(nil)\n}\n",
        )
        .write("cmd/app/BUILD.bazel", bin)
        .write(
            "cmd/app/main.go",
            "// The directive restores Go 1.20's panic(nil).\n//go:debug panicnil=1\n\npackage main\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/cross/greet\"\n)\n\nfunc main() {\n\tfmt.Println(greet.Hello(), greet.Wide)\n\tdefer func() { fmt.Printf(\"recovered %T\\n\", recover()) }()\n\tpanic(nil)\n}\n",
        );
    ws
}

/// `go build -ldflags=-s -w` for `goos`/`goarch` of `./cmd/app` into `out`.
fn go_build_app(module: &Path, gocache: &Path, platform: Option<(&str, &str)>, out: &Path) {
    let mut cmd = go(module, gocache);
    if let Some((goos, goarch)) = platform {
        cmd.env("GOOS", goos).env("GOARCH", goarch);
    }
    run(cmd
        .args(["build", "-ldflags=-s -w", "-o"])
        .arg(out)
        .arg("./cmd/app"));
}

#[test]
fn go_debug_directives_reach_the_binary_and_bad_keys_are_errors() {
    let (_guard, cache) = shared();
    let ws = cross_workspace(cache);
    ws.kiln(&["build", "//cmd/app"]).ok();
    let gocache = tempfile::tempdir().unwrap();
    let bin = tempfile::tempdir().unwrap();
    go_build_app(ws.root(), gocache.path(), None, &bin.path().join("app"));
    let ours = run(&mut Command::new(ws.out_path("cmd/app/app")));
    let theirs = run(&mut Command::new(bin.path().join("app")));
    assert_eq!(ours, theirs);
    assert!(ours.contains("recovered <nil>"), "{ours}");
    let ours = build_info(go(ws.root(), gocache.path()), &ws.out_path("cmd/app/app"));
    let theirs = build_info(go(ws.root(), gocache.path()), &bin.path().join("app"));
    assert_eq!(ours, theirs);
    assert!(ours.contains("panicnil=1"), "{ours}");

    // The directive in a test file reaches the test binary, as with `go test`.
    let out = ws.kiln(&["test", "//greet:greet_test"]);
    out.ok();

    // An unknown key and a repeated one: `go build`'s messages, with workspace-relative paths.
    ws.write(
        "cmd/app/main.go",
        "//go:debug nosuchkey=1\n//go:debug panicnil=1\n//go:debug panicnil=0\npackage main\n\nfunc main() {}\n",
    );
    let mut cmd = go(ws.root(), gocache.path());
    let go_out = cmd
        .args(["build", "-o", "/dev/null", "./cmd/app"])
        .output()
        .unwrap();
    assert!(!go_out.status.success());
    let go_err = String::from_utf8_lossy(&go_out.stderr);
    let out = ws.kiln(&["build", "//cmd/app"]);
    out.expect_code(1);
    let mut expected = 0;
    for line in go_err.lines().filter(|l| l.contains("//go:debug")) {
        let line = line.trim().trim_start_matches("./");
        assert!(
            out.stderr.contains(line),
            "`{line}` not in:\n{}",
            out.stderr
        );
        expected += 1;
    }
    assert_eq!(expected, 3, "go build said:\n{go_err}");
    assert!(
        out.stderr.contains(
            "cmd/app/main.go:1:1: invalid //go:debug: unknown //go:debug setting \"nosuchkey\""
        ),
        "{}",
        out.stderr
    );
}

/// Executed actions as (label, mnemonic, output), standard library left out.
fn executed_outputs(events: &[serde_json::Value]) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = events
        .iter()
        .filter(|e| {
            e["type"] == "action" && e["cache"] == "executed" && e["mnemonic"] != "GoStdlib"
        })
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or("").to_string();
            (s("label"), s("mnemonic"), s("output"))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn goos_goarch_cross_compile_the_whole_closure_beside_the_host_build() {
    let (_guard, cache) = shared();
    let ws = cross_workspace(cache);
    ws.kiln(&["build", "//cmd/app:app", "//greet"]).ok();
    let host_lib = std::fs::read(ws.out_path("greet/greet.a")).unwrap();

    // All three in one build: the library compiles once per platform, each into its own place;
    // nothing of the host build runs again.
    let out = ws.kiln(&["build", "//cmd/app:all", "//greet"]);
    out.ok();
    let executed = executed_outputs(&out.events);
    let mut lib_outputs: Vec<&str> = executed
        .iter()
        .filter(|(l, m, _)| l == "//greet:greet" && m == "GoCompile")
        .map(|(_, _, o)| o.as_str())
        .collect();
    lib_outputs.sort();
    assert_eq!(
        lib_outputs,
        [
            "kiln-out/go/linux_arm64/greet/greet.x",
            "kiln-out/go/windows_amd64/greet/greet.x"
        ],
        "{executed:?}"
    );
    assert!(
        executed.iter().all(|(l, _, _)| l != "//cmd/app:app"),
        "{executed:?}"
    );
    assert_eq!(
        std::fs::read(ws.out_path("greet/greet.a")).unwrap(),
        host_lib
    );

    // Each binary is what `go build` makes for that platform: same build information, same
    // executable format, and only that platform's files.
    let gocache = tempfile::tempdir().unwrap();
    let bin = tempfile::tempdir().unwrap();
    let (host_os, host_arch) = {
        let mut cmd = go(ws.root(), gocache.path());
        let text = run(cmd.args(["env", "GOOS", "GOARCH"]));
        let mut lines = text.lines().map(str::to_string);
        (lines.next().unwrap(), lines.next().unwrap())
    };
    for (name, platform, file) in [
        ("app", None, "app"),
        ("app_windows", Some(("windows", "amd64")), "app_windows.exe"),
        ("app_arm64", Some(("linux", "arm64")), "app_arm64"),
    ] {
        let theirs = bin.path().join(name);
        go_build_app(ws.root(), gocache.path(), platform, &theirs);
        let ours = ws.out_path(&format!("cmd/app/{file}"));
        assert_eq!(
            build_info(go(ws.root(), gocache.path()), &ours),
            build_info(go(ws.root(), gocache.path()), &theirs),
            "{name}"
        );
        let (ours, theirs) = (
            std::fs::read(&ours).unwrap(),
            std::fs::read(&theirs).unwrap(),
        );
        assert_eq!(
            executable_format(&ours),
            executable_format(&theirs),
            "{name}"
        );
        let has = |bytes: &[u8], s: &str| bytes.windows(s.len()).any(|w| w == s.as_bytes());
        for marker in ["the windows build", "the other build"] {
            assert_eq!(has(&ours, marker), has(&theirs, marker), "{name}: {marker}");
        }
        let windows = platform.is_some_and(|(os, _)| os == "windows");
        assert_eq!(has(&ours, "the windows build"), windows, "{name}");
    }
    let format = |f: &str| executable_format(&std::fs::read(ws.out_path(f)).unwrap());
    assert_eq!(format("cmd/app/app_windows.exe"), "PE");
    assert_eq!(format("cmd/app/app_arm64"), "ELF machine 183");
    if (host_os.as_str(), host_arch.as_str()) == ("linux", "amd64") {
        assert_eq!(format("cmd/app/app"), "ELF machine 62");
        let text = run(&mut Command::new(ws.out_path("cmd/app/app")));
        assert!(
            text.starts_with("hello from the other build not arm64"),
            "{text}"
        );
    }

    // A library with files for Windows only builds on the host as an empty package, as rules_go
    // builds it.
    ws.kiln(&["build", "//winonly"]).ok();

    // A test for another platform builds, and `kiln test` says it cannot run it.
    let out = ws.kiln(&["test", "//greet:all"]);
    out.ok();
    let tests = harness::tests(&out.events);
    let status = |label: &str| {
        tests
            .iter()
            .find(|t| t["label"] == label)
            .map(|t| t["status"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(status("//greet:greet_test").as_deref(), Some("PASSED"));
    assert_eq!(
        status("//greet:greet_windows_test").as_deref(),
        Some("SKIPPED")
    );
    assert!(
        out.stderr.contains("//greet:greet_windows_test")
            && out.stderr.contains("SKIPPED: built for windows/amd64"),
        "{}",
        out.stderr
    );
    assert!(ws.out_path("greet/greet_windows_test.exe").is_file());

    // A platform Go does not know is a clear error naming the target.
    ws.write(
        "bad/BUILD.bazel",
        "load(\"@io_bazel_rules_go//go:def.bzl\", \"go_binary\")\ngo_binary(name = \"bad\", srcs = [\"main.go\"], goos = \"plan10\")\n",
    )
    .write("bad/main.go", "package main\n\nfunc main() {}\n");
    let out = ws.kiln(&["build", "//bad"]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("`//bad:bad`: `goos` `plan10` is not an operating system Go knows"),
        "{}",
        out.stderr
    );
}

/// `PE`, or `ELF machine N` (e_machine), from a file's header.
fn executable_format(bytes: &[u8]) -> String {
    if bytes.starts_with(b"MZ") {
        return "PE".into();
    }
    if bytes.starts_with(b"\x7fELF") && bytes.len() > 20 {
        return format!("ELF machine {}", u16::from_le_bytes([bytes[18], bytes[19]]));
    }
    "unknown".into()
}

/// Third-party packages serve every platform: a module package whose Windows files import a
/// package of another module (one with Windows files only) cross-compiles for Windows beside
/// the host build, which does not need that import.
#[test]
fn third_party_packages_cross_compile_with_platform_specific_imports() {
    let (_guard, cache) = shared();
    let ws = Workspace::sharing_cache(cache);
    let bin = "load(\"@io_bazel_rules_go//go:def.bzl\", \"go_binary\")\n\
        go_binary(name = \"app\", srcs = [\"main.go\"], deps = [\"@com_example_plat//:plat\"])\n\
        go_binary(name = \"app_windows\", srcs = [\"main.go\"], deps = [\"@com_example_plat//:plat\"], goos = \"windows\", goarch = \"amd64\")\n";
    ws.write(
        "go.mod",
        "module example.com/app\n\ngo 1.22\n\nrequire (\n\texample.com/plat v0.0.0\n\texample.com/winmod v0.0.0\n)\n\n\
         replace example.com/plat => ./third_party/plat\n\nreplace example.com/winmod => ./third_party/winmod\n",
    )
    .write("third_party/plat/go.mod", "module example.com/plat\n\ngo 1.21\n")
    .write(
        "third_party/plat/plat.go",
        "package plat\n\n// Hello names the build.\nfunc Hello() string { return \"hello from \" + osName() }\n",
    )
    .write(
        "third_party/plat/plat_windows.go",
        "package plat\n\nimport \"example.com/winmod/win\"\n\nfunc osName() string { return win.Name() }\n",
    )
    .write(
        "third_party/plat/plat_other.go",
        "//go:build !windows\n\npackage plat\n\nfunc osName() string { return \"the other build\" }\n",
    )
    .write("third_party/winmod/go.mod", "module example.com/winmod\n\ngo 1.21\n")
    .write(
        "third_party/winmod/win/win_windows.go",
        "package win\n\n// Name names the Windows build.\nfunc Name() string { return \"the windows build\" }\n",
    )
    .write(
        "main.go",
        "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/plat\"\n)\n\nfunc main() { fmt.Println(plat.Hello()) }\n",
    )
    .write("BUILD.bazel", bin);
    ws.kiln(&["build", "//..."]).ok();
    assert_eq!(
        run(&mut Command::new(ws.out_path("app"))),
        "hello from the other build\n"
    );
    let windows = std::fs::read(ws.out_path("app_windows.exe")).unwrap();
    assert_eq!(executable_format(&windows), "PE");
    let has = |s: &str| windows.windows(s.len()).any(|w| w == s.as_bytes());
    assert!(has("the windows build") && !has("the other build"));
}

/// `x_defs` on a `go_library` reach every binary that links it (the binary's own win for the
/// same variable), and a `go_test`'s reach its test binary, as with rules_go.
#[test]
fn x_defs_on_libraries_binaries_and_tests() {
    let (_guard, cache) = shared();
    let ws = Workspace::sharing_cache(cache);
    let go_rules =
        "load(\"@io_bazel_rules_go//go:def.bzl\", \"go_binary\", \"go_library\", \"go_test\")\n";
    ws.write("go.mod", "module example.com/xd\n\ngo 1.22\n")
        .write("ver/ver.go", "package ver\n\nvar Version = \"dev\"\n")
        .write(
            "ver/BUILD.bazel",
            &format!(
                "{go_rules}go_library(name = \"ver\", srcs = [\"ver.go\"], x_defs = {{\"Version\": \"1.2.3\"}}, visibility = [\"//visibility:public\"])\n"
            ),
        )
        .write(
            "show/main.go",
            "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/xd/ver\"\n)\n\nfunc main() { fmt.Println(ver.Version) }\n",
        )
        .write(
            "show/BUILD.bazel",
            &format!(
                "{go_rules}go_binary(name = \"show\", srcs = [\"main.go\"], deps = [\"//ver\"])\n\
                 go_binary(name = \"override\", srcs = [\"main.go\"], deps = [\"//ver\"], x_defs = {{\"example.com/xd/ver.Version\": \"from-binary\"}})\n"
            ),
        )
        .write(
            "t/t_test.go",
            "package t\n\nimport \"testing\"\n\nvar Name = \"unset\"\n\nfunc TestName(t *testing.T) {\n\tif Name != \"tested\" {\n\t\tt.Fatal(Name)\n\t}\n}\n",
        )
        .write(
            "t/BUILD.bazel",
            &format!("{go_rules}go_test(name = \"t\", srcs = [\"t_test.go\"], x_defs = {{\"Name\": \"tested\"}})\n"),
        );
    // `embed` carries a library's x_defs to the target compiling its sources: a go_test of the
    // library (qualified by the library's import path) and a go_binary of a `package main`
    // library (qualified as `main`).
    ws.write(
        "ver/ver_test.go",
        "package ver\n\nimport \"testing\"\n\nfunc TestVersion(t *testing.T) {\n\tif Version != \"1.2.3\" {\n\t\tt.Fatal(Version)\n\t}\n}\n",
    )
    .write(
        "ver/BUILD.bazel",
        &format!(
            "{go_rules}go_library(name = \"ver\", srcs = [\"ver.go\"], x_defs = {{\"Version\": \"1.2.3\"}}, visibility = [\"//visibility:public\"])\n\
             go_test(name = \"ver_test\", srcs = [\"ver_test.go\"], embed = [\":ver\"])\n"
        ),
    )
    .write(
        "greet/main.go",
        "package main\n\nimport \"fmt\"\n\nvar Greeting = \"unset\"\n\nfunc main() { fmt.Println(Greeting) }\n",
    )
    .write(
        "greet/BUILD.bazel",
        &format!(
            "{go_rules}go_library(name = \"greet_lib\", srcs = [\"main.go\"], x_defs = {{\"Greeting\": \"embedded\"}})\n\
             go_binary(name = \"greet\", embed = [\":greet_lib\"])\n"
        ),
    );
    let out = ws.kiln(&["run", "//show"]);
    out.ok();
    assert_eq!(out.stdout.trim(), "1.2.3");
    let out = ws.kiln(&["run", "//show:override"]);
    out.ok();
    assert_eq!(out.stdout.trim(), "from-binary");
    ws.kiln(&["test", "//t", "//ver:ver_test"]).ok();
    let out = ws.kiln(&["run", "//greet"]);
    out.ok();
    assert_eq!(out.stdout.trim(), "embedded");
}

/// Runs `kiln run //label` and returns its trimmed stdout.
fn kiln_run(ws: &Workspace, label: &str) -> String {
    let out = ws.kiln(&["run", label]);
    out.ok();
    out.stdout.trim().to_string()
}

/// Loop variables captured by closures: per-iteration from `go 1.22` on, shared before. The same
/// source gives `012` or `333` depending on the `-lang` it is compiled with.
const LOOPVAR_MAIN: &str = "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tvar fs []func() int\n\tfor i := 0; i < 3; i++ {\n\t\tfs = append(fs, func() int { return i })\n\t}\n\tfor _, f := range fs {\n\t\tfmt.Print(f())\n\t}\n\tfmt.Println()\n}\n";

/// `-lang` comes from the go line of each package's own module (as `go build` in that module
/// gives it), and `gc_goopts` reach the compiler after Kiln's own flags.
#[test]
fn each_module_compiles_at_its_own_language_version_and_gc_goopts_and_linkopts_apply() {
    let (_guard, cache) = shared();
    let ws = Workspace::sharing_cache(cache);
    let go_rules = "load(\"@io_bazel_rules_go//go:def.bzl\", \"go_binary\")\n";
    ws.write("go.mod", "module example.com/lv\n\ngo 1.22\n")
        .write("loop/main.go", LOOPVAR_MAIN)
        .write(
            "loop/BUILD.bazel",
            &format!(
                "{go_rules}go_binary(name = \"loop\", srcs = [\"main.go\"])\n\
                 go_binary(name = \"loop_old\", srcs = [\"main.go\"], gc_goopts = [\"-lang=go1.21\"])\n"
            ),
        )
        .write("old/go.mod", "module example.com/old\n\ngo 1.21\n")
        .write("old/main.go", LOOPVAR_MAIN)
        .write(
            "old/BUILD.bazel",
            &format!("{go_rules}go_binary(name = \"old\", srcs = [\"main.go\"])\n"),
        );
    assert_eq!(kiln_run(&ws, "//loop"), "012");
    assert_eq!(kiln_run(&ws, "//old"), "333");
    assert_eq!(kiln_run(&ws, "//loop:loop_old"), "333");
    // What `go run` says in each module.
    let gocache = tempfile::tempdir().unwrap();
    for (dir, expected) in [("loop", "012"), ("old", "333")] {
        let said = run(go(&ws.root().join(dir), gocache.path()).args(["run", "."]));
        assert_eq!(said.trim(), expected, "go run in {dir}");
    }

    // gc_linkopts reach the linker, as `-ldflags` does for `go run`.
    ws.write(
        "stamp/main.go",
        "package main\n\nimport \"fmt\"\n\nvar stamp = \"unset\"\n\nfunc main() { fmt.Print(stamp) }\n",
    )
    .write(
        "stamp/BUILD.bazel",
        &format!(
            "{go_rules}go_binary(name = \"stamp\", srcs = [\"main.go\"], gc_linkopts = [\"-X\", \"main.stamp=linked\"])\n"
        ),
    );
    assert_eq!(kiln_run(&ws, "//stamp"), "linked");
    let said = run(go(ws.root(), gocache.path()).args([
        "run",
        "-ldflags=-X main.stamp=linked",
        "./stamp",
    ]));
    assert_eq!(said, "linked");
    // ... and are recorded in the build information as `go build -ldflags` records them (`-c
    // opt`: no `-s -w` of Kiln's own in front).
    ws.kiln(&["build", "-c", "opt", "//stamp"]).ok();
    let theirs = gocache.path().join("stamp-by-go");
    run(go(ws.root(), gocache.path())
        .args(["build", "-ldflags=-X main.stamp=linked", "-o"])
        .arg(&theirs)
        .arg("./stamp"));
    let ours = build_info(go(ws.root(), gocache.path()), &ws.out_path("stamp/stamp"));
    assert_eq!(ours, build_info(go(ws.root(), gocache.path()), &theirs));
    assert!(ours.contains("-ldflags=\"-X main.stamp=linked\""), "{ours}");
    // In fastbuild, after Kiln's own `-s -w`, as `go build -ldflags="-s -w ..."` records it.
    ws.kiln(&["build", "//stamp"]).ok();
    run(go(ws.root(), gocache.path())
        .args(["build", "-ldflags=-s -w -X main.stamp=linked", "-o"])
        .arg(&theirs)
        .arg("./stamp"));
    let ours = build_info(go(ws.root(), gocache.path()), &ws.out_path("stamp/stamp"));
    assert_eq!(ours, build_info(go(ws.root(), gocache.path()), &theirs));
}

/// `gotags` selects files for every package the binary or test links, as `go build -tags`
/// does, beside the same packages built without it; bad tags and modes Kiln cannot build are
/// errors naming the attribute.
#[test]
fn gotags_configure_the_whole_closure_and_unsupported_modes_are_errors() {
    let (_guard, cache) = shared();
    let ws = Workspace::sharing_cache(cache);
    let go_rules =
        "load(\"@io_bazel_rules_go//go:def.bzl\", \"go_binary\", \"go_library\", \"go_test\")\n";
    ws.write("go.mod", "module example.com/tags\n\ngo 1.22\n")
        .write(
            "lib/plain.go",
            "//go:build !extra\n\npackage lib\n\nconst Mode = \"plain\"\n",
        )
        .write(
            "lib/extra.go",
            "//go:build extra\n\npackage lib\n\nconst Mode = \"extra\"\n",
        )
        .write(
            "lib/BUILD.bazel",
            &format!(
                "{go_rules}go_library(name = \"lib\", srcs = [\"plain.go\", \"extra.go\"], importpath = \"example.com/tags/lib\", visibility = [\"//visibility:public\"])\n"
            ),
        )
        .write(
            "app/main.go",
            "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/tags/lib\"\n)\n\nfunc main() { fmt.Println(lib.Mode) }\n",
        )
        .write(
            "app/mode_test.go",
            "package main\n\nimport (\n\t\"testing\"\n\n\t\"example.com/tags/lib\"\n)\n\nfunc TestMode(t *testing.T) {\n\tif lib.Mode != \"extra\" {\n\t\tt.Fatal(lib.Mode)\n\t}\n}\n",
        )
        .write(
            "app/BUILD.bazel",
            &format!(
                "{go_rules}go_binary(name = \"plain\", srcs = [\"main.go\"], deps = [\"//lib\"])\n\
                 go_binary(name = \"extra\", srcs = [\"main.go\"], deps = [\"//lib\"], gotags = [\"extra\"])\n\
                 go_test(name = \"mode_test\", srcs = [\"main.go\", \"mode_test.go\"], deps = [\"//lib\"], gotags = [\"extra\"])\n"
            ),
        );
    assert_eq!(kiln_run(&ws, "//app:plain"), "plain");
    assert_eq!(kiln_run(&ws, "//app:extra"), "extra");
    ws.kiln(&["test", "//app:mode_test"]).ok();
    let gocache = tempfile::tempdir().unwrap();
    let said = run(go(&ws.root().join("app"), gocache.path()).args(["run", "-tags", "extra", "."]));
    assert_eq!(said.trim(), "extra");
    // Both configurations' outputs exist side by side.
    assert!(ws.out_path("app/plain").is_file());
    assert!(ws.out_path("app/extra").is_file());

    for (attr, expected) in [
        (
            "gotags = [\"a-b\"]",
            "`gotags` entry `a-b` is not a build tag",
        ),
        ("race = \"on\"", "`race = \"on\"` is not supported"),
        ("msan = \"on\"", "`msan = \"on\"` is not supported"),
        ("pure = \"off\"", "`pure = \"off\"` asks for cgo"),
        ("cgo = True", "`cgo`/`cdeps` are not supported"),
        (
            "linkmode = \"c-shared\"",
            "`linkmode = \"c-shared\"` is not supported",
        ),
        ("rundir = \".\"", "`rundir` is not supported"),
    ] {
        ws.write(
            "bad/BUILD.bazel",
            &format!("{go_rules}go_binary(name = \"bad\", srcs = [\"main.go\"], {attr})\n"),
        )
        .write("bad/main.go", "package main\n\nfunc main() {}\n");
        let out = ws.kiln(&["build", "//bad"]);
        out.expect_code(1);
        assert!(out.stderr.contains("bad/BUILD.bazel:2:1"), "{}", out.stderr);
        assert!(out.stderr.contains(expected), "{attr}: {}", out.stderr);
    }
}

/// The generated test main runs `TestMain`, checks `Example` output and runs the fuzz seed
/// corpus in `testdata/fuzz`, failing where `go test` fails.
#[test]
fn test_main_examples_and_fuzz_seed_corpus_behave_as_go_test() {
    let (_guard, cache) = shared();
    let ws = Workspace::sharing_cache(cache);
    let go_rules = "load(\"@io_bazel_rules_go//go:def.bzl\", \"go_library\", \"go_test\")\n";
    ws.write("go.mod", "module example.com/tm\n\ngo 1.22\n")
        .write(
            "tm/tm.go",
            "package tm\n\n// Parse panics on \"boom\".\nfunc Parse(s string) int {\n\tif s == \"boom\" {\n\t\tpanic(\"boom\")\n\t}\n\treturn len(s)\n}\n",
        )
        .write(
            "tm/tm_test.go",
            "package tm\n\nimport (\n\t\"fmt\"\n\t\"os\"\n\t\"testing\"\n)\n\nvar setUp bool\n\nfunc TestMain(m *testing.M) {\n\tsetUp = true\n\tcode := m.Run()\n\tfmt.Println(\"TestMain done\")\n\tos.Exit(code)\n}\n\nfunc TestSetUp(t *testing.T) {\n\tif !setUp {\n\t\tt.Fatal(\"TestMain did not run\")\n\t}\n}\n\nfunc ExampleParse() {\n\tfmt.Println(Parse(\"abc\"))\n\t// Output: 3\n}\n\nfunc FuzzParse(f *testing.F) {\n\tf.Add(\"x\")\n\tf.Fuzz(func(t *testing.T, s string) { Parse(s) })\n}\n",
        )
        .write(
            "tm/testdata/fuzz/FuzzParse/hello",
            "go test fuzz v1\nstring(\"hello\")\n",
        )
        .write(
            "tm/BUILD.bazel",
            &format!(
                "{go_rules}go_library(name = \"tm\", srcs = [\"tm.go\"])\n\
                 go_test(name = \"tm_test\", srcs = [\"tm_test.go\"], embed = [\":tm\"], data = glob([\"testdata/**\"]))\n"
            ),
        );
    let gocache = tempfile::tempdir().unwrap();
    let go_test_passes = |ws: &Workspace| go_test_passes(&ws.root().join("tm"), gocache.path());
    let log = |ws: &Workspace| ws.read("kiln-out/testlogs/tm/tm_test/test.log");

    ws.kiln(&["test", "//tm:tm_test"]).ok();
    assert!(go_test_passes(&ws));
    assert!(log(&ws).contains("TestMain done"), "{}", log(&ws));

    // A seed that panics fails the test, under both.
    ws.write(
        "tm/testdata/fuzz/FuzzParse/boom",
        "go test fuzz v1\nstring(\"boom\")\n",
    );
    ws.kiln(&["test", "//tm:tm_test"]).expect_code(3);
    assert!(!go_test_passes(&ws));
    assert!(log(&ws).contains("FuzzParse/boom"), "{}", log(&ws));

    // An example whose output differs fails, under both.
    ws.remove("tm/testdata/fuzz/FuzzParse/boom");
    ws.write(
        "tm/tm_test.go",
        &ws.read("tm/tm_test.go")
            .replace("// Output: 3", "// Output: 4"),
    );
    ws.kiln(&["test", "//tm:tm_test"]).expect_code(3);
    assert!(!go_test_passes(&ws));
    assert!(log(&ws).contains("--- FAIL: ExampleParse"), "{}", log(&ws));
}

/// A test binary starts as `go test` starts it: in its package's directory, so that package-level
/// initializers read `testdata/` (a chdir in the generated main would come after them), and with
/// `-test.paniconexit0`, so that a test calling `os.Exit(0)` fails instead of passing silently.
#[test]
fn tests_start_in_their_package_directory_and_an_exit_0_fails_as_under_go_test() {
    let (_guard, cache) = shared();
    let ws = Workspace::sharing_cache(cache);
    let go_rules = "load(\"@io_bazel_rules_go//go:def.bzl\", \"go_test\")\n";
    ws.write("go.mod", "module example.com/cwd\n\ngo 1.22\n")
        .write(
            "pkg/pkg_test.go",
            "package pkg\n\nimport (\n\t\"os\"\n\t\"testing\"\n)\n\n// Read while the package initializes, before any test or TestMain runs.\nvar fixture, fixtureErr = os.ReadFile(\"testdata/fixture.txt\")\n\nfunc TestFixture(t *testing.T) {\n\tif fixtureErr != nil || string(fixture) != \"fixture\\n\" {\n\t\tt.Fatalf(\"fixture: %q, %v\", fixture, fixtureErr)\n\t}\n}\n",
        )
        .write("pkg/testdata/fixture.txt", "fixture\n")
        .write(
            "pkg/BUILD.bazel",
            &format!(
                "{go_rules}go_test(name = \"pkg_test\", srcs = [\"pkg_test.go\"], data = glob([\"testdata/**\"]))\n"
            ),
        );
    let gocache = tempfile::tempdir().unwrap();
    let go_test_passes = |ws: &Workspace| go_test_passes(&ws.root().join("pkg"), gocache.path());
    let log = |ws: &Workspace| ws.read("kiln-out/testlogs/pkg/pkg_test/test.log");
    assert!(go_test_passes(&ws));
    let out = ws.kiln(&["test", "//pkg:pkg_test"]);
    out.ok();

    // A test that exits 0 before it reports: a failure under both.
    ws.write(
        "pkg/exit_test.go",
        "package pkg\n\nimport (\n\t\"os\"\n\t\"testing\"\n)\n\nfunc TestExitsEarly(t *testing.T) {\n\tos.Exit(0)\n}\n",
    );
    ws.write(
        "pkg/BUILD.bazel",
        &ws.read("pkg/BUILD.bazel").replace(
            "srcs = [\"pkg_test.go\"]",
            "srcs = [\"exit_test.go\", \"pkg_test.go\"]",
        ),
    );
    assert!(!go_test_passes(&ws));
    ws.kiln(&["test", "//pkg:pkg_test"]).expect_code(3);
    assert!(
        log(&ws).contains("unexpected call to os.Exit(0) during test"),
        "{}",
        log(&ws)
    );
}

/// Modules with a major-version suffix and gopkg.in modules get Gazelle's repository and library
/// names (`@com_github_cespare_xxhash_v2//:xxhash`, `@in_gopkg_yaml_v3//:yaml_v3`), BUILD files
/// loading rules_go as `@rules_go` (its Bzlmod name) work, and the binary (assembly in xxhash
/// included) behaves and is recorded as `go build`'s.
#[test]
fn major_version_and_gopkg_in_modules_under_gazelle_names() {
    let (_guard, cache) = shared();
    let ws = Workspace::sharing_cache(cache);
    ws.write(
        "go.mod",
        "module example.com/names\n\ngo 1.22\n\nrequire (\n\tgithub.com/cespare/xxhash/v2 v2.3.0\n\tgopkg.in/yaml.v3 v3.0.1\n)\n",
    )
    .write(
        "main.go",
        "package main\n\nimport (\n\t\"fmt\"\n\n\t\"github.com/cespare/xxhash/v2\"\n\t\"gopkg.in/yaml.v3\"\n)\n\nfunc main() {\n\tout, err := yaml.Marshal(map[string]uint64{\"kiln\": xxhash.Sum64String(\"kiln\")})\n\tif err != nil {\n\t\tpanic(err)\n\t}\n\tfmt.Print(string(out))\n}\n",
    )
    .write(
        "BUILD.bazel",
        "load(\"@rules_go//go:def.bzl\", \"go_binary\")\n\ngo_binary(\n    name = \"app\",\n    srcs = [\"main.go\"],\n    deps = [\n        \"@com_github_cespare_xxhash_v2//:xxhash\",\n        \"@in_gopkg_yaml_v3//:yaml_v3\",\n    ],\n)\n",
    );
    let gocache = tempfile::tempdir().unwrap();
    run(go(ws.root(), gocache.path()).args(["mod", "tidy"]));
    ws.kiln(&["build", "//:app"]).ok();
    let (output, info) = go_build_app_as_kiln_links(&ws, "-buildvcs=false -mod=mod");
    let app = ws.out_path("app");
    assert_eq!(run(&mut Command::new(&app)), output);
    assert!(output.starts_with("kiln: "), "{output}");
    assert_eq!(build_info(go(ws.root(), gocache.path()), &app), info);
    assert!(
        info.contains("dep\tgithub.com/cespare/xxhash/v2\tv2.3.0\th1:")
            && info.contains("dep\tgopkg.in/yaml.v3\tv3.0.1\th1:"),
        "{info}"
    );
}

/// The standard library is compiled per package, as cached actions every workspace shares: a
/// second workspace (another directory, another module) on the same cache compiles none of it,
/// and compiles only the packages its program imports.
#[test]
fn the_standard_library_is_shared_by_workspaces_through_the_cache() {
    // Its own cache (the point is what a second workspace reuses), but one test at a time.
    let (_guard, _cache) = shared();
    let first = Workspace::new();
    first
        .write("go.mod", "module example.com/first\n\ngo 1.22\n")
        .write(
            "main.go",
            "package main\n\nimport (\n\t\"fmt\"\n\t\"strings\"\n)\n\nfunc main() { fmt.Println(strings.ToUpper(\"std\")) }\n",
        )
        .write(
            "BUILD.bazel",
            "load(\"@io_bazel_rules_go//go:def.bzl\", \"go_binary\")\ngo_binary(name = \"app\", srcs = [\"main.go\"])\n",
        );
    let stdlib = |events: &[serde_json::Value], cache: &str| -> BTreeSet<String> {
        events
            .iter()
            .filter(|e| e["type"] == "action" && e["mnemonic"] == "GoStdlib" && e["cache"] == cache)
            .map(|e| e["output"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let out = first.kiln(&["build", "//:app"]);
    out.ok();
    let compiled = stdlib(&out.events, "executed");
    // Only what fmt and strings reach: no net/http, no crypto.
    assert!(compiled.iter().any(|o| o.contains("/fmt.")), "{compiled:?}");
    assert!(
        !compiled
            .iter()
            .any(|o| o.contains("net/http") || o.contains("crypto/")),
        "{compiled:?}"
    );

    let second = Workspace::sharing_cache(&first);
    second
        .write("go.mod", "module example.com/second\n\ngo 1.22\n")
        .write("main.go", &first.read("main.go"))
        .write("BUILD.bazel", &first.read("BUILD.bazel"));
    assert_ne!(first.root(), second.root());
    let out = second.kiln(&["build", "//:app"]);
    out.ok();
    assert_eq!(stdlib(&out.events, "executed"), BTreeSet::new());
    assert_eq!(stdlib(&out.events, "local_hit"), compiled);
    assert_eq!(run(&mut Command::new(second.out_path("app"))), "STD\n");
}

/// A `GOPRIVATE` module comes straight from version control, as `go` fetches it: with the user's
/// `git` and `~/.gitconfig` (here a rewrite of the module's URL to a local repository), never
/// through the proxy or the checksum database, and is still checked against go.sum.
#[test]
fn private_modules_come_from_version_control_with_the_users_git_setup() {
    let (_guard, _cache) = shared();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("priv");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        repo.join("go.mod"),
        "module example.com/priv.git\n\ngo 1.22\n",
    )
    .unwrap();
    std::fs::write(
        repo.join("priv.go"),
        "package priv\n\n// Name says where the module came from.\nfunc Name() string { return \"from git\" }\n",
    )
    .unwrap();
    let git = |args: &[&str]| {
        run(Command::new("git")
            .current_dir(&repo)
            .env("HOME", &home)
            .args(["-c", "user.email=k@example.com", "-c", "user.name=k"])
            .args(args))
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-qm", "init"]);
    git(&["tag", "v1.0.0"]);
    std::fs::write(
        home.join(".gitconfig"),
        format!(
            "[url \"file://{}\"]\n\tinsteadOf = https://example.com/priv\n",
            repo.display()
        ),
    )
    .unwrap();

    // go.sum lines as `go` computes them for this module.
    let gocache = tempfile::tempdir().unwrap();
    let modcache = dir.path().join("modcache");
    let info: serde_json::Value = serde_json::from_str(&run(go(dir.path(), gocache.path())
        .env("HOME", &home)
        .env("GOPRIVATE", "example.com/priv.git")
        .env("GOMODCACHE", &modcache)
        .env("GOFLAGS", "-modcacherw")
        .args(["mod", "download", "-json", "example.com/priv.git@v1.0.0"])))
    .unwrap();
    let sum = format!(
        "example.com/priv.git v1.0.0 {}\nexample.com/priv.git v1.0.0/go.mod {}\n",
        info["Sum"].as_str().unwrap(),
        info["GoModSum"].as_str().unwrap()
    );

    let ws = Workspace::new();
    ws.write(
        "go.mod",
        "module example.com/app\n\ngo 1.22\n\nrequire example.com/priv.git v1.0.0\n",
    )
    .write("go.sum", &sum)
    .write(
        "main.go",
        "package main\n\nimport (\n\t\"fmt\"\n\n\tpriv \"example.com/priv.git\"\n)\n\nfunc main() { fmt.Println(priv.Name()) }\n",
    )
    .write(
        "BUILD.bazel",
        "load(\"@io_bazel_rules_go//go:def.bzl\", \"go_binary\")\ngo_binary(name = \"app\", srcs = [\"main.go\"], deps = [\"@com_example_priv_git//:priv_git\"])\n",
    );
    let build = |sum_file: &str| {
        ws.write("go.sum", sum_file);
        ws.command(&["build", "//:app"])
            .env("HOME", &home)
            .env("GOPRIVATE", "example.com/priv.git")
            .env("GOFLAGS", "-mod=mod")
            .env_remove("GOPROXY")
            .env_remove("GONOPROXY")
            .env_remove("GONOSUMDB")
            .output()
            .expect("run kiln")
    };
    // A go.sum that disagrees with the repository: the module is fetched, refused, unused.
    let out = build(&sum.replace("h1:", "h1:AAAA"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("checksum mismatch"), "{stderr}");
    let out = build(&sum);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(run(&mut Command::new(ws.out_path("app"))), "from git\n");
}
