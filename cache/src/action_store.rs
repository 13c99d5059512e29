//! Where action-cache entries live: one SQLite table in `<root>/ac.sqlite` (WAL), keyed on
//! (digest function, hash), holding each entry as checked opaque bytes (see `action_cache.rs`).
//!
//! Internal module. An entry is a few hundred bytes; as a file it cost a new inode (and a shard
//! directory) per action, the largest part of storing a result on a disk file system. As a row
//! it costs one small transaction, atomic under `kill -9`. Like the CAS files, this table is
//! the truth and the index is advisory: the index's row for an entry only carries its size and
//! last access, for eviction.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use rusqlite::{params, Connection, OptionalExtension};

use crate::db;
use crate::digest::{Digest, DigestFunction};
use crate::error::{CacheError, Result};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS action_results (
    function TEXT NOT NULL,   -- digest function name
    hash BLOB NOT NULL,       -- 32 bytes
    entry BLOB NOT NULL,      -- magic, BLAKE3 of the payload, payload
    stored INTEGER NOT NULL,  -- microseconds since the Unix epoch
    PRIMARY KEY (function, hash)
) WITHOUT ROWID;
";

/// One stored entry, as listed for rebuilding the index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StoredEntry {
    pub function: DigestFunction,
    pub hash: [u8; 32],
    pub size: u64,
    pub stored: i64,
}

/// The action-cache table.
pub(crate) struct ActionStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl ActionStore {
    /// Opens (creating if needed) the store at `path`. With `fsync`, every write is durable
    /// before it returns (`synchronous=FULL`); else a power loss may drop the last entries.
    pub(crate) fn open(path: &Path, fsync: bool) -> Result<ActionStore> {
        let (conn, _) = db::open(path, SCHEMA, 1)?;
        if fsync {
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(CacheError::sqlite(path))?;
        }
        Ok(ActionStore {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The stored entry for `action`, if any.
    pub(crate) fn get(&self, action: &Digest) -> Result<Option<Vec<u8>>> {
        let conn = db::lock(&self.conn);
        conn.prepare_cached("SELECT entry FROM action_results WHERE function = ?1 AND hash = ?2")
            .and_then(|mut stmt| {
                stmt.query_row(params![action.function.name(), &action.hash[..]], |row| {
                    row.get(0)
                })
                .optional()
            })
            .map_err(CacheError::sqlite(&self.path))
    }

    /// Stores (or replaces) the entry for `action`, in one transaction.
    pub(crate) fn put(&self, action: &Digest, entry: &[u8]) -> Result<()> {
        let conn = db::lock(&self.conn);
        conn.prepare_cached(
            "INSERT OR REPLACE INTO action_results (function, hash, entry, stored) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                action.function.name(),
                &action.hash[..],
                entry,
                now_micros()
            ])
        })
        .map(|_| ())
        .map_err(CacheError::sqlite(&self.path))
    }

    /// Deletes the entry for `action` (nothing if there is none).
    pub(crate) fn delete(&self, function: DigestFunction, hash: &[u8; 32]) -> Result<()> {
        let conn = db::lock(&self.conn);
        conn.prepare_cached("DELETE FROM action_results WHERE function = ?1 AND hash = ?2")
            .and_then(|mut stmt| stmt.execute(params![function.name(), &hash[..]]))
            .map(|_| ())
            .map_err(CacheError::sqlite(&self.path))
    }

    /// Whether an entry for (`function`, `hash`) is stored.
    pub(crate) fn contains(&self, function: DigestFunction, hash: &[u8; 32]) -> Result<bool> {
        let conn = db::lock(&self.conn);
        conn.prepare_cached("SELECT 1 FROM action_results WHERE function = ?1 AND hash = ?2")
            .and_then(|mut stmt| stmt.exists(params![function.name(), &hash[..]]))
            .map_err(CacheError::sqlite(&self.path))
    }

    /// Every stored entry with its size, for rebuilding the index; rows of an unknown digest
    /// function or with a malformed hash are skipped.
    pub(crate) fn list(&self) -> Result<Vec<StoredEntry>> {
        let conn = db::lock(&self.conn);
        let mut stmt = conn
            .prepare("SELECT function, hash, length(entry), stored FROM action_results")
            .map_err(CacheError::sqlite(&self.path))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, i64>(3)?,
                ))
            })
            .map_err(CacheError::sqlite(&self.path))?;
        let mut out = Vec::new();
        for row in rows {
            let (function, hash, size, stored) = row.map_err(CacheError::sqlite(&self.path))?;
            let Some(function) = DigestFunction::ALL
                .into_iter()
                .find(|f| f.name() == function)
            else {
                continue;
            };
            let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) else {
                continue;
            };
            out.push(StoredEntry {
                function,
                hash,
                size: size.max(0) as u64,
                stored,
            });
        }
        Ok(out)
    }
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_kept_per_function_and_hash_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = ActionStore::open(&dir.path().join("ac.sqlite"), false).unwrap();
        let action = Digest::of_bytes(DigestFunction::Blake3, b"action");
        let other = Digest {
            function: DigestFunction::Sha256,
            ..action
        };
        assert_eq!(store.get(&action).unwrap(), None);
        store.put(&action, b"one").unwrap();
        store.put(&action, b"two!").unwrap();
        assert_eq!(store.get(&action).unwrap(), Some(b"two!".to_vec()));
        assert_eq!(store.get(&other).unwrap(), None);
        assert!(store.contains(action.function, &action.hash).unwrap());
        let listed = store.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].function, listed[0].size), (action.function, 4));
        store.delete(action.function, &action.hash).unwrap();
        assert_eq!(store.get(&action).unwrap(), None);
        assert!(!store.contains(action.function, &action.hash).unwrap());
    }
}
