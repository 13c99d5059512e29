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
    /// Keeps an interrupted upload, dropping the ones nobody resumed in time.
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
