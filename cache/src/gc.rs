//! Eviction: least recently used entries go first until the cache fits its target size, and
//! `rebuild_index` reconciles the index with the blob files and the action store.
//!
//! An entry is deleted only if its index row still has the last-access time it was selected
//! with, so an entry another process used meanwhile survives. A reader racing with eviction
//! either still has the file open (unlink keeps the bytes) or gets a miss, never an error.

use std::fs;
use std::io;
use std::time::SystemTime;

use crate::digest::{Digest, DigestFunction};
use crate::error::Result;
use crate::index::{Key, Kind, Row};
use crate::local_cache::LocalCache;

/// Rows examined per eviction transaction.
const BATCH: usize = 256;
/// [`LocalCache::enforce_cap`] shrinks to this fraction of the cap, so that it does not run
/// again at the end of every build.
const LOW_WATER_PERCENT: u64 = 90;

/// What a garbage collection did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GcStats {
    /// Entries (blobs and action results) removed from the index.
    pub removed: u64,
    /// Bytes those entries accounted for.
    pub freed_bytes: u64,
}

impl LocalCache {
    /// Evicts least-recently-used entries until the index total is at most `target_bytes`.
    pub fn gc(&self, target_bytes: u64) -> Result<GcStats> {
        // One collection at a time: each counts only what it frees itself, so two at once
        // would evict the excess twice.
        let _one_at_a_time = crate::db::lock(&self.collecting);
        let mut stats = GcStats::default();
        let mut total = self.index.totals()?.bytes;
        // Bounded: rows skipped because they were touched meanwhile move to the back.
        let mut rounds = 0;
        while total > target_bytes && rounds < 10_000 {
            rounds += 1;
            let candidates = self.index.oldest(BATCH)?;
            if candidates.is_empty() {
                break;
            }
            let mut chosen = Vec::new();
            let mut remaining = total;
            for row in candidates {
                if remaining <= target_bytes {
                    break;
                }
                remaining = remaining.saturating_sub(row.size);
                chosen.push(row);
            }
            let mut freed = 0;
            let removed = self.index.evict(&chosen, |row| {
                let digest = digest_of(row);
                match row.key.kind {
                    Kind::Blob => self.remove_blob_file(&digest),
                    Kind::Action => {
                        self.action_results.forget(&digest);
                        if let Err(e) = self.actions.delete(digest.function, &digest.hash) {
                            self.warn(crate::CacheWarning::Index(e.to_string()));
                        }
                        self.action_results.forget(&digest);
                    }
                }
                freed += row.size;
            })?;
            stats.removed += removed as u64;
            stats.freed_bytes += freed;
            total = total.saturating_sub(freed);
        }
        Ok(stats)
    }

    /// Deletes an evicted blob's file (already gone is fine).
    fn remove_blob_file(&self, digest: &Digest) {
        let path = self.blob_path(digest);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => self.warn(crate::CacheWarning::Index(format!(
                "could not remove `{}`: {e}",
                path.display()
            ))),
        }
    }

    /// Runs [`gc`](Self::gc) down to 90% of the configured cap if the total exceeds the cap.
    /// Call it at the end of a build.
    pub fn enforce_cap(&self) -> Result<GcStats> {
        let cap = self.config.max_size_bytes;
        if self.index.totals()?.bytes <= cap {
            return Ok(GcStats::default());
        }
        self.gc(cap / 100 * LOW_WATER_PERCENT)
    }

    /// Reconciles the index with the stores: adds rows for blob files and action-cache entries
    /// it lacks (e.g. written by a process killed before it flushed; last access = file mtime or
    /// the time the entry was stored) and drops rows whose entry is gone. Runs automatically when
    /// the index is new; `kiln cache gc` may call it too.
    pub fn rebuild_index(&self) -> Result<()> {
        let mut found = Vec::new();
        for function in DigestFunction::ALL {
            let dir = self.root.join("cas").join(function.name());
            scan_store(&dir, Kind::Blob, function, &mut found);
        }
        found.extend(self.actions.list()?.into_iter().map(|entry| Row {
            key: Key {
                kind: Kind::Action,
                function: entry.function,
                hash: entry.hash,
            },
            size: entry.size,
            last_access: entry.stored,
        }));
        self.index.insert_missing(&found)?;
        for key in self.index.all_keys()? {
            let digest = Digest {
                function: key.function,
                hash: key.hash,
                size: 0,
            };
            self.index
                .forget_if(key, || self.is_gone(key.kind, &digest))?;
        }
        self.index.flush()
    }
}

fn digest_of(row: &Row) -> Digest {
    Digest {
        function: row.key.function,
        hash: row.key.hash,
        size: row.size,
    }
}

/// Collects `<dir>/<2 hex>/<64 hex>` files; anything else is ignored.
fn scan_store(dir: &std::path::Path, kind: Kind, function: DigestFunction, out: &mut Vec<Row>) {
    let Ok(shards) = fs::read_dir(dir) else {
        return;
    };
    for shard in shards.flatten() {
        let Ok(files) = fs::read_dir(shard.path()) else {
            continue;
        };
        for file in files.flatten() {
            let name = file.file_name();
            let Some(Ok(digest)) = name.to_str().map(|hex| Digest::from_hex(function, hex, 0))
            else {
                continue;
            };
            let Ok(meta) = file.metadata() else {
                continue;
            };
            let last_access = meta
                .modified()
                .ok()
                .and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_micros() as i64);
            out.push(Row {
                key: Key {
                    kind,
                    function,
                    hash: digest.hash,
                },
                size: meta.len(),
                last_access,
            });
        }
    }
}
