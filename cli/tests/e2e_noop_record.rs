//! The no-op record: an unchanged workspace is answered without loading or analysis, right after
//! the build before it too (files in the 2-second racy window are checked by content); any change
//! to a source, a BUILD file, a directory listing or an output in kiln-out sends the build down
//! the normal path with correct results.

mod harness;

use std::time::Duration;

use harness::Workspace;
use serde_json::Value;

/// Whether the build was answered from the no-op record (it loads no package).
fn replayed(events: &[Value]) -> bool {
    events
        .iter()
        .find(|e| e["type"] == "planned")
        .is_some_and(|e| e["packages_loaded"] == 0)
}

/// Lets every file age past the racy window, then builds twice: the first build writes the
/// record, the second must be answered from it.
fn settle(ws: &Workspace) {
    std::thread::sleep(Duration::from_millis(2100));
    let first = ws.build_all();
    assert_eq!(first.code, 0, "{}", first.stderr);
    let second = ws.build_all();
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        replayed(&second.events),
        "an unchanged, settled workspace must replay: {:?}",
        second.events
    );
    assert_eq!(second.summary()["executed"], 0);
}

fn workspace() -> Workspace {
    let ws = Workspace::new();
    ws.write("a/in.txt", "hello\n");
    ws.write("a/more/x.txt", "x\n");
    ws.write(
        "a/BUILD",
        r#"
genrule(name = "up", srcs = ["in.txt"], outs = ["up.txt"], cmd = "tr a-z A-Z < $< > $@", visibility = ["//visibility:public"])
genrule(name = "all", srcs = glob(["more/*.txt"]), outs = ["all.txt"], cmd = "cat $(SRCS) > $@")
"#,
    );
    ws.write(
        "b/BUILD",
        r#"genrule(name = "b", srcs = ["//a:up"], outs = ["b.txt"], cmd = "cat $< $< > $@")"#,
    );
    let out = ws.build_all();
    assert_eq!(out.code, 0, "{}", out.stderr);
    ws
}

#[test]
fn every_kind_of_change_leaves_the_record() {
    let ws = workspace();
    settle(&ws);

    // A same-size edit of a source.
    ws.write("a/in.txt", "jello\n");
    let out = ws.build_all();
    assert!(!replayed(&out.events));
    assert_eq!(ws.read_out("b/b.txt"), "JELLO\nJELLO\n");
    settle(&ws);

    // A new file matched by a glob.
    ws.write("a/more/y.txt", "y\n");
    let out = ws.build_all();
    assert!(!replayed(&out.events));
    assert_eq!(ws.read_out("a/all.txt"), "x\ny\n");
    settle(&ws);

    // An output deleted, then one scribbled on, in kiln-out.
    std::fs::remove_file(ws.out_path("b/b.txt")).unwrap();
    let out = ws.build_all();
    assert!(!replayed(&out.events));
    assert_eq!(ws.read_out("b/b.txt"), "JELLO\nJELLO\n");
    settle(&ws);
    std::fs::write(ws.out_path("a/up.txt"), "XXXXXX").unwrap();
    let out = ws.build_all();
    assert!(!replayed(&out.events));
    assert_eq!(ws.read_out("a/up.txt"), "JELLO\n");
    settle(&ws);

    // A new package.
    ws.write(
        "c/BUILD",
        r#"genrule(name = "c", outs = ["c.txt"], cmd = "echo new > $@")"#,
    );
    let out = ws.build_all();
    assert!(!replayed(&out.events));
    assert_eq!(ws.read_out("c/c.txt"), "new\n");
    settle(&ws);

    // A BUILD edit.
    ws.write(
        "b/BUILD",
        r#"genrule(name = "b", srcs = ["//a:up"], outs = ["b.txt"], cmd = "cat $< > $@")"#,
    );
    let out = ws.build_all();
    assert!(!replayed(&out.events));
    assert_eq!(ws.read_out("b/b.txt"), "JELLO\n");
}

#[test]
fn inside_the_racy_window_a_rebuild_replays_and_every_change_is_still_seen() {
    // No sleeps: every source and output below is younger than the racy window.
    let ws = workspace();
    let out = ws.build_all();
    assert!(
        replayed(&out.events),
        "a build right after a build replays: {:?}",
        out.events
    );

    ws.write("a/in.txt", "jello\n");
    let out = ws.build_all();
    assert!(!replayed(&out.events), "a same-size edit");
    assert_eq!(ws.read_out("b/b.txt"), "JELLO\nJELLO\n");
    // The outputs this build replaced are recorded with their new content only.
    let out = ws.build_all();
    assert!(replayed(&out.events), "after outputs were replaced");

    std::fs::write(ws.out_path("a/up.txt"), "XXXXXX").unwrap();
    let out = ws.build_all();
    assert!(!replayed(&out.events), "an output scribbled on");
    assert_eq!(ws.read_out("a/up.txt"), "JELLO\n");
    let out = ws.build_all();
    assert!(replayed(&out.events));
    assert_eq!(out.summary()["executed"], 0);
}

#[test]
fn a_different_request_does_not_replay() {
    let ws = workspace();
    settle(&ws);
    let out = ws.kiln(&["build", "//a:up"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!replayed(&out.events), "the record belongs to `//...`");
    let out = ws.kiln(&["build", "//...", "-c", "opt"]);
    assert!(!replayed(&out.events), "settings are part of the request");
}

#[test]
fn a_new_file_in_a_hidden_globbed_directory_leaves_the_record() {
    let ws = Workspace::new();
    ws.write(".cfg/a.txt", "a\n");
    ws.write("BUILD", r#"genrule(name = "all", srcs = glob([".cfg/*.txt"]), outs = ["all.txt"], cmd = "cat $(SRCS) > $@")"#);
    ws.build_all();
    settle(&ws);
    ws.write(".cfg/b.txt", "b\n");
    let out = ws.build_all();
    assert!(!replayed(&out.events), "a glob listing changed");
    assert_eq!(ws.read_out("all.txt"), "a\nb\n");
}

#[test]
fn a_deleted_junit_file_is_written_again() {
    let ws = Workspace::new();
    ws.write("t/ok.sh", "#!/bin/bash\necho fine\n");
    std::fs::set_permissions(
        ws.root().join("t/ok.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    ws.write("t/BUILD", r#"sh_test(name = "ok", srcs = ["ok.sh"])"#);
    let test = || {
        let out = ws.kiln(&["test", "//t:ok"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        out
    };
    test();
    std::thread::sleep(Duration::from_millis(2100));
    test();
    assert!(
        replayed(&test().events),
        "a settled, unchanged test run replays"
    );
    let xml = ws.root().join("kiln-out/testlogs/t/ok/test.xml");
    std::fs::remove_file(&xml).unwrap();
    let out = test();
    assert!(!replayed(&out.events));
    assert!(xml.exists(), "the JUnit file is back");
}
