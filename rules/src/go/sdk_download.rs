//! A pinned Go SDK (`[go] version = "1.x.y"` in kiln.toml), fetched as `GOTOOLCHAIN` fetches one:
//! the `golang.org/toolchain` module at `v0.0.1-go1.x.y.<goos>-<goarch>` from the module proxy,
//! verified against the checksum database (and against `[go] sdk_sum`, an `h1:` hash, when given),
//! copied to `<cache>/go/sdk/<h1 digest>/` with executable bits restored (module zips carry none).
//!
//! With a local `go`, the download goes through its `go mod download` (which speaks GOPROXY and
//! GOSUMDB as the user configured them). Without one, a pinned `sdk_sum` is enough: Kiln fetches
//! the zip from GOPROXY itself ([`super::proxy_fetch`]), extracts it and checks the hash. With
//! neither, the error (exit 36) names both ways out.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use kiln_graph::analysis::{HostAccess, WorkspaceInfo};

use super::dirhash;

/// The module version of the toolchain for `version` (`1.22.3`) on `goos`/`goarch`.
pub fn toolchain_version(version: &str, goos: &str, goarch: &str) -> String {
    format!(
        "v0.0.1-go{}.{goos}-{goarch}",
        version.trim_start_matches("go")
    )
}

/// Ensures the pinned SDK is present and returns its GOROOT.
pub fn ensure(
    version: &str,
    ws: &WorkspaceInfo,
    host: &dyn HostAccess,
    goos: &str,
    goarch: &str,
) -> Result<PathBuf, String> {
    let module_version = toolchain_version(version, goos, goarch);
    let pinned_sum = ws
        .config
        .get("go")
        .and_then(|g| g.get("sdk_sum"))
        .and_then(|s| s.as_str())
        .map(str::to_string);
    let memo_key = format!(
        "go-sdk-pin:{module_version}:{}",
        pinned_sum.clone().unwrap_or_default()
    );
    if let Some(dir) = host.memo_get(&memo_key) {
        let dir = PathBuf::from(String::from_utf8_lossy(&dir).to_string());
        if dir.join("VERSION").is_file() {
            return Ok(dir);
        }
    }
    if let Some(pinned) = &pinned_sum {
        check_sum_syntax(pinned)?;
        // Stored under its hash once verified: a lost memo does not mean a new download.
        let root = store_root(ws, pinned);
        if root.join("VERSION").is_file() {
            host.memo_put(&memo_key, root.to_string_lossy().as_bytes());
            return Ok(root);
        }
    }
    let prefix = format!("golang.org/toolchain@{module_version}");
    let sdk_dir = ws.cache_dir.join("go/sdk");
    std::fs::create_dir_all(&sdk_dir).map_err(|e| format!("{}: {e}", sdk_dir.display()))?;
    // A fresh directory per fetch (removed when dropped), so that processes sharing the cache
    // (even with the same pid, in other pid namespaces) never write into each other's.
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempdir_in(&sdk_dir)
        .map_err(|e| format!("{}: {e}", sdk_dir.display()))?;
    let tree = tmp.path().join("go");
    // With a local `go`, its `go mod download` fetches the module (honouring the user's GOPROXY,
    // GONOSUMDB and the rest) and checks it against the checksum database; without one, a pinned
    // hash lets Kiln fetch it from GOPROXY itself and check that.
    let (sum, download) = match (super::modules_fetch::local_go(), &pinned_sum) {
        (Some(bootstrap), _) => {
            let download = super::modules_fetch::go_mod_download(
                ws,
                &bootstrap,
                "golang.org/toolchain",
                &module_version,
            )
            .map_err(|e| fetch_failed(version, &e, true))?;
            (dirhash::hash_dir(&download, &prefix)?, Some(download))
        }
        (None, Some(_)) => {
            let goproxy = super::go_env_file::setting(host, "GOPROXY");
            fetch_and_extract(&goproxy, &module_version, &prefix, tmp.path(), &tree)
                .map_err(|e| fetch_failed(version, &e, false))?;
            (dirhash::hash_dir(&tree, &prefix)?, None)
        }
        (None, None) => {
            return Err(format!(
                "No Go toolchain: Go {version} is pinned in kiln.toml, and fetching it needs a bootstrap `go` on PATH (any Go 1.21 or later: Kiln runs its `go mod download`, which speaks GOPROXY and checks the checksum database), but there is none. Install Go (https://go.dev/dl) and put its `bin` directory on PATH, or add the toolchain module's hash as `sdk_sum = \"h1:...\"` under `[go]` (the `golang.org/toolchain {module_version}` line of the checksum database: https://sum.golang.org/lookup/golang.org/toolchain@{module_version}), and Kiln fetches it from GOPROXY and checks it itself; once fetched, the pinned SDK is used from Kiln's cache"
            ));
        }
    };
    if let Some(pinned) = &pinned_sum {
        if *pinned != sum {
            return Err(format!(
                "The Go {version} SDK downloaded has hash `{sum}`, but kiln.toml pins `{pinned}`; nothing was used"
            ));
        }
    }
    let root = store_root(ws, &sum);
    if !root.join("VERSION").is_file() {
        if let Some(download) = &download {
            super::fs_copy::copy_tree(download, &tree, mode_of)
                .map_err(|e| format!("copying the Go SDK: {e}"))?;
        }
        let store = root.parent().unwrap_or(&sdk_dir);
        std::fs::create_dir_all(store).map_err(|e| format!("{}: {e}", store.display()))?;
        if let Err(e) = std::fs::rename(&tree, &root) {
            if !root.join("VERSION").is_file() {
                return Err(format!("storing the Go SDK: {e}"));
            }
        }
    }
    host.memo_put(&memo_key, root.to_string_lossy().as_bytes());
    Ok(root)
}

/// Where the SDK whose module hash is `sum` is stored: `<cache>/go/sdk/<sum, path-safe>/go`.
fn store_root(ws: &WorkspaceInfo, sum: &str) -> PathBuf {
    ws.cache_dir
        .join("go/sdk")
        .join(sum.trim_start_matches("h1:").replace(['/', '+', '='], "_"))
        .join("go")
}

/// `sdk_sum` must look like go.sum's hashes: `h1:` and the base64 of a SHA-256.
fn check_sum_syntax(sum: &str) -> Result<(), String> {
    use base64::Engine;
    let decoded = sum
        .strip_prefix("h1:")
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok());
    match decoded {
        Some(bytes) if bytes.len() == 32 => Ok(()),
        _ => Err(format!(
            "`sdk_sum = \"{sum}\"` in kiln.toml's [go] is not a module hash: expected `h1:` and 44 base64 characters, as in go.sum"
        )),
    }
}

/// The error of a failed download of the pinned SDK (exit 36).
fn fetch_failed(version: &str, error: &str, local_go: bool) -> String {
    let fallback = if local_go {
        ", or remove the pin to use the local Go"
    } else {
        ""
    };
    format!(
        "No Go toolchain: fetching Go {version}, pinned in kiln.toml, failed: {error}. Check GOPROXY and the network (HTTPS_PROXY, SSL_CERT_FILE){fallback}"
    )
}

/// The mode of an SDK file in Kiln's store: read-only, executable where the toolchain switch
/// of cmd/go marks it so.
fn mode_of(rel: &Path) -> u32 {
    if executable(rel) {
        0o555
    } else {
        0o444
    }
}

/// The most an extracted toolchain may hold (a Go SDK is ~250 MB): a zip that inflates past it
/// is refused before its hash is checked.
const MAX_UNZIPPED_BYTES: u64 = 2 << 30;
/// The most entries it may have (a Go SDK has ~15,000).
const MAX_ENTRIES: usize = 200_000;

/// Fetches the toolchain module's zip from `goproxy` into `work` and extracts the files under
/// `prefix/` into `into` with [`mode_of`]'s modes (see [`extract`]); the zip is removed either way.
fn fetch_and_extract(
    goproxy: &str,
    module_version: &str,
    prefix: &str,
    work: &Path,
    into: &Path,
) -> Result<(), String> {
    let zip_path = work.join("toolchain.zip");
    let fetched =
        super::proxy_fetch::fetch_zip(goproxy, "golang.org/toolchain", module_version, &zip_path)
            .and_then(|()| extract(&zip_path, prefix, into));
    let _ = std::fs::remove_file(&zip_path);
    fetched
}

/// The path of a zip entry named `name` relative to `dir_prefix`, if it is one Kiln may write:
/// under the prefix, and made only of plain components (no empty, `.` or `..` part, nothing
/// absolute), as Go's module zips must be.
fn entry_path<'a>(name: &'a str, dir_prefix: &str) -> Option<&'a str> {
    let rel = name.strip_prefix(dir_prefix)?;
    let plain = rel
        .trim_end_matches('/')
        .split('/')
        .all(|part| !part.is_empty() && part != "." && part != ".." && !part.contains('\\'));
    let normal = Path::new(rel)
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    (plain && normal).then_some(rel)
}

/// Extracts the module zip at `zip_path` into `into` (created here): every entry must be a file
/// under `prefix/` ([`entry_path`]); at most [`MAX_ENTRIES`] entries and [`MAX_UNZIPPED_BYTES`].
fn extract(zip_path: &Path, prefix: &str, into: &Path) -> Result<(), String> {
    std::fs::create_dir_all(into).map_err(|e| format!("{}: {e}", into.display()))?;
    let file = std::fs::File::open(zip_path).map_err(|e| format!("{}: {e}", zip_path.display()))?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| format!("the module zip is not a zip: {e}"))?;
    if archive.len() > MAX_ENTRIES {
        return Err(format!(
            "the module zip has {} entries, more than the {MAX_ENTRIES} Kiln accepts",
            archive.len()
        ));
    }
    let dir_prefix = format!("{prefix}/");
    let mut budget = MAX_UNZIPPED_BYTES;
    for i in 0..archive.len() {
        let entry = archive
            .by_index(i)
            .map_err(|e| format!("the module zip's entry {i}: {e}"))?;
        let name = entry
            .name()
            .map_err(|e| format!("the module zip's entry {i} has no usable name: {e}"))?
            .to_string();
        let rel = entry_path(&name, &dir_prefix).ok_or_else(|| {
            format!("the module zip has an entry outside `{dir_prefix}`: `{name}`")
        })?;
        if entry.is_dir() {
            continue;
        }
        let rel = Path::new(rel);
        let dest = into.join(rel);
        if !dest.starts_with(into) {
            return Err(format!(
                "the module zip's entry `{name}` leaves the SDK's directory"
            ));
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode_of(rel) | 0o200)
            .open(&dest)
            .map_err(|e| format!("{}: {e}", dest.display()))?;
        let written = std::io::copy(&mut std::io::Read::take(entry, budget + 1), &mut out)
            .map_err(|e| format!("extracting `{name}`: {e}"))?;
        if written > budget {
            return Err(format!(
                "the module zip inflates to more than {MAX_UNZIPPED_BYTES} bytes"
            ));
        }
        budget -= written;
        drop(out);
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode_of(rel)))
            .map_err(|e| format!("{}: {e}", dest.display()))?;
    }
    Ok(())
}

/// Whether a file of an SDK must be executable (what `cmd/go`'s toolchain switch marks).
fn executable(rel: &Path) -> bool {
    let s = rel.to_string_lossy();
    // cmd/go's toolchain download also marks `lib/**/go_<goos>_<goarch>_exec` (wasm's runner).
    let exec_wrapper = s.starts_with("lib/")
        && rel.file_name().is_some_and(|n| {
            let n = n.to_string_lossy();
            n.starts_with("go_") && n.ends_with("_exec") && n.matches('_').count() >= 3
        });
    s.starts_with("bin/") || s.starts_with("pkg/tool/") || exec_wrapper
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_version_and_exec_bits() {
        assert_eq!(
            toolchain_version("1.22.3", "linux", "amd64"),
            "v0.0.1-go1.22.3.linux-amd64"
        );
        assert!(executable(Path::new("bin/go")));
        assert!(executable(Path::new("pkg/tool/linux_amd64/compile")));
        assert!(executable(Path::new("lib/wasm/go_js_wasm_exec")));
        assert!(!executable(Path::new("lib/time/zoneinfo.zip")));
        assert!(!executable(Path::new("src/fmt/print.go")));
    }

    /// A zip of `entries` (name, content), stored uncompressed.
    fn zip_of(entries: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        let mut writer = zip::ZipWriter::new(file.reopen().expect("reopen"));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (name, content) in entries {
            writer.start_file(*name, options).expect("entry");
            std::io::Write::write_all(&mut writer, content).expect("write");
        }
        writer.finish().expect("finish");
        file
    }

    #[test]
    fn a_malformed_pin_is_refused_before_any_download() {
        assert!(check_sum_syntax("h1:IkknVKy/4hLMR+ZwWfP4Oqhjz2sKqNtEXz1meP8P3Nc=").is_ok());
        for bad in [
            "IkknVKy/4hLMR+ZwWfP4Oqhjz2sKqNtEXz1meP8P3Nc=",
            "h1:short",
            "h1:!!!",
            "",
        ] {
            let err = check_sum_syntax(bad).expect_err(bad);
            assert!(err.contains("44 base64 characters"), "{err}");
        }
    }

    #[test]
    fn extraction_restores_modes_and_refuses_entries_outside_the_module() {
        use std::os::unix::fs::PermissionsExt;
        let prefix = "golang.org/toolchain@v0.0.1-go1.99.0.linux-amd64";
        let zip = zip_of(&[
            (&format!("{prefix}/VERSION"), b"go1.99.0\n"),
            (&format!("{prefix}/bin/go"), b"#!/bin/sh\n"),
            (&format!("{prefix}/pkg/tool/linux_amd64/link"), b"\x7fELF"),
        ]);
        let dir = tempfile::tempdir().expect("temp dir");
        let into = dir.path().join("sdk");
        extract(zip.path(), prefix, &into).expect("extracted");
        let mode = |rel: &str| {
            std::fs::metadata(into.join(rel))
                .expect("extracted file")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("VERSION"), 0o444);
        assert_eq!(mode("bin/go"), 0o555);
        assert_eq!(mode("pkg/tool/linux_amd64/link"), 0o555);
        assert_eq!(
            dirhash::hash_dir(&into, prefix).expect("hash"),
            dirhash::hash1_files(vec![
                (format!("{prefix}/VERSION"), b"go1.99.0\n".to_vec()),
                (format!("{prefix}/bin/go"), b"#!/bin/sh\n".to_vec()),
                (
                    format!("{prefix}/pkg/tool/linux_amd64/link"),
                    b"\x7fELF".to_vec()
                ),
            ])
        );

        for bad in [
            format!("{prefix}/../escape"),
            format!("{prefix}//tmp/kiln-zip-slip"),
            format!("{prefix}/a//b"),
            format!("{prefix}/./x"),
            "golang.org/toolchain@v0.0.1-go1.98.0.linux-amd64/VERSION".to_string(),
            "/etc/passwd".to_string(),
        ] {
            let zip = zip_of(&[(bad.as_str(), b"x")]);
            let into = dir.path().join("bad");
            let _ = std::fs::remove_dir_all(&into);
            let err = extract(zip.path(), prefix, &into).expect_err(&bad);
            assert!(err.contains("outside"), "{bad}: {err}");
        }
    }
}
