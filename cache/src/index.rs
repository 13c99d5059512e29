//! The per-user SQLite index of CAS blobs and action-cache entries: size and last access,
//! for the size cap and LRU eviction.
//!
//! Internal module. The files are the truth and the index is advisory: a row whose file is gone
//! is a miss and is dropped lazily; a file without a row is found by `rebuild_index`. Accesses
//! are recorded in memory and written in one transaction every [`FLUSH_EVERY`] records, every
//! [`FLUSH_INTERVAL`], on `flush()` and on drop, so a cache hit costs no SQLite write. A
//! long-lived owner that flushes on its own timer (`kiln serve`, and a build's `FlushTimer` while
//! its scheduler runs) sets background flushing: then a record never writes SQLite on the caller's
//! path unless [`BACKGROUND_LIMIT`] records pile up.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use rusqlite::{params, Connection};

use crate::db;
use crate::digest::DigestFunction;
use crate::error::{CacheError, Result};

/// Pending records that trigger a flush.
pub(crate) const FLUSH_EVERY: usize = 512;
/// Age of the oldest pending record that triggers a flush on the next record.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_secs(2);
/// Pending records that force a flush on the caller's path even with background flushing (the
/// owner's timer has stalled; this bounds the memory the batch takes).
pub(crate) const BACKGROUND_LIMIT: usize = 1 << 16;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS entries (
    kind INTEGER NOT NULL,          -- 0 = CAS blob, 1 = action-cache entry
    function TEXT NOT NULL,         -- digest function name
    hash BLOB NOT NULL,             -- 32 bytes
    size INTEGER NOT NULL,          -- bytes on disk
    last_access INTEGER NOT NULL,   -- microseconds since the Unix epoch
    PRIMARY KEY (kind, function, hash)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_lru ON entries (last_access);
";

/// Which store an index row describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Blob = 0,
    Action = 1,
}

/// Identity of a stored file: store, digest function and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub kind: Kind,
    pub function: DigestFunction,
    pub hash: [u8; 32],
}

/// One index row, as read for eviction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Row {
    pub key: Key,
    pub size: u64,
    pub last_access: i64,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Touch { size: u64, at: i64 },
    Forget,
}

struct Pending {
    ops: HashMap<Key, Op>,
    since: Instant,
}

/// Totals over the index.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Totals {
    pub blobs: u64,
    pub ac_entries: u64,
    pub bytes: u64,
}

/// The SQLite index plus the in-memory batch of pending updates.
pub(crate) struct Index {
    path: PathBuf,
    conn: Mutex<Connection>,
    pending: Mutex<Pending>,
    clock: AtomicI64,
    background: AtomicBool,
}

impl Index {
    /// Opens the index at `path`; the flag tells whether the schema was just created.
    pub(crate) fn open(path: &Path) -> Result<(Index, bool)> {
        let (conn, fresh) = db::open(path, SCHEMA, 1)?;
        let index = Index {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            pending: Mutex::new(Pending {
                ops: HashMap::new(),
                since: Instant::now(),
            }),
            clock: AtomicI64::new(0),
            background: AtomicBool::new(false),
        };
        Ok((index, fresh))
    }

    /// A strictly increasing timestamp (µs since the epoch) so accesses within this process
    /// are ordered even inside one clock tick.
    pub(crate) fn now(&self) -> i64 {
        let wall = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        let mut prev = self.clock.load(Ordering::Relaxed);
        loop {
            let next = wall.max(prev + 1);
            match self
                .clock
                .compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(actual) => prev = actual,
            }
        }
    }

    /// Leaves flushing to the owner's timer (see the module doc).
    pub(crate) fn set_background_flush(&self) {
        self.background.store(true, Ordering::Relaxed);
    }

    /// Records waiting for the next flush.
    #[cfg(test)]
    pub(crate) fn pending_len(&self) -> usize {
        db::lock(&self.pending).ops.len()
    }

    /// Flushing returns to the callers' path (the owner's timer stopped).
    pub(crate) fn set_foreground_flush(&self) {
        self.background.store(false, Ordering::Relaxed);
    }

    /// Records that `key` (of `size` bytes) exists and was just used.
    pub(crate) fn touch(&self, key: Key, size: u64) -> Result<()> {
        let at = self.now();
        self.record(key, Op::Touch { size, at })
    }

    /// Records that `key`'s file is gone if `still_gone` says so, asked while no other record
    /// can be made: a writer that puts the file back records its use after renaming it, so
    /// either the check sees the file or that record comes later and wins. Without this, a
    /// reader's stale "gone" could override the writer's use, and the file would stay on
    /// disk with no row (never counted against the cap, never evicted).
    pub(crate) fn forget_if(&self, key: Key, still_gone: impl FnOnce() -> bool) -> Result<()> {
        let due = {
            let mut pending = db::lock(&self.pending);
            if !still_gone() {
                return Ok(());
            }
            if pending.ops.is_empty() {
                pending.since = Instant::now();
            }
            pending.ops.insert(key, Op::Forget);
            self.flush_due(&pending)
        };
        if due {
            self.flush()?;
        }
        Ok(())
    }

    /// Whether the pending records should be written now.
    fn flush_due(&self, pending: &Pending) -> bool {
        if self.background.load(Ordering::Relaxed) {
            pending.ops.len() >= BACKGROUND_LIMIT
        } else {
            pending.ops.len() >= FLUSH_EVERY || pending.since.elapsed() >= FLUSH_INTERVAL
        }
    }

    fn record(&self, key: Key, op: Op) -> Result<()> {
        let due = {
            let mut pending = db::lock(&self.pending);
            if pending.ops.is_empty() {
                pending.since = Instant::now();
            }
            pending.ops.insert(key, op);
            self.flush_due(&pending)
        };
        if due {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes all pending records in one transaction. On failure they stay pending.
    pub(crate) fn flush(&self) -> Result<()> {
        // The connection is taken before the records are, so flushes write in the order they
        // drained: otherwise a later record (a writer's use) could be committed before an
        // earlier one (a reader's "gone") and then be undone by it. Lock order: conn, pending.
        let mut conn = db::lock(&self.conn);
        let ops: Vec<(Key, Op)> = {
            let mut pending = db::lock(&self.pending);
            pending.ops.drain().collect()
        };
        if ops.is_empty() {
            return Ok(());
        }
        let result = self.write_ops(&mut conn, &ops);
        if result.is_err() {
            let mut pending = db::lock(&self.pending);
            for (key, op) in ops {
                pending.ops.entry(key).or_insert(op);
            }
        }
        result
    }

    fn write_ops(&self, conn: &mut rusqlite::Connection, ops: &[(Key, Op)]) -> Result<()> {
        let err = CacheError::sqlite(&self.path);
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&err)?;
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO entries (kind, function, hash, size, last_access)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (kind, function, hash) DO UPDATE SET
                       size = excluded.size,
                       last_access = max(last_access, excluded.last_access)",
                )
                .map_err(&err)?;
            let mut delete = tx
                .prepare_cached(
                    "DELETE FROM entries WHERE kind = ?1 AND function = ?2 AND hash = ?3",
                )
                .map_err(&err)?;
            for (key, op) in ops {
                let (kind, function, hash) = (key.kind as i64, key.function.name(), &key.hash[..]);
                match *op {
                    Op::Touch { size, at } => {
                        upsert.execute(params![kind, function, hash, size as i64, at])
                    }
                    Op::Forget => delete.execute(params![kind, function, hash]),
                }
                .map_err(&err)?;
            }
        }
        tx.commit().map_err(&err)
    }

    /// Counts and sizes over all rows (after flushing).
    pub(crate) fn totals(&self) -> Result<Totals> {
        self.flush()?;
        let conn = db::lock(&self.conn);
        conn.query_row(
            "SELECT
               COALESCE(SUM(kind = 0), 0),
               COALESCE(SUM(kind = 1), 0),
               COALESCE(SUM(size), 0)
             FROM entries",
            [],
            |row| {
                Ok(Totals {
                    blobs: row.get::<_, i64>(0)? as u64,
                    ac_entries: row.get::<_, i64>(1)? as u64,
                    bytes: row.get::<_, i64>(2)? as u64,
                })
            },
        )
        .map_err(CacheError::sqlite(&self.path))
    }

    /// The `limit` least recently used rows, oldest first.
    pub(crate) fn oldest(&self, limit: usize) -> Result<Vec<Row>> {
        let err = CacheError::sqlite(&self.path);
        let conn = db::lock(&self.conn);
        let mut stmt = conn
            .prepare_cached(
                "SELECT kind, function, hash, size, last_access FROM entries
                 ORDER BY last_access LIMIT ?1",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map([limit as i64], decode_row)
            .map_err(&err)?
            .collect::<rusqlite::Result<Vec<Option<Row>>>>()
            .map_err(&err)?;
        Ok(rows.into_iter().flatten().collect())
    }

    /// Deletes each row that still has the `last_access` it was read with (i.e. nobody used it
    /// since), calling `remove_file` for it inside the same transaction, so a concurrently
    /// touched entry survives. Returns the rows deleted.
    pub(crate) fn evict(&self, rows: &[Row], mut remove_file: impl FnMut(&Row)) -> Result<usize> {
        let err = CacheError::sqlite(&self.path);
        let mut conn = db::lock(&self.conn);
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&err)?;
        let mut deleted = 0;
        {
            let mut delete = tx
                .prepare_cached(
                    "DELETE FROM entries
                     WHERE kind = ?1 AND function = ?2 AND hash = ?3 AND last_access = ?4",
                )
                .map_err(&err)?;
            for row in rows {
                let k = &row.key;
                let n = delete
                    .execute(params![
                        k.kind as i64,
                        k.function.name(),
                        &k.hash[..],
                        row.last_access
                    ])
                    .map_err(&err)?;
                if n == 1 {
                    remove_file(row);
                    deleted += 1;
                }
            }
        }
        tx.commit().map_err(&err)?;
        Ok(deleted)
    }

    /// All keys in the index, for reconciling with the files on disk.
    pub(crate) fn all_keys(&self) -> Result<Vec<Key>> {
        self.flush()?;
        let err = CacheError::sqlite(&self.path);
        let conn = db::lock(&self.conn);
        let mut stmt = conn
            .prepare("SELECT kind, function, hash, size, last_access FROM entries")
            .map_err(&err)?;
        let rows = stmt
            .query_map([], decode_row)
            .map_err(&err)?
            .collect::<rusqlite::Result<Vec<Option<Row>>>>()
            .map_err(&err)?;
        Ok(rows.into_iter().flatten().map(|r| r.key).collect())
    }

    /// Inserts rows for files found on disk, keeping existing rows unchanged.
    pub(crate) fn insert_missing(&self, rows: &[Row]) -> Result<()> {
        let err = CacheError::sqlite(&self.path);
        let mut conn = db::lock(&self.conn);
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&err)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO entries (kind, function, hash, size, last_access)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(&err)?;
            for r in rows {
                insert
                    .execute(params![
                        r.key.kind as i64,
                        r.key.function.name(),
                        &r.key.hash[..],
                        r.size as i64,
                        r.last_access
                    ])
                    .map_err(&err)?;
            }
        }
        tx.commit().map_err(&err)
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Decodes a row; rows with an unknown function or a malformed hash are skipped (`None`).
fn decode_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Option<Row>> {
    let kind = match row.get::<_, i64>(0)? {
        0 => Kind::Blob,
        1 => Kind::Action,
        _ => return Ok(None),
    };
    let Ok(function) = row.get::<_, String>(1)?.parse::<DigestFunction>() else {
        return Ok(None);
    };
    let Ok(hash) = <[u8; 32]>::try_from(row.get::<_, Vec<u8>>(2)?.as_slice()) else {
        return Ok(None);
    };
    Ok(Some(Row {
        key: Key {
            kind,
            function,
            hash,
        },
        size: row.get::<_, i64>(3)?.max(0) as u64,
        last_access: row.get(4)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows_on_disk(index: &Index) -> i64 {
        let conn = db::lock(&index.conn);
        conn.query_row("SELECT COUNT(*) FROM entries", [], |r| r.get(0))
            .unwrap()
    }

    fn touch_many(index: &Index, n: usize) {
        for i in 0..n {
            let mut hash = [0u8; 32];
            hash[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let key = Key {
                kind: Kind::Blob,
                function: DigestFunction::Sha256,
                hash,
            };
            index.touch(key, 1).unwrap();
        }
    }

    #[test]
    fn background_flushing_keeps_sqlite_off_the_callers_path_until_flush() {
        let dir = tempfile::tempdir().unwrap();
        let (inline, _) = Index::open(&dir.path().join("a.sqlite")).unwrap();
        touch_many(&inline, FLUSH_EVERY + 1);
        assert!(rows_on_disk(&inline) >= FLUSH_EVERY as i64);

        let (background, _) = Index::open(&dir.path().join("b.sqlite")).unwrap();
        background.set_background_flush();
        touch_many(&background, FLUSH_EVERY * 3);
        assert_eq!(rows_on_disk(&background), 0);
        background.flush().unwrap();
        assert_eq!(rows_on_disk(&background), (FLUSH_EVERY * 3) as i64);
    }

    #[test]
    fn a_gone_checked_too_early_does_not_undo_a_writer_that_put_the_file_back() {
        let dir = tempfile::tempdir().unwrap();
        let (index, _) = Index::open(&dir.path().join("i.sqlite")).unwrap();
        let key = Key {
            kind: Kind::Blob,
            function: DigestFunction::Blake3,
            hash: [7; 32],
        };
        // A reader found no file; meanwhile a writer renamed one in and recorded its use.
        index.touch(key, 10).unwrap();
        // The reader's check runs with records held off, and sees the file now.
        index
            .forget_if(key, || {
                assert!(index.pending.try_lock().is_err(), "checked under the lock");
                false
            })
            .unwrap();
        index.flush().unwrap();
        assert_eq!(rows_on_disk(&index), 1);
        index.forget_if(key, || true).unwrap();
        index.flush().unwrap();
        assert_eq!(rows_on_disk(&index), 0);
    }
}
