//! External repositories (`@name//pkg:target`): a [`RepositoryRule`] (Go modules from `go.mod`,
//! crates from `Cargo.lock`) turns a repository name into a directory of files with BUILD files;
//! [`ExternalRepos`] resolves each name once per build; [`SourceRoots`] maps an exec-root-relative
//! source path (`external/<name>/<pkg>/<file>` for external files, as Bazel spells it) to the host
//! file it stands for.
//!
//! Invariant: a resolved directory never changes its contents (rules make it content-addressed),
//! so its files need no no-op re-check; what decided the resolution (`go.mod`, `Cargo.lock`) is
//! observed through [`HostAccess::observe`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::analysis::{BuildScoped, HostAccess, WorkspaceInfo};

/// The directory Bazel (and Kiln) puts external repositories under, in exec paths.
pub const EXTERNAL_DIR: &str = "external";

/// Why a repository could not be resolved.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RepositoryError {
    /// The definition is wrong (a go.sum mismatch, a malformed Cargo.lock): exit code 1.
    #[error("{0}")]
    Definition(String),
    /// The machine cannot do it (no network, no toolchain): exit code 36.
    #[error("{0}")]
    Environment(String),
}

/// What a repository rule sees.
pub struct RepoContext<'a> {
    /// The workspace.
    pub workspace: &'a WorkspaceInfo,
    /// Observed host files and the persistent memo.
    pub host: &'a dyn HostAccess,
    /// Values shared with analysis for this build (a parsed `go.mod`, a resolved toolchain).
    pub scoped: &'a BuildScoped,
}

/// Defines external repositories.
pub trait RepositoryRule: Send + Sync {
    /// The directory holding repository `name` with its BUILD files, or `None` when this rule does
    /// not define `name`. The directory's contents must never change once returned.
    fn resolve(
        &self,
        name: &str,
        ctx: &RepoContext<'_>,
    ) -> Result<Option<PathBuf>, RepositoryError>;
}

/// Repositories resolved so far in one build, each at most once.
pub struct ExternalRepos<'a> {
    rules: &'a [Box<dyn RepositoryRule>],
    ctx: RepoContext<'a>,
    resolved: Mutex<BTreeMap<String, Result<PathBuf, RepositoryError>>>,
}

impl<'a> ExternalRepos<'a> {
    /// Resolution through `rules`, in order (the first that defines a name wins).
    pub fn new(rules: &'a [Box<dyn RepositoryRule>], ctx: RepoContext<'a>) -> Self {
        ExternalRepos {
            rules,
            ctx,
            resolved: Mutex::new(BTreeMap::new()),
        }
    }

    /// The directory of repository `name`.
    pub fn root(&self, name: &str) -> Result<PathBuf, RepositoryError> {
        if let Some(done) = self.resolved.lock().ok().and_then(|r| r.get(name).cloned()) {
            return done;
        }
        let mut result = Err(RepositoryError::Definition(format!(
            "external repository `@{name}` is not defined in this workspace (Kiln defines \
             repositories for the modules in go.mod and the crates in Cargo.lock)"
        )));
        for rule in self.rules {
            match rule.resolve(name, &self.ctx) {
                Ok(None) => continue,
                Ok(Some(dir)) => {
                    result = Ok(dir);
                    break;
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if let Ok(mut resolved) = self.resolved.lock() {
            resolved.insert(name.to_string(), result.clone());
        }
        result
    }

    /// Every repository resolved so far, as source roots over `workspace_root`.
    pub fn source_roots(&self, workspace_root: &Path) -> SourceRoots {
        let repos = self
            .resolved
            .lock()
            .map(|r| {
                r.iter()
                    .filter_map(|(name, dir)| Some((name.clone(), dir.as_ref().ok()?.clone())))
                    .collect()
            })
            .unwrap_or_default();
        SourceRoots {
            workspace: workspace_root.to_path_buf(),
            repos: Arc::new(repos),
        }
    }
}

/// Maps exec-root-relative source paths to host files.
#[derive(Clone, Debug, Default)]
pub struct SourceRoots {
    workspace: PathBuf,
    repos: Arc<BTreeMap<String, PathBuf>>,
}

impl SourceRoots {
    /// Only the workspace (no external repositories).
    pub fn workspace_only(root: &Path) -> Self {
        SourceRoots {
            workspace: root.to_path_buf(),
            repos: Arc::default(),
        }
    }

    /// The workspace root.
    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// The host file behind a source's exec path.
    pub fn host_path(&self, exec_path: &str) -> PathBuf {
        match self.external(exec_path) {
            Some((dir, rest)) => dir.join(rest),
            None => self.workspace.join(exec_path),
        }
    }

    /// Whether `exec_path` lies in a resolved external repository (whose files never change).
    pub fn is_external(&self, exec_path: &str) -> bool {
        self.external(exec_path).is_some()
    }

    fn external<'p>(&'p self, exec_path: &'p str) -> Option<(&'p PathBuf, &'p str)> {
        let rest = exec_path.strip_prefix(EXTERNAL_DIR)?.strip_prefix('/')?;
        let (name, rest) = rest.split_once('/').unwrap_or((rest, ""));
        self.repos.get(name).map(|dir| (dir, rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::NoHostMemo;

    struct OneRepo;

    impl RepositoryRule for OneRepo {
        fn resolve(
            &self,
            name: &str,
            _ctx: &RepoContext<'_>,
        ) -> Result<Option<PathBuf>, RepositoryError> {
            Ok((name == "com_github_x").then(|| PathBuf::from("/cache/repos/abc")))
        }
    }

    #[test]
    fn external_paths_map_into_their_repository_and_others_into_the_workspace() {
        let rules: Vec<Box<dyn RepositoryRule>> = vec![Box::new(OneRepo)];
        let workspace = WorkspaceInfo::default();
        let scoped = BuildScoped::default();
        let repos = ExternalRepos::new(
            &rules,
            RepoContext {
                workspace: &workspace,
                host: &NoHostMemo,
                scoped: &scoped,
            },
        );
        assert!(repos.root("com_github_x").is_ok());
        let missing = repos.root("nope").unwrap_err().to_string();
        assert!(missing.contains("`@nope` is not defined"), "{missing}");
        let roots = repos.source_roots(Path::new("/ws"));
        assert_eq!(
            roots.host_path("external/com_github_x/cmp/a.go"),
            Path::new("/cache/repos/abc/cmp/a.go")
        );
        assert_eq!(
            roots.host_path("external/other/a.go"),
            Path::new("/ws/external/other/a.go")
        );
        assert_eq!(roots.host_path("pkg/a.go"), Path::new("/ws/pkg/a.go"));
        assert!(roots.is_external("external/com_github_x/x"));
        assert!(!roots.is_external("external/other/x"));
        assert!(!roots.is_external("externalx/com_github_x/x"));
    }
}
