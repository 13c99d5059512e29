//! CLI behaviour around the build: `kiln run` leaves Ctrl-C to its program and exits with the
//! program's code; Ctrl-C during a build exits with 8, and the next build removes its scratch
//! tree; a different build of Kiln never reuses another's package memo; `info`, `cache gc`,
//! `clean --expunge` and `explain` work on the real binary; the examples workspace passes.

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

/// Whether a live process's command line holds `marker`.
fn process_with(marker: &str) -> bool {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .any(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
}

#[test]
fn ctrl_c_during_a_build_exits_with_8_and_the_next_build_removes_its_scratch_tree() {
    let ws = Workspace::new();
    let info = ws.kiln(&["info"]).stdout.clone();
    let Some(scratch) = info
        .lines()
        .find_map(|l| l.strip_prefix("memory_scratch: "))
        .map(std::path::PathBuf::from)
    else {
        eprintln!("skipped: no memory file system for scratch trees");
        return;
    };
    // An action that runs until it is killed, with a marker to find it by (this run's own).
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let marker = format!("4243.{}{nanos:09}", std::process::id());
    ws.write("a/in.txt", "x");
    ws.write(
        "a/BUILD",
        &format!(
            r#"genrule(name = "slow", srcs = ["in.txt"], outs = ["out.txt"], cmd = "sleep {marker}; cp $< $@")"#
        ),
    );
    let mut cmd = ws.command(&["build", "//a:slow"]);
    cmd.process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let kiln_pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !process_with(&marker) {
        assert!(Instant::now() < deadline, "the action never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(scratch.exists(), "the action's tree is in {scratch:?}");
    // A terminal's Ctrl-C signals the whole foreground process group.
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(kiln_pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(8),
        "Bazel's code for an interrupted build: {stderr}"
    );
    while process_with(&marker) {
        assert!(Instant::now() < deadline, "the action outlived kiln");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Set aside, not removed: the action was still running when kiln left.
    let mut set_aside = scratch.clone().into_os_string();
    set_aside.push(format!(".interrupted-{kiln_pid}"));
    let set_aside = std::path::PathBuf::from(set_aside);
    assert!(
        !scratch.exists(),
        "the interrupted build left {scratch:?} in place: {:?}",
        walk(&scratch)
    );
    // The next build, of any workspace, removes it (a build of a test running beside this one
    // may have done so already, so the set-aside directory is not looked for first).
    let other = Workspace::new();
    other.write(
        "b/BUILD",
        r#"genrule(name = "b", outs = ["b.txt"], cmd = "echo b > $@")"#,
    );
    other.kiln(&["build", "//b"]).ok();
    assert!(
        !set_aside.exists(),
        "another workspace's build left {set_aside:?}: {:?}",
        walk(&set_aside)
    );
}

/// Every path under `dir`, for a failure message.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        found.push(entry.path());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(walk(&entry.path()));
        }
    }
    found
}

#[test]
fn another_build_of_kiln_does_not_reuse_package_memos() {
    let ws = Workspace::new();
    ws.write(
        "a/BUILD",
        r#"genrule(name = "a", srcs = ["in.txt"], outs = ["a.txt"], cmd = "cat $< > $@")"#,
    );
    ws.write("a/in.txt", "1");
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
    // A changed source, so that the build is planned (a no-op replays without planning).
    ws.write("a/in.txt", "2");
    let second = planned(&run(&events));
    assert_eq!(second["packages_loaded"], 1, "{second}");
    assert_eq!(
        second["packages_evaluated"], 0,
        "the same binary reuses its memo"
    );
    ws.write("a/in.txt", "3");
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

    // No action's Command (argv, environment, platform) names a path of this host: not the
    // workspace, the cache, the home directory, nor where Go or Rust are installed.
    let mut host_paths: Vec<String> = vec![
        ws.root().display().to_string(),
        ws.cache_dir().display().to_string(),
    ];
    host_paths.extend(std::env::var("HOME").ok().filter(|h| h.len() > 1));
    for (tool, args) in [
        ("go", &["env", "GOROOT"][..]),
        ("rustc", &["--print", "sysroot"][..]),
    ] {
        #[allow(clippy::disallowed_methods)] // Asks the host's own tools where they live.
        let out = std::process::Command::new(tool)
            .args(args)
            .output()
            .unwrap();
        host_paths.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    let mnemonics = recorded_commands_naming(&ws, &host_paths);
    assert!(
        mnemonics.is_empty(),
        "Commands naming a host path (one of {host_paths:?}): {mnemonics:?}"
    );

    // The same sources elsewhere, sharing the cache: every action (compiles, links, build
    // scripts, tests) is a cache hit, so no key depends on where the checkout is.
    let moved = Workspace::sharing_cache(&ws);
    harness::copy_tree(&examples, moved.root());
    let again = moved.kiln(&["test", "//..."]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(
        again.summary()["executed"],
        0,
        "a checkout elsewhere reran {:?}",
        again.executed()
    );
}

/// Whether `text` holds `path` as a whole path (or a path's start): `/root` is in `HOME=/root`,
/// `-I/root/.cache` and `/root/.cache`, not in `src/os/root.go` nor `/rootfs`.
fn names_path(text: &str, path: &str) -> bool {
    let is_path_char = |c: char| c.is_alphanumeric() || "._-/".contains(c);
    text.match_indices(path).any(|(at, _)| {
        // The word the match sits in, up to it: a flag like `-I` is fine, a directory is not.
        let lead: String = text[..at]
            .chars()
            .rev()
            .take_while(|c| is_path_char(*c))
            .collect();
        let after = text[at + path.len()..].chars().next();
        !lead.contains('/') && after.is_none_or(|c| c == '/' || !is_path_char(c))
    })
}

/// `mnemonic label` of each action in the last build's history whose argv, environment or
/// platform properties contain one of `needles`.
fn recorded_commands_naming(ws: &Workspace, needles: &[String]) -> Vec<String> {
    let info = ws.kiln(&["info"]);
    let state = info
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("workspace_state: "))
        .expect("info names the workspace state");
    let db = rusqlite::Connection::open(std::path::Path::new(state).join("state.sqlite")).unwrap();
    let mut statement = db
        .prepare("SELECT mnemonic, label, argv, env, platform FROM actions")
        .unwrap();
    let rows = statement
        .query_map([], |row| {
            let blobs: Vec<Vec<u8>> = (2..5).map(|i| row.get(i)).collect::<Result<_, _>>()?;
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, blobs))
        })
        .unwrap();
    let mut seen = 0;
    let mut naming = Vec::new();
    for row in rows {
        let (mnemonic, label, blobs) = row.unwrap();
        seen += 1;
        let text = String::from_utf8_lossy(&blobs.concat()).into_owned();
        if let Some(needle) = needles.iter().find(|n| names_path(&text, n)) {
            naming.push(format!("{mnemonic} {label} names {needle}"));
        }
    }
    assert!(
        seen > 100,
        "the history holds the examples' actions ({seen})"
    );
    naming
}

#[test]
fn explain_names_the_changed_argument_environment_variable_and_output_mode() {
    let ws = Workspace::new();
    ws.write("t/check.sh", "#!/bin/bash\ntest -n \"$COLOUR\"\n");
    std::fs::set_permissions(
        ws.root().join("t/check.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let build = |cmd: &str, executable: &str, colour: &str| {
        format!(
            "genrule(name = \"g\", outs = [\"g.sh\"], cmd = \"{cmd}\", executable = {executable})\n\
             sh_test(name = \"t\", srcs = [\"check.sh\"], env = {{\"COLOUR\": \"{colour}\"}})\n"
        )
    };
    ws.write("t/BUILD", &build("echo one > $@", "False", "red"));
    assert_eq!(ws.kiln(&["test", "//t:all"]).code, 0);

    ws.write("t/BUILD", &build("echo two > $@", "False", "red"));
    ws.build_all();
    let explain = ws.kiln(&["explain", "//t:g"]);
    assert_eq!(explain.code, 0, "{}", explain.stderr);
    assert!(
        explain.stdout.contains("ran because its key changed")
            && explain.stdout.contains("argument 2 changed: `")
            && explain.stdout.contains("echo one >")
            && explain.stdout.contains("echo two >"),
        "{}",
        explain.stdout
    );

    ws.write("t/BUILD", &build("echo two > $@", "True", "red"));
    ws.build_all();
    let explain = ws.kiln(&["explain", "//t:g"]);
    assert!(
        explain
            .stdout
            .contains("platform property `kiln-executable-outputs` added"),
        "{}",
        explain.stdout
    );

    ws.write("t/BUILD", &build("echo two > $@", "True", "blue"));
    assert_eq!(ws.kiln(&["test", "//t:t"]).code, 0);
    let explain = ws.kiln(&["explain", "//t:t"]);
    assert!(
        explain
            .stdout
            .contains("environment variable `COLOUR` changed: red -> blue"),
        "{}",
        explain.stdout
    );
}

#[test]
fn names_path_finds_whole_paths_only() {
    assert!(names_path("HOME=/root", "/root"));
    assert!(names_path("-I/root/.cache/x", "/root"));
    assert!(names_path("\u{4}\0\0\0/root", "/root"));
    assert!(!names_path("src/os/root.go", "/root"));
    assert!(!names_path("/rootfs/bin", "/root"));
    assert!(!names_path("/kiln/execroot/x", "/root"));
}

#[test]
fn a_change_of_settings_re_evaluates_packages() {
    let ws = Workspace::new();
    ws.write(
        "a/BUILD",
        r#"genrule(name = "a", srcs = ["in.txt"], outs = ["a.txt"], cmd = "cat $< > $@")"#,
    );
    ws.write("a/in.txt", "1");
    let evaluated = |args: &[&str], content: &str| {
        ws.write("a/in.txt", content);
        let mut all = vec!["build", "//..."];
        all.extend(args);
        let out = ws.kiln(&all);
        out.ok();
        planned(&out.events)["packages_evaluated"].clone()
    };
    assert_eq!(evaluated(&[], "1"), 1);
    assert_eq!(evaluated(&[], "2"), 0, "same settings");
    assert_eq!(
        evaluated(&["-c", "opt"], "3"),
        1,
        "another compilation mode"
    );
    assert_eq!(evaluated(&["-c", "opt"], "4"), 0);
}
