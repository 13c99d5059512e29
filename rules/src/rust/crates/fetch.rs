//! A registry crate's sources, verified against Cargo.lock's sha256 before anything is used: from a
//! `cargo vendor` directory (its `.cargo-checksum.json` must carry the locked package checksum
//! and every file must match its listed digest), else the `.crate` archive from Kiln's
//! content-addressed store, cargo's download cache (filled by `cargo metadata`) or the registry
//! itself, then unpacked.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Fetches a URL's bytes.
pub type Download<'a> = &'a dyn Fn(&str) -> Result<Vec<u8>, String>;

/// Where to look for a crate.
pub struct Sources<'a> {
    /// Kiln's store of verified `.crate` files, named by sha256.
    pub store: &'a Path,
    /// Cargo's home (`$CARGO_HOME`, else `~/.cargo`), whose `registry/cache` cargo fills.
    pub cargo_home: Option<&'a Path>,
    /// Downloads a URL's bytes (the registry), or `None` to never download.
    pub download: Option<Download<'a>>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes crate `name` `version` (locked `checksum`) from `vendored_dir` or an archive into `dest`.
pub fn materialize(
    name: &str,
    version: &str,
    checksum: &str,
    vendored_dir: &Path,
    sources: &Sources<'_>,
    dest: &Path,
) -> Result<(), String> {
    let what = format!("`{name} {version}`");
    let listing = vendored_dir.join(".cargo-checksum.json");
    if listing.is_file() {
        return copy_vendored(&what, checksum, vendored_dir, &listing, dest);
    }
    let bytes = archive_bytes(name, version, checksum, sources)?;
    unpack(&what, &bytes, &format!("{name}-{version}"), dest)
}

fn copy_vendored(
    what: &str,
    checksum: &str,
    dir: &Path,
    listing: &Path,
    dest: &Path,
) -> Result<(), String> {
    let text = std::fs::read_to_string(listing)
        .map_err(|e| format!("reading {}: {e}", listing.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", listing.display()))?;
    let package = json.get("package").and_then(|p| p.as_str()).unwrap_or("");
    if package != checksum {
        return Err(format!(
            "Vendored {what} in {} has checksum `{package}`, but Cargo.lock says `{checksum}`; nothing was used",
            dir.display()
        ));
    }
    let files = json
        .get("files")
        .and_then(|f| f.as_object())
        .ok_or_else(|| format!("{}: no `files` listing", listing.display()))?;
    for (rel, expected) in files {
        if rel.starts_with('/') || rel.split('/').any(|c| c == "..") {
            return Err(format!("Vendored {what} lists an unsafe path `{rel}`"));
        }
        let bytes = std::fs::read(dir.join(rel))
            .map_err(|e| format!("Vendored {what}: reading `{rel}`: {e}"))?;
        if Some(sha256_hex(&bytes).as_str()) != expected.as_str() {
            return Err(format!(
                "Vendored {what}: `{rel}` does not match its checksum in .cargo-checksum.json; nothing was used"
            ));
        }
        let target = dest.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&target, bytes).map_err(|e| format!("{}: {e}", target.display()))?;
    }
    Ok(())
}

/// The verified bytes of `name-version.crate`.
pub fn archive_bytes(
    name: &str,
    version: &str,
    checksum: &str,
    sources: &Sources<'_>,
) -> Result<Vec<u8>, String> {
    let stored = sources.store.join(format!("{checksum}.crate"));
    if let Ok(bytes) = std::fs::read(&stored) {
        if sha256_hex(&bytes) == checksum {
            return Ok(bytes);
        }
        // A damaged store entry is a miss, never an answer.
        let _ = std::fs::remove_file(&stored);
    }
    let file_name = format!("{name}-{version}.crate");
    let mut found: Option<(String, Vec<u8>)> = None;
    if let Some(home) = sources.cargo_home {
        for candidate in cargo_cache_candidates(home, &file_name) {
            if let Ok(bytes) = std::fs::read(&candidate) {
                found = Some((candidate.display().to_string(), bytes));
                break;
            }
        }
    }
    if found.is_none() {
        if let Some(download) = sources.download {
            let url = format!("https://static.crates.io/crates/{name}/{file_name}");
            found = Some((url.clone(), download(&url)?));
        }
    }
    let (origin, bytes) = found.ok_or_else(|| {
        format!("`{name} {version}` is neither vendored nor in cargo's download cache; run `cargo fetch`")
    })?;
    let actual = sha256_hex(&bytes);
    if actual != checksum {
        return Err(format!(
            "`{name} {version}` from {origin} has sha256 `{actual}`, but Cargo.lock says `{checksum}`; nothing was used"
        ));
    }
    std::fs::create_dir_all(sources.store)
        .map_err(|e| format!("{}: {e}", sources.store.display()))?;
    let tmp = sources
        .store
        .join(format!(".{checksum}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, &bytes)
        .and_then(|_| std::fs::rename(&tmp, &stored))
        .map_err(|e| format!("storing {}: {e}", stored.display()))?;
    Ok(bytes)
}

fn cargo_cache_candidates(home: &Path, file_name: &str) -> Vec<PathBuf> {
    let cache = home.join("registry/cache");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&cache)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.into_iter().map(|d| d.join(file_name)).collect()
}

/// Unpacks a `.crate` (gzipped tar whose entries sit under `prefix/`) into `dest`.
pub fn unpack(what: &str, bytes: &[u8], prefix: &str, dest: &Path) -> Result<(), String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let entries = archive
        .entries()
        .map_err(|e| format!("{what}: reading the .crate: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("{what}: reading the .crate: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("{what}: bad path in the .crate: {e}"))?
            .into_owned();
        let Ok(rel) = path.strip_prefix(prefix) else {
            return Err(format!(
                "{what}: `{}` in the .crate lies outside `{prefix}/`",
                path.display()
            ));
        };
        if rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            if rel.as_os_str().is_empty() {
                continue;
            }
            return Err(format!(
                "{what}: unsafe path `{}` in the .crate",
                path.display()
            ));
        }
        let target = dest.join(rel);
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
        } else if kind.is_file() {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            let mut content = Vec::new();
            entry
                .read_to_end(&mut content)
                .map_err(|e| format!("{what}: {e}"))?;
            std::fs::write(&target, content).map_err(|e| format!("{}: {e}", target.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crate_file(files: &[(&str, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::default(),
        ));
        for (path, text) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(text.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, path, text.as_bytes())
                .unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn verified_archives_unpack_and_tampered_ones_are_rejected() {
        let home = tempfile::tempdir().unwrap();
        let store = tempfile::tempdir().unwrap();
        let cache = home.path().join("registry/cache/index.crates.io-x");
        std::fs::create_dir_all(&cache).unwrap();
        let bytes = crate_file(&[("tiny-1.0.0/src/lib.rs", "pub fn f() {}\n")]);
        let good = sha256_hex(&bytes);
        std::fs::write(cache.join("tiny-1.0.0.crate"), &bytes).unwrap();
        let sources = Sources {
            store: store.path(),
            cargo_home: Some(home.path()),
            download: None,
        };
        let nowhere = home.path().join("not-vendored");
        let bad = "0".repeat(64);
        let dest = tempfile::tempdir().unwrap();
        let err = materialize("tiny", "1.0.0", &bad, &nowhere, &sources, dest.path()).unwrap_err();
        assert!(err.contains("Cargo.lock says"), "{err}");
        assert!(!dest.path().join("src/lib.rs").exists());
        assert!(std::fs::read_dir(store.path()).unwrap().next().is_none());

        materialize("tiny", "1.0.0", &good, &nowhere, &sources, dest.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dest.path().join("src/lib.rs")).unwrap(),
            "pub fn f() {}\n"
        );
        assert!(store.path().join(format!("{good}.crate")).is_file());
    }

    #[test]
    fn entries_outside_the_prefix_are_rejected() {
        let bytes = crate_file(&[("other-1.0.0/src/lib.rs", "x")]);
        let dest = tempfile::tempdir().unwrap();
        assert!(unpack("`tiny 1.0.0`", &bytes, "tiny-1.0.0", dest.path()).is_err());
    }

    #[test]
    fn vendored_files_must_match_their_listing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/lib.rs"), "pub fn f() {}\n").unwrap();
        let listing = format!(
            "{{\"files\":{{\"src/lib.rs\":\"{}\"}},\"package\":\"{}\"}}",
            sha256_hex(b"pub fn f() {}\n"),
            "a".repeat(64)
        );
        std::fs::write(dir.path().join(".cargo-checksum.json"), listing).unwrap();
        let store = tempfile::tempdir().unwrap();
        let sources = Sources {
            store: store.path(),
            cargo_home: None,
            download: None,
        };
        let dest = tempfile::tempdir().unwrap();
        materialize(
            "v",
            "1.0.0",
            &"a".repeat(64),
            dir.path(),
            &sources,
            dest.path(),
        )
        .unwrap();
        std::fs::write(dir.path().join("src/lib.rs"), "pub fn g() {}\n").unwrap();
        let dest = tempfile::tempdir().unwrap();
        let err = materialize(
            "v",
            "1.0.0",
            &"a".repeat(64),
            dir.path(),
            &sources,
            dest.path(),
        )
        .unwrap_err();
        assert!(err.contains("does not match"), "{err}");
    }
}
