//! A build script's `OUT_DIR` packed into one file, so that it can be a single action output:
//! entries sorted by path, no timestamps or owners, only the executable bit. Part of the Rust
//! helper program (std only); also compiled into `kiln-rules` for its unit tests.
//!
//! Format: the line `kiln-outdir 1`, then per entry a header line `D <path>` (directory) or
//! `F <mode> <size> <path>` followed by exactly `size` bytes.

use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &str = "kiln-outdir 1\n";

/// Packs every file and directory under `dir` into `out`, sorted by path.
pub fn pack(dir: &Path, out: &mut impl Write) -> io::Result<()> {
    let mut entries = Vec::new();
    collect(dir, Path::new(""), &mut entries)?;
    entries.sort();
    out.write_all(MAGIC.as_bytes())?;
    for (rel, is_dir) in entries {
        let name = rel.to_str().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("non-UTF-8 path {rel:?}"),
            )
        })?;
        if name.contains('\n') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("file name with a newline: {name:?}"),
            ));
        }
        if is_dir {
            writeln!(out, "D {name}")?;
            continue;
        }
        let path = dir.join(&rel);
        let bytes = std::fs::read(&path)?;
        let mode = if is_executable(&path)? { 755 } else { 644 };
        writeln!(out, "F {mode} {} {name}", bytes.len())?;
        out.write_all(&bytes)?;
    }
    Ok(())
}

fn collect(root: &Path, rel: &Path, entries: &mut Vec<(PathBuf, bool)>) -> io::Result<()> {
    for entry in std::fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let path = rel.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            entries.push((path.clone(), true));
            collect(root, &path, entries)?;
        } else if kind.is_file() {
            entries.push((path, false));
        } else {
            let target = std::fs::metadata(root.join(&path))?;
            if target.is_file() {
                entries.push((path, false));
            }
        }
    }
    Ok(())
}

#[cfg(unix)]
fn is_executable(path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(_path: &Path) -> io::Result<bool> {
    Ok(false)
}

/// Unpacks an archive made by [`pack`] into `dir` (created if missing).
pub fn unpack(input: &mut impl BufRead, dir: &Path) -> io::Result<()> {
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    std::fs::create_dir_all(dir)?;
    let mut line = String::new();
    input.read_line(&mut line)?;
    if line != MAGIC {
        return Err(bad(format!("not an OUT_DIR archive (header {line:?})")));
    }
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let header = line.trim_end_matches('\n');
        let (kind, rest) = header
            .split_once(' ')
            .ok_or_else(|| bad(format!("bad entry {header:?}")))?;
        match kind {
            "D" => std::fs::create_dir_all(safe_join(dir, rest)?)?,
            "F" => {
                let mut parts = rest.splitn(3, ' ');
                let (Some(mode), Some(size), Some(name)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return Err(bad(format!("bad file entry {header:?}")));
                };
                let size: u64 = size
                    .parse()
                    .map_err(|_| bad(format!("bad size in {header:?}")))?;
                let path = safe_join(dir, name)?;
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let mut file = std::fs::File::create(&path)?;
                let copied = io::copy(&mut input.take(size), &mut file)?;
                if copied != size {
                    return Err(bad(format!("truncated archive at {name}")));
                }
                drop(file);
                set_mode(&path, mode == "755")?;
            }
            other => return Err(bad(format!("unknown entry kind {other:?}"))),
        }
    }
}

fn safe_join(dir: &Path, name: &str) -> io::Result<PathBuf> {
    if name.starts_with('/') || name.split('/').any(|c| c == ".." || c.is_empty()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unsafe path {name:?} in archive"),
        ));
    }
    Ok(dir.join(name))
}

#[cfg(unix)]
fn set_mode(path: &Path, executable: bool) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = if executable { 0o755 } else { 0o644 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _executable: bool) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_sorted_and_byte_stable() {
        let a = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(a.path().join("sub/empty")).unwrap();
        std::fs::write(a.path().join("z.rs"), "pub const Z: u8 = 1;\n").unwrap();
        std::fs::write(a.path().join("sub/a.txt"), "a\nb").unwrap();
        let mut packed = Vec::new();
        pack(a.path(), &mut packed).unwrap();
        let b = tempfile::tempdir().unwrap();
        unpack(&mut packed.as_slice(), b.path()).unwrap();
        assert_eq!(std::fs::read(b.path().join("sub/a.txt")).unwrap(), b"a\nb");
        assert!(b.path().join("sub/empty").is_dir());
        let mut again = Vec::new();
        pack(b.path(), &mut again).unwrap();
        assert_eq!(packed, again);
        let text = String::from_utf8_lossy(&packed);
        assert!(text.starts_with("kiln-outdir 1\nD sub\nF 644 3 sub/a.txt\na\nbD sub/empty\n"));
    }

    #[test]
    fn escaping_paths_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let evil = b"kiln-outdir 1\nF 644 1 ../x\nx";
        assert!(unpack(&mut evil.as_slice(), dir.path()).is_err());
    }
}
