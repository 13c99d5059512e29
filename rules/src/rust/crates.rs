//! Registry crates as an external repository (`@crates//:serde`), crate_universe-style: the
//! workspace's Cargo.toml and Cargo.lock drive it, `cargo metadata` gives the package graph and
//! Kiln resolves features on it as cargo's resolver 2 does ([`features`], [`variants`]), every
//! crate is verified against Cargo.lock's sha256 ([`fetch`]) and gets a generated BUILD file
//! ([`render`]). The repository directory is content-addressed under the shared cache and never
//! changes once written.
//!
//! Configuration (kiln.toml, all optional):
//!
//! ```toml
//! [rust.crates]
//! manifest = "Cargo.toml"   # the cargo workspace's manifest; Cargo.lock sits beside it
//! repository = "crates"     # the repository name
//! ```

pub mod features;
pub mod fetch;
pub mod lockfile;
pub mod metadata;
pub mod render;
pub mod resolver_version;
pub mod variants;

use std::path::{Path, PathBuf};

use kiln_cache::{Digest, DigestFunction};
use kiln_graph::repository::{RepoContext, RepositoryError, RepositoryRule};

use super::context::{find_on_path, shared_toolchain};
use super::toolchain::RustToolchain;

/// Bumped when generated BUILD files change shape, so that old repositories are not reused.
const GENERATOR: &str = "kiln-crates-6";

/// The repository rule for registry crates.
pub struct CratesRepository;

/// `[rust.crates]` of kiln.toml.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CratesConfig {
    /// Workspace-relative path of the cargo workspace's Cargo.toml.
    pub manifest: String,
    /// Repository name.
    pub repository: String,
}

impl CratesConfig {
    /// Reads the section, with defaults.
    pub fn from_config(config: &toml::Table) -> Result<CratesConfig, String> {
        let section = config.get("rust").and_then(|r| r.get("crates"));
        let field = |key: &str, default: &str| -> Result<String, String> {
            match section.and_then(|s| s.get(key)) {
                None => Ok(default.to_string()),
                Some(toml::Value::String(v)) => Ok(v.clone()),
                Some(other) => Err(format!(
                    "kiln.toml: `[rust.crates] {key}` must be a string, found `{other}`"
                )),
            }
        };
        Ok(CratesConfig {
            manifest: field("manifest", "Cargo.toml")?,
            repository: field("repository", "crates")?,
        })
    }
}

impl RepositoryRule for CratesRepository {
    fn resolve(
        &self,
        name: &str,
        ctx: &RepoContext<'_>,
    ) -> Result<Option<PathBuf>, RepositoryError> {
        let config = CratesConfig::from_config(&ctx.workspace.config)
            .map_err(RepositoryError::Definition)?;
        if name != config.repository {
            return Ok(None);
        }
        build(&config, ctx).map(Some)
    }
}

fn definition(message: impl Into<String>) -> RepositoryError {
    RepositoryError::Definition(message.into())
}

fn build(config: &CratesConfig, ctx: &RepoContext<'_>) -> Result<PathBuf, RepositoryError> {
    let workspace = ctx.workspace;
    let manifest = workspace.root.join(&config.manifest);
    let cargo_dir = manifest.parent().unwrap_or(&workspace.root).to_path_buf();
    let lock_path = cargo_dir.join("Cargo.lock");
    ctx.host.observe(&manifest);
    ctx.host.observe(&lock_path);
    let manifest_text = std::fs::read_to_string(&manifest).map_err(|e| {
        definition(format!(
            "`@{}` is made from {} (`[rust.crates] manifest` in kiln.toml), which cannot be read: {e}",
            config.repository, config.manifest
        ))
    })?;
    let lock_text = std::fs::read_to_string(&lock_path).map_err(|e| {
        definition(format!(
            "`@{}` needs {} beside {}: {e}; run `cargo generate-lockfile`",
            config.repository,
            lock_path.display(),
            config.manifest
        ))
    })?;
    let lock = lockfile::Lockfile::parse(&lock_text, &lock_path.display().to_string())
        .map_err(definition)?;
    let toolchain = shared_toolchain(ctx.scoped, workspace, ctx.host)
        .map_err(|e| RepositoryError::Environment(e.to_string()))?;

    let key_text = format!(
        "{GENERATOR}\0{}\0{}\0{}\0{}\0{manifest_text}\0{lock_text}",
        config.repository, config.manifest, toolchain.host, toolchain.identity
    );
    let memo_key = format!(
        "rust-crates-repo\0{}",
        Digest::of_bytes(DigestFunction::Blake3, key_text.as_bytes()).hex()
    );
    if let Some(dir) = recall(ctx, &memo_key) {
        return Ok(dir);
    }

    let resolved = cargo_metadata(&cargo_dir, &toolchain)?;
    let rendered = render_all(config, &resolved, &lock)?;
    let store = workspace.cache_dir.join("rust-crates");
    let final_dir = store.join("repo").join(
        &Digest::of_bytes(
            DigestFunction::Blake3,
            format!("{key_text}\0{}", rendered.fingerprint).as_bytes(),
        )
        .hex()[..32],
    );
    // A directory of that name holds exactly these verified crates and BUILD files (it is
    // renamed into place only once complete): unpacking them again would only rewrite it.
    if !final_dir.join("BUILD.bazel").is_file() {
        let cargo_home = cargo_home();
        let sources = fetch::Sources {
            store: &store.join("crate"),
            cargo_home: cargo_home.as_deref(),
            download: None,
        };
        let staging = store.join(format!("tmp-{}-{}", std::process::id(), unique()));
        let _ = std::fs::remove_dir_all(&staging);
        if let Err(e) = populate(&resolved, &rendered, &sources, &staging) {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        let _ = std::fs::remove_dir_all(&final_dir);
        std::fs::create_dir_all(store.join("repo"))
            .and_then(|_| std::fs::rename(&staging, &final_dir))
            .or_else(|e| {
                // Another build finished the same directory first.
                let _ = std::fs::remove_dir_all(&staging);
                if final_dir.join("BUILD.bazel").is_file() {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| {
                RepositoryError::Environment(format!("writing {}: {e}", final_dir.display()))
            })?;
    }
    let mut memo = final_dir.to_string_lossy().into_owned();
    for member in &resolved.member_manifests {
        ctx.host.observe(member);
        memo.push('\n');
        memo.push_str(&format!(
            "{}\t{}",
            member.display(),
            file_digest(member).unwrap_or_default()
        ));
    }
    ctx.host.memo_put(&memo_key, memo.as_bytes());
    Ok(final_dir)
}

/// A remembered repository for the same inputs, if every member manifest is unchanged.
fn recall(ctx: &RepoContext<'_>, memo_key: &str) -> Option<PathBuf> {
    let memo = String::from_utf8(ctx.host.memo_get(memo_key)?).ok()?;
    let mut lines = memo.lines();
    let dir = PathBuf::from(lines.next()?);
    for line in lines {
        let (path, digest) = line.split_once('\t')?;
        let path = Path::new(path);
        ctx.host.observe(path);
        if file_digest(path)? != digest {
            return None;
        }
    }
    dir.join("BUILD.bazel").is_file().then_some(dir)
}

fn file_digest(path: &Path) -> Option<String> {
    Digest::of_file(DigestFunction::Blake3, path)
        .ok()
        .map(|d| d.hex())
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
}

/// Resolves the workspace with the cargo of the build's own toolchain (the one beside its
/// rustc, so a pinned toolchain resolves with its own cargo, not rustup's default), else the
/// first `cargo` on PATH.
fn cargo_metadata(
    cargo_dir: &Path,
    toolchain: &RustToolchain,
) -> Result<metadata::Resolved, RepositoryError> {
    let beside_rustc = toolchain.sysroot.join("bin/cargo");
    let cargo = if beside_rustc.is_file() {
        beside_rustc
    } else {
        find_on_path("cargo").ok_or_else(|| {
            RepositoryError::Environment(
                "no `cargo` beside the toolchain's rustc or on PATH; install Rust with rustup"
                    .to_string(),
            )
        })?
    };
    let host = toolchain.host.as_str();
    let passed = [
        "PATH",
        "HOME",
        "CARGO_HOME",
        "RUSTUP_HOME",
        "RUSTUP_TOOLCHAIN",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "CARGO_NET_OFFLINE",
        "CARGO_REGISTRIES_CRATES_IO_PROTOCOL",
    ];
    let mut env: Vec<(String, String)> = passed
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    // The toolchain's own rustc, for what cargo asks of the compiler while resolving.
    env.push((
        "RUSTC".to_string(),
        toolchain
            .sysroot
            .join("bin/rustc")
            .to_string_lossy()
            .into_owned(),
    ));
    let cargo_text = cargo.to_string_lossy().into_owned();
    let argv = [
        cargo_text.as_str(),
        "metadata",
        "--format-version=1",
        "--locked",
        "--filter-platform",
        host,
    ];
    let out = kiln_exec::host_command::run(&argv, &env, cargo_dir)
        .map_err(|e| RepositoryError::Environment(e.to_string()))?;
    if !out.success() {
        return Err(definition(format!(
            "`cargo metadata --locked` in {} failed; no crate was used:\n{}",
            cargo_dir.display(),
            out.stderr_text()
        )));
    }
    let platform = metadata::HostPlatform::new(host, &toolchain.cfg);
    metadata::parse(&String::from_utf8_lossy(&out.stdout), &platform, &|root| {
        let file = root.join("Cargo.toml");
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("Cannot read `{}`: {e}", file.display()))?;
        resolver_version::of_root_manifest(&text, &file.display().to_string())
    })
    .map_err(definition)
}

/// The repository's BUILD files, rendered from the resolution alone (before any crate is
/// unpacked), and the fingerprint of everything the repository will hold.
struct Rendered {
    /// Per resolved package: its locked checksum and its BUILD file.
    crates: Vec<(String, String)>,
    /// The root BUILD file.
    root: String,
    /// `defs.bzl`.
    defs: String,
    /// Checksums and BUILD texts, which name the repository's directory.
    fingerprint: String,
}

fn render_all(
    config: &CratesConfig,
    resolved: &metadata::Resolved,
    lock: &lockfile::Lockfile,
) -> Result<Rendered, RepositoryError> {
    let repo = &config.repository;
    let mut fingerprint = String::new();
    let mut crates = Vec::new();
    for (index, package) in resolved.packages.iter().enumerate() {
        if !package.source.starts_with("registry+") && !package.source.starts_with("sparse+") {
            return Err(definition(format!(
                "`{} {}` comes from `{}`; Kiln takes crates from the registry or a vendor directory only",
                package.name, package.version, package.source
            )));
        }
        let checksum = lock
            .checksum(&package.name, &package.version)
            .ok_or_else(|| {
                definition(format!(
                    "Cargo.lock has no checksum for `{} {}`",
                    package.name, package.version
                ))
            })?;
        let build = render::crate_build_file(repo, resolved, index);
        fingerprint.push_str(checksum);
        fingerprint.push_str(&build);
        crates.push((checksum.to_string(), build));
    }
    let root = render::root_build_file(repo, resolved);
    fingerprint.push_str(&root);
    // Members are named by their package in the Kiln workspace: the cargo workspace's
    // directory (where `[rust.crates] manifest` sits) joined with theirs.
    let prefix = Path::new(&config.manifest)
        .parent()
        .map(|p| p.to_string_lossy().trim_end_matches('/').to_string())
        .unwrap_or_default();
    let defs = render::defs_bzl(repo, resolved, &prefix);
    fingerprint.push_str(&defs);
    Ok(Rendered {
        crates,
        root,
        defs,
        fingerprint,
    })
}

/// Writes every verified crate and the rendered BUILD files into `dir`.
fn populate(
    resolved: &metadata::Resolved,
    rendered: &Rendered,
    sources: &fetch::Sources<'_>,
    dir: &Path,
) -> Result<(), RepositoryError> {
    let write = |path: PathBuf, text: &str| {
        std::fs::write(&path, text)
            .map_err(|e| RepositoryError::Environment(format!("{}: {e}", path.display())))
    };
    for (package, (checksum, build)) in resolved.packages.iter().zip(&rendered.crates) {
        let dest = dir.join(render::package_dir(package));
        fetch::materialize(
            &package.name,
            &package.version,
            checksum,
            &package.dir,
            sources,
            &dest,
        )
        .map_err(definition)?;
        remove_build_files(&dest);
        write(dest.join("BUILD.bazel"), build)?;
    }
    write(dir.join("BUILD.bazel"), &rendered.root)?;
    write(dir.join("defs.bzl"), &rendered.defs)
}

/// Crates that ship BUILD files of their own would split into packages our globs cannot cross.
fn remove_build_files(dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if matches!(
                entry.file_name().to_str(),
                Some("BUILD" | "BUILD.bazel" | "BUILD.kiln" | "WORKSPACE" | "WORKSPACE.bazel")
            ) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_errors() {
        let empty = toml::Table::new();
        assert_eq!(
            CratesConfig::from_config(&empty).unwrap(),
            CratesConfig {
                manifest: "Cargo.toml".into(),
                repository: "crates".into()
            }
        );
        let custom: toml::Table =
            toml::from_str("[rust.crates]\nmanifest = \"rust/Cargo.toml\"\n").unwrap();
        assert_eq!(
            CratesConfig::from_config(&custom).unwrap().manifest,
            "rust/Cargo.toml"
        );
        let bad: toml::Table = toml::from_str("[rust.crates]\nrepository = 1\n").unwrap();
        assert!(CratesConfig::from_config(&bad).is_err());
    }
}
