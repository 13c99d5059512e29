//! Small file-system helpers shared by the stores: temp files that vanish unless persisted,
//! atomic installs by rename, permission bits, and temp-directory cleanup.
//!
//! Internal module. Invariant: a file becomes visible under its final name only through
//! `rename(2)` of a complete temp file, so a crash leaves at most a temp file behind.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::digest::{Digest, DigestFunction, DigestWriter};

/// Prefix of every temp file this crate creates, in `<root>/tmp` or beside a destination.
pub(crate) const TEMP_PREFIX: &str = ".kiln-tmp.";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// How many subdirectories [`spread`] deals temp files out to.
pub(crate) const SPREAD: u64 = 16;

static SPREAD_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The next of [`SPREAD`] subdirectories of `dir` (named `0` to `f`; created by
/// [`TempFile::create_in`] when missing), in turn. In a directory marked with
/// [`mark_top_directory`], ext4 places each subdirectory in a block group of its own, and a
/// file's inode in its directory's group: so a build's temp files, which become CAS blobs or
/// outputs, fill 16 groups a little instead of one a lot. A group's recently freed inodes are
/// checked one by one at every creation there (ext4 without a journal), so that cost grows
/// with the square of the files one group lost to the last clean; spread, it is 16 times less.
pub(crate) fn spread(dir: &Path) -> PathBuf {
    let n = SPREAD_COUNTER.fetch_add(1, Ordering::Relaxed) % SPREAD;
    dir.join(format!("{n:x}"))
}

/// A file being written under a unique temp name; removed on drop unless persisted.
pub(crate) struct TempFile {
    path: PathBuf,
    persisted: bool,
}

impl TempFile {
    /// Creates a new empty temp file in `dir` (created if missing: another process may have
    /// removed it as stale), returning it open for writing.
    pub(crate) fn create_in(dir: &Path) -> io::Result<(TempFile, File)> {
        let mut recreated = false;
        loop {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let name = format!(
                "{TEMP_PREFIX}{}.{}.{nanos}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let path = dir.join(name);
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    return Ok((
                        TempFile {
                            path,
                            persisted: false,
                        },
                        file,
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound && !recreated => {
                    recreated = true;
                    fs::create_dir_all(dir)?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The temp file's current path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the temp file to `dest` (atomically replacing any file there).
    pub(crate) fn persist(mut self, dest: &Path) -> io::Result<()> {
        fs::rename(&self.path, dest)?;
        self.persisted = true;
        Ok(())
    }
}

/// Makes the entries of `dir` durable (after a rename into it, the rename is durable only once
/// its directory is synced).
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Sets the permission bits of an open file.
pub(crate) fn set_mode(file: &File, mode: u32) -> io::Result<()> {
    file.set_permissions(Permissions::from_mode(mode))
}

/// Copies `reader` into `file` while hashing; returns the digest of the bytes written.
pub(crate) fn copy_hashing(
    function: DigestFunction,
    reader: &mut impl Read,
    file: File,
) -> io::Result<(File, Digest)> {
    let mut writer = DigestWriter::new(function, file);
    // 64 KiB: large enough for streaming, small enough that the many tiny blobs of a build do not
    // each pay for zeroing a megabyte.
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = crate::digest::read_full(reader, &mut buf)?;
        if n == 0 {
            break;
        }
        writer.write_all(&buf[..n])?;
    }
    Ok(writer.finish())
}

/// The directory a destination lives in (`.` for a bare file name).
pub(crate) fn parent_dir(dest: &Path) -> &Path {
    match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Removes entries of `dir` (files, and directories with what they hold) whose modification
/// time is older than `max_age`. Errors are ignored: another process may be cleaning the same
/// directory.
pub(crate) fn remove_stale(dir: &Path, max_age: Duration) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        // A live cache instance creates its files in the subdirectories of its directory
        // (see `spread`), so their times, not the directory's own, say when it last wrote.
        let mut newest = meta.modified().ok();
        if meta.is_dir() {
            for sub in fs::read_dir(entry.path()).into_iter().flatten().flatten() {
                let modified = sub.metadata().and_then(|m| m.modified()).ok();
                newest = newest.max(modified);
            }
        }
        let old = newest
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > max_age);
        if old && meta.is_file() {
            let _ = fs::remove_file(entry.path());
        } else if old && meta.is_dir() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// How many temp files the cache rooted at `root` holds under `tmp/` (every open cache has a
/// directory of its own there, with [`SPREAD`] subdirectories): what a crash or an abandoned
/// upload left behind. An unreadable or missing directory counts as empty.
pub fn temp_file_count(root: &Path) -> usize {
    fn files(dir: &Path) -> usize {
        fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| match e.file_type() {
                        Ok(t) if t.is_dir() => files(&e.path()),
                        _ => 1,
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    files(&root.join("tmp"))
}

/// True when `path` is a regular file of exactly `size` bytes.
pub(crate) fn is_file_of_size(path: &Path, size: u64) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == size)
}

/// `FS_TOPDIR_FL` from linux/fs.h (a stable kernel ABI value; the libc crate does not name it).
const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;

/// Asks the file system to place `dir`'s subdirectories as it places top-level ones
/// (`chattr +T`): ext4's Orlov allocator spreads them over block groups with room instead of
/// packing them into `dir`'s own group, and files created in such a subdirectory get their
/// inodes in its group. Kiln creates its temp files in fresh subdirectories of such a directory
/// because ext4 without a journal, looking for a free inode, checks every recently freed one in
/// the group first: creating files where a cache or `kiln-out/` was just deleted cost up to a
/// millisecond per file. Best effort: file systems without the flag refuse it, and nothing
/// changes.
pub fn mark_top_directory(dir: &Path) {
    use std::os::fd::AsRawFd;
    let Ok(handle) = File::open(dir) else {
        return;
    };
    let fd = handle.as_raw_fd();
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS and FS_IOC_SETFLAGS read or write one int through the pointer,
    // which points at a live local, on a descriptor we own.
    unsafe {
        if libc::ioctl(fd, libc::FS_IOC_GETFLAGS, &mut flags) != 0 || flags & FS_TOPDIR_FL != 0 {
            return;
        }
        flags |= FS_TOPDIR_FL;
        libc::ioctl(fd, libc::FS_IOC_SETFLAGS, &flags);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flag as the file system reports it; `None` where it keeps no such flags.
    fn flags(dir: &Path) -> Option<libc::c_int> {
        use std::os::fd::AsRawFd;
        let handle = File::open(dir).ok()?;
        let mut flags: libc::c_int = 0;
        // SAFETY: as in `mark_top_directory`.
        let rc = unsafe { libc::ioctl(handle.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) };
        (rc == 0).then_some(flags)
    }

    #[test]
    fn a_marked_directory_carries_the_top_directory_flag_where_the_file_system_has_one() {
        let dir = tempfile::tempdir().unwrap();
        let Some(before) = flags(dir.path()) else {
            eprintln!("skipped: the temp dir's file system keeps no inode flags");
            return;
        };
        assert_eq!(before & FS_TOPDIR_FL, 0);
        mark_top_directory(dir.path());
        mark_top_directory(dir.path()); // again: no change, no error
        let after = flags(dir.path()).unwrap();
        if after & FS_TOPDIR_FL == 0 {
            eprintln!("the file system ignored the flag");
        } else {
            assert_eq!(after, before | FS_TOPDIR_FL, "only the flag is added");
        }
        mark_top_directory(&dir.path().join("missing")); // best effort: nothing happens
    }
}
