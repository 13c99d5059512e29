//! What `kiln watch` watches and what it notices besides edits: only the directories the targets
//! rest on once a round has said which (a glob's hidden directory included, new directories
//! followed, unrelated packages not watched); a `kiln build` in another terminal waits for the
//! round and the watch then puts `kiln-out/` back; when inotify runs out of instances or watches
//! (lowered in a user namespace of the test's own) it says so and scans instead, still seeing
//! edits.

mod harness;

use std::time::{Duration, Instant};

use harness::watch::{Watch, DEADLINE};
use harness::Workspace;
use serde_json::Value;

/// The `watch_scope` event of round `n` (written just after the round's summary).
#[track_caller]
fn scope_of(watch: &Watch, n: u64) -> Value {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        if let Some(scope) = watch
            .events()
            .into_iter()
            .find(|e| e["type"] == "watch_scope" && e["round"] == n)
        {
            return scope;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no watch_scope for round {n}\n{}", watch.stderr())
}

/// The `changed` list announced for round `n`.
#[track_caller]
fn changed_in(watch: &Watch, n: u64) -> Vec<String> {
    let round = watch
        .events()
        .into_iter()
        .find(|e| e["type"] == "watch_round" && e["round"] == n)
        .unwrap_or_else(|| panic!("no round {n}\n{}", watch.stderr()));
    round["changed"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// `kiln-out/bin/<path>` now, empty while a round replaces it.
fn out(ws: &Workspace, path: &str) -> String {
    std::fs::read_to_string(ws.out_path(path)).unwrap_or_default()
}

/// Waits until `kiln-out/bin/<path>` holds `expected` (a round may need a second one when a file
/// lands after the first listed its directory).
#[track_caller]
fn wait_for_output(ws: &Workspace, watch: &Watch, path: &str, expected: &str) {
    let start = Instant::now();
    while out(ws, path) != expected && start.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(ws.read_out(path), expected, "{}", watch.stderr());
}

/// A package whose glob reads a hidden directory, and an unrelated package.
fn globbing_workspace() -> Workspace {
    let ws = Workspace::new();
    ws.write(
        "app/BUILD",
        r#"genrule(name = "cfg", srcs = glob([".cfg/**"]), outs = ["all.txt"], cmd = "cat $(SRCS) > $@")"#,
    );
    ws.write("app/.cfg/a.txt", "a\n");
    // A root package the targets do not use: its directory is watched (an ancestor).
    ws.write("BUILD.bazel", "# nothing here\n");
    ws.write(
        "unrelated/BUILD",
        r#"genrule(name = "u", outs = ["u.txt"], cmd = "echo u > $@")"#,
    );
    ws
}

#[test]
fn after_a_round_only_what_the_targets_rest_on_is_watched_hidden_and_new_directories_included() {
    let ws = globbing_workspace();
    let watch = Watch::start(&ws, &["build", "//app:cfg"]);
    assert_eq!(watch.wait_round(1)["success"], true, "{}", watch.stderr());
    assert_eq!(ws.read_out("app/all.txt"), "a\n");
    // The root, app, app/.cfg and the workspace state: not unrelated/.
    let watched = scope_of(&watch, 1)["watched_dirs"].as_u64();
    assert_eq!(watched, Some(4), "{}", watch.stderr());

    ws.write(
        "unrelated/BUILD",
        r#"genrule(name = "u", outs = ["u.txt"], cmd = "echo changed > $@")"#,
    );
    // Rewriting the unused root BUILD file with the same bytes, twice, starts nothing either.
    ws.write("BUILD.bazel", "# nothing here\n");
    std::thread::sleep(Duration::from_millis(200));
    ws.write("BUILD.bazel", "# nothing here\n");
    watch.assert_no_round_after(1);

    ws.write("app/.cfg/a.txt", "a2\n");
    assert_eq!(watch.wait_round(2)["success"], true, "{}", watch.stderr());
    assert_eq!(ws.read_out("app/all.txt"), "a2\n");

    // A new directory (with a file already in it) under the globbed one, then an edit inside it.
    std::fs::create_dir_all(ws.root().join("app/.cfg/new/deeper")).expect("mkdir");
    ws.write("app/.cfg/new/deeper/b.txt", "b\n");
    assert_eq!(watch.wait_round(3)["success"], true, "{}", watch.stderr());
    wait_for_output(&ws, &watch, "app/all.txt", "a2\nb\n");
    ws.write("app/.cfg/new/deeper/b.txt", "b2\n");
    wait_for_output(&ws, &watch, "app/all.txt", "a2\nb2\n");
}

#[test]
fn a_build_in_another_terminal_waits_for_the_round_and_the_watch_then_restores_kiln_out() {
    let ws = Workspace::new();
    ws.write(
        "p/BUILD",
        r#"
genrule(name = "mode", outs = ["mode.txt"], cmd = "echo $(COMPILATION_MODE) > $@")
genrule(name = "slow", srcs = ["slow.in"], outs = ["slow.txt"], cmd = "sleep 6; cp $< $@")
"#,
    );
    ws.write("p/slow.in", "one\n");
    let watch = Watch::start(&ws, &["build", "//p:all"]);
    assert_eq!(watch.wait_round(1)["success"], true, "{}", watch.stderr());
    assert_eq!(ws.read_out("p/mode.txt"), "fastbuild\n");

    // Between rounds the watch leaves the lock alone (it does not poll it)...
    let lock_files: Vec<_> = std::fs::read_dir(ws.cache_dir().join("workspaces"))
        .expect("workspaces dir")
        .flatten()
        .map(|e| e.path().join("lock"))
        .collect();
    let stamp = |files: &[std::path::PathBuf]| -> Vec<_> {
        files
            .iter()
            .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
            .collect()
    };
    std::thread::sleep(Duration::from_millis(300));
    let before = stamp(&lock_files);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        stamp(&lock_files),
        before,
        "an idle watch rewrote the lock file"
    );
    // ...and a build that changes nothing of its outputs starts no round.
    let same = ws.kiln(&["build", "//p:mode"]);
    assert_eq!(same.code, 0, "{}", same.stderr);
    assert!(!same.stderr.contains("Waiting"), "{}", same.stderr);
    watch.assert_no_round_after(1);

    ws.write("p/slow.in", "two\n");
    watch.wait_action_started(2);
    let other = ws.kiln(&["build", "-c", "opt", "//p:mode"]);
    assert_eq!(other.code, 0, "{}", other.stderr);
    assert!(
        other.stderr.contains("Waiting for another kiln process"),
        "the other build should have waited for the round:\n{}",
        other.stderr
    );
    assert_eq!(watch.wait_round(2)["success"], true, "{}", watch.stderr());
    assert_eq!(ws.read_out("p/slow.txt"), "two\n");

    // The other build left opt outputs; the watch notices and puts its own back.
    let done = watch.wait_round(3);
    assert_eq!(done["success"], true, "{}", watch.stderr());
    let changed = changed_in(&watch, 3);
    assert!(
        changed.iter().any(|c| c.contains("another kiln build")),
        "{changed:?}"
    );
    assert_eq!(ws.read_out("p/mode.txt"), "fastbuild\n");
    watch.assert_no_round_after(3);
}

#[test]
fn without_inotify_instances_the_watch_says_so_and_scans() {
    let ws = globbing_workspace();
    let watch = Watch::start_in_user_namespace(
        &ws,
        &["build", "//app:cfg"],
        "echo 0 > /proc/sys/user/max_inotify_instances",
    );
    assert_eq!(watch.wait_round(1)["success"], true, "{}", watch.stderr());
    assert!(
        watch
            .stderr()
            .contains("sudo sysctl fs.inotify.max_user_instances="),
        "{}",
        watch.stderr()
    );
    assert_eq!(scope_of(&watch, 1)["scanning"], true);
    ws.write("app/.cfg/a.txt", "scanned\n");
    assert_eq!(watch.wait_round(2)["success"], true, "{}", watch.stderr());
    assert_eq!(ws.read_out("app/all.txt"), "scanned\n");
}

#[test]
fn running_out_of_watches_after_start_up_falls_back_to_scanning() {
    let ws = globbing_workspace();
    // At start: the root, app, unrelated and the state (app/.cfg is hidden); after round 1: the
    // root, app, app/.cfg and the state. Two more directories do not fit.
    let watch = Watch::start_in_user_namespace(
        &ws,
        &["build", "//app:cfg"],
        "echo 5 > /proc/sys/user/max_inotify_watches",
    );
    assert_eq!(watch.wait_round(1)["success"], true, "{}", watch.stderr());
    assert_eq!(scope_of(&watch, 1)["scanning"], false, "{}", watch.stderr());
    std::fs::create_dir_all(ws.root().join("app/.cfg/n1/n2")).expect("mkdir");
    ws.write("app/.cfg/n1/n2/f.txt", "f\n");
    wait_for_output(&ws, &watch, "app/all.txt", "a\nf\n");
    // The round that listed the new directories ran out of watches when it moved them.
    let scanning = |e: &Value| e["type"] == "watch_scope" && e["scanning"] == true;
    let start = Instant::now();
    while !watch.events().iter().any(scanning) && start.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(watch.events().iter().any(scanning), "{}", watch.stderr());
    assert!(
        watch
            .stderr()
            .contains("sudo sysctl fs.inotify.max_user_watches="),
        "{}",
        watch.stderr()
    );
    ws.write("app/.cfg/n1/n2/f.txt", "f2\n");
    wait_for_output(&ws, &watch, "app/all.txt", "a\nf2\n");
}
