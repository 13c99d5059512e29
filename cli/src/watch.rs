//! `kiln watch build|test|run TARGETS [-- ARGS]`: one build (test, run) at start, then one per
//! change. Directories are watched (so saves by rename are seen; [`scope`] says which, [`dirs`]
//! watches them), events are filtered by path and decided by content ([`changes`]), a burst
//! settles for [`SETTLE`] into one round, and an event during a round stops it and makes another
//! round follow. Each round takes the build lock, so a `kiln build` elsewhere waits for it, and
//! the mark such a build leaves in the workspace state starts a round that puts `kiln-out/` back
//! in step with this watch. `run` mode restarts the program only when its executable or runfiles
//! changed, and keeps the old one running when a build fails.

mod changes;
mod dirs;
mod inbox;
mod round;
mod scope;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Result;
use kiln_exec::service::Service;
use kiln_graph::engine::{BuildReport, Goal, WatchSet};
use kiln_graph::label::Label;
use kiln_graph::pattern::PatternSet;
use serde_json::json;

use crate::args::{BuildFlags, TestOutput, WatchArgs, WatchMode};
use crate::commands::{parse_patterns, prepare_run, test_options, Session};
use crate::exit::{self, Exit};
use crate::workspace::Workspace;
use changes::ChangeTracker;
use dirs::{ignored, DirWatcher};
use inbox::Inbox;
use round::{RoundObserver, RoundOutcome};
use scope::WatchScope;

/// Quiet time that ends a burst of events (a `git checkout`, a formatter run) into one round.
const SETTLE: Duration = Duration::from_millis(30);

/// The longest a burst may hold a round back.
const SETTLE_AT_MOST: Duration = Duration::from_millis(500);

/// What a change is called when the OS dropped file events.
const LOST_EVENTS: &str = "(the OS dropped file events; checking everything)";

/// How often the sentry of a running round looks whether the round is over.
const SENTRY_POLL: Duration = Duration::from_millis(10);

/// How often, while another kiln process holds the build lock, the watcher looks whether it is
/// done.
const OTHER_BUILD_POLL: Duration = Duration::from_millis(100);

/// What a change that is another kiln process's build is called in a round's header.
const OTHER_BUILD: &str = "(another kiln build or clean changed kiln-out)";

/// What each round does.
enum Action {
    Build,
    Test(TestOutput),
    Run { label: Label, args: Vec<String> },
}

/// What `kiln watch` was asked to do, from its command line.
struct Plan {
    flags: BuildFlags,
    patterns: PatternSet,
    goal: Goal,
    action: Action,
    grace: Duration,
    poll: bool,
}

/// Checks the command line and opens the session.
fn plan(args: WatchArgs) -> Result<(Session, Plan)> {
    if !args.grace.is_finite() || !(0.0..=600.0).contains(&args.grace) {
        return Err(Exit::new(
            exit::BAD_COMMAND_LINE,
            format!(
                "--grace expects a number of seconds (0 to 600), not `{}`",
                args.grace
            ),
        )
        .into());
    }
    let grace = Duration::from_secs_f64(args.grace);
    exit::SERVICE_GRACE_MS.store(grace.as_millis() as u64, Ordering::SeqCst);
    // `run` mode's arguments, until its pattern is parsed into the label to run.
    let (patterns, flags, goal, test_output, run_args) = match args.mode {
        WatchMode::Build(b) => (b.patterns, b.flags, Goal::Build, None, None),
        WatchMode::Test(t) => {
            let goal = Goal::Test(test_options(&t));
            (t.patterns, t.flags, goal, Some(t.test_output), None)
        }
        WatchMode::Run(r) => (vec![r.target], r.flags, Goal::Build, None, Some(r.args)),
    };
    let session = Session::open(&flags)?;
    let patterns = parse_patterns(&patterns, &session.workspace.cwd_package)?;
    let action = match (test_output, run_args) {
        (_, Some(args)) => {
            let label = patterns.explicit_targets().next().cloned().ok_or_else(|| {
                Exit::new(
                    exit::BAD_COMMAND_LINE,
                    "`kiln watch run` needs a single target, not a pattern",
                )
            })?;
            Action::Run { label, args }
        }
        (Some(output), None) => Action::Test(output),
        (None, None) => Action::Build,
    };
    let plan = Plan {
        flags,
        patterns,
        goal,
        action,
        grace,
        poll: args.poll,
    };
    Ok((session, plan))
}

/// Starts watching before the first round (so nothing that changes during it is missed): the
/// tracker (knowing kiln.toml), the scope (the whole workspace until a round vouches for less)
/// and the inbox around the directory watcher.
fn start_watching(session: &Session, plan: &Plan) -> Result<(ChangeTracker, WatchScope, Inbox)> {
    let root = session.workspace.root.clone();
    let mut tracker = ChangeTracker::new(&root, session.workspace.digest_function(&plan.flags)?);
    // kiln.toml is read before any round: know its content, so rewriting it unchanged is nothing.
    tracker.learn(&WatchSet {
        files: vec!["kiln.toml".to_string()],
        ..WatchSet::default()
    });
    let state_dir = session.workspace.state_dir.clone();
    let scope = WatchScope::new(&root, &plan.patterns, vec![state_dir.clone()]);
    let dirs = scope.dirs(&tracker);
    let (watcher, limit_note) = DirWatcher::start(&dirs, plan.poll)?;
    tracker.note_definitions_in(&dirs);
    if let Some(note) = limit_note {
        session.terminal.line(&format!("WARNING: {note}"));
    }
    exit::WATCHING.store(true, Ordering::SeqCst);
    session.terminal.line(&format!(
        "INFO: Watching {} ({}); Ctrl-C stops",
        root.display(),
        if watcher.polling() {
            "scanning"
        } else {
            "file notifications"
        }
    ));
    // Files Kiln itself writes in the workspace (the events file) are never changes.
    let own_files: Vec<PathBuf> = plan
        .flags
        .events
        .iter()
        .filter_map(|p| {
            std::fs::canonicalize(p)
                .or_else(|_| std::path::absolute(p))
                .ok()
        })
        .collect();
    let inbox = Inbox::new(watcher, root, state_dir, own_files);
    Ok((tracker, scope, inbox))
}

/// Runs `kiln watch`; returns only on a setup error (Ctrl-C ends the process).
pub fn run(args: WatchArgs) -> Result<i32> {
    let (mut session, plan) = plan(args)?;
    let flags = &plan.flags;
    let root = session.workspace.root.clone();
    let (mut tracker, mut scope, mut inbox) = start_watching(&session, &plan)?;
    let mut service = RunningProgram::default();
    let mut changed: Vec<String> = Vec::new();
    let mut round_number = 0u64;
    let mut relay_pending = false;
    loop {
        round_number += 1;
        let observer = RoundObserver::default();
        let started = Instant::now();
        let started_at = std::time::SystemTime::now();
        round::announce(&session, round_number, &changed);
        // Another kiln process changed this watch's outputs: the program's runfiles tree may be
        // gone or laid out anew under it, so it restarts even if its files are the same. Kept
        // until a round has restarted it.
        relay_pending |= changed.iter().any(|c| c == OTHER_BUILD);
        let own_outputs = inbox.own_outputs().clone();
        let (outcome, seen) = round_with_sentry(
            &session,
            &plan,
            &observer,
            &mut inbox.watcher.events,
            &tracker,
            &mut service,
            RelayHint {
                pending: relay_pending,
                own_outputs,
            },
        );
        let RoundEnd {
            outcome,
            mark,
            outputs,
            program_current,
            others_moved_outputs,
        } = outcome?;
        // A request to restart stands until a round has restarted the program.
        relay_pending = (relay_pending || others_moved_outputs) && !program_current;
        let test_output = match &plan.action {
            Action::Test(output) => Some(*output),
            _ => None,
        };
        round::summarize(
            &session,
            round_number,
            &outcome,
            &observer,
            started,
            test_output,
        );
        if let (Action::Run { label, .. }, false) = (&plan.action, outcome.success()) {
            if service.running() {
                session.terminal.line(&format!(
                    "INFO: Keeping the previous build of {label} running"
                ));
            }
        }
        let facts = RoundFacts::of(&outcome);
        if let Some(report) = outcome.report() {
            tracker.learn(&report.watch_set);
        }
        if let Some(outputs) = outputs {
            inbox.remember_outputs(outputs);
        }
        inbox.own_mark = mark;
        // Watch what this round rested on (all the workspace if it could not say); directories
        // watched only now are checked in full, as they may have changed unseen.
        scope.set_whole_tree(!facts.vouched);
        let mut seen = seen;
        seen.extend(inbox.retarget(&scope, &tracker, &session, started_at));
        tracker.note_definitions_in(&scope.dirs(&tracker));
        if let Some(events) = &session.events {
            events.write(json!({
                "type": "watch_scope",
                "round": round_number,
                "watched_dirs": inbox.watcher.watched_count(),
                "scanning": inbox.watcher.polling(),
            }));
            events.flush();
        }
        if facts.stopped {
            // A burst (a `git checkout`) stopped it: let it settle before the next round.
            seen.extend(settle(&inbox.watcher));
        }
        let pending = inbox.drain_pending(&scope, &tracker, &session, seen);
        let during = changed_during_round(&mut tracker, &root, facts, pending);
        if !during.is_empty() {
            if during.iter().any(|c| c == "kiln.toml") {
                reload_settings(&mut session, flags, &mut tracker);
            }
            changed = during;
            continue;
        }
        let accept_any = outcome.report().is_none();
        changed = inbox.wait_for_change(&scope, &mut tracker, &session, accept_any);
        if changed.iter().any(|c| c == "kiln.toml") {
            reload_settings(&mut session, flags, &mut tracker);
        }
        if let Some(events) = &session.events {
            events.write(json!({"type": "watch_change", "round": round_number + 1, "changed": changed, "time_ms": round::now_ms()}));
            events.flush();
        }
    }
}

/// What a round's outcome says about the events that arrived while it ran.
#[derive(Clone, Copy, Debug)]
struct RoundFacts {
    /// The round said what it rested on (it did not fail before loading everything).
    vouched: bool,
    /// It was a no-op replay: it read no file, so the tracker digested them only afterwards.
    replayed: bool,
    /// It was stopped because an input changed under it.
    stopped: bool,
}

impl RoundFacts {
    fn of(outcome: &RoundOutcome) -> RoundFacts {
        RoundFacts {
            vouched: outcome.report().is_some(),
            replayed: outcome
                .report()
                .is_some_and(|r| r.watch_set.digests.is_empty()),
            stopped: outcome.stopped(),
        }
    }
}

/// What changed while a round ran (workspace-relative paths, or a reason in brackets), from the
/// paths reported meanwhile; empty when the next round can wait for a new event. The tracker has
/// learnt the round's files first, so a file edited while the round read it is a change.
///
/// Content decides where the round vouches for it. A round that failed before it could say what
/// it rested on vouches for nothing: any event is a change. A no-op replay, or a file the round
/// rested on without digesting it, vouches for which files but not for their bytes during the
/// round: an event on such a path counts. A stopped round always runs again.
fn changed_during_round(
    tracker: &mut ChangeTracker,
    root: &Path,
    facts: RoundFacts,
    pending: Vec<PathBuf>,
) -> Vec<String> {
    let mut during = Vec::new();
    let mut concerned = Vec::new();
    if pending.contains(&PathBuf::new()) {
        during.push(LOST_EVENTS.to_string());
    }
    for path in expand_unspecific(tracker, pending) {
        if !tracker.concerns(&path) && facts.vouched {
            continue;
        }
        match tracker.changed(&path) {
            Some(rel) => during.push(rel),
            None if !facts.vouched || facts.replayed || tracker.digested_late(&path) => {
                during.extend(relative_path(root, &path))
            }
            None => concerned.extend(relative_path(root, &path)),
        }
    }
    if facts.stopped && during.is_empty() {
        // The round read the new bytes before it was stopped, so the tracker sees no difference
        // now; the round is still unfinished: run it again.
        during = concerned;
        if during.is_empty() {
            during.push("(an input changed during the round)".to_string());
        }
    }
    during
}

/// Events that name no file: an empty batch (the OS dropped events: re-check everything tracked)
/// and a directory moved or deleted as a whole (re-check the tracked files under it).
fn expand_unspecific(tracker: &ChangeTracker, paths: Vec<PathBuf>) -> Vec<PathBuf> {
    let mut out = BTreeSet::new();
    for path in paths {
        if path.as_os_str().is_empty() {
            out.extend(tracker.tracked());
            continue;
        }
        if !path.is_file() {
            out.extend(tracker.tracked_under(&path));
        }
        out.insert(path);
    }
    out.into_iter().collect()
}

/// Locks a mutex, ignoring poisoning: the guarded sets have no invariant a panic breaks.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn relative_path(root: &Path, path: &Path) -> Option<String> {
    path.strip_prefix(root)
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Runs one round while a sentry thread reads the watcher's events: one that changes what the
/// last round rested on stops this round, which is then stale. Returns the round's end and the
/// paths reported while it ran. In `run` mode a successful round restarts the program under the
/// build lock.
fn round_with_sentry(
    session: &Session,
    plan: &Plan,
    observer: &RoundObserver,
    events: &mut Receiver<Vec<PathBuf>>,
    tracker: &ChangeTracker,
    service: &mut RunningProgram,
    relay: RelayHint,
) -> (Result<RoundEnd>, Vec<PathBuf>) {
    let root = &session.workspace.root;
    let stop = Arc::new(AtomicBool::new(false));
    let round_over = AtomicBool::new(false);
    let can_stop = !tracker.is_empty();
    std::thread::scope(|scope| {
        let (stop_flag, round_over) = (&stop, &round_over);
        let sentry = scope.spawn(move || {
            sentry(
                events,
                tracker,
                root,
                can_stop.then_some(stop_flag),
                round_over,
            )
        });
        // Whether the program (in `run` mode) is this round's build, running; and the directory
        // it runs in, which counts as one of this watch's outputs.
        let mut restart = |outcome: &RoundOutcome, others_moved: bool| -> (bool, Option<PathBuf>) {
            let Some(report) = outcome.report().filter(|r| r.success()) else {
                return (false, service.runfiles_dir());
            };
            let current = match &plan.action {
                Action::Run { label, args } => service.restart_if_changed(
                    session,
                    label,
                    report,
                    &plan.flags,
                    args,
                    plan.grace,
                    relay.pending || others_moved,
                ),
                _ => true,
            };
            (current, service.runfiles_dir())
        };
        let outcome = run_round(
            session,
            plan,
            observer,
            &stop,
            &relay.own_outputs,
            &mut restart,
        );
        round_over.store(true, Ordering::SeqCst);
        let seen = sentry.join().unwrap_or_default();
        (outcome, seen)
    })
}

/// What a round needs to know to restart `run` mode's program when another kiln process may
/// have laid its runfiles out anew.
struct RelayHint {
    /// An earlier round found that, and has not restarted the program yet.
    pending: bool,
    /// How this watch's last round left its outputs (the program's runfiles tree included):
    /// one found otherwise under the lock means another process changed it since.
    own_outputs: std::collections::BTreeMap<PathBuf, Option<dirs::EntryStat>>,
}

/// What runs under the lock after a round: told whether another process changed this watch's
/// outputs, it answers whether `run` mode's program runs this build, and the directory it runs in.
type AfterRound<'a> = dyn FnMut(&RoundOutcome, bool) -> (bool, Option<PathBuf>) + 'a;

/// What [`run_round`] returns.
struct RoundEnd {
    /// Whether the round succeeded and, in `run` mode, its build is the program running.
    program_current: bool,
    /// Whether another kiln process had changed this watch's outputs when the round began.
    others_moved_outputs: bool,
    outcome: RoundOutcome,
    /// The build mark the round left.
    mark: Option<Vec<u8>>,
    /// How the round left its outputs, unless it was stopped or failed to load.
    outputs: Option<std::collections::BTreeMap<PathBuf, Option<dirs::EntryStat>>>,
}

/// Runs one round under the build lock, then `then` (which may lay out a program's runfiles in
/// `kiln-out/`, so it runs under the lock too; it is told whether another process changed this
/// watch's outputs, by `own_outputs`, since its last round, and answers whether the program runs
/// this build and where). The digests the round computed stay in memory and are persisted for
/// other kiln runs. Returns the outcome, the build mark the round left and how it left its
/// outputs, all read under the lock.
fn run_round(
    session: &Session,
    plan: &Plan,
    observer: &RoundObserver,
    stop: &Arc<AtomicBool>,
    own_outputs: &std::collections::BTreeMap<PathBuf, Option<dirs::EntryStat>>,
    then: &mut AfterRound<'_>,
) -> Result<RoundEnd> {
    let lock = session.lock_for_build()?;
    let others_moved_outputs = inbox::moved(own_outputs).next().is_some();
    let result = session.engine_run_observed(
        &plan.flags,
        &plan.patterns,
        &plan.goal,
        Some(observer),
        Some(Arc::clone(stop)),
    );
    let outcome = RoundOutcome::new(result);
    let (program_current, runfiles_tree) = then(&outcome, others_moved_outputs);
    session.state.flush();
    // Read under the lock: once it is released, another build may leave its own mark.
    let mark = session.state.build_mark();
    let outputs = outcome.report().filter(|r| !r.stopped).map(|r| {
        let mut outputs = inbox::output_stats(&session.workspace.root, r);
        // `kiln run` or `kiln clean` elsewhere may remove the program's runfiles tree or lay
        // it out anew without touching the build's outputs.
        if let Some(tree) = runfiles_tree {
            let stat = dirs::entry_stat(&tree);
            outputs.insert(tree, stat);
        }
        outputs
    });
    drop(lock);
    Ok(RoundEnd {
        program_current,
        others_moved_outputs,
        outcome,
        mark,
        outputs,
    })
}

/// Collects the events that arrive while a round runs, until `round_over`. With a `stop` flag,
/// sets it as soon as an event changes the content of something the last round rested on.
fn sentry(
    events: &mut Receiver<Vec<PathBuf>>,
    tracker: &ChangeTracker,
    root: &Path,
    stop: Option<&Arc<AtomicBool>>,
    round_over: &AtomicBool,
) -> Vec<PathBuf> {
    let mut seen = Vec::new();
    while !round_over.load(Ordering::SeqCst) {
        match events.recv_timeout(SENTRY_POLL) {
            Ok(batch) => {
                if let Some(stop) = stop {
                    if !stop.load(Ordering::SeqCst)
                        && batch
                            .iter()
                            .any(|p| !ignored(root, p) && tracker.concerns(p) && tracker.differs(p))
                    {
                        stop.store(true, Ordering::SeqCst);
                    }
                }
                seen.extend(batch);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    seen
}

/// Waits until no event has arrived for [`SETTLE`], or [`SETTLE_AT_MOST`] has passed (a file
/// rewritten all the time, such as a log, must not hold rounds back); returns the paths that
/// arrived meanwhile.
fn settle(watcher: &DirWatcher) -> Vec<PathBuf> {
    let started = Instant::now();
    let mut last = started;
    let mut paths = Vec::new();
    while started.elapsed() < SETTLE_AT_MOST {
        let quiet_left = SETTLE.saturating_sub(last.elapsed());
        let left = quiet_left.min(SETTLE_AT_MOST.saturating_sub(started.elapsed()));
        match watcher.events.recv_timeout(left) {
            Ok(batch) => {
                paths.extend(batch);
                last = Instant::now();
            }
            Err(_) => break,
        }
    }
    paths
}

/// Reads kiln.toml again after it changed; its new settings apply from the next round. A
/// kiln.toml that no longer parses keeps the old settings, with the error shown.
fn reload_settings(session: &mut Session, flags: &BuildFlags, tracker: &mut ChangeTracker) {
    let keep = |why: String| {
        session.terminal.line(&format!(
            "ERROR: kiln.toml changed; keeping the previous settings: {why}"
        ))
    };
    match Workspace::open(&flags.common) {
        Ok(workspace) => {
            if workspace.state_dir != session.workspace.state_dir {
                keep("it moves the cache and the workspace state; restart `kiln watch`".into());
                return;
            }
            if let Err(e) = crate::commands::engine_config(&workspace, flags) {
                keep(format!("{e:#}"));
                return;
            }
            let function = workspace.digest_function(flags);
            session.workspace = workspace;
            match function {
                Ok(function) if function != tracker.function() => {
                    // Every digest the tracker knows is in the old function: start afresh.
                    *tracker = ChangeTracker::new(&session.workspace.root, function);
                }
                Ok(_) => {}
                Err(e) => session.terminal.line(&format!("ERROR: {e:#}")),
            }
            session
                .terminal
                .line("INFO: kiln.toml changed; its settings apply from this round on");
        }
        Err(e) => keep(format!("{e:#}")),
    }
}

/// `run` mode's program: restarted when its executable or runfiles change.
#[derive(Default)]
struct RunningProgram {
    service: Option<Service>,
    fingerprint: Option<blake3::Hash>,
    /// The working directory it runs in (inside its runfiles tree).
    cwd: Option<PathBuf>,
}

impl RunningProgram {
    fn running(&mut self) -> bool {
        self.service.as_mut().is_some_and(|s| s.exited().is_none())
    }

    /// The directory the program runs in, while it runs.
    fn runfiles_dir(&self) -> Option<PathBuf> {
        self.service.as_ref().and(self.cwd.clone())
    }

    /// Starts the program built for `label` unless the same executable and runfiles already
    /// run and nothing else (`relaid`: another kiln process's build or clean) touched them; the
    /// old one is stopped before its runfiles tree is laid out again. Returns whether this build
    /// of the program runs now.
    #[allow(clippy::too_many_arguments)] // one call site, each argument a different concern
    fn restart_if_changed(
        &mut self,
        session: &Session,
        label: &Label,
        report: &BuildReport,
        flags: &BuildFlags,
        args: &[String],
        grace: Duration,
        relaid: bool,
    ) -> bool {
        let fingerprint = program_fingerprint(&session.workspace.root, label, report);
        if self.running() && self.fingerprint == Some(fingerprint) && !relaid {
            return true;
        }
        if let Some(mut old) = self.service.take() {
            old.stop(grace);
        }
        exit::SERVICE_GROUP.store(0, Ordering::SeqCst);
        let program = match prepare_run(session, label, report, flags) {
            Ok(program) => program,
            Err(e) => {
                session.terminal.line(&format!("ERROR: {e:#}"));
                return false;
            }
        };
        // Started under the same lock Ctrl-C takes to stop it: never one it does not know of.
        let mut started = None;
        exit::start_service(|| {
            match Service::start(&program.exe, args, &program.cwd, &program.env) {
                Ok(service) => {
                    let group = service.pid();
                    started = Some(service);
                    Some(group)
                }
                Err(e) => {
                    session.terminal.line(&format!(
                        "ERROR: Cannot start `{}`: {e}",
                        program.exe.display()
                    ));
                    None
                }
            }
        });
        if let Some(service) = started {
            session.terminal.line(&format!(
                "INFO: Started {} (pid {})",
                program.exe.display(),
                service.pid()
            ));
            self.service = Some(service);
            self.fingerprint = Some(fingerprint);
            self.cwd = Some(program.cwd.clone());
            return true;
        }
        false
    }
}

/// A digest of `label`'s executable and runfiles (paths in the tree and the content of the files
/// they come from), read from the build's outputs before anything is laid out.
fn program_fingerprint(root: &Path, label: &Label, report: &BuildReport) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new();
    let mut entries: Vec<(String, String)> =
        report.runfiles.get(label).cloned().unwrap_or_default();
    if let Some(exe) = report.executables.get(label) {
        entries.push((String::new(), exe.clone()));
    }
    entries.sort();
    for (in_tree, source) in entries {
        hasher.update(in_tree.as_bytes());
        hasher.update(b"\0");
        if let Ok(bytes) = std::fs::read(root.join(&source)) {
            hasher.update(blake3::hash(&bytes).as_bytes());
        }
    }
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_cache::{Digest, DigestFunction};
    use std::collections::HashMap;

    const NORMAL: RoundFacts = RoundFacts {
        vouched: true,
        replayed: false,
        stopped: false,
    };

    /// A workspace with `a/src.txt` = "one", which a round digested, and `b/other.txt`.
    fn setup() -> (tempfile::TempDir, PathBuf, ChangeTracker) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path().to_path_buf();
        for (path, content) in [("a/src.txt", "one"), ("b/other.txt", "x")] {
            std::fs::create_dir_all(root.join(path).parent().unwrap_or(&root))
                .unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(root.join(path), content).unwrap_or_else(|e| panic!("{e}"));
        }
        let mut tracker = ChangeTracker::new(&root, DigestFunction::Blake3);
        let used = Digest::of_bytes(DigestFunction::Blake3, b"one");
        tracker.learn(&WatchSet {
            files: vec!["a/src.txt".into()],
            listings: Vec::new(),
            digests: HashMap::from([("a/src.txt".to_string(), used)]),
        });
        (dir, root, tracker)
    }

    #[test]
    fn content_decides_after_a_round_that_vouched_for_it() {
        let (_dir, root, mut tracker) = setup();
        let src = root.join("a/src.txt");
        let other = root.join("b/other.txt");
        let none = changed_during_round(&mut tracker, &root, NORMAL, vec![src.clone(), other]);
        assert!(none.is_empty(), "{none:?}");
        std::fs::write(&src, "two").unwrap_or_else(|e| panic!("{e}"));
        let edited = changed_during_round(&mut tracker, &root, NORMAL, vec![src]);
        assert_eq!(edited, ["a/src.txt"]);
    }

    #[test]
    fn what_a_round_cannot_vouch_for_counts() {
        let (_dir, root, mut tracker) = setup();
        let src = root.join("a/src.txt");
        let replayed = RoundFacts {
            replayed: true,
            ..NORMAL
        };
        let after_replay = changed_during_round(&mut tracker, &root, replayed, vec![src.clone()]);
        assert_eq!(
            after_replay,
            ["a/src.txt"],
            "same bytes, but the replay read none"
        );
        let failed = RoundFacts {
            vouched: false,
            ..NORMAL
        };
        let other = root.join("b/other.txt");
        assert_eq!(
            changed_during_round(&mut tracker, &root, failed, vec![other]),
            ["b/other.txt"],
            "after a failed round any event counts"
        );
        assert_eq!(
            changed_during_round(&mut tracker, &root, NORMAL, vec![PathBuf::new()]),
            [LOST_EVENTS]
        );
    }

    #[test]
    fn a_stopped_round_always_runs_again() {
        let (_dir, root, mut tracker) = setup();
        let stopped = RoundFacts {
            stopped: true,
            ..NORMAL
        };
        let src = root.join("a/src.txt");
        assert_eq!(
            changed_during_round(&mut tracker, &root, stopped, vec![src]),
            ["a/src.txt"],
            "the concerned path, though its bytes match what the round read"
        );
        assert_eq!(
            changed_during_round(&mut tracker, &root, stopped, Vec::new()),
            ["(an input changed during the round)"]
        );
    }
}
