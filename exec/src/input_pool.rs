//! One copy per build of each small immutable input, on the scratch file system, that staged
//! trees hard-link instead of copying the input again.
//!
//! Actions whose inputs fit stage on a memory file system (`/dev/shm`), where a CAS blob on
//! disk cannot be hard-linked. Large blobs are bind-mounted; small ones used to be copied
//! into every tree that needs them, and a Go link stages the same ~450 small archives for
//! each binary (about 45 µs each: create, copy, close). The pool copies a blob the first
//! time an action needs it and links it from then on.
//!
//! Safe for the same reason as linking a CAS blob: in namespaces mode every input is a
//! read-only mount and the action has no `CAP_SYS_ADMIN` to remount it, so no action can
//! write to a pooled file. Only immutable inputs (CAS blobs, named by their digest) are
//! pooled, so a source path always names the same bytes. The pool holds at most `max_bytes`
//! (then inputs are copied as before) and is removed with the last clone of its sandbox; a
//! killed build's pool is cleared with its scratch trees by the next build.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::reaper::remove_tree;
use crate::staging::copy_read_only;

/// The pool directory and what it holds.
#[derive(Debug)]
pub(crate) struct InputPool {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<PoolState>,
}

#[derive(Debug, Default)]
struct PoolState {
    /// The device of `dir`, once it has been created; `None` before.
    device: Option<u64>,
    /// (source, executable) → its copy in the pool.
    files: HashMap<(PathBuf, bool), PathBuf>,
    /// Bytes held or reserved.
    bytes: u64,
    /// Names the next copy.
    next: u64,
}

impl InputPool {
    /// A pool in `dir` (created on first use) holding at most `max_bytes`.
    pub(crate) fn new(dir: PathBuf, max_bytes: u64) -> InputPool {
        InputPool {
            dir,
            max_bytes,
            state: Mutex::default(),
        }
    }

    /// Stages the immutable input `source` (`len` bytes) at `dest` as a hard link to its copy
    /// in the pool, copying it in first if needed. `false` if the pool cannot serve it (full,
    /// on another file system than `dest_device`, or an I/O error): the caller copies.
    pub(crate) fn link(
        &self,
        source: &Path,
        executable: bool,
        len: u64,
        dest: &Path,
        dest_device: u64,
    ) -> bool {
        if self.link_pooled(source, executable, dest, dest_device) {
            return true;
        }
        match self.add((source.to_path_buf(), executable), len, dest_device) {
            Some(pooled) => fs::hard_link(pooled, dest).is_ok(),
            None => false,
        }
    }

    /// Like [`InputPool::link`], but only if the pool holds a copy already: no look at the
    /// source, which saves a `stat` per input when the same blobs are staged again and again.
    pub(crate) fn link_pooled(
        &self,
        source: &Path,
        executable: bool,
        dest: &Path,
        dest_device: u64,
    ) -> bool {
        let pooled = {
            let Ok(state) = self.state.lock() else {
                return false;
            };
            if state.device != Some(dest_device) {
                return false;
            }
            state
                .files
                .get(&(source.to_path_buf(), executable))
                .cloned()
        };
        pooled.is_some_and(|pooled| fs::hard_link(pooled, dest).is_ok())
    }

    /// Copies `source` into the pool; `None` if it does not fit or the copy fails.
    fn add(&self, key: (PathBuf, bool), len: u64, dest_device: u64) -> Option<PathBuf> {
        let name = {
            let mut state = self.state.lock().ok()?;
            if state.device.is_none() {
                fs::create_dir_all(&self.dir).ok()?;
                state.device = Some(fs::metadata(&self.dir).ok()?.dev());
            }
            if state.device != Some(dest_device) || state.bytes.saturating_add(len) > self.max_bytes
            {
                return None;
            }
            state.bytes += len;
            state.next += 1;
            state.next
        };
        let pooled = self.dir.join(name.to_string());
        if copy_read_only(&key.0, &pooled, key.1).is_err() {
            let _ = fs::remove_file(&pooled);
            if let Ok(mut state) = self.state.lock() {
                state.bytes -= len;
            }
            return None;
        }
        let mut state = self.state.lock().ok()?;
        // Two actions may have copied the same input at once: the first copy recorded serves
        // both, and the later one gives its space back.
        match state.files.get(&key).cloned() {
            Some(first) => {
                state.bytes -= len;
                drop(state);
                let _ = fs::remove_file(&pooled);
                Some(first)
            }
            None => {
                state.files.insert(key, pooled.clone());
                Some(pooled)
            }
        }
    }

    /// Bytes the pool holds or has reserved.
    #[cfg(test)]
    fn bytes(&self) -> u64 {
        self.state.lock().map(|s| s.bytes).unwrap_or(0)
    }
}

impl Drop for InputPool {
    fn drop(&mut self) {
        remove_tree(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(max_bytes: u64) -> (tempfile::TempDir, InputPool, u64) {
        let dir = tempfile::tempdir().unwrap();
        let device = fs::metadata(dir.path()).unwrap().dev();
        let pool = InputPool::new(dir.path().join("pool"), max_bytes);
        fs::create_dir(dir.path().join("tree")).unwrap();
        (dir, pool, device)
    }

    #[test]
    fn an_input_is_copied_once_and_linked_into_every_tree() {
        let (dir, pool, device) = setup(1 << 20);
        let source = dir.path().join("blob");
        fs::write(&source, b"archive").unwrap();
        let a = dir.path().join("tree/a");
        let b = dir.path().join("tree/b");
        assert!(pool.link(&source, false, 7, &a, device));
        assert!(pool.link(&source, false, 7, &b, device));
        let (ma, mb) = (fs::metadata(&a).unwrap(), fs::metadata(&b).unwrap());
        assert_eq!(ma.ino(), mb.ino(), "one pooled copy, linked twice");
        assert_ne!(
            ma.ino(),
            fs::metadata(&source).unwrap().ino(),
            "not the source"
        );
        assert_eq!(ma.mode() & 0o777, 0o444);
        assert_eq!(fs::read(&b).unwrap(), b"archive");
        // The executable variant is a copy of its own, with its own mode.
        let x = dir.path().join("tree/x");
        assert!(pool.link(&source, true, 7, &x, device));
        assert_eq!(fs::metadata(&x).unwrap().mode() & 0o777, 0o555);
        assert_ne!(fs::metadata(&x).unwrap().ino(), ma.ino());
    }

    #[test]
    fn a_full_pool_or_another_file_system_is_refused() {
        let (dir, pool, device) = setup(10);
        let source = dir.path().join("blob");
        fs::write(&source, b"0123456789ab").unwrap();
        assert!(!pool.link(&source, false, 12, &dir.path().join("tree/a"), device));
        let small = dir.path().join("small");
        fs::write(&small, b"0123").unwrap();
        assert!(pool.link(&small, false, 4, &dir.path().join("tree/b"), device));
        assert!(!pool.link(&small, false, 4, &dir.path().join("tree/c"), device + 1));
    }

    #[test]
    fn a_missing_source_is_refused_and_its_space_returned() {
        let (dir, pool, device) = setup(10);
        let gone = dir.path().join("gone");
        assert!(!pool.link(&gone, false, 8, &dir.path().join("tree/a"), device));
        let source = dir.path().join("blob");
        fs::write(&source, b"01234567").unwrap();
        assert!(pool.link(&source, false, 8, &dir.path().join("tree/b"), device));
    }

    #[test]
    fn a_copy_that_lost_the_race_is_removed_and_not_counted() {
        let (dir, pool, device) = setup(1 << 20);
        let source = dir.path().join("blob");
        fs::write(&source, b"0123456789").unwrap();
        // Two actions that both missed the pool copy the input; the second to finish loses.
        let key = (source.clone(), false);
        let first = pool.add(key.clone(), 10, device).unwrap();
        let second = pool.add(key, 10, device).unwrap();
        assert_eq!(first, second, "both are served the copy recorded first");
        assert_eq!(pool.bytes(), 10, "the loser's copy is not counted");
        let pooled: Vec<_> = fs::read_dir(dir.path().join("pool")).unwrap().collect();
        assert_eq!(pooled.len(), 1, "the loser's copy is removed");
    }

    #[test]
    fn dropping_the_pool_removes_its_directory() {
        let (dir, pool, device) = setup(1 << 20);
        let source = dir.path().join("blob");
        fs::write(&source, b"x").unwrap();
        assert!(pool.link(&source, false, 1, &dir.path().join("tree/a"), device));
        assert!(dir.path().join("pool").is_dir());
        drop(pool);
        assert!(!dir.path().join("pool").exists());
        assert_eq!(fs::read(dir.path().join("tree/a")).unwrap(), b"x");
    }
}
