//! Opening the SQLite databases the same way everywhere: WAL journal, `synchronous=NORMAL`
//! (a crash may lose the last transactions, never corrupt the file) and a 10 s busy timeout,
//! because several kiln processes share the per-user index.
//!
//! Internal module. Each schema is applied once per file, versioned with `user_version`.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::Connection;

use crate::error::{CacheError, Result};

/// How long a statement waits for another process's write lock before failing.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens (creating if needed) the database at `path` and applies `schema` when the file's
/// `user_version` is below `version`. Returns the connection and whether the schema was new.
pub(crate) fn open(path: &Path, schema: &str, version: i64) -> Result<(Connection, bool)> {
    let err = |e| CacheError::sqlite(path)(e);
    let conn = Connection::open(path).map_err(err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(err)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(err)?;
    let current: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(err)?;
    let fresh = current < version;
    if fresh {
        // IMMEDIATE takes the write lock up front, so two processes creating the schema at once
        // serialize instead of failing with SQLITE_BUSY mid-transaction.
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {schema}; PRAGMA user_version = {version}; COMMIT;"
        ))
        .map_err(err)?;
    }
    Ok((conn, fresh))
}

/// Locks a mutex, ignoring poisoning: the guarded connection has no invariant a panic breaks
/// (SQLite rolls back an unfinished transaction when it is dropped).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
