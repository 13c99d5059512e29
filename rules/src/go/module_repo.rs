//! The repository rule for Go modules: `@com_github_google_go_cmp` is the module of the main
//! go.mod whose Gazelle name that is. Its files come from `vendor/` (with `-mod=vendor` or a
//! `vendor/modules.txt`), a local `replace` directory, or the module proxy (through
//! [`super::modules_fetch`]); downloaded modules must match go.sum's `h1:` hash, else nothing is
//! used. The files plus generated BUILD files are stored content-addressed under
//! `<cache>/go/repos/`, so a returned directory never changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_graph::repository::{RepoContext, RepositoryError, RepositoryRule};

use super::dirhash;
use super::env::{EnvError, GoEnv};
use super::gazelle::{self, ModuleIndex};
use super::gomod::{self, GoMod, ModuleVersion, Replacement};
use super::link::DepModule;
use super::repository::{record_repo_dir, repo_name};

/// Bumped when generated BUILD files change shape (part of each repository directory's key).
const GENERATOR_VERSION: &str = "kiln-gazelle-5";

/// The main module's go.mod and go.sum, parsed once per build.
pub struct MainModule {
    /// go.mod.
    pub go_mod: GoMod,
    /// go.sum.
    pub sums: BTreeMap<(String, String), String>,
    /// Module files come from `vendor/`.
    pub vendor: bool,
    /// Vendored modules' `go` versions, from `vendor/modules.txt` (their go.mod files are not
    /// vendored).
    pub vendor_go: BTreeMap<String, String>,
    /// The main module's directory (the workspace root unless `[go] go_mod` says otherwise).
    pub root: PathBuf,
}

impl MainModule {
    fn load(ctx: &RepoContext<'_>) -> Result<Option<MainModule>, RepositoryError> {
        // `[go] go_mod = "path/to/go.mod"` names the main module when it is not at the root.
        let rel = ctx
            .workspace
            .config
            .get("go")
            .and_then(|g| g.get("go_mod"))
            .and_then(|v| v.as_str())
            .unwrap_or("go.mod");
        let mod_path = ctx.workspace.root.join(rel);
        let root = mod_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| ctx.workspace.root.clone());
        let sum_path = root.join("go.sum");
        // Only existing files are observed (a missing one that appears changes a listing).
        for path in [&mod_path, &sum_path, &root.join("vendor/modules.txt")] {
            if path.is_file() {
                ctx.host.observe(path);
            }
        }
        let Ok(text) = std::fs::read_to_string(&mod_path) else {
            return Ok(None);
        };
        let go_mod = gomod::parse_go_mod("go.mod", &text).map_err(RepositoryError::Definition)?;
        let sums = match std::fs::read_to_string(&sum_path) {
            Ok(t) => gomod::parse_go_sum("go.sum", &t).map_err(RepositoryError::Definition)?,
            Err(_) => BTreeMap::new(),
        };
        // From the environment or the `go env -w` file, as cmd/go reads it.
        let goflags = super::go_env_file::setting(ctx.host, "GOFLAGS");
        // As cmd/go: `-mod=vendor` asks for vendor/, and a vendor/modules.txt implies it for a
        // main module at go 1.14 or later unless GOFLAGS says `-mod=mod` or `-mod=readonly`
        // (the last `-mod` in GOFLAGS counts, as for any flag given twice).
        let vendor = match mod_flag(&goflags) {
            Some("vendor") => true,
            Some("mod" | "readonly") => false,
            _ => root.join("vendor/modules.txt").is_file() && go_mod.go_minor() >= 14,
        };
        let vendor_go = match vendor {
            true => {
                let text = std::fs::read_to_string(root.join("vendor/modules.txt"))
                    .map_err(|e| RepositoryError::Definition(format!("vendor/modules.txt: {e}")))?;
                let vendored = gomod::parse_vendor_modules(&text);
                gomod::check_vendor_consistency(&go_mod, &vendored)
                    .map_err(RepositoryError::Definition)?;
                vendored
                    .into_iter()
                    .filter_map(|(path, m)| m.go.map(|go| (path, go)))
                    .collect()
            }
            false => BTreeMap::new(),
        };
        Ok(Some(MainModule {
            go_mod,
            sums,
            vendor,
            vendor_go,
            root,
        }))
    }

    /// The module as `go version -m` records it: the go.sum hash unless the module is replaced
    /// or vendored (cmd/go records no sums under `-mod=vendor`), and the replacement on a `=>`
    /// line (a directory as go.mod spells it, at version `(devel)`).
    fn build_info_module(&self, req: &ModuleVersion) -> DepModule {
        let sum_of = |m: &ModuleVersion| match self.vendor {
            true => String::new(),
            false => self
                .sums
                .get(&(m.path.clone(), m.version.clone()))
                .cloned()
                .unwrap_or_default(),
        };
        let replace = self
            .go_mod
            .replacement(&req.path, &req.version)
            .map(|r| match r {
                Replacement::Dir(dir) => DepModule {
                    path: dir.clone(),
                    version: "(devel)".into(),
                    sum: String::new(),
                    replace: None,
                },
                Replacement::Module(m) => DepModule {
                    path: m.path.clone(),
                    version: m.version.clone(),
                    sum: sum_of(m),
                    replace: None,
                },
            });
        DepModule {
            path: req.path.clone(),
            version: req.version.clone(),
            sum: match replace {
                Some(_) => String::new(),
                None => sum_of(req),
            },
            replace: replace.map(Box::new),
        }
    }
}

struct Index<'a> {
    main: &'a MainModule,
    env: &'a GoEnv,
}

impl ModuleIndex for Index<'_> {
    fn owner(&self, importpath: &str) -> Option<String> {
        let mut paths: Vec<&str> = self
            .main
            .go_mod
            .require
            .iter()
            .map(|r| r.path.as_str())
            .chain([self.main.go_mod.module.as_str()])
            .collect();
        paths.sort_by_key(|p| std::cmp::Reverse(p.len()));
        paths
            .into_iter()
            .find(|m| importpath == *m || importpath.starts_with(&format!("{m}/")))
            .map(str::to_string)
    }

    fn is_std(&self, importpath: &str) -> bool {
        self.env.host.std.is_std(importpath)
    }
}

/// Go modules from the main go.mod.
pub struct GoModules;

impl RepositoryRule for GoModules {
    fn resolve(
        &self,
        name: &str,
        ctx: &RepoContext<'_>,
    ) -> Result<Option<PathBuf>, RepositoryError> {
        let main = ctx.scoped.get_or_try_init(|| MainModule::load(ctx))?;
        let Some(main) = main.as_ref() else {
            return Ok(None);
        };
        let Some(req) = main
            .go_mod
            .require
            .iter()
            .find(|r| repo_name(&r.path) == name)
            .cloned()
        else {
            return Ok(None);
        };
        let env: Arc<GoEnv> = ctx
            .scoped
            .get_or_try_init(|| GoEnv::resolve(ctx.workspace, ctx.host))
            .map_err(|e| match e {
                EnvError::Toolchain(m) | EnvError::Config(m) => RepositoryError::Environment(m),
            })?;
        let dir = materialize(name, &req, main, &env, ctx)?;
        record_repo_dir(ctx.scoped, name, dir.clone());
        super::modules::record_module(ctx.scoped, name, main.build_info_module(&req));
        Ok(Some(dir))
    }
}

/// Copies `from` to a fresh content-addressed directory (if not there yet) and generates BUILD files.
fn materialize(
    name: &str,
    req: &ModuleVersion,
    main: &MainModule,
    env: &GoEnv,
    ctx: &RepoContext<'_>,
) -> Result<PathBuf, RepositoryError> {
    let def = RepositoryError::Definition;
    // Where the files come from, the hash that names them, and the name prefix it was taken
    // with (to take it again of the copy).
    let (source, hash, prefix) = if main.vendor {
        let dir = main.root.join("vendor").join(&req.path);
        if !dir.is_dir() {
            return Err(def(format!(
                "go.mod requires `{}` but `vendor/{}` is missing (run `go mod vendor`)",
                req.path, req.path
            )));
        }
        // Vendored files may be edited: the next build must notice (no-op check).
        for entry in walkdir::WalkDir::new(&dir).into_iter().flatten() {
            ctx.host.observe(entry.path());
        }
        let go = main.vendor_go.get(&req.path).map_or("", String::as_str);
        let prefix = format!("{}@{} go {go}", req.path, req.version);
        let h = dirhash::hash_dir(&dir, &prefix).map_err(def)?;
        (dir, h, prefix)
    } else {
        match main.go_mod.replacement(&req.path, &req.version) {
            Some(Replacement::Dir(rel)) => {
                let dir = main.root.join(rel);
                if !dir.join("go.mod").is_file() {
                    return Err(def(format!(
                        "go.mod replaces `{}` with `{rel}`, which has no go.mod",
                        req.path
                    )));
                }
                for entry in walkdir::WalkDir::new(&dir).into_iter().flatten() {
                    ctx.host.observe(entry.path());
                }
                let h = dirhash::hash_dir(&dir, &req.path).map_err(def)?;
                (dir, h, req.path.clone())
            }
            other => {
                let target = match other {
                    Some(Replacement::Module(m)) => m.clone(),
                    _ => req.clone(),
                };
                let want = main
                    .sums
                    .get(&(target.path.clone(), target.version.clone()))
                    .cloned()
                    .ok_or_else(|| {
                        def(format!(
                            "go.sum has no entry for `{} {}`; run `go mod download {}`",
                            target.path, target.version, target.path
                        ))
                    })?;
                let key = repo_key(name, &want, env);
                let dir = ctx.workspace.cache_dir.join("go/repos").join(&key);
                if dir.join(".kiln-complete").is_file() {
                    return Ok(dir);
                }
                // The SDK's own `go` (a pinned one once fetched), so that no other is needed.
                let go = env.sdk.host_root.join("bin/go");
                let downloaded = super::modules_fetch::go_mod_download(
                    ctx.workspace,
                    &go,
                    &target.path,
                    &target.version,
                )
                .map_err(RepositoryError::Environment)?;
                let prefix = format!("{}@{}", target.path, target.version);
                let got = dirhash::hash_dir(&downloaded, &prefix).map_err(def)?;
                if got != want {
                    return Err(def(format!(
                        "go.sum:{}: checksum mismatch for `{} {}`: go.sum says `{want}`, the downloaded module hashes to `{got}`; go.sum may have been tampered with, and nothing was used",
                        sum_line(main, &target).unwrap_or(0),
                        target.path,
                        target.version
                    )));
                }
                (downloaded, want, prefix)
            }
        }
    };
    let key = repo_key(name, &hash, env);
    let dir = ctx.workspace.cache_dir.join("go/repos").join(&key);
    if dir.join(".kiln-complete").is_file() {
        return Ok(dir);
    }
    let tmp = ctx
        .workspace
        .cache_dir
        .join("go/repos")
        .join(format!(".tmp-{key}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    super::fs_copy::copy_tree(&source, &tmp, |_| 0o644)
        .map_err(|e| RepositoryError::Environment(format!("copying module `{}`: {e}", req.path)))?;
    // What is stored is what was hashed: a file that changed between the hash and the copy
    // (an edit in vendor/, a concurrent download) is caught here, not served.
    let copied = dirhash::hash_dir(&tmp, &prefix).map_err(def)?;
    if copied != hash {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(RepositoryError::Environment(format!(
            "module `{}` changed while it was copied into the store (hashed `{hash}`, copied `{copied}`); build again",
            req.path
        )));
    }
    if main.vendor {
        write_vendored_go_mod(&tmp, req, main)?;
    }
    let index = Index { main, env };
    gazelle::generate(&tmp, &req.path, &env.host.build, &index)
        .map_err(|e| def(format!("module `{}`: {e}", req.path)))?;
    std::fs::write(
        tmp.join("WORKSPACE"),
        format!("workspace(name = \"{name}\")\n"),
    )
    .and_then(|_| std::fs::write(tmp.join(".kiln-complete"), b""))
    .map_err(|e| RepositoryError::Environment(e.to_string()))?;
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
        if !dir.join(".kiln-complete").is_file() {
            return Err(RepositoryError::Environment(format!(
                "cannot store module `{}` in {}",
                req.path,
                dir.display()
            )));
        }
    }
    Ok(dir)
}

/// `go mod vendor` drops vendored modules' go.mod files; without one the module would compile at
/// cmd/go's default `-lang=go1.16`. Writes one with the module path and the `go` line
/// `vendor/modules.txt` records, so each vendored module keeps its own language version.
fn write_vendored_go_mod(
    dir: &Path,
    req: &ModuleVersion,
    main: &MainModule,
) -> Result<(), RepositoryError> {
    let go_mod = dir.join("go.mod");
    if go_mod.is_file() {
        return Ok(());
    }
    let mut text = format!("module {}\n", req.path);
    if let Some(go) = main.vendor_go.get(&req.path) {
        text.push_str(&format!("\ngo {go}\n"));
    }
    std::fs::write(&go_mod, text).map_err(|e| {
        RepositoryError::Environment(format!("writing go.mod of vendored `{}`: {e}", req.path))
    })
}

fn sum_line(main: &MainModule, target: &ModuleVersion) -> Option<usize> {
    let text = std::fs::read_to_string(main.root.join("go.sum")).ok()?;
    text.lines()
        .position(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() == 3 && f[0] == target.path && f[1] == target.version
        })
        .map(|n| n + 1)
}

fn repo_key(name: &str, hash: &str, env: &GoEnv) -> String {
    let mut h = blake3::Hasher::new();
    for part in [
        hash,
        &env.host.build.goos,
        &env.host.build.goarch,
        &env.sdk.identity,
        GENERATOR_VERSION,
    ] {
        h.update(part.as_bytes());
        h.update(b"\0");
    }
    format!("{name}-{}", &h.finalize().to_hex()[..24])
}

/// The value of the last `-mod=` (or `--mod=`) flag in `goflags`.
fn mod_flag(goflags: &str) -> Option<&str> {
    goflags
        .split_whitespace()
        .rev()
        .find_map(|f| f.strip_prefix("-mod=").or_else(|| f.strip_prefix("--mod=")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_mod_flag_counts() {
        assert_eq!(mod_flag("-mod=vendor -trimpath -mod=mod"), Some("mod"));
        assert_eq!(mod_flag("-mod=mod --mod=vendor"), Some("vendor"));
        assert_eq!(mod_flag("-trimpath"), None);
    }
}
