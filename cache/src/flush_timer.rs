//! A thread that writes the index's batched last-access records every [`FLUSH_INTERVAL`] while a
//! build runs, so that a worker thread answering a cache hit does not write them to SQLite itself
//! (a build of a few hundred hits used to flush three 512-row batches on its workers' path). The
//! verification memo keeps its own batching; workers still read it.
//!
//! Other processes see access times at most one interval old. A crash loses at most that
//! interval's records: access times (the LRU order is then a little older than it should be) and
//! the rows of blobs stored in it, which stay outside the size cap until `kiln cache gc`'s
//! [`LocalCache::rebuild_index`] finds their files, as with any crash before a flush.
//! A failed flush is reported as a cache warning (the engine prints them) and its records stay
//! pending for the next one.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::index::FLUSH_INTERVAL;
use crate::{CacheWarning, LocalCache};

/// Flushes its cache's access records on a timer until dropped; dropping it flushes once more and
/// returns flushing to the callers' path.
pub struct FlushTimer {
    cache: Arc<LocalCache>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FlushTimer {
    /// Starts flushing `cache` every [`FLUSH_INTERVAL`] on a thread of its own. Without a thread
    /// (the system refused one) the cache keeps flushing on its callers' path.
    pub fn start(cache: &Arc<LocalCache>) -> FlushTimer {
        Self::start_every(cache, FLUSH_INTERVAL)
    }

    /// [`start`](Self::start) with another interval.
    pub fn start_every(cache: &Arc<LocalCache>, interval: Duration) -> FlushTimer {
        let (stop, stopped) = mpsc::channel::<()>();
        let worker = Arc::clone(cache);
        let thread = std::thread::Builder::new()
            .name("kiln-cache-flush".into())
            .spawn(move || loop {
                match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => {
                        if let Err(e) = worker.flush() {
                            worker.warn(CacheWarning::Index(e.to_string()));
                        }
                    }
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
            })
            .ok();
        if thread.is_some() {
            cache.index.set_background_flush();
        }
        FlushTimer {
            cache: Arc::clone(cache),
            stop: Some(stop),
            thread,
        }
    }
}

impl Drop for FlushTimer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.cache.index.set_foreground_flush();
        if let Err(e) = self.cache.flush() {
            self.cache.warn(CacheWarning::Index(e.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CacheConfig, DigestFunction};

    fn pending(cache: &LocalCache) -> usize {
        cache.index.pending_len()
    }

    #[test]
    fn the_timer_flushes_on_its_own() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cache = Arc::new(
            LocalCache::open(dir.path(), CacheConfig::default()).unwrap_or_else(|e| panic!("{e}")),
        );
        let digest = cache
            .put_bytes(DigestFunction::Blake3, b"one")
            .unwrap_or_else(|e| panic!("{e}"));
        cache.flush().unwrap_or_else(|e| panic!("{e}"));
        let _timer = FlushTimer::start_every(&cache, Duration::from_millis(20));
        assert!(cache.contains(&digest));
        let waited = std::time::Instant::now();
        while pending(&cache) > 0 {
            assert!(
                waited.elapsed() < Duration::from_secs(60),
                "the timer never flushed"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn hits_leave_records_pending_until_the_timer_or_its_end_flushes_them() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cache = Arc::new(
            LocalCache::open(dir.path(), CacheConfig::default()).unwrap_or_else(|e| panic!("{e}")),
        );
        let blobs: Vec<_> = (0..crate::index::FLUSH_EVERY + 10)
            .map(|i| {
                cache
                    .put_bytes(DigestFunction::Blake3, format!("blob {i}").as_bytes())
                    .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        cache.flush().unwrap_or_else(|e| panic!("{e}"));
        // An interval the test cannot outlast, so only the end of the timer flushes.
        let timer = FlushTimer::start_every(&cache, Duration::from_secs(3600));
        for digest in &blobs {
            assert!(cache.contains(digest));
        }
        // More than a batch's worth of touches, and none was written on this thread.
        assert!(pending(&cache) > crate::index::FLUSH_EVERY);
        drop(timer);
        assert_eq!(pending(&cache), 0);
        // Back on the callers' path: a full batch flushes at once again.
        for digest in &blobs {
            assert!(cache.contains(digest));
        }
        assert!(pending(&cache) < crate::index::FLUSH_EVERY);
    }
}
