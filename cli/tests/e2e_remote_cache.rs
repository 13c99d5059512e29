//! The remote cache tier end to end: the real `kiln` binary against a real gRPC server (the
//! in-process fake in `fake_remote/`, which can evict, corrupt and fail on purpose). Checkouts
//! live in different directories with separate local caches, as two developers' machines would.

mod fake_remote;
mod harness;

use bazel_remote_apis::build::bazel::remote::execution::v2::digest_function::Value as Function;
use fake_remote::{blob_name, FakeRemote};
use harness::{Output, Workspace};
use tonic::Code;

const BUILD: &str = r#"
genrule(name = "a", srcs = ["in.txt"], outs = ["a.txt"], cmd = "tr a-z A-Z < $< > $@")
genrule(name = "b", srcs = [":a"], outs = ["b.txt"], cmd = "cat $< $< > $@")
"#;

/// A two-action workspace whose bytes no other test produces.
fn fixture(unique: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write("p/in.txt", &format!("{unique}\n"));
    ws.write("p/BUILD", BUILD);
    ws
}

fn build(ws: &Workspace, remote: &str, extra: &[&str]) -> Output {
    let mut args = vec!["build", "//p:b", "--remote_cache", remote];
    args.extend_from_slice(extra);
    ws.kiln(&args)
}

/// How each action of `label` was satisfied, in order.
fn statuses(out: &Output, label: &str) -> Vec<String> {
    out.events
        .iter()
        .filter(|e| e["type"] == "action" && e["label"] == label)
        .map(|e| e["cache"].as_str().unwrap_or("?").to_string())
        .collect()
}

fn count(out: &Output, field: &str) -> u64 {
    out.summary()[field].as_u64().unwrap_or(u64::MAX)
}

/// `n` independent actions, `//p:g0` ... writing `{unique}-{i}`.
fn independent(unique: &str, n: usize) -> Workspace {
    let ws = Workspace::new();
    let rules: String = (0..n)
        .map(|i| {
            format!("genrule(name = \"g{i}\", outs = [\"g{i}.txt\"], cmd = \"echo {unique}-{i} > $@\")\n")
        })
        .collect();
    ws.write("p/BUILD", &rules);
    ws
}

/// The lines of `stderr` that are remote cache warnings.
fn remote_warnings(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("WARNING: Remote cache"))
        .collect()
}

/// Calls the fake received, GetCapabilities aside.
fn calls_after_capabilities(remote: &FakeRemote) -> usize {
    remote
        .state
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|m| **m != "GetCapabilities")
        .count()
}

/// Whether the workspace's local CAS holds a blob with exactly this content.
fn local_cas_has(ws: &Workspace, content: &str) -> bool {
    walkdir::WalkDir::new(ws.cache_dir().join("cas"))
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .any(|e| std::fs::read(e.path()).is_ok_and(|b| b == content.as_bytes()))
}

#[test]
fn a_second_checkout_builds_everything_from_the_remote() {
    let remote = FakeRemote::start();
    let first = fixture("shared-checkouts");
    let out = build(&first, &remote.url, &[]);
    out.ok();
    assert_eq!(count(&out, "executed"), 2);
    assert_eq!(remote.state.ac_len(), 2, "both results uploaded");

    let second = first.copy_to(false);
    assert_ne!(first.cache_dir(), second.cache_dir());
    let out = build(&second, &remote.url, &[]);
    out.ok();
    assert_eq!(count(&out, "executed"), 0, "{}", out.stderr);
    assert_eq!(count(&out, "remote_hits"), 2);
    assert_eq!(statuses(&out, "//p:a"), ["remote_hit"]);
    assert!(out.stderr.contains("2 remote cache hits"), "{}", out.stderr);
    assert_eq!(second.read_out("p/b.txt"), first.read_out("p/b.txt"));

    // A local action that reads an output left on the server fetches it (and only it).
    second.write("p/BUILD", &BUILD.replace("cat $< $< > $@", "cat $< > $@"));
    let out = build(&second, &remote.url, &[]);
    out.ok();
    assert_eq!(statuses(&out, "//p:a"), ["remote_hit"]);
    assert_eq!(statuses(&out, "//p:b"), ["executed"]);
    assert_eq!(second.read_out("p/b.txt"), "SHARED-CHECKOUTS\n");
}

/// 3 MiB of output (above the fake server's 1 MiB batch limit), and an action with two small ones.
const BIG: &str = r#"
genrule(name = "big", outs = ["big.bin"], cmd = "head -c 3145728 /dev/zero | tr '\\0' k > $@")
genrule(
    name = "b",
    srcs = [":big"],
    outs = ["b.txt", "c.txt"],
    cmd = "wc -c < $< > $(location b.txt); echo small-by-batch > $(location c.txt)",
)
"#;

#[test]
fn large_blobs_travel_by_bytestream_and_small_ones_in_batches() {
    let remote = FakeRemote::start();
    let first = Workspace::new();
    first.write("p/BUILD", BIG);
    first
        .kiln(&["build", "//p:big", "//p:b", "--remote_cache", &remote.url])
        .ok();
    let big = "k".repeat(3 << 20);
    let (b, c) = ("3145728\n", "small-by-batch\n");
    // Uploads: the large blob alone by ByteStream; each action's small blobs (its `Action`,
    // `Command` and outputs) together in one batch.
    assert_eq!(remote.state.named_by("Write"), [blob_name(big.as_bytes())]);
    let batched = remote.state.named_by("BatchUpdateBlobs");
    assert!(!batched.contains(&blob_name(big.as_bytes())));
    assert!(
        batched.contains(&blob_name(b.as_bytes())) && batched.contains(&blob_name(c.as_bytes()))
    );
    let batches: Vec<usize> = remote
        .state
        .batch_lens
        .lock()
        .unwrap()
        .iter()
        .filter(|(m, _)| *m == "BatchUpdateBlobs")
        .map(|(_, n)| *n)
        .collect();
    assert_eq!(batches.len(), 2, "one batch per action: {batches:?}");
    assert!(batches.iter().all(|n| *n >= 2), "{batches:?}");

    // Downloads: the same split; an action's small outputs come in one batch.
    let second = first.copy_to(false);
    let out = second.kiln(&[
        "build",
        "//p:big",
        "//p:b",
        "--remote_cache",
        &remote.url,
        "--remote_download_outputs=all",
    ]);
    out.ok();
    assert_eq!(count(&out, "remote_hits"), 2);
    assert_eq!(remote.state.named_by("Read"), [blob_name(big.as_bytes())]);
    let batched = remote.state.named_by("BatchReadBlobs");
    assert!(!batched.contains(&blob_name(big.as_bytes())));
    assert!(
        batched.contains(&blob_name(b.as_bytes())) && batched.contains(&blob_name(c.as_bytes()))
    );
    assert!(remote
        .state
        .batch_lens
        .lock()
        .unwrap()
        .contains(&("BatchReadBlobs", 2)));
    assert_eq!(second.read_out("p/big.bin"), big);
    assert_eq!(second.read_out("p/b.txt"), b);
    assert_eq!(second.read_out("p/c.txt"), c);
}

#[test]
fn a_large_blob_read_with_the_wrong_bytes_is_not_used() {
    let remote = FakeRemote::start();
    let first = Workspace::new();
    first.write("p/BUILD", BIG);
    first
        .kiln(&["build", "//p:big", "--remote_cache", &remote.url])
        .ok();
    let big = "k".repeat(3 << 20);
    assert_eq!(remote.state.corrupt(big.as_bytes()), 1);

    let second = first.copy_to(false);
    let out = second.kiln(&["build", "//p:big", "--remote_cache", &remote.url]);
    out.ok();
    assert_eq!(remote.state.named_by("Read"), [blob_name(big.as_bytes())]);
    assert!(out.stderr.contains("wrong content"), "{}", out.stderr);
    // Rejected before the local cache: it never held the bytes (and so never found them corrupt).
    assert!(!out.stderr.contains("corrupt cache blob"), "{}", out.stderr);
    // The hit whose output came back wrong runs here instead.
    assert_eq!(statuses(&out, "//p:big"), ["executed"]);
    assert_eq!(second.read_out("p/big.bin"), big);
    assert!(!local_cas_has(&second, &"#".repeat(3 << 20)));
}

#[test]
fn blobs_the_server_has_are_not_uploaded_again() {
    let remote = FakeRemote::start();
    let a = "ALREADY-THERE\n";
    let b = a.repeat(2);
    remote.state.seed(a.as_bytes());
    let first = fixture("already-there");
    build(&first, &remote.url, &[]).ok();
    assert_eq!(remote.state.ac_len(), 2);

    let asked = remote.state.named_by("FindMissingBlobs");
    let uploaded: Vec<String> = ["BatchUpdateBlobs", "Write"]
        .iter()
        .flat_map(|m| remote.state.named_by(m))
        .collect();
    assert!(asked.contains(&blob_name(a.as_bytes())), "{asked:?}");
    assert!(
        !uploaded.contains(&blob_name(a.as_bytes())),
        "a.txt went up again"
    );
    assert!(uploaded.contains(&blob_name(b.as_bytes())), "{uploaded:?}");
    assert!(
        uploaded.iter().all(|u| asked.contains(u)),
        "uploaded unasked"
    );
    // Each upload asks first, then sends the blobs, then the action-cache entry.
    let order: Vec<&str> = remote
        .state
        .log
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|m| {
            matches!(
                *m,
                "FindMissingBlobs" | "BatchUpdateBlobs" | "Write" | "UpdateActionResult"
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            "FindMissingBlobs",
            "BatchUpdateBlobs",
            "UpdateActionResult",
            "FindMissingBlobs",
            "BatchUpdateBlobs",
            "UpdateActionResult"
        ]
    );

    // The seeded blob serves as the uploaded one would.
    let second = first.copy_to(false);
    second.write("p/BUILD", &BUILD.replace("cat $< $< > $@", "cat $< > $@"));
    let out = build(&second, &remote.url, &[]);
    out.ok();
    assert_eq!(statuses(&out, "//p:a"), ["remote_hit"]);
    assert_eq!(second.read_out("p/b.txt"), a);
}

#[test]
fn download_modes_fetch_only_what_they_promise() {
    let remote = FakeRemote::start();
    let first = fixture("download-modes");
    build(&first, &remote.url, &[]).ok();
    let a = "DOWNLOAD-MODES\n";
    let b = a.repeat(2);

    // toplevel (the default): the requested output, not the intermediate one.
    let toplevel = first.copy_to(false);
    build(&toplevel, &remote.url, &[]).ok();
    assert_eq!(toplevel.read_out("p/b.txt"), b);
    assert!(local_cas_has(&toplevel, &b));
    assert!(
        !local_cas_has(&toplevel, a),
        "intermediate a.txt was downloaded"
    );
    assert!(!toplevel.out_path("p/a.txt").exists());

    // all: every output of every hit, and the next build is a local hit.
    let all = first.copy_to(false);
    build(&all, &remote.url, &["--remote_download_outputs=all"]).ok();
    assert!(local_cas_has(&all, a));
    all.write("p/BUILD", &format!("{BUILD}\n"));
    let again = build(&all, &remote.url, &["--remote_download_outputs=all"]);
    again.ok();
    assert_eq!(count(&again, "local_hits"), 2, "{}", again.stderr);

    // minimal: nothing, and no stale file left where an output would be.
    let minimal = first.copy_to(false);
    minimal.write("kiln-out/bin/p/b.txt", "stale\n");
    let out = build(
        &minimal,
        &remote.url,
        &["--remote_download_outputs=minimal"],
    );
    out.ok();
    assert_eq!(count(&out, "remote_hits"), 2);
    assert!(!local_cas_has(&minimal, &b) && !local_cas_has(&minimal, a));
    assert!(!minimal.out_path("p/b.txt").exists());
}

#[test]
fn an_evicted_intermediate_blob_reruns_its_producer() {
    let remote = FakeRemote::start();
    let first = fixture("evicted-intermediate");
    build(&first, &remote.url, &[]).ok();
    let a = "EVICTED-INTERMEDIATE\n";
    assert_eq!(remote.state.evict(a.as_bytes()), 1);

    // `b` changes, so it must run here and read a.txt, whose result is a remote hit whose blob
    // is gone: `a` runs again instead of the build failing.
    let second = first.copy_to(false);
    second.write("p/BUILD", &BUILD.replace("cat $< $< > $@", "cat $< > $@"));
    let out = build(&second, &remote.url, &[]);
    out.ok();
    assert_eq!(statuses(&out, "//p:a"), ["remote_hit", "executed"]);
    assert_eq!(statuses(&out, "//p:b"), ["executed"]);
    assert!(
        out.stderr.contains("running `//p:a` again"),
        "{}",
        out.stderr
    );
    assert_eq!(second.read_out("p/b.txt"), a);
    assert_eq!(
        remote.state.evict(a.as_bytes()),
        1,
        "the rerun uploaded it again"
    );
}

#[test]
fn an_evicted_or_corrupt_top_level_blob_reruns_its_producer() {
    let remote = FakeRemote::start();
    let first = fixture("evicted-top");
    build(&first, &remote.url, &[]).ok();
    let b = "EVICTED-TOP\n".repeat(2);

    assert_eq!(remote.state.evict(b.as_bytes()), 1);
    let second = first.copy_to(false);
    let out = build(&second, &remote.url, &[]);
    out.ok();
    // The hit whose output cannot be written is retried in place: one event, executed.
    assert_eq!(statuses(&out, "//p:b"), ["executed"]);
    assert_eq!(statuses(&out, "//p:a"), ["remote_hit"]);
    assert_eq!(second.read_out("p/b.txt"), b);

    // The rerun uploaded b.txt again; now it comes back wrong and must not be used.
    assert_eq!(remote.state.corrupt(b.as_bytes()), 1);
    let third = first.copy_to(false);
    let out = build(&third, &remote.url, &[]);
    out.ok();
    assert_eq!(statuses(&out, "//p:b"), ["executed"]);
    assert!(out.stderr.contains("wrong content"), "{}", out.stderr);
    assert_eq!(third.read_out("p/b.txt"), b);
}

#[test]
fn a_server_that_is_down_or_hangs_costs_a_warning_not_the_build() {
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("grpc://{}", listener.local_addr().unwrap())
    };
    let ws = fixture("server-down");
    let out = build(&ws, &down, &[]);
    out.ok();
    assert_eq!(count(&out, "executed"), 2);
    assert!(out.stderr.contains("is not used"), "{}", out.stderr);
    assert_eq!(
        out.stderr.matches("WARNING: Remote cache").count(),
        1,
        "{}",
        out.stderr
    );

    // A server that accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung = format!("grpc://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let ws = fixture("server-hangs");
    let out = build(&ws, &hung, &["--remote_timeout=1"]);
    out.ok();
    assert_eq!(count(&out, "executed"), 2);
    assert!(out.stderr.contains("is not used"), "{}", out.stderr);
}

#[test]
fn a_server_that_hangs_after_its_capabilities_is_dropped_after_one_timeout() {
    let remote = FakeRemote::start();
    remote
        .state
        .hang_after_capabilities
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let ws = fixture("hangs-after-capabilities");
    let out = build(&ws, &remote.url, &["--remote_timeout=1"]);
    out.ok();
    assert_eq!(count(&out, "executed"), 2);
    assert_eq!(
        ws.read_out("p/b.txt"),
        "HANGS-AFTER-CAPABILITIES\n".repeat(2)
    );
    // One warning, and the one call that timed out is the last: the other action's lookup
    // and every upload skip the remote, so a hung server costs one timeout per build.
    assert_eq!(
        out.stderr.matches("stopped answering").count(),
        1,
        "{}",
        out.stderr
    );
    assert_eq!(remote.state.count("GetCapabilities"), 1);
    assert_eq!(remote.state.count("GetActionResult"), 1, "{}", out.stderr);
    for upload in [
        "FindMissingBlobs",
        "BatchUpdateBlobs",
        "Write",
        "UpdateActionResult",
    ] {
        assert_eq!(remote.state.count(upload), 0, "{upload}: {}", out.stderr);
    }
}

#[test]
fn a_server_without_the_workspace_digest_function_is_not_used() {
    let remote = FakeRemote::offering(&[Function::Sha256]);
    let ws = fixture("sha256-only");
    let out = build(&ws, &remote.url, &[]);
    out.ok();
    assert_eq!(count(&out, "executed"), 2);
    // One clear warning, however many actions would have asked.
    assert_eq!(
        out.stderr
            .matches("does not offer the workspace's digest function BLAKE3 (it offers SHA256)")
            .count(),
        1,
        "{}",
        out.stderr
    );
    assert_eq!(remote.state.count("GetActionResult"), 0);

    // With SHA-256 as the workspace's function, the same server is used.
    ws.write("kiln.toml", "[build]\ndigest_function = \"sha256\"\n");
    let out = build(&ws, &remote.url, &[]);
    out.ok();
    assert_eq!(remote.state.ac_len(), 2, "{}", out.stderr);
}

#[test]
fn a_server_whose_calls_keep_failing_is_dropped_after_a_few() {
    for code in [Code::Internal, Code::ResourceExhausted] {
        let remote = FakeRemote::start();
        remote.state.always_fail.lock().unwrap().insert("*", code);
        let unique = format!("failing-{code:?}");
        let ws = independent(&unique, 20);
        let out = ws.kiln(&[
            "build",
            "//p:all",
            "--jobs=2",
            "--remote_cache",
            &remote.url,
        ]);
        out.ok();
        assert_eq!(count(&out, "executed"), 20);
        assert_eq!(ws.read_out("p/g7.txt"), format!("{unique}-7\n"));
        let warnings = remote_warnings(&out.stderr);
        assert_eq!(warnings.len(), 1, "{}", out.stderr);
        assert!(
            warnings[0].contains(&format!("{code:?}: injected failure"))
                && warnings[0].contains("the rest of this build uses the local cache only"),
            "{}",
            warnings[0]
        );
        // Three failed calls drop the remote, each tried four times (three retries), and the
        // other actions in flight may have had one more each: with `--jobs=2` and its lookahead
        // of two more, up to three. Without the breaker each of the 20 actions would make two
        // calls (its lookup, then FindMissingBlobs for its upload): 160 in all.
        let calls = calls_after_capabilities(&remote);
        assert!(
            calls <= (3 + 3) * 4,
            "{calls} calls: {:?}",
            remote.state.calls
        );
    }
}

#[test]
fn a_server_that_fails_now_and_then_stays_in_use() {
    let remote = FakeRemote::start();
    remote
        .state
        .always_fail
        .lock()
        .unwrap()
        .insert("UpdateActionResult", Code::Internal);
    let ws = independent("fails-now-and-then", 6);
    let out = ws.kiln(&[
        "build",
        "//p:all",
        "--jobs=2",
        "--remote_cache",
        &remote.url,
    ]);
    out.ok();
    // Between two failed results, each job's lookups and blob uploads succeed: the remote stays,
    // and every action's result is tried (four times each).
    assert_eq!(
        remote.state.count("UpdateActionResult"),
        6 * 4,
        "{}",
        out.stderr
    );
    assert_eq!(remote.state.count("BatchUpdateBlobs"), 6);
    let warnings = remote_warnings(&out.stderr);
    assert_eq!(warnings.len(), 1, "{}", out.stderr);
    assert!(
        warnings[0].contains("UpdateActionResult failed: Internal: injected failure"),
        "{}",
        warnings[0]
    );
}

#[test]
fn transient_errors_are_retried() {
    let remote = FakeRemote::start();
    let first = fixture("transient");
    build(&first, &remote.url, &[]).ok();
    let second = first.copy_to(false);
    remote
        .state
        .fail_next
        .store(3, std::sync::atomic::Ordering::SeqCst);
    let out = build(&second, &remote.url, &[]);
    out.ok();
    assert_eq!(count(&out, "remote_hits"), 2, "{}", out.stderr);
    assert!(!out.stderr.contains("WARNING: Remote"), "{}", out.stderr);
}

#[test]
fn headers_instance_and_kiln_toml_settings_reach_the_server() {
    let remote = FakeRemote::start();
    let ws = fixture("headers");
    let out = build(
        &ws,
        &remote.url,
        &[
            "--remote_header",
            "authorization=Bearer t0k",
            "--remote_instance_name=ci/main",
            "--remote_upload_local_results=false",
        ],
    );
    out.ok();
    assert!(remote
        .state
        .authorization
        .lock()
        .unwrap()
        .iter()
        .all(|a| a == "Bearer t0k"));
    assert!(!remote.state.authorization.lock().unwrap().is_empty());
    assert!(remote
        .state
        .instances
        .lock()
        .unwrap()
        .contains(&"ci/main".to_string()));
    assert_eq!(remote.state.ac_len(), 0, "uploads were turned off");

    let second = ws.copy_to(false);
    second.write(
        "kiln.toml",
        &format!(
            "[remote]\ncache = \"{}\"\nheaders = {{ authorization = \"Bearer from-toml\" }}\n",
            remote.url
        ),
    );
    let out = second.kiln(&["build", "//p:b"]);
    out.ok();
    assert_eq!(remote.state.ac_len(), 2);
    assert!(remote
        .state
        .authorization
        .lock()
        .unwrap()
        .contains(&"Bearer from-toml".to_string()));

    let out = second.kiln(&["build", "//p:b", "--remote_cache=http://x:1"]);
    out.expect_code(2);
    assert!(out.stderr.contains("only gRPC caches"), "{}", out.stderr);
}

#[test]
fn a_passing_test_is_a_remote_hit_with_its_log_downloaded() {
    let remote = FakeRemote::start();
    let first = Workspace::new();
    first.write("t/pass.sh", "#!/bin/bash\necho remote-test-ran\n");
    first.write("t/BUILD", r#"sh_test(name = "pass", srcs = ["pass.sh"])"#);
    let out = first.kiln(&["test", "//t:pass", "--remote_cache", &remote.url]);
    out.ok();
    let ran = count(&out, "executed");
    assert!(ran >= 1, "{}", out.stderr);

    let second = first.copy_to(false);
    let out = second.kiln(&[
        "test",
        "//t:pass",
        "--remote_cache",
        &remote.url,
        "--remote_download_outputs=minimal",
    ]);
    out.ok();
    assert_eq!(count(&out, "executed"), 0, "{}", out.stderr);
    assert_eq!(count(&out, "remote_hits"), ran);
    assert_eq!(harness::tests(&out.events)[0]["cached"], true);
    assert!(second
        .read("kiln-out/testlogs/t/pass/test.log")
        .contains("remote-test-ran"));
}
