//! What the host contributes to every action: OS, CPU and a digest of the system files actions
//! call (the shell, libc, the OS release), so a cache never serves an output made on another system.

use std::collections::{BTreeMap, HashMap};

use kiln_cache::{Digest, DigestFunction};

use crate::action_key::PlatformProperties;

/// System files whose content identifies the host system for caching purposes.
const SYSTEM_FILES: &[&str] = &[
    "/etc/os-release",
    "/usr/lib/os-release",
    "/lib64/ld-linux-x86-64.so.2",
    "/lib/ld-linux-aarch64.so.1",
];

/// The host's OS name as Bazel's `@platforms//os` spells it.
pub fn host_os() -> &'static str {
    std::env::consts::OS
}

/// The host's CPU as Bazel's `@platforms//cpu` spells it.
pub fn host_cpu() -> &'static str {
    std::env::consts::ARCH
}

/// Platform properties for this host. `digest` hashes a host file (through the file memo).
pub fn platform_properties(
    function: DigestFunction,
    digest: &dyn Fn(&str) -> Option<Digest>,
) -> PlatformProperties {
    let mut properties = BTreeMap::new();
    properties.insert("OSFamily".to_string(), host_os().to_string());
    properties.insert("ISA".to_string(), host_cpu().replace('_', "-"));
    let mut identity = String::new();
    for file in SYSTEM_FILES {
        if let Ok(path) = std::fs::canonicalize(file) {
            if let Some(digest) = digest(&path.to_string_lossy()) {
                identity.push_str(&format!("{file}={}\n", digest.hex()));
            }
        }
    }
    properties.insert(
        "kiln-host-system".to_string(),
        Digest::of_bytes(function, identity.as_bytes()).hex(),
    );
    PlatformProperties { properties }
}

/// Digests of host tools by absolute path, computed once each. A file is digested by content
/// through `digest`; a directory (a `PATH` entry whose tools a shell command may call) by the
/// name, size and modification time of every executable in it, which changes whenever a package
/// upgrade replaces one and is the same on machines with the same packages. `observe` is told
/// about each directory and tool it read, so a no-op record notices when one changes.
pub fn tool_digests(
    tools: impl Iterator<Item = String>,
    digest: &dyn Fn(&str) -> Option<Digest>,
    observe: &(dyn Fn(&str, &std::fs::Metadata) + Sync),
    function: DigestFunction,
) -> HashMap<String, String> {
    let mut digests = HashMap::new();
    // `PATH` often names one directory twice (`/bin` is `/usr/bin` on merged-/usr systems).
    let mut directories: HashMap<std::path::PathBuf, Option<String>> = HashMap::new();
    for tool in tools {
        if digests.contains_key(&tool) {
            continue;
        }
        // The path as named (its symlinks may be repointed) is observed as well as its target.
        if let Ok(metadata) = std::fs::metadata(&tool) {
            observe(&tool, &metadata);
        }
        let resolved = std::fs::canonicalize(&tool).ok();
        let hex = match resolved {
            Some(path) if path.is_dir() => {
                let path_text = path.to_string_lossy().to_string();
                if let Ok(metadata) = std::fs::metadata(&path) {
                    observe(&path_text, &metadata);
                }
                directories
                    .entry(path)
                    .or_insert_with_key(|path| tool_dir_digest(path, function, observe))
                    .clone()
            }
            Some(path) => digest(&path.to_string_lossy()).map(|d| d.hex()),
            None => None,
        };
        digests.insert(tool, hex.unwrap_or_else(|| "missing".to_string()));
    }
    digests
}

fn tool_dir_digest(
    dir: &std::path::Path,
    function: DigestFunction,
    observe: &(dyn Fn(&str, &std::fs::Metadata) + Sync),
) -> Option<String> {
    use rayon::prelude::*;
    use std::os::unix::fs::MetadataExt;
    // `/usr/bin` holds a thousand tools or more: their stats are taken in parallel.
    let listing: Vec<std::fs::DirEntry> = std::fs::read_dir(dir).ok()?.flatten().collect();
    let mut entries: Vec<String> = listing
        .par_iter()
        .filter_map(|entry| {
            let metadata = std::fs::metadata(entry.path()).ok()?;
            (metadata.is_file() && metadata.mode() & 0o111 != 0).then(|| {
                // Each tool's own stat: an in-place upgrade does not touch the directory.
                observe(&entry.path().to_string_lossy(), &metadata);
                format!(
                    "{} {} {}",
                    entry.file_name().to_string_lossy(),
                    metadata.size(),
                    metadata.mtime()
                )
            })
        })
        .collect();
    entries.sort();
    Some(Digest::of_bytes(function, entries.join("\n").as_bytes()).hex())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn digests(dir: &std::path::Path) -> String {
        let no_file = |_: &str| None;
        let tools = tool_digests(
            std::iter::once(dir.to_string_lossy().to_string()),
            &no_file,
            &|_, _| {},
            DigestFunction::Blake3,
        );
        tools.values().next().cloned().unwrap_or_default()
    }

    fn executable(path: &std::path::Path, content: &str) {
        std::fs::write(path, content).unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn a_tool_directory_digest_follows_its_executables() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        executable(&dir.path().join("sed"), "v1");
        let before = digests(dir.path());
        assert_eq!(before, digests(dir.path()), "stable when nothing changes");
        std::fs::write(dir.path().join("README"), "not a tool").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(before, digests(dir.path()), "non-executables do not count");
        executable(&dir.path().join("awk"), "new tool");
        let added = digests(dir.path());
        assert_ne!(before, added, "a new tool changes the digest");
        executable(&dir.path().join("sed"), "version 2");
        assert_ne!(
            added,
            digests(dir.path()),
            "an upgraded tool (new size) changes the digest"
        );
    }

    #[test]
    fn a_directory_named_twice_on_path_is_read_once() {
        // `/bin` and `/usr/bin` on a merged-/usr system.
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let real = dir.path().join("usr-bin");
        std::fs::create_dir(&real).unwrap_or_else(|e| panic!("{e}"));
        for tool in ["sed", "awk", "cat"] {
            executable(&real.join(tool), tool);
        }
        let alias = dir.path().join("bin");
        std::os::unix::fs::symlink(&real, &alias).unwrap_or_else(|e| panic!("{e}"));
        let tool_stats = std::sync::Mutex::new(Vec::new());
        let names = [&real, &alias].map(|p| p.to_string_lossy().to_string());
        let tools = tool_digests(
            names.iter().cloned(),
            &|_| None,
            &|path, _| {
                if let Ok(mut seen) = tool_stats.lock() {
                    seen.push(path.to_string());
                }
            },
            DigestFunction::Blake3,
        );
        assert_eq!(tools.len(), 2);
        assert_eq!(tools[&names[0]], tools[&names[1]]);
        assert_ne!(tools[&names[0]], "missing");
        let seen = tool_stats.into_inner().unwrap_or_default();
        let sed = real.join("sed").to_string_lossy().to_string();
        assert_eq!(seen.iter().filter(|p| **p == sed).count(), 1, "{seen:?}");
    }

    #[test]
    fn host_system_files_reach_the_platform_properties() {
        let one = platform_properties(DigestFunction::Blake3, &|p| {
            Some(Digest::of_bytes(DigestFunction::Blake3, p.as_bytes()))
        });
        let other = platform_properties(DigestFunction::Blake3, &|p| {
            Some(Digest::of_bytes(
                DigestFunction::Blake3,
                format!("{p}!").as_bytes(),
            ))
        });
        assert_eq!(
            one.properties.get("OSFamily").map(String::as_str),
            Some(host_os())
        );
        assert!(one.properties.contains_key("ISA"));
        assert_ne!(
            one.properties.get("kiln-host-system"),
            other.properties.get("kiln-host-system")
        );
    }
}
