//! [`WorkspaceState`]: the per-workspace database `<state dir>/state.sqlite` holding the
//! file-digest memo (`file_memo.rs`), the package memo, engine key/value blobs and the action
//! history (`action_history.rs`).
//!
//! Everything here is a memo: deleting the file costs time, never correctness. Values are
//! opaque bytes; the caller serializes them, so this crate knows nothing of Starlark or targets.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension};

use crate::db;
use crate::error::{CacheError, Result};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS file_memo (
    path TEXT NOT NULL,
    function TEXT NOT NULL,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    mode_exec INTEGER NOT NULL,
    hash BLOB NOT NULL,
    hashed_at_ns INTEGER NOT NULL,
    PRIMARY KEY (path, function)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS packages (name TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    output_key TEXT NOT NULL,
    build_id INTEGER NOT NULL,
    label TEXT NOT NULL,
    mnemonic TEXT NOT NULL,
    action_key TEXT NOT NULL,
    inputs BLOB NOT NULL,
    argv BLOB NOT NULL,
    env BLOB NOT NULL,
    platform BLOB NOT NULL,
    duration_ms INTEGER NOT NULL,
    status TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS actions_by_output ON actions (output_key, id);
";

/// Key under which [`WorkspaceState::new_build_id`] keeps its counter.
const BUILD_ID_KEY: &str = "kiln.build_id";

/// The per-workspace state database. Safe to share between threads.
pub struct WorkspaceState {
    pub(crate) path: PathBuf,
    conn: Mutex<Connection>,
}

impl WorkspaceState {
    /// Opens (creating if needed) `<state_dir>/state.sqlite`.
    pub fn open(state_dir: &Path) -> Result<WorkspaceState> {
        fs::create_dir_all(state_dir).map_err(CacheError::io(state_dir))?;
        let path = state_dir.join("state.sqlite");
        let (conn, _) = db::open(&path, SCHEMA, 1)?;
        Ok(WorkspaceState {
            path,
            conn: Mutex::new(conn),
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        db::lock(&self.conn)
    }

    pub(crate) fn err(&self) -> impl Fn(rusqlite::Error) -> CacheError {
        CacheError::sqlite(&self.path)
    }

    /// The memoized evaluation of `package`, as stored by [`put_package`](Self::put_package).
    pub fn get_package(&self, package: &str) -> Result<Option<Vec<u8>>> {
        self.get_blob("SELECT data FROM packages WHERE name = ?1", package)
    }

    /// Stores (or replaces) the memoized evaluation of `package`.
    pub fn put_package(&self, package: &str, bytes: &[u8]) -> Result<()> {
        self.put_blob(
            "INSERT OR REPLACE INTO packages (name, data) VALUES (?1, ?2)",
            package,
            bytes,
        )
    }

    /// Forgets the memoized evaluation of `package`.
    pub fn remove_package(&self, package: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM packages WHERE name = ?1", [package])
            .map(|_| ())
            .map_err(self.err())
    }

    /// An engine value stored with [`put_kv`](Self::put_kv).
    pub fn get_kv(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.get_blob("SELECT value FROM kv WHERE key = ?1", key)
    }

    /// Stores (or replaces) an engine value, e.g. the last analysis snapshot.
    pub fn put_kv(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.put_blob(
            "INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)",
            key,
            bytes,
        )
    }

    /// Returns a new build id, larger than any returned before in this workspace.
    pub fn new_build_id(&self) -> Result<i64> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(self.err())?;
        let last: Option<Vec<u8>> = tx
            .query_row("SELECT value FROM kv WHERE key = ?1", [BUILD_ID_KEY], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.err())?;
        let last = last
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map_or(0, i64::from_le_bytes);
        let next = last + 1;
        tx.execute(
            "INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)",
            params![BUILD_ID_KEY, &next.to_le_bytes()[..]],
        )
        .map_err(self.err())?;
        tx.commit().map_err(self.err())?;
        Ok(next)
    }

    fn get_blob(&self, sql: &str, key: &str) -> Result<Option<Vec<u8>>> {
        self.conn()
            .query_row(sql, [key], |r| r.get(0))
            .optional()
            .map_err(self.err())
    }

    fn put_blob(&self, sql: &str, key: &str, bytes: &[u8]) -> Result<()> {
        self.conn()
            .execute(sql, params![key, bytes])
            .map(|_| ())
            .map_err(self.err())
    }
}

impl fmt::Debug for WorkspaceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkspaceState")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_kv_and_build_ids_persist() {
        let dir = tempfile::tempdir().unwrap();
        {
            let state = WorkspaceState::open(dir.path()).unwrap();
            assert_eq!(state.get_package("//a").unwrap(), None);
            state.put_package("//a", b"one").unwrap();
            state.put_package("//a", b"two").unwrap();
            state.put_package("//b", b"bee").unwrap();
            state.remove_package("//b").unwrap();
            state.put_kv("snapshot", b"snap").unwrap();
            assert_eq!(state.new_build_id().unwrap(), 1);
            assert_eq!(state.new_build_id().unwrap(), 2);
        }
        let state = WorkspaceState::open(dir.path()).unwrap();
        assert_eq!(state.get_package("//a").unwrap(), Some(b"two".to_vec()));
        assert_eq!(state.get_package("//b").unwrap(), None);
        assert_eq!(state.get_kv("snapshot").unwrap(), Some(b"snap".to_vec()));
        assert_eq!(state.get_kv("other").unwrap(), None);
        assert_eq!(state.new_build_id().unwrap(), 3);
    }
}
