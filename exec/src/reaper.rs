//! Removes finished scratch trees on a background thread, off the action's critical path.
//!
//! A link step's scratch tree holds hundreds of staged inputs; removing it took about a
//! tenth of the step's wall time when done inline. The [`Reaper`] of a [`crate::Sandbox`]
//! takes the trees of finished actions instead and removes them in order on one thread. It
//! is shared (through an `Arc`) by the sandbox and every [`crate::Scratch`] it made; when
//! the last of them is dropped, the reaper finishes the queue and joins its thread, so no
//! tree outlives a build that ends normally. A killed build leaves trees behind, which the
//! next build clears (the scratch directories are private to a workspace and its lock).

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Mutex;
use std::thread::JoinHandle;

/// Trees waiting for removal at most: the memory scratch budget assumes about one tree per job
/// is alive, so a backlog is bounded and the action that finds the queue full removes inline.
const QUEUE_LIMIT: usize = 8;

/// A queue of directory trees to remove, served by a thread started on first use.
#[derive(Debug, Default)]
pub(crate) struct Reaper {
    worker: Mutex<Option<Worker>>,
}

#[derive(Debug)]
struct Worker {
    queue: SyncSender<PathBuf>,
    thread: JoinHandle<()>,
}

impl Reaper {
    /// Queues `tree` for removal; removes it now if no thread can be started.
    pub(crate) fn remove(&self, tree: PathBuf) {
        let Ok(mut worker) = self.worker.lock() else {
            remove_tree(&tree);
            return;
        };
        if worker.is_none() {
            *worker = Worker::start();
        }
        // A full queue means removal lags behind the actions: remove this one now rather than
        // let finished trees pile up on a small memory file system.
        let unsent = match worker.as_ref() {
            Some(w) => match w.queue.try_send(tree) {
                Ok(()) => None,
                Err(TrySendError::Full(tree) | TrySendError::Disconnected(tree)) => Some(tree),
            },
            None => Some(tree),
        };
        if let Some(tree) = unsent {
            remove_tree(&tree);
        }
    }
}

impl Worker {
    fn start() -> Option<Worker> {
        let (queue, trees) = mpsc::sync_channel::<PathBuf>(QUEUE_LIMIT);
        let thread = std::thread::Builder::new()
            .name("kiln-reaper".into())
            .spawn(move || {
                for tree in trees {
                    remove_tree(&tree);
                }
            })
            .ok()?;
        Some(Worker { queue, thread })
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let worker = match self.worker.get_mut() {
            Ok(worker) => worker.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(Worker { queue, thread }) = worker {
            // Closing the queue ends the thread's loop once it has removed every queued tree.
            drop(queue);
            let _ = thread.join();
        }
    }
}

/// Removes `tree`, making read-only directories in it writable first if a plain removal fails
/// (an action may leave some behind).
pub(crate) fn remove_tree(tree: &Path) {
    if std::fs::remove_dir_all(tree).is_ok() {
        return;
    }
    make_dirs_writable(tree);
    let _ = std::fs::remove_dir_all(tree);
}

fn make_dirs_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            make_dirs_writable(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree_in(dir: &Path, name: &str) -> PathBuf {
        let tree = dir.join(name);
        std::fs::create_dir_all(tree.join("a/b")).unwrap();
        std::fs::write(tree.join("a/b/f"), b"x").unwrap();
        tree
    }

    #[test]
    fn dropping_the_reaper_waits_for_every_queued_tree() {
        let dir = tempfile::tempdir().unwrap();
        let trees: Vec<PathBuf> = (0..20)
            .map(|i| tree_in(dir.path(), &format!("t{i}")))
            .collect();
        let reaper = Reaper::default();
        for tree in &trees {
            reaper.remove(tree.clone());
        }
        drop(reaper);
        for tree in &trees {
            assert!(!tree.exists(), "{} left behind", tree.display());
        }
    }

    #[test]
    fn read_only_directories_left_by_an_action_are_removed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let tree = tree_in(dir.path(), "t");
        std::fs::set_permissions(tree.join("a/b"), std::fs::Permissions::from_mode(0o555)).unwrap();
        let reaper = Reaper::default();
        reaper.remove(tree.clone());
        drop(reaper);
        // Root ignores directory permissions, so this checks the removal, not the fallback,
        // when the tests run as root.
        assert!(!tree.exists());
    }

    #[test]
    fn a_reaper_never_used_starts_no_thread() {
        let reaper = Reaper::default();
        assert!(reaper.worker.lock().unwrap().is_none());
    }
}
