//! CLI behaviour around the build: `kiln run` leaves Ctrl-C to its program and exits with the
//! program's code; a different build of Kiln never reuses another's package memo; `info`, `cache
//! gc`, `clean --expunge` and `explain` work on the real binary; the examples workspace passes.

mod harness;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use harness::Workspace;
use serde_json::Value;

fn planned(events: &[Value]) -> Value {
    events
        .iter()
        .find(|e| e["type"] == "planned")
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn kiln_run_leaves_ctrl_c_to_the_program_and_returns_its_code() {
    let ws = Workspace::new();
    ws.write(
        "app/serve.sh",
        "#!/bin/bash\ntrap 'echo interrupted; exit 42' INT\necho ready > \"$BUILD_WORKSPACE_DIRECTORY/ready\"\nwhile true; do sleep 0.05; done\n",
    );
    std::fs::set_permissions(
        ws.root().join("app/serve.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    ws.write(
        "app/BUILD",
        r#"sh_binary(name = "serve", srcs = ["serve.sh"])"#,
    );
    let mut cmd = ws.command(&["run", "//app:serve"]);
    cmd.process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ws.root().join("ready").exists() {
        assert!(Instant::now() < deadline, "the program never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A terminal's Ctrl-C signals the whole foreground process group.
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert_eq!(status.code(), Some(42), "stdout: {stdout}");
    assert_eq!(stdout, "interrupted\n", "stdout is the program's alone");
}

#[test]
fn another_build_of_kiln_does_not_reuse_package_memos() {
    let ws = Workspace::new();
    ws.write(
        "a/BUILD",
        r#"genrule(name = "a", outs = ["a.txt"], cmd = "echo a > $@")"#,
    );
    // A private copy of the binary, whose identity the test can change.
    let bin_dir = tempfile::tempdir().unwrap();
    let kiln = bin_dir.path().join("kiln");
    std::fs::copy(env!("CARGO_BIN_EXE_kiln"), &kiln).unwrap();
    let run = |events: &std::path::Path| {
        #[allow(clippy::disallowed_methods)] // Tests drive the real binary.
        let out = std::process::Command::new(&kiln)
            .args(["build", "//...", &format!("--events={}", events.display())])
            .current_dir(ws.root())
            .env("KILN_CACHE_DIR", ws.cache_dir())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(events).unwrap();
        text.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let events = bin_dir.path().join("events.jsonl");
    run(&events);
    assert_eq!(
        planned(&run(&events))["packages_evaluated"],
        0,
        "the same binary reuses its memo"
    );
    // "Rebuild" the binary: a new file at the same path.
    let bytes = std::fs::read(&kiln).unwrap();
    std::fs::remove_file(&kiln).unwrap();
    std::fs::write(&kiln, bytes).unwrap();
    std::fs::set_permissions(&kiln, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    assert_eq!(
        planned(&run(&events))["packages_evaluated"],
        1,
        "a new binary re-evaluates"
    );
}

#[test]
fn info_cache_gc_clean_expunge_and_explain_work() {
    let ws = Workspace::new();
    ws.write("a/in.txt", "one\n");
    ws.write(
        "a/BUILD",
        r#"genrule(name = "g", srcs = ["in.txt"], outs = ["g.txt"], cmd = "cat $< > $@")"#,
    );
    ws.build_all();

    let info = ws.kiln(&["info"]);
    assert_eq!(info.code, 0, "{}", info.stderr);
    for key in [
        "workspace:",
        "output_path:",
        "cache_dir:",
        "workspace_state:",
        "digest_function: blake3",
        "sandbox:",
    ] {
        assert!(
            info.stdout.contains(key),
            "`{key}` missing from:\n{}",
            info.stdout
        );
    }

    ws.write("a/in.txt", "two\n");
    ws.build_all();
    let explain = ws.kiln(&["explain", "//a:g"]);
    assert_eq!(explain.code, 0, "{}", explain.stderr);
    assert!(
        explain.stdout.contains("input `a/in.txt` changed"),
        "{}",
        explain.stdout
    );

    let gc = ws.kiln(&["cache", "gc", "--max_size", "0"]);
    assert_eq!(gc.code, 0, "{}", gc.stderr);
    assert!(gc.stderr.contains("Removed"), "{}", gc.stderr);
    // Everything was evicted: the next build from a clean output tree runs the action again.
    assert_eq!(ws.kiln(&["clean"]).code, 0);
    let rebuilt = ws.build_all();
    assert_eq!(rebuilt.summary()["executed"], 1);

    let expunge = ws.kiln(&["clean", "--expunge"]);
    assert_eq!(expunge.code, 0, "{}", expunge.stderr);
    assert!(!ws.root().join("kiln-out").exists());
    let after = ws.build_all();
    assert!(
        planned(&after.events)["packages_evaluated"].as_u64() >= Some(1),
        "the package memo went with --expunge"
    );
    assert_eq!(
        after.summary()["local_hits"],
        1,
        "the shared cache is kept by --expunge"
    );
}

#[test]
fn the_examples_workspace_builds_and_its_tests_pass() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let ws = Workspace::new();
    harness::copy_tree(&examples, ws.root());
    let out = ws.kiln(&["test", "//..."]);
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert!(out.stderr.contains("PASSED"), "{}", out.stderr);
}
