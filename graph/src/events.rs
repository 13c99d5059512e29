//! What the engine reports while it works. The CLI turns these into a progress line, a summary and
//! `--events` JSON lines; tests count them.

use std::time::Duration;

use crate::label::Label;

/// How an action's result was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CacheStatus {
    /// Ran in the sandbox.
    Executed,
    /// Found in the local action cache.
    LocalHit,
    /// Found in a remote action cache.
    RemoteHit,
}

impl CacheStatus {
    /// Stable lower-case name used in events and history.
    pub fn name(self) -> &'static str {
        match self {
            CacheStatus::Executed => "executed",
            CacheStatus::LocalHit => "local_hit",
            CacheStatus::RemoteHit => "remote_hit",
        }
    }
}

/// A test's final status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestStatus {
    /// Exit code 0.
    Passed,
    /// Non-zero exit or signal.
    Failed,
    /// Killed after its timeout.
    TimedOut,
    /// Built but not run: it cannot run on this machine (see `TestRun::reason`).
    Skipped,
}

/// One thing that happened during a build.
#[derive(Clone, Debug)]
pub enum BuildEvent {
    /// Loading and analysis finished; `actions` actions are needed for the requested targets.
    Planned {
        /// Number of actions needed.
        actions: usize,
        /// Number of packages evaluated (memo misses).
        packages_evaluated: usize,
        /// Number of packages loaded in all.
        packages_loaded: usize,
    },
    /// An action started running in the sandbox (cache hits do not start).
    ActionStarted {
        /// Owning target.
        label: Label,
        /// Mnemonic.
        mnemonic: String,
        /// Progress message.
        message: String,
    },
    /// An action finished (run, or satisfied from a cache).
    ActionFinished {
        /// Owning target.
        label: Label,
        /// Mnemonic.
        mnemonic: String,
        /// First output path, identifying the action.
        output: String,
        /// How the result was obtained.
        status: CacheStatus,
        /// Wall time spent on it.
        duration: Duration,
        /// Whether it succeeded.
        success: bool,
        /// The action key (hex).
        key: String,
        /// Whether this is a second run of an action whose earlier result (a cache hit) turned out
        /// to have lost an output blob; both attempts are reported and counted.
        rerun: bool,
    },
    /// An action failed; `message` holds the reason and the command's stderr.
    ActionFailed {
        /// Owning target.
        label: Label,
        /// Mnemonic.
        mnemonic: String,
        /// What went wrong.
        message: String,
    },
    /// A requested target finished building (or failed).
    TargetCompleted {
        /// The target.
        label: Label,
        /// Whether all its outputs were built.
        success: bool,
        /// Workspace-relative output paths.
        outputs: Vec<String>,
    },
    /// A test finished.
    TestResult {
        /// The test target.
        label: Label,
        /// Outcome.
        status: TestStatus,
        /// Whether the result came from a cache.
        cached: bool,
        /// Run time of the test (of the cached run for a cached result).
        duration: Duration,
        /// Workspace-relative path of the log.
        log: String,
        /// Which run this is when `--runs_per_test` > 1 (1-based).
        run: u32,
    },
    /// Counts so far, for a progress line.
    Progress {
        /// Actions finished.
        done: usize,
        /// Actions needed.
        total: usize,
        /// Actions in flight now: running, or being looked up in the caches (with a lookahead,
        /// up to twice `--jobs`; no more than `--jobs` of them run at once).
        running: usize,
        /// One running action's description.
        current: Option<String>,
    },
    /// A warning the user should see (at most once per cause).
    Warning(String),
}

/// Receives build events. Implementations must be cheap: events come from worker threads.
pub trait BuildObserver: Send + Sync {
    /// Called for each event.
    fn event(&self, event: &BuildEvent);
}

/// An observer that ignores everything.
pub struct NoObserver;

impl BuildObserver for NoObserver {
    fn event(&self, _event: &BuildEvent) {}
}
