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

use super::lexer::holds_header;
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
///
/// A settled file (see [`settled`]) is read only as far as its header goes, as `go build` reads
/// it: generated files run to hundreds of kilobytes (`golang.org/x/sys/unix` has dozens), and
/// only their first lines decide anything. A file within the racy window is read whole and its
/// digest kept for [`scanned_digest`]: the no-op check compares such a file by content. Either
/// way only the valid UTF-8 start of a file is scanned (see [`header_text`]).
pub fn header(
    host: &Path,
    name: &str,
    scan: impl Fn(&str) -> Result<FileInfo, String>,
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
    let settled_key = key.filter(settled);
    let read_error = |e: std::io::Error| format!("{name}: {e}");
    // The whole file: the text its header is read from, and the digest of all of its bytes.
    let whole = |host: &Path| -> Result<(String, Digest), String> {
        let bytes = std::fs::read(host).map_err(read_error)?;
        let text = header_text(&bytes).map_err(read_error)?.to_string();
        Ok((text, Digest::of_bytes(DigestFunction::Blake3, &bytes)))
    };
    let info = match settled_key {
        Some(_) => {
            if let Ok(mut scanned) = scanned().lock() {
                scanned.remove(host);
            }
            let prefix = read_header(host).map_err(read_error)?;
            match scan(&prefix) {
                Ok(info) if !info.imports.iter().any(|i| i.path == "embed") => info,
                // `//go:embed` lines may be anywhere in the file (and lexing them stops at the
                // cut); an error is reported as the whole file gives it.
                _ => scan(&whole(host)?.0)?,
            }
        }
        None => {
            let (text, digest) = whole(host)?;
            if let Ok(mut scanned) = scanned().lock() {
                scanned.insert(host.to_path_buf(), digest);
            }
            scan(&text)?
        }
    };
    if let Some(key) = settled_key {
        if let Ok(mut memo) = memo().lock() {
            memo.insert(host.to_path_buf(), (key, info.clone()));
        }
    }
    Ok(info)
}

/// How much of a file [`read_header`] reads first; it doubles until the header is in.
const HEADER_READ: usize = 8 << 10;

/// The part of a Go file's `bytes` its header is read from: all of them when they are valid
/// UTF-8, else the valid start if it holds the whole header (`go build` reads no further; the
/// compiler reports a bad byte in the body), else an error. The same for a file read whole and
/// one read in part, so the result never depends on which.
fn header_text(bytes: &[u8]) -> std::io::Result<&str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => {
            let valid = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
            if holds_header(valid) {
                Ok(valid)
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "stream did not contain valid UTF-8",
                ))
            }
        }
    }
}

/// The start of the file at `path` up to past its header (see [`holds_header`]), or the whole
/// file when the header runs to its end, as [`header_text`] decodes it.
fn read_header(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    let mut want = HEADER_READ;
    loop {
        let had = bytes.len();
        (&mut file)
            .take((want - had) as u64)
            .read_to_end(&mut bytes)?;
        if bytes.len() < want {
            // The whole file.
            return header_text(&bytes).map(str::to_string);
        }
        // A character cut at the end of the read is left for the next one.
        let text = match std::str::from_utf8(&bytes) {
            Ok(text) => text,
            Err(e) if e.error_len().is_none() => {
                std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default()
            }
            Err(_) => return header_text(&bytes).map(str::to_string),
        };
        if holds_header(text) {
            return Ok(text.to_string());
        }
        want *= 2;
    }
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

    /// A Go file whose header is followed by `body_bytes` of declarations, the last one an
    /// unterminated string (which the header never reaches).
    fn long_file(header: &str, body_bytes: usize) -> String {
        let mut text = header.to_string();
        while text.len() < body_bytes {
            text.push_str("var x = \"\u{e9}t\u{e9}\" // é\n");
        }
        text.push_str("var broken = \"\n");
        text
    }

    #[test]
    fn only_the_header_of_a_long_file_is_read() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("zerrors.go");
        let text = long_file(
            "//go:build linux\n\npackage unix\n\nimport \"syscall\"\n\n",
            300 << 10,
        );
        std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{e}"));
        let prefix = read_header(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            prefix.len() <= HEADER_READ && prefix.len() > HEADER_READ - 4,
            "one read of {HEADER_READ} bytes, less a character cut at its end"
        );
        assert!(text.starts_with(&prefix));
        assert_eq!(
            super::super::scan::scan(&prefix).map(|i| i.imports.len()),
            Ok(1)
        );
        assert!(
            super::super::scan::scan(&text).is_ok(),
            "the body's broken string is past the header"
        );
        // A header longer than the first read (a long licence comment) is read to its end.
        let licence = "// licence text\n".repeat(2_000);
        let path = dir.path().join("long_header.go");
        let text = long_file(
            &format!("{licence}package a\n\nimport \"os\"\n\n"),
            100 << 10,
        );
        std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{e}"));
        let prefix = read_header(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(prefix.len() > licence.len() && prefix.len() < text.len());
        // A short file is read whole.
        let path = dir.path().join("short.go");
        std::fs::write(&path, "package a\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            read_header(&path).unwrap_or_else(|e| panic!("{e}")),
            "package a\n"
        );
    }

    #[test]
    fn a_settled_file_that_imports_embed_is_scanned_whole_and_a_racy_one_keeps_its_digest() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let embeds = dir.path().join("embeds.go");
        // A raw string from the start of the body to past the first read: lexing the prefix
        // alone fails in it.
        let raw = format!("var raw = `{}`\n", "x".repeat(HEADER_READ * 3));
        let mut text = long_file(
            &format!("package a\n\nimport _ \"embed\"\n\n{raw}"),
            64 << 10,
        );
        text = text.replace(
            "var broken = \"\n",
            "//go:embed static/*\nvar files string\n",
        );
        std::fs::write(&embeds, &text).unwrap_or_else(|e| panic!("{e}"));
        // A file whose first read lexes cleanly (it ends inside a comment) but holds no
        // `//go:embed` line: the one past it is found only by reading on.
        let commented = dir.path().join("commented.go");
        let filler = "// filler filler filler filler filler filler\n".repeat(1_000);
        let commented_text = format!(
            "package a\n\nimport _ \"embed\"\n\nvar x = 1\n{filler}//go:embed b.txt\nvar b string\n"
        );
        std::fs::write(&commented, &commented_text).unwrap_or_else(|e| panic!("{e}"));
        // Invalid UTF-8 in the body (after the header, inside and past the first read) is no
        // error whether the file is read whole or in part; in the header it is.
        let latin1 = |at: usize| {
            let mut bytes = b"package a\n\nimport \"os\"\n\nvar x = 1\n".to_vec();
            bytes.extend(std::iter::repeat_n(b'x', at));
            bytes.extend(b"// caf\xe9\n");
            bytes
        };
        let body_early = dir.path().join("body_early.go");
        std::fs::write(&body_early, latin1(10)).unwrap_or_else(|e| panic!("{e}"));
        let body_late = dir.path().join("body_late.go");
        std::fs::write(&body_late, latin1(HEADER_READ * 2)).unwrap_or_else(|e| panic!("{e}"));
        let in_header = dir.path().join("in_header.go");
        std::fs::write(&in_header, b"// caf\xe9\npackage a\n\nvar x = 1\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let scan = super::super::scan::scan;
        let utf8_results = || {
            [&body_early, &body_late, &in_header].map(|path| {
                header(path, "f.go", scan)
                    .map(|info| info.imports.len())
                    .map_err(|e| e.contains("valid UTF-8"))
            })
        };
        assert_eq!(utf8_results(), [Ok(1), Ok(1), Err(true)], "read whole");
        // Just written: racy, read whole, its digest kept for the no-op check.
        let racy = header(&embeds, "embeds.go", scan).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(racy.embeds.len(), 1);
        assert_eq!(
            scanned_digest(&embeds),
            Some(Digest::of_bytes(DigestFunction::Blake3, text.as_bytes()))
        );
        // Settled: the embed directive far past the first read is still found, and no digest
        // is claimed for content that was not read.
        std::thread::sleep(crate::settled_stat::RACY_WINDOW + Duration::from_millis(100));
        let settled = header(&embeds, "embeds.go", scan).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(settled, racy);
        assert_eq!(scanned_digest(&embeds), None);
        let found = header(&commented, "commented.go", scan).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(found.embeds, vec![("b.txt".to_string(), 1_006)]);
        assert_eq!(utf8_results(), [Ok(1), Ok(1), Err(true)], "read in part");
    }
}
