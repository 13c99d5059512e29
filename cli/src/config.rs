//! `kiln.toml`: the file that marks a workspace root and holds its settings. Command-line flags
//! override it. Unknown keys are errors, so a typo never silently does nothing.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The name of the file marking a workspace root.
pub const WORKSPACE_FILE: &str = "kiln.toml";

/// Parsed `kiln.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[workspace]`.
    #[serde(default)]
    pub workspace: WorkspaceSection,
    /// `[build]`.
    #[serde(default)]
    pub build: BuildSection,
    /// `[cache]`.
    #[serde(default)]
    pub cache: CacheSection,
    /// `[sandbox]`.
    #[serde(default)]
    pub sandbox: SandboxSection,
    /// `[go]`: accepted here, read and validated by the Go rules (from `raw`).
    #[serde(default)]
    #[allow(dead_code)]
    pub go: Option<toml::Table>,
    /// `[rust]`: accepted here, read and validated by the Rust rules (from `raw`).
    #[serde(default)]
    #[allow(dead_code)]
    pub rust: Option<toml::Table>,
    /// The whole file as written, handed to rules (which own their sections).
    #[serde(skip)]
    pub raw: toml::Table,
    /// `[remote]`.
    #[serde(default)]
    pub remote: RemoteSection,
}

/// `[remote]` settings: a REAPI cache behind the local one (flags of the same names override).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteSection {
    /// `grpc://host:port` or `grpcs://host:port`.
    pub cache: Option<String>,
    /// REAPI instance name.
    pub instance_name: Option<String>,
    /// Headers sent with every call, e.g. `{ authorization = "Bearer TOKEN" }`.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Deadline of one call, in seconds (default 5).
    pub timeout: Option<u64>,
    /// Upload the results of actions run here (default true).
    pub upload_local_results: Option<bool>,
    /// `all`, `toplevel` (default) or `minimal`.
    pub download_outputs: Option<String>,
    /// PEM certificate(s) trusted to sign the cache's certificate (relative to the workspace).
    pub tls_certificate: Option<std::path::PathBuf>,
    /// PEM client certificate (relative to the workspace), with `tls_client_key`.
    pub tls_client_certificate: Option<std::path::PathBuf>,
    /// PEM private key of `tls_client_certificate` (relative to the workspace).
    pub tls_client_key: Option<std::path::PathBuf>,
}

/// `[workspace]` settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceSection {
    /// Workspace name used in runfiles trees (default `_main`, as Bazel with bzlmod).
    pub name: Option<String>,
}

/// `[build]` settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSection {
    /// Parallel actions (default: number of cores).
    pub jobs: Option<usize>,
    /// `blake3` (default) or `sha256`.
    pub digest_function: Option<String>,
    /// `fastbuild` (default), `dbg` or `opt`.
    pub compilation_mode: Option<String>,
    /// Keep going after a failure.
    pub keep_going: Option<bool>,
}

/// `[cache]` settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// Directory of the shared local cache (default `$XDG_CACHE_HOME/kiln`).
    pub dir: Option<PathBuf>,
    /// Size cap such as `10G` or `500M` (default 10G).
    pub max_size: Option<String>,
}

/// `[sandbox]` settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSection {
    /// `auto` (default), `namespaces` or `plain`.
    pub mode: Option<String>,
}

/// Finds the workspace root: the nearest ancestor of `start` holding `kiln.toml`.
pub fn find_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|dir| dir.join(WORKSPACE_FILE).is_file())
        .map(Path::to_path_buf)
}

/// Reads and validates `kiln.toml` at `root`.
pub fn load(root: &Path) -> Result<Config> {
    let path = root.join(WORKSPACE_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("Cannot read `{}`", path.display()))?;
    let mut config: Config = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
    config.raw = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
    Ok(config)
}

/// Parses a size such as `10G`, `512M`, `64K` or a plain byte count.
pub fn parse_size(text: &str) -> Result<u64> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&text[..i], text[i..].trim()),
        None => (text, ""),
    };
    let value: f64 = number.parse().with_context(|| {
        format!("Invalid size `{text}`; expected a number with K, M, G or T, e.g. `10G`")
    })?;
    let multiplier: u64 = match unit
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => bail!("Invalid size `{text}`; expected a number with K, M, G or T, e.g. `10G`"),
    };
    Ok((value * multiplier as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10G").unwrap(), 10 << 30);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5K").unwrap(), 1536);
        assert_eq!(parse_size("123").unwrap(), 123);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("10Q").is_err());
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = toml::from_str::<Config>("[build]\njbos = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("jbos"), "{err}");
    }
}
