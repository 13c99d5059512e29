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

/// A file being written under a unique temp name; removed on drop unless persisted.
pub(crate) struct TempFile {
    path: PathBuf,
    persisted: bool,
}

impl TempFile {
    /// Creates a new empty temp file in `dir`, returning it open for writing.
    pub(crate) fn create_in(dir: &Path) -> io::Result<(TempFile, File)> {
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

/// Removes entries of `dir` whose modification time is older than `max_age`.
/// Errors are ignored: another process may be cleaning the same directory.
pub(crate) fn remove_stale(dir: &Path, max_age: Duration) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > max_age);
        if old && meta.is_file() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// True when `path` is a regular file of exactly `size` bytes.
pub(crate) fn is_file_of_size(path: &Path, size: u64) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == size)
}
