//! Direct, verified access to a blob's file, for staging action inputs without copying them.

use std::io;
use std::path::PathBuf;

use crate::digest::Digest;
use crate::index::Kind;
use crate::local_cache::LocalCache;

impl LocalCache {
    /// Where the blob's file lives (it may be missing). Blob files are read-only (0444); callers
    /// must never write through this path.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.entry_path(Kind::Blob, digest)
    }

    /// Re-hashes the blob's file: true if it is present and intact. A corrupt blob is reported
    /// and deleted (so the caller's next step is to rebuild it); a missing one is a plain miss.
    pub fn verify(&self, digest: &Digest) -> bool {
        let path = self.entry_path(Kind::Blob, digest);
        match Digest::of_file(digest.function, &path) {
            Ok(actual) if actual == *digest => {
                self.note_used(Kind::Blob, digest, digest.size);
                true
            }
            Ok(_) => {
                self.discard_corrupt(Kind::Blob, digest, &path);
                false
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.note_gone(Kind::Blob, digest);
                false
            }
            Err(_) => false,
        }
    }
}
