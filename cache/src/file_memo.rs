//! The file-digest memo: skip re-hashing a file whose metadata shows it unchanged.
//!
//! An entry is `(path, function) → (stat, digest, hashed_at)`. It vouches for a file only if
//! the current stat equals the recorded one *and* the recorded mtime and ctime are more than
//! [`RACY_WINDOW`] older than `hashed_at` (Git's racy-clean rule): a file modified in the same
//! timestamp granule as it was hashed could be rewritten with the same size and timestamps,
//! so it is re-hashed until a later hash happens well after its last change.

use std::collections::HashMap;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rayon::prelude::*;
use rusqlite::params;

use crate::digest::{Digest, DigestFunction};
use crate::error::{CacheError, Result};
use crate::workspace_state::WorkspaceState;

/// Entries whose mtime or ctime is this close to (or later than) `hashed_at` are not trusted.
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

/// The metadata that decides whether a memoized digest still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileStat {
    /// Device id.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Status-change time, nanoseconds since the Unix epoch.
    pub ctime_ns: i64,
    /// Whether any execute bit is set.
    pub mode_exec: bool,
}

impl FileStat {
    /// Extracts the fields from `std::fs::Metadata`.
    pub fn from_metadata(meta: &Metadata) -> FileStat {
        FileStat {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            mode_exec: meta.mode() & 0o111 != 0,
        }
    }
}

/// One memo entry to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoRecord {
    /// Workspace-relative path.
    pub path: String,
    /// The stat taken before hashing.
    pub stat: FileStat,
    /// The digest of the content.
    pub digest: Digest,
    /// When hashing started (take it before reading the file).
    pub hashed_at: SystemTime,
}

/// The result of [`WorkspaceState::digest_files`] for one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestedFile {
    /// The content digest.
    pub digest: Digest,
    /// The file's stat.
    pub stat: FileStat,
    /// `true` if the file was hashed, `false` if the memo vouched for it.
    pub hashed: bool,
}

#[derive(Debug, Clone, Copy)]
struct MemoEntry {
    stat: FileStat,
    hash: [u8; 32],
    hashed_at_ns: i64,
}

impl MemoEntry {
    fn vouches_for(&self, function: DigestFunction, stat: &FileStat) -> Option<Digest> {
        let limit = self.hashed_at_ns - RACY_WINDOW.as_nanos() as i64;
        let settled = self.stat.mtime_ns < limit && self.stat.ctime_ns < limit;
        (settled && self.stat == *stat).then_some(Digest {
            function,
            hash: self.hash,
            size: stat.size,
        })
    }

    /// The digest recorded with exactly this stat, however young the entry.
    fn recorded_for(&self, function: DigestFunction, stat: &FileStat) -> Option<Digest> {
        (self.stat == *stat).then_some(Digest {
            function,
            hash: self.hash,
            size: stat.size,
        })
    }
}

/// An in-memory snapshot of the memo for one digest function, for fast parallel lookups.
#[derive(Debug, Clone, Default)]
pub struct FileMemo {
    function: DigestFunction,
    entries: HashMap<String, MemoEntry>,
}

impl FileMemo {
    /// The memoized digest of `path` if the memo can vouch for a file with this stat.
    pub fn lookup(&self, path: &str, stat: &FileStat) -> Option<Digest> {
        self.entries.get(path)?.vouches_for(self.function, stat)
    }

    /// The digest last recorded for `path` if its stat is still `stat`, even an entry too young
    /// for [`lookup`](Self::lookup) to vouch for: the file then holds those bytes, or was
    /// rewritten within the racy window into a file of the same size and times. Only a caller
    /// for whom both cases lead to the same decision may use it: one about to replace the file
    /// unless it already holds other bytes, say.
    pub fn recorded(&self, path: &str, stat: &FileStat) -> Option<Digest> {
        self.entries.get(path)?.recorded_for(self.function, stat)
    }

    /// Adds (or replaces) an entry, so a long-lived process (`kiln watch`) keeps the digests it
    /// computed in memory instead of reading them back from SQLite.
    pub fn insert(&mut self, record: &MemoRecord) {
        self.entries.insert(
            record.path.clone(),
            MemoEntry {
                stat: record.stat,
                hash: record.digest.hash,
                hashed_at_ns: nanos_since_epoch(record.hashed_at),
            },
        );
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the snapshot is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `t` in nanoseconds since the Unix epoch (negative before it), as stats report file times.
pub(crate) fn nanos_since_epoch(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i64,
        Err(e) => -(e.duration().as_nanos() as i64),
    }
}

impl WorkspaceState {
    /// The memoized digest of `path` for a file with this stat, or `None` (re-hash it).
    pub fn lookup(
        &self,
        path: &str,
        stat: &FileStat,
        function: DigestFunction,
    ) -> Result<Option<Digest>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT dev, ino, size, mtime_ns, ctime_ns, mode_exec, hash, hashed_at_ns
                 FROM file_memo WHERE path = ?1 AND function = ?2",
            )
            .map_err(self.err())?;
        let mut rows = stmt
            .query(params![path, function.name()])
            .map_err(self.err())?;
        match rows.next().map_err(self.err())? {
            Some(row) => Ok(decode_entry(row)
                .map_err(self.err())?
                .and_then(|e| e.vouches_for(function, stat))),
            None => Ok(None),
        }
    }

    /// Records one digest; see [`record_batch`](Self::record_batch) for many.
    pub fn record(
        &self,
        path: &str,
        stat: &FileStat,
        digest: &Digest,
        hashed_at: SystemTime,
    ) -> Result<()> {
        self.record_batch(&[MemoRecord {
            path: path.to_string(),
            stat: *stat,
            digest: *digest,
            hashed_at,
        }])
    }

    /// Records many digests in one transaction.
    pub fn record_batch(&self, records: &[MemoRecord]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(self.err())?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO file_memo
                     (path, function, dev, ino, size, mtime_ns, ctime_ns, mode_exec, hash,
                      hashed_at_ns)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .map_err(self.err())?;
            for r in records {
                let s = &r.stat;
                insert
                    .execute(params![
                        r.path,
                        r.digest.function.name(),
                        s.dev as i64,
                        s.ino as i64,
                        s.size as i64,
                        s.mtime_ns,
                        s.ctime_ns,
                        s.mode_exec,
                        &r.digest.hash[..],
                        nanos_since_epoch(r.hashed_at),
                    ])
                    .map_err(self.err())?;
            }
        }
        tx.commit().map_err(self.err())
    }

    /// Forgets the memo entries of `paths` (e.g. deleted files), for every digest function.
    pub fn forget_files(&self, paths: &[String]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(self.err())?;
        {
            let mut delete = tx
                .prepare_cached("DELETE FROM file_memo WHERE path = ?1")
                .map_err(self.err())?;
            for path in paths {
                delete.execute([path]).map_err(self.err())?;
            }
        }
        tx.commit().map_err(self.err())
    }

    /// Loads every memo entry for `function` into memory.
    pub fn load_file_memo(&self, function: DigestFunction) -> Result<FileMemo> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT dev, ino, size, mtime_ns, ctime_ns, mode_exec, hash, hashed_at_ns, path
                 FROM file_memo WHERE function = ?1",
            )
            .map_err(self.err())?;
        let mut rows = stmt.query([function.name()]).map_err(self.err())?;
        let mut entries = HashMap::new();
        while let Some(row) = rows.next().map_err(self.err())? {
            if let Some(entry) = decode_entry(row).map_err(self.err())? {
                entries.insert(row.get::<_, String>(8).map_err(self.err())?, entry);
            }
        }
        Ok(FileMemo { function, entries })
    }

    /// Digests the files `root/<path>` in parallel, hashing only those the memo cannot vouch
    /// for, and records the new digests in one transaction. Results are in `paths` order.
    /// A memo that cannot be read or written only costs re-hashing.
    pub fn digest_files(
        &self,
        root: &Path,
        paths: &[String],
        function: DigestFunction,
    ) -> Vec<Result<DigestedFile>> {
        let memo = self.load_file_memo(function).unwrap_or(FileMemo {
            function,
            entries: HashMap::new(),
        });
        let results: Vec<(Result<DigestedFile>, Option<MemoRecord>)> = paths
            .par_iter()
            .map(|path| match digest_one(&memo, root, path, function) {
                Ok((file, record)) => (Ok(file), record),
                Err(e) => (Err(e), None),
            })
            .collect();
        let (results, records): (Vec<_>, Vec<_>) = results.into_iter().unzip();
        let records: Vec<MemoRecord> = records.into_iter().flatten().collect();
        if !records.is_empty() {
            let _ = self.record_batch(&records);
        }
        results
    }
}

/// Stats, consults the memo, hashes if needed. The record is `None` when nothing new was
/// learnt or when the file changed while it was being hashed.
fn digest_one(
    memo: &FileMemo,
    root: &Path,
    path: &str,
    function: DigestFunction,
) -> Result<(DigestedFile, Option<MemoRecord>)> {
    let full = root.join(path);
    let stat_of = |p: &Path| -> Result<FileStat> {
        let meta = fs::metadata(p).map_err(CacheError::io(p))?;
        if !meta.is_file() {
            return Err(CacheError::io(p)(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            )));
        }
        Ok(FileStat::from_metadata(&meta))
    };
    let stat = stat_of(&full)?;
    if let Some(digest) = memo.lookup(path, &stat) {
        let file = DigestedFile {
            digest,
            stat,
            hashed: false,
        };
        return Ok((file, None));
    }
    let hashed_at = SystemTime::now();
    let digest = Digest::of_file(function, &full).map_err(CacheError::io(&full))?;
    let unchanged = stat_of(&full).is_ok_and(|after| after == stat) && digest.size == stat.size;
    let record = unchanged.then(|| MemoRecord {
        path: path.to_string(),
        stat,
        digest,
        hashed_at,
    });
    let file = DigestedFile {
        digest,
        stat,
        hashed: true,
    };
    Ok((file, record))
}

fn decode_entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<Option<MemoEntry>> {
    let Ok(hash) = <[u8; 32]>::try_from(row.get::<_, Vec<u8>>(6)?.as_slice()) else {
        return Ok(None);
    };
    Ok(Some(MemoEntry {
        stat: stat_from_row(row, row.get(5)?)?,
        hash,
        hashed_at_ns: row.get(7)?,
    }))
}

/// A stat of one made-up file whose mtime and ctime are both `mtime_ns`, for tests.
/// A [`FileStat`] from columns 0–4 of a row (dev, ino, size, mtime_ns, ctime_ns).
pub(crate) fn stat_from_row(
    row: &rusqlite::Row<'_>,
    mode_exec: bool,
) -> rusqlite::Result<FileStat> {
    Ok(FileStat {
        dev: row.get::<_, i64>(0)? as u64,
        ino: row.get::<_, i64>(1)? as u64,
        size: row.get::<_, i64>(2)? as u64,
        mtime_ns: row.get(3)?,
        ctime_ns: row.get(4)?,
        mode_exec,
    })
}

#[cfg(test)]
pub(crate) fn test_stat(mtime_ns: i64) -> FileStat {
    FileStat {
        dev: 1,
        ino: 2,
        size: 3,
        mtime_ns,
        ctime_ns: mtime_ns,
        mode_exec: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(mtime_ns: i64) -> FileStat {
        test_stat(mtime_ns)
    }

    #[test]
    fn racy_window_is_respected() {
        let d = Digest::of_bytes(DigestFunction::Blake3, b"abc");
        let s = 1_000_000_000;
        let entry = |mtime_ns, hashed_at_ns| MemoEntry {
            stat: stat(mtime_ns),
            hash: d.hash,
            hashed_at_ns,
        };
        let f = DigestFunction::Blake3;
        assert_eq!(entry(10 * s, 13 * s).vouches_for(f, &stat(10 * s)), Some(d));
        assert_eq!(entry(10 * s, 12 * s).vouches_for(f, &stat(10 * s)), None);
        assert_eq!(entry(10 * s, 11 * s).vouches_for(f, &stat(10 * s)), None);
        assert_eq!(entry(10 * s, 9 * s).vouches_for(f, &stat(10 * s)), None);
        assert_eq!(
            entry(10 * s, 13 * s).vouches_for(f, &stat(10 * s + 1)),
            None
        );
        let mut ctime_recent = entry(10 * s, 13 * s);
        ctime_recent.stat.ctime_ns = 12 * s;
        let mut current = stat(10 * s);
        current.ctime_ns = 12 * s;
        assert_eq!(ctime_recent.vouches_for(f, &current), None);
    }

    #[test]
    fn recorded_answers_for_a_racy_entry_but_only_for_its_exact_stat() {
        let d = Digest::of_bytes(DigestFunction::Blake3, b"abc");
        let s = 1_000_000_000;
        let mut memo = FileMemo {
            function: DigestFunction::Blake3,
            entries: HashMap::new(),
        };
        memo.entries.insert(
            "kiln-out/bin/tool".into(),
            MemoEntry {
                stat: stat(10 * s),
                hash: d.hash,
                // Recorded in the same second as the file's last change: racy.
                hashed_at_ns: 10 * s,
            },
        );
        assert_eq!(memo.lookup("kiln-out/bin/tool", &stat(10 * s)), None);
        assert_eq!(memo.recorded("kiln-out/bin/tool", &stat(10 * s)), Some(d));
        assert_eq!(memo.recorded("kiln-out/bin/tool", &stat(10 * s + 1)), None);
        assert_eq!(memo.recorded("kiln-out/bin/other", &stat(10 * s)), None);
    }
}
