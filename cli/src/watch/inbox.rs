//! Reading the watcher's events between rounds: settling bursts, following new and re-created
//! directories, dropping what is never a change (`kiln-out/`, Kiln's own events file), and telling
//! another kiln process's build (a new mark in the workspace state, once its build lock is free)
//! from edits.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, SystemTime};

use kiln_cache::{BuildLock, CacheError};
use kiln_graph::engine::BuildReport;

use super::changes::ChangeTracker;
use super::dirs::{entry_stat, ignored, DirWatcher, EntryStat};
use super::scope::WatchScope;
use super::{expand_unspecific, relative_path, settle, LOST_EVENTS, OTHER_BUILD, OTHER_BUILD_POLL};
use crate::commands::Session;
use crate::exit;

/// How far before a round's start an entry's timestamps may lie and still count as possibly
/// changed while it ran (clocks of network file systems drift a little).
const TIMESTAMP_SLACK: Duration = Duration::from_secs(1);

/// The watcher and what its events are read against.
pub struct Inbox {
    /// The directory watcher.
    pub watcher: DirWatcher,
    /// The workspace root (absolute, canonical).
    pub root: PathBuf,
    /// The workspace state's directory, where other kiln processes leave their build mark.
    pub state_dir: PathBuf,
    /// Files Kiln itself writes in the workspace (the events file): never a change.
    pub own_files: Vec<PathBuf>,
    /// The build mark this watch's last round left.
    pub own_mark: Option<Vec<u8>>,
    /// The stat of each output of the last successful round (`None`: absent), to tell which of
    /// them another kiln process changed.
    own_outputs: BTreeMap<PathBuf, Option<EntryStat>>,
    /// Rounds started in a row only to put back what another kiln process changed.
    restores_in_a_row: u32,
}

/// How many rounds in a row may put back what another kiln process changed (see
/// [`Inbox::restore`]).
const MAX_RESTORES_IN_A_ROW: u32 = 3;

impl Inbox {
    /// An inbox for `watcher` in the workspace at `root`.
    pub fn new(
        watcher: DirWatcher,
        root: PathBuf,
        state_dir: PathBuf,
        own_files: Vec<PathBuf>,
    ) -> Inbox {
        Inbox {
            watcher,
            root,
            state_dir,
            own_files,
            own_mark: None,
            own_outputs: BTreeMap::new(),
            restores_in_a_row: 0,
        }
    }

    /// Remembers how the last round left its outputs (see [`output_stats`]).
    pub fn remember_outputs(&mut self, outputs: BTreeMap<PathBuf, Option<EntryStat>>) {
        self.own_outputs = outputs;
    }

    /// How the last round left its outputs (see [`output_stats`]).
    pub fn own_outputs(&self) -> &BTreeMap<PathBuf, Option<EntryStat>> {
        &self.own_outputs
    }

    /// This watch's outputs that are not as its last round left them (workspace-relative).
    fn moved_outputs(&self) -> Vec<String> {
        moved(&self.own_outputs)
            .filter_map(|path| relative_path(&self.root, path))
            .collect()
    }
    /// Watches what `scope` now asks for. Returns the paths to check because they may have
    /// changed unseen: entries of newly watched directories changed since `since`, and tracked
    /// files there that are gone.
    pub fn retarget(
        &mut self,
        scope: &WatchScope,
        tracker: &ChangeTracker,
        session: &Session,
        since: SystemTime,
    ) -> Vec<PathBuf> {
        let (added, note) = self.watcher.retarget(&scope.dirs(tracker));
        if let Some(note) = note {
            session.terminal.line(&format!("WARNING: {note}"));
        }
        let since = since - TIMESTAMP_SLACK;
        let mut paths = Vec::new();
        for dir in added.iter().filter(|d| !d.starts_with(&self.state_dir)) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let recent = entry.metadata().is_ok_and(|m| {
                    let ctime = SystemTime::UNIX_EPOCH
                        + Duration::new(m.ctime().max(0) as u64, m.ctime_nsec() as u32);
                    m.modified().is_ok_and(|t| t >= since) || ctime >= since
                });
                if recent {
                    paths.push(entry.path());
                }
            }
            paths.extend(
                tracker
                    .tracked_under(dir)
                    .into_iter()
                    .filter(|f| f.parent() == Some(dir) && !f.exists()),
            );
        }
        paths
    }

    /// The paths reported so far (`seen` during the round, then what is queued), without waiting,
    /// with new directories watched when the scope wants them.
    pub fn drain_pending(
        &mut self,
        scope: &WatchScope,
        tracker: &ChangeTracker,
        session: &Session,
        seen: Vec<PathBuf>,
    ) -> Vec<PathBuf> {
        let mut paths: BTreeSet<PathBuf> = seen.into_iter().collect();
        while let Ok(batch) = self.watcher.events.try_recv() {
            paths.extend(batch);
        }
        self.follow_new_dirs(scope, tracker, session, &mut paths);
        paths
            .into_iter()
            .filter(|p| !self.never_a_change(p))
            .collect()
    }

    /// Blocks until a settled burst of events changes the content of something the build rests
    /// on, or another kiln process's build or clean is over. Returns what changed
    /// (workspace-relative paths, or [`OTHER_BUILD`]).
    pub fn wait_for_change(
        &mut self,
        scope: &WatchScope,
        tracker: &mut ChangeTracker,
        session: &Session,
        accept_any: bool,
    ) -> Vec<String> {
        // Another kiln process may have built (or cleaned) between this watch's round releasing
        // the lock and now, its events already drained: look once before waiting.
        let mut other_build = true;
        loop {
            if other_build {
                match self.other_build_state(session) {
                    OtherBuild::None => other_build = false,
                    OtherBuild::Running => {}
                    OtherBuild::Done(mark) => {
                        other_build = false;
                        if self.outputs_moved_by_other_build(mark, session) && self.restore(session)
                        {
                            return vec![OTHER_BUILD.to_string()];
                        }
                    }
                }
            }
            let first = if other_build {
                // Another process holds the lock: look again soon whether it is done.
                match self.watcher.events.recv_timeout(OTHER_BUILD_POLL) {
                    Ok(batch) => batch,
                    Err(RecvTimeoutError::Timeout) => Vec::new(),
                    Err(RecvTimeoutError::Disconnected) => self.watcher_gone(session),
                }
            } else {
                match self.watcher.events.recv() {
                    Ok(batch) => batch,
                    Err(_) => self.watcher_gone(session),
                }
            };
            let mut paths: BTreeSet<PathBuf> = first.into_iter().collect();
            paths.extend(settle(&self.watcher));
            other_build |= paths.iter().any(|p| self.is_state_write(p));
            self.follow_new_dirs(scope, tracker, session, &mut paths);
            let mut changed = Vec::new();
            // The OS dropped events: anything may have changed (a new package, too).
            let paths_lost = paths.contains(&PathBuf::new());
            for path in expand_unspecific(tracker, paths.into_iter().collect()) {
                if self.never_a_change(&path) {
                    continue;
                }
                if tracker.concerns(&path) {
                    changed.extend(tracker.changed(&path));
                } else if accept_any {
                    // After a round that failed before it could say what it rested on.
                    changed.extend(relative_path(&self.root, &path));
                }
            }
            if paths_lost {
                changed.push(LOST_EVENTS.to_string());
            }
            if !changed.is_empty() {
                self.restores_in_a_row = 0;
                return changed;
            }
        }
    }

    /// Whether a round should put back what another kiln process changed. Not after
    /// [`MAX_RESTORES_IN_A_ROW`] such rounds with no edit between them: then something keeps
    /// building this workspace with other settings (another `kiln watch`, say), and restoring
    /// again would only start a tug of war.
    fn restore(&mut self, session: &Session) -> bool {
        self.restores_in_a_row += 1;
        if self.restores_in_a_row == MAX_RESTORES_IN_A_ROW + 1 {
            session.terminal.line(
                "WARNING: Another kiln process keeps changing this watch's outputs (another \
                 `kiln watch` with other flags?); they are no longer put back until a source \
                 changes",
            );
        }
        self.restores_in_a_row <= MAX_RESTORES_IN_A_ROW
    }

    /// Whether an event at `path` is another process writing the workspace state's database
    /// (not its lock file, which this watch itself rewrites when it looks whether the lock is
    /// free, nor SQLite's shared-memory index, which readers touch).
    fn is_state_write(&self, path: &Path) -> bool {
        path.parent() == Some(self.state_dir.as_path())
            && path.file_name().is_some_and(|name| {
                let name = name.to_string_lossy();
                name.starts_with("state.sqlite") && !name.ends_with("-shm")
            })
    }

    /// Adopts another process's build `mark`; says whether its build moved any of this watch's
    /// outputs (and which, on the terminal).
    fn outputs_moved_by_other_build(&mut self, mark: Option<Vec<u8>>, session: &Session) -> bool {
        self.own_mark = mark;
        let moved = self.moved_outputs();
        if !moved.is_empty() {
            session.terminal.line(&format!(
                "INFO: Another kiln process changed {} of this watch's outputs ({}{})",
                moved.len(),
                moved[..moved.len().min(3)].join(", "),
                if moved.len() > 3 { ", ..." } else { "" }
            ));
        }
        !moved.is_empty()
    }

    /// Whether another kiln process left a build mark since this watch's last round, and whether
    /// it still holds the build lock.
    fn other_build_state(&self, session: &Session) -> OtherBuild {
        match BuildLock::try_acquire(&self.state_dir) {
            Err(CacheError::LockHeld { .. }) => OtherBuild::Running,
            // Taken and released at once: only the mark matters now.
            _ => match session.state.build_mark() {
                Some(mark) if Some(&mark) == self.own_mark.as_ref() => OtherBuild::None,
                mark => OtherBuild::Done(mark),
            },
        }
    }

    /// Whether an event at `path` can never be a change to act on: outside the workspace (the
    /// state directory), under `kiln-out/`, or a file Kiln writes itself.
    fn never_a_change(&self, path: &Path) -> bool {
        !path.as_os_str().is_empty()
            && (ignored(&self.root, path) || self.own_files.iter().any(|f| f == path))
    }

    /// Directories named by events may be new or deleted and created again: watch again what
    /// the scope wants, and add the entries of directories watched only now.
    fn follow_new_dirs(
        &mut self,
        scope: &WatchScope,
        tracker: &ChangeTracker,
        session: &Session,
        paths: &mut BTreeSet<PathBuf>,
    ) {
        let dirs: Vec<PathBuf> = paths
            .iter()
            .filter(|p| !p.as_os_str().is_empty() && p.is_dir() && !ignored(&self.root, p))
            .cloned()
            .collect();
        if dirs.is_empty() {
            return;
        }
        self.watcher.forget(&dirs);
        // Whatever a new directory holds was made after the event that named it was queued, or
        // just before: every entry counts.
        let added = self.retarget(
            scope,
            tracker,
            session,
            SystemTime::UNIX_EPOCH + TIMESTAMP_SLACK,
        );
        paths.extend(added);
    }

    fn watcher_gone(&self, session: &Session) -> ! {
        session
            .terminal
            .line("ERROR: The file watcher stopped; restart `kiln watch`");
        exit::stop_service();
        std::process::exit(exit::LOCAL_ENVIRONMENT);
    }
}

/// The stat of every output `report` laid out in `kiln-out/` of the workspace at `root`
/// (executables and runfiles included), taken under the build lock so that only another
/// process's build can change them afterwards.
pub fn output_stats(root: &Path, report: &BuildReport) -> BTreeMap<PathBuf, Option<EntryStat>> {
    let runfiles = report.runfiles.values().flatten().map(|(_, file)| file);
    report
        .outputs
        .values()
        .flatten()
        .chain(report.executables.values())
        .chain(runfiles)
        .filter(|rel| rel.starts_with("kiln-out/"))
        .map(|rel| {
            let path = root.join(rel);
            let stat = entry_stat(&path);
            (path, stat)
        })
        .collect()
}

/// The outputs in `snapshot` that are no longer as it recorded them.
pub fn moved(snapshot: &BTreeMap<PathBuf, Option<EntryStat>>) -> impl Iterator<Item = &PathBuf> {
    snapshot
        .iter()
        .filter(|(path, stat)| entry_stat(path) != **stat)
        .map(|(path, _)| path)
}

/// What another kiln process did to this workspace since this watch's last round.
enum OtherBuild {
    /// Nothing: the mark is this watch's own.
    None,
    /// It holds the build lock.
    Running,
    /// It left this new mark and released the lock.
    Done(Option<Vec<u8>>),
}
