//! What a user sees of a build besides its outputs: the `--events` schema, the summary line,
//! the progress line on a terminal, `--keep_going`, Ctrl-C, the warning when namespaces are
//! missing, where the cache lives, and the order recorded durations give to actions.

mod harness;

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use harness::Workspace;
use serde_json::Value;

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

#[test]
fn events_describe_every_action_and_target_and_end_with_the_summary() {
    let ws = Workspace::new();
    ws.write(
        "a/BUILD",
        r#"
genrule(name = "one", outs = ["one.txt"], cmd = "echo 1 > $@", message = "Making one")
genrule(name = "two", srcs = [":one"], outs = ["two.txt"], cmd = "cat $< > $@")
"#,
    );
    let out = ws.build_all();
    let started = of_type(&out.events, "action_started");
    let one = started.iter().find(|e| e["label"] == "//a:one").unwrap();
    assert_eq!(one["mnemonic"], "Genrule");
    assert_eq!(
        one["message"], "Making one //a:one",
        "as Bazel: the message, then the label"
    );
    let actions = of_type(&out.events, "action");
    assert_eq!(actions.len(), 2);
    for action in &actions {
        assert_eq!(action["cache"], "executed", "{action}");
        assert_eq!(action["success"], true, "{action}");
        assert!(action["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0));
        assert!(action["key"].as_str().is_some_and(|k| !k.is_empty()));
    }
    let targets = of_type(&out.events, "target");
    let mut labels: Vec<_> = targets
        .iter()
        .map(|t| t["label"].as_str().unwrap())
        .collect();
    labels.sort();
    assert_eq!(labels, ["//a:one", "//a:two"]);
    let two = targets.iter().find(|t| t["label"] == "//a:two").unwrap();
    assert_eq!(two["success"], true);
    assert_eq!(
        two["outputs"],
        serde_json::json!(["kiln-out/bin/a/two.txt"])
    );
    let last = out.events.last().unwrap();
    assert_eq!(last["type"], "summary", "the summary is the last event");
    assert_eq!(
        (last["executed"].as_u64(), last["success"].as_bool()),
        (Some(2), Some(true))
    );
    assert!(
        out.stderr.contains(
            "Build completed successfully, 2 actions: 2 executed, 0 local cache hits, 0 remote cache hits"
        ),
        "{}",
        out.stderr
    );
    let again = ws.build_all();
    assert!(
        again
            .stderr
            .contains("2 actions: 0 executed, 2 local cache hits"),
        "{}",
        again.stderr
    );
}

#[test]
fn keep_going_builds_everything_that_does_not_depend_on_a_failure() {
    let ws = Workspace::new();
    ws.write(
        "a/BUILD",
        r#"
genrule(name = "bad", outs = ["bad.txt"], cmd = "exit 3")
genrule(name = "after_bad", srcs = [":bad"], outs = ["after.txt"], cmd = "cat $< > $@")
genrule(name = "good", outs = ["good.txt"], cmd = "echo good > $@")
genrule(name = "after_good", srcs = [":good"], outs = ["after_good.txt"], cmd = "cat $< > $@")
"#,
    );
    let out = ws.kiln(&["build", "//...", "-k", "--jobs=1"]);
    out.expect_code(1);
    assert_eq!(ws.read_out("a/after_good.txt"), "good\n");
    assert!(!ws.out_path("a/after.txt").exists());
    let failed: Vec<_> = of_type(&out.events, "target")
        .into_iter()
        .filter(|t| t["success"] == false)
        .map(|t| t["label"].as_str().unwrap().to_string())
        .collect();
    assert!(failed.contains(&"//a:bad".to_string()), "{failed:?}");
    assert!(out.stderr.contains("//a:bad"), "{}", out.stderr);
    assert_eq!(harness::summary(&out.events)["success"], false);
}

#[test]
fn ctrl_c_stops_the_build_with_exit_code_8() {
    let ws = Workspace::new();
    ws.write(
        "a/BUILD",
        r#"genrule(name = "slow", outs = ["slow.txt"], cmd = "sleep 120; touch $@")"#,
    );
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let mut child = ws
        .command(&["build", "//...", &format!("--events={}", events.display())])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&events, "\"action_started\"");
    #[allow(clippy::disallowed_methods)] // Tests drive the real binary.
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = child.wait().unwrap().code();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(code, Some(8), "{stderr}");
    assert!(!ws.out_path("a/slow.txt").exists());
}

/// Waits until `file` holds `needle` (a started action's event is flushed as it happens).
fn wait_for(file: &Path, needle: &str) {
    let start = Instant::now();
    while !std::fs::read_to_string(file).is_ok_and(|t| t.contains(needle)) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no {needle} in {file:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_terminal_gets_a_progress_line_and_a_pipe_does_not() {
    let ws = Workspace::new();
    ws.write(
        "a/BUILD",
        r#"genrule(name = "x", outs = ["x.txt"], cmd = "sleep 0.3; echo x > $@")"#,
    );
    let kiln = env!("CARGO_BIN_EXE_kiln");
    // `script` runs kiln on a pseudo-terminal and copies what it writes there to stdout.
    #[allow(clippy::disallowed_methods)] // Tests drive the real binary.
    let out = std::process::Command::new("script")
        .args(["-qec", &format!("{kiln} build //..."), "/dev/null"])
        .current_dir(ws.root())
        .env("KILN_CACHE_DIR", ws.cache_dir())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    let progress = regex_lite_progress(&shown);
    assert!(
        progress,
        "no [done/total] progress line on the terminal:\n{shown:?}"
    );
    assert!(shown.contains("Build completed successfully"), "{shown}");
    ws.write(
        "a/BUILD",
        r#"genrule(name = "x", outs = ["x.txt"], cmd = "echo y > $@")"#,
    );
    let piped = ws.build_all();
    assert!(!regex_lite_progress(&piped.stderr), "{}", piped.stderr);
    assert!(!piped.stderr.contains('\r'), "{:?}", piped.stderr);
}

/// Whether `text` holds `[N/M]` with digits.
fn regex_lite_progress(text: &str) -> bool {
    text.split('[').skip(1).any(|rest| {
        let Some((inside, _)) = rest.split_once(']') else {
            return false;
        };
        let Some((done, total)) = inside.split_once('/') else {
            return false;
        };
        !done.is_empty()
            && !total.is_empty()
            && done.bytes().all(|b| b.is_ascii_digit())
            && total.bytes().all(|b| b.is_ascii_digit())
    })
}

#[test]
fn without_namespaces_kiln_says_so_once_and_builds_unisolated() {
    let ws = Workspace::new();
    for p in ["a", "b", "c"] {
        ws.write(
            &format!("{p}/BUILD"),
            &format!(r#"genrule(name = "{p}", outs = ["{p}.txt"], cmd = "echo {p} > $@")"#),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let kiln = ws.command(&["build", "//...", &format!("--events={}", events.display())]);
    // In a user namespace that may create no other, the probe fails, as on a host that
    // forbids unprivileged user namespaces.
    #[allow(clippy::disallowed_methods)] // Tests drive the real binary.
    let out = std::process::Command::new("unshare")
        .args([
            "-U",
            "-r",
            "sh",
            "-c",
            "echo 0 > /proc/sys/user/max_user_namespaces && exec \"$0\" \"$@\"",
        ])
        .arg(kiln.get_program())
        .args(kiln.get_args())
        .current_dir(ws.root())
        .envs(
            kiln.get_envs()
                .filter_map(|(k, v)| v.map(|v| (k.to_os_string(), v.to_os_string()))),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr.matches("Linux namespaces are unavailable").count(),
        1,
        "{stderr}"
    );
    let text = std::fs::read_to_string(&events).unwrap();
    let warnings = text.lines().filter(|l| l.contains("\"warning\"")).count();
    assert_eq!(warnings, 1, "{text}");
    assert_eq!(ws.read_out("b/b.txt"), "b\n");
}

#[test]
fn the_cache_is_the_flag_else_the_config_else_kiln_cache_dir_else_xdg_else_home() {
    let ws = Workspace::new();
    let dirs = tempfile::tempdir().unwrap();
    let (xdg, home) = (dirs.path().join("xdg"), dirs.path().join("home"));
    let info = |args: &[&str], env: &[(&str, &Path)]| -> String {
        let mut all = vec!["info"];
        all.extend(args);
        let mut cmd = ws.command(&all);
        cmd.env_remove("KILN_CACHE_DIR")
            .env_remove("XDG_CACHE_HOME")
            .env_remove("HOME");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text.lines()
            .find_map(|l| l.strip_prefix("cache_dir: "))
            .unwrap_or_else(|| panic!("no cache_dir in {text}"))
            .to_string()
    };
    let show = |p: &Path| p.display().to_string();
    assert_eq!(
        info(&[], &[("HOME", &home)]),
        show(&home.join(".cache/kiln"))
    );
    let both = [("HOME", home.as_path()), ("XDG_CACHE_HOME", xdg.as_path())];
    assert_eq!(info(&[], &both), show(&xdg.join("kiln")));
    // A relative XDG_CACHE_HOME is ignored, as the XDG spec says.
    let relative = [
        ("HOME", home.as_path()),
        ("XDG_CACHE_HOME", Path::new("rel")),
    ];
    assert_eq!(info(&[], &relative), show(&home.join(".cache/kiln")));
    let explicit = dirs.path().join("explicit");
    let with_var = [
        ("HOME", home.as_path()),
        ("XDG_CACHE_HOME", xdg.as_path()),
        ("KILN_CACHE_DIR", explicit.as_path()),
    ];
    assert_eq!(info(&[], &with_var), show(&explicit));
    let configured = dirs.path().join("configured");
    ws.write(
        "kiln.toml",
        &format!("[cache]\ndir = \"{}\"\n", configured.display()),
    );
    assert_eq!(info(&[], &with_var), show(&configured));
    let flag = dirs.path().join("flag");
    let flag_arg = format!("--cache_dir={}", flag.display());
    assert_eq!(info(&[&flag_arg], &with_var), show(&flag));
    // And a build really stores there.
    ws.write(
        "a/BUILD",
        r#"genrule(name = "a", outs = ["a.txt"], cmd = "echo a > $@")"#,
    );
    let out = ws
        .command(&["build", "//..."])
        .env_remove("KILN_CACHE_DIR")
        .env("HOME", &home)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(configured.join("cas").is_dir());
    assert!(configured.join("ac.sqlite").is_file());
    assert!(!home.join(".cache").exists());
}

#[test]
fn durations_recorded_in_one_build_start_the_slowest_action_first_in_the_next() {
    let ws = Workspace::new();
    ws.write("p/in.txt", "1");
    let mut build = String::new();
    for name in ["a", "b", "c", "z_slow"] {
        let sleep = if name == "z_slow" { "sleep 1; " } else { "" };
        build.push_str(&format!(
            "genrule(name = \"{name}\", srcs = [\"in.txt\"], outs = [\"{name}.txt\"], \
             cmd = \"{sleep}cat $< > $@\")\n"
        ));
    }
    ws.write("p/BUILD", &build);
    let first_started = |out: &harness::Output| -> String {
        of_type(&out.events, "action_started")[0]["label"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let first = ws.kiln(&["build", "//...", "--jobs=1"]);
    first.ok();
    assert_ne!(
        first_started(&first),
        "//p:z_slow",
        "without a history the slow action is not known to be slow"
    );
    ws.write("p/in.txt", "2");
    let second = ws.kiln(&["build", "//...", "--jobs=1"]);
    second.ok();
    assert_eq!(first_started(&second), "//p:z_slow");
}

#[test]
fn genrule_outs_and_the_directory_variables_name_every_output() {
    let ws = Workspace::new();
    ws.write(
        "a/BUILD",
        r#"
genrule(
    name = "many",
    outs = ["x.txt", "sub/y.txt", "dirs.txt"],
    cmd = "for f in $(OUTS); do echo $$f > $$f; done; echo $(@D) $(RULEDIR) > $(@D)/dirs.txt",
    message = "Writing many",
)
"#,
    );
    // Bazel: with several outs, `$(@D)` is the package's output directory.
    let out = ws.kiln(&["build", "//a:many"]);
    out.ok();
    assert_eq!(ws.read_out("a/x.txt"), "kiln-out/bin/a/x.txt\n");
    assert_eq!(ws.read_out("a/sub/y.txt"), "kiln-out/bin/a/sub/y.txt\n");
    assert_eq!(ws.read_out("a/dirs.txt"), "kiln-out/bin/a kiln-out/bin/a\n");
    let started = of_type(&out.events, "action_started");
    assert_eq!(started[0]["message"], "Writing many //a:many");
    // With one out, `$(@D)` is that file's directory.
    ws.write(
        "a/BUILD",
        r#"genrule(name = "one", outs = ["deep/one.txt"], cmd = "echo $(@D) > $@")"#,
    );
    ws.kiln(&["build", "//a:one"]).ok();
    assert_eq!(ws.read_out("a/deep/one.txt"), "kiln-out/bin/a/deep\n");
}
