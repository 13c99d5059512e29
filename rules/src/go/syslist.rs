//! The operating systems and architectures Go knows, read from the SDK itself as go/build reads
//! them (`src/internal/syslist/syslist.go`: `KnownOS`, `UnixOS`, `KnownArch`), so that a new
//! release's ports are `_GOOS`/`_GOARCH` file-name suffixes and `unix` members without a Kiln
//! release. An SDK without that file (older releases kept the lists in go/build) or one Kiln
//! cannot read gets the lists of Go 1.26, built in.

use std::path::Path;

/// Known operating systems, those satisfying the `unix` tag, and known architectures.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SysList {
    /// Operating systems a file-name suffix may name (`KnownOS`).
    pub known_os: Vec<String>,
    /// Operating systems that satisfy the `unix` build tag (`UnixOS`).
    pub unix_os: Vec<String>,
    /// Architectures a file-name suffix may name (`KnownArch`).
    pub known_arch: Vec<String>,
}

/// Go 1.26's `KnownOS`.
const BUILTIN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "js",
    "linux",
    "nacl",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
    "zos",
];

/// Go 1.26's `UnixOS`.
const BUILTIN_UNIX: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "linux",
    "netbsd",
    "openbsd",
    "solaris",
];

/// Go 1.26's `KnownArch`.
const BUILTIN_ARCH: &[&str] = &[
    "386",
    "amd64",
    "amd64p32",
    "arm",
    "armbe",
    "arm64",
    "arm64be",
    "loong64",
    "mips",
    "mipsle",
    "mips64",
    "mips64le",
    "mips64p32",
    "mips64p32le",
    "ppc",
    "ppc64",
    "ppc64le",
    "riscv",
    "riscv64",
    "s390",
    "s390x",
    "sparc",
    "sparc64",
    "wasm",
];

impl Default for SysList {
    /// The built-in lists (Go 1.26's).
    fn default() -> SysList {
        let own = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        SysList {
            known_os: own(BUILTIN_OS),
            unix_os: own(BUILTIN_UNIX),
            known_arch: own(BUILTIN_ARCH),
        }
    }
}

impl SysList {
    /// The lists of the SDK at `goroot`, or the built-in ones when it has no readable
    /// `src/internal/syslist/syslist.go`.
    pub fn of_sdk(goroot: &Path) -> SysList {
        std::fs::read_to_string(goroot.join("src/internal/syslist/syslist.go"))
            .ok()
            .and_then(|text| SysList::parse(&text))
            .unwrap_or_default()
    }

    /// Reads the three maps from syslist.go's text; `None` unless all three have entries.
    pub fn parse(text: &str) -> Option<SysList> {
        let list = SysList {
            known_os: map_keys(text, "KnownOS")?,
            unix_os: map_keys(text, "UnixOS")?,
            known_arch: map_keys(text, "KnownArch")?,
        };
        Some(list)
    }

    /// Whether `os` is a known operating system.
    pub fn is_os(&self, os: &str) -> bool {
        self.known_os.iter().any(|k| k == os)
    }

    /// Whether `arch` is a known architecture.
    pub fn is_arch(&self, arch: &str) -> bool {
        self.known_arch.iter().any(|k| k == arch)
    }

    /// Whether `os` satisfies the `unix` tag.
    pub fn is_unix(&self, os: &str) -> bool {
        self.unix_os.iter().any(|k| k == os)
    }
}

/// The quoted keys of `var <name> = map[string]bool{ ... }`.
fn map_keys(text: &str, name: &str) -> Option<Vec<String>> {
    let start = text.find(&format!("var {name} = map[string]bool{{"))?;
    let body = &text[start..];
    let open = body.find('{')?;
    let close = body.find('}')?;
    let keys: Vec<String> = body[open + 1..close]
        .lines()
        .map(|line| line.split("//").next().unwrap_or("").trim())
        .filter_map(|entry| {
            let (key, _) = entry.split_once(':')?;
            Some(key.trim().trim_matches('"').to_string())
        })
        .filter(|key| !key.is_empty())
        .collect();
    (!keys.is_empty()).then_some(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_port_in_the_sdk_is_known() {
        let text = "package syslist\n\n// KnownOS is the list of past, present, and future known GOOS values.\nvar KnownOS = map[string]bool{\n\t\"linux\":   true,\n\t\"kilnos\":  true, // a new port\n}\n\nvar UnixOS = map[string]bool{\n\t\"linux\": true,\n\t\"kilnos\": true,\n}\n\nvar KnownArch = map[string]bool{\n\t\"amd64\": true,\n\t\"kiln64\": true,\n}\n";
        let list = SysList::parse(text).expect("parsed");
        assert!(list.is_os("kilnos") && list.is_unix("kilnos") && list.is_arch("kiln64"));
        assert!(!list.is_os("darwin"));
    }

    /// The SDK these tests run with is read, not the built-in fallback: Go 1.26 has the file.
    #[test]
    #[allow(clippy::disallowed_methods)] // asks the installed `go` where its SDK is
    fn the_installed_sdk_is_read() {
        let out = std::process::Command::new("go")
            .args(["env", "GOROOT"])
            .env("GOTOOLCHAIN", "local")
            .output()
            .expect("the tests need the local Go");
        assert!(out.status.success(), "go env GOROOT failed");
        let root = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let text =
            std::fs::read_to_string(Path::new(&root).join("src/internal/syslist/syslist.go"))
                .expect("Go 1.26 has internal/syslist");
        let parsed = SysList::parse(&text).expect("parsed");
        assert!(parsed.is_os("linux") && parsed.is_os("windows") && parsed.is_arch("amd64"));
        assert!(parsed.is_unix("linux") && !parsed.is_unix("windows"));
        assert_eq!(SysList::of_sdk(Path::new(&root)), parsed);
    }

    #[test]
    fn an_sdk_without_the_file_gets_the_built_in_lists() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(SysList::of_sdk(dir.path()), SysList::default());
        assert_eq!(SysList::parse("package syslist\n"), None);
    }
}
