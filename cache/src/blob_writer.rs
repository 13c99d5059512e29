//! [`BlobWriter`]: a blob streamed into the CAS piece by piece (a network upload), hashed as it
//! is written and made visible only if its digest is the one announced.
//!
//! Invariant: until [`BlobWriter::commit`] succeeds the bytes live only in a temp file under
//! `<root>/tmp`, which is removed when the writer is dropped; an interrupted or wrong upload
//! therefore leaves no blob behind.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

use crate::digest::{Digest, DigestWriter};
use crate::error::{CacheError, Result};
use crate::fsutil::{self, TempFile};
use crate::index::Kind;
use crate::local_cache::LocalCache;

/// An upload in progress. Implements [`io::Write`]; finish with [`commit`](Self::commit).
pub struct BlobWriter {
    cache: Arc<LocalCache>,
    expected: Digest,
    tmp: TempFile,
    out: DigestWriter<BufWriter<File>>,
}

impl BlobWriter {
    /// Starts an upload of the blob `expected` into `cache`.
    pub fn new(cache: Arc<LocalCache>, expected: Digest) -> Result<BlobWriter> {
        let tmp_dir = cache.tmp_dir();
        let (tmp, file) = TempFile::create_in(&tmp_dir).map_err(CacheError::io(&tmp_dir))?;
        let out = DigestWriter::new(expected.function, BufWriter::with_capacity(1 << 20, file));
        Ok(BlobWriter {
            cache,
            expected,
            tmp,
            out,
        })
    }

    /// The digest this upload must match.
    pub fn expected(&self) -> &Digest {
        &self.expected
    }

    /// Bytes received so far.
    pub fn written(&self) -> u64 {
        self.out.bytes_written()
    }

    /// Verifies the bytes against the expected digest and, only if they match, installs the
    /// blob. On a mismatch nothing is stored and [`CacheError::DigestMismatch`] names both.
    pub fn commit(self) -> Result<Digest> {
        let BlobWriter {
            cache,
            expected,
            tmp,
            out,
        } = self;
        let path: PathBuf = tmp.path().to_path_buf();
        let (buffered, actual) = out.finish();
        let file = buffered
            .into_inner()
            .map_err(|e| CacheError::io(&path)(e.into_error()))?;
        if actual != expected {
            return Err(CacheError::DigestMismatch {
                path,
                expected,
                actual,
            });
        }
        let dest = cache.blob_path(&actual);
        if !fsutil::is_file_of_size(&dest, actual.size) {
            cache.install_blob(tmp, file, &dest)?;
        }
        cache.note_used(Kind::Blob, &actual, actual.size);
        Ok(actual)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Refuse to grow past the announced size: the upload is wrong already.
        if self.out.bytes_written() + buf.len() as u64 > self.expected.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "more than the {} bytes announced for `{}`",
                    self.expected.size, self.expected
                ),
            ));
        }
        self.out.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl LocalCache {
    /// Stores `bytes` if their digest is `expected`; otherwise stores nothing and fails with
    /// [`CacheError::DigestMismatch`]. Hashes once.
    pub fn put_bytes_expecting(&self, expected: &Digest, bytes: &[u8]) -> Result<()> {
        let actual = Digest::of_bytes(expected.function, bytes);
        if actual != *expected {
            return Err(CacheError::DigestMismatch {
                path: PathBuf::from("<upload>"),
                expected: *expected,
                actual,
            });
        }
        self.put_bytes(expected.function, bytes).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CacheConfig, DigestFunction};

    fn cache() -> (tempfile::TempDir, Arc<LocalCache>) {
        let dir = tempfile::tempdir().unwrap();
        let cache = LocalCache::open(dir.path(), CacheConfig::default()).unwrap();
        (dir, Arc::new(cache))
    }

    fn tmp_files(cache: &LocalCache) -> usize {
        let subdirs = std::fs::read_dir(cache.tmp_root()).unwrap().flatten();
        subdirs
            .map(|dir| std::fs::read_dir(dir.path()).unwrap().count())
            .sum()
    }

    #[test]
    fn a_matching_upload_becomes_visible_only_on_commit() {
        let (_dir, cache) = cache();
        let digest = Digest::of_bytes(DigestFunction::Sha256, b"hello world");
        let mut w = BlobWriter::new(cache.clone(), digest).unwrap();
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        assert!(!cache.contains(&digest));
        assert_eq!(w.commit().unwrap(), digest);
        assert_eq!(cache.read(&digest).unwrap().unwrap(), b"hello world");
        assert_eq!(tmp_files(&cache), 0);
    }

    #[test]
    fn a_wrong_or_dropped_upload_stores_nothing() {
        let (_dir, cache) = cache();
        let digest = Digest::of_bytes(DigestFunction::Blake3, b"right");
        let mut w = BlobWriter::new(cache.clone(), digest).unwrap();
        w.write_all(b"wrong").unwrap();
        assert!(matches!(w.commit(), Err(CacheError::DigestMismatch { .. })));
        let mut w = BlobWriter::new(cache.clone(), digest).unwrap();
        assert!(w.write_all(b"far too long").is_err());
        w.write_all(b"ri").unwrap();
        drop(w);
        assert!(!cache.contains(&digest));
        assert_eq!(tmp_files(&cache), 0);
        assert!(cache.put_bytes_expecting(&digest, b"wrong").is_err());
        assert!(!cache.contains(&digest));
        cache.put_bytes_expecting(&digest, b"right").unwrap();
        assert!(cache.contains(&digest));
    }
}
