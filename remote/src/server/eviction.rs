//! The eviction task: keeps the cache under its size cap while serving. It runs after every
//! slice of writes (a twentieth of the cap) and at least once a second while writes arrive,
//! evicting least-recently-used entries down to 90% of the cap; it also flushes the batched
//! last-access records to SQLite, so reads cost no database write on the request path.

use std::time::Duration;

use super::store::Store;

/// Longest wait between two checks while there are writes.
const PERIOD: Duration = Duration::from_secs(1);

/// Runs until the server stops.
pub async fn run(store: Store) {
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                _ = store.eviction_wanted() => {}
                _ = tokio::time::sleep(PERIOD) => {}
            }
        }
        store.uploads.expire();
        let written = store.take_written();
        // Sizing the cache is a query over the whole index: only after writes (and once at
        // start-up, for the gauge).
        if written == 0 && !std::mem::take(&mut first) {
            let _ = store.blocking(|cache| cache.flush()).await;
            store.log_cache_warnings();
            continue;
        }
        let metrics = store.metrics.clone();
        let result = store
            .blocking(move |cache| {
                let gc = if written > 0 {
                    cache.enforce_cap()?
                } else {
                    Default::default()
                };
                cache.flush()?;
                let size = cache.stats()?.bytes;
                Ok::<_, kiln_cache::CacheError>((gc, size))
            })
            .await;
        match result {
            Ok(Ok((gc, size))) => {
                if gc.removed > 0 {
                    tracing::info!(
                        removed = gc.removed,
                        freed_bytes = gc.freed_bytes,
                        size_bytes = size,
                        "evicted least recently used entries"
                    );
                }
                metrics.evictions.inc_by(gc.removed);
                metrics.evicted_bytes.inc_by(gc.freed_bytes);
                metrics.size_bytes.set(size as i64);
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "eviction failed"),
            Err(e) => tracing::warn!(error = %e, "eviction task failed"),
        }
        store.log_cache_warnings();
    }
}
