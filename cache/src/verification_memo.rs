//! The persisted memo of blob verifications: a CAS file whose metadata has not changed since it
//! last hashed to its name is not hashed again for [`REVERIFY_AFTER`].
//!
//! Internal module. [`LocalCache::verify`](crate::LocalCache::verify) runs before every derived
//! input is staged; without this memo each build re-read every input of every action it ran (a
//! Rust link's few hundred megabytes of rlibs, a Go link's hundreds of archives), although the
//! previous build had just checked them. A row vouches for a file under the rules of
//! [`VerifiedBlobs`](crate::VerifiedBlobs), across processes:
//! - the file's [`FileStat`] (device, inode, size, mtime, ctime) is the one recorded before the
//!   hash: any write, truncation, replacement or `chmod` through the file system changes the
//!   ctime at least, and a user cannot set it back;
//! - the mtime and ctime were older than the hash by more than the file system's timestamp
//!   granule (the racy-clean rule);
//! - the hash is younger than [`REVERIFY_AFTER`], so corruption beneath the file system (which
//!   changes no metadata) is still found, at the first use after that.
//!
//! The memo lives in its own database (`verified.sqlite` beside the index), opened on first use;
//! rows are written in batches with the index's cadence, and rows older than
//! [`REVERIFY_AFTER`] are pruned then. Losing the file or a batch only costs hashes.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use rusqlite::{params, Connection, OptionalExtension};

use crate::db;
use crate::digest::Digest;
use crate::error::{CacheError, Result};
use crate::file_memo::{nanos_since_epoch, stat_from_row, FileStat};
use crate::verified_blobs::racy_window;

/// How long a verification vouches for an unchanged file.
pub const REVERIFY_AFTER: Duration = Duration::from_secs(60 * 60);

/// Pending rows that trigger a write.
const FLUSH_EVERY: usize = 512;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS verified (
    function TEXT NOT NULL,
    hash BLOB NOT NULL,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    hashed_at_ns INTEGER NOT NULL,  -- wall clock when the hash began
    PRIMARY KEY (function, hash)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS verified_age ON verified (hashed_at_ns);
";

/// One successful hash of a blob's file.
#[derive(Debug, Clone, Copy)]
struct Verification {
    digest: Digest,
    stat: FileStat,
    hashed_at_ns: i64,
}

/// Blob verifications, persisted across builds.
pub(crate) struct VerificationMemo {
    path: PathBuf,
    /// `None` inside when the database cannot be opened: then every use hashes.
    conn: OnceLock<Option<Mutex<Connection>>>,
    pending: Mutex<Vec<Verification>>,
}

impl VerificationMemo {
    /// A memo kept in the database at `path` (opened on first use).
    pub(crate) fn new(path: &Path) -> VerificationMemo {
        VerificationMemo {
            path: path.to_path_buf(),
            conn: OnceLock::new(),
            pending: Mutex::new(Vec::new()),
        }
    }

    fn conn(&self) -> Option<&Mutex<Connection>> {
        self.conn
            .get_or_init(|| {
                db::open(&self.path, SCHEMA, 1)
                    .ok()
                    .map(|(c, _)| Mutex::new(c))
            })
            .as_ref()
    }

    /// Whether `digest`'s file, whose metadata is now `stat`, hashed to `digest` recently enough
    /// and has not changed since.
    pub(crate) fn vouches_for(&self, digest: &Digest, stat: &FileStat) -> bool {
        let pending = db::lock(&self.pending)
            .iter()
            .rev()
            .find(|v| v.digest == *digest)
            .copied();
        let seen = match pending {
            Some(v) => Some(v),
            None => self.stored(digest),
        };
        seen.is_some_and(|seen| trusted(&seen, stat, SystemTime::now()))
    }

    fn stored(&self, digest: &Digest) -> Option<Verification> {
        let conn = db::lock(self.conn()?);
        let mut stmt = conn
            .prepare_cached(
                "SELECT dev, ino, size, mtime_ns, ctime_ns, hashed_at_ns FROM verified
                 WHERE function = ?1 AND hash = ?2",
            )
            .ok()?;
        stmt.query_row(params![digest.function.name(), &digest.hash[..]], |row| {
            Ok(Verification {
                digest: *digest,
                // The mode is not stored: CAS blobs are never executable, and `trusted` ignores it.
                stat: stat_from_row(row, false)?,
                hashed_at_ns: row.get(5)?,
            })
        })
        .optional()
        .ok()
        .flatten()
    }

    /// Records that `digest`'s file, with `stat` taken before hashing began at `hashed_at`,
    /// hashed to `digest`. Written with the next batch.
    pub(crate) fn record(&self, digest: Digest, stat: FileStat, hashed_at: SystemTime) {
        let due = {
            let mut pending = db::lock(&self.pending);
            pending.push(Verification {
                digest,
                stat,
                hashed_at_ns: nanos_since_epoch(hashed_at),
            });
            pending.len() >= FLUSH_EVERY
        };
        if due {
            let _ = self.flush();
        }
    }

    /// Writes the pending rows and prunes expired ones, in one transaction.
    pub(crate) fn flush(&self) -> Result<()> {
        let rows = std::mem::take(&mut *db::lock(&self.pending));
        if rows.is_empty() {
            return Ok(());
        }
        let Some(conn) = self.conn() else {
            return Ok(());
        };
        let err = CacheError::sqlite(&self.path);
        let mut conn = db::lock(conn);
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&err)?;
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO verified
                     (function, hash, dev, ino, size, mtime_ns, ctime_ns, hashed_at_ns)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(&err)?;
            for v in &rows {
                upsert
                    .execute(params![
                        v.digest.function.name(),
                        &v.digest.hash[..],
                        v.stat.dev as i64,
                        v.stat.ino as i64,
                        v.stat.size as i64,
                        v.stat.mtime_ns,
                        v.stat.ctime_ns,
                        v.hashed_at_ns
                    ])
                    .map_err(&err)?;
            }
            let expired = nanos_since_epoch(SystemTime::now()) - REVERIFY_AFTER.as_nanos() as i64;
            tx.execute(
                "DELETE FROM verified WHERE hashed_at_ns < ?1",
                params![expired],
            )
            .map_err(&err)?;
        }
        tx.commit().map_err(&err)
    }
}

impl Drop for VerificationMemo {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Whether `seen` vouches for a file now at `stat`, at wall-clock time `now`.
fn trusted(seen: &Verification, stat: &FileStat, now: SystemTime) -> bool {
    let recorded = &seen.stat;
    let same_file = (recorded.dev, recorded.ino, recorded.size, recorded.mtime_ns)
        == (stat.dev, stat.ino, stat.size, stat.mtime_ns)
        && recorded.ctime_ns == stat.ctime_ns;
    let settled_before = seen.hashed_at_ns - racy_window(stat).as_nanos() as i64;
    let age_ns = nanos_since_epoch(now) - seen.hashed_at_ns;
    same_file
        && stat.mtime_ns < settled_before
        && stat.ctime_ns < settled_before
        && (0..REVERIFY_AFTER.as_nanos() as i64).contains(&age_ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DigestFunction;

    fn stat(mtime_ns: i64, ctime_ns: i64) -> FileStat {
        FileStat {
            dev: 1,
            ino: 2,
            size: 3,
            mtime_ns,
            ctime_ns,
            mode_exec: false,
        }
    }

    const SEC: i64 = 1_000_000_000;

    fn seen(stat: FileStat, hashed_at_ns: i64) -> Verification {
        Verification {
            digest: Digest::of_bytes(DigestFunction::Blake3, b"x"),
            stat,
            hashed_at_ns,
        }
    }

    fn at(ns: i64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(ns as u64)
    }

    #[test]
    fn an_unchanged_settled_file_is_trusted_until_the_interval_ends() {
        let t = 1_700_000_000 * SEC;
        let s = stat(t - 5 * SEC + 123, t - 5 * SEC + 456);
        let v = seen(s, t);
        assert!(trusted(&v, &s, at(t + SEC)));
        assert!(!trusted(
            &v,
            &s,
            at(t + REVERIFY_AFTER.as_nanos() as i64 + 1)
        ));
        // A clock that went backwards proves nothing.
        assert!(!trusted(&v, &s, at(t - SEC)));
    }

    #[test]
    fn any_metadata_change_or_a_racy_timestamp_is_not_trusted() {
        let t = 1_700_000_000 * SEC;
        let s = stat(t - 5 * SEC + 1, t - 5 * SEC + 1);
        let v = seen(s, t);
        let later = at(t + SEC);
        for changed in [
            FileStat { ino: 9, ..s },
            FileStat { dev: 9, ..s },
            FileStat { size: 9, ..s },
            FileStat {
                mtime_ns: s.mtime_ns + 1,
                ..s
            },
            FileStat {
                ctime_ns: s.ctime_ns + 1,
                ..s
            },
        ] {
            assert!(!trusted(&v, &changed, later), "{changed:?}");
        }
        // Changed within the granule before the hash (sub-second timestamps: 100 ms).
        let racy = stat(t - SEC / 20, t - SEC / 20);
        assert!(!trusted(&seen(racy, t), &racy, later));
        // Whole-second timestamps get the 2 s window.
        let coarse = stat(t - SEC, t - SEC);
        assert!(!trusted(&seen(coarse, t), &coarse, later));
    }

    #[test]
    fn records_survive_a_new_memo_on_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("verified.sqlite");
        let digest = Digest::of_bytes(DigestFunction::Blake3, b"blob");
        let now = SystemTime::now();
        let t = nanos_since_epoch(now);
        let s = stat(t - 10 * SEC + 7, t - 10 * SEC + 7);
        {
            let memo = VerificationMemo::new(&path);
            assert!(!memo.vouches_for(&digest, &s));
            memo.record(digest, s, now);
            // Pending rows count before they are written.
            assert!(memo.vouches_for(&digest, &s));
        }
        let memo = VerificationMemo::new(&path);
        assert!(memo.vouches_for(&digest, &s));
        assert!(!memo.vouches_for(&digest, &FileStat { ino: 5, ..s }));
        let other = Digest::of_bytes(DigestFunction::Sha256, b"blob");
        assert!(!memo.vouches_for(&other, &s));
    }
}
