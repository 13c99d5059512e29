//! What every Rust target needs from its build, computed once and shared: the resolved toolchain
//! (rustup asked once per build, the identity digest memoized per workspace) and the helper
//! binary's action, registered by the first Rust target analyzed.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_graph::action::Artifact;
use kiln_graph::analysis::{
    AnalysisContext, AnalysisError, BuildScoped, HostAccess, WorkspaceInfo,
};

use super::helper;
use super::toolchain::{self, Pin, RustToolchain, ToolchainError};

struct ToolchainSlot(Result<Arc<RustToolchain>, ToolchainError>);

struct HelperRegistered;

/// The build's Rust toolchain; a missing one is a toolchain error (exit code 36).
pub fn toolchain(ctx: &AnalysisContext<'_>) -> Result<Arc<RustToolchain>, AnalysisError> {
    match shared_toolchain(ctx.scoped, ctx.workspace, ctx.host) {
        Ok(found) => Ok(found),
        Err(e @ ToolchainError::BadPin(_)) => Err(ctx.error(e.to_string())),
        Err(e) => Err(ctx.toolchain_error(e.to_string())),
    }
}

/// The build's toolchain, resolved at most once per build (also for repository rules).
pub fn shared_toolchain(
    scoped: &BuildScoped,
    workspace: &WorkspaceInfo,
    host: &dyn HostAccess,
) -> Result<Arc<RustToolchain>, ToolchainError> {
    let slot = scoped
        .get_or_try_init::<ToolchainSlot, Infallible>(|| {
            Ok(ToolchainSlot(resolve(workspace, host).map(Arc::new)))
        })
        .unwrap_or_else(|never| match never {});
    slot.0.clone()
}

/// The helper binary; the first caller in a build registers the action that makes it.
pub fn helper(
    ctx: &mut AnalysisContext<'_>,
    toolchain: &RustToolchain,
) -> Result<Artifact, AnalysisError> {
    let mut first = false;
    let _ = ctx.build_scoped::<HelperRegistered, Infallible>(|| {
        first = true;
        Ok(HelperRegistered)
    });
    if first {
        let action = helper::action(&ctx.target.label, toolchain);
        ctx.register(action);
    }
    Ok(helper::artifact())
}

/// Asks the rustup shim which toolchain's sysroot the workspace uses.
fn ask_sysroot(
    shim: &Path,
    env: &[(String, String)],
    workspace: &WorkspaceInfo,
    pinned: Option<&Pin>,
) -> Result<PathBuf, ToolchainError> {
    let shim_text = shim.to_string_lossy().into_owned();
    let out = kiln_exec::host_command::run(
        &[shim_text.as_str(), "--print", "sysroot"],
        env,
        &workspace.root,
    )
    .map_err(|e| ToolchainError::Broken(e.to_string()))?;
    if !out.success() {
        let stderr = out.stderr_text();
        return Err(match pinned {
            Some(pin) if toolchain::says_not_installed(&stderr) => ToolchainError::NotInstalled {
                channel: pin.channel.clone(),
                source_file: pin.source_file.clone(),
            },
            _ => ToolchainError::Broken(format!("`rustc --print sysroot` failed: {stderr}")),
        });
    }
    Ok(PathBuf::from(out.stdout_text()))
}

/// The shim's answer remembered for the process's life (a `kiln watch` session, whose every round
/// would otherwise start the shim again) and in the workspace's persistent memo (starting the
/// shim took ~70 ms of every build), keyed on the environment passed to it and the stat of
/// every file that decides which toolchain it picks (`rustup default` and `rustup override`
/// rewrite `settings.toml`; installing or removing a toolchain changes `toolchains/`), and
/// never kept while one of them changed within the last 2 seconds.
mod sysroot_memo {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};
    use std::sync::{Mutex, OnceLock};

    use kiln_graph::analysis::HostAccess;

    use crate::settled_stat::{settled, stat_key};

    const PERSISTED: &str = "rust-sysroot\0";

    /// The persisted answer for `key`, if its compiler is still there.
    pub(super) fn get_persisted(host: &dyn HostAccess, key: &str) -> Option<PathBuf> {
        let value = host.memo_get(&format!("{PERSISTED}{key}"))?;
        let sysroot = PathBuf::from(String::from_utf8(value).ok()?);
        sysroot.join("bin/rustc").is_file().then_some(sysroot)
    }

    /// Persists the answer for `key`.
    pub(super) fn put_persisted(host: &dyn HostAccess, key: &str, sysroot: &Path) {
        if let Some(text) = sysroot.to_str() {
            host.memo_put(&format!("{PERSISTED}{key}"), text.as_bytes());
        }
    }

    fn memo() -> &'static Mutex<HashMap<String, PathBuf>> {
        static MEMO: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
        MEMO.get_or_init(|| Mutex::new(HashMap::new()))
    }

    /// The key, or `None` when a deciding file changed too recently to be trusted by stat.
    pub(super) fn key(env: &[(String, String)], files: &[PathBuf]) -> Option<String> {
        let mut key = format!("{env:?}");
        for file in files {
            match stat_key(file) {
                Some(stat) if !settled(&stat) => return None,
                Some(stat) => key.push_str(&format!("\0{}:{stat:?}", file.display())),
                None => key.push_str(&format!("\0{}:absent", file.display())),
            }
        }
        Some(key)
    }

    pub(super) fn get(key: &str) -> Option<PathBuf> {
        memo().lock().ok()?.get(key).cloned()
    }

    pub(super) fn put(key: String, sysroot: PathBuf) {
        if let Ok(mut memo) = memo().lock() {
            memo.insert(key, sysroot);
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// A persistent memo in memory.
        #[derive(Default)]
        struct Memo(Mutex<HashMap<String, Vec<u8>>>);

        impl HostAccess for Memo {
            fn observe(&self, _path: &Path) {}
            fn memo_get(&self, key: &str) -> Option<Vec<u8>> {
                self.0.lock().ok()?.get(key).cloned()
            }
            fn memo_put(&self, key: &str, value: &[u8]) {
                if let Ok(mut memo) = self.0.lock() {
                    memo.insert(key.to_string(), value.to_vec());
                }
            }
        }

        #[test]
        fn a_persisted_sysroot_serves_only_its_key_and_only_while_its_rustc_exists() {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let sysroot = dir.path().join("toolchains/1.95.0");
            std::fs::create_dir_all(sysroot.join("bin")).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(sysroot.join("bin/rustc"), "").unwrap_or_else(|e| panic!("{e}"));
            let memo = Memo::default();
            put_persisted(&memo, "key-a", &sysroot);
            assert_eq!(get_persisted(&memo, "key-a"), Some(sysroot.clone()));
            assert_eq!(get_persisted(&memo, "key-b"), None, "another key");
            std::fs::remove_file(sysroot.join("bin/rustc")).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(get_persisted(&memo, "key-a"), None, "toolchain removed");
        }

        #[test]
        fn a_recent_change_gives_no_key_and_any_stat_change_a_new_one() {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let file = dir.path().join("settings.toml");
            std::fs::write(&file, "a").unwrap_or_else(|e| panic!("{e}"));
            let env = [("PATH".to_string(), "/bin".to_string())];
            assert_eq!(key(&env, std::slice::from_ref(&file)), None, "just written");
            let absent = dir.path().join("rust-toolchain.toml");
            let first = key(&env, std::slice::from_ref(&absent));
            assert!(first.is_some(), "an absent file is a stable fact");
            let other_env = [("PATH".to_string(), "/usr/bin".to_string())];
            assert_ne!(key(&other_env, std::slice::from_ref(&absent)), first);
            std::fs::write(&absent, "x").unwrap_or_else(|e| panic!("{e}"));
            assert_ne!(key(&env, &[absent]), first, "created since");
        }
    }
}

fn read_observed(host: &dyn HostAccess, path: &Path) -> Option<String> {
    host.observe(path);
    std::fs::read_to_string(path).ok()
}

/// Resolves the workspace's toolchain through the rustup shim on `PATH`.
pub fn resolve(
    workspace: &WorkspaceInfo,
    host: &dyn HostAccess,
) -> Result<RustToolchain, ToolchainError> {
    let pinned = toolchain::pin(
        &workspace.config,
        read_observed(host, &workspace.root.join("rust-toolchain.toml")).as_deref(),
        read_observed(host, &workspace.root.join("rust-toolchain")).as_deref(),
    )?;
    if pinned.is_none() {
        // Unpinned, rustup's default toolchain (and its per-directory overrides) decides which
        // rustc runs: `rustup default X` rewrites settings.toml, so the no-op check sees it.
        // (Kiln does not pass its own `RUSTUP_TOOLCHAIN` to the shim, so that cannot change it.)
        if let Some(home) = rustup_home(host) {
            host.observe(&home.join("settings.toml"));
            host.observe(&home.join("toolchains"));
        }
    }
    let shim = find_on_path_of(host.env_var("PATH"), "rustc").ok_or_else(|| {
        ToolchainError::Broken("no `rustc` on PATH; install Rust with rustup".to_string())
    })?;
    host.observe(&shim);
    let mut env: Vec<(String, String)> = ["PATH", "HOME", "RUSTUP_HOME", "CARGO_HOME"]
        .iter()
        .filter_map(|k| host.env_var(k).map(|v| (k.to_string(), v)))
        .collect();
    env.push(("RUSTUP_AUTO_INSTALL".to_string(), "0".to_string()));
    if let Some(Pin { channel, .. }) = &pinned {
        env.push(("RUSTUP_TOOLCHAIN".to_string(), channel.clone()));
    }
    let mut decided_by = vec![
        shim.clone(),
        workspace.root.join("rust-toolchain.toml"),
        workspace.root.join("rust-toolchain"),
    ];
    if let Some(home) = rustup_home(host) {
        decided_by.push(home.join("settings.toml"));
        decided_by.push(home.join("toolchains"));
    }
    // Unpinned, rustup also reads `rust-toolchain(.toml)` in the directories above the
    // workspace, as the shim sees them from its working directory (the real path).
    if pinned.is_none() {
        let real_root = std::fs::canonicalize(&workspace.root).unwrap_or(workspace.root.clone());
        for dir in real_root.ancestors().skip(1) {
            for name in ["rust-toolchain.toml", "rust-toolchain"] {
                host.observe(&dir.join(name));
                decided_by.push(dir.join(name));
            }
        }
    }
    let remembered_key = sysroot_memo::key(&env, &decided_by);
    let remembered = remembered_key
        .as_ref()
        .and_then(|k| sysroot_memo::get(k).or_else(|| sysroot_memo::get_persisted(host, k)));
    let sysroot = match remembered {
        Some(sysroot) => sysroot,
        None => {
            let sysroot = ask_sysroot(&shim, &env, workspace, pinned.as_ref())?;
            if let Some(key) = remembered_key {
                sysroot_memo::put_persisted(host, &key, &sysroot);
                sysroot_memo::put(key, sysroot.clone());
            }
            sysroot
        }
    };
    let rustc = sysroot.join("bin/rustc");
    host.observe(&rustc);
    let ask = |args: &[&str]| -> Result<String, ToolchainError> {
        let rustc_text = rustc.to_string_lossy().into_owned();
        let mut argv = vec![rustc_text.as_str()];
        argv.extend(args);
        let no_env: [(&str, &str); 0] = [];
        let out = kiln_exec::host_command::run(&argv, &no_env, &workspace.root)
            .map_err(|e| ToolchainError::Broken(e.to_string()))?;
        if !out.success() {
            return Err(ToolchainError::Broken(format!(
                "`rustc {}` failed: {}",
                args.join(" "),
                out.stderr_text()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let memo_key = |what: &str, files: &[PathBuf]| {
        format!("{what}\0{}", toolchain::identity_memo_key(&sysroot, files))
    };
    let rustc_only = [PathBuf::from("bin/rustc")];
    let facts_key = memo_key("rust-facts", &rustc_only);
    let facts = match host
        .memo_get(&facts_key)
        .and_then(|v| String::from_utf8(v).ok())
    {
        Some(text) => text,
        None => {
            let text = format!("{}\0{}", ask(&["-vV"])?, ask(&["--print", "cfg"])?);
            host.memo_put(&facts_key, text.as_bytes());
            text
        }
    };
    let (verbose, cfg) = facts.split_once('\0').unwrap_or((&facts, ""));
    let host_triple = toolchain::version_field(verbose, "host")
        .ok_or_else(|| ToolchainError::Broken(format!("`rustc -vV` gave no host: {verbose}")))?
        .to_string();
    let release = toolchain::version_field(verbose, "release")
        .unwrap_or("unknown")
        .to_string();
    if let Some(pin) = &pinned {
        let toolchains = rustup_home(host).map(|home| home.join("toolchains"));
        let toolchains = toolchains.map(|dir| std::fs::canonicalize(&dir).unwrap_or(dir));
        let real_sysroot = std::fs::canonicalize(&sysroot).unwrap_or(sysroot.clone());
        if !toolchain::pin_honoured(pin, &release, &real_sysroot, toolchains.as_deref()) {
            return Err(ToolchainError::Broken(format!(
                "`{}` is pinned in {}, but `rustc` on PATH ({}) is not rustup's and runs Rust \
                 {release} from {}; put rustup's `rustc` first on PATH (rustup picks the pinned \
                 toolchain), or change the pin",
                pin.channel,
                pin.source_file,
                shim.display(),
                sysroot.display()
            )));
        }
    }
    let files = toolchain::identity_files(&sysroot, &host_triple).map_err(|e| {
        ToolchainError::Broken(format!("reading sysroot {}: {e}", sysroot.display()))
    })?;
    let digest_key = memo_key("rust-sysroot-digest", &files);
    let digest = match host
        .memo_get(&digest_key)
        .and_then(|v| String::from_utf8(v).ok())
    {
        Some(d) => d,
        None => {
            let d = toolchain::digest_files(&sysroot, &files).map_err(|e| {
                ToolchainError::Broken(format!("digesting sysroot {}: {e}", sysroot.display()))
            })?;
            host.memo_put(&digest_key, d.as_bytes());
            d
        }
    };
    Ok(RustToolchain {
        identity: format!(
            "{}sysroot-digest: {digest}",
            verbose.trim_end().to_string() + "\n"
        ),
        sysroot,
        release,
        host: host_triple,
        cfg: cfg.lines().map(str::to_string).collect(),
    })
}

/// rustup's home (`$RUSTUP_HOME`, else `~/.rustup`).
fn rustup_home(host: &dyn HostAccess) -> Option<PathBuf> {
    host.env_var("RUSTUP_HOME").map(PathBuf::from).or_else(|| {
        host.env_var("HOME")
            .map(|h| PathBuf::from(h).join(".rustup"))
    })
}

/// The first `program` on Kiln's own `PATH`.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    find_on_path_of(std::env::var("PATH").ok(), program)
}

/// The first `program` on `path` (a `PATH` value).
fn find_on_path_of(path: Option<String>, program: &str) -> Option<PathBuf> {
    std::env::split_paths(&path?)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recording(Mutex<Vec<PathBuf>>);

    impl HostAccess for Recording {
        fn observe(&self, path: &Path) {
            self.0.lock().expect("lock").push(path.to_path_buf());
        }
        fn memo_get(&self, _key: &str) -> Option<Vec<u8>> {
            None
        }
        fn memo_put(&self, _key: &str, _value: &[u8]) {}
    }

    #[test]
    fn an_unpinned_toolchain_observes_rustups_default() {
        let root = tempfile::tempdir().expect("tempdir");
        let workspace = WorkspaceInfo {
            root: root.path().to_path_buf(),
            cache_dir: root.path().join("cache"),
            config: toml::Table::new(),
            function: kiln_cache::DigestFunction::Blake3,
        };
        let host = Recording::default();
        // The host's rustc may be missing or broken; what matters is what was observed first.
        let _ = resolve(&workspace, &host);
        let home = rustup_home(&Recording::default()).expect("a home");
        let seen = host.0.lock().expect("lock");
        assert!(seen.contains(&home.join("settings.toml")), "{seen:?}");
    }
}
