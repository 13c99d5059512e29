//! [`Store`]: what every service shares — the cache, the metrics, the auth rules, the uploads in
//! progress and the eviction trigger — plus the bridge from async handlers to the cache's
//! blocking file I/O: small work runs [`inline`](Store::inline) on the async thread (a hand-off
//! to a blocking thread costs more than a stat or a 4 KiB read from the page cache), large work
//! on a [`blocking`](Store::blocking) thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use kiln_cache::{Digest, LocalCache, VerifiedBlobs};
use std::time::Duration;

use tokio::sync::{watch, Notify, Semaphore};
use tonic::metadata::MetadataMap;
use tonic::Status;

use super::auth::{Access, Auth};
use super::metrics::Metrics;
use super::uploads::Uploads;

/// Work up to this many bytes of blob content runs inline on the async thread.
pub const INLINE_BYTES: u64 = 256 << 10;
/// Work over up to this many digests (a stat and an index touch each) runs inline.
pub const INLINE_DIGESTS: usize = 256;

/// Bounds on large (streamed) reads, each of which holds a blocking thread while it runs.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// Streamed reads running at once; more wait for a slot without holding a thread, so
    /// stalled readers cannot take the threads uploads need.
    pub max_streamed: usize,
    /// How long a streamed read waits for the client to take its next piece before it gives
    /// up: a client that stopped reading (or a peer that vanished) frees its slot.
    pub stall_limit: Duration,
}

impl Default for ReadLimits {
    /// 128 streamed reads at once, 60 s for the client to take each piece.
    fn default() -> Self {
        ReadLimits {
            max_streamed: 128,
            stall_limit: Duration::from_secs(60),
        }
    }
}

/// The most bytes of `Directory` or `Tree` messages one call reads into memory: a GetTree walk
/// in all, or one output directory's `Tree` for an action-cache hit.
pub const MAX_TREE_BYTES: u64 = 64 << 20;

/// Shared server state. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// The storage, shared with the local cache's code and layout.
    pub cache: Arc<LocalCache>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    auth: Arc<Auth>,
    /// Interrupted uploads that a client may resume.
    pub uploads: Arc<Uploads>,
    /// Large blobs recently hashed right on a read, served again without re-hashing.
    pub verified: Arc<VerifiedBlobs>,
    written: Arc<AtomicU64>,
    evict_now: Arc<Notify>,
    /// Set when the shutdown grace period is over: uploads still running give up.
    grace_over: Arc<watch::Sender<bool>>,
    /// Slots for streamed reads ([`ReadLimits::max_streamed`]).
    pub read_slots: Arc<Semaphore>,
    /// How long a streamed read waits on a client that takes nothing.
    pub read_stall_limit: Duration,
}

impl Store {
    /// State over an opened cache.
    pub fn new(
        cache: Arc<LocalCache>,
        auth: Auth,
        metrics: Arc<Metrics>,
        verified: VerifiedBlobs,
        read_limits: ReadLimits,
    ) -> Store {
        Store {
            cache,
            metrics,
            auth: Arc::new(auth),
            uploads: Arc::new(Uploads::default()),
            verified: Arc::new(verified),
            written: Arc::new(AtomicU64::new(0)),
            evict_now: Arc::new(Notify::new()),
            grace_over: Arc::new(watch::Sender::new(false)),
            read_slots: Arc::new(Semaphore::new(read_limits.max_streamed.max(1))),
            read_stall_limit: read_limits.stall_limit,
        }
    }

    /// Tells uploads still running that the shutdown grace period is over.
    pub fn end_grace(&self) {
        self.grace_over.send_replace(true);
    }

    /// Completes once [`end_grace`](Store::end_grace) has been called.
    pub async fn grace_ended(&self) {
        let mut over = self.grace_over.subscribe();
        let _ = over.wait_for(|over| *over).await;
    }

    /// Checks the caller's rights.
    pub fn authorize(&self, metadata: &MetadataMap, needed: Access) -> Result<(), Status> {
        self.auth.check(metadata, needed)
    }

    /// Runs small cache work right here: the caller bounds it by [`INLINE_BYTES`] of content and
    /// [`INLINE_DIGESTS`] files. Index touches never write SQLite here (the cache flushes in the
    /// background, see `eviction`).
    pub fn inline<T>(&self, work: impl FnOnce(&LocalCache) -> T) -> T {
        work(&self.cache)
    }

    /// Runs `work` inline when `small`, else on a blocking thread.
    pub async fn run<T, F>(&self, small: bool, work: F) -> Result<T, Status>
    where
        F: FnOnce(&LocalCache) -> T + Send + 'static,
        T: Send + 'static,
    {
        if small {
            Ok(self.inline(work))
        } else {
            self.blocking(work).await
        }
    }

    /// Runs blocking cache work off the async threads.
    pub async fn blocking<T, F>(&self, work: F) -> Result<T, Status>
    where
        F: FnOnce(&LocalCache) -> T + Send + 'static,
        T: Send + 'static,
    {
        let cache = self.cache.clone();
        tokio::task::spawn_blocking(move || work(&cache))
            .await
            .map_err(|e| Status::internal(format!("Cache task failed: {e}")))
    }

    /// Whether a blob is present (the empty blob always is); refreshes it for eviction.
    pub fn has_blob(cache: &LocalCache, digest: &Digest) -> bool {
        *digest == Digest::empty(digest.function) || cache.contains_as_asked(digest)
    }

    /// Reads a verified blob; `None` when missing or corrupt. The empty blob is always there.
    pub fn read_blob(cache: &LocalCache, digest: &Digest) -> Result<Option<Vec<u8>>, Status> {
        if digest.size == 0 {
            return Ok((digest == &Digest::empty(digest.function)).then(Vec::new));
        }
        match cache.read(digest) {
            Ok(found) => Ok(found),
            Err(e) => {
                tracing::warn!(error = %e, %digest, "cache read failed; answering a miss");
                Ok(None)
            }
        }
    }

    /// A blob read into memory to decode (a `Directory` or `Tree`): one larger than `limit`
    /// is refused before anything is read.
    pub fn read_blob_up_to(
        cache: &LocalCache,
        digest: &Digest,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, Status> {
        if digest.size > limit {
            return Err(Status::invalid_argument(format!(
                "`{digest}` is larger than the server decodes ({limit} bytes)"
            )));
        }
        Self::read_blob(cache, digest)
    }

    /// Notes `bytes` newly stored; wakes the evictor once a slice of the cap has been written.
    pub fn note_written(&self, bytes: u64) {
        self.metrics.bytes_in.inc_by(bytes);
        let total = self.written.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if total >= self.cache.config().max_size_bytes / 20 {
            self.evict_now.notify_one();
        }
    }

    /// Bytes written since the last eviction check, resetting the count.
    pub(crate) fn take_written(&self) -> u64 {
        self.written.swap(0, Ordering::Relaxed)
    }

    /// Waits until writes ask for an eviction check.
    pub(crate) async fn eviction_wanted(&self) {
        self.evict_now.notified().await
    }

    /// Logs what the cache repaired on its own (corrupt blobs, index trouble).
    pub fn log_cache_warnings(&self) {
        for warning in self.cache.take_warnings() {
            tracing::warn!(%warning, "cache repaired an entry");
        }
    }
}
