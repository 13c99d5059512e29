//! The real runner (plain sandbox, real local cache) gives an execution permit back when an
//! action's process ends cleanly, before its outputs are stored, and keeps it when the action
//! failed, until the scheduler drops the ticket (see `kiln_graph::permits`).

use std::sync::Arc;
use std::time::Duration;

use kiln_cache::{CacheConfig, LocalCache};
use kiln_graph::action::Artifact;
use kiln_graph::action_key::FileDigest;
use kiln_graph::execute::{RunOptions, RunOutcome};
use kiln_graph::permits::ExecPermits;

mod common;
use common::{plain_runner, shell_action};

#[test]
fn a_clean_run_gives_its_permit_back_and_a_failed_one_keeps_it_until_the_ticket_goes() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cache = LocalCache::open(&dir.path().join("cache"), CacheConfig::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let runner = plain_runner(dir.path(), Arc::new(cache));
    let no_inputs = |_: &Artifact| -> Option<FileDigest> { None };
    let cases = [
        ("clean", "echo ok > p/clean.txt", true),
        ("exits_1", "echo no > p/exits_1.txt; exit 1", false),
        ("no_output", "true", false),
    ];
    for (name, script, gives_back) in cases {
        let permits = ExecPermits::new(1);
        let ticket = permits.announce(10, None);
        let options = RunOptions {
            permit: Some(&ticket),
            ..RunOptions::default()
        };
        let outcome = runner.run(&shell_action(name, script), &no_inputs, &options);
        assert_eq!(
            matches!(outcome, RunOutcome::Done(_)),
            gives_back,
            "{name}: {outcome:?}"
        );
        // The ticket is still alive, as it is until the scheduler has dispatched what the
        // action released: is the one permit free?
        std::thread::scope(|scope| {
            let next = scope.spawn(|| permits.announce(0, None).acquire(None));
            if !gives_back {
                std::thread::sleep(Duration::from_millis(100));
                assert!(!next.is_finished(), "{name}: the permit was given back");
                drop(ticket);
            }
            assert!(next.join().unwrap_or(false), "{name}: no permit");
        });
    }
}
