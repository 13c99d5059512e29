//! Go modules as external repositories: Gazelle's repository names
//! (`github.com/google/go-cmp` → `com_github_google_go_cmp`) and the build-scoped map from a
//! resolved repository name to its directory, which analysis uses to read module sources.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use kiln_graph::analysis::BuildScoped;

/// Repository directories resolved in this build, by repository name.
#[derive(Default)]
pub struct RepoDirs(pub Mutex<HashMap<String, PathBuf>>);

/// The directory of a resolved repository, if this build resolved it.
pub fn repo_dir(scoped: &BuildScoped, name: &str) -> Option<PathBuf> {
    let dirs = scoped
        .get_or_try_init::<RepoDirs, ()>(|| Ok(RepoDirs::default()))
        .ok()?;
    let map = dirs.0.lock().unwrap_or_else(|e| e.into_inner());
    map.get(name).cloned()
}

/// Records a resolved repository's directory.
pub fn record_repo_dir(scoped: &BuildScoped, name: &str, dir: PathBuf) {
    if let Ok(dirs) = scoped.get_or_try_init::<RepoDirs, ()>(|| Ok(RepoDirs::default())) {
        dirs.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), dir);
    }
}

/// Gazelle's repository name for a module path: the host's labels reversed, then the path, with
/// every character other than letters and digits turned into `_`, lower-cased.
pub fn repo_name(module: &str) -> String {
    let mut parts = module.splitn(2, '/');
    let host = parts.next().unwrap_or("");
    let rest = parts.next().unwrap_or("");
    let mut name: Vec<&str> = host.split('.').rev().collect();
    if !rest.is_empty() {
        name.push(rest);
    }
    name.join("_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gazelle_names() {
        assert_eq!(
            repo_name("github.com/google/go-cmp"),
            "com_github_google_go_cmp"
        );
        assert_eq!(repo_name("golang.org/x/text"), "org_golang_x_text");
        assert_eq!(repo_name("gopkg.in/yaml.v3"), "in_gopkg_yaml_v3");
        assert_eq!(
            repo_name("github.com/BurntSushi/toml"),
            "com_github_burntsushi_toml"
        );
    }
}
