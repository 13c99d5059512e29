//! A file's identity by stat, for memos kept for the life of the process (a `kiln watch`
//! session): device, inode, size, mtime and ctime in nanoseconds. As with the engine's file-digest
//! memo, a stat whose mtime or ctime is within [`RACY_WINDOW`] of now is not to be trusted: a
//! rewrite of the same size within one timestamp tick would leave it unchanged.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Files changed this recently are read again every time.
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

/// (device, inode, size, mtime ns, ctime ns).
pub type StatKey = (u64, u64, u64, i128, i128);

/// The stat key of `path`, or `None` when it cannot be read.
pub fn stat_key(path: &Path) -> Option<StatKey> {
    let m = std::fs::metadata(path).ok()?;
    let ns = |secs: i64, nanos: i64| secs as i128 * 1_000_000_000 + nanos as i128;
    Some((
        m.dev(),
        m.ino(),
        m.size(),
        ns(m.mtime(), m.mtime_nsec()),
        ns(m.ctime(), m.ctime_nsec()),
    ))
}

/// Whether both timestamps are older than the racy window.
pub fn settled(key: &StatKey) -> bool {
    let Ok(now) = SystemTime::now().duration_since(UNIX_EPOCH) else {
        return false;
    };
    let limit = now.saturating_sub(RACY_WINDOW).as_nanos() as i128;
    key.3 < limit && key.4 < limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_file_is_not_settled_and_an_absent_one_has_no_key() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("f");
        assert_eq!(stat_key(&file), None);
        std::fs::write(&file, "x").unwrap_or_else(|e| panic!("{e}"));
        let key = stat_key(&file).unwrap_or_else(|| panic!("stat"));
        assert!(!settled(&key));
        let old = (key.0, key.1, key.2, 0, 0);
        assert!(settled(&old));
    }
}
