//! [`LocalCache`]: the per-user store shared by every workspace and every kiln process, its
//! on-disk layout, configuration, statistics and warnings.
//!
//! ```text
//! <root>/cas/<fn>/<2 hex>/<64 hex>   CAS blobs, mode 0444, content always matches the name
//! <root>/ac.sqlite                   action-cache entries (checked opaque bytes; WAL)
//! <root>/tmp/<pid>.<nanos>/          each open cache's temp files; older than an hour: removed
//! <root>/index.sqlite                size and last access of every entry (WAL)
//! ```
//!
//! (Caches written before the action store was a table kept entries as files under `ac/`;
//! that directory is removed at open, which makes those entries misses.)
//!
//! The CAS methods live in `cas.rs`, the action cache in `action_cache.rs`, eviction in
//! `gc.rs`; they are all `impl LocalCache` blocks over the state defined here.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::action_result_memo::ActionResultMemo;
use crate::action_store::ActionStore;
use crate::db;
use crate::digest::Digest;
use crate::error::{CacheError, Result};
use crate::fsutil;
use crate::index::{Index, Key, Kind};
use crate::verification_memo::VerificationMemo;

/// Temp files older than this are leftovers of a crashed process.
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);
/// At most this many warnings are kept until [`LocalCache::take_warnings`].
const MAX_WARNINGS: usize = 1024;

/// Settings of a [`LocalCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Size cap in bytes (CAS plus action cache) enforced by [`LocalCache::enforce_cap`].
    pub max_size_bytes: u64,
    /// `fsync` each new blob before renaming it into place, and each action-cache entry before
    /// its write returns (slower; survives power loss).
    pub fsync: bool,
    /// Bytes of verified action-cache entries this process keeps in memory, so that a repeated
    /// `get_action_result` reads no file: for a long-running server. The memo sees this
    /// process's changes only; an entry another process replaced or deleted may still be
    /// answered from it (a result once stored for that action and verified, never a damaged
    /// one). 0, the default, turns it off.
    pub action_result_memo_bytes: u64,
}

impl Default for CacheConfig {
    /// A 10 GiB cap, no fsync, no action-result memo.
    fn default() -> Self {
        CacheConfig {
            max_size_bytes: 10 << 30,
            fsync: false,
            action_result_memo_bytes: 0,
        }
    }
}

/// Counts over the cache, from the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Number of CAS blobs.
    pub blobs: u64,
    /// Total bytes of CAS blobs and action-cache entries.
    pub bytes: u64,
    /// Number of action-cache entries.
    pub ac_entries: u64,
}

/// Something the cache repaired on its own and the user may want to hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheWarning {
    /// A blob's content did not match its name; it was deleted and treated as a miss.
    CorruptBlob {
        /// The digest the blob was stored under.
        digest: Digest,
        /// The deleted file.
        path: PathBuf,
    },
    /// An action-cache entry failed its integrity check; it was deleted and treated as a miss.
    CorruptActionResult {
        /// The action digest.
        action: Digest,
        /// The database the entry was deleted from.
        path: PathBuf,
    },
    /// The index could not be updated (the cache still works; eviction may lag).
    Index(String),
}

impl fmt::Display for CacheWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheWarning::CorruptBlob { digest, path } => write!(
                f,
                "Removed corrupt cache blob `{}` (expected `{digest}`)",
                path.display()
            ),
            CacheWarning::CorruptActionResult { action, path } => write!(
                f,
                "Removed corrupt action-cache entry for action `{action}` from `{}`",
                path.display()
            ),
            CacheWarning::Index(msg) => write!(f, "Cache index not updated: {msg}"),
        }
    }
}

/// The per-user content-addressed store and action cache. Safe to share between threads;
/// several processes may open the same root at once.
pub struct LocalCache {
    pub(crate) root: PathBuf,
    pub(crate) config: CacheConfig,
    pub(crate) index: Index,
    /// Blob files that hashed to their names recently and have not changed since.
    pub(crate) verifications: VerificationMemo,
    /// The action-cache entries.
    pub(crate) actions: ActionStore,
    /// Verified action-cache payloads kept in memory (off unless configured).
    pub(crate) action_results: ActionResultMemo,
    /// Held by [`gc`](LocalCache::gc) while it runs.
    pub(crate) collecting: Mutex<()>,
    /// The device of the temp directory (where blobs are written before they are renamed into
    /// place), if it could be read: a file on another device cannot be renamed into the store.
    pub(crate) tmp_device: Option<u64>,
    /// This instance's temp directory, `<root>/tmp/<pid>.<nanos>`: a fresh directory, which ext4
    /// places in a block group of its own (see [`fsutil::mark_top_directory`]).
    tmp: PathBuf,
    corrupt: AtomicU64,
    warnings: Mutex<Vec<CacheWarning>>,
}

/// The default cache root: `$KILN_CACHE_DIR`, else `$XDG_CACHE_HOME/kiln`, else
/// `~/.cache/kiln`; `None` when none of these variables is set.
pub fn default_root() -> Option<PathBuf> {
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("KILN_CACHE_DIR") {
        return Some(dir);
    }
    if let Some(xdg) = var("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return Some(xdg.join("kiln"));
    }
    var("HOME").map(|home| home.join(".cache").join("kiln"))
}

/// What `CACHEDIR.TAG` holds (<https://bford.info/cachedir/>).
const CACHEDIR_TAG_TEXT: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
    # This file is a cache directory tag created by Kiln.\n\
    # For information about cache directory tags, see https://bford.info/cachedir/\n";

/// Marks `root` as a cache directory, so backup tools skip it and a cache kept inside a
/// workspace is not walked for packages. Written whole through a temp file, once.
fn tag_as_cache(root: &Path) -> Result<()> {
    let tag = root.join("CACHEDIR.TAG");
    if tag.exists() {
        return Ok(());
    }
    let temp = root
        .join("tmp")
        .join(format!("CACHEDIR.TAG.{}", std::process::id()));
    fs::write(&temp, CACHEDIR_TAG_TEXT).map_err(CacheError::io(&temp))?;
    fs::rename(&temp, &tag).map_err(CacheError::io(&tag))
}

impl LocalCache {
    /// Opens (creating if needed) the cache at `root` and removes stale temp files.
    /// If the index is new (first use, or deleted), it is rebuilt from the files on disk.
    pub fn open(root: &Path, config: CacheConfig) -> Result<LocalCache> {
        for dir in ["cas", "tmp"] {
            let dir = root.join(dir);
            fs::create_dir_all(&dir).map_err(CacheError::io(&dir))?;
        }
        let legacy_entries = root.join("ac");
        if legacy_entries.is_dir() {
            fs::remove_dir_all(&legacy_entries).map_err(CacheError::io(&legacy_entries))?;
        }
        fsutil::remove_stale(&root.join("tmp"), STALE_TEMP_AGE);
        fsutil::mark_top_directory(&root.join("tmp"));
        tag_as_cache(root)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let tmp = root
            .join("tmp")
            .join(format!("{}.{nanos}", std::process::id()));
        fs::create_dir_all(&tmp).map_err(CacheError::io(&tmp))?;
        fsutil::mark_top_directory(&tmp);
        let (index, fresh) = Index::open(&root.join("index.sqlite"))?;
        let actions = ActionStore::open(&root.join("ac.sqlite"), config.fsync)?;
        let tmp_device = fs::metadata(root.join("tmp")).ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.dev()
        });
        let cache = LocalCache {
            root: root.to_path_buf(),
            config,
            index,
            actions,
            verifications: VerificationMemo::new(&root.join("verified.sqlite")),
            action_results: ActionResultMemo::new(config.action_result_memo_bytes),
            collecting: Mutex::new(()),
            tmp_device,
            tmp,
            corrupt: AtomicU64::new(0),
            warnings: Mutex::new(Vec::new()),
        };
        if fresh {
            cache.rebuild_index()?;
        }
        Ok(cache)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The configuration the cache was opened with.
    pub fn config(&self) -> CacheConfig {
        self.config
    }

    /// Counts of blobs, action-cache entries and bytes.
    pub fn stats(&self) -> Result<CacheStats> {
        let t = self.index.totals()?;
        Ok(CacheStats {
            blobs: t.blobs,
            bytes: t.bytes,
            ac_entries: t.ac_entries,
        })
    }

    /// Writes pending last-access updates to the index and the verification memo (also done
    /// periodically and on drop). Each is written even if the other fails; the first error is
    /// returned.
    pub fn flush(&self) -> Result<()> {
        let verifications = self.verifications.flush();
        let index = self.index.flush();
        verifications.and(index)
    }

    /// Stops reads and writes from flushing the batched last-access records on the caller's
    /// thread (they flush only when tens of thousands pile up): for a long-lived owner that calls
    /// [`flush`](Self::flush) on its own timer, at least every couple of seconds, so a request
    /// never waits for SQLite. Until the next flush, another process sees older access times.
    pub fn flush_in_background(&self) {
        self.index.set_background_flush();
    }

    /// Number of corrupt blobs and action-cache entries found (and removed) by this instance.
    pub fn corrupt_count(&self) -> u64 {
        self.corrupt.load(Ordering::Relaxed)
    }

    /// Drains the warnings collected since the last call, for the caller to log.
    pub fn take_warnings(&self) -> Vec<CacheWarning> {
        std::mem::take(&mut *db::lock(&self.warnings))
    }

    /// Where the next temp file goes: one of the [`fsutil::spread`] subdirectories of this
    /// instance's own temp directory.
    pub(crate) fn tmp_dir(&self) -> PathBuf {
        fsutil::spread(&self.tmp)
    }

    /// This instance's own temp directory, parent of every [`LocalCache::tmp_dir`].
    #[cfg(test)]
    pub(crate) fn tmp_root(&self) -> &Path {
        &self.tmp
    }

    pub(crate) fn key(kind: Kind, digest: &Digest) -> Key {
        Key {
            kind,
            function: digest.function,
            hash: digest.hash,
        }
    }

    /// Records a use of an entry in the index; an index failure becomes a warning.
    pub(crate) fn note_used(&self, kind: Kind, digest: &Digest, size: u64) {
        if let Err(e) = self.index.touch(Self::key(kind, digest), size) {
            self.warn(CacheWarning::Index(e.to_string()));
        }
    }

    /// Records that an entry's file is gone.
    pub(crate) fn note_gone(&self, kind: Kind, digest: &Digest) {
        if kind == Kind::Action {
            self.action_results.forget(digest);
        }
        // Checked again under the index's lock: a concurrent writer may have put it back.
        let still_gone = || self.is_gone(kind, digest);
        if let Err(e) = self.index.forget_if(Self::key(kind, digest), still_gone) {
            self.warn(CacheWarning::Index(e.to_string()));
        }
    }

    /// Whether the entry is absent from its store (a store that cannot be read counts as
    /// holding it, so that its index row is kept).
    pub(crate) fn is_gone(&self, kind: Kind, digest: &Digest) -> bool {
        match kind {
            Kind::Blob => fs::symlink_metadata(self.blob_path(digest)).is_err(),
            Kind::Action => self
                .actions
                .contains(digest.function, &digest.hash)
                .is_ok_and(|found| !found),
        }
    }

    /// A blob file whose length is not the size `digest` names. Files are named by hash only,
    /// so either the asker's size is wrong and the file holds an intact blob of another size
    /// (left alone: the asker gets a plain miss), or the file is damaged (deleted and
    /// reported). Hashing the file tells which. Callers bound the bytes this reads.
    pub(crate) fn wrong_length(&self, digest: &Digest, path: &Path) {
        match Digest::of_file(digest.function, path) {
            Ok(actual) if actual.hash == digest.hash => {}
            Ok(_) => self.discard_corrupt(digest, path),
            Err(_) => {}
        }
    }

    /// Deletes a corrupt blob, drops it from the index and records a warning.
    pub(crate) fn discard_corrupt(&self, digest: &Digest, path: &Path) {
        let _ = fs::remove_file(path);
        self.note_gone(Kind::Blob, digest);
        self.corrupt.fetch_add(1, Ordering::Relaxed);
        self.warn(CacheWarning::CorruptBlob {
            digest: *digest,
            path: path.to_path_buf(),
        });
    }

    /// Deletes a corrupt action-cache entry, drops it from the index and records a warning.
    pub(crate) fn discard_corrupt_action(&self, action: &Digest) {
        if let Err(e) = self.actions.delete(action.function, &action.hash) {
            self.warn(CacheWarning::Index(e.to_string()));
        }
        self.note_gone(Kind::Action, action);
        self.corrupt.fetch_add(1, Ordering::Relaxed);
        self.warn(CacheWarning::CorruptActionResult {
            action: *action,
            path: self.actions.path().to_path_buf(),
        });
    }

    pub(crate) fn warn(&self, warning: CacheWarning) {
        let mut warnings = db::lock(&self.warnings);
        if warnings.len() < MAX_WARNINGS {
            warnings.push(warning);
        }
    }
}

impl Drop for LocalCache {
    fn drop(&mut self) {
        // Empty unless a write is still unfinished elsewhere; then it stays until it is stale.
        for n in 0..fsutil::SPREAD {
            let _ = fs::remove_dir(self.tmp.join(format!("{n:x}")));
        }
        let _ = fs::remove_dir(&self.tmp);
    }
}

impl fmt::Debug for LocalCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCache")
            .field("root", &self.root)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
