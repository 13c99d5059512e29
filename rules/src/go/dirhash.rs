//! The `h1:` hash go.sum records (golang.org/x/mod's `dirhash.Hash1`): base64 of the SHA-256 of
//! the lines `"<hex sha256(file)>  <module@version/path>\n"`, sorted by path, over a module's files.

use std::path::Path;

use base64::Engine;
use sha2::{Digest, Sha256};

/// Hash1 over `(name, content)` pairs.
pub fn hash1_files(files: Vec<(String, Vec<u8>)>) -> String {
    let hashed = files
        .into_iter()
        .map(|(name, content)| (name, hex::encode(Sha256::digest(content))))
        .collect();
    hash1_of_hashes(hashed)
}

/// Hash1 from each file's name and hex SHA-256.
fn hash1_of_hashes(mut files: Vec<(String, String)>) -> String {
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut summary = Sha256::new();
    for (name, file_hash) in &files {
        summary.update(format!("{file_hash}  {name}\n").as_bytes());
    }
    format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(summary.finalize())
    )
}

/// Hash1 of a directory holding an extracted module, with names `prefix/<relative path>`
/// (`prefix` is `module@version`), as `dirhash.HashDir` computes it. Files are streamed
/// through the hash, never held in memory whole.
pub fn hash_dir(dir: &Path, prefix: &str) -> Result<String, String> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        if entry.file_type().is_dir() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(dir)
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .to_string();
        let mut hasher = Sha256::new();
        std::fs::File::open(entry.path())
            .and_then(|mut f| std::io::copy(&mut f, &mut hasher))
            .map_err(|e| format!("{}: {e}", entry.path().display()))?;
        files.push((format!("{prefix}/{rel}"), hex::encode(hasher.finalize())));
    }
    Ok(hash1_of_hashes(files))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_of_a_go_mod_file_matches_go_sum_format() {
        // `rsc.io/quote v1.5.2/go.mod` is listed in go.sum as this hash: Hash1 over the single
        // file "go.mod" named `go.mod`.
        let gomod = b"module \"rsc.io/quote\"\n\nrequire \"rsc.io/sampler\" v1.3.0\n".to_vec();
        assert_eq!(
            hash1_files(vec![("go.mod".into(), gomod)]),
            "h1:LzX7hefJvL54yjefDEDHNONDjII0t9xZLPXsUe+TKr0="
        );
    }
}

#[cfg(test)]
mod dir_tests {
    use super::*;

    #[test]
    fn a_directory_hashes_as_its_files_do() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("go.mod"), b"module m\n").unwrap();
        std::fs::write(dir.path().join("sub/a.go"), b"package sub\n").unwrap();
        let expected = hash1_files(vec![
            ("m@v1.0.0/sub/a.go".into(), b"package sub\n".to_vec()),
            ("m@v1.0.0/go.mod".into(), b"module m\n".to_vec()),
        ]);
        assert_eq!(hash_dir(dir.path(), "m@v1.0.0").unwrap(), expected);
    }
}
