//! Robustness: concurrent builds, a corrupt CAS blob, a truncated action-cache entry, and a build
//! killed with SIGKILL.

mod harness;

use std::path::PathBuf;
use std::time::Duration;

use harness::Workspace;

fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}

fn small() -> Workspace {
    let ws = Workspace::new();
    ws.write("p/in.txt", "some input that is unique 9f3a\n");
    ws.write(
        "p/BUILD",
        r#"
genrule(name = "a", srcs = ["in.txt"], outs = ["a.txt"], cmd = "tr a-z A-Z < $< > $@")
genrule(name = "b", srcs = [":a"], outs = ["b.txt"], cmd = "cat $< $< > $@")
"#,
    );
    ws
}

#[test]
fn concurrent_builds_both_succeed() {
    let ws = Workspace::new();
    let mut build = String::new();
    for i in 0..6 {
        build.push_str(&format!(
            "genrule(name = \"g{i}\", outs = [\"g{i}.txt\"], cmd = \"sleep 0.2; echo {i} > $@\")\n"
        ));
    }
    ws.write("p/BUILD", &build);
    let mut first = ws.command(&["build", "//..."]);
    let mut second = ws.command(&["build", "//..."]);
    let a = first
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let b = second
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let a = a.wait_with_output().unwrap();
    let b = b.wait_with_output().unwrap();
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    for i in 0..6 {
        assert_eq!(ws.read_out(&format!("p/g{i}.txt")), format!("{i}\n"));
    }
}

#[test]
fn corrupt_cas_blob_is_never_materialized() {
    let ws = small();
    ws.build_all();
    let expected = ws.read_out("p/a.txt");
    let corrupted = ws.tamper_with_blobs(expected.as_bytes(), |b| vec![b'#'; b.len()]);
    assert_eq!(corrupted, 1, "the output's blob should be in the CAS once");
    std::fs::remove_dir_all(ws.root().join("kiln-out")).unwrap();
    let out = ws.build_all();
    assert_eq!(
        ws.read_out("p/a.txt"),
        expected,
        "a corrupt blob was materialized"
    );
    assert_eq!(ws.read_out("p/b.txt"), expected.repeat(2));
    assert!(
        out.executed().iter().any(|(l, _)| l == "//p:a"),
        "//p:a should have been rebuilt: {:?}",
        out.executed()
    );
    assert_blob_reported_and_replaced(&ws, &out, expected.as_bytes());
}

/// The build's stderr names the damaged blob by its digest, and the store holds an intact copy
/// again (exactly one file with that content), which the next build serves.
fn assert_blob_reported_and_replaced(ws: &Workspace, out: &harness::Output, content: &[u8]) {
    let digest = kiln_cache::Digest::of_bytes(kiln_cache::DigestFunction::Blake3, content);
    assert!(
        out.stderr.contains("WARNING: Removed corrupt cache blob")
            && out.stderr.contains(&format!("(expected `{digest}`)")),
        "the damaged blob is reported by digest {digest}: {}",
        out.stderr
    );
    assert_eq!(
        ws.tamper_with_blobs(content, |b| b.to_vec()),
        1,
        "the blob is stored intact again"
    );
    std::fs::remove_dir_all(ws.root().join("kiln-out")).unwrap();
    let again = ws.build_all();
    assert_eq!(again.summary()["executed"], 0, "{}", again.stderr);
    assert!(!again.stderr.contains("WARNING"), "{}", again.stderr);
}

#[test]
fn truncated_action_cache_entry_is_a_miss() {
    let ws = small();
    let first = ws.build_all();
    let key = first
        .events
        .iter()
        .find(|e| e["type"] == "action" && e["label"] == "//p:b")
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    // Cut the stored entry in half, as a torn write would.
    let db = rusqlite::Connection::open(ws.cache_dir().join("ac.sqlite")).unwrap();
    let cut = db
        .execute(
            "UPDATE action_results SET entry = substr(entry, 1, length(entry) / 2) \
             WHERE hex(hash) = upper(?1)",
            [&key],
        )
        .unwrap();
    assert_eq!(cut, 1, "no AC entry for key {key}");
    drop(db);
    std::fs::remove_dir_all(ws.root().join("kiln-out")).unwrap();
    let out = ws.build_all();
    assert_eq!(
        out.executed(),
        vec![("//p:b".to_string(), "Genrule".to_string())]
    );
    assert_eq!(ws.read_out("p/b.txt"), ws.read_out("p/a.txt").repeat(2));
    assert!(
        out.stderr
            .contains("WARNING: Removed corrupt action-cache entry")
            && out.stderr.contains(&key),
        "the damaged entry is reported with its action key: {}",
        out.stderr
    );
    // Replaced by the rerun: the next build from an empty output tree hits it.
    std::fs::remove_dir_all(ws.root().join("kiln-out")).unwrap();
    let again = ws.build_all();
    assert_eq!(again.summary()["executed"], 0, "{}", again.stderr);
}

/// Twenty actions in five chains, each sleeping 0.3 s and writing ~250 KB, so a build takes
/// seconds and a kill can land while outputs are being stored, materialized or committed.
/// `round` salts every command so each round's build has all of its work to do again.
fn slow_workspace(ws: &Workspace, round: usize) {
    let mut build = String::new();
    for i in 0..20 {
        let dep = if i >= 5 {
            format!("srcs = [\":s{}\"], ", i - 5)
        } else {
            String::new()
        };
        let cat = if i >= 5 { "cat $(SRCS) > $@; " } else { "" };
        build.push_str(&format!(
            "genrule(name = \"s{i}\", {dep}outs = [\"s{i}.txt\"], \
             cmd = \"sleep 0.3; {cat}seq -f line{i}-round{round}-%g 12000 >> $@\")\n"
        ));
    }
    ws.write("slow/BUILD", &build);
}

#[test]
fn kill_9_mid_build_then_rebuild_is_correct() {
    // Several moments: while loading, early actions, mid-way, and late in the build; each round
    // edits every command first, so the killed build always has work in flight. The rebuild then
    // continues from whatever the killed build left and must equal a clean build in a fresh cache.
    let ws = Workspace::new();
    for (round, delay_ms) in [20u64, 400, 900, 1500, 2100, 2700].into_iter().enumerate() {
        slow_workspace(&ws, round);
        let clean = ws.copy_to(false);
        clean.build_all();
        let want = clean.outputs();
        assert_eq!(want.len(), 20);

        let mut child = ws
            .command(&["build", "//...", "--jobs=2"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        assert!(
            child.try_wait().unwrap().is_none(),
            "round {round}: the build ended before the kill at {delay_ms} ms"
        );
        // `Child::kill` sends SIGKILL to the kiln process itself (not its group), as a crash would.
        child.kill().unwrap();
        let _ = child.wait().unwrap();
        if round % 2 == 1 {
            // Scribble on what the killed build may have left half-done in kiln-out.
            if let Some(first) = files_under(&ws.root().join("kiln-out/bin")).first() {
                let _ = std::fs::remove_file(first);
            }
        }
        ws.build_all();
        let got = ws.outputs();
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "round {round}: files in kiln-out/bin after a kill at {delay_ms} ms"
        );
        assert!(
            got == want,
            "round {round}: contents differ from a clean build after a kill at {delay_ms} ms"
        );
        // A second rebuild finds everything cached: the killed build left no entry that would
        // make a finished action run again or a wrong one hit.
        let again = ws.build_all();
        assert_eq!(again.summary()["executed"], 0, "round {round}");
    }
    // `clean --expunge` leaves nothing of the killed builds on the memory file system either.
    let info = ws.kiln(&["info"]);
    info.ok();
    let scratch = info
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("memory_scratch: "))
        .map(std::path::PathBuf::from);
    ws.kiln(&["clean", "--expunge"]).ok();
    if let Some(scratch) = scratch {
        assert!(!scratch.exists(), "{} is left", scratch.display());
    }
}

#[test]
fn temp_files_a_killed_build_left_while_copying_outputs_are_removed() {
    let ws = small();
    ws.build_all();
    // What a build killed between writing an output's temp copy and renaming it leaves.
    let staging = ws.root().join("kiln-out/.kiln-tmp");
    std::fs::create_dir_all(&staging).unwrap();
    let leftover = staging.join(".kiln-tmp.4242.0.123");
    std::fs::write(&leftover, "half an output").unwrap();
    ws.write("p/in.txt", "another input 9f3a\n");
    ws.build_all();
    assert!(!leftover.exists(), "the next build removes it");
    assert_eq!(ws.read_out("p/a.txt"), "ANOTHER INPUT 9F3A\n");
    let names: Vec<String> = ws.outputs().into_keys().collect();
    assert_eq!(
        names,
        ["p/a.txt", "p/b.txt"],
        "nothing else in kiln-out/bin"
    );
}

#[test]
fn a_second_build_waits_for_the_first() {
    let ws = Workspace::new();
    ws.write(
        "p/BUILD",
        r#"genrule(name = "slow", outs = ["slow.txt"], cmd = "sleep 1.5; echo done > $@")"#,
    );
    let mut first = ws.command(&["build", "//..."]);
    let first = first
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Let the first take the lock (it holds it for the whole build, 1.5 s of which is the action).
    std::thread::sleep(Duration::from_millis(500));
    let second = ws.kiln(&["build", "//..."]);
    let first = first.wait_with_output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        second.stderr.contains("Waiting for another kiln process"),
        "the second build did not wait: {}",
        second.stderr
    );
    assert_eq!(
        second.summary()["executed"],
        0,
        "the second build found the first one's result"
    );
    assert_eq!(ws.read_out("p/slow.txt"), "done\n");
}

#[test]
fn a_truncated_cas_blob_is_detected_reported_and_rebuilt() {
    let ws = small();
    ws.build_all();
    let expected = ws.read_out("p/a.txt");
    let truncated = ws.tamper_with_blobs(expected.as_bytes(), |b| b[..3].to_vec());
    assert!(truncated > 0, "the blob of a.txt was not found");
    std::fs::remove_dir_all(ws.root().join("kiln-out")).unwrap();
    let out = ws.build_all();
    assert_eq!(
        ws.read_out("p/a.txt"),
        expected,
        "never a truncated file in kiln-out"
    );
    assert_blob_reported_and_replaced(&ws, &out, expected.as_bytes());
}

#[test]
fn garbage_build_files_are_errors_not_panics() {
    let ws = Workspace::new();
    for (i, text) in [
        "genrule(",
        "\u{0}\u{1}binary\u{ff}",
        "x = [",
        "genrule(name = 1 + )",
        &"(".repeat(20000),
        "load(\"//nope:x.bzl\", \"y\")",
    ]
    .iter()
    .enumerate()
    {
        ws.write(&format!("g{i}/BUILD"), text);
        let out = ws.kiln(&["build", &format!("//g{i}:all")]);
        assert_eq!(
            out.code, 1,
            "garbage #{i} must be a build error:\n{}",
            out.stderr
        );
        assert!(
            out.stderr.contains(&format!("g{i}/BUILD")),
            "the error names the file: {}",
            out.stderr
        );
        ws.remove(&format!("g{i}/BUILD"));
    }
}

#[test]
fn corrupt_cas_input_of_a_rerunning_action_is_rebuilt() {
    let ws = small();
    ws.build_all();
    let expected = ws.read_out("p/a.txt");
    for path in files_under(&ws.cache_dir().join("cas")) {
        if std::fs::read(&path).unwrap() == expected.as_bytes() {
            let mut perms = std::fs::metadata(&path).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&path, perms).unwrap();
            std::fs::write(&path, vec![b'#'; expected.len()]).unwrap();
        }
    }
    // //p:b must rerun and reads //p:a's output from the CAS: the corrupt blob must not reach it.
    let build = ws
        .read("p/BUILD")
        .replace("cat $< $< > $@", "cat $< $< $< > $@");
    ws.write("p/BUILD", &build);
    ws.build_all();
    assert_eq!(ws.read_out("p/b.txt"), expected.repeat(3));
}
