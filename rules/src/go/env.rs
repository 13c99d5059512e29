//! What every Go target of a build shares, computed once per build ([`GoEnv`]): the SDK (pinned in
//! kiln.toml or the local one, found with `GOTOOLCHAIN=local go env GOROOT`), the host platform
//! and every other platform a target asks for ([`GoPlatform`]: build context, standard library),
//! and the go.mod of each module directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kiln_graph::analysis::{AnalysisContext, AnalysisError, HostAccess, WorkspaceInfo};

use super::constraints::BuildContext;
use super::gomod::{self, GoMod};
use super::platform::GoPlatform;
use super::stdlib::StdLib;
use super::toolchain::{self, Sdk};

/// The per-build Go environment.
pub struct GoEnv {
    /// The SDK.
    pub sdk: Arc<Sdk>,
    /// The platform Kiln runs on (what targets without `goos`/`goarch` build for).
    pub host: Arc<GoPlatform>,
    /// `[go] tags` from kiln.toml.
    user_tags: Vec<String>,
    platforms: Mutex<HashMap<PlatformKey, Arc<GoPlatform>>>,
    mods: Mutex<HashMap<PathBuf, FoundModule>>,
}

/// (GOOS, GOARCH, extra build tags).
type PlatformKey = (String, String, Vec<String>);

/// The go.mod governing a directory, with its module root (`None` outside any module).
pub type FoundModule = Option<(PathBuf, Arc<GoMod>)>;

/// Errors resolving the environment, by kind.
pub enum EnvError {
    /// No usable toolchain (exit 36).
    Toolchain(String),
    /// Bad configuration (exit 1).
    Config(String),
}

impl GoEnv {
    /// The build's Go environment (resolved on first use).
    pub fn get(ctx: &AnalysisContext<'_>) -> Result<Arc<GoEnv>, AnalysisError> {
        ctx.build_scoped(|| GoEnv::resolve(ctx.workspace, ctx.host))
            .map_err(|e| match e {
                EnvError::Toolchain(m) => ctx.toolchain_error(m),
                EnvError::Config(m) => ctx.error(m),
            })
    }

    /// Resolves the SDK and build context.
    pub fn resolve(ws: &WorkspaceInfo, host: &dyn HostAccess) -> Result<GoEnv, EnvError> {
        let go = ws.config.get("go").and_then(|g| g.as_table());
        let pinned = go
            .and_then(|g| g.get("version"))
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let tags: Vec<String> = go
            .and_then(|g| g.get("tags"))
            .and_then(|t| t.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let (goos, goarch) = host_platform();
        let root = match pinned {
            Some(version) => super::sdk_download::ensure(&version, ws, host, &goos, &goarch)
                .map_err(EnvError::Toolchain)?,
            None => local_goroot(host)?,
        };
        let witnesses = toolchain::witness_files(&root, &goos, &goarch);
        let mut stamp = format!("go-sdk-digest:{}", root.display());
        for w in &witnesses {
            host.observe(w);
            let meta = std::fs::metadata(w).map_err(|e| {
                EnvError::Toolchain(toolchain::missing_message(&format!(
                    "the Go SDK at `{}` is incomplete ({}: {e})",
                    root.display(),
                    w.display()
                )))
            })?;
            stamp.push_str(&format!(":{}", stat_key(&meta)));
        }
        let digest = match host.memo_get(&stamp) {
            Some(d) => String::from_utf8_lossy(&d).to_string(),
            None => {
                let d = toolchain::content_digest(&root)
                    .map_err(|e| EnvError::Toolchain(e.to_string()))?;
                host.memo_put(&stamp, d.as_bytes());
                d
            }
        };
        let sdk = Arc::new(
            Sdk::at(&root, &digest, &goos, &goarch)
                .map_err(|e| EnvError::Toolchain(toolchain::missing_message(&e.to_string())))?,
        );
        let host_platform = make_platform(&sdk, &tags, &goos, &goarch, &[], host)
            .map_err(|e| EnvError::Toolchain(toolchain::missing_message(&e)))?;
        Ok(GoEnv {
            sdk,
            host: Arc::new(host_platform),
            user_tags: tags,
            platforms: Mutex::new(HashMap::new()),
            mods: Mutex::new(HashMap::new()),
        })
    }

    /// The platform `goos`/`goarch` with the extra build tags `target_tags` (sorted; the host
    /// when they name it and there are none), resolved once per build.
    pub fn platform(
        &self,
        goos: &str,
        goarch: &str,
        target_tags: &[String],
        host: &dyn HostAccess,
    ) -> Result<Arc<GoPlatform>, String> {
        if goos == self.host.build.goos
            && goarch == self.host.build.goarch
            && target_tags.is_empty()
        {
            return Ok(Arc::clone(&self.host));
        }
        let key = (goos.to_string(), goarch.to_string(), target_tags.to_vec());
        if let Some(found) = self.platforms_lock().get(&key) {
            return Ok(Arc::clone(found));
        }
        if !self.sdk.syslist.is_os(goos) {
            return Err(format!(
                "`goos` `{goos}` is not an operating system Go knows (`go tool dist list`)"
            ));
        }
        if !self.sdk.syslist.is_arch(goarch) {
            return Err(format!(
                "`goarch` `{goarch}` is not an architecture Go knows (`go tool dist list`)"
            ));
        }
        let platform = Arc::new(make_platform(
            &self.sdk,
            &self.user_tags,
            goos,
            goarch,
            target_tags,
            host,
        )?);
        self.platforms_lock().insert(key, Arc::clone(&platform));
        Ok(platform)
    }

    fn platforms_lock(&self) -> std::sync::MutexGuard<'_, HashMap<PlatformKey, Arc<GoPlatform>>> {
        self.platforms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The go.mod governing host directory `dir` (the nearest one at or above it, not above
    /// `stop`), with the module root.
    pub fn module_for(
        &self,
        dir: &Path,
        stop: &Path,
        host: &dyn HostAccess,
    ) -> Result<FoundModule, String> {
        let mut cur = dir.to_path_buf();
        loop {
            if let Some(found) = self.lock().get(&cur) {
                return Ok(found.clone());
            }
            let file = cur.join("go.mod");
            // Only existing files are observed: a go.mod appearing later changes a directory
            // listing, which the no-op check sees anyway.
            if file.is_file() {
                host.observe(&file);
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| format!("{}: {e}", file.display()))?;
                let shown = file
                    .strip_prefix(stop)
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| file.display().to_string());
                let parsed = Arc::new(gomod::parse_go_mod(&shown, &text)?);
                let found = Some((cur.clone(), parsed));
                self.lock().insert(cur.clone(), found.clone());
                return Ok(found);
            }
            if cur == stop || !cur.pop() || !cur.starts_with(stop) {
                return Ok(None);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, FoundModule>> {
        self.mods.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The platform `goos`/`goarch` of `sdk` with `target_tags`: its tool tags (`goexperiment.*`
/// defaults baked into the compiler, `amd64.v1`; files must be selected exactly as the compiler
/// expects) and its architecture variable, both asked of the SDK's `go` and memoized by the
/// SDK's identity. It is the host platform when it is the SDK's own and has no extra tags.
fn make_platform(
    sdk: &Arc<Sdk>,
    user_tags: &[String],
    goos: &str,
    goarch: &str,
    target_tags: &[String],
    host: &dyn HostAccess,
) -> Result<GoPlatform, String> {
    let is_host =
        goos == sdk.sandbox.goos && goarch == sdk.sandbox.goarch && target_tags.is_empty();
    let list = ["list", "-f", "{{context.ToolTags}}", "runtime"];
    let text = ask_go(sdk, goos, goarch, &list, host)?;
    let mut tags = user_tags.to_vec();
    tags.extend(target_tags.iter().cloned());
    tags.extend(
        text.trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split_whitespace()
            .map(str::to_string),
    );
    let arch_env = match arch_variable(goarch) {
        Some(name) => {
            let value = ask_go(sdk, goos, goarch, &["env", name], host)?;
            Some((name.to_string(), value.trim().to_string()))
        }
        None => None,
    };
    let sandbox = sdk.sandbox.for_target(goos, goarch, arch_env);
    let build = BuildContext {
        goos: goos.into(),
        goarch: goarch.into(),
        go_minor: sdk.minor(),
        cgo: false,
        tags,
        sys: Arc::clone(&sdk.syslist),
    };
    let dir = super::platform::dir_name(goos, goarch, target_tags);
    let std = StdLib::new(Arc::clone(sdk), sandbox.clone(), build.clone(), dir);
    let std = std_with_index(std, sdk, &build, host);
    Ok(GoPlatform::new(
        sandbox,
        build,
        std,
        is_host,
        target_tags.to_vec(),
    ))
}

/// The variable that refines an architecture (cmd/go's `cfg.GetArchEnv`).
fn arch_variable(goarch: &str) -> Option<&'static str> {
    Some(match goarch {
        "arm" => "GOARM",
        "arm64" => "GOARM64",
        "386" => "GO386",
        "amd64" => "GOAMD64",
        "mips" | "mipsle" => "GOMIPS",
        "mips64" | "mips64le" => "GOMIPS64",
        "ppc64" | "ppc64le" => "GOPPC64",
        "riscv64" => "GORISCV64",
        "wasm" => "GOWASM",
        _ => return None,
    })
}

/// Runs the SDK's `go` with `args` for `goos`/`goarch` in a clean environment; the output is
/// memoized by the SDK's identity (an SDK never changes in place).
/// `std` answering from its index, remembered in the persistent memo under the SDK's identity
/// and the configuration (worked out and stored on the first build that needs it).
fn std_with_index(std: StdLib, sdk: &Sdk, build: &BuildContext, host: &dyn HostAccess) -> StdLib {
    let mut tags = build.tags.clone();
    tags.sort();
    let key = format!(
        "go-std-index:v1:{}:{}:{}:{}",
        sdk.identity,
        build.goos,
        build.goarch,
        tags.join(",")
    );
    let remembered = host
        .memo_get(&key)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let index = match remembered {
        Some(index) => index,
        None => {
            let index = std.index();
            if let Ok(bytes) = serde_json::to_vec(&index) {
                host.memo_put(&key, &bytes);
            }
            index
        }
    };
    std.with_index(index)
}

fn ask_go(
    sdk: &Sdk,
    goos: &str,
    goarch: &str,
    args: &[&str],
    host: &dyn HostAccess,
) -> Result<String, String> {
    let key = format!("go-ask:{}:{goos}:{goarch}:{}", sdk.identity, args.join(" "));
    if let Some(t) = host.memo_get(&key) {
        return Ok(String::from_utf8_lossy(&t).to_string());
    }
    let go = sdk.host_root.join("bin/go");
    let root = sdk.host_root.to_string_lossy().to_string();
    let mut argv: Vec<&std::ffi::OsStr> = vec![go.as_os_str()];
    argv.extend(args.iter().map(|a| std::ffi::OsStr::new(*a)));
    let out = kiln_exec::host_command::run(
        &argv,
        &[
            ("GOTOOLCHAIN", "local"),
            ("GOENV", "off"),
            ("GOFLAGS", ""),
            ("GO111MODULE", "off"),
            ("CGO_ENABLED", "0"),
            ("GOROOT", root.as_str()),
            ("GOOS", goos),
            ("GOARCH", goarch),
        ],
        Path::new("/"),
    )
    .map_err(|e| e.to_string())?;
    if !out.success() {
        return Err(format!(
            "`go {}` for {goos}/{goarch} failed: {}",
            args.join(" "),
            out.stderr_text().trim()
        ));
    }
    let text = out.stdout_text();
    host.memo_put(&key, text.as_bytes());
    Ok(text)
}

/// GOOS/GOARCH of the machine Kiln runs on.
pub fn host_platform() -> (String, String) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    (std::env::consts::OS.to_string(), arch.to_string())
}

fn stat_key(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "{}-{}-{}-{}",
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec()
    )
}

/// Finds `go` on the PATH Kiln was started with and asks it for its GOROOT, with
/// `GOTOOLCHAIN=local` so that it never switches to another toolchain.
fn local_goroot(host: &dyn HostAccess) -> Result<PathBuf, EnvError> {
    let path = host.env_var("PATH").unwrap_or_default();
    let go = std::env::split_paths(&path)
        .map(|d| d.join("go"))
        .find(|p| p.is_file())
        .ok_or_else(|| EnvError::Toolchain(toolchain::missing_message("no `go` on PATH")))?;
    host.observe(&go);
    let meta = std::fs::metadata(&go).map_err(|e| EnvError::Toolchain(e.to_string()))?;
    let key = format!("go-goroot:{}:{}", go.display(), stat_key(&meta));
    if let Some(root) = host.memo_get(&key) {
        let root = PathBuf::from(String::from_utf8_lossy(&root).to_string());
        if root.join("VERSION").is_file() {
            return Ok(root);
        }
    }
    let out = kiln_exec::host_command::run(
        &[go.as_os_str(), "env".as_ref(), "GOROOT".as_ref()],
        &[("GOTOOLCHAIN", "local"), ("GOENV", "off"), ("GOFLAGS", "")],
        Path::new("/"),
    )
    .map_err(|e| EnvError::Toolchain(toolchain::missing_message(&e.to_string())))?;
    if !out.success() {
        return Err(EnvError::Toolchain(toolchain::missing_message(&format!(
            "`{} env GOROOT` failed: {}",
            go.display(),
            out.stderr_text()
        ))));
    }
    let root = PathBuf::from(out.stdout_text());
    if !root.join("VERSION").is_file() {
        return Err(EnvError::Toolchain(toolchain::missing_message(&format!(
            "`{} env GOROOT` printed `{}`, which holds no Go SDK",
            go.display(),
            root.display()
        ))));
    }
    host.memo_put(&key, root.to_string_lossy().as_bytes());
    Ok(root)
}
