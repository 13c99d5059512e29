//! Watching a set of directories (not files, so an editor's save by rename is seen) for
//! `kiln watch`: one non-recursive watch per directory, the set changed after every round
//! ([`DirWatcher::retarget`]) so watches follow what the build rests on and none leak. When the
//! OS runs out of inotify instances or watches, at start or later, it says how to raise the limit
//! and falls back to periodic stat scans of the same directories.

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{Config, Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};

/// How often the fallback scans the watched directories.
const POLL_INTERVAL: Duration = Duration::from_millis(300);

/// The directory watcher and the channel its events arrive on.
pub struct DirWatcher {
    backend: Backend,
    /// Paths of changed entries (files or directories), as the OS reported them; an empty path
    /// means the OS dropped events (re-check everything).
    pub events: Receiver<Vec<PathBuf>>,
    /// Kept to start the scanning fallback on the same channel.
    sender: Sender<Vec<PathBuf>>,
}

enum Backend {
    Native {
        watcher: RecommendedWatcher,
        /// Watched directory → its inode when the watch was added (a directory deleted and
        /// created again lost its watch and is watched anew).
        watched: HashMap<PathBuf, u64>,
    },
    /// A thread rescans the shared set of directories; it ends when the receiver is dropped.
    Poll(Arc<Mutex<BTreeSet<PathBuf>>>),
}

/// Whether an event at `path` (absolute) is one Kiln never acts on: outside the workspace at
/// `root`, or under its `kiln-out/`.
pub fn ignored(root: &Path, path: &Path) -> bool {
    match path.strip_prefix(root) {
        Ok(rel) => rel
            .components()
            .next()
            .is_some_and(|first| first.as_os_str() == "kiln-out"),
        Err(_) => true,
    }
}

impl DirWatcher {
    /// Starts watching `dirs` (absolute); `poll` forces periodic scans. The note, if any, says
    /// why it scans although notifications were asked for, and how to fix that.
    pub fn start(
        dirs: &BTreeSet<PathBuf>,
        poll: bool,
    ) -> anyhow::Result<(DirWatcher, Option<String>)> {
        let (tx, rx) = channel::<Vec<PathBuf>>();
        let mut watcher = DirWatcher {
            backend: Backend::Poll(Arc::new(Mutex::new(BTreeSet::new()))),
            events: rx,
            sender: tx.clone(),
        };
        if poll {
            watcher.start_scanning(dirs);
            return Ok((watcher, None));
        }
        let handler = move |result: notify::Result<Event>| {
            if let Ok(event) = result {
                if matches!(event.kind, EventKind::Access(_)) {
                    return;
                }
                // The kernel's queue overflowed: an empty path asks for a full re-check.
                let paths = if event.need_rescan() {
                    vec![PathBuf::new()]
                } else {
                    event.paths
                };
                let _ = tx.send(paths);
            }
        };
        match RecommendedWatcher::new(handler, Config::default()) {
            Ok(native) => {
                watcher.backend = Backend::Native {
                    watcher: native,
                    watched: HashMap::new(),
                };
                let (_, note) = watcher.retarget(dirs);
                Ok((watcher, note))
            }
            Err(e) if is_limit(&e) => {
                watcher.start_scanning(dirs);
                Ok((watcher, Some(limit_message(Limit::Instances))))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Makes `dirs` (absolute) the watched set: directories no longer in it are unwatched, new
    /// ones (and ones deleted and created again since) are watched. Returns the directories that
    /// became watched, whose entries may have changed unseen, and, when the OS ran out of watches
    /// so the watcher switched to scanning, the message to show.
    pub fn retarget(&mut self, dirs: &BTreeSet<PathBuf>) -> (Vec<PathBuf>, Option<String>) {
        let Backend::Native { watcher, watched } = &mut self.backend else {
            let Backend::Poll(scanned) = &self.backend else {
                unreachable!("the backend is either native or scanning")
            };
            let mut scanned = crate::watch::lock(scanned);
            let added = dirs.difference(&scanned).cloned().collect();
            *scanned = dirs.clone();
            return (added, None);
        };
        let gone: Vec<PathBuf> = watched
            .keys()
            .filter(|d| !dirs.contains(*d))
            .cloned()
            .collect();
        for dir in gone {
            // The directory may be gone already, with its watch: nothing to undo then.
            let _ = watcher.unwatch(&dir);
            watched.remove(&dir);
        }
        let mut added = Vec::new();
        for dir in dirs {
            let Ok(inode) = std::fs::metadata(dir).map(|m| m.ino()) else {
                // Not there (yet): its parent's watch reports it when it appears.
                watched.remove(dir);
                continue;
            };
            if watched.get(dir) == Some(&inode) {
                continue;
            }
            match watcher.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    watched.insert(dir.clone(), inode);
                    added.push(dir.clone());
                }
                Err(e) if is_limit(&e) => {
                    self.start_scanning(dirs);
                    return (
                        dirs.iter().cloned().collect(),
                        Some(limit_message(Limit::Watches)),
                    );
                }
                Err(_) => {} // vanished meanwhile, or unreadable: nothing to watch
            }
        }
        (added, None)
    }

    /// Replaces the backend with a thread scanning `dirs` every [`POLL_INTERVAL`], comparing
    /// each entry's full stat (nanosecond mtime and ctime, size, inode), so a same-second rewrite
    /// is never missed. The first scan happens before this returns: a change made after it is
    /// always seen.
    fn start_scanning(&mut self, dirs: &BTreeSet<PathBuf>) {
        let shared = Arc::new(Mutex::new(dirs.clone()));
        let first = scan(dirs);
        let (tx, scanned) = (self.sender.clone(), Arc::clone(&shared));
        std::thread::spawn(move || scan_forever(&scanned, first, &tx));
        // Dropping a native watcher stops its thread and frees its watches.
        self.backend = Backend::Poll(shared);
    }

    /// Forgets the watches of directories named by `events`: such a directory may have been
    /// deleted (taking its watch along) and created again, perhaps with the same inode. The next
    /// [`DirWatcher::retarget`] watches it anew if it is still wanted.
    pub fn forget(&mut self, events: &[PathBuf]) {
        if let Backend::Native { watched, .. } = &mut self.backend {
            for path in events {
                watched.remove(path);
            }
        }
    }

    /// Whether the fallback scanner is in use.
    pub fn polling(&self) -> bool {
        matches!(self.backend, Backend::Poll(_))
    }

    /// How many directories are watched (or scanned).
    pub fn watched_count(&self) -> usize {
        match &self.backend {
            Backend::Native { watched, .. } => watched.len(),
            Backend::Poll(dirs) => crate::watch::lock(dirs).len(),
        }
    }
}

/// (inode, size, mtime ns, ctime ns) of an entry.
pub type EntryStat = (u64, u64, i128, i128);

/// The [`EntryStat`] of `path` (not following a symbolic link), `None` when it is absent.
pub fn entry_stat(path: &Path) -> Option<EntryStat> {
    std::fs::symlink_metadata(path).ok().map(|m| stat_of(&m))
}

fn stat_of(m: &std::fs::Metadata) -> EntryStat {
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    (
        m.ino(),
        m.size(),
        ns(m.mtime(), m.mtime_nsec()),
        ns(m.ctime(), m.ctime_nsec()),
    )
}

/// Every entry of the directories in `dirs` (not below them), with its stat.
fn scan(dirs: &BTreeSet<PathBuf>) -> HashMap<PathBuf, EntryStat> {
    let mut seen = HashMap::new();
    for dir in dirs {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let Ok(m) = entry.metadata() else { continue };
            seen.insert(entry.path(), stat_of(&m));
        }
    }
    seen
}

/// Rescans until the receiving side is gone, sending the paths whose stat changed (or that
/// appeared or vanished) since the last scan.
fn scan_forever(
    dirs: &Mutex<BTreeSet<PathBuf>>,
    mut before: HashMap<PathBuf, EntryStat>,
    tx: &Sender<Vec<PathBuf>>,
) {
    loop {
        std::thread::sleep(POLL_INTERVAL);
        let now = scan(&crate::watch::lock(dirs).clone());
        let mut changed: Vec<PathBuf> = now
            .iter()
            .filter(|(path, stat)| before.get(*path) != Some(stat))
            .map(|(path, _)| path.clone())
            .collect();
        changed.extend(before.keys().filter(|p| !now.contains_key(*p)).cloned());
        before = now;
        if !changed.is_empty() && tx.send(changed).is_err() {
            return;
        }
    }
}

fn is_limit(error: &notify::Error) -> bool {
    match &error.kind {
        notify::ErrorKind::MaxFilesWatch => true,
        notify::ErrorKind::Io(e) => matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EMFILE)),
        _ => false,
    }
}

/// Which inotify limit was reached.
#[derive(Clone, Copy)]
enum Limit {
    /// `fs.inotify.max_user_instances`: no new inotify instance (at start).
    Instances,
    /// `fs.inotify.max_user_watches`: no new watch.
    Watches,
}

/// What to tell the user when inotify runs out of instances or watches.
fn limit_message(limit: Limit) -> String {
    let (setting, raise_to) = match limit {
        Limit::Instances => ("max_user_instances", 1024),
        Limit::Watches => ("max_user_watches", 524288),
    };
    let current = std::fs::read_to_string(format!("/proc/sys/fs/inotify/{setting}"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".to_string());
    format!(
        "The OS limit on file watches is reached (fs.inotify.{setting} = {current}); \
         falling back to scanning every {} ms. To raise it: \
         `sudo sysctl fs.inotify.{setting}={raise_to}` (add it to /etc/sysctl.conf to keep it)",
        POLL_INTERVAL.as_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_outputs_and_paths_outside_the_workspace_are_ignored() {
        let root = Path::new("/ws");
        assert!(ignored(root, Path::new("/ws/kiln-out/bin/a")));
        assert!(ignored(root, Path::new("/elsewhere/a")));
        assert!(
            !ignored(root, Path::new("/ws/.config/x")),
            "a glob may list it"
        );
        assert!(!ignored(root, Path::new("/ws/a/.hidden")));
        assert!(!ignored(root, Path::new("/ws/a/b.txt")));
        assert!(!ignored(root, Path::new("/ws/kiln-outside/b.txt")));
    }

    #[test]
    fn the_limit_messages_say_how_to_raise_them() {
        let watches = limit_message(Limit::Watches);
        assert!(
            watches.contains("sudo sysctl fs.inotify.max_user_watches="),
            "{watches}"
        );
        let instances = limit_message(Limit::Instances);
        assert!(
            instances.contains("sudo sysctl fs.inotify.max_user_instances="),
            "{instances}"
        );
    }

    fn tempdir() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path().canonicalize().unwrap_or_else(|e| panic!("{e}"));
        (dir, root)
    }

    fn mkdir(path: &Path) {
        std::fs::create_dir_all(path).unwrap_or_else(|e| panic!("{e}"));
    }

    fn write(path: &Path, content: &str) {
        std::fs::write(path, content).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Waits until `want` paths were reported (or 20 s passed); returns everything seen.
    fn collect(watcher: &DirWatcher, want: &[&Path]) -> Vec<PathBuf> {
        let mut seen: Vec<PathBuf> = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline
            && !want.iter().all(|w| seen.contains(&w.to_path_buf()))
        {
            if let Ok(paths) = watcher.events.recv_timeout(Duration::from_millis(100)) {
                seen.extend(paths);
            }
        }
        seen
    }

    fn edits_are_reported_in_watched_directories_only(poll: bool) {
        let (_dir, root) = tempdir();
        let (a, b) = (root.join("a"), root.join("b"));
        mkdir(&a);
        mkdir(&b);
        write(&a.join("old.txt"), "old");
        let (watcher, note) = DirWatcher::start(&BTreeSet::from([root.clone(), a.clone()]), poll)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(note.is_none());
        assert_eq!(watcher.polling(), poll);
        write(&b.join("unwatched.txt"), "u");
        write(&a.join("x.txt"), "x");
        write(&a.join("old.txt"), "changed");
        let seen = collect(&watcher, &[&a.join("x.txt"), &a.join("old.txt")]);
        assert!(seen.contains(&a.join("x.txt")), "{seen:?}");
        assert!(seen.contains(&a.join("old.txt")), "{seen:?}");
        assert!(!seen.contains(&b.join("unwatched.txt")), "{seen:?}");
    }

    #[test]
    fn notifications_report_edits_in_watched_directories_only() {
        edits_are_reported_in_watched_directories_only(false);
    }

    #[test]
    fn scanning_reports_edits_in_watched_directories_only() {
        edits_are_reported_in_watched_directories_only(true);
    }

    fn retargeting_moves_the_watches(poll: bool) {
        let (_dir, root) = tempdir();
        let (a, b) = (root.join("a"), root.join("b"));
        mkdir(&a);
        mkdir(&b);
        let (mut watcher, _) =
            DirWatcher::start(&BTreeSet::from([a.clone()]), poll).unwrap_or_else(|e| panic!("{e}"));
        let (added, note) = watcher.retarget(&BTreeSet::from([b.clone()]));
        assert_eq!(added, vec![b.clone()]);
        assert!(note.is_none());
        assert_eq!(watcher.watched_count(), 1, "the watch on a is gone");
        write(&a.join("left.txt"), "l");
        write(&b.join("now.txt"), "n");
        let seen = collect(&watcher, &[&b.join("now.txt")]);
        assert!(seen.contains(&b.join("now.txt")), "{seen:?}");
        assert!(!seen.contains(&a.join("left.txt")), "{seen:?}");
    }

    #[test]
    fn retargeting_moves_the_watches_with_notifications() {
        retargeting_moves_the_watches(false);
    }

    #[test]
    fn retargeting_moves_the_watches_when_scanning() {
        retargeting_moves_the_watches(true);
    }

    #[test]
    fn a_directory_deleted_and_created_again_is_watched_again() {
        let (_dir, root) = tempdir();
        let a = root.join("a");
        mkdir(&a);
        let dirs = BTreeSet::from([root.clone(), a.clone()]);
        let (mut watcher, _) = DirWatcher::start(&dirs, false).unwrap_or_else(|e| panic!("{e}"));
        std::fs::remove_dir(&a).unwrap_or_else(|e| panic!("{e}"));
        mkdir(&a);
        let seen = collect(&watcher, &[&a]);
        watcher.forget(&seen);
        let (added, _) = watcher.retarget(&dirs);
        assert_eq!(added, vec![a.clone()]);
        while watcher.events.try_recv().is_ok() {}
        write(&a.join("new.txt"), "n");
        let seen = collect(&watcher, &[&a.join("new.txt")]);
        assert!(seen.contains(&a.join("new.txt")), "{seen:?}");
    }
}
