//! The Rust toolchain: which installed rustup toolchain a workspace asks for (kiln.toml's
//! `[rust] version`, else `rust-toolchain.toml`, else rustup's default), resolved once through the
//! rustup shim to its sysroot, whose own `bin/rustc` actions then run at a fixed sandbox path.
//! Its identity (`rustc -vV` plus a digest of the compiler and the standard library) goes into every
//! Rust action's key.

use std::path::{Path, PathBuf};

use kiln_cache::{Digest, DigestFunction};

/// Where the sysroot appears inside every sandbox: a fixed directory inside the exec root, as
/// Bazel puts toolchains under `external/` (no workspace file or repository can be there: the
/// sandbox refuses a mount that an input or output would fall under).
pub const SANDBOX_SYSROOT: &str = "/kiln/execroot/external/kiln_rust_toolchain";
/// The compiler inside the sandbox.
pub const SANDBOX_RUSTC: &str = "/kiln/execroot/external/kiln_rust_toolchain/bin/rustc";

/// A resolved toolchain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RustToolchain {
    /// Host directory of the sysroot (mounted at [`SANDBOX_SYSROOT`]; never in a command).
    pub sysroot: PathBuf,
    /// `release:` of `rustc -vV`, e.g. `1.95.0`.
    pub release: String,
    /// `host:` of `rustc -vV`, e.g. `x86_64-unknown-linux-gnu`.
    pub host: String,
    /// `rustc -vV` and the sysroot digest: the identity in action keys.
    pub identity: String,
    /// `rustc --print cfg` lines, for build scripts' `CARGO_CFG_*`.
    pub cfg: Vec<String>,
}

/// Why a toolchain could not be resolved.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ToolchainError {
    /// The pinned toolchain is not installed (exit code 36).
    #[error("Rust toolchain `{channel}` ({source_file}) is not installed; run `rustup toolchain install {channel}`")]
    NotInstalled {
        /// The channel asked for.
        channel: String,
        /// Where it was pinned.
        source_file: String,
    },
    /// A file naming the toolchain is malformed.
    #[error("{0}")]
    BadPin(String),
    /// rustup or rustc failed otherwise.
    #[error("Rust toolchain: {0}")]
    Broken(String),
}

/// A toolchain request: the channel and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    /// rustup toolchain name, e.g. `1.95.0`, `stable`, `nightly-2026-01-01`.
    pub channel: String,
    /// `kiln.toml` or `rust-toolchain.toml`.
    pub source_file: String,
}

/// The pinned channel: `[rust] version` in kiln.toml, else `rust-toolchain.toml`'s
/// `[toolchain] channel` (or a legacy one-line `rust-toolchain`), else none (rustup's default).
pub fn pin(
    kiln_config: &toml::Table,
    rust_toolchain_toml: Option<&str>,
    legacy_rust_toolchain: Option<&str>,
) -> Result<Option<Pin>, ToolchainError> {
    if let Some(rust) = kiln_config.get("rust") {
        let version = rust.get("version");
        match version {
            Some(toml::Value::String(v)) if !v.trim().is_empty() => {
                return Ok(Some(Pin {
                    channel: v.trim().to_string(),
                    source_file: "kiln.toml".to_string(),
                }))
            }
            Some(other) => {
                return Err(ToolchainError::BadPin(format!(
                    "kiln.toml: `[rust] version` must be a toolchain name such as \"1.95.0\", found `{other}`"
                )))
            }
            None => {}
        }
    }
    if let Some(text) = rust_toolchain_toml {
        let table: toml::Table = toml::from_str(text)
            .map_err(|e| ToolchainError::BadPin(format!("rust-toolchain.toml: {e}")))?;
        let channel = table
            .get("toolchain")
            .and_then(|t| t.get("channel"))
            .and_then(|c| c.as_str())
            .ok_or_else(|| {
                ToolchainError::BadPin(
                    "rust-toolchain.toml: expected `[toolchain] channel = \"...\"`".to_string(),
                )
            })?;
        return Ok(Some(Pin {
            channel: channel.to_string(),
            source_file: "rust-toolchain.toml".to_string(),
        }));
    }
    if let Some(text) = legacy_rust_toolchain {
        let channel = text.trim();
        if !channel.is_empty() && !channel.contains(char::is_whitespace) {
            return Ok(Some(Pin {
                channel: channel.to_string(),
                source_file: "rust-toolchain".to_string(),
            }));
        }
    }
    Ok(None)
}

/// Whether the compiler found for a pinned workspace is the pinned one. A compiler inside
/// rustup's `toolchains/` was picked by rustup from `RUSTUP_TOOLCHAIN`, so it is; any other (a
/// distribution's, Nix's: a `rustc` on PATH that is not rustup's shim ignores that variable) only
/// if the pin is a version and `release` (from `rustc -vV`) is that version, or within it
/// (`1.80` takes `1.80.1`).
pub fn pin_honoured(
    pin: &Pin,
    release: &str,
    sysroot: &Path,
    rustup_toolchains: Option<&Path>,
) -> bool {
    if rustup_toolchains.is_some_and(|dir| sysroot.starts_with(dir)) {
        return true;
    }
    let channel = pin.channel.as_str();
    let is_version = channel.starts_with(|c: char| c.is_ascii_digit());
    is_version
        && (release == channel
            || release
                .strip_prefix(channel)
                .is_some_and(|rest| rest.starts_with('.')))
}

/// Whether rustup's error output says the toolchain is missing (`error: toolchain '1.31.0-…'
/// is not installed`), not some other part of it (a component or target of an installed one).
pub fn says_not_installed(stderr: &str) -> bool {
    stderr.lines().any(|line| {
        let line = line.trim_start();
        let line = line.strip_prefix("error: ").unwrap_or(line);
        line.starts_with("toolchain '") && line.trim_end().ends_with("' is not installed")
    })
}

/// The `key: value` field of `rustc -vV`.
pub fn version_field<'a>(verbose_version: &'a str, key: &str) -> Option<&'a str> {
    verbose_version.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(": "))
            .map(str::trim)
    })
}

/// The files whose content the identity digests: the compiler, its driver and LLVM libraries, the
/// target's standard library, and the linker rustc may run from the sysroot (`rust-lld` and its
/// `gcc-ld` wrappers, the default on x86_64 Linux since Rust 1.90) (sorted paths relative to
/// the sysroot; a directory an older toolchain lacks is skipped).
pub fn identity_files(sysroot: &Path, host: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut files = vec![PathBuf::from("bin/rustc")];
    let mut push_dir = |rel: &Path, optional: bool, filter: &dyn Fn(&str) -> bool| {
        let entries = match std::fs::read_dir(sysroot.join(rel)) {
            Ok(entries) => entries,
            Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
            .filter(|e| filter(&e.file_name().to_string_lossy()))
            .map(|e| rel.join(e.file_name()))
            .collect();
        found.sort();
        files.extend(found);
        Ok(())
    };
    push_dir(Path::new("lib"), false, &|n| {
        n.starts_with("librustc_driver") || n.starts_with("libLLVM")
    })?;
    let target_dir = Path::new("lib/rustlib").join(host);
    push_dir(&target_dir.join("lib"), false, &|_| true)?;
    push_dir(&target_dir.join("bin"), true, &|_| true)?;
    push_dir(&target_dir.join("bin/gcc-ld"), true, &|_| true)?;
    Ok(files)
}

/// The memo key for the identity digest: sysroot path plus size and mtime of the identity files.
pub fn identity_memo_key(sysroot: &Path, files: &[PathBuf]) -> String {
    let mut key = format!("rust-toolchain-identity\0{}", sysroot.display());
    for file in files {
        let stat = std::fs::metadata(sysroot.join(file))
            .map(|m| {
                let mtime = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                format!("{}:{mtime}", m.len())
            })
            .unwrap_or_else(|_| "missing".to_string());
        key.push_str(&format!("\0{}={stat}", file.display()));
    }
    key
}

/// Digests the identity files (content and relative name).
pub fn digest_files(sysroot: &Path, files: &[PathBuf]) -> std::io::Result<String> {
    let mut listing = String::new();
    for file in files {
        let digest = Digest::of_file(DigestFunction::Blake3, &sysroot.join(file))?;
        listing.push_str(&format!("{} {}\n", digest.hex(), file.display()));
    }
    Ok(Digest::of_bytes(DigestFunction::Blake3, listing.as_bytes()).hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_is_honoured_by_rustups_toolchains_or_by_a_compiler_of_that_version() {
        let pin = |channel: &str| Pin {
            channel: channel.to_string(),
            source_file: "kiln.toml".to_string(),
        };
        let rustup = Path::new("/home/u/.rustup/toolchains");
        let managed = rustup.join("nightly-x86_64-unknown-linux-gnu");
        let distro = Path::new("/usr");
        assert!(pin_honoured(
            &pin("nightly"),
            "1.97.0-nightly",
            &managed,
            Some(rustup)
        ));
        assert!(pin_honoured(&pin("1.80.0"), "1.80.0", distro, Some(rustup)));
        assert!(pin_honoured(&pin("1.80"), "1.80.1", distro, None));
        assert!(!pin_honoured(
            &pin("1.80.0"),
            "1.95.0",
            distro,
            Some(rustup)
        ));
        assert!(!pin_honoured(&pin("1.8"), "1.80.0", distro, None));
        assert!(!pin_honoured(
            &pin("stable"),
            "1.95.0",
            distro,
            Some(rustup)
        ));
    }

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn kiln_toml_wins_then_rust_toolchain_toml_then_default() {
        let with_pin = table("[rust]\nversion = \"1.80.0\"\n");
        let file = "[toolchain]\nchannel = \"1.95.0\"\n";
        assert_eq!(
            pin(&with_pin, Some(file), None).unwrap().unwrap().channel,
            "1.80.0"
        );
        let from_file = pin(&table(""), Some(file), None).unwrap().unwrap();
        assert_eq!(from_file.channel, "1.95.0");
        assert_eq!(from_file.source_file, "rust-toolchain.toml");
        assert_eq!(
            pin(&table(""), None, Some("nightly\n"))
                .unwrap()
                .unwrap()
                .channel,
            "nightly"
        );
        assert_eq!(pin(&table(""), None, None).unwrap(), None);
    }

    #[test]
    fn bad_pins_are_errors() {
        assert!(pin(&table("[rust]\nversion = 3\n"), None, None).is_err());
        let err = pin(&table(""), Some("[toolchain]\nprofile = \"x\"\n"), None).unwrap_err();
        assert!(err.to_string().contains("channel"), "{err}");
    }

    #[test]
    fn only_a_missing_toolchain_counts_as_not_installed() {
        assert!(says_not_installed(
            "error: toolchain '1.31.0-x86_64-unknown-linux-gnu' is not installed\n\
             help: run `rustup toolchain install` to install it\n"
        ));
        assert!(!says_not_installed(
            "error: component 'rust-std' for target 'wasm32-unknown-unknown' is not installed\n"
        ));
        assert!(!says_not_installed("error: could not read settings\n"));
    }

    #[test]
    fn not_installed_message_names_the_install_command() {
        let err = ToolchainError::NotInstalled {
            channel: "1.70.0".into(),
            source_file: "kiln.toml".into(),
        };
        assert_eq!(
            err.to_string(),
            "Rust toolchain `1.70.0` (kiln.toml) is not installed; run `rustup toolchain install 1.70.0`"
        );
    }

    #[test]
    fn version_fields() {
        let vv = "rustc 1.95.0 (59807616e 2026-04-14)\nbinary: rustc\nhost: x86_64-unknown-linux-gnu\nrelease: 1.95.0\n";
        assert_eq!(version_field(vv, "host"), Some("x86_64-unknown-linux-gnu"));
        assert_eq!(version_field(vv, "release"), Some("1.95.0"));
        assert_eq!(version_field(vv, "commit-hash"), None);
    }

    /// A sysroot with a compiler, its driver library, an unrelated library and the host's
    /// standard library.
    fn fake_sysroot() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (path, content) in [
            ("bin/rustc", "compiler"),
            ("bin/cargo", "not part of the identity"),
            ("lib/librustc_driver-abc.so", "driver"),
            ("lib/libLLVM.so.22.1-rust", "llvm"),
            ("lib/libfoo.so", "not listed"),
            ("lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld", "lld"),
            (
                "lib/rustlib/x86_64-unknown-linux-gnu/bin/gcc-ld/ld.lld",
                "wrapper",
            ),
            (
                "lib/rustlib/x86_64-unknown-linux-gnu/lib/libstd-1.rlib",
                "std",
            ),
            (
                "lib/rustlib/x86_64-unknown-linux-gnu/lib/libcore-1.rlib",
                "core",
            ),
            (
                "lib/rustlib/wasm32-unknown-unknown/lib/libstd-2.rlib",
                "other target",
            ),
        ] {
            std::fs::create_dir_all(root.join(path).parent().unwrap()).unwrap();
            std::fs::write(root.join(path), content).unwrap();
        }
        dir
    }

    #[test]
    fn the_sysroot_sits_inside_the_exec_root() {
        let inside = SANDBOX_SYSROOT.strip_prefix(&format!("{}/", kiln_exec::EXEC_ROOT));
        assert_eq!(inside, Some("external/kiln_rust_toolchain"));
        assert_eq!(SANDBOX_RUSTC, format!("{SANDBOX_SYSROOT}/bin/rustc"));
    }

    #[test]
    fn the_identity_covers_the_compiler_its_libraries_the_hosts_std_and_linker() {
        let dir = fake_sysroot();
        let files = identity_files(dir.path(), "x86_64-unknown-linux-gnu").unwrap();
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        assert_eq!(
            names,
            [
                "bin/rustc",
                "lib/libLLVM.so.22.1-rust",
                "lib/librustc_driver-abc.so",
                "lib/rustlib/x86_64-unknown-linux-gnu/lib/libcore-1.rlib",
                "lib/rustlib/x86_64-unknown-linux-gnu/lib/libstd-1.rlib",
                "lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld",
                "lib/rustlib/x86_64-unknown-linux-gnu/bin/gcc-ld/ld.lld",
            ]
        );
        // An older toolchain without the linker directory.
        std::fs::remove_dir_all(dir.path().join("lib/rustlib/x86_64-unknown-linux-gnu/bin"))
            .unwrap();
        let files = identity_files(dir.path(), "x86_64-unknown-linux-gnu").unwrap();
        assert_eq!(files.len(), 5);
    }

    #[test]
    fn any_identity_file_changing_changes_the_digest_and_its_memo_key() {
        let dir = fake_sysroot();
        let root = dir.path();
        let files = identity_files(root, "x86_64-unknown-linux-gnu").unwrap();
        let digest = digest_files(root, &files).unwrap();
        let key = identity_memo_key(root, &files);
        assert_eq!(digest_files(root, &files).unwrap(), digest, "stable");
        assert_eq!(identity_memo_key(root, &files), key, "stable");
        for file in &files {
            let path = root.join(file);
            let before = std::fs::read(&path).unwrap();
            std::fs::write(&path, [before.as_slice(), b"!"].concat()).unwrap();
            assert_ne!(
                digest_files(root, &files).unwrap(),
                digest,
                "{}",
                file.display()
            );
            assert_ne!(identity_memo_key(root, &files), key, "{}", file.display());
            std::fs::write(&path, &before).unwrap();
            assert_eq!(digest_files(root, &files).unwrap(), digest);
        }
        // A file outside the identity changes neither.
        std::fs::write(root.join("bin/cargo"), "another cargo").unwrap();
        assert_eq!(digest_files(root, &files).unwrap(), digest);
        // The same toolchain elsewhere has the same digest but its own memo key.
        let copy = fake_sysroot();
        assert_eq!(digest_files(copy.path(), &files).unwrap(), digest);
        assert_ne!(identity_memo_key(copy.path(), &files), key);
    }
}
