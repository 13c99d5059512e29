//! Opening the SQLite databases the same way everywhere: WAL journal, `synchronous=NORMAL`
//! (a crash may lose the last transactions, never corrupt the file) and a 10 s busy timeout,
//! because several kiln processes share the per-user index.
//!
//! Internal module. Each schema is applied once per file, versioned with `user_version`.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::error::{CacheError, Result};

/// How long a statement waits for another process's write lock before failing.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens (creating if needed) the database at `path` and applies `schema` when the file's
/// `user_version` is below `version`. Returns the connection and whether the schema was new.
///
/// SQLite does not call the busy handler when a lock upgrade could deadlock (two processes
/// switching a new file to WAL at once, or one reading while another creates the schema): it
/// fails at once with `SQLITE_BUSY`. The whole opening sequence is idempotent, so it is retried
/// until [`BUSY_TIMEOUT`] has passed.
pub(crate) fn open(path: &Path, schema: &str, version: i64) -> Result<(Connection, bool)> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(5);
    loop {
        match open_once(path, schema, version) {
            Err(e) if is_busy(&e) && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            result => return result.map_err(CacheError::sqlite(path)),
        }
    }
}

/// Whether `e` is SQLite saying another connection holds a lock we need.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// One attempt at [`open`].
fn open_once(path: &Path, schema: &str, version: i64) -> rusqlite::Result<(Connection, bool)> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let current: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if current >= version {
        return Ok((conn, false));
    }
    // IMMEDIATE takes the write lock up front, so two processes creating the schema at once
    // serialize instead of failing with SQLITE_BUSY mid-transaction; the version is read again
    // under the lock so only the first of them reports the schema as new.
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let current: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let fresh = current < version;
    if fresh {
        conn.execute_batch(&format!("{schema}; PRAGMA user_version = {version};"))?;
    }
    conn.execute_batch("COMMIT")?;
    Ok((conn, fresh))
}

/// Locks a mutex, ignoring poisoning: the guarded connection has no invariant a panic breaks
/// (SQLite rolls back an unfinished transaction when it is dropped).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY)";

    #[test]
    fn processes_creating_one_database_at_once_all_open_it_and_one_creates_the_schema() {
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = Arc::new(dir.path().join(format!("db{round}.sqlite")));
            let start = Arc::new(Barrier::new(6));
            let openers: Vec<_> = (0..6)
                .map(|_| {
                    let (path, start) = (Arc::clone(&path), Arc::clone(&start));
                    std::thread::spawn(move || {
                        start.wait();
                        open(&path, SCHEMA, 1).map(|(_, fresh)| fresh)
                    })
                })
                .collect();
            let results: Vec<_> = openers.into_iter().map(|t| t.join().unwrap()).collect();
            let fresh = results
                .iter()
                .map(|r| match r {
                    Ok(fresh) => *fresh,
                    Err(e) => panic!("round {round}: {e}"),
                })
                .filter(|fresh| *fresh)
                .count();
            assert_eq!(
                fresh, 1,
                "round {round}: exactly one opener creates the schema"
            );
        }
    }
}
