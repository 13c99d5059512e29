//! Direct, verified access to a blob's file, for staging action inputs without copying them.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::SystemTime;

use crate::digest::Digest;
use crate::file_memo::FileStat;
use crate::index::Kind;
use crate::local_cache::LocalCache;

impl LocalCache {
    /// Where the blob's file lives (it may be missing). Blob files are read-only (0444); callers
    /// must never write through this path.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root
            .join("cas")
            .join(digest.function.name())
            .join(&hex[..2])
            .join(hex)
    }

    /// Checks the blob's file: true if it is present and intact. It is hashed unless it hashed
    /// to its name within the last hour and its metadata has not changed since (see
    /// `verification_memo`). A corrupt blob is reported and deleted (so the caller's next step is
    /// to rebuild it); a missing one is a plain miss.
    pub fn verify(&self, digest: &Digest) -> bool {
        let path = self.blob_path(digest);
        let stat = match fs::metadata(&path) {
            Ok(meta) => FileStat::from_metadata(&meta),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.note_gone(Kind::Blob, digest);
                return false;
            }
            Err(_) => return false,
        };
        if stat.size != digest.size {
            self.wrong_length(digest, &path);
            return false;
        }
        if self.verifications.vouches_for(digest, &stat) {
            self.note_used(Kind::Blob, digest, digest.size);
            return true;
        }
        let hashed_at = SystemTime::now();
        match Digest::of_file(digest.function, &path) {
            Ok(actual) if actual == *digest => {
                self.verifications.record(*digest, stat, hashed_at);
                self.note_used(Kind::Blob, digest, digest.size);
                true
            }
            Ok(_) => {
                self.discard_corrupt(digest, &path);
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
