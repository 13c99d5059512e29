//! Once the process is stopping on a signal (`kiln_graph::stopping`), the real runner stores no
//! action result: an action it finishes then is reported cancelled and is not in the action
//! cache. Its own test binary, since the flag is process-wide and never cleared.

use std::sync::Arc;

use kiln_cache::{CacheConfig, LocalCache};
use kiln_graph::action::Artifact;
use kiln_graph::action_key::FileDigest;
use kiln_graph::execute::{RunOptions, RunOutcome};

mod common;
use common::{plain_runner, shell_action};

#[test]
fn after_the_process_starts_stopping_a_finished_action_is_cancelled_and_not_stored() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cache = Arc::new(
        LocalCache::open(&dir.path().join("cache"), CacheConfig::default())
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let runner = plain_runner(dir.path(), Arc::clone(&cache));
    let no_inputs = |_: &Artifact| -> Option<FileDigest> { None };
    let options = RunOptions::default();
    let stored = |key| {
        cache
            .get_action_result(key)
            .unwrap_or_else(|e| panic!("{e}"))
            .is_some()
    };
    let before = runner.run(
        &shell_action("before", "echo ok > p/before.txt"),
        &no_inputs,
        &options,
    );
    let RunOutcome::Done(done) = before else {
        panic!("the first action runs: {before:?}");
    };
    assert!(
        stored(&done.key),
        "a result is stored while the process runs"
    );

    kiln_graph::stopping::stop_storing_results();
    let after = runner.run(
        &shell_action("after", "echo ok > p/after.txt"),
        &no_inputs,
        &options,
    );
    let RunOutcome::Failed {
        key: Some(key),
        message,
    } = after
    else {
        panic!("cancelled once stopping: {after:?}");
    };
    assert!(message.starts_with("Cancelled"), "{message}");
    assert!(!stored(&key), "nothing is stored once stopping");
}
