//! The no-op check: a build whose request, workspace tree and every file it rested on are exactly
//! as the last successful build left them has nothing to do, and is answered from a record of that
//! build without loading, analyzing or keying anything.
//!
//! The record holds the stat (device, inode, size, mtime, ctime, mode) of every file whose content
//! the last build digested or trusted (BUILD and `.bzl` files, sources, host tools, outputs in
//! `kiln-out/`) and a fingerprint of every directory listing in the workspace (so a new file or
//! package anywhere is noticed). It is written only when every one of those stats was settled
//! (older than the build by git's 2-second racy window), so a same-size rewrite within a timestamp
//! granule can never hide behind it. Anything that differs sends the build down the normal path,
//! which is correct on its own; this check only skips work whose result is known.

use std::path::Path;
use std::time::{Duration, SystemTime};

use kiln_cache::FileStat;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::sources::Observations;

/// Bump when the record's meaning changes.
const FORMAT: u32 = 1;
/// Git's racy-clean window: a stat this close to the build's start is not trusted.
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// A stat as stored: (dev, ino, size, mtime ns, ctime ns, executable).
type StoredStat = (u64, u64, u64, i64, i64, bool);

/// The last successful build of a request, with what it rested on and what it reported.
#[derive(Serialize, Deserialize)]
pub struct NoopRecord<R> {
    format: u32,
    kiln_version: String,
    request: String,
    tree: String,
    files: Vec<(String, StoredStat)>,
    /// Directories globs listed (hidden and symlinked ones included), with their fingerprints.
    listings: Vec<(String, String)>,
    /// What the build reported, replayed as is.
    pub report: R,
}

impl<R> NoopRecord<R> {
    /// The files the recorded build rested on.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.files.iter().map(|(path, _)| path.as_str())
    }

    /// The directory listings the recorded build rested on.
    pub fn listings(&self) -> &[(String, String)] {
        &self.listings
    }
}

/// Builds the record of a finished build, or `None` when some stat it rested on is not settled (or
/// a file changed while it was hashed): then the next build takes the normal path.
pub fn record<R>(
    root: &Path,
    request: &str,
    started: SystemTime,
    observed: &Observations,
    listings: Vec<(String, String)>,
    report: R,
) -> Option<NoopRecord<R>> {
    let limit = nanos(started.checked_sub(RACY_WINDOW)?);
    let observed = observed.files.lock().ok()?;
    let mut files: Vec<(String, StoredStat)> = Vec::with_capacity(observed.len());
    for (path, stat) in observed.iter() {
        let stat = (*stat)?;
        if stat.mtime_ns >= limit || stat.ctime_ns >= limit {
            return None;
        }
        files.push((path.clone(), stored(&stat)));
    }
    files.sort();
    files.dedup();
    Some(NoopRecord {
        format: FORMAT,
        kiln_version: env!("CARGO_PKG_VERSION").to_string(),
        request: request.to_string(),
        tree: tree_fingerprint(root),
        files,
        listings,
        report,
    })
}

/// Whether `record` still describes the workspace for `request`.
pub fn still_valid<R>(root: &Path, request: &str, record: &NoopRecord<R>) -> bool {
    if record.format != FORMAT
        || record.kiln_version != env!("CARGO_PKG_VERSION")
        || record.request != request
    {
        return false;
    }
    let files_ok = record.files.par_iter().all(|(path, expected)| {
        std::fs::metadata(root.join(path))
            .is_ok_and(|m| stored(&FileStat::from_metadata(&m)) == *expected)
    });
    let fs = crate::load::DiskFs::new(root);
    let listings_ok = record.listings.par_iter().all(|(dir, fingerprint)| {
        crate::load::PackageFs::list_dir(&fs, dir)
            .is_ok_and(|listing| &crate::load::listing_fingerprint(&listing) == fingerprint)
    });
    files_ok && listings_ok && tree_fingerprint(root) == record.tree
}

fn stored(stat: &FileStat) -> StoredStat {
    (
        stat.dev,
        stat.ino,
        stat.size,
        stat.mtime_ns,
        stat.ctime_ns,
        stat.mode_exec,
    )
}

fn nanos(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// A digest of every directory listing in the workspace (names and kinds), skipping `kiln-out`,
/// hidden directories and the contents of tagged cache directories, as package discovery does.
pub fn tree_fingerprint(root: &Path) -> String {
    let mut hasher = blake3::Hasher::new();
    let mut stack = vec![String::new()];
    while let Some(dir) = stack.pop() {
        let path = if dir.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&dir)
        };
        let Ok(read) = std::fs::read_dir(&path) else {
            hasher.update(b"!unreadable ");
            hasher.update(dir.as_bytes());
            continue;
        };
        let mut entries: Vec<(String, bool)> = read
            .flatten()
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.file_type().is_ok_and(|t| t.is_dir()),
                )
            })
            .collect();
        entries.sort();
        hasher.update(dir.as_bytes());
        hasher.update(b"\0");
        if !dir.is_empty() && crate::load::is_tagged_cache_dir(&path, &entries) {
            // A cache directory holds no packages; what changes inside it is not the build's.
            hasher.update(b"!cache\n");
            continue;
        }
        for (name, is_dir) in &entries {
            hasher.update(name.as_bytes());
            hasher.update(if *is_dir { b"/\0" } else { b"\0" });
            if *is_dir && !name.starts_with('.') && name != "kiln-out" {
                stack.push(if dir.is_empty() {
                    name.clone()
                } else {
                    format!("{dir}/{name}")
                });
            }
        }
        hasher.update(b"\n");
    }
    hasher.finalize().to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::record as make_record;
    use super::*;

    fn observe(root: &Path, paths: &[&str]) -> Observations {
        let log = Observations::default();
        for path in paths {
            let stat = std::fs::metadata(root.join(path))
                .ok()
                .map(|m| FileStat::from_metadata(&m));
            if let Ok(mut files) = log.files.lock() {
                files.push((path.to_string(), stat));
            }
        }
        log
    }

    fn workspace() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(dir.path().join("a")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("a/BUILD"), "genrule()").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("a/x.txt"), "x").unwrap_or_else(|e| panic!("{e}"));
        dir
    }

    fn later() -> SystemTime {
        SystemTime::now() + Duration::from_secs(10)
    }

    #[test]
    fn an_untouched_workspace_is_still_valid() {
        let ws = workspace();
        let log = observe(ws.path(), &["a/BUILD", "a/x.txt"]);
        let record = make_record(ws.path(), "build //...", later(), &log, Vec::new(), ())
            .unwrap_or_else(|| panic!("no record"));
        assert!(still_valid(ws.path(), "build //...", &record));
        assert!(
            !still_valid(ws.path(), "test //...", &record),
            "another request must not match"
        );
    }

    #[test]
    fn an_edit_a_new_file_or_a_new_directory_invalidates() {
        let ws = workspace();
        let log = observe(ws.path(), &["a/BUILD", "a/x.txt"]);
        let record = make_record(ws.path(), "r", later(), &log, Vec::new(), ())
            .unwrap_or_else(|| panic!("no record"));
        std::fs::write(ws.path().join("a/x.txt"), "y").unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !still_valid(ws.path(), "r", &record),
            "a same-size rewrite changes the stat"
        );

        let ws = workspace();
        let log = observe(ws.path(), &["a/BUILD"]);
        let record = make_record(ws.path(), "r", later(), &log, Vec::new(), ())
            .unwrap_or_else(|| panic!("no record"));
        std::fs::write(ws.path().join("a/new.txt"), "n").unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !still_valid(ws.path(), "r", &record),
            "a new file changes a listing"
        );

        let ws = workspace();
        let log = observe(ws.path(), &["a/BUILD"]);
        let record = make_record(ws.path(), "r", later(), &log, Vec::new(), ())
            .unwrap_or_else(|| panic!("no record"));
        std::fs::create_dir_all(ws.path().join("b/c")).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !still_valid(ws.path(), "r", &record),
            "a new directory changes a listing"
        );
    }

    #[test]
    fn kiln_out_and_hidden_directories_are_not_walked() {
        let ws = workspace();
        let before = tree_fingerprint(ws.path());
        std::fs::create_dir_all(ws.path().join("kiln-out/bin")).unwrap_or_else(|e| panic!("{e}"));
        let with_out = tree_fingerprint(ws.path());
        assert_ne!(before, with_out, "the root listing itself gains kiln-out");
        std::fs::write(ws.path().join("kiln-out/bin/z"), "z").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            with_out,
            tree_fingerprint(ws.path()),
            "files inside kiln-out are tracked by stat, not by walk"
        );
    }

    #[test]
    fn tagged_cache_directories_are_not_walked() {
        let ws = workspace();
        // Kiln's own cache kept inside the workspace tags itself.
        let cache = ws.path().join("cache");
        kiln_cache::LocalCache::open(&cache, kiln_cache::CacheConfig::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let before = tree_fingerprint(ws.path());
        std::fs::create_dir_all(cache.join("cas/new")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(before, tree_fingerprint(ws.path()), "inside the cache");
        // A tag without the signature tags nothing.
        let fake = ws.path().join("fake");
        std::fs::create_dir_all(&fake).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(fake.join("CACHEDIR.TAG"), "not a tag").unwrap_or_else(|e| panic!("{e}"));
        let with_fake = tree_fingerprint(ws.path());
        std::fs::create_dir_all(fake.join("pkg")).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(
            with_fake,
            tree_fingerprint(ws.path()),
            "an untagged directory"
        );
    }

    #[test]
    fn racy_or_unstable_stats_give_no_record() {
        let ws = workspace();
        let log = observe(ws.path(), &["a/BUILD"]);
        // The build "started" now: the file was written less than 2 s before, so it is racy.
        assert!(make_record(ws.path(), "r", SystemTime::now(), &log, Vec::new(), ()).is_none());
        let unstable = Observations::default();
        if let Ok(mut files) = unstable.files.lock() {
            files.push(("a/BUILD".to_string(), None));
        }
        assert!(make_record(ws.path(), "r", later(), &unstable, Vec::new(), ()).is_none());
    }

    #[test]
    fn a_deleted_file_invalidates() {
        let ws = workspace();
        let log = observe(ws.path(), &["a/x.txt"]);
        let record = make_record(ws.path(), "r", later(), &log, Vec::new(), ())
            .unwrap_or_else(|| panic!("no record"));
        std::fs::remove_file(ws.path().join("a/x.txt")).unwrap_or_else(|e| panic!("{e}"));
        assert!(!still_valid(ws.path(), "r", &record));
    }
}
