//! Integration tests of the per-user store: CAS, action cache, eviction, repairs.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use kiln_cache::{
    CacheConfig, CacheError, CacheStats, CacheWarning, CopyCheck, Digest, DigestFunction,
    LocalCache,
};

fn open(root: &Path) -> LocalCache {
    LocalCache::open(root, CacheConfig::default()).unwrap()
}

fn blob_path(root: &Path, d: &Digest) -> std::path::PathBuf {
    let hex = d.hex();
    root.join("cas")
        .join(d.function.name())
        .join(&hex[..2])
        .join(hex)
}

/// Overwrites a read-only blob file in place, as disk corruption or a stray tool would.
fn clobber(path: &Path, bytes: &[u8]) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(path, bytes).unwrap();
}

#[test]
fn put_read_roundtrip_for_both_functions() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    for f in DigestFunction::ALL {
        let d = cache.put_bytes(f, b"hello").unwrap();
        assert_eq!(d, Digest::of_bytes(f, b"hello"));
        assert!(cache.contains(&d));
        assert_eq!(cache.read(&d).unwrap(), Some(b"hello".to_vec()));
        let path = blob_path(dir.path(), &d);
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o444);
    }
    let empty = cache.put_bytes(DigestFunction::Blake3, b"").unwrap();
    assert_eq!(cache.read(&empty).unwrap(), Some(Vec::new()));
    let absent = Digest::of_bytes(DigestFunction::Blake3, b"absent");
    assert!(!cache.contains(&absent));
    assert_eq!(cache.read(&absent).unwrap(), None);
    assert_eq!(
        cache.stats().unwrap(),
        CacheStats {
            blobs: 3,
            bytes: 10,
            ac_entries: 0
        }
    );
}

#[test]
fn put_file_names_blob_by_the_bytes_stored() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir.path().join("cache"));
    let src = dir.path().join("src.txt");
    fs::write(&src, b"file content").unwrap();
    let d = cache.put_file(DigestFunction::Sha256, &src).unwrap();
    assert_eq!(d, Digest::of_file(DigestFunction::Sha256, &src).unwrap());
    let stored = blob_path(&dir.path().join("cache"), &d);
    let ino = fs::metadata(&stored).unwrap().ino();
    // Storing the same content again does not rewrite the blob.
    assert_eq!(cache.put_file(DigestFunction::Sha256, &src).unwrap(), d);
    assert_eq!(fs::metadata(&stored).unwrap().ino(), ino);
    // No temp files are left behind.
    assert_eq!(temp_files(&dir.path().join("cache")), 0);
}

#[test]
fn put_file_expecting_mismatch_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let cache = open(&root);
    let src = dir.path().join("src");
    fs::write(&src, b"actual").unwrap();
    let expected = Digest::of_bytes(DigestFunction::Blake3, b"expected");
    let err = cache.put_file_expecting(&src, &expected).unwrap_err();
    match err {
        CacheError::DigestMismatch {
            path,
            expected: e,
            actual,
        } => {
            assert_eq!(path, src);
            assert_eq!(e, expected);
            assert_eq!(actual, Digest::of_bytes(DigestFunction::Blake3, b"actual"));
            assert!(!cache.contains(&actual));
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(!cache.contains(&expected));
    assert_eq!(temp_files(&root), 0);
    assert_eq!(cache.stats().unwrap().blobs, 0);
    let good = Digest::of_bytes(DigestFunction::Blake3, b"actual");
    assert_eq!(cache.put_file_expecting(&src, &good).unwrap(), good);
    assert!(cache.contains(&good));
}

#[test]
fn corrupt_or_truncated_blob_is_never_returned_and_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    let out = tempfile::tempdir().unwrap();
    for (i, bad) in [&b"HELLO"[..], &b"hel"[..], &b""[..]].iter().enumerate() {
        let d = cache.put_bytes(DigestFunction::Blake3, b"hello").unwrap();
        let path = blob_path(dir.path(), &d);
        clobber(&path, bad);
        // Each access path must refuse the bad blob; rotate which one meets it first.
        let dest = out.path().join(format!("out{i}"));
        match i {
            0 => assert_eq!(cache.read(&d).unwrap(), None),
            1 => assert!(!cache.materialize(&d, &dest, false).unwrap()),
            _ => assert!(!cache.link_for_sandbox(&d, &dest, false).unwrap()),
        }
        assert!(!path.exists(), "corrupt blob must be deleted");
        assert!(!dest.exists(), "corrupt blob must not be materialized");
        assert_eq!(cache.read(&d).unwrap(), None);
    }
    assert_eq!(cache.corrupt_count(), 3);
    let warnings = cache.take_warnings();
    assert_eq!(warnings.len(), 3);
    assert!(matches!(warnings[0], CacheWarning::CorruptBlob { .. }));
    // Once re-stored, the blob is served again.
    let d = cache.put_bytes(DigestFunction::Blake3, b"hello").unwrap();
    assert_eq!(cache.read(&d).unwrap(), Some(b"hello".to_vec()));
}

#[test]
fn truncated_blob_is_rewritten_by_put() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    let d = cache.put_bytes(DigestFunction::Blake3, b"hello").unwrap();
    clobber(&blob_path(dir.path(), &d), b"he");
    assert!(!cache.contains(&d));
    cache.put_bytes(DigestFunction::Blake3, b"hello").unwrap();
    assert_eq!(cache.read(&d).unwrap(), Some(b"hello".to_vec()));
}

#[test]
fn materialize_gives_an_independent_copy_with_mode() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir.path().join("cache"));
    let d = cache
        .put_bytes(DigestFunction::Blake3, b"#!/bin/sh\n")
        .unwrap();
    let blob = blob_path(&dir.path().join("cache"), &d);
    let exe = dir.path().join("out/bin/tool");
    assert!(cache.materialize(&d, &exe, true).unwrap());
    let meta = fs::metadata(&exe).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o755);
    assert_ne!(meta.ino(), fs::metadata(&blob).unwrap().ino());
    fs::write(&exe, b"edited").unwrap();
    assert_eq!(cache.read(&d).unwrap(), Some(b"#!/bin/sh\n".to_vec()));
    // Materializing again replaces the edited file atomically.
    assert!(cache.materialize(&d, &exe, false).unwrap());
    assert_eq!(fs::read(&exe).unwrap(), b"#!/bin/sh\n");
    assert_eq!(fs::metadata(&exe).unwrap().mode() & 0o777, 0o644);
    let names: Vec<_> = fs::read_dir(dir.path().join("out/bin")).unwrap().collect();
    assert_eq!(names.len(), 1, "no temp files beside the output");
    let missing = Digest::of_bytes(DigestFunction::Blake3, b"missing");
    assert!(!cache
        .materialize(&missing, &dir.path().join("m"), false)
        .unwrap());
    assert!(!dir.path().join("m").exists());
}

#[test]
fn materialize_staged_copies_through_the_staging_directory() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir.path().join("cache"));
    let d = cache.put_bytes(DigestFunction::Blake3, b"staged").unwrap();
    let dest = dir.path().join("out/bin/pkg/file");
    let staging = dir.path().join("out/.tmp");
    assert!(cache
        .materialize_staged(&d, &dest, true, &staging, CopyCheck::Hash)
        .unwrap());
    assert_eq!(fs::read(&dest).unwrap(), b"staged");
    assert_eq!(fs::metadata(&dest).unwrap().mode() & 0o777, 0o755);
    let subdirs: Vec<_> = fs::read_dir(&staging).unwrap().flatten().collect();
    assert_eq!(
        subdirs.len(),
        1,
        "made in one subdirectory of the staging directory"
    );
    assert_eq!(
        fs::read_dir(subdirs[0].path()).unwrap().count(),
        0,
        "temp renamed away"
    );
    assert_eq!(fs::read_dir(dest.parent().unwrap()).unwrap().count(), 1);
    let missing = Digest::of_bytes(DigestFunction::Blake3, b"missing");
    let absent = dir.path().join("out/bin/pkg/absent");
    assert!(!cache
        .materialize_staged(&missing, &absent, false, &staging, CopyCheck::Hash)
        .unwrap());
    assert!(!absent.exists());
    let left = fs::read_dir(&staging).unwrap().flatten();
    assert!(
        left.into_iter()
            .all(|d| fs::read_dir(d.path()).unwrap().count() == 0),
        "no temp file left in the staging directory"
    );
}

#[test]
fn a_copy_of_a_blob_the_caller_hashed_is_checked_by_length_and_a_short_blob_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir.path().join("cache"));
    let staging = dir.path().join("out/.tmp");
    let d = cache
        .put_bytes(DigestFunction::Blake3, b"relinked")
        .unwrap();
    let dest = dir.path().join("out/bin/tool");
    assert!(cache
        .materialize_staged(&d, &dest, true, &staging, CopyCheck::Length)
        .unwrap());
    assert_eq!(fs::read(&dest).unwrap(), b"relinked");
    assert_eq!(fs::metadata(&dest).unwrap().mode() & 0o777, 0o755);
    // A blob of another length since (cut short behind the cache's back) is hashed after all,
    // found corrupt, removed, and not copied.
    let blob = blob_path(&dir.path().join("cache"), &d);
    clobber(&blob, b"relink");
    let other = dir.path().join("out/bin/other");
    assert!(!cache
        .materialize_staged(&d, &other, true, &staging, CopyCheck::Length)
        .unwrap());
    assert!(!other.exists(), "a corrupt blob must not be materialized");
    assert!(!blob.exists(), "a corrupt blob must be deleted");
    assert_eq!(cache.corrupt_count(), 1);
}

#[test]
fn link_for_sandbox_hardlinks_plain_files_and_copies_executables() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir.path().join("cache"));
    let d = cache.put_bytes(DigestFunction::Sha256, b"input").unwrap();
    let blob = blob_path(&dir.path().join("cache"), &d);
    let staged = dir.path().join("sandbox/in/a.txt");
    assert!(cache.link_for_sandbox(&d, &staged, false).unwrap());
    assert_eq!(
        fs::metadata(&staged).unwrap().ino(),
        fs::metadata(&blob).unwrap().ino()
    );
    let tool = dir.path().join("sandbox/in/tool");
    assert!(cache.link_for_sandbox(&d, &tool, true).unwrap());
    assert_eq!(fs::metadata(&tool).unwrap().mode() & 0o777, 0o555);
    assert_ne!(
        fs::metadata(&tool).unwrap().ino(),
        fs::metadata(&blob).unwrap().ino()
    );
}

#[test]
fn blob_deleted_behind_the_cache_is_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    let d = cache
        .put_bytes(DigestFunction::Blake3, b"gone soon")
        .unwrap();
    fs::remove_file(blob_path(dir.path(), &d)).unwrap();
    assert_eq!(cache.read(&d).unwrap(), None);
    assert!(!cache.contains(&d));
    assert!(!cache.materialize(&d, &dir.path().join("x"), false).unwrap());
    assert!(!cache
        .link_for_sandbox(&d, &dir.path().join("y"), false)
        .unwrap());
    // The index row is repaired lazily.
    assert_eq!(cache.stats().unwrap().blobs, 0);
    assert!(cache.take_warnings().is_empty());
}

#[test]
fn action_results_roundtrip_and_truncated_entry_is_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    let action = Digest::of_bytes(DigestFunction::Blake3, b"action");
    assert_eq!(cache.get_action_result(&action).unwrap(), None);
    cache.put_action_result(&action, b"result v1").unwrap();
    cache.put_action_result(&action, b"result v2").unwrap();
    assert_eq!(
        cache.get_action_result(&action).unwrap(),
        Some(b"result v2".to_vec())
    );
    assert_eq!(cache.stats().unwrap().ac_entries, 1);
    // Same hash under the other function is a different entry.
    let sha = Digest {
        function: DigestFunction::Sha256,
        ..action
    };
    assert_eq!(cache.get_action_result(&sha).unwrap(), None);

    // Cut two bytes off the stored entry, as a torn write would.
    let db = rusqlite::Connection::open(dir.path().join("ac.sqlite")).unwrap();
    let cut = db
        .execute(
            "UPDATE action_results SET entry = substr(entry, 1, length(entry) - 2) \
             WHERE function = 'blake3' AND hash = ?1",
            [&action.hash[..]],
        )
        .unwrap();
    assert_eq!(cut, 1, "the entry is a row of ac.sqlite");
    assert_eq!(cache.get_action_result(&action).unwrap(), None);
    let left: i64 = db
        .query_row("SELECT count(*) FROM action_results", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0, "the damaged entry is deleted");
    match &cache.take_warnings()[..] {
        [CacheWarning::CorruptActionResult { action: named, .. }] => assert_eq!(*named, action),
        other => panic!("expected one corrupt-entry warning, got {other:?}"),
    }
    assert_eq!(cache.stats().unwrap().ac_entries, 0);
    // A new result replaces it.
    cache.put_action_result(&action, b"result v3").unwrap();
    assert_eq!(
        cache.get_action_result(&action).unwrap(),
        Some(b"result v3".to_vec())
    );
}

#[test]
fn gc_evicts_least_recently_used_first() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    let f = DigestFunction::Blake3;
    let a = cache.put_bytes(f, &[b'a'; 100]).unwrap();
    let b = cache.put_bytes(f, &[b'b'; 100]).unwrap();
    let c = cache.put_bytes(f, &[b'c'; 100]).unwrap();
    // Use `a` again: `b` is now the least recently used.
    assert!(cache.read(&a).unwrap().is_some());
    let stats = cache.gc(250).unwrap();
    assert_eq!(stats.removed, 1);
    assert_eq!(stats.freed_bytes, 100);
    assert!(!cache.contains(&b));
    assert!(cache.contains(&a) && cache.contains(&c));
    assert_eq!(cache.stats().unwrap().bytes, 200);
    // Target already met: nothing happens.
    assert_eq!(cache.gc(1000).unwrap().removed, 0);
}

#[test]
fn enforce_cap_keeps_total_under_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let config = CacheConfig {
        max_size_bytes: 1000,
        fsync: true,
        ..CacheConfig::default()
    };
    let cache = LocalCache::open(dir.path(), config).unwrap();
    let mut digests = Vec::new();
    for i in 0..30u8 {
        digests.push(cache.put_bytes(DigestFunction::Blake3, &[i; 100]).unwrap());
    }
    assert_eq!(cache.stats().unwrap().bytes, 3000);
    let stats = cache.enforce_cap().unwrap();
    let after = cache.stats().unwrap();
    assert!(after.bytes <= 1000, "total {} over cap", after.bytes);
    assert_eq!(stats.freed_bytes, 3000 - after.bytes);
    // The newest survive, the oldest are gone, on disk too.
    assert!(cache.contains(&digests[29]));
    assert!(!blob_path(dir.path(), &digests[0]).exists());
    assert_eq!(cache.enforce_cap().unwrap().removed, 0);
}

#[test]
fn index_is_rebuilt_from_disk_and_stale_temp_files_survive_only_an_hour() {
    let dir = tempfile::tempdir().unwrap();
    let d;
    {
        let cache = open(dir.path());
        d = cache
            .put_bytes(DigestFunction::Sha256, b"survivor")
            .unwrap();
        cache.put_action_result(&d, b"r").unwrap();
    }
    // A crash that loses the index: the files are the truth.
    for name in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
        let _ = fs::remove_file(dir.path().join(name));
    }
    let fresh_tmp = dir.path().join("tmp/.kiln-tmp.fresh");
    fs::write(&fresh_tmp, b"partial").unwrap();
    let old_tmp = dir.path().join("tmp/.kiln-tmp.old");
    fs::write(&old_tmp, b"left by a killed process").unwrap();
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    let age = |path: &std::path::Path| {
        fs::File::open(path)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap()
    };
    fs::File::options()
        .write(true)
        .open(&old_tmp)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    // Instance directories: one whose subdirectory was written to recently belongs to a live
    // cache (its own time stops moving once its subdirectories exist); one all old does not.
    let (live, dead) = (dir.path().join("tmp/1.1"), dir.path().join("tmp/2.2"));
    for instance in [&live, &dead] {
        fs::create_dir_all(instance.join("0")).unwrap();
        age(&instance.join("0"));
        fs::create_dir_all(instance.join("1")).unwrap();
    }
    age(&dead.join("1"));
    age(&live);
    age(&dead);
    let cache = open(dir.path());
    assert!(live.exists(), "a live instance's directory stays");
    assert!(!dead.exists(), "an abandoned instance's directory goes");
    assert!(
        !old_tmp.exists(),
        "temp files older than an hour are removed at open"
    );
    let stats = cache.stats().unwrap();
    assert_eq!((stats.blobs, stats.ac_entries), (1, 1));
    assert!(
        fresh_tmp.exists(),
        "a recent temp file may belong to a live writer"
    );
    assert_eq!(cache.read(&d).unwrap(), Some(b"survivor".to_vec()));
}

#[test]
fn put_file_owned_moves_a_lone_file_and_copies_a_linked_one() {
    let dir = tempfile::tempdir().unwrap();
    let cache = kiln_cache::LocalCache::open(
        &dir.path().join("cache"),
        kiln_cache::CacheConfig::default(),
    )
    .unwrap();
    let f = kiln_cache::DigestFunction::Blake3;

    // A file with one link is moved: it leaves its place and the blob holds its bytes.
    let lone = dir.path().join("lone.txt");
    std::fs::write(&lone, b"moved content").unwrap();
    let (digest, written) = cache.put_file_owned(f, &lone).unwrap();
    assert!(written);
    assert!(!lone.exists(), "a lone output is moved into the store");
    assert_eq!(cache.read(&digest).unwrap().unwrap(), b"moved content");

    // A file with another hard link (an action linked an input to its output) is copied, and
    // the other link keeps its content and mode.
    let source = dir.path().join("source.txt");
    let linked = dir.path().join("linked.txt");
    std::fs::write(&source, b"shared inode").unwrap();
    std::fs::hard_link(&source, &linked).unwrap();
    let mode_before = std::fs::metadata(&source).unwrap().permissions();
    let (digest, _) = cache.put_file_owned(f, &linked).unwrap();
    assert!(linked.exists() && source.exists());
    assert_eq!(
        std::fs::metadata(&source).unwrap().permissions(),
        mode_before
    );
    assert_eq!(cache.read(&digest).unwrap().unwrap(), b"shared inode");
}

#[test]
fn put_file_owned_copies_a_file_from_another_file_system() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let cache_root = dir.path().join("cache");
    let cache =
        kiln_cache::LocalCache::open(&cache_root, kiln_cache::CacheConfig::default()).unwrap();
    let Ok(shm) = tempfile::tempdir_in("/dev/shm") else {
        eprintln!("skipped: no /dev/shm");
        return;
    };
    let cache_device = std::fs::metadata(&cache_root).unwrap().dev();
    if std::fs::metadata(shm.path()).unwrap().dev() == cache_device {
        eprintln!("skipped: /dev/shm is on the cache's file system");
        return;
    }
    let f = kiln_cache::DigestFunction::Blake3;
    // A small output and a binary-sized one.
    for size in [10u32 << 10, 3 << 20] {
        let content: Vec<u8> = (0..size).map(|i: u32| (i % 251) as u8).collect();
        let output = shm.path().join("output.bin");
        std::fs::write(&output, &content).unwrap();
        let (digest, written) = cache.put_file_owned(f, &output).unwrap();
        assert!(written, "a new blob is written by this call ({size} bytes)");
        assert_eq!(digest, kiln_cache::Digest::of_bytes(f, &content));
        let blob = cache.blob_path(&digest);
        assert_eq!(std::fs::read(&blob).unwrap(), content);
        assert_eq!(std::fs::metadata(&blob).unwrap().dev(), cache_device);
        let mode = std::fs::metadata(&blob).unwrap().permissions().mode();
        assert_eq!(mode & 0o222, 0, "a stored blob is read-only, got {mode:o}");
        // Stored again (an unchanged output of the next build): found by its digest, and the
        // blob is not replaced.
        std::fs::write(&output, &content).unwrap();
        let before = std::fs::metadata(&blob).unwrap().ino();
        assert_eq!(
            cache.put_file_owned(f, &output).unwrap(),
            (digest, false),
            "not written again: the caller must not take the stored blob as verified ({size} bytes)"
        );
        assert_eq!(std::fs::metadata(&blob).unwrap().ino(), before);
    }
}

#[test]
fn reopening_reads_the_index_not_the_directory_and_lookups_refresh_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = {
        let cache = open(dir.path());
        let a = cache.put_bytes(DigestFunction::Sha256, b"older").unwrap();
        let b = cache.put_bytes(DigestFunction::Sha256, b"newer").unwrap();
        (a, b)
    };
    // A file the index does not know: a start-up that scanned the directory would count it.
    let stray = Digest::of_bytes(DigestFunction::Sha256, b"stray");
    let stray_path = blob_path(dir.path(), &stray);
    fs::create_dir_all(stray_path.parent().unwrap()).unwrap();
    fs::write(&stray_path, b"stray").unwrap();
    let cache = open(dir.path());
    assert_eq!(cache.stats().unwrap().blobs, 2);
    // A presence check (what FindMissingBlobs and an action-cache hit do) refreshes `a`, so
    // eviction down to one blob's size takes `b`.
    assert!(cache.contains(&a));
    cache.gc(5).unwrap();
    assert!(cache.contains(&a));
    assert!(!cache.contains(&b));
}

#[test]
fn a_blob_verified_in_an_earlier_process_is_still_checked_after_any_change() {
    let dir = tempfile::tempdir().unwrap();
    let digest = {
        let cache = open(dir.path());
        let d = cache
            .put_bytes(DigestFunction::Blake3, b"verified once")
            .unwrap();
        // Past the racy window of the file's timestamps, so the verification is memoized.
        std::thread::sleep(std::time::Duration::from_millis(250));
        assert!(cache.verify(&d));
        d
    };
    let cache = open(dir.path());
    assert!(cache.verify(&digest), "an unchanged blob stays verified");
    // Same length, other bytes, the old mtime put back: only the ctime tells, and the memo no
    // longer vouches, so the blob is hashed, found corrupt and removed.
    let path = blob_path(dir.path(), &digest);
    let mtime = fs::metadata(&path).unwrap().modified().unwrap();
    clobber(&path, b"verified ONCE");
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), mtime);
    assert!(!cache.verify(&digest));
    assert!(!blob_path(dir.path(), &digest).exists());
    assert!(!cache.verify(&digest));
}

#[test]
fn the_action_result_memo_serves_only_verified_entries_and_follows_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let config = CacheConfig {
        action_result_memo_bytes: 1 << 20,
        ..CacheConfig::default()
    };
    let cache = LocalCache::open(dir.path(), config).unwrap();
    // The stored entry of an action, read and written behind the cache's back.
    let db = rusqlite::Connection::open(dir.path().join("ac.sqlite")).unwrap();
    let stored = |d: &Digest| -> Option<Vec<u8>> {
        db.query_row(
            "SELECT entry FROM action_results WHERE hash = ?1",
            [&d.hash[..]],
            |r| r.get(0),
        )
        .ok()
    };
    let overwrite = |d: &Digest, bytes: &[u8]| {
        let n = db
            .execute(
                "UPDATE action_results SET entry = ?2 WHERE hash = ?1",
                rusqlite::params![&d.hash[..], bytes],
            )
            .unwrap();
        assert_eq!(n, 1);
    };
    let get = |d: &Digest| cache.get_action_result(d).unwrap();
    let x = Digest::of_bytes(DigestFunction::Blake3, b"action x");
    let y = Digest::of_bytes(DigestFunction::Blake3, b"action y");

    // A damaged entry read for the first time is reported and a miss, memo or not.
    cache.put_action_result(&x, b"x v1").unwrap();
    let entry = stored(&x).unwrap();
    overwrite(&x, &entry[..entry.len() - 1]);
    assert_eq!(get(&x), None);
    assert_eq!(cache.corrupt_count(), 1);

    // Once read and verified, the entry is answered from memory: damage after that is not
    // read, so it cannot be served either.
    cache.put_action_result(&x, b"x v2").unwrap();
    assert_eq!(get(&x).as_deref(), Some(&b"x v2"[..]));
    overwrite(&x, b"damaged");
    assert_eq!(get(&x).as_deref(), Some(&b"x v2"[..]));

    // A replacement is read from the store, never the older remembered payload.
    cache.put_action_result(&x, b"x v3").unwrap();
    assert_eq!(get(&x).as_deref(), Some(&b"x v3"[..]));

    // A hit from memory still counts as a use for eviction: `x`, used after `y` was stored,
    // outlives it.
    cache.put_action_result(&y, b"y v1").unwrap();
    assert_eq!(get(&x).as_deref(), Some(&b"x v3"[..]));
    let one_entry = stored(&x).unwrap().len() as u64;
    assert_eq!(cache.gc(one_entry).unwrap().removed, 1);
    assert!(stored(&x).is_some() && stored(&y).is_none());
    assert_eq!(get(&y), None);

    // An evicted entry is gone from memory too.
    assert_eq!(cache.gc(0).unwrap().removed, 1);
    assert_eq!(get(&x), None, "evicted, so a miss");
    assert_eq!(cache.corrupt_count(), 1);
}

#[test]
fn action_cache_files_of_the_older_layout_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = dir.path().join("ac/blake3/ab");
    fs::create_dir_all(&legacy).unwrap();
    fs::write(legacy.join("ab".repeat(32)), b"an entry of the file layout").unwrap();
    let cache = open(dir.path());
    assert!(!dir.path().join("ac").exists());
    assert_eq!(cache.stats().unwrap().ac_entries, 0);
}

#[test]
fn each_open_cache_writes_in_a_temp_directory_of_its_own_removed_when_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let subdirs = || -> Vec<std::path::PathBuf> {
        fs::read_dir(dir.path().join("tmp"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect()
    };
    let first = open(dir.path());
    let second = open(dir.path());
    assert_eq!(subdirs().len(), 2, "one per open cache");
    first.put_bytes(DigestFunction::Blake3, b"stored").unwrap();
    drop(first);
    assert_eq!(
        subdirs().len(),
        1,
        "a dropped cache leaves no temp directory"
    );
    // Removed behind its back (as stale, by another process): it is made again.
    fs::remove_dir_all(&subdirs()[0]).unwrap();
    second
        .put_bytes(DigestFunction::Blake3, b"stored too")
        .unwrap();
    drop(second);
    assert!(subdirs().is_empty());
}

/// Files under the cache's `tmp/` (each open cache has its own directory there, with
/// subdirectories).
fn temp_files(root: &std::path::Path) -> usize {
    assert!(
        root.join("tmp").is_dir(),
        "no tmp/ under {}",
        root.display()
    );
    kiln_cache::temp_file_count(root)
}
