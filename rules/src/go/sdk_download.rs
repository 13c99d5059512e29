//! A pinned Go SDK (`[go] version = "1.x.y"` in kiln.toml), fetched as `GOTOOLCHAIN` fetches one:
//! the `golang.org/toolchain` module at `v0.0.1-go1.x.y.<goos>-<goarch>` from the module proxy,
//! verified against the checksum database (and against `[go] sdk_sum`, an `h1:` hash, when given),
//! copied to `<cache>/go/sdk/<h1 digest>/` with executable bits restored (module zips carry none).
//!
//! The download itself goes through a local `go mod download` (which speaks GOPROXY/GOSUMDB):
//! without any `go` on PATH the pin cannot be bootstrapped, and the error (exit 36) says so and
//! what to install.

use std::path::{Path, PathBuf};

use kiln_graph::analysis::{HostAccess, WorkspaceInfo};

use super::dirhash;
use super::toolchain::missing_message;

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
    let Some(bootstrap) = super::modules_fetch::local_go() else {
        return Err(format!(
            "No Go toolchain: Go {version} is pinned in kiln.toml, and fetching it needs a bootstrap `go` on PATH (any Go 1.21 or later: Kiln runs its `go mod download`, which speaks GOPROXY and checks the checksum database), but there is none. Install Go (https://go.dev/dl) and put its `bin` directory on PATH; once fetched, the pinned SDK is used from Kiln's cache"
        ));
    };
    let download = super::modules_fetch::go_mod_download(
        ws,
        &bootstrap,
        "golang.org/toolchain",
        &module_version,
    )
    .map_err(|e| missing_message(&format!("fetching Go {version} failed: {e}")))?;
    let prefix = format!("golang.org/toolchain@{module_version}");
    let sum = dirhash::hash_dir(&download, &prefix)?;
    if let Some(pinned) = &pinned_sum {
        if *pinned != sum {
            return Err(format!(
                "The Go {version} SDK downloaded has hash `{sum}`, but kiln.toml pins `{pinned}`; nothing was used"
            ));
        }
    }
    let store = ws
        .cache_dir
        .join("go/sdk")
        .join(sum.trim_start_matches("h1:").replace(['/', '+', '='], "_"));
    // The module's files are the SDK's (VERSION, bin/, pkg/, src/ at its root).
    let root = store.join("go");
    if !root.join("VERSION").is_file() {
        let tmp = ws
            .cache_dir
            .join(format!("go/sdk/.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        super::fs_copy::copy_tree(
            &download,
            &tmp,
            |rel| {
                if executable(rel) {
                    0o555
                } else {
                    0o444
                }
            },
        )
        .map_err(|e| format!("copying the Go SDK: {e}"))?;
        std::fs::create_dir_all(&store).map_err(|e| e.to_string())?;
        if let Err(e) = std::fs::rename(&tmp, &root) {
            let _ = std::fs::remove_dir_all(&tmp);
            if !root.join("VERSION").is_file() {
                return Err(format!("storing the Go SDK: {e}"));
            }
        }
    }
    host.memo_put(&memo_key, root.to_string_lossy().as_bytes());
    Ok(root)
}

/// Whether a file of an SDK must be executable (what `cmd/go`'s toolchain switch marks).
fn executable(rel: &Path) -> bool {
    let s = rel.to_string_lossy();
    s.starts_with("bin/") || s.starts_with("pkg/tool/")
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
        assert!(!executable(Path::new("src/fmt/print.go")));
    }
}
