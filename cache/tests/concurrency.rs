//! Several `LocalCache` instances on one root, as several kiln processes would be.

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use kiln_cache::{CacheConfig, Digest, DigestFunction, LocalCache};

fn blob(i: usize) -> Vec<u8> {
    format!("blob number {i} ").repeat(i % 50 + 1).into_bytes()
}

#[test]
fn two_instances_write_the_same_blobs_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let src_dir = dir.path().join("src");
    fs::create_dir_all(&src_dir).unwrap();
    for i in 0..100 {
        fs::write(src_dir.join(i.to_string()), blob(i)).unwrap();
    }
    let caches = [
        Arc::new(LocalCache::open(&root, CacheConfig::default()).unwrap()),
        Arc::new(LocalCache::open(&root, CacheConfig::default()).unwrap()),
    ];
    let mut threads = Vec::new();
    for t in 0..8 {
        let cache = Arc::clone(&caches[t % 2]);
        let src_dir = src_dir.clone();
        threads.push(std::thread::spawn(move || {
            for i in 0..100 {
                let f = DigestFunction::ALL[i % 2];
                let d = if t % 4 < 2 {
                    cache.put_bytes(f, &blob(i)).unwrap()
                } else {
                    cache.put_file(f, &src_dir.join(i.to_string())).unwrap()
                };
                assert_eq!(d, Digest::of_bytes(f, &blob(i)));
                assert_eq!(cache.read(&d).unwrap(), Some(blob(i)));
                cache.put_action_result(&d, &blob(i)).unwrap();
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    for cache in &caches {
        cache.flush().unwrap();
        assert!(cache.take_warnings().is_empty());
    }
    let stats = caches[0].stats().unwrap();
    assert_eq!((stats.blobs, stats.ac_entries), (100, 100));
    drop(caches);
    assert_eq!(
        fs::read_dir(root.join("tmp")).unwrap().count(),
        0,
        "no temp file or directory left"
    );
}

#[test]
fn eviction_racing_with_readers_gives_misses_not_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let writer = LocalCache::open(&root, CacheConfig::default()).unwrap();
    let digests: Vec<Digest> = (0..200)
        .map(|i| writer.put_bytes(DigestFunction::Blake3, &blob(i)).unwrap())
        .collect();
    writer.flush().unwrap();
    let evictor = LocalCache::open(&root, CacheConfig::default()).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let out = dir.path().join("out");
    std::thread::scope(|s| {
        let done2 = Arc::clone(&done);
        s.spawn(move || {
            while !done2.load(Ordering::Relaxed) {
                evictor.gc(0).unwrap();
            }
        });
        for (i, d) in digests.iter().enumerate() {
            if let Some(bytes) = writer.read(d).unwrap() {
                assert_eq!(bytes, blob(i));
            }
            let dest = out.join(i.to_string());
            if writer.materialize(d, &dest, false).unwrap() {
                assert_eq!(fs::read(&dest).unwrap(), blob(i));
            }
            let _ = writer.contains(d);
        }
        done.store(true, Ordering::Relaxed);
    });
    assert_eq!(writer.corrupt_count(), 0);
}
