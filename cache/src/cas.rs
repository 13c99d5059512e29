//! The content-addressed store: put, verified read, materialize as a copy, link into a sandbox.
//!
//! Architecture invariant: a blob file's name is always the digest of its content. A blob is
//! written to `<root>/tmp`, hashed from the bytes actually written, and only then renamed to
//! the name of that digest. Reads re-hash; a blob that no longer matches its name is deleted,
//! reported through [`LocalCache::take_warnings`], and is a miss: the CAS never returns it.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use crate::digest::{Digest, DigestFunction};
use crate::error::{CacheError, Result};
use crate::fsutil::{self, TempFile};
use crate::index::Kind;
use crate::local_cache::LocalCache;

/// Mode of a stored blob: read-only for everyone.
const BLOB_MODE: u32 = 0o444;

impl LocalCache {
    /// Stores `bytes` and returns their digest.
    pub fn put_bytes(&self, function: DigestFunction, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of_bytes(function, bytes);
        let dest = self.blob_path(&digest);
        if !fsutil::is_file_of_size(&dest, digest.size) {
            let tmp_dir = self.tmp_dir();
            let (tmp, mut file) =
                TempFile::create_in(&tmp_dir).map_err(CacheError::io(&tmp_dir))?;
            file.write_all(bytes).map_err(CacheError::io(tmp.path()))?;
            self.install_blob(tmp, file, &dest)?;
        }
        self.note_used(Kind::Blob, &digest, digest.size);
        Ok(digest)
    }

    /// Stores the content of the file at `src`, hashing it while it is copied, and returns the
    /// digest of the bytes actually stored. An existing blob is not rewritten.
    pub fn put_file(&self, function: DigestFunction, src: &Path) -> Result<Digest> {
        self.put_file_inner(function, src, None)
    }

    /// Stores a file the caller owns and will not touch again (an action's output in its scratch
    /// directory), without copying when it can: the file is hashed in place and, unless the
    /// store has its content already, renamed into place. A file with other hard links (an
    /// action may link an input to its output) is copied as [`put_file`](Self::put_file) does.
    /// One on another file system (a scratch tree on `/dev/shm`) is hashed first too, and copied
    /// only when its content is new: an unchanged output is common (a relinked Go binary that
    /// does not reach the edited function has the same bytes), and reading costs less than
    /// writing (on the x/tools benchmark's VM, hashing first kept 25 links' ~6.5 MB binaries
    /// from being written again at ~4.6 ms each). Also says whether
    /// this call put the bytes in the store (`false`: a blob with that name was there already,
    /// or the copy went through [`put_file`](Self::put_file)).
    pub fn put_file_owned(&self, function: DigestFunction, src: &Path) -> Result<(Digest, bool)> {
        use std::os::unix::fs::MetadataExt;
        let metadata = fs::symlink_metadata(src).map_err(CacheError::io(src))?;
        if !metadata.is_file() || metadata.nlink() != 1 {
            return Ok((self.put_file(function, src)?, false));
        }
        let digest = Digest::of_file(function, src).map_err(CacheError::io(src))?;
        let dest = self.blob_path(&digest);
        if !fsutil::is_file_of_size(&dest, digest.size) {
            // Another file system: copied, hashed again from the bytes written (the store's
            // invariant), and refused if they are not the bytes just hashed. (A kernel copy
            // with a length check was tried, 799afdc: ~50 ms less CPU per x/tools body edit,
            // but a file an exited action's last process may still be writing, a timed-out
            // test's, would then be stored under the digest of bytes it no longer holds.)
            if self.tmp_device != Some(metadata.dev()) {
                self.put_file_inner(function, src, Some(&digest))?;
                return Ok((digest, true));
            }
            if !self.move_owned(src, &dest)? {
                return Ok((self.put_file(function, src)?, false));
            }
            self.note_used(Kind::Blob, &digest, digest.size);
            return Ok((digest, true));
        }
        self.note_used(Kind::Blob, &digest, digest.size);
        Ok((digest, false))
    }

    /// Renames the hashed, owned file `src` to `dest`; false if the rename failed.
    fn move_owned(&self, src: &Path, dest: &Path) -> Result<bool> {
        let file = File::open(src).map_err(CacheError::io(src))?;
        fsutil::set_mode(&file, BLOB_MODE).map_err(CacheError::io(src))?;
        if self.config.fsync {
            file.sync_all().map_err(CacheError::io(src))?;
        }
        drop(file);
        let shard = fsutil::parent_dir(dest);
        fs::create_dir_all(shard).map_err(CacheError::io(shard))?;
        Ok(fs::rename(src, dest).is_ok())
    }

    /// Like [`put_file`](Self::put_file), but fails with [`CacheError::DigestMismatch`] and
    /// stores nothing if the content's digest is not `expected`.
    pub fn put_file_expecting(&self, src: &Path, expected: &Digest) -> Result<Digest> {
        self.put_file_inner(expected.function, src, Some(expected))
    }

    fn put_file_inner(
        &self,
        function: DigestFunction,
        src: &Path,
        expected: Option<&Digest>,
    ) -> Result<Digest> {
        let mut input = File::open(src).map_err(CacheError::io(src))?;
        let tmp_dir = self.tmp_dir();
        let (tmp, file) = TempFile::create_in(&tmp_dir).map_err(CacheError::io(&tmp_dir))?;
        let (file, digest) =
            fsutil::copy_hashing(function, &mut input, file).map_err(|e| CacheError::Io {
                path: src.to_path_buf(),
                source: e,
            })?;
        if let Some(expected) = expected {
            if digest != *expected {
                // `tmp` is removed on drop: nothing is stored.
                return Err(CacheError::DigestMismatch {
                    path: src.to_path_buf(),
                    expected: *expected,
                    actual: digest,
                });
            }
        }
        let dest = self.blob_path(&digest);
        if !fsutil::is_file_of_size(&dest, digest.size) {
            self.install_blob(tmp, file, &dest)?;
        }
        self.note_used(Kind::Blob, &digest, digest.size);
        Ok(digest)
    }

    /// Makes a complete temp file read-only and renames it to `dest`.
    pub(crate) fn install_blob(&self, tmp: TempFile, file: File, dest: &Path) -> Result<()> {
        fsutil::set_mode(&file, BLOB_MODE).map_err(CacheError::io(tmp.path()))?;
        if self.config.fsync {
            file.sync_all().map_err(CacheError::io(tmp.path()))?;
        }
        drop(file);
        let shard = fsutil::parent_dir(dest);
        fs::create_dir_all(shard).map_err(CacheError::io(shard))?;
        // Another process may install the same blob at the same time: both renames carry the
        // same bytes, so whichever lands last is equally correct.
        tmp.persist(dest).map_err(CacheError::io(dest))?;
        if self.config.fsync {
            fsutil::sync_dir(shard).map_err(CacheError::io(shard))?;
        }
        Ok(())
    }

    /// Whether a blob with this digest is stored (by name and size; content is checked on
    /// read). Counts as a use for eviction. A file of another length is hashed to tell damage
    /// (reported and deleted) from an intact blob of another size (left alone); either way it
    /// is a miss. For digests from untrusted askers, see [`contains_as_asked`](Self::contains_as_asked).
    pub fn contains(&self, digest: &Digest) -> bool {
        match self.presence(digest) {
            Presence::Present => true,
            Presence::OtherLength(path) => {
                self.wrong_length(digest, &path);
                false
            }
            Presence::Absent => false,
        }
    }

    /// [`contains`](Self::contains) for a digest a remote client sent: a file of another
    /// length is a plain miss and is neither hashed nor touched (files are named by hash only,
    /// so the asker's size may be what is wrong; a damaged file is found when it is read, and
    /// replaced when the blob is stored again).
    pub fn contains_as_asked(&self, digest: &Digest) -> bool {
        matches!(self.presence(digest), Presence::Present)
    }

    fn presence(&self, digest: &Digest) -> Presence {
        let path = self.blob_path(digest);
        match fs::metadata(&path) {
            Ok(meta) if meta.is_file() && meta.len() == digest.size => {
                self.note_used(Kind::Blob, digest, digest.size);
                Presence::Present
            }
            Ok(_) => Presence::OtherLength(path),
            Err(_) => {
                self.note_gone(Kind::Blob, digest);
                Presence::Absent
            }
        }
    }

    /// Reads and verifies a blob. `Ok(None)` when it is missing (perhaps just evicted by another
    /// process), corrupt (then it is also deleted) or of another size than `digest` says (then
    /// it is left alone unless it is damaged; see [`LocalCache::wrong_length`]). Memory is
    /// bounded by the file's length, never by the size asked for.
    pub fn read(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        let path = self.blob_path(digest);
        let bytes = match read_expecting(&path, digest.size) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.note_gone(Kind::Blob, digest);
                return Ok(None);
            }
            Err(e) => return Err(CacheError::io(&path)(e)),
        };
        if bytes.len() as u64 > digest.size {
            // Longer than asked: not this blob as asked for; nothing more is read.
            return Ok(None);
        }
        if bytes.len() as u64 != digest.size {
            // Shorter: hashing what was read (no more than asked) tells damage from a wrong size.
            self.wrong_length(digest, &path);
            return Ok(None);
        }
        if Digest::of_bytes(digest.function, &bytes) != *digest {
            self.discard_corrupt(digest, &path);
            return Ok(None);
        }
        self.note_used(Kind::Blob, digest, digest.size);
        Ok(Some(bytes))
    }

    /// Writes a verified copy of a blob to `dest` (mode 0755 if `executable`, else 0644),
    /// atomically via a temp file in `dest`'s directory, creating that directory if needed.
    /// The copy uses `copy_file_range`, so reflink-capable file systems share extents; it is
    /// never a hard link, so editing `dest` cannot change the CAS. Returns `false` when the blob
    /// is missing or corrupt (a corrupt blob is deleted).
    pub fn materialize(&self, digest: &Digest, dest: &Path, executable: bool) -> Result<bool> {
        let mode = if executable { 0o755 } else { 0o644 };
        self.copy_out(
            digest,
            dest,
            mode,
            fsutil::parent_dir(dest),
            CopyCheck::Hash,
        )
    }

    /// Like [`materialize`](Self::materialize), but writes the temp file in `staging` (created
    /// if needed; it must be on `dest`'s file system) rather than beside `dest`. A process killed
    /// mid-copy then leaves its temp file in `staging`, which the caller can empty, instead of
    /// among the outputs. `check` says how the copy is checked.
    pub fn materialize_staged(
        &self,
        digest: &Digest,
        dest: &Path,
        executable: bool,
        staging: &Path,
        check: CopyCheck,
    ) -> Result<bool> {
        let mode = if executable { 0o755 } else { 0o644 };
        self.copy_out(digest, dest, mode, &fsutil::spread(staging), check)
    }

    /// Puts a verified blob into a sandbox staging directory at `dest`. A non-executable blob
    /// is hard-linked (falling back to a copy across devices), which is safe only because the
    /// sandbox mounts its inputs read-only; an executable one is copied with mode 0555, since
    /// the shared blob inode is 0444. Returns `false` when the blob is missing or corrupt.
    pub fn link_for_sandbox(&self, digest: &Digest, dest: &Path, executable: bool) -> Result<bool> {
        if executable {
            return self.copy_out(
                digest,
                dest,
                0o555,
                fsutil::parent_dir(dest),
                CopyCheck::Hash,
            );
        }
        let src = self.blob_path(digest);
        match Digest::of_file(digest.function, &src) {
            Ok(actual) if actual == *digest => {}
            // Intact, but not of the size asked for: a plain miss (see `wrong_length`).
            Ok(actual) if actual.hash == digest.hash => return Ok(false),
            Ok(_) => {
                self.discard_corrupt(digest, &src);
                return Ok(false);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.note_gone(Kind::Blob, digest);
                return Ok(false);
            }
            Err(e) => return Err(CacheError::io(&src)(e)),
        }
        let parent = fsutil::parent_dir(dest);
        fs::create_dir_all(parent).map_err(CacheError::io(parent))?;
        match fs::hard_link(&src, dest) {
            Ok(()) => {
                self.note_used(Kind::Blob, digest, digest.size);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && !src.exists() => {
                self.note_gone(Kind::Blob, digest);
                Ok(false)
            }
            Err(e)
                if e.kind() == io::ErrorKind::CrossesDevices
                    || e.raw_os_error() == Some(libc::EMLINK)
                    || e.raw_os_error() == Some(libc::EPERM) =>
            {
                self.copy_out(
                    digest,
                    dest,
                    BLOB_MODE,
                    fsutil::parent_dir(dest),
                    CopyCheck::Hash,
                )
            }
            Err(e) => Err(CacheError::io(dest)(e)),
        }
    }

    /// Copies a blob to a temp file in `temp_dir` (on `dest`'s file system), verifies the copy,
    /// sets `mode`, renames it to `dest`.
    fn copy_out(
        &self,
        digest: &Digest,
        dest: &Path,
        mode: u32,
        temp_dir: &Path,
        check: CopyCheck,
    ) -> Result<bool> {
        let src = self.blob_path(digest);
        if !src.exists() {
            self.note_gone(Kind::Blob, digest);
            return Ok(false);
        }
        let parent = fsutil::parent_dir(dest);
        fs::create_dir_all(parent).map_err(CacheError::io(parent))?;
        let (tmp, mut file) = TempFile::create_in(temp_dir).map_err(CacheError::io(temp_dir))?;
        // Into the file just created, not through `fs::copy`, which opens it again with
        // O_TRUNC: ext4 then flushes a truncated file's data when it is closed
        // (`auto_da_alloc`), starting a write of every output as soon as it is copied.
        let length = match File::open(&src).and_then(|mut from| io::copy(&mut from, &mut file)) {
            Ok(length) => length,
            Err(e) => {
                if e.kind() == io::ErrorKind::NotFound && !src.exists() {
                    // Evicted by another process since the check above.
                    self.note_gone(Kind::Blob, digest);
                    return Ok(false);
                }
                return Err(CacheError::io(dest)(e));
            }
        };
        drop(file);
        // Hash what the caller will actually get, not the source (unless the caller hashed the
        // source in this process and the copy has its length).
        let copied = if check == CopyCheck::Length && length == digest.size {
            *digest
        } else {
            Digest::of_file(digest.function, tmp.path()).map_err(CacheError::io(dest))?
        };
        if copied != *digest {
            // The copy is dropped with `tmp`; an intact source of another size stays.
            if copied.hash != digest.hash {
                self.discard_corrupt(digest, &src);
            }
            return Ok(false);
        }
        fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(mode),
        )
        .map_err(CacheError::io(dest))?;
        tmp.persist(dest).map_err(CacheError::io(dest))?;
        self.note_used(Kind::Blob, digest, digest.size);
        Ok(true)
    }
}

/// How a copy out of the store into `kiln-out/` is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyCheck {
    /// The copy is hashed: what the caller gets is what the digest names.
    Hash,
    /// Only its length is compared (a copy of another length is hashed after all), for a blob
    /// the caller put into the store in this process from bytes it hashed (an action's new
    /// output, copied in while hashed or moved in right after): a relinked binary is then read
    /// once less on its way out.
    Length,
}

/// What a blob's file says about a digest.
enum Presence {
    /// A file of the digest's size.
    Present,
    /// A file of another length.
    OtherLength(std::path::PathBuf),
    /// No file.
    Absent,
}

/// Sizes up to this are allocated as asked, without looking at the file first.
const TRUST_SIZE_UP_TO: u64 = 64 << 10;

/// Reads a file expected to hold `size` bytes, in one `read` when it does (no `stat`, no
/// second read to see the end): it asks for one byte more, so a longer file comes back longer.
/// The caller checks the bytes against their digest, which catches a shorter or changed file.
/// Asked sizes above [`TRUST_SIZE_UP_TO`] are checked against the file's length first (one
/// `fstat`), so that a request naming a stored hash with a huge size cannot make the caller
/// allocate it.
fn read_expecting(path: &Path, size: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = File::open(path)?;
    let bounded = if size > TRUST_SIZE_UP_TO {
        size.min(file.metadata()?.len())
    } else {
        size
    };
    let want = usize::try_from(bounded)
        .ok()
        .and_then(|s| s.checked_add(1))
        .ok_or_else(|| io::Error::other("blob too large to read into memory"))?;
    let mut bytes = vec![0; want];
    let mut filled = 0;
    while filled < want {
        match file.read(&mut bytes[filled..]) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                // A regular file returns less than asked only at its end.
                if filled == want - 1 {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    bytes.truncate(filled);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_expecting_returns_the_file_whatever_its_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        for (content, expected_size) in [
            (&b"exact"[..], 5),
            (b"longer than said", 5),
            (b"shor", 5),
            (b"", 0),
            (b"", 3),
        ] {
            fs::write(&path, content).unwrap();
            assert_eq!(
                read_expecting(&path, expected_size).unwrap(),
                &content[..content.len().min(expected_size as usize + 1)],
                "{content:?} read as {expected_size} bytes"
            );
        }
        let err = read_expecting(&dir.path().join("absent"), 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
