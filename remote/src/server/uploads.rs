//! Interrupted ByteStream uploads kept for resumption: a client whose stream broke may ask
//! `QueryWriteStatus` and continue from the committed offset with the same resource name.
//!
//! A kept upload is a [`BlobWriter`] (bytes in a temp file, invisible in the CAS) plus the bytes
//! received but not yet handed to it. Uploads left alone for [`KEEP_FOR`] are dropped, which
//! deletes their temp files.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kiln_cache::BlobWriter;

/// How long an interrupted upload waits to be resumed.
pub const KEEP_FOR: Duration = Duration::from_secs(600);
/// Most uploads kept at once; past it the oldest is dropped (each holds an open temp file).
pub const MAX_KEPT: usize = 64;
/// Most bytes kept uploads may hold in all; past it the oldest are dropped.
pub const MAX_KEPT_BYTES: u64 = 4 << 30;

/// Interrupted uploads by resource name.
#[derive(Default)]
pub struct Uploads {
    kept: Mutex<HashMap<String, Kept>>,
}

/// An interrupted upload.
pub struct Kept {
    /// When it was interrupted.
    pub at: Instant,
    /// The bytes written so far.
    pub writer: BlobWriter,
    /// Bytes received after those, not yet written.
    pub pending: Vec<u8>,
}

impl Kept {
    /// Bytes received in all.
    pub fn committed(&self) -> u64 {
        self.writer.written() + self.pending.len() as u64
    }
}

impl Uploads {
    /// Keeps an interrupted upload, dropping the ones nobody resumed in time and, past
    /// [`MAX_KEPT`] uploads or [`MAX_KEPT_BYTES`], the oldest.
    pub fn keep(&self, name: String, writer: BlobWriter, pending: Vec<u8>) {
        let mut kept = self.lock();
        kept.retain(|_, k| k.at.elapsed() < KEEP_FOR);
        let at = Instant::now();
        kept.insert(
            name,
            Kept {
                at,
                writer,
                pending,
            },
        );
        while kept.len() > MAX_KEPT
            || kept.values().map(Kept::committed).sum::<u64>() > MAX_KEPT_BYTES
        {
            let Some(oldest) = kept
                .iter()
                .min_by_key(|(_, k)| k.at)
                .map(|(n, _)| n.clone())
            else {
                break;
            };
            kept.remove(&oldest);
        }
    }

    /// Drops the uploads nobody resumed in time (run by the eviction task).
    pub fn expire(&self) {
        self.lock().retain(|_, k| k.at.elapsed() < KEEP_FOR);
    }

    /// Takes back the upload kept under `name`.
    pub fn take(&self, name: &str) -> Option<Kept> {
        self.lock().remove(name)
    }

    /// Bytes committed by the upload kept under `name`.
    pub fn committed(&self, name: &str) -> Option<u64> {
        self.lock().get(name).map(Kept::committed)
    }

    /// Drops every kept upload (at shutdown), deleting their temp files.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Kept>> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kiln_cache::{CacheConfig, Digest, DigestFunction, LocalCache};

    use super::*;

    #[test]
    fn kept_uploads_are_capped_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(LocalCache::open(dir.path(), CacheConfig::default()).unwrap());
        let uploads = Uploads::default();
        for i in 0..MAX_KEPT + 5 {
            let digest = Digest::of_bytes(DigestFunction::Sha256, format!("{i}").as_bytes());
            let writer = BlobWriter::new(cache.clone(), digest).unwrap();
            uploads.keep(format!("upload-{i}"), writer, vec![1, 2, 3]);
        }
        assert_eq!(uploads.lock().len(), MAX_KEPT);
        for i in 0..5 {
            assert_eq!(uploads.committed(&format!("upload-{i}")), None, "{i}");
        }
        assert_eq!(
            uploads.committed(&format!("upload-{}", MAX_KEPT + 4)),
            Some(3)
        );
        // Dropped uploads took their temp files with them.
        assert_eq!(kiln_cache::temp_file_count(dir.path()), MAX_KEPT);
    }
}
