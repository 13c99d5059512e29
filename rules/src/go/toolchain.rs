//! The Go SDK: where it is on the host, its identity (version and a content digest, computed once
//! and memoized), and the fixed path it is mounted at inside every Go action
//! ([`SDK_MOUNT`]), so no host path reaches a command line.

use std::io::Read;
use std::path::{Path, PathBuf};

use kiln_graph::action::ToolMount;

use super::godebug;

/// Where the SDK appears inside the sandbox: a fixed directory inside the exec root, as Bazel
/// puts a toolchain under `external/` (the sandbox refuses an input or output at or under it).
pub const SDK_MOUNT: &str = "/kiln/execroot/external/kiln_go_sdk";

/// What command lines need to know about the SDK and the platform they compile for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SandboxSdk {
    /// `go1.26.8`.
    pub version: String,
    /// Target OS.
    pub goos: String,
    /// Target architecture.
    pub goarch: String,
    /// `<GOOS>_<GOARCH>` of the machine the tools run on (`pkg/tool/<tool_dir>/compile`).
    pub tool_dir: String,
    /// The architecture's variable and its value (`GOAMD64=v1`, `GOARM64=v8.0`), if it has one.
    pub arch_env: Option<(String, String)>,
}

impl SandboxSdk {
    /// An SDK building for the machine it runs on (GOAMD64/GOARM64 at their defaults).
    pub fn host(version: &str, goos: &str, goarch: &str) -> SandboxSdk {
        let arch_env = match goarch {
            "amd64" => Some(("GOAMD64".to_string(), "v1".to_string())),
            "arm64" => Some(("GOARM64".to_string(), "v8.0".to_string())),
            _ => None,
        };
        SandboxSdk {
            version: version.into(),
            goos: goos.into(),
            goarch: goarch.into(),
            tool_dir: format!("{goos}_{goarch}"),
            arch_env,
        }
    }

    /// The same tools building for `goos`/`goarch`, with that architecture's variable.
    pub fn for_target(&self, goos: &str, goarch: &str, arch_env: Option<(String, String)>) -> Self {
        SandboxSdk {
            version: self.version.clone(),
            goos: goos.into(),
            goarch: goarch.into(),
            tool_dir: self.tool_dir.clone(),
            arch_env,
        }
    }

    /// A tool of the SDK, under the mount.
    pub fn tool(&self, name: &str) -> String {
        format!("{SDK_MOUNT}/pkg/tool/{}/{name}", self.tool_dir)
    }

    /// Whether `go build` links position-independent executables here by default
    /// (`internal/platform.DefaultPIE` without `-race`).
    pub fn default_pie(&self) -> bool {
        matches!(self.goos.as_str(), "android" | "ios" | "windows" | "darwin")
    }

    /// The `-buildmode` the linker gets (`go build`'s default build mode).
    pub fn link_buildmode(&self) -> &'static str {
        if self.default_pie() {
            "pie"
        } else {
            "exe"
        }
    }

    /// The code generation flag compile and asm get for that build mode (`-shared` for PIE
    /// except on Windows and AIX).
    pub fn codegen_flag(&self) -> Option<&'static str> {
        (self.default_pie() && !matches!(self.goos.as_str(), "windows" | "aix"))
            .then_some("-shared")
    }

    /// The `-D` definitions `go build` gives `asm` for the architecture variable.
    pub fn asm_defines(&self) -> Vec<String> {
        let value = self
            .arch_env
            .as_ref()
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        let mut out = Vec::new();
        match self.goarch.as_str() {
            "386" => out.push(format!("GO386_{value}")),
            "amd64" => out.push(format!("GOAMD64_{value}")),
            "mips" | "mipsle" => out.push(format!("GOMIPS_{value}")),
            "mips64" | "mips64le" => out.push(format!("GOMIPS64_{value}")),
            "riscv64" => out.push(format!("GORISCV64_{value}")),
            "ppc64" | "ppc64le" => {
                if value == "power10" {
                    out.push("GOPPC64_power10".into());
                }
                if value == "power10" || value == "power9" {
                    out.push("GOPPC64_power9".into());
                }
                out.push("GOPPC64_power8".into());
            }
            "arm" => {
                if value.contains('7') {
                    out.push("GOARM_7".into());
                }
                if value.contains('7') || value.contains('6') {
                    out.push("GOARM_6".into());
                }
                out.push("GOARM_5".into());
            }
            "arm64" if value.contains(",lse") => out.push("GOARM64_LSE".into()),
            _ => {}
        }
        out
    }

    /// Environment of every Go action.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("GOROOT", SDK_MOUNT),
            ("GOOS", &self.goos),
            ("GOARCH", &self.goarch),
            ("CGO_ENABLED", "0"),
            ("GOTOOLCHAIN", "local"),
            ("GO111MODULE", "off"),
            ("GOPATH", ""),
            ("GOENV", "off"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        // Kept for the host build as it always was, so its action keys do not change.
        let (key, value) = self
            .arch_env
            .clone()
            .unwrap_or_else(|| ("GOAMD64".to_string(), "v1".to_string()));
        env.push((key, value));
        env
    }
}

/// A resolved SDK.
#[derive(Clone, Debug)]
pub struct Sdk {
    /// GOROOT on the host (never put in a command).
    pub host_root: PathBuf,
    /// Version, OS, architecture.
    pub sandbox: SandboxSdk,
    /// `go1.26.8@<blake3 of the tree>`: what action keys record instead of the host path.
    pub identity: String,
    /// The SDK's `internal/godebugs` table.
    pub godebug_table: godebug::Table,
    /// The operating systems and architectures the SDK knows.
    pub syslist: std::sync::Arc<super::syslist::SysList>,
}

/// Errors locating or reading an SDK.
#[derive(Debug, thiserror::Error)]
pub enum ToolchainError {
    /// No usable SDK; the message says how to fix it.
    #[error("{0}")]
    Missing(String),
    /// Reading the SDK failed.
    #[error("Reading the Go SDK at `{path}`: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl Sdk {
    /// Reads an SDK rooted at `root` (VERSION, godebug table) given its content digest.
    pub fn at(root: &Path, digest: &str, goos: &str, goarch: &str) -> Result<Sdk, ToolchainError> {
        let version = read_version(root)?;
        let table_path = root.join("src/internal/godebugs/table.go");
        let table = std::fs::read_to_string(&table_path).map_err(|source| ToolchainError::Io {
            path: table_path,
            source,
        })?;
        Ok(Sdk {
            host_root: root.to_path_buf(),
            identity: format!("{version}@{digest}"),
            sandbox: SandboxSdk::host(&version, goos, goarch),
            godebug_table: godebug::parse_table(&table),
            syslist: std::sync::Arc::new(super::syslist::SysList::of_sdk(root)),
        })
    }

    /// The minor version of the SDK (`26` for go1.26.8).
    pub fn minor(&self) -> u32 {
        self.sandbox
            .version
            .trim_start_matches("go1.")
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    }

    /// The mount every Go action gets.
    pub fn mount(&self) -> ToolMount {
        ToolMount {
            sandbox_path: SDK_MOUNT.into(),
            host_path: self.host_root.clone(),
            identity: self.identity.clone(),
        }
    }
}

/// The first line of `$GOROOT/VERSION` (`go1.26.8`).
pub fn read_version(root: &Path) -> Result<String, ToolchainError> {
    let path = root.join("VERSION");
    let text = std::fs::read_to_string(&path).map_err(|source| ToolchainError::Io {
        path: path.clone(),
        source,
    })?;
    let first = text.lines().next().unwrap_or("").trim().to_string();
    if !first.starts_with("go1.") {
        return Err(ToolchainError::Missing(format!(
            "`{}` does not name a Go release (found `{first}`)",
            path.display()
        )));
    }
    Ok(first)
}

/// Files whose metadata stands for the whole SDK in the memo key of its digest (an SDK is
/// replaced as a whole, never edited file by file).
pub fn witness_files(root: &Path, goos: &str, goarch: &str) -> Vec<PathBuf> {
    vec![
        root.join("VERSION"),
        root.join("bin/go"),
        root.join(format!("pkg/tool/{goos}_{goarch}/compile")),
        root.join(format!("pkg/tool/{goos}_{goarch}/link")),
        root.join("src/runtime/proc.go"),
    ]
}

/// BLAKE3 over every file of the tree: sorted relative paths, executable bits, symlink targets and
/// contents. Slow (the SDK is ~250 MB); callers memoize it.
pub fn content_digest(root: &Path) -> Result<String, ToolchainError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ToolchainError::Io { path, source }
    };
    let mut entries: Vec<PathBuf> = Vec::new();
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = entry.map_err(|e| ToolchainError::Io {
            path: root.to_path_buf(),
            source: e.into(),
        })?;
        if !entry.file_type().is_dir() {
            entries.push(entry.path().to_path_buf());
        }
    }
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    for path in entries {
        let rel = path.strip_prefix(root).unwrap_or(&path);
        let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        hasher.update(rel.to_string_lossy().as_bytes());
        hasher.update(b"\0");
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).map_err(io(&path))?;
            hasher.update(b"L");
            hasher.update(target.to_string_lossy().as_bytes());
        } else {
            use std::os::unix::fs::PermissionsExt;
            hasher.update(if meta.permissions().mode() & 0o111 != 0 {
                b"X"
            } else {
                b"F"
            });
            let mut file = std::fs::File::open(&path).map_err(io(&path))?;
            let mut file_hasher = blake3::Hasher::new();
            loop {
                let n = file.read(&mut buf).map_err(io(&path))?;
                if n == 0 {
                    break;
                }
                file_hasher.update(&buf[..n]);
            }
            hasher.update(file_hasher.finalize().as_bytes());
        }
        hasher.update(b"\n");
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// The message for a machine without Go.
pub fn missing_message(detail: &str) -> String {
    format!(
        "No Go toolchain: {detail}. Install Go (https://go.dev/dl) and put its `bin` directory on PATH, or pin one in kiln.toml:\n\n    [go]\n    version = \"1.26.0\""
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_changes_with_content_and_exec_bits() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("VERSION"), "go1.22.1\ntime x\n").unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/go"), "x").unwrap();
        let one = content_digest(dir.path()).unwrap();
        assert_eq!(one, content_digest(dir.path()).unwrap());
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join("bin/go"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let two = content_digest(dir.path()).unwrap();
        assert_ne!(one, two);
        std::fs::write(dir.path().join("bin/go"), "y").unwrap();
        assert_ne!(two, content_digest(dir.path()).unwrap());
        assert_eq!(read_version(dir.path()).unwrap(), "go1.22.1");
    }
}
