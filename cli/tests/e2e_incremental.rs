//! Incremental builds: what reruns after an edit, early cutoff, globs, `.bzl` loads, `kiln-out/`
//! repairs and `kiln clean`.

mod harness;

use harness::{executed_labels, Workspace};

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// a/in.txt → //a:count (wc -l) → //a:twice → //b:final; a/other.txt → //a:other.
fn chain() -> Workspace {
    let ws = Workspace::new();
    ws.write("a/in.txt", "one\ntwo\n");
    ws.write("a/other.txt", "other\n");
    ws.write(
        "a/BUILD",
        r#"
genrule(name = "count", srcs = ["in.txt"], outs = ["count.txt"], cmd = "wc -l < $< > $@")
genrule(name = "twice", srcs = [":count"], outs = ["twice.txt"], cmd = "cat $< $< > $@", visibility = ["//visibility:public"])
genrule(name = "other", srcs = ["other.txt"], outs = ["other.out"], cmd = "tr a-z A-Z < $< > $@")
genrule(name = "upper", srcs = ["in.txt"], outs = ["upper.txt"], cmd = "tr a-z A-Z < $< > $@")
"#,
    );
    ws.write("b/BUILD", r#"genrule(name = "final", srcs = ["//a:twice"], outs = ["final.txt"], cmd = "cat $< > $@; echo end >> $@")"#);
    ws
}

#[test]
fn second_build_is_all_local_hits() {
    let ws = chain();
    let first = ws.build_all();
    assert_eq!(
        executed_labels(&first.events),
        s(&[
            "//a:count",
            "//a:other",
            "//a:twice",
            "//a:upper",
            "//b:final"
        ])
    );
    let second = ws.build_all();
    assert_eq!(second.executed(), vec![]);
    let summary = second.summary();
    assert_eq!(summary["executed"], 0);
    assert_eq!(summary["local_hits"], 5, "{summary}");
    assert_eq!(ws.read_out("b/final.txt"), "2\n2\nend\n");
}

#[test]
fn edit_reruns_exactly_dependents() {
    let ws = chain();
    ws.build_all();
    ws.write("a/in.txt", "one\ntwo\nthree\n");
    let out = ws.build_all();
    assert_eq!(
        executed_labels(&out.events),
        s(&["//a:count", "//a:twice", "//a:upper", "//b:final"])
    );
    assert_eq!(ws.read_out("b/final.txt"), "3\n3\nend\n");
    assert_eq!(ws.read_out("a/upper.txt"), "ONE\nTWO\nTHREE\n");
    ws.write("a/other.txt", "changed\n");
    let out = ws.build_all();
    assert_eq!(executed_labels(&out.events), s(&["//a:other"]));
    assert_eq!(ws.read_out("a/other.out"), "CHANGED\n");
}

#[test]
fn early_cutoff_stops_at_identical_output() {
    let ws = chain();
    ws.build_all();
    // Same line count, different content: count.txt is byte-identical.
    ws.write("a/in.txt", "uno\ndos\n");
    let out = ws.build_all();
    assert_eq!(executed_labels(&out.events), s(&["//a:count", "//a:upper"]));
    for label in ["//a:twice", "//b:final"] {
        let event = out
            .events
            .iter()
            .find(|e| e["type"] == "action" && e["label"] == label);
        if let Some(event) = event {
            assert_eq!(event["cache"], "local_hit", "{label}: {event}");
        }
    }
    assert_eq!(ws.read_out("a/upper.txt"), "UNO\nDOS\n");
    assert_eq!(ws.read_out("b/final.txt"), "2\n2\nend\n");
}

#[test]
fn changing_cmd_reruns_it_and_dependents() {
    let ws = chain();
    ws.build_all();
    let build = ws
        .read("a/BUILD")
        .replace("cat $< $< > $@", "cat $< $< $< > $@");
    ws.write("a/BUILD", &build);
    let out = ws.build_all();
    assert_eq!(executed_labels(&out.events), s(&["//a:twice", "//b:final"]));
    assert_eq!(ws.read_out("b/final.txt"), "2\n2\n2\nend\n");
}

#[test]
fn glob_picks_up_new_file() {
    let ws = Workspace::new();
    ws.write("g/x1.txt", "x1\n");
    ws.write("g/BUILD", r#"genrule(name = "all", srcs = glob(["*.txt"]), outs = ["all.out"], cmd = "cat $(SRCS) > $@")"#);
    ws.build_all();
    assert_eq!(ws.read_out("g/all.out"), "x1\n");
    // A no-op build in between records the package memo.
    assert_eq!(ws.build_all().executed(), vec![]);
    ws.write("g/x2.txt", "x2\n");
    let out = ws.build_all();
    assert_eq!(executed_labels(&out.events), s(&["//g:all"]));
    assert_eq!(ws.read_out("g/all.out"), "x1\nx2\n");
    ws.remove("g/x1.txt");
    ws.build_all();
    assert_eq!(ws.read_out("g/all.out"), "x2\n");
}

#[test]
fn bzl_edit_reevaluates() {
    let ws = Workspace::new();
    ws.write("m/BUILD", "");
    ws.write("m/defs.bzl", "def shout(name, src):\n    native.genrule(name = name, srcs = [src], outs = [name + \".txt\"], cmd = \"tr a-z A-Z < $< > $@\")\n");
    ws.write("p/in.txt", "hello\n");
    ws.write(
        "p/BUILD",
        "load(\"//m:defs.bzl\", \"shout\")\nshout(name = \"s\", src = \"in.txt\")\n",
    );
    ws.build_all();
    assert_eq!(ws.read_out("p/s.txt"), "HELLO\n");
    ws.write("m/defs.bzl", "def shout(name, src):\n    native.genrule(name = name, srcs = [src], outs = [name + \".txt\"], cmd = \"rev < $< > $@\")\n");
    let out = ws.build_all();
    assert_eq!(executed_labels(&out.events), s(&["//p:s"]));
    assert_eq!(ws.read_out("p/s.txt"), "olleh\n");
}

#[test]
fn kiln_out_edits_are_repaired_and_cache_unaffected() {
    let ws = chain();
    ws.build_all();
    // Scribble on one output (through the path, as a user would), delete another.
    let twice = ws.out_path("a/twice.txt");
    let mut perms = std::fs::metadata(&twice).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&twice, perms).unwrap();
    std::fs::write(&twice, "garbage\n").unwrap();
    std::fs::remove_file(ws.out_path("b/final.txt")).unwrap();
    let out = ws.build_all();
    assert_eq!(out.executed(), vec![], "outputs come back from the cache");
    assert_eq!(ws.read_out("a/twice.txt"), "2\n2\n");
    assert_eq!(ws.read_out("b/final.txt"), "2\n2\nend\n");
    // The cache still serves the right bytes to a fresh checkout.
    let copy = ws.copy_to(true);
    let out = copy.build_all();
    assert_eq!(out.summary()["executed"], 0);
    assert_eq!(copy.read_out("a/twice.txt"), "2\n2\n");
    assert_eq!(copy.read_out("b/final.txt"), "2\n2\nend\n");
}

#[test]
fn clean_then_build_restores_from_cache() {
    let ws = chain();
    ws.build_all();
    ws.kiln(&["clean"]).ok();
    assert!(!ws.root().join("kiln-out").exists());
    let out = ws.build_all();
    assert_eq!(out.summary()["executed"], 0);
    assert_eq!(out.summary()["local_hits"], 5);
    assert_eq!(ws.read_out("b/final.txt"), "2\n2\nend\n");
    assert_eq!(ws.read_out("a/other.out"), "OTHER\n");
}

#[test]
fn same_size_same_mtime_source_edit_is_seen() {
    let ws = chain();
    ws.build_all();
    let path = ws.root().join("a/other.txt");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    ws.write("a/other.txt", "OTHER\n");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let out = ws.build_all();
    assert_eq!(executed_labels(&out.events), s(&["//a:other"]));
    assert_eq!(ws.read_out("a/other.out"), "OTHER\n");
}

#[test]
fn transitive_bzl_edit_reevaluates() {
    let ws = Workspace::new();
    ws.write("m/BUILD", "");
    ws.write("m/inner.bzl", "CMD = \"tr a-z A-Z < $< > $@\"\n");
    ws.write(
        "m/outer.bzl",
        "load(\"//m:inner.bzl\", \"CMD\")\ndef shout(name, src):\n    native.genrule(name = name, srcs = [src], outs = [name + \".txt\"], cmd = CMD)\n",
    );
    ws.write("p/in.txt", "hello\n");
    ws.write(
        "p/BUILD",
        "load(\"//m:outer.bzl\", \"shout\")\nshout(name = \"s\", src = \"in.txt\")\n",
    );
    ws.build_all();
    assert_eq!(ws.read_out("p/s.txt"), "HELLO\n");
    ws.write("m/inner.bzl", "CMD = \"rev < $< > $@\"\n");
    let out = ws.build_all();
    assert_eq!(executed_labels(&out.events), s(&["//p:s"]));
    assert_eq!(ws.read_out("p/s.txt"), "olleh\n");
}

#[test]
fn recursive_glob_follows_subdirectories_and_package_boundaries() {
    let ws = Workspace::new();
    ws.write("g/a.txt", "top\n");
    ws.write("g/sub/deep/d1.txt", "d1\n");
    ws.write("g/BUILD", r#"genrule(name = "all", srcs = glob(["**/*.txt"]), outs = ["all.out"], cmd = "cat $(SRCS) > $@")"#);
    ws.build_all();
    assert_eq!(ws.read_out("g/all.out"), "top\nd1\n");
    ws.write("g/sub/deep/d2.txt", "d2\n");
    ws.build_all();
    assert_eq!(ws.read_out("g/all.out"), "top\nd1\nd2\n");
    // A BUILD file makes `deep` its own package: the glob stops there.
    ws.write("g/sub/deep/BUILD", "");
    ws.build_all();
    assert_eq!(ws.read_out("g/all.out"), "top\n");
    ws.remove("g/sub/deep/BUILD");
    ws.build_all();
    assert_eq!(ws.read_out("g/all.out"), "top\nd1\nd2\n");
}
