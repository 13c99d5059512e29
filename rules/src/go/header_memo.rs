//! Go file headers remembered for the life of the process, so that a `kiln watch` round scans
//! again only the files that changed (analysis of a binary reads the headers of every package it
//! imports, the standard library included: about 1,900 files for a small command).
//!
//! An entry is keyed on the file's path and stat (device, inode, size, mtime and ctime in
//! nanoseconds). As with the file-digest memo, a file whose mtime or ctime is within
//! [`crate::settled_stat::RACY_WINDOW`] of the moment it was read is not remembered: a rewrite of the same size within
//! one timestamp tick could otherwise leave its old header in use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use kiln_cache::{Digest, DigestFunction};

use super::scan::FileInfo;
use crate::settled_stat::{settled, stat_key, StatKey};

fn memo() -> &'static Mutex<HashMap<PathBuf, (StatKey, FileInfo)>> {
    static MEMO: OnceLock<Mutex<HashMap<PathBuf, (StatKey, FileInfo)>>> = OnceLock::new();
    MEMO.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The digest of the content last scanned at each path: what a remembered header came from.
fn scanned() -> &'static Mutex<HashMap<PathBuf, Digest>> {
    static SCANNED: OnceLock<Mutex<HashMap<PathBuf, Digest>>> = OnceLock::new();
    SCANNED.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The header of the file at `host`: remembered when its stat is unchanged, else read and
/// `scan`ned (errors are never remembered; a read error names the file as `name`).
pub fn header(
    host: &Path,
    name: &str,
    scan: impl FnOnce(&str) -> Result<FileInfo, String>,
) -> Result<FileInfo, String> {
    let key = stat_key(host);
    if let Some(key) = key {
        if let Ok(memo) = memo().lock() {
            if let Some((known, info)) = memo.get(host) {
                if *known == key {
                    return Ok(info.clone());
                }
            }
        }
    }
    let text = std::fs::read_to_string(host).map_err(|e| format!("{name}: {e}"))?;
    if let Ok(mut scanned) = scanned().lock() {
        scanned.insert(
            host.to_path_buf(),
            Digest::of_bytes(DigestFunction::Blake3, text.as_bytes()),
        );
    }
    let info = scan(&text)?;
    if let Some(key) = key.filter(settled) {
        if let Ok(mut memo) = memo().lock() {
            memo.insert(host.to_path_buf(), (key, info.clone()));
        }
    }
    Ok(info)
}

/// The digest of the content whose header [`header`] last gave for `host`, if it read one.
pub fn scanned_digest(host: &Path) -> Option<Digest> {
    scanned().lock().ok()?.get(host).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::time::{Duration, SystemTime};

    #[test]
    fn a_settled_file_is_scanned_once_and_a_changed_one_again() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("a.go");
        std::fs::write(&path, "package a\n").unwrap_or_else(|e| panic!("{e}"));
        let old = SystemTime::now() - Duration::from_secs(60);
        let set_old = || {
            std::fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(old))
                .unwrap_or_else(|e| panic!("{e}"));
        };
        set_old();
        let scans = Cell::new(0);
        let scan = |name: &str| {
            scans.set(scans.get() + 1);
            Ok(FileInfo {
                package: name.to_string(),
                ..Default::default()
            })
        };
        // The ctime is new (set_modified changes it), so nothing is remembered yet.
        assert_eq!(
            header(&path, "a.go", |_| scan("a")).map(|i| i.package),
            Ok("a".into())
        );
        assert_eq!(
            header(&path, "a.go", |_| scan("a")).map(|i| i.package),
            Ok("a".into())
        );
        assert_eq!(
            scans.get(),
            2,
            "a file changed within the racy window is read each time"
        );
        // A settled entry (inserted here with the file's real stat: its ctime is too new for
        // `header` to remember it itself) answers without a scan.
        let key = stat_key(&path).unwrap_or_else(|| panic!("stat"));
        assert!(!settled(&key));
        if let Ok(mut memo) = memo().lock() {
            let remembered = FileInfo {
                package: "remembered".into(),
                ..Default::default()
            };
            memo.insert(path.clone(), (key, remembered));
        }
        assert_eq!(
            header(&path, "a.go", |_| scan("b")).map(|i| i.package),
            Ok("remembered".into()),
            "an unchanged stat answers from memory"
        );
        std::fs::write(&path, "package bb\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            header(&path, "a.go", |_| scan("bb")).map(|i| i.package),
            Ok("bb".into()),
            "a new stat is scanned again"
        );
    }
}
