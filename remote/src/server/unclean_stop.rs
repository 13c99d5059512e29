//! Whether the previous server on a directory stopped without flushing its index (SIGKILL, a
//! crash, power loss), and the repair when it did.
//!
//! While a server runs, `<dir>/serving` exists; a clean stop removes it after the final flush.
//! Found at start-up, it means the last second or so of access records (batched in memory) were
//! lost: blobs stored then have files but no index row, so they would never count against the
//! cap nor be evicted. The index is then reconciled with the files
//! ([`kiln_cache::LocalCache::rebuild_index`]) on a blocking thread while the server serves, and
//! the cap enforced; start-up itself still reads no directory.

use std::fs;
use std::path::Path;

use tokio::task::JoinHandle;

use super::store::Store;

/// The file that exists while a server runs on the directory.
const MARKER: &str = "serving";

/// Marks `dir` as served; if a previous server left the mark, reconciles the index in the
/// background, and returns that repair's task.
pub(super) fn recover_if_needed(dir: &Path, store: &Store) -> Option<JoinHandle<()>> {
    let marker = dir.join(MARKER);
    let unclean = marker.exists();
    if let Err(e) = fs::write(&marker, std::process::id().to_string()) {
        tracing::warn!(error = %e, path = %marker.display(), "cannot mark the directory as served");
    }
    if !unclean {
        return None;
    }
    tracing::warn!(
        "the previous server on this directory did not stop cleanly; reconciling the index \
         with the files in the background"
    );
    let store = store.clone();
    Some(tokio::task::spawn_blocking(move || {
        let repaired = store.cache.rebuild_index().and_then(|()| {
            let gc = store.cache.enforce_cap()?;
            store.cache.flush()?;
            Ok((gc, store.cache.stats()?.bytes))
        });
        match repaired {
            Ok((gc, size)) => {
                store.metrics.evictions.inc_by(gc.removed);
                store.metrics.evicted_bytes.inc_by(gc.freed_bytes);
                store.metrics.size_bytes.set(size as i64);
                tracing::info!(size_bytes = size, evicted = gc.removed, "index reconciled");
            }
            Err(e) => tracing::warn!(error = %e, "reconciling the index failed"),
        }
    }))
}

/// Removes the mark after a clean stop (the index is flushed), unless a repair is still under
/// way: then the next start repeats it.
pub(super) fn mark_clean(dir: &Path, repair: Option<&JoinHandle<()>>) {
    if repair.is_some_and(|r| !r.is_finished()) {
        tracing::warn!("stopping before the index was reconciled; the next start repeats it");
        return;
    }
    let _ = fs::remove_file(dir.join(MARKER));
}
