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

/// Digests of host tools by absolute path, computed once each through `digest`.
pub fn tool_digests(
    tools: impl Iterator<Item = String>,
    digest: &dyn Fn(&str) -> Option<Digest>,
) -> HashMap<String, String> {
    let mut digests = HashMap::new();
    for tool in tools {
        if digests.contains_key(&tool) {
            continue;
        }
        let hex = std::fs::canonicalize(&tool)
            .ok()
            .and_then(|p| digest(&p.to_string_lossy()))
            .map(|d| d.hex())
            .unwrap_or_else(|| "missing".to_string());
        digests.insert(tool, hex);
    }
    digests
}
