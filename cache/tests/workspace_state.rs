//! Integration tests of the per-workspace state: file-digest memo, action history, build lock.

use std::fs::{self, File};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use kiln_cache::{
    ActionRecord, BuildLock, CacheError, Digest, DigestFunction, FileStat, WorkspaceState,
};

const F: DigestFunction = DigestFunction::Blake3;

fn digest_one(state: &WorkspaceState, root: &Path, path: &str) -> (Digest, bool) {
    let mut results = state.digest_files(root, &[path.to_string()], F);
    let file = results.remove(0).unwrap();
    (file.digest, file.hashed)
}

#[test]
fn racy_clean_file_rewritten_with_same_size_and_mtime_is_rehashed() {
    let ws = tempfile::tempdir().unwrap();
    let state = WorkspaceState::open(&ws.path().join("state")).unwrap();
    let file = ws.path().join("a.go");
    fs::write(&file, b"aaaa").unwrap();
    let mtime = fs::metadata(&file).unwrap().modified().unwrap();
    let (d1, hashed) = digest_one(&state, ws.path(), "a.go");
    assert!(hashed);
    assert_eq!(d1, Digest::of_bytes(F, b"aaaa"));
    // Modified within 2 s of hashing: the memo must not vouch for it yet.
    assert!(digest_one(&state, ws.path(), "a.go").1);
    // Same size, same mtime (as on a file system with coarse timestamps).
    fs::write(&file, b"bbbb").unwrap();
    File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let (d2, hashed) = digest_one(&state, ws.path(), "a.go");
    assert!(hashed);
    assert_eq!(d2, Digest::of_bytes(F, b"bbbb"));
}

#[test]
fn memo_does_not_vouch_for_racy_entries_even_if_stat_matches() {
    let ws = tempfile::tempdir().unwrap();
    let state = WorkspaceState::open(ws.path()).unwrap();
    let now = SystemTime::now();
    let now_ns = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let stat = FileStat {
        dev: 1,
        ino: 2,
        size: 4,
        mtime_ns: now_ns - 1_000_000_000,
        ctime_ns: now_ns - 1_000_000_000,
        mode_exec: false,
    };
    let d = Digest::of_bytes(F, b"aaaa");
    state.record("x", &stat, &d, now).unwrap();
    assert_eq!(state.lookup("x", &stat, F).unwrap(), None);
    state
        .record("x", &stat, &d, now + Duration::from_secs(3))
        .unwrap();
    assert_eq!(state.lookup("x", &stat, F).unwrap(), Some(d));
    assert_eq!(state.load_file_memo(F).unwrap().lookup("x", &stat), Some(d));
    // Keyed on (path, function).
    assert_eq!(
        state.lookup("x", &stat, DigestFunction::Sha256).unwrap(),
        None
    );
    let changed = FileStat { ino: 3, ..stat };
    assert_eq!(state.lookup("x", &changed, F).unwrap(), None);
    state.forget_files(&["x".to_string()]).unwrap();
    assert_eq!(state.lookup("x", &stat, F).unwrap(), None);
}

#[test]
fn settled_files_are_hashed_once_in_parallel() {
    let ws = tempfile::tempdir().unwrap();
    let state = WorkspaceState::open(&ws.path().join(".kiln")).unwrap();
    let paths: Vec<String> = (0..500).map(|i| format!("src/f{i}.rs")).collect();
    fs::create_dir_all(ws.path().join("src")).unwrap();
    for (i, p) in paths.iter().enumerate() {
        fs::write(ws.path().join(p), format!("fn f{i}() {{}}")).unwrap();
    }
    // Let the files settle past the racy window.
    std::thread::sleep(Duration::from_millis(2100));
    let first = state.digest_files(ws.path(), &paths, F);
    assert!(first.iter().all(|r| r.as_ref().unwrap().hashed));
    let second = state.digest_files(ws.path(), &paths, F);
    for (i, (a, b)) in first.iter().zip(&second).enumerate() {
        let (a, b) = (a.as_ref().unwrap(), b.as_ref().unwrap());
        assert!(!b.hashed, "settled file {i} was re-hashed");
        assert_eq!(a.digest, b.digest);
        assert_eq!(
            b.digest,
            Digest::of_bytes(F, format!("fn f{i}() {{}}").as_bytes())
        );
    }
    // A file changed since is hashed again; a missing file is an error naming it.
    fs::write(ws.path().join(&paths[7]), b"changed, longer").unwrap();
    let mut asked = vec![
        paths[7].clone(),
        paths[8].clone(),
        "src/missing.rs".to_string(),
    ];
    let third = state.digest_files(ws.path(), &asked, F);
    assert!(third[0].as_ref().unwrap().hashed);
    assert!(!third[1].as_ref().unwrap().hashed);
    match &third[2] {
        Err(CacheError::Io { path, .. }) => assert!(path.ends_with("src/missing.rs")),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    asked.truncate(1);
    assert_eq!(
        state.digest_files(ws.path(), &asked, F)[0]
            .as_ref()
            .unwrap()
            .digest,
        Digest::of_bytes(F, b"changed, longer")
    );
}

fn record(key: &str, action_key: &str, build_id: i64, status: &str, ms: u64) -> ActionRecord {
    ActionRecord {
        label: "//svc:api".into(),
        mnemonic: "GoCompile".into(),
        output_key: key.into(),
        action_key: action_key.into(),
        inputs: vec![("svc/api.go".into(), format!("{action_key}/10"))],
        argv: vec!["go".into(), "tool".into(), "compile".into()],
        env: vec![("GOOS".into(), "linux".into())],
        platform: vec![("OSFamily".into(), "linux".into())],
        duration_ms: ms,
        status: status.into(),
        build_id,
    }
}

#[test]
fn action_history_keeps_latest_and_previous_different_record() {
    let ws = tempfile::tempdir().unwrap();
    let state = WorkspaceState::open(ws.path()).unwrap();
    let out = "bazel-out/svc/api.a";
    assert_eq!(state.last_two_actions(out).unwrap(), None);
    state
        .record_action(&record(out, "A", 1, "executed", 900))
        .unwrap();
    state
        .record_action(&record(out, "A", 2, "local_hit", 1))
        .unwrap();
    let h = state.last_two_actions(out).unwrap().unwrap();
    assert_eq!(
        (h.latest.build_id, h.latest.status.as_str()),
        (2, "local_hit")
    );
    assert_eq!(
        h.latest.duration_ms, 900,
        "a hit keeps the measured duration"
    );
    assert_eq!(h.previous, None);

    state
        .record_actions(&[
            record(out, "B", 3, "executed", 700),
            record("other", "X", 3, "executed", 5),
        ])
        .unwrap();
    state
        .record_action(&record(out, "B", 4, "remote_hit", 2))
        .unwrap();
    let h = state.last_two_actions(out).unwrap().unwrap();
    assert_eq!(h.latest.action_key, "B");
    assert_eq!(h.latest.build_id, 4);
    let prev = h.previous.unwrap();
    assert_eq!(prev, record(out, "A", 2, "local_hit", 900));

    state
        .record_action(&record(out, "C", 5, "executed", 300))
        .unwrap();
    let h = state.last_two_actions(out).unwrap().unwrap();
    assert_eq!(h.latest.action_key, "C");
    assert_eq!(h.previous.unwrap().action_key, "B");
    let durations = state.durations().unwrap();
    assert_eq!(durations.len(), 2);
    assert_eq!(durations[out], 300);
    assert_eq!(durations["other"], 5);
}

#[test]
fn build_lock_excludes_a_second_holder_until_released() {
    let dir = tempfile::tempdir().unwrap();
    let lock = BuildLock::acquire(dir.path()).unwrap();
    match BuildLock::try_acquire(dir.path()) {
        Err(CacheError::LockHeld { pid, path }) => {
            assert_eq!(pid, Some(std::process::id()));
            assert_eq!(path, dir.path().join("lock"));
        }
        other => panic!("expected LockHeld, got {other:?}"),
    }
    let (tx, rx) = mpsc::channel();
    let state_dir = dir.path().to_path_buf();
    let waiter = std::thread::spawn(move || {
        let second = BuildLock::acquire(&state_dir).unwrap();
        tx.send(()).unwrap();
        drop(second);
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "second acquirer must block while the lock is held"
    );
    drop(lock);
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    waiter.join().unwrap();
    let again = BuildLock::try_acquire(dir.path()).unwrap();
    assert_eq!(again.path(), dir.path().join("lock"));
}
