//! [`BlobReader`]: a stored blob read piece by piece (a network download), hashed as it is read,
//! so a server can stream a large blob without first reading it whole.
//!
//! Invariant: the reader hands out bytes before they are verified; only [`BlobReader::finish`]
//! says whether they were the blob. A caller that passes them on must withhold its last piece
//! until `finish` returns true, so a corrupt blob never reaches anyone complete. A blob that
//! fails is deleted and reported, as [`LocalCache::read`] does. With a [`VerifiedBlobs`] memo,
//! a blob whose file it vouches for is not hashed (`finish` is then true at once), and a blob
//! hashed right is recorded in it.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::digest::{read_full, Digest, Hasher};
use crate::error::{CacheError, Result};
use crate::file_memo::FileStat;
use crate::index::Kind;
use crate::local_cache::LocalCache;
use crate::verified_blobs::VerifiedBlobs;

/// A blob being read. Dropping it unfinished is harmless.
pub struct BlobReader {
    cache: Arc<LocalCache>,
    digest: Digest,
    path: PathBuf,
    file: File,
    position: u64,
    check: Check,
}

/// How the content read is checked.
enum Check {
    /// The memo vouched for the file with this stat: nothing to hash, but the file must still
    /// have it when the read ends (a CAS file changed in place is corrupt).
    Vouched(FileStat),
    /// Hashed as it is read; recorded in the memo (if any) when it proves right.
    Hashing { hasher: Hasher, memo: Option<Memo> },
}

/// Where and with what to record a successful hash.
struct Memo {
    verified: Arc<VerifiedBlobs>,
    stat: FileStat,
    hashed_at: SystemTime,
    hashed_at_instant: Instant,
}

impl BlobReader {
    /// Opens the blob `digest`. `Ok(None)` when it is missing, or when its file has the wrong
    /// size (then it is corrupt: deleted and reported).
    pub fn open(cache: Arc<LocalCache>, digest: Digest) -> Result<Option<BlobReader>> {
        BlobReader::open_with(cache, digest, None)
    }

    /// [`open`](BlobReader::open), skipping the hash when `verified` vouches for the blob's
    /// file and recording a hash that proves right in it.
    pub fn open_with(
        cache: Arc<LocalCache>,
        digest: Digest,
        verified: Option<Arc<VerifiedBlobs>>,
    ) -> Result<Option<BlobReader>> {
        let path = cache.blob_path(&digest);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                cache.note_gone(Kind::Blob, &digest);
                return Ok(None);
            }
            Err(e) => return Err(CacheError::io(&path)(e)),
        };
        let hashed_at = SystemTime::now();
        let hashed_at_instant = Instant::now();
        let meta = file.metadata().map_err(CacheError::io(&path))?;
        if meta.len() != digest.size {
            // A plain miss, the file left alone: files are named by hash only, so the asked size
            // may be what is wrong, and telling damage from that would mean hashing the whole
            // file here. A damaged file is replaced when the blob is stored again.
            if let Some(verified) = &verified {
                verified.forget(&digest);
            }
            return Ok(None);
        }
        let stat = FileStat::from_metadata(&meta);
        let check = match verified {
            Some(verified) if verified.vouches_for(&digest, &stat) => Check::Vouched(stat),
            memo => Check::Hashing {
                hasher: Hasher::new(digest.function),
                memo: memo.map(|verified| Memo {
                    verified,
                    stat,
                    hashed_at,
                    hashed_at_instant,
                }),
            },
        };
        Ok(Some(BlobReader {
            cache,
            digest,
            path,
            file,
            position: 0,
            check,
        }))
    }

    /// The blob being read.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Whether the memo vouched for this blob, so its content is not being hashed.
    pub fn vouched(&self) -> bool {
        matches!(self.check, Check::Vouched(_))
    }

    /// Bytes read so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Fills `buf` from the blob as far as it goes (unverified bytes); 0 at the end.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        let n = read_full(&mut self.file, buf).map_err(CacheError::io(&self.path))?;
        self.consumed(&buf[..n]);
        Ok(n)
    }

    /// Reads up to `max` bytes (fewer only at the end) into a new buffer, without first
    /// zeroing it; empty at the end.
    pub fn read_chunk(&mut self, max: usize) -> Result<Vec<u8>> {
        let mut chunk = Vec::with_capacity(max);
        (&mut self.file)
            .take(max as u64)
            .read_to_end(&mut chunk)
            .map_err(CacheError::io(&self.path))?;
        self.consumed(&chunk);
        Ok(chunk)
    }

    fn consumed(&mut self, bytes: &[u8]) {
        self.position += bytes.len() as u64;
        if let Check::Hashing { hasher, .. } = &mut self.check {
            hasher.update(bytes);
        }
    }

    /// Checks the whole content against the digest (hashing whatever is left unread): true
    /// when every byte read was the blob's. On a mismatch the blob is deleted and reported.
    /// A vouched-for read is false when the file changed while it was read (and the blob is
    /// deleted and reported as corrupt, unless it was evicted or replaced meanwhile).
    pub fn finish(mut self) -> Result<bool> {
        if let Check::Hashing { .. } = self.check {
            let mut rest = vec![0u8; 64 << 10];
            while self.read(&mut rest)? > 0 {}
        }
        let BlobReader {
            cache,
            digest,
            path,
            file,
            check,
            ..
        } = self;
        let memo = match check {
            Check::Vouched(stat) => {
                let now = file.metadata().map_err(CacheError::io(&path))?;
                if FileStat::from_metadata(&now) != stat {
                    // Unverified bytes went out: the caller must not complete the read. The
                    // file is corrupt if it is still the blob's; evicted or replaced, it is not.
                    let still_the_blob = std::fs::metadata(&path).is_ok_and(|at_path| {
                        at_path.dev() == now.dev() && at_path.ino() == now.ino()
                    });
                    if still_the_blob {
                        cache.discard_corrupt(&digest, &path);
                    }
                    return Ok(false);
                }
                None
            }
            Check::Hashing { hasher, memo } => {
                if hasher.finish() != digest {
                    if let Some(memo) = memo {
                        memo.verified.forget(&digest);
                    }
                    cache.discard_corrupt(&digest, &path);
                    return Ok(false);
                }
                memo
            }
        };
        if let Some(memo) = memo {
            memo.verified
                .record(digest, memo.stat, memo.hashed_at, memo.hashed_at_instant);
        }
        cache.note_used(Kind::Blob, &digest, digest.size);
        Ok(true)
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

        // A file of another length than asked is a miss at open, and is left alone (the size
        // asked for may be what is wrong); storing the blob again replaces a damaged one.
        let digest = cache.put_bytes(DigestFunction::Blake3, b"abc").unwrap();
        let path = cache.blob_path(&digest);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&path, b"abcd").unwrap();
        assert!(BlobReader::open(cache.clone(), digest).unwrap().is_none());
        assert!(path.exists());
        cache.put_bytes(DigestFunction::Blake3, b"abc").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"abc");
        let gone = Digest::of_bytes(DigestFunction::Blake3, b"never stored");
        assert!(BlobReader::open(cache, gone).unwrap().is_none());
    }

    /// Overwrites a (read-only) CAS file in place, as a stray writer would.
    fn rewrite_in_place(path: &std::path::Path, bytes: &[u8]) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// A cache holding `hello world` (SHA-256) and a memo that vouches for it.
    fn vouched_hello_world() -> (
        tempfile::TempDir,
        Arc<LocalCache>,
        Digest,
        Arc<VerifiedBlobs>,
    ) {
        let (dir, cache) = cache();
        let digest = cache
            .put_bytes(DigestFunction::Sha256, b"hello world")
            .unwrap();
        let memo = vouching_memo(&cache, &digest);
        (dir, cache, digest, memo)
    }

    /// A blob reader of `digest` with `memo`.
    fn open_with_memo(
        cache: &Arc<LocalCache>,
        digest: Digest,
        memo: &Arc<VerifiedBlobs>,
    ) -> BlobReader {
        BlobReader::open_with(cache.clone(), digest, Some(memo.clone()))
            .unwrap()
            .unwrap()
    }

    /// A memo that vouches for `digest`'s file as it is now, as if hashed 10 s after its
    /// last change (the racy-clean rule needs the hash to be well after it).
    fn vouching_memo(cache: &LocalCache, digest: &Digest) -> Arc<VerifiedBlobs> {
        let memo = Arc::new(VerifiedBlobs::new(std::time::Duration::from_secs(60)));
        let meta = std::fs::metadata(cache.blob_path(digest)).unwrap();
        let stat = FileStat::from_metadata(&meta);
        let later = SystemTime::UNIX_EPOCH
            + std::time::Duration::from_nanos(stat.ctime_ns.max(stat.mtime_ns) as u64)
            + std::time::Duration::from_secs(10);
        memo.record(*digest, stat, later, Instant::now());
        memo
    }

    #[test]
    fn a_memo_records_good_hashes_and_spares_vouched_blobs_the_hash() {
        let (_dir, cache) = cache();
        let digest = cache
            .put_bytes(DigestFunction::Sha256, b"hello world")
            .unwrap();
        let memo = Arc::new(VerifiedBlobs::new(std::time::Duration::from_secs(60)));
        // Never hashed: hashed now (how soon the memo trusts it is `VerifiedBlobs`' business).
        let reader = open_with_memo(&cache, digest, &memo);
        assert!(!reader.vouched());
        assert_eq!(read_all(reader), (b"hello world".to_vec(), true));

        let memo = vouching_memo(&cache, &digest);
        let mut reader = open_with_memo(&cache, digest, &memo);
        assert!(reader.vouched());
        assert_eq!(reader.read_chunk(5).unwrap(), b"hello");
        assert_eq!(reader.read_chunk(100).unwrap(), b" world");
        assert!(reader.read_chunk(100).unwrap().is_empty());
        assert_eq!(reader.position(), 11);
        assert!(reader.finish().unwrap());
        // Without the memo the same blob is hashed.
        assert!(!BlobReader::open(cache, digest).unwrap().unwrap().vouched());
    }

    #[test]
    fn a_blob_changed_in_place_is_hashed_again_and_caught() {
        let (_dir, cache, digest, memo) = vouched_hello_world();
        let path = cache.blob_path(&digest);
        rewrite_in_place(&path, b"HELLO world");
        let reader = open_with_memo(&cache, digest, &memo);
        assert!(!reader.vouched(), "its metadata changed");
        assert_eq!(read_all(reader), (b"HELLO world".to_vec(), false));
        assert!(!path.exists());
        assert_eq!(cache.corrupt_count(), 1);
    }

    #[test]
    fn a_vouched_blob_changed_while_read_is_not_completed() {
        let (_dir, cache, digest, memo) = vouched_hello_world();
        let path = cache.blob_path(&digest);
        let mut reader = open_with_memo(&cache, digest, &memo);
        assert!(reader.vouched());
        assert_eq!(reader.read_chunk(5).unwrap(), b"hello");
        rewrite_in_place(&path, b"hello WORLD");
        assert_eq!(reader.read_chunk(100).unwrap(), b" WORLD");
        assert!(!reader.finish().unwrap());
        assert!(!path.exists(), "a CAS file changed in place is corrupt");

        // Evicted (unlinked) while read: not completed, and nothing else is removed.
        let digest = cache.put_bytes(DigestFunction::Sha256, b"evicted").unwrap();
        let memo = vouching_memo(&cache, &digest);
        let reader = open_with_memo(&cache, digest, &memo);
        std::fs::remove_file(cache.blob_path(&digest)).unwrap();
        let replacement = cache.put_bytes(DigestFunction::Sha256, b"evicted").unwrap();
        assert!(!reader.finish().unwrap());
        assert!(cache.contains(&replacement), "the re-uploaded blob stays");
        assert_eq!(cache.corrupt_count(), 1);
    }
}
