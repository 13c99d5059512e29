//! Dependency modules known to this build: which module (path, version, `h1:` sum) a Go module
//! repository holds, so that binaries record it for `go version -m`.

use std::collections::HashMap;
use std::sync::Mutex;

use kiln_graph::analysis::BuildScoped;

use super::link::DepModule;

/// Modules by repository name, filled in as repositories are resolved.
#[derive(Default)]
pub struct RepoModules(pub Mutex<HashMap<String, DepModule>>);

/// The module a repository holds (none for the main repository).
pub fn dep_module(scoped: &BuildScoped, repo: &str) -> Option<DepModule> {
    if repo.is_empty() {
        return None;
    }
    let modules = scoped
        .get_or_try_init::<RepoModules, ()>(|| Ok(RepoModules::default()))
        .ok()?;
    let map = modules.0.lock().unwrap_or_else(|e| e.into_inner());
    map.get(repo).cloned()
}

/// Records the module a repository holds.
pub fn record_module(scoped: &BuildScoped, repo: &str, module: DepModule) {
    if let Ok(modules) = scoped.get_or_try_init::<RepoModules, ()>(|| Ok(RepoModules::default())) {
        modules
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(repo.to_string(), module);
    }
}
