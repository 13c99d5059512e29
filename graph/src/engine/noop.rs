//! The no-op check: a build whose request, workspace tree and every file it rested on are exactly
//! as the last successful build left them has nothing to do, and is answered from a record of that
//! build without loading, analyzing or keying anything.
//!
//! The record holds the stat (device, inode, size, mtime, ctime, mode) of every file whose content
//! the last build digested or trusted (BUILD and `.bzl` files, sources, host tools, outputs in
//! `kiln-out/`) and a fingerprint of every directory listing in the workspace (so a new file or
//! package anywhere is noticed).
//!
//! Git's racy-clean rule: a stat within 2 seconds of the build's start is not trusted alone, since
//! a same-size rewrite within one timestamp granule would leave it unchanged. Such a file (an
//! output the build just wrote, a source saved a moment before) is kept with the content digest the
//! build used, and the check re-hashes it; once a check finds it unchanged at a time when its stat
//! has settled, later writes must move its timestamps, and the record is rewritten to trust the
//! stat alone. A racy file whose digest the build did not note (a host path, a test's XML report)
//! gives no record, and so does one the build digested twice with different contents. Anything that differs sends the build down the normal path, which is correct
//! on its own; this check only skips work whose result is known.

use std::path::Path;
use std::time::{Duration, SystemTime};

use kiln_cache::{Digest, FileStat};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::sources::Observations;

/// Bump when the record's meaning changes.
const FORMAT: u32 = 4;
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
    /// Files whose stat was racy when recorded, with the content digest the build used: checked
    /// by stat and by content until a check finds them settled.
    racy: Vec<(String, StoredStat, Digest)>,
    /// Directories globs listed (hidden and symlinked ones included), with their fingerprints.
    listings: Vec<(String, String)>,
    /// Host paths that did not exist, and must still not.
    absent: Vec<String>,
    /// Environment variables analysis read, with their values (`None`: unset).
    env: Vec<(String, Option<String>)>,
    /// What the build reported, replayed as is.
    pub report: R,
}

impl<R> NoopRecord<R> {
    /// The files the recorded build rested on.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        let settled = self.files.iter().map(|(path, _)| path.as_str());
        settled.chain(self.racy.iter().map(|(path, _, _)| path.as_str()))
    }

    /// The directory listings the recorded build rested on.
    pub fn listings(&self) -> &[(String, String)] {
        &self.listings
    }
}

/// What [`check`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Validity {
    /// Something the record rested on differs: take the normal path.
    Stale,
    /// The record still describes the workspace.
    Valid,
    /// It does, and every racy file it held has now settled: the record was changed to trust
    /// their stats alone and should be stored again.
    ValidAndSettled,
}

/// Builds the record of a finished build, or `None` when some stat it rested on is racy and has no
/// noted digest (or a file changed while it was hashed): then the next build takes the normal path.
pub fn record<R>(
    root: &Path,
    request: &str,
    started: SystemTime,
    observed: &Observations,
    listings: Vec<(String, String)>,
    report: R,
) -> Option<NoopRecord<R>> {
    let limit = nanos(started.checked_sub(RACY_WINDOW)?);
    let digests = observed.digests.lock().ok()?;
    let rewritten = observed.rewritten.lock().ok()?;
    let mut absent = observed.absent.lock().ok()?.clone();
    absent.sort();
    absent.dedup();
    let env: Vec<(String, Option<String>)> = observed
        .env
        .lock()
        .ok()?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let observed = observed.files.lock().ok()?;
    let mut files: Vec<(String, StoredStat)> = Vec::with_capacity(observed.len());
    let mut racy = Vec::new();
    for (path, stat) in observed.iter() {
        let stat = (*stat)?;
        if settled(&stat, limit) {
            files.push((path.clone(), stored(&stat)));
        } else if rewritten.contains(path) {
            // Which content did the build rest on? Not one this record could name.
            return None;
        } else {
            racy.push((path.clone(), stored(&stat), *digests.get(path)?));
        }
    }
    files.sort();
    files.dedup();
    racy.sort();
    racy.dedup();
    Some(NoopRecord {
        format: FORMAT,
        kiln_version: env!("CARGO_PKG_VERSION").to_string(),
        request: request.to_string(),
        tree: tree_fingerprint(root),
        files,
        racy,
        listings,
        absent,
        env,
        report,
    })
}

/// Whether `record` still describes the workspace for `request`, checked at `now`: every stat
/// as recorded, every racy file's content as the build used it, every listing and the tree as
/// they were. When racy files all check out and have settled by `now`, they move into the
/// trusted-by-stat set (see the module comment) and the answer is [`Validity::ValidAndSettled`].
pub fn check<R>(
    root: &Path,
    request: &str,
    record: &mut NoopRecord<R>,
    now: SystemTime,
) -> Validity {
    if record.format != FORMAT
        || record.kiln_version != env!("CARGO_PKG_VERSION")
        || record.request != request
        || !record
            .env
            .iter()
            .all(|(name, value)| std::env::var(name).ok() == *value)
    {
        return Validity::Stale;
    }
    let stat_of = |path: &str| {
        std::fs::metadata(root.join(path)).map(|m| stored(&FileStat::from_metadata(&m)))
    };
    let files_ok = record
        .files
        .par_iter()
        .all(|(path, expected)| stat_of(path).is_ok_and(|stat| stat == *expected));
    // Stat, hash, stat again: a write during the hash either moves the stat or, when it falls in
    // the same granule, is caught by the next check, since the entry stays racy until then.
    let racy_ok = files_ok
        && record.racy.par_iter().all(|(path, expected, digest)| {
            stat_of(path).is_ok_and(|stat| stat == *expected)
                && Digest::of_file(digest.function, &root.join(path)).is_ok_and(|d| d == *digest)
                && stat_of(path).is_ok_and(|stat| stat == *expected)
        });
    let absent_ok = racy_ok
        && record
            .absent
            .par_iter()
            .all(|path| std::fs::metadata(root.join(path)).is_err());
    let fs = crate::load::DiskFs::new(root);
    let listings_ok = absent_ok
        && record.listings.par_iter().all(|(dir, fingerprint)| {
            crate::load::PackageFs::list_dir(&fs, dir)
                .is_ok_and(|listing| &crate::load::listing_fingerprint(&listing) == fingerprint)
        });
    if !listings_ok || tree_fingerprint(root) != record.tree {
        return Validity::Stale;
    }
    let limit = now.checked_sub(RACY_WINDOW).map(nanos).unwrap_or(0);
    let now_settled =
        |(_, stat, _): &(String, StoredStat, Digest)| stat.3 < limit && stat.4 < limit;
    if record.racy.is_empty() || !record.racy.iter().all(now_settled) {
        return Validity::Valid;
    }
    let racy = std::mem::take(&mut record.racy);
    record
        .files
        .extend(racy.into_iter().map(|(path, stat, _)| (path, stat)));
    record.files.sort();
    record.files.dedup();
    Validity::ValidAndSettled
}

/// Whether a stat is older than `limit` (nanoseconds since the epoch) by both timestamps.
fn settled(stat: &FileStat, limit: i64) -> bool {
    stat.mtime_ns < limit && stat.ctime_ns < limit
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

    fn valid<R>(root: &Path, request: &str, record: &mut NoopRecord<R>) -> bool {
        check(root, request, record, SystemTime::now()) != Validity::Stale
    }

    fn later() -> SystemTime {
        SystemTime::now() + Duration::from_secs(10)
    }

    #[test]
    fn an_untouched_workspace_is_still_valid() {
        let ws = workspace();
        let log = observe(ws.path(), &["a/BUILD", "a/x.txt"]);
        let mut record = make_record(ws.path(), "build //...", later(), &log, Vec::new(), ())
            .unwrap_or_else(|| panic!("no record"));
        assert!(valid(ws.path(), "build //...", &mut record));
        assert!(
            !valid(ws.path(), "test //...", &mut record),
            "another request must not match"
        );
    }

    #[test]
    fn an_edit_a_new_file_or_a_new_directory_invalidates() {
        let ws = workspace();
        let log = observe(ws.path(), &["a/BUILD", "a/x.txt"]);
        let mut record = make_record(ws.path(), "r", later(), &log, Vec::new(), ())
            .unwrap_or_else(|| panic!("no record"));
        std::fs::write(ws.path().join("a/x.txt"), "y").unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !valid(ws.path(), "r", &mut record),
            "a same-size rewrite changes the stat"
        );

        let ws = workspace();
        let log = observe(ws.path(), &["a/BUILD"]);
        let mut record = make_record(ws.path(), "r", later(), &log, Vec::new(), ())
            .unwrap_or_else(|| panic!("no record"));
        std::fs::write(ws.path().join("a/new.txt"), "n").unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !valid(ws.path(), "r", &mut record),
            "a new file changes a listing"
        );

        let ws = workspace();
        let log = observe(ws.path(), &["a/BUILD"]);
        let mut record = make_record(ws.path(), "r", later(), &log, Vec::new(), ())
            .unwrap_or_else(|| panic!("no record"));
        std::fs::create_dir_all(ws.path().join("b/c")).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !valid(ws.path(), "r", &mut record),
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
        let mut record = make_record(ws.path(), "r", later(), &log, Vec::new(), ())
            .unwrap_or_else(|| panic!("no record"));
        std::fs::remove_file(ws.path().join("a/x.txt")).unwrap_or_else(|e| panic!("{e}"));
        assert!(!valid(ws.path(), "r", &mut record));
    }

    /// Observations of `paths` as a build that digested them (content as on disk) would leave.
    fn observe_digested(root: &Path, paths: &[&str]) -> Observations {
        let log = observe(root, paths);
        for path in paths {
            let digest = Digest::of_file(kiln_cache::DigestFunction::Blake3, &root.join(path))
                .unwrap_or_else(|e| panic!("{e}"));
            if let Ok(mut digests) = log.digests.lock() {
                digests.insert(path.to_string(), digest);
            }
        }
        log
    }

    #[test]
    fn a_racy_file_is_checked_by_content_until_it_settles() {
        let ws = workspace();
        let log = observe_digested(ws.path(), &["a/BUILD", "a/x.txt"]);
        // The build started just now: both files are racy, and their digests are known.
        let started = SystemTime::now();
        let mut record = make_record(ws.path(), "r", started, &log, Vec::new(), ())
            .unwrap_or_else(|| panic!("a racy file with a known digest still gives a record"));
        assert_eq!(record.files().count(), 2, "racy files are watched too");
        assert_eq!(
            check(ws.path(), "r", &mut record, SystemTime::now()),
            Validity::Valid,
            "unchanged, but not yet settled: checked by content, kept racy"
        );
        assert_eq!(record.racy.len(), 2);
        assert_eq!(
            check(ws.path(), "r", &mut record, later()),
            Validity::ValidAndSettled,
            "a check after the window trusts the stats from then on"
        );
        assert!(record.racy.is_empty());
        assert_eq!(record.files.len(), 2);
        assert_eq!(check(ws.path(), "r", &mut record, later()), Validity::Valid);
    }

    #[test]
    fn a_racy_file_whose_content_is_not_what_the_build_used_is_stale() {
        // The hazard the racy rule guards against: a same-size rewrite in the same timestamp
        // granule leaves the stat as recorded. Stand-in: the build noted a digest of other
        // content than the file holds, with the file's current stat.
        let ws = workspace();
        let log = observe(ws.path(), &["a/x.txt"]);
        if let Ok(mut digests) = log.digests.lock() {
            let other = Digest::of_bytes(kiln_cache::DigestFunction::Blake3, b"y");
            digests.insert("a/x.txt".to_string(), other);
        }
        let mut record = make_record(ws.path(), "r", SystemTime::now(), &log, Vec::new(), ())
            .unwrap_or_else(|| panic!("no record"));
        assert_eq!(check(ws.path(), "r", &mut record, later()), Validity::Stale);
        assert_eq!(record.racy.len(), 1, "a stale check promotes nothing");
    }

    #[test]
    fn a_racy_file_analysis_read_by_absolute_path_is_checked_by_the_content_it_read() {
        // The Go rules scan a source's header by its absolute path during analysis and note the
        // content they read; right after an edit the file is racy, and the record must still be
        // made (or every no-op within seconds of an edit takes the full path), checked by that
        // content, not by the content an action's key digested later.
        let ws = workspace();
        let absolute = ws.path().join("a/x.txt").to_string_lossy().to_string();
        let log = observe(ws.path(), &[absolute.as_str()]);
        log.note_content(
            &absolute,
            Digest::of_bytes(kiln_cache::DigestFunction::Blake3, b"x"),
        );
        let mut record = make_record(ws.path(), "r", SystemTime::now(), &log, Vec::new(), ())
            .unwrap_or_else(|| panic!("the content analysis read vouches for a racy stat"));
        assert_eq!(record.racy.len(), 1);
        assert_eq!(
            check(ws.path(), "r", &mut record, SystemTime::now()),
            Validity::Valid
        );
        std::fs::write(ws.path().join("a/x.txt"), "y").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            check(ws.path(), "r", &mut record, SystemTime::now()),
            Validity::Stale,
            "other content than analysis read"
        );
        // Analysis read one content and then another: no record can name it.
        log.note_content(
            &absolute,
            Digest::of_bytes(kiln_cache::DigestFunction::Blake3, b"y"),
        );
        assert!(make_record(ws.path(), "r", SystemTime::now(), &log, Vec::new(), ()).is_none());
    }

    #[test]
    fn a_racy_file_without_a_digest_or_digested_twice_differently_gives_no_record() {
        let ws = workspace();
        let log = observe(ws.path(), &["a/x.txt"]);
        assert!(
            make_record(ws.path(), "r", SystemTime::now(), &log, Vec::new(), ()).is_none(),
            "no digest noted"
        );
        let log = observe_digested(ws.path(), &["a/x.txt"]);
        if let Ok(mut rewritten) = log.rewritten.lock() {
            rewritten.insert("a/x.txt".to_string());
        }
        assert!(
            make_record(ws.path(), "r", SystemTime::now(), &log, Vec::new(), ()).is_none(),
            "two contents during one build"
        );
        assert!(
            make_record(ws.path(), "r", later(), &log, Vec::new(), ()).is_some(),
            "a settled stat is trusted as before"
        );
    }

    #[test]
    fn racy_files_are_promoted_only_all_together() {
        let ws = workspace();
        let written_x = SystemTime::now();
        std::thread::sleep(Duration::from_millis(2100));
        std::fs::write(ws.path().join("a/y.txt"), "y").unwrap_or_else(|e| panic!("{e}"));
        let written_y = SystemTime::now();
        let log = observe_digested(ws.path(), &["a/x.txt", "a/y.txt"]);
        // A build that started 1 s after x was written: both are racy for it.
        let started = written_x + Duration::from_secs(1);
        let mut record = make_record(ws.path(), "r", started, &log, Vec::new(), ())
            .unwrap_or_else(|| panic!("no record"));
        assert_eq!(record.racy.len(), 2);
        // x has settled by then, y has not.
        let between = written_y + Duration::from_millis(1000);
        assert_eq!(check(ws.path(), "r", &mut record, between), Validity::Valid);
        assert_eq!(record.racy.len(), 2, "no entry leaves the racy set alone");
        assert_eq!(
            check(ws.path(), "r", &mut record, later()),
            Validity::ValidAndSettled
        );
    }
}
