//! [`BuildLock`]: one kiln build per workspace at a time, via `flock(LOCK_EX)` on
//! `<state dir>/lock`.
//!
//! The holder writes its pid into the file so a waiter can say whom it waits for. The lock is
//! released on drop, and by the kernel when the process dies (even by `kill -9`). The file is
//! never deleted: deleting a flock'ed file lets two processes lock two different inodes.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{CacheError, Result};

/// An exclusive lock on a workspace's state directory; released when dropped.
#[derive(Debug)]
pub struct BuildLock {
    file: File,
    path: PathBuf,
}

impl BuildLock {
    /// Takes the lock, waiting for any other holder to release it.
    pub fn acquire(state_dir: &Path) -> Result<BuildLock> {
        let (mut file, path) = open(state_dir)?;
        file.lock().map_err(CacheError::io(&path))?;
        write_pid(&mut file, &path)?;
        Ok(BuildLock { file, path })
    }

    /// Takes the lock if it is free; otherwise fails with [`CacheError::LockHeld`] carrying
    /// the holder's pid, so the caller can print "Waiting for another kiln process (pid N)"
    /// and then call [`acquire`](Self::acquire).
    pub fn try_acquire(state_dir: &Path) -> Result<BuildLock> {
        let (mut file, path) = open(state_dir)?;
        match file.try_lock() {
            Ok(()) => {
                write_pid(&mut file, &path)?;
                Ok(BuildLock { file, path })
            }
            Err(TryLockError::WouldBlock) => {
                let pid = read_pid(&mut file);
                Err(CacheError::LockHeld { path, pid })
            }
            Err(TryLockError::Error(e)) => Err(CacheError::io(&path)(e)),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BuildLock {
    fn drop(&mut self) {
        // Closing the file would release it too; unlock explicitly to be clear.
        let _ = self.file.unlock();
    }
}

fn open(state_dir: &Path) -> Result<(File, PathBuf)> {
    fs::create_dir_all(state_dir).map_err(CacheError::io(state_dir))?;
    let path = state_dir.join("lock");
    // No truncate: the file may hold the current holder's pid.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(CacheError::io(&path))?;
    Ok((file, path))
}

fn write_pid(file: &mut File, path: &Path) -> Result<()> {
    let io = CacheError::io(path);
    file.set_len(0).map_err(&io)?;
    file.seek(SeekFrom::Start(0)).map_err(&io)?;
    writeln!(file, "{}", std::process::id()).map_err(&io)
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}
