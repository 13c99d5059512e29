//! Opening a workspace: find `kiln.toml`, read it, resolve the shared cache and the workspace's own
//! state directory, and turn flags plus settings into an engine configuration.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use kiln_cache::{CacheConfig, DigestFunction, LocalCache};
use kiln_graph::analysis::BuildSettings;
use kiln_graph::remote_tier::RemoteTier;

use crate::args::{BuildFlags, CommonArgs, CompilationMode, DigestFunctionArg, SpawnStrategy};
use crate::config::{self, Config};
use crate::exit::{Exit, BAD_COMMAND_LINE, LOCAL_ENVIRONMENT};

/// Default size cap of the shared cache.
const DEFAULT_CACHE_SIZE: u64 = 10 << 30;

/// An opened workspace.
pub struct Workspace {
    /// The root (directory of `kiln.toml`).
    pub root: PathBuf,
    /// The current directory's package, for relative labels and patterns.
    pub cwd_package: String,
    /// Parsed `kiln.toml`.
    pub config: Config,
    /// Root of the shared cache.
    pub cache_dir: PathBuf,
    /// This workspace's state directory (memos, history, lock).
    pub state_dir: PathBuf,
}

impl Workspace {
    /// Finds and opens the workspace containing the current directory.
    pub fn open(common: &CommonArgs) -> Result<Workspace> {
        let cwd = std::env::current_dir().context("Cannot read the current directory")?;
        let root = config::find_root(&cwd).ok_or_else(|| {
            Exit::new(
                BAD_COMMAND_LINE,
                format!("`{}` is not inside a Kiln workspace: no `kiln.toml` here or in a parent directory", cwd.display()),
            )
        })?;
        let config =
            config::load(&root).map_err(|e| Exit::new(BAD_COMMAND_LINE, format!("{e:#}")))?;
        let cwd_package = cwd
            .strip_prefix(&root)
            .ok()
            .map(|p| p.to_string_lossy().trim_matches('/').to_string())
            .unwrap_or_default();
        let cache_dir = match (&common.cache_dir, &config.cache.dir) {
            (Some(dir), _) => absolute(dir, &cwd),
            (None, Some(dir)) => absolute(dir, &root),
            (None, None) => kiln_cache::default_root().ok_or_else(|| {
                Exit::new(
                    LOCAL_ENVIRONMENT,
                    "Cannot find a cache directory: set `HOME`, `XDG_CACHE_HOME` or `[cache] dir`",
                )
            })?,
        };
        let id = blake3::hash(root.to_string_lossy().as_bytes()).to_hex();
        let state_dir = cache_dir.join("workspaces").join(&id[..16]);
        Ok(Workspace {
            root,
            cwd_package,
            config,
            cache_dir,
            state_dir,
        })
    }

    /// The cache's size cap.
    pub fn cache_max_size(&self) -> Result<u64> {
        match &self.config.cache.max_size {
            Some(text) => config::parse_size(text).map_err(|e| {
                Exit::new(
                    BAD_COMMAND_LINE,
                    format!("kiln.toml [cache] max_size: {e:#}"),
                )
                .into()
            }),
            None => Ok(DEFAULT_CACHE_SIZE),
        }
    }

    /// Where actions' scratch trees go on disk (those too large for [`Self::memory_scratch_dir`]).
    pub fn disk_scratch_dir(&self) -> PathBuf {
        self.state_dir.join("sandbox")
    }

    /// Where small actions' scratch trees go: a directory on the memory file system (`/dev/shm`),
    /// when there is one, per workspace and cache. The engine creates it (and checks it is ours)
    /// only when a build runs actions, and removes it afterwards.
    pub fn memory_scratch_dir(&self) -> Option<PathBuf> {
        let shm = Path::new("/dev/shm");
        // Named after the whole state directory, not the workspace alone: two kilns building
        // one workspace with different caches hold different build locks, and so must not
        // share scratch trees.
        let hash = blake3::hash(self.state_dir.as_os_str().as_encoded_bytes()).to_hex();
        let id = &hash[..16];
        shm.is_dir()
            .then(|| shm.join(format!("kiln-{}-{id}", nix::unistd::getuid())))
    }

    /// The shared cache's configuration.
    pub fn cache_config(&self) -> Result<CacheConfig> {
        Ok(CacheConfig {
            max_size_bytes: self.cache_max_size()?,
            ..CacheConfig::default()
        })
    }

    /// Opens the shared cache.
    pub fn open_cache(&self) -> Result<Arc<LocalCache>> {
        let cache = LocalCache::open(&self.cache_dir, self.cache_config()?).map_err(|e| {
            Exit::new(
                LOCAL_ENVIRONMENT,
                format!(
                    "Cannot open the cache at `{}`: {e}",
                    self.cache_dir.display()
                ),
            )
        })?;
        Ok(Arc::new(cache))
    }

    /// The digest function from flags, else kiln.toml, else BLAKE3.
    pub fn digest_function(&self, flags: &BuildFlags) -> Result<DigestFunction> {
        if let Some(arg) = flags.digest_function {
            return Ok(match arg {
                DigestFunctionArg::Blake3 => DigestFunction::Blake3,
                DigestFunctionArg::Sha256 => DigestFunction::Sha256,
            });
        }
        match &self.config.build.digest_function {
            None => Ok(DigestFunction::Blake3),
            Some(name) => name.parse().map_err(|_| {
                Exit::new(BAD_COMMAND_LINE, format!("kiln.toml: unknown digest_function `{name}`; expected `blake3` or `sha256`")).into()
            }),
        }
    }

    /// Settings that reach analysis.
    pub fn settings(&self, flags: &BuildFlags) -> Result<BuildSettings> {
        let mode = match flags.compilation_mode {
            Some(CompilationMode::Fastbuild) => "fastbuild".to_string(),
            Some(CompilationMode::Dbg) => "dbg".to_string(),
            Some(CompilationMode::Opt) => "opt".to_string(),
            None => self
                .config
                .build
                .compilation_mode
                .clone()
                .unwrap_or_else(|| "fastbuild".to_string()),
        };
        if !["fastbuild", "dbg", "opt"].contains(&mode.as_str()) {
            return Err(Exit::new(
                BAD_COMMAND_LINE,
                format!(
                    "kiln.toml: unknown compilation_mode `{mode}`; expected fastbuild, dbg or opt"
                ),
            )
            .into());
        }
        Ok(BuildSettings {
            compilation_mode: mode,
            workspace_name: self
                .config
                .workspace
                .name
                .clone()
                .unwrap_or_else(|| "_main".to_string()),
            host_os: kiln_graph::host::host_os().to_string(),
            host_cpu: kiln_graph::host::host_cpu().to_string(),
        })
    }

    /// Number of parallel actions.
    pub fn jobs(&self, flags: &BuildFlags) -> usize {
        flags
            .jobs
            .or(self.config.build.jobs)
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2)
            })
            .max(1)
    }

    /// The remote cache tier from flags and `[remote]`, if one is configured. A malformed URL,
    /// header or setting is a command-line error; the server itself is contacted only when the
    /// build has work to look up.
    pub fn remote(&self, flags: &BuildFlags) -> Result<Option<RemoteTier>> {
        crate::remote::tier(
            &self.root,
            &self.config.remote,
            &flags.remote,
            self.digest_function(flags)?,
        )
    }

    /// The sandbox, chosen from flags and settings.
    pub fn sandbox(&self, flags: &BuildFlags) -> Result<kiln_exec::Sandbox> {
        Ok(kiln_exec::Sandbox::new(self.sandbox_config(flags)?))
    }

    /// How to make the sandbox, from flags and settings (nothing is probed yet).
    pub fn sandbox_config(&self, flags: &BuildFlags) -> Result<kiln_exec::SandboxConfig> {
        let kiln = std::env::current_exe().map_err(|e| {
            Exit::new(
                LOCAL_ENVIRONMENT,
                format!("Cannot find the kiln binary: {e}"),
            )
        })?;
        // The small helper binary beside `kiln` if it is there, else `kiln` itself.
        let small = kiln.with_file_name("kiln-sandbox");
        let helper = if small.is_file() { small } else { kiln };
        let mode_override = match (flags.spawn_strategy, self.config.sandbox.mode.as_deref()) {
            (Some(SpawnStrategy::Local), _) | (None, Some("plain")) => {
                Some(kiln_exec::SandboxMode::Plain)
            }
            (Some(SpawnStrategy::Sandboxed), _) | (None, Some("namespaces")) => None,
            (None, None | Some("auto")) => None,
            (None, Some(other)) => {
                return Err(Exit::new(
                    BAD_COMMAND_LINE,
                    format!(
                    "kiln.toml: unknown sandbox mode `{other}`; expected auto, namespaces or plain"
                ),
                )
                .into())
            }
        };
        Ok(kiln_exec::SandboxConfig {
            helper,
            mode_override,
        })
    }
}

fn absolute(path: &Path, base: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}
