//! The scheduler against a fake runner: dependency order, critical-path priority, keep_going,
//! early outputs, lost-input recovery, exclusive actions and stopping a build.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use kiln_cache::{Digest, DigestFunction};
use kiln_graph::action::{ActionSpec, Artifact, OutputSpec};
use kiln_graph::action_graph::{ActionGraph, ActionId};
use kiln_graph::action_key::{compute_key, FileDigest, PlatformProperties};
use kiln_graph::events::{CacheStatus, NoObserver};
use kiln_graph::execute::{ActionDone, ActionRunner, RunOptions, RunOutcome};
use kiln_graph::label::Label;
use kiln_graph::scheduler::{run, ScheduleConfig, ScheduleOutcome};

fn action(name: &str, inputs: &[&str], outputs: &[&str]) -> ActionSpec {
    let owner = Label {
        repo: String::new(),
        package: "p".into(),
        name: name.into(),
    };
    let mut spec = ActionSpec::new(owner, "Fake", vec![name.to_string()]);
    for input in inputs {
        spec.input(&Artifact::derived(*input));
    }
    for output in outputs {
        spec.outputs.push(OutputSpec {
            path: output.to_string(),
            executable: false,
            optional: false,
        });
    }
    spec
}

fn file(path: &str) -> FileDigest {
    FileDigest {
        digest: Digest::of_bytes(DigestFunction::Blake3, path.as_bytes()),
        executable: false,
    }
}

/// A runner that records the order actions ran in and can be told to misbehave.
#[derive(Default)]
struct Fake {
    order: Mutex<Vec<String>>,
    forced: Mutex<Vec<String>>,
    fail: HashSet<String>,
    lose_once: Mutex<HashMap<String, String>>,
    early: HashSet<String>,
    running: AtomicUsize,
    overlap_with_exclusive: AtomicUsize,
    exclusive_active: std::sync::atomic::AtomicBool,
    concurrency_at_start: Mutex<HashMap<String, usize>>,
    fail_after_early: HashSet<String>,
    changes_after_early: HashSet<String>,
    cancel_seen: std::sync::atomic::AtomicBool,
    gate: (Mutex<bool>, Condvar),
}

impl ActionRunner for Fake {
    fn run(
        &self,
        spec: &ActionSpec,
        inputs: &dyn Fn(&Artifact) -> Option<FileDigest>,
        options: &RunOptions<'_>,
    ) -> RunOutcome {
        let name = spec.owner.name.clone();
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        if (spec.exclusive && now > 1) || self.exclusive_active.load(Ordering::SeqCst) {
            self.overlap_with_exclusive.fetch_add(1, Ordering::SeqCst);
        }
        if spec.exclusive {
            self.exclusive_active.store(true, Ordering::SeqCst);
        }
        if let Ok(mut at_start) = self.concurrency_at_start.lock() {
            at_start.insert(name.clone(), now);
        }
        if let Ok(mut order) = self.order.lock() {
            order.push(name.clone());
        }
        if options.force_execute {
            if let Ok(mut forced) = self.forced.lock() {
                forced.push(name.clone());
            }
        }
        let lost = self.lose_once.lock().ok().and_then(|mut m| m.remove(&name));
        let outcome = if let Some(path) = lost {
            RunOutcome::LostInputs {
                paths: vec![path],
                cause: None,
            }
        } else if self.fail.contains(&name) {
            RunOutcome::Failed {
                key: None,
                message: format!("{name} failed"),
            }
        } else {
            if self.early.contains(&name) {
                if let Some(callback) = options.on_early_output {
                    let first = &spec.outputs[0].path;
                    callback(first, file(first));
                }
                // Wait (bounded) until a consumer of the early output has started.
                let (lock, cvar) = &self.gate;
                if let Ok(guard) = lock.lock() {
                    let _ = cvar.wait_timeout_while(guard, Duration::from_secs(5), |open| !*open);
                }
                if self.fail_after_early.contains(&name) {
                    self.running.fetch_sub(1, Ordering::SeqCst);
                    return RunOutcome::Failed {
                        key: None,
                        message: format!("{name} failed late"),
                    };
                }
            } else {
                let (lock, cvar) = &self.gate;
                if let Ok(mut open) = lock.lock() {
                    *open = true;
                    cvar.notify_all();
                }
                if name == "slow_consumer" {
                    // Runs until cancelled (bounded), as a long compile would.
                    for _ in 0..500 {
                        if options.cancel.is_some_and(|c| c.load(Ordering::SeqCst)) {
                            self.cancel_seen.store(true, Ordering::SeqCst);
                            self.running.fetch_sub(1, Ordering::SeqCst);
                            return RunOutcome::Failed {
                                key: None,
                                message: "cancelled".into(),
                            };
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
            let keyed = compute_key(
                spec,
                inputs,
                &PlatformProperties::default(),
                DigestFunction::Blake3,
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            RunOutcome::Done(Box::new(ActionDone {
                key: keyed.key,
                status: CacheStatus::Executed,
                outputs: spec
                    .outputs
                    .iter()
                    .map(|o| {
                        let content = if self.changes_after_early.contains(&name) {
                            format!("{}+changed", o.path)
                        } else {
                            o.path.clone()
                        };
                        (o.path.clone(), file(&content))
                    })
                    .collect(),
                exit_code: 0,
                timed_out: false,
                stdout: Vec::new(),
                stderr: Vec::new(),
                run_duration: Duration::ZERO,
                keyed,
            }))
        };
        std::thread::sleep(Duration::from_millis(5));
        if spec.exclusive {
            self.exclusive_active.store(false, Ordering::SeqCst);
        }
        self.running.fetch_sub(1, Ordering::SeqCst);
        outcome
    }
}

struct Run {
    done: Vec<String>,
    failed: Vec<String>,
    skipped: Vec<String>,
}

fn schedule(
    actions: Vec<ActionSpec>,
    runner: &Fake,
    jobs: usize,
    keep_going: bool,
    weights: &[(&str, u64)],
) -> Run {
    let graph = ActionGraph::new(actions).unwrap_or_else(|e| panic!("{e}"));
    let needed: HashSet<ActionId> = (0..graph.actions.len() as u32).map(ActionId).collect();
    let weights: HashMap<String, u64> = weights.iter().map(|(n, w)| (n.to_string(), *w)).collect();
    let priorities = graph.priorities(&needed, &|spec| {
        weights.get(&spec.owner.name).copied().unwrap_or(1)
    });
    let after = |_: ActionId, _: &ActionDone| Vec::new();
    let outcome = run(
        &graph,
        &needed,
        &priorities,
        &HashMap::new(),
        runner,
        &ScheduleConfig {
            jobs,
            lookahead: 0,
            keep_going,
            stop: None,
        },
        &NoObserver,
        &after,
    );
    summary(&graph, &outcome)
}

/// The names of the actions done, failed and skipped, each sorted.
fn summary(graph: &ActionGraph, outcome: &ScheduleOutcome) -> Run {
    let names = |ids: Vec<&ActionId>| {
        let mut v: Vec<String> = ids
            .into_iter()
            .map(|id| graph.action(*id).owner.name.clone())
            .collect();
        v.sort();
        v
    };
    Run {
        done: names(outcome.done.keys().collect()),
        failed: names(outcome.failed.keys().collect()),
        skipped: names(outcome.skipped.iter().collect()),
    }
}

fn order(runner: &Fake) -> Vec<String> {
    runner.order.lock().map(|o| o.clone()).unwrap_or_default()
}

#[test]
fn producers_run_before_consumers() {
    let fake = Fake::default();
    let actions = vec![
        action("c", &["b.out"], &["c.out"]),
        action("b", &["a.out"], &["b.out"]),
        action("a", &[], &["a.out"]),
    ];
    let run = schedule(actions, &fake, 2, false, &[]);
    assert_eq!(order(&fake), ["a", "b", "c"]);
    assert_eq!(run.done, ["a", "b", "c"]);
}

#[test]
fn the_longest_chain_starts_first() {
    let fake = Fake::default();
    // Chain x1 -> x2 -> x3 (each weight 10) and a lone heavy-but-short y (weight 15): x1 is on the
    // critical path (30), so with one job it runs first.
    let actions = vec![
        action("y", &[], &["y.out"]),
        action("x1", &[], &["x1.out"]),
        action("x2", &["x1.out"], &["x2.out"]),
        action("x3", &["x2.out"], &["x3.out"]),
    ];
    schedule(
        actions,
        &fake,
        1,
        false,
        &[("x1", 10), ("x2", 10), ("x3", 10), ("y", 15)],
    );
    assert_eq!(order(&fake)[0], "x1");
}

#[test]
fn a_failure_skips_dependents_and_keep_going_continues_elsewhere() {
    let fake = Fake {
        fail: ["bad".to_string()].into(),
        ..Default::default()
    };
    let actions = vec![
        action("bad", &[], &["bad.out"]),
        action("needs_bad", &["bad.out"], &["n.out"]),
        action("other", &[], &["o.out"]),
        action("after_other", &["o.out"], &["a.out"]),
    ];
    let run = schedule(actions, &fake, 1, true, &[("bad", 100)]);
    assert_eq!(run.failed, ["bad"]);
    assert_eq!(run.skipped, ["needs_bad"]);
    assert_eq!(run.done, ["after_other", "other"]);

    let fake = Fake {
        fail: ["bad".to_string()].into(),
        ..Default::default()
    };
    let actions = vec![
        action("bad", &[], &["bad.out"]),
        action("other", &[], &["o.out"]),
        action("after_other", &["o.out"], &["a.out"]),
    ];
    let run = schedule(actions, &fake, 1, false, &[("bad", 100)]);
    assert_eq!(run.failed, ["bad"]);
    assert_eq!(
        run.done,
        Vec::<String>::new(),
        "without keep_going nothing starts after a failure"
    );
}

#[test]
fn an_early_output_starts_its_consumer_before_the_producer_ends() {
    let fake = Fake {
        early: ["producer".to_string()].into(),
        ..Default::default()
    };
    let mut producer = action("producer", &[], &["lib.rmeta", "lib.rlib"]);
    producer.early_outputs = None; // the fake announces through the callback itself
    let actions = vec![producer, action("consumer", &["lib.rmeta"], &["bin"])];
    let run = schedule(actions, &fake, 2, false, &[]);
    assert_eq!(run.done, ["consumer", "producer"]);
    // The consumer started while the producer was still running (the producer waits for it).
    let at_start = fake
        .concurrency_at_start
        .lock()
        .map(|m| m.get("consumer").copied())
        .unwrap_or(None);
    assert_eq!(
        at_start,
        Some(2),
        "the consumer did not start while the producer ran"
    );
}

#[test]
fn a_lost_input_reruns_its_producer_without_the_cache() {
    let fake = Fake::default();
    if let Ok(mut lose) = fake.lose_once.lock() {
        lose.insert("consumer".to_string(), "lib.out".to_string());
    }
    let actions = vec![
        action("producer", &[], &["lib.out"]),
        action("consumer", &["lib.out"], &["bin"]),
    ];
    let run = schedule(actions, &fake, 1, false, &[]);
    assert_eq!(run.done, ["consumer", "producer"]);
    assert_eq!(
        order(&fake),
        ["producer", "consumer", "producer", "consumer"]
    );
    assert_eq!(
        fake.forced.lock().map(|f| f.clone()).unwrap_or_default(),
        ["producer"]
    );
}

#[test]
fn an_exclusive_action_runs_alone() {
    let fake = Fake::default();
    let mut lonely = action("lonely", &[], &["l.out"]);
    lonely.exclusive = true;
    let actions = vec![
        action("a", &[], &["a.out"]),
        lonely,
        action("b", &[], &["b.out"]),
        action("c", &[], &["c.out"]),
    ];
    let run = schedule(actions, &fake, 2, false, &[("a", 10), ("lonely", 5)]);
    assert_eq!(run.done, ["a", "b", "c", "lonely"]);
    assert_eq!(fake.overlap_with_exclusive.load(Ordering::SeqCst), 0);
}

#[test]
fn consumers_started_early_are_cancelled_when_the_producer_fails() {
    let fake = Fake {
        early: ["producer".to_string()].into(),
        fail_after_early: ["producer".to_string()].into(),
        ..Default::default()
    };
    let actions = vec![
        action("producer", &[], &["lib.rmeta", "lib.rlib"]),
        action("slow_consumer", &["lib.rmeta"], &["bin"]),
    ];
    let run = schedule(actions, &fake, 2, true, &[]);
    assert!(
        fake.cancel_seen.load(Ordering::SeqCst),
        "the consumer was not cancelled"
    );
    assert_eq!(run.failed, ["producer", "slow_consumer"]);
    assert!(run.done.is_empty());
}

#[test]
fn an_early_output_that_changes_afterwards_fails_its_producer() {
    let fake = Fake {
        early: ["producer".to_string()].into(),
        changes_after_early: ["producer".to_string()].into(),
        ..Default::default()
    };
    let actions = vec![
        action("producer", &[], &["lib.rmeta"]),
        action("consumer", &["lib.rmeta"], &["bin"]),
    ];
    let run = schedule(actions, &fake, 2, true, &[]);
    assert!(
        run.failed.contains(&"producer".to_string()),
        "{:?}",
        run.failed
    );
}

#[test]
fn a_stop_cancels_running_actions_and_starts_no_more() {
    let fake = Fake::default();
    let actions = vec![
        action("slow_consumer", &[], &["slow.out"]),
        action("after", &["slow.out"], &["after.out"]),
        action("independent", &[], &["i.out"]),
    ];
    let graph = ActionGraph::new(actions).unwrap_or_else(|e| panic!("{e}"));
    let needed: HashSet<ActionId> = (0..graph.actions.len() as u32).map(ActionId).collect();
    let priorities = graph.priorities(&needed, &|spec| {
        if spec.owner.name == "slow_consumer" {
            10
        } else {
            1
        }
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let after = |_: ActionId, _: &ActionDone| Vec::new();
    let outcome = std::thread::scope(|scope| {
        let flag = std::sync::Arc::clone(&stop);
        scope.spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            flag.store(true, Ordering::SeqCst);
        });
        run(
            &graph,
            &needed,
            &priorities,
            &HashMap::new(),
            &fake,
            &ScheduleConfig {
                jobs: 1,
                lookahead: 0,
                keep_going: true,
                stop: Some(std::sync::Arc::clone(&stop)),
            },
            &NoObserver,
            &after,
        )
    });
    assert!(outcome.stopped);
    assert!(
        fake.cancel_seen.load(Ordering::SeqCst),
        "the running action saw its cancel flag"
    );
    let failed: Vec<&str> = outcome
        .failed
        .keys()
        .map(|id| graph.action(*id).owner.name.as_str())
        .collect();
    assert_eq!(failed, ["slow_consumer"]);
    assert!(outcome.done.is_empty(), "nothing starts after the stop");
    assert_eq!(outcome.skipped.len(), 2);
}

#[test]
fn consumers_start_while_the_producers_outputs_are_still_being_materialized() {
    // The after-hook (which copies outputs into kiln-out/) of `producer` waits, bounded, for
    // `consumer` to start: it can only if the outputs were released before the hook ran.
    let fake = Fake::default();
    let graph = ActionGraph::new(vec![
        action("producer", &[], &["lib.out"]),
        action("consumer", &["lib.out"], &["bin"]),
    ])
    .unwrap();
    let needed: HashSet<ActionId> = (0..graph.actions.len() as u32).map(ActionId).collect();
    let priorities = graph.priorities(&needed, &|_| 1);
    let consumer_started_first = std::sync::atomic::AtomicBool::new(false);
    let after = |id: ActionId, _: &ActionDone| {
        if graph.action(id).owner.name == "producer" {
            let started = || fake.order.lock().unwrap().iter().any(|n| n == "consumer");
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !started() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            consumer_started_first.store(started(), Ordering::SeqCst);
        }
        Vec::new()
    };
    let outcome = run(
        &graph,
        &needed,
        &priorities,
        &HashMap::new(),
        &fake,
        &ScheduleConfig {
            jobs: 2,
            lookahead: 0,
            keep_going: false,
            stop: None,
        },
        &NoObserver,
        &after,
    );
    assert_eq!(outcome.done.len(), 2);
    assert!(consumer_started_first.load(Ordering::SeqCst));
}

/// A runner where some actions are cache hits (answered at once, without a permit) and the
/// others take an execution permit, as the real runner does after a miss.
#[derive(Default)]
struct Lookahead {
    hits: HashSet<String>,
    hits_done: AtomicUsize,
    executing: AtomicUsize,
    most_executing: AtomicUsize,
    /// Hits that had finished when `slow` ended, while it held its permit.
    hits_seen_by_slow: AtomicUsize,
    /// How long `slow` waits for the hits, in 10 ms ticks.
    patience: usize,
    /// Misses in the order they got their permit.
    executed: Mutex<Vec<String>>,
    /// Misses that fail.
    fail: HashSet<String>,
    /// How long a miss "stores its outputs" after its process ends and gives its permit back.
    store_ms: u64,
    /// Misses storing their outputs right now.
    storing: AtomicUsize,
    /// Misses that started while another was still storing its outputs.
    started_beside_a_store: AtomicUsize,
}

impl ActionRunner for Lookahead {
    fn run(
        &self,
        spec: &ActionSpec,
        inputs: &dyn Fn(&Artifact) -> Option<FileDigest>,
        options: &RunOptions<'_>,
    ) -> RunOutcome {
        let name = spec.owner.name.clone();
        let keyed = compute_key(
            spec,
            inputs,
            &PlatformProperties::default(),
            DigestFunction::Blake3,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        // A rerun (its output was lost after a hit) bypasses the cache.
        let hit = self.hits.contains(&name) && !options.force_execute;
        if let (false, Some(ticket)) = (hit, options.permit) {
            // The permit goes back when the "process" ends (`ran`), as the real runner does.
            if !ticket.acquire(options.cancel) {
                return RunOutcome::Failed {
                    key: Some(keyed.key),
                    message: format!("{name} did not start"),
                };
            }
        }
        if hit {
            self.hits_done.fetch_add(1, Ordering::SeqCst);
        } else {
            if let Ok(mut executed) = self.executed.lock() {
                executed.push(name.clone());
            }
            if self.storing.load(Ordering::SeqCst) > 0 {
                self.started_beside_a_store.fetch_add(1, Ordering::SeqCst);
            }
            let now = self.executing.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_executing.fetch_max(now, Ordering::SeqCst);
            if name == "slow" {
                // Runs until every hit is answered (bounded), as a long link would.
                for _ in 0..self.patience {
                    if self.hits_done.load(Ordering::SeqCst) == self.hits.len() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                self.hits_seen_by_slow
                    .store(self.hits_done.load(Ordering::SeqCst), Ordering::SeqCst);
            } else {
                std::thread::sleep(Duration::from_millis(5));
            }
            self.executing.fetch_sub(1, Ordering::SeqCst);
            // Storing starts before the permit goes back, so that a miss it lets in sees it.
            self.storing.fetch_add(1, Ordering::SeqCst);
            // As the real runner: a failed action keeps its permit until the scheduler has seen
            // the failure.
            if let (Some(ticket), false) = (options.permit, self.fail.contains(&name)) {
                ticket.ran();
            }
            std::thread::sleep(Duration::from_millis(self.store_ms));
            self.storing.fetch_sub(1, Ordering::SeqCst);
        }
        if self.fail.contains(&name) {
            return RunOutcome::Failed {
                key: Some(keyed.key),
                message: format!("{name} failed"),
            };
        }
        RunOutcome::Done(Box::new(ActionDone {
            key: keyed.key,
            status: if hit {
                CacheStatus::LocalHit
            } else {
                CacheStatus::Executed
            },
            outputs: spec
                .outputs
                .iter()
                .map(|o| (o.path.clone(), file(&o.path)))
                .collect(),
            exit_code: 0,
            timed_out: false,
            stdout: Vec::new(),
            stderr: Vec::new(),
            run_duration: Duration::ZERO,
            keyed,
        }))
    }
}

fn schedule_with_lookahead(actions: Vec<ActionSpec>, runner: &Arc<Lookahead>, lookahead: usize) {
    // `slow` first: it holds the one permit while the rest are dispatched.
    schedule_weighted(actions, runner, lookahead, &[("slow", 100)]);
}

fn schedule_weighted(
    actions: Vec<ActionSpec>,
    runner: &Arc<Lookahead>,
    lookahead: usize,
    weights: &[(&str, u64)],
) {
    let count = actions.len();
    let run = schedule_lookahead(actions, runner, lookahead, weights, &[]);
    assert_eq!(run.done.len(), count);
}

/// Schedules with `jobs: 1`, no `--keep_going`; `lose_once` names outputs that `after` finds
/// lost the first time (their producer reruns). Fails the test if the build does not end in
/// 20 s (a deadlock), leaving its thread behind.
fn schedule_lookahead(
    actions: Vec<ActionSpec>,
    runner: &Arc<Lookahead>,
    lookahead: usize,
    weights: &[(&str, u64)],
    lose_once: &[&str],
) -> Run {
    let weights: HashMap<String, u64> = weights.iter().map(|(n, w)| (n.to_string(), *w)).collect();
    let to_lose: Mutex<HashSet<String>> =
        Mutex::new(lose_once.iter().map(|p| p.to_string()).collect());
    let runner = Arc::clone(runner);
    let (finished_tx, finished_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let graph = ActionGraph::new(actions).unwrap_or_else(|e| panic!("{e}"));
        let needed: HashSet<ActionId> = (0..graph.actions.len() as u32).map(ActionId).collect();
        let priorities = graph.priorities(&needed, &|spec| {
            weights.get(&spec.owner.name).copied().unwrap_or(1)
        });
        let after = |_: ActionId, done: &ActionDone| -> Vec<String> {
            // As copying outputs into kiln-out/ takes a while: the scheduler has the action's
            // released outputs (and its permit) well before its `Finished`.
            std::thread::sleep(Duration::from_millis(30));
            let mut lose = to_lose.lock().unwrap_or_else(|e| e.into_inner());
            done.outputs
                .keys()
                .filter(|path| lose.remove(*path))
                .cloned()
                .collect()
        };
        let outcome = run(
            &graph,
            &needed,
            &priorities,
            &HashMap::new(),
            runner.as_ref(),
            &ScheduleConfig {
                jobs: 1,
                lookahead,
                keep_going: false,
                stop: None,
            },
            &NoObserver,
            &after,
        );
        let _ = finished_tx.send(summary(&graph, &outcome));
    });
    finished_rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("the build did not end: a deadlock"))
}

#[test]
fn with_a_lookahead_hits_are_answered_while_an_action_runs_and_misses_wait_their_turn() {
    let runner = Arc::new(Lookahead {
        hits: ["hit1", "hit2", "hit3"].map(String::from).into(),
        patience: 500,
        ..Lookahead::default()
    });
    let actions = vec![
        action("slow", &[], &["slow.out"]),
        action("hit1", &[], &["h1.out"]),
        // A chain of hits: each dispatched when the one before it is answered.
        action("hit2", &["h1.out"], &["h2.out"]),
        action("hit3", &["h2.out"], &["h3.out"]),
        action("miss", &[], &["m.out"]),
    ];
    schedule_with_lookahead(actions, &runner, 2);
    assert_eq!(runner.hits_seen_by_slow.load(Ordering::SeqCst), 3);
    // `miss` was in flight too, but never ran beside `slow`: --jobs 1.
    assert_eq!(runner.most_executing.load(Ordering::SeqCst), 1);
}

#[test]
fn without_a_lookahead_hits_wait_for_the_running_action() {
    let runner = Arc::new(Lookahead {
        hits: ["hit1"].map(String::from).into(),
        patience: 30,
        ..Lookahead::default()
    });
    let actions = vec![
        action("slow", &[], &["slow.out"]),
        action("hit1", &[], &["h1.out"]),
    ];
    // `slow` gives up waiting after its bound: the hit could not be answered beside it.
    schedule_with_lookahead(actions, &runner, 0);
    assert_eq!(runner.hits_seen_by_slow.load(Ordering::SeqCst), 0);
}

#[test]
fn with_a_lookahead_the_critical_path_still_runs_first() {
    // `first` runs while `side` (lower priority) is dispatched and waits for the one permit;
    // `next`, released by `first`, has the higher priority and must run before `side`, though
    // `first`'s process ends (and gives its permit back) a while before `next` is released. With
    // a lookahead of 1 (as the engine sets it for `--jobs 1`), `first` and `side` fill both
    // places in flight when `first` releases `next`.
    for lookahead in [2, 1] {
        let runner = Arc::new(Lookahead {
            store_ms: 30,
            ..Lookahead::default()
        });
        let actions = vec![
            action("first", &[], &["f.out"]),
            action("next", &["f.out"], &["n.out"]),
            action("side", &[], &["s.out"]),
        ];
        schedule_weighted(
            actions,
            &runner,
            lookahead,
            &[("first", 50), ("next", 70), ("side", 60)],
        );
        let executed = runner
            .executed
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default();
        assert_eq!(executed, ["first", "next", "side"], "lookahead {lookahead}");
    }
}

#[test]
fn with_a_lookahead_a_miss_runs_while_the_one_before_it_stores_its_outputs() {
    let runner = Arc::new(Lookahead {
        store_ms: 200,
        ..Lookahead::default()
    });
    // Nothing waits for either output, so `first`'s permit goes back as its process ends.
    let actions = vec![
        action("first", &[], &["f.out"]),
        action("second", &[], &["s.out"]),
    ];
    schedule_weighted(actions, &runner, 2, &[("first", 50)]);
    assert_eq!(
        runner.started_beside_a_store.load(Ordering::SeqCst),
        1,
        "`second` ran while `first` stored"
    );
    assert_eq!(runner.most_executing.load(Ordering::SeqCst), 1, "--jobs 1");
}

#[test]
fn with_a_lookahead_a_hit_whose_output_is_lost_reruns_and_the_build_ends() {
    let runner = Arc::new(Lookahead {
        hits: ["cached", "other"].map(String::from).into(),
        ..Lookahead::default()
    });
    let actions = vec![
        action("cached", &[], &["c.out"]),
        action("other", &[], &["o.out"]),
        action("after_it", &["c.out"], &["a.out"]),
    ];
    let run = schedule_lookahead(actions, &runner, 2, &[("cached", 10)], &["c.out"]);
    assert_eq!(run.done, ["after_it", "cached", "other"]);
    let mut executed = runner
        .executed
        .lock()
        .map(|e| e.clone())
        .unwrap_or_default();
    // `after_it` may start as soon as `c.out` is in the CAS, before the copy finds it lost.
    executed.sort();
    assert_eq!(
        executed,
        ["after_it", "cached"],
        "the rerun bypassed the cache"
    );
}

#[test]
fn with_a_lookahead_a_failure_keeps_waiting_misses_from_starting() {
    let runner = Arc::new(Lookahead {
        fail: ["bad"].map(String::from).into(),
        ..Lookahead::default()
    });
    // `bad` runs first (highest priority); `w1` and `w2` are in flight, waiting for the one
    // permit, when it fails.
    let actions = vec![
        action("bad", &[], &["b.out"]),
        action("w1", &[], &["w1.out"]),
        action("w2", &[], &["w2.out"]),
    ];
    let run = schedule_lookahead(actions, &runner, 2, &[("bad", 10)], &[]);
    assert_eq!(run.failed, ["bad"]);
    assert_eq!(run.skipped, ["w1", "w2"]);
    let executed = runner
        .executed
        .lock()
        .map(|e| e.clone())
        .unwrap_or_default();
    assert_eq!(executed, ["bad"]);
}
