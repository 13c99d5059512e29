//! [`BlobReader`]: a stored blob read piece by piece (a network download), hashed as it is read,
//! so a server can stream a large blob without first reading it whole.
//!
//! Invariant: the reader hands out bytes before they are verified; only [`BlobReader::finish`]
//! says whether they were the blob. A caller that passes them on must withhold its last piece
//! until `finish` returns true, so a corrupt blob never reaches anyone complete. A blob that
//! fails is deleted and reported, as [`LocalCache::read`] does.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::digest::{read_full, Digest, Hasher};
use crate::error::{CacheError, Result};
use crate::index::Kind;
use crate::local_cache::LocalCache;

/// A blob being read. Dropping it unfinished is harmless.
pub struct BlobReader {
    cache: Arc<LocalCache>,
    digest: Digest,
    path: PathBuf,
    file: File,
    hasher: Hasher,
}

impl BlobReader {
    /// Opens the blob `digest`. `Ok(None)` when it is missing, or when its file has the wrong
    /// size (then it is corrupt: deleted and reported).
    pub fn open(cache: Arc<LocalCache>, digest: Digest) -> Result<Option<BlobReader>> {
        let path = cache.entry_path(Kind::Blob, &digest);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                cache.note_gone(Kind::Blob, &digest);
                return Ok(None);
            }
            Err(e) => return Err(CacheError::io(&path)(e)),
        };
        let len = file.metadata().map_err(CacheError::io(&path))?.len();
        if len != digest.size {
            cache.discard_corrupt(Kind::Blob, &digest, &path);
            return Ok(None);
        }
        Ok(Some(BlobReader {
            hasher: Hasher::new(digest.function),
            cache,
            digest,
            path,
            file,
        }))
    }

    /// The blob being read.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Bytes read (and hashed) so far.
    pub fn position(&self) -> u64 {
        self.hasher.size
    }

    /// Fills `buf` from the blob as far as it goes (unverified bytes); 0 at the end.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        let n = read_full(&mut self.file, buf).map_err(CacheError::io(&self.path))?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    /// Hashes whatever is left and checks the whole content against the digest: true when
    /// every byte read was the blob's. On a mismatch the blob is deleted and reported.
    pub fn finish(mut self) -> Result<bool> {
        let mut rest = vec![0u8; 64 << 10];
        while self.read(&mut rest)? > 0 {}
        let BlobReader {
            cache,
            digest,
            path,
            hasher,
            ..
        } = self;
        if hasher.finish() == digest {
            cache.note_used(Kind::Blob, &digest, digest.size);
            Ok(true)
        } else {
            cache.discard_corrupt(Kind::Blob, &digest, &path);
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CacheConfig, DigestFunction};
    use std::os::unix::fs::PermissionsExt;

    fn cache() -> (tempfile::TempDir, Arc<LocalCache>) {
        let dir = tempfile::tempdir().unwrap();
        let cache = LocalCache::open(dir.path(), CacheConfig::default()).unwrap();
        (dir, Arc::new(cache))
    }

    fn read_all(mut reader: BlobReader) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let mut buf = [0u8; 3];
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        (out, reader.finish().unwrap())
    }

    #[test]
    fn an_intact_blob_reads_back_and_verifies() {
        let (_dir, cache) = cache();
        let digest = cache
            .put_bytes(DigestFunction::Sha256, b"hello world")
            .unwrap();
        let reader = BlobReader::open(cache.clone(), digest).unwrap().unwrap();
        assert_eq!(read_all(reader), (b"hello world".to_vec(), true));
        // Stopping early still verifies the whole blob.
        let mut reader = BlobReader::open(cache.clone(), digest).unwrap().unwrap();
        reader.read(&mut [0u8; 4]).unwrap();
        assert!(reader.finish().unwrap());
        assert!(cache.contains(&digest));
    }

    #[test]
    fn a_corrupt_blob_fails_finish_and_is_removed() {
        let (_dir, cache) = cache();
        let digest = cache
            .put_bytes(DigestFunction::Blake3, b"hello world")
            .unwrap();
        let path = cache.blob_path(&digest);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&path, b"HELLO world").unwrap();
        let reader = BlobReader::open(cache.clone(), digest).unwrap().unwrap();
        assert_eq!(read_all(reader), (b"HELLO world".to_vec(), false));
        assert!(!path.exists());
        assert_eq!(cache.corrupt_count(), 1);

        // A file of the wrong size is refused at open.
        let digest = cache.put_bytes(DigestFunction::Blake3, b"abc").unwrap();
        let path = cache.blob_path(&digest);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&path, b"abcd").unwrap();
        assert!(BlobReader::open(cache.clone(), digest).unwrap().is_none());
        assert!(!path.exists());
        let gone = Digest::of_bytes(DigestFunction::Blake3, b"never stored");
        assert!(BlobReader::open(cache, gone).unwrap().is_none());
    }
}
