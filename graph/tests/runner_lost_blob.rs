//! The real runner (plain sandbox, real local cache): a CAS blob evicted by another process
//! after the runner checked it, before the sandbox staged it, is a lost input whose producer
//! must run again, never an action failure.

use std::sync::Arc;

use kiln_cache::{CacheConfig, DigestFunction, LocalCache};
use kiln_graph::action::{ActionSpec, Artifact};
use kiln_graph::action_key::FileDigest;
use kiln_graph::execute::{RunOptions, RunOutcome};

mod common;
use common::{plain_runner, shell_action};

/// `shell_action` with the one input `p/in.txt`.
fn action(name: &str, script: &str) -> ActionSpec {
    let mut spec = shell_action(name, script);
    spec.input(&Artifact::derived("p/in.txt"));
    spec
}

#[test]
fn a_blob_evicted_after_its_check_is_a_lost_input_not_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let cache = LocalCache::open(&dir.path().join("cache"), CacheConfig::default()).unwrap();
    let cache = Arc::new(cache);
    let digest = cache.put_bytes(DigestFunction::Blake3, b"data\n").unwrap();
    // Plain mode: staging copies, so a missing blob fails it.
    let runner = plain_runner(dir.path(), Arc::clone(&cache));
    let inputs = |a: &Artifact| {
        (a.path == "p/in.txt").then_some(FileDigest {
            digest,
            executable: false,
        })
    };
    let options = RunOptions::default();
    // The first action checks the blob (the runner remembers it as verified) and uses it.
    match runner.run(&action("a", "cat p/in.txt > p/a.txt"), &inputs, &options) {
        RunOutcome::Done(done) => assert_eq!(done.exit_code, 0),
        other => panic!("first action: {other:?}"),
    }
    // Another process evicts it.
    std::fs::remove_file(cache.blob_path(&digest)).unwrap();
    match runner.run(&action("b", "cat p/in.txt > p/b.txt"), &inputs, &options) {
        RunOutcome::LostInputs { paths, cause } => {
            assert_eq!(paths, ["p/in.txt"]);
            // The sandbox's own error is kept for the warning, not swallowed.
            let cause = cause.expect("the sandbox error that revealed the loss");
            assert!(cause.contains("sandbox"), "{cause}");
        }
        other => panic!("second action: {other:?}"),
    }
    // Forgotten as verified: the next use checks the cache again and finds it missing.
    match runner.run(&action("c", "cat p/in.txt > p/c.txt"), &inputs, &options) {
        RunOutcome::LostInputs { paths, cause } => {
            assert_eq!(paths, ["p/in.txt"]);
            assert_eq!(
                cause, None,
                "found missing by the check, before the sandbox ran"
            );
        }
        other => panic!("third action: {other:?}"),
    }
}
