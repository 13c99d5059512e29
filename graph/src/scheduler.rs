//! The parallel scheduler: runs the needed actions of an [`ActionGraph`], `jobs` at a time,
//! highest critical-path priority first, starting an action as soon as every file it reads exists
//! (which may be before its producer ends, when the producer announces early outputs). With a
//! `lookahead`, that many more are in flight on their own worker threads: keyed and looked up in
//! the caches, a miss then waits for one of `jobs` execution permits ([`crate::permits`]). A
//! consumer that finds a derived input's blob lost sends its producer back to run again.

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::action::Artifact;
use crate::action_graph::{ActionGraph, ActionId};
use crate::action_key::FileDigest;
use crate::events::{BuildEvent, BuildObserver, CacheStatus};
use crate::execute::{ActionDone, ActionRunner, RunOptions, RunOutcome};
use crate::permits::{ExecPermits, PermitTicket};

/// Scheduler settings.
#[derive(Clone, Debug)]
pub struct ScheduleConfig {
    /// Number of actions run at once.
    pub jobs: usize,
    /// Actions kept in flight beyond `jobs`: keyed and looked up in the caches meanwhile, a miss
    /// then waits for an execution permit (see [`crate::permits`]). 0 keeps exactly `jobs` in
    /// flight, and the runner is given no permits.
    pub lookahead: usize,
    /// Keep building independent actions after a failure.
    pub keep_going: bool,
    /// Set from another thread to stop the build: running actions are cancelled (their results
    /// are never recorded) and nothing more starts. `kiln watch` sets it when an input changes
    /// under a round.
    pub stop: Option<Arc<AtomicBool>>,
}

/// How often a stoppable build looks at its stop flag while it waits for actions.
const STOP_POLL: Duration = Duration::from_millis(10);

/// Called on a worker thread when an action has a result, before dependents are released; returns
/// the outputs whose blobs turned out to be lost (so the action must run again without the cache).
pub type AfterAction<'a> = dyn Fn(ActionId, &ActionDone) -> Vec<String> + Sync + 'a;

/// What happened to every needed action.
#[derive(Default)]
pub struct ScheduleOutcome {
    /// Results of actions that succeeded (tests that failed are here too, with their exit code).
    pub done: HashMap<ActionId, ActionDone>,
    /// Actions that failed, with the message.
    pub failed: HashMap<ActionId, String>,
    /// Actions not run because something they need failed (or the build stopped).
    pub skipped: HashSet<ActionId>,
    /// Digests of every derived file produced or found.
    pub files: HashMap<String, FileDigest>,
    /// Successful attempts by how they were satisfied; an action rerun after a lost blob counts
    /// twice (its hit, then its execution), matching its two `ActionFinished` events.
    pub attempts: HashMap<CacheStatus, usize>,
    /// The build was stopped through [`ScheduleConfig::stop`] before every action ran.
    pub stopped: bool,
}

/// One dispatched action.
struct Job<'p> {
    id: ActionId,
    /// Its derived inputs' digests.
    inputs: HashMap<String, FileDigest>,
    /// Bypass the cache (a previous result's outputs were lost).
    force_execute: bool,
    cancel: Arc<AtomicBool>,
    /// Its claim to an execution permit (with a lookahead).
    ticket: Option<PermitTicket<'p>>,
}

enum Message<'p> {
    Early(String, FileDigest),
    /// A finished action's outputs, in the CAS but not yet copied into `kiln-out/`, with its
    /// permit ticket: dropped (freeing a permit it still holds, removing its stand-in) once what
    /// the outputs release is dispatched.
    Stored(Vec<(String, FileDigest)>, Option<PermitTicket<'p>>),
    Finished(
        ActionId,
        Box<RunOutcome>,
        Duration,
        Option<PermitTicket<'p>>,
    ),
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Ready {
    priority: u64,
    id: std::cmp::Reverse<ActionId>,
}

/// Runs `needed` actions. `sources` holds the digests of every source file an action reads.
#[allow(clippy::too_many_arguments)]
pub fn run(
    graph: &ActionGraph,
    needed: &HashSet<ActionId>,
    priorities: &HashMap<ActionId, u64>,
    sources: &HashMap<String, FileDigest>,
    runner: &dyn ActionRunner,
    config: &ScheduleConfig,
    observer: &dyn BuildObserver,
    after: &AfterAction<'_>,
) -> ScheduleOutcome {
    let mut outcome = ScheduleOutcome::default();
    let mut waiting: HashMap<ActionId, HashSet<String>> = HashMap::new();
    let mut waiters: HashMap<String, Vec<ActionId>> = HashMap::new();
    let mut heap = BinaryHeap::new();
    let mut force: HashSet<ActionId> = HashSet::new();
    let mut rerun: HashSet<ActionId> = HashSet::new();
    let mut reruns: HashMap<ActionId, u32> = HashMap::new();
    let push = |heap: &mut BinaryHeap<Ready>, id: ActionId| {
        heap.push(Ready {
            priority: priorities.get(&id).copied().unwrap_or(0),
            id: std::cmp::Reverse(id),
        });
    };
    for id in needed {
        let pending: HashSet<String> = graph
            .action(*id)
            .inputs
            .iter()
            .filter(|i| !i.artifact.source)
            .map(|i| i.artifact.path.clone())
            .collect();
        if pending.is_empty() {
            push(&mut heap, *id);
        } else {
            for path in &pending {
                waiters.entry(path.clone()).or_default().push(*id);
            }
            waiting.insert(*id, pending);
        }
    }
    let total = needed.len();
    let in_flight = config.jobs.max(1) + config.lookahead;
    let permits = (config.lookahead > 0).then(|| ExecPermits::new(config.jobs));
    let permits = permits.as_ref();
    let (job_tx, job_rx) = mpsc::channel::<Job<'_>>();
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (msg_tx, msg_rx) = mpsc::channel::<Message<'_>>();
    let mut running: HashSet<ActionId> = HashSet::new();
    let mut stopping = false;
    let mut exclusive_running = false;
    // Consumers started on early outputs, by producer: killed if the producer then fails.
    let mut early_consumers: HashMap<ActionId, Vec<ActionId>> = HashMap::new();
    let mut cancels: HashMap<ActionId, Arc<AtomicBool>> = HashMap::new();
    // Digests announced early, to check against what the action finally leaves behind.
    let mut early_digests: HashMap<String, FileDigest> = HashMap::new();
    // Tickets of actions whose outputs were just released: dropped after the next dispatch.
    let mut spent_tickets: Vec<PermitTicket<'_>> = Vec::new();

    std::thread::scope(|scope| {
        // With permits, up to `jobs` more jobs than `in_flight` may be out (see the dispatch
        // loop), and every dispatched job needs a thread of its own: a job waiting in the queue
        // would hold its place in line for a permit that no waiting worker could then take.
        let workers = in_flight
            + if permits.is_some() {
                config.jobs.max(1)
            } else {
                0
            };
        for _ in 0..workers {
            let job_rx = Arc::clone(&job_rx);
            let msg_tx = msg_tx.clone();
            scope.spawn(move || loop {
                let job = match job_rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                let Ok(Job {
                    id,
                    inputs,
                    force_execute,
                    cancel,
                    mut ticket,
                }) = job
                else {
                    return;
                };
                let spec = graph.action(id);
                let successor = ticket.as_ref().and_then(PermitTicket::successor);
                let clock = Instant::now();
                let lookup = |a: &Artifact| {
                    if a.source {
                        sources.get(&a.path).copied()
                    } else {
                        inputs.get(&a.path).copied()
                    }
                };
                let early_tx = msg_tx.clone();
                let early = move |path: &str, digest: FileDigest| {
                    let _ = early_tx.send(Message::Early(path.to_string(), digest));
                };
                let started = || {
                    observer.event(&BuildEvent::ActionStarted {
                        label: spec.owner.clone(),
                        mnemonic: spec.mnemonic.clone(),
                        message: spec.progress_message.clone(),
                    })
                };
                let options = RunOptions {
                    force_execute,
                    on_early_output: Some(&early),
                    on_start: Some(&started),
                    cancel: Some(&cancel),
                    permit: ticket.as_ref(),
                };
                let mut result = runner.run(spec, &lookup, &options);
                // A hit, or an error before running: out of line at once.
                if let Some(ticket) = &ticket {
                    ticket.withdraw();
                }
                if let RunOutcome::Done(done) = &result {
                    // The outputs are in the CAS, where dependents stage them from: release
                    // them now rather than after `after` copies them into kiln-out/. Should a
                    // copy find its blob gone and the rerun make other bytes, the early-output
                    // check fails this action and its early consumers.
                    let stored = done.outputs.iter().map(|(p, d)| (p.clone(), *d)).collect();
                    let _ = msg_tx.send(Message::Stored(stored, ticket.take()));
                    let lost = after(id, done);
                    if !lost.is_empty() {
                        // The first run's ticket went with its outputs: the rerun gets in line
                        // again.
                        let priority = priorities.get(&id).copied().unwrap_or(0);
                        ticket = permits.map(|p| p.announce(priority, successor));
                        let retry = RunOptions {
                            force_execute: true,
                            on_early_output: Some(&early),
                            on_start: Some(&started),
                            cancel: Some(&cancel),
                            permit: ticket.as_ref(),
                        };
                        result = runner.run(spec, &lookup, &retry);
                        if let Some(ticket) = &ticket {
                            ticket.withdraw();
                        }
                        if let RunOutcome::Done(done) = &result {
                            let lost = after(id, done);
                            if !lost.is_empty() {
                                result = RunOutcome::Failed {
                                    key: Some(done.key),
                                    message: format!(
                                        "Outputs could not be materialized: {}",
                                        lost.join(", ")
                                    ),
                                };
                            }
                        }
                    }
                }
                if msg_tx
                    .send(Message::Finished(
                        id,
                        Box::new(result),
                        clock.elapsed(),
                        ticket,
                    ))
                    .is_err()
                {
                    return;
                }
            });
        }
        drop(msg_tx);

        let mut finished = 0usize;
        let stop_requested = || {
            config
                .stop
                .as_ref()
                .is_some_and(|flag| flag.load(Ordering::SeqCst))
        };
        loop {
            if !outcome.stopped && stop_requested() {
                outcome.stopped = true;
                stopping = true;
                for flag in cancels.values() {
                    flag.store(true, Ordering::SeqCst);
                }
            }
            // A producer whose outputs were just released still counts as running, but its
            // permit (in `spent_tickets`) is freed only after this loop: what it released must
            // be dispatched, and so in line for that permit, even when `in_flight` is full.
            while !stopping && running.len() < in_flight + spent_tickets.len() && !exclusive_running
            {
                // An exclusive action waits for the running ones to finish, then runs alone.
                if let Some(top) = heap.peek() {
                    if graph.action(top.id.0).exclusive && !running.is_empty() {
                        break;
                    }
                }
                let Some(Ready {
                    id: std::cmp::Reverse(id),
                    ..
                }) = heap.pop()
                else {
                    break;
                };
                let spec = graph.action(id);
                let inputs: HashMap<String, FileDigest> = spec
                    .inputs
                    .iter()
                    .filter(|i| !i.artifact.source)
                    .filter_map(|i| {
                        outcome
                            .files
                            .get(&i.artifact.path)
                            .map(|d| (i.artifact.path.clone(), *d))
                    })
                    .collect();
                if spec
                    .inputs
                    .iter()
                    .any(|i| !i.artifact.source && !inputs.contains_key(&i.artifact.path))
                {
                    // An input was withdrawn (its producer reruns): wait for it again.
                    let pending: HashSet<String> = spec
                        .inputs
                        .iter()
                        .filter(|i| !i.artifact.source && !inputs.contains_key(&i.artifact.path))
                        .map(|i| i.artifact.path.clone())
                        .collect();
                    for path in &pending {
                        waiters.entry(path.clone()).or_default().push(id);
                    }
                    waiting.insert(id, pending);
                    continue;
                }
                exclusive_running = graph.action(id).exclusive;
                for dep in &graph.deps[id.0 as usize] {
                    if running.contains(dep) {
                        early_consumers.entry(*dep).or_default().push(id);
                    }
                }
                let cancel = Arc::new(AtomicBool::new(false));
                cancels.insert(id, Arc::clone(&cancel));
                running.insert(id);
                observer.event(&BuildEvent::Progress {
                    done: finished,
                    total,
                    running: running.len(),
                    current: Some(spec.progress_message.clone()),
                });
                let ticket = permits.map(|p| {
                    let priority = |id: &ActionId| priorities.get(id).copied().unwrap_or(0);
                    // What waits for its outputs: a stand-in at the highest of those priorities
                    // keeps its place in line once its process ends (see `permits`).
                    let successor = spec
                        .outputs
                        .iter()
                        .filter_map(|o| waiters.get(&o.path))
                        .flatten()
                        .map(priority)
                        .max();
                    p.announce(priority(&id), successor)
                });
                let job = Job {
                    id,
                    inputs,
                    force_execute: force.remove(&id),
                    cancel,
                    ticket,
                };
                if job_tx.send(job).is_err() {
                    stopping = true;
                }
            }
            // Tickets of finished actions go only now, when what those actions released is
            // dispatched and in line (see `permits`): a permit still held is freed, a stand-in
            // leaves the line.
            if stopping {
                if let Some(permits) = permits {
                    // Actions waiting for a permit must not start now (closed before the
                    // spent tickets below go, so none of them gets a permit they free).
                    permits.close();
                }
            }
            spent_tickets.clear();
            if running.is_empty() {
                break;
            }
            let message = if config.stop.is_some() && !outcome.stopped {
                // Wake up now and then to look at the stop flag.
                match msg_rx.recv_timeout(STOP_POLL) {
                    Ok(message) => message,
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            } else {
                let Ok(message) = msg_rx.recv() else { break };
                message
            };
            match message {
                Message::Early(path, digest) => {
                    early_digests.insert(path.clone(), digest);
                    release(
                        &path,
                        digest,
                        &mut outcome,
                        &mut waiting,
                        &mut waiters,
                        &mut heap,
                        &push,
                    );
                }
                Message::Stored(outputs, ticket) => {
                    spent_tickets.extend(ticket);
                    for (path, digest) in outputs {
                        // One announced earlier with other bytes: `Finished` fails the producer.
                        match early_digests.get(&path) {
                            Some(announced) if *announced != digest => continue,
                            Some(_) => {}
                            None => {
                                early_digests.insert(path.clone(), digest);
                            }
                        }
                        release(
                            &path,
                            digest,
                            &mut outcome,
                            &mut waiting,
                            &mut waiters,
                            &mut heap,
                            &push,
                        );
                    }
                }
                Message::Finished(id, result, elapsed, ticket) => {
                    running.remove(&id);
                    cancels.remove(&id);
                    if graph.action(id).exclusive {
                        exclusive_running = false;
                    }
                    if ticket.as_ref().is_some_and(|t| t.refused()) {
                        // The build stopped starting actions while it waited: it did not run.
                        outcome.skipped.insert(id);
                        continue;
                    }
                    spent_tickets.extend(ticket);
                    let spec = graph.action(id);
                    let mut result = *result;
                    if let RunOutcome::Done(done) = &result {
                        // An early output that changed after consumers started on it would leave
                        // them built against bytes that no longer exist: fail the producer (which
                        // cancels or fails its early consumers) rather than go on inconsistent.
                        let changed: Vec<&String> = done
                            .outputs
                            .iter()
                            .filter(|(path, digest)| {
                                early_digests.get(*path).is_some_and(|e| e != *digest)
                            })
                            .map(|(path, _)| path)
                            .collect();
                        if !changed.is_empty() {
                            let message = format!(
                                "Output `{}` changed after it was announced as complete",
                                changed
                                    .iter()
                                    .map(|p| p.as_str())
                                    .collect::<Vec<_>>()
                                    .join("`, `")
                            );
                            result = RunOutcome::Failed {
                                key: Some(done.key),
                                message,
                            };
                        }
                    }
                    match result {
                        RunOutcome::Done(done) => {
                            finished += 1;
                            observer.event(&BuildEvent::ActionFinished {
                                label: spec.owner.clone(),
                                mnemonic: spec.mnemonic.clone(),
                                output: spec.history_key(),
                                status: done.status,
                                duration: elapsed,
                                success: true,
                                key: done.key.hex(),
                                rerun: rerun.contains(&id),
                            });
                            *outcome.attempts.entry(done.status).or_insert(0) += 1;
                            for (path, digest) in &done.outputs {
                                release(
                                    path,
                                    *digest,
                                    &mut outcome,
                                    &mut waiting,
                                    &mut waiters,
                                    &mut heap,
                                    &push,
                                );
                            }
                            outcome.done.insert(id, *done);
                        }
                        RunOutcome::Failed { key, message } => {
                            finished += 1;
                            observer.event(&BuildEvent::ActionFinished {
                                label: spec.owner.clone(),
                                mnemonic: spec.mnemonic.clone(),
                                output: spec.history_key(),
                                status: CacheStatus::Executed,
                                duration: elapsed,
                                success: false,
                                key: key.map(|k| k.hex()).unwrap_or_default(),
                                rerun: rerun.contains(&id),
                            });
                            if !outcome.stopped {
                                // A stopped build's cancelled actions are not the user's errors.
                                observer.event(&BuildEvent::ActionFailed {
                                    label: spec.owner.clone(),
                                    mnemonic: spec.mnemonic.clone(),
                                    message: message.clone(),
                                });
                            }
                            outcome.failed.insert(id, message);
                            for consumer in early_consumers.remove(&id).unwrap_or_default() {
                                if let Some(flag) = cancels.get(&consumer) {
                                    flag.store(true, Ordering::SeqCst);
                                }
                            }
                            if !config.keep_going {
                                stopping = true;
                            }
                        }
                        RunOutcome::LostInputs { paths, cause } => {
                            if let Some(cause) = &cause {
                                observer.event(&BuildEvent::Warning(format!(
                                    "`{}` lost inputs while it ran ({cause})",
                                    spec.owner
                                )));
                            }
                            let mut gave_up = None;
                            for path in &paths {
                                outcome.files.remove(path);
                                // Its producer runs again and announces what it makes then.
                                early_digests.remove(path);
                                let Some(producer) = graph.producer(path) else {
                                    continue;
                                };
                                let count = reruns.entry(producer).or_insert(0);
                                *count += 1;
                                if *count > 2 {
                                    gave_up = Some(path.clone());
                                    continue;
                                }
                                observer.event(&BuildEvent::Warning(format!(
                                    "Cached output `{path}` was missing or corrupt; running `{}` again",
                                    graph.action(producer).owner
                                )));
                                if outcome.done.remove(&producer).is_some()
                                    && !running.contains(&producer)
                                {
                                    finished = finished.saturating_sub(1);
                                    force.insert(producer);
                                    rerun.insert(producer);
                                    push(&mut heap, producer);
                                }
                            }
                            match gave_up {
                                Some(path) => {
                                    outcome.failed.insert(
                                        id,
                                        format!("Input `{path}` is lost and could not be rebuilt"),
                                    );
                                    if !config.keep_going {
                                        stopping = true;
                                    }
                                }
                                None => push(&mut heap, id),
                            }
                        }
                    }
                    observer.event(&BuildEvent::Progress {
                        done: finished,
                        total,
                        running: running.len(),
                        current: None,
                    });
                }
            }
        }
        drop(job_tx);
    });

    for id in needed {
        if !outcome.done.contains_key(id) && !outcome.failed.contains_key(id) {
            outcome.skipped.insert(*id);
        }
    }
    outcome
}

fn release(
    path: &str,
    digest: FileDigest,
    outcome: &mut ScheduleOutcome,
    waiting: &mut HashMap<ActionId, HashSet<String>>,
    waiters: &mut HashMap<String, Vec<ActionId>>,
    heap: &mut BinaryHeap<Ready>,
    push: &dyn Fn(&mut BinaryHeap<Ready>, ActionId),
) {
    outcome.files.insert(path.to_string(), digest);
    if let Some(consumers) = waiters.remove(path) {
        for consumer in consumers {
            if let Some(pending) = waiting.get_mut(&consumer) {
                pending.remove(path);
                if pending.is_empty() {
                    waiting.remove(&consumer);
                    push(heap, consumer);
                }
            }
        }
    }
}
