//! Watching the workspace's directories (not files, so an editor's save by rename is seen) for
//! `kiln watch`: one non-recursive watch per directory, skipping `kiln-out/` and hidden
//! directories, adding directories as they appear. When the OS limit on watches is reached it says
//! how to raise it and falls back to periodic stat scans.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::sync::mpsc::Sender;

use notify::{Config, Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};

/// How often the fallback scans the tree.
const POLL_INTERVAL: Duration = Duration::from_millis(300);

/// The directory watcher and the channel its events arrive on.
pub struct DirWatcher {
    root: PathBuf,
    backend: Backend,
    /// Paths of changed entries (files or directories), as the OS reported them.
    pub events: Receiver<Vec<PathBuf>>,
}

enum Backend {
    Native(RecommendedWatcher),
    /// A thread that rescans the tree; it ends when the receiver is dropped.
    Poll,
}

/// Whether `path` (absolute, under `root`) is something Kiln never watches: build outputs and
/// hidden directories such as `.git`.
pub fn ignored(root: &Path, path: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(root) else {
        return true;
    };
    let mut components = rel.components().peekable();
    if let Some(first) = components.peek() {
        if first.as_os_str() == "kiln-out" {
            return true;
        }
    }
    let parts: Vec<_> = rel.components().collect();
    // Hidden directories anywhere on the way (the file itself may be hidden: a glob may want it).
    parts
        .iter()
        .take(parts.len().saturating_sub(1))
        .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
}

impl DirWatcher {
    /// Starts watching every directory under `root`; `poll` forces periodic scans.
    pub fn start(root: &Path, poll: bool) -> anyhow::Result<(DirWatcher, Option<String>)> {
        let (tx, rx) = channel::<Vec<PathBuf>>();
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
        if poll {
            return Ok((Self::scanning(root), None));
        }
        let backend = Backend::Native(RecommendedWatcher::new(handler, Config::default())?);
        let mut watcher = DirWatcher {
            root: root.to_path_buf(),
            backend,
            events: rx,
        };
        match watcher.watch_tree(root) {
            Ok(()) => Ok((watcher, None)),
            // Out of inotify watches: fall back to scanning.
            Err(limit) => Ok((Self::scanning(root), Some(limit))),
        }
    }

    /// A watcher that rescans every [`POLL_INTERVAL`], comparing each file's full stat
    /// (nanosecond mtime and ctime, size, inode), so a same-second rewrite is never missed.
    fn scanning(root: &Path) -> DirWatcher {
        let (tx, rx) = channel::<Vec<PathBuf>>();
        let scan_root = root.to_path_buf();
        // The first scan happens before `start` returns: a change made after it is always seen.
        let first = scan(root);
        std::thread::spawn(move || scan_forever(&scan_root, first, &tx));
        DirWatcher {
            root: root.to_path_buf(),
            backend: Backend::Poll,
            events: rx,
        }
    }

    /// Watches `dir` and every directory below it that is not ignored. An error is the message
    /// to show when the OS ran out of watches.
    pub fn watch_tree(&mut self, dir: &Path) -> Result<(), String> {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(dir) = stack.pop() {
            if ignored(&self.root, &dir.join("x")) {
                continue;
            }
            match self.watch_one(&dir) {
                Ok(()) => {}
                Err(e) if is_limit(&e) => return Err(limit_message()),
                Err(_) => continue, // gone already, or unreadable: nothing to watch
            }
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(entry.path());
                    }
                }
            }
        }
        Ok(())
    }

    fn watch_one(&mut self, dir: &Path) -> notify::Result<()> {
        match &mut self.backend {
            Backend::Native(w) => w.watch(dir, RecursiveMode::NonRecursive),
            Backend::Poll => Ok(()), // every scan walks the whole tree
        }
    }

    /// Whether the fallback scanner is in use.
    pub fn polling(&self) -> bool {
        matches!(self.backend, Backend::Poll)
    }
}

/// (inode, size, mtime ns, ctime ns) of an entry.
type EntryStat = (u64, u64, i128, i128);

/// Every entry under `root` that is not ignored, with its stat.
fn scan(root: &Path) -> HashMap<PathBuf, EntryStat> {
    let mut seen = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if ignored(root, &path) {
                continue;
            }
            let Ok(m) = entry.metadata() else { continue };
            if m.is_dir() && !ignored(root, &path.join("x")) {
                stack.push(path.clone());
            }
            let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
            seen.insert(
                path,
                (
                    m.ino(),
                    m.size(),
                    ns(m.mtime(), m.mtime_nsec()),
                    ns(m.ctime(), m.ctime_nsec()),
                ),
            );
        }
    }
    seen
}

/// Rescans until the receiving side is gone, sending the paths whose stat changed (or that
/// appeared or vanished) since the last scan.
fn scan_forever(root: &Path, mut before: HashMap<PathBuf, EntryStat>, tx: &Sender<Vec<PathBuf>>) {
    loop {
        std::thread::sleep(POLL_INTERVAL);
        let now = scan(root);
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
        notify::ErrorKind::Io(e) => e.raw_os_error() == Some(libc::ENOSPC),
        _ => false,
    }
}

/// What to tell the user when inotify runs out of watches.
pub fn limit_message() -> String {
    let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".to_string());
    format!(
        "The OS limit on file watches is reached (fs.inotify.max_user_watches = {limit}); \
         falling back to scanning every {} ms. To raise it: \
         `sudo sysctl fs.inotify.max_user_watches=524288` (add it to /etc/sysctl.conf to keep it)",
        POLL_INTERVAL.as_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_and_hidden_directories_are_ignored_but_hidden_files_are_not() {
        let root = Path::new("/ws");
        assert!(ignored(root, Path::new("/ws/kiln-out/bin/a")));
        assert!(ignored(root, Path::new("/ws/.git/index")));
        assert!(ignored(root, Path::new("/ws/a/.cache/x")));
        assert!(ignored(root, Path::new("/elsewhere/a")));
        assert!(!ignored(root, Path::new("/ws/a/.hidden")));
        assert!(!ignored(root, Path::new("/ws/a/b.txt")));
        assert!(!ignored(root, Path::new("/ws/kiln-outside/b.txt")));
    }

    #[test]
    fn the_limit_message_says_how_to_raise_it() {
        let message = limit_message();
        assert!(message.contains("fs.inotify.max_user_watches"), "{message}");
        assert!(message.contains("sudo sysctl"), "{message}");
    }

    fn edits_are_reported(poll: bool) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path().canonicalize().unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(root.join("a")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(root.join("a/old.txt"), "old").unwrap_or_else(|e| panic!("{e}"));
        let (watcher, note) = DirWatcher::start(&root, poll).unwrap_or_else(|e| panic!("{e}"));
        assert!(note.is_none());
        assert_eq!(watcher.polling(), poll);
        std::fs::write(root.join("a/x.txt"), "x").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(root.join("a/old.txt"), "changed").unwrap_or_else(|e| panic!("{e}"));
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline
            && !(seen.iter().any(|p: &PathBuf| p.ends_with("a/x.txt"))
                && seen.iter().any(|p: &PathBuf| p.ends_with("a/old.txt")))
        {
            if let Ok(paths) = watcher.events.recv_timeout(Duration::from_millis(100)) {
                seen.extend(paths);
            }
        }
        assert!(seen.iter().any(|p| p.ends_with("a/x.txt")), "{seen:?}");
        assert!(seen.iter().any(|p| p.ends_with("a/old.txt")), "{seen:?}");
    }

    #[test]
    fn notifications_report_new_and_changed_files() {
        edits_are_reported(false);
    }

    #[test]
    fn scanning_reports_new_and_changed_files() {
        edits_are_reported(true);
    }
}
