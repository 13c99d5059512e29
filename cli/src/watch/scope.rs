//! Which directories `kiln watch` watches. Until a round has said what the build rests on (the
//! first round, or after one that failed before loading everything) it is the whole workspace, as
//! package discovery sees it, plus what the last good round rested on. Afterwards it is only what
//! can change the build: the directories
//! holding the files the last round used and those its globs listed (hidden or reached through a
//! symlink included), the trees under the recursive patterns (`//a/...`, where a new BUILD file is
//! a new package), the packages named on the command line, every ancestor of those up to the
//! root (so a directory deleted and created again is seen), and the workspace state's directory
//! (so a `kiln build` elsewhere is noticed).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kiln_graph::pattern::{Pattern, PatternSet};

use super::changes::ChangeTracker;

/// What to watch for one `kiln watch` invocation.
pub struct WatchScope {
    root: PathBuf,
    /// Workspace-relative package directories whose whole tree is watched (`//a/...`).
    recursive: Vec<String>,
    /// Workspace-relative package directories named by the patterns (`//a:b`, `//a:all`).
    named: Vec<String>,
    /// Whether the whole workspace is watched (nothing vouched for what the build rests on).
    whole_tree: bool,
    /// Directories outside the workspace that are watched too.
    extra: Vec<PathBuf>,
}

impl WatchScope {
    /// The scope for `patterns` in the workspace at `root` (absolute, canonical), starting with
    /// the whole workspace; `extra` directories are always watched.
    pub fn new(root: &Path, patterns: &PatternSet, extra: Vec<PathBuf>) -> WatchScope {
        let mut recursive = Vec::new();
        let mut named = Vec::new();
        for (negative, pattern) in &patterns.entries {
            match (negative, pattern) {
                (true, _) => {} // a subtraction: watching a little more is harmless
                (false, Pattern::Recursive(prefix)) => recursive.push(prefix.clone()),
                (false, Pattern::AllInPackage(package)) => named.push(package.clone()),
                (false, Pattern::Target(label)) if label.is_main_repo() => {
                    named.push(label.package.clone())
                }
                (false, Pattern::Target(_)) => {}
            }
        }
        WatchScope {
            root: root.to_path_buf(),
            recursive,
            named,
            whole_tree: true,
            extra,
        }
    }

    /// Watches the whole workspace (`true`) or only what the tracker says the build rests on.
    pub fn set_whole_tree(&mut self, whole_tree: bool) {
        self.whole_tree = whole_tree;
    }

    /// The directories to watch (absolute) given what `tracker` knows.
    pub fn dirs(&self, tracker: &ChangeTracker) -> BTreeSet<PathBuf> {
        let mut rel: BTreeSet<String> = BTreeSet::new();
        if self.whole_tree {
            rel.extend(package_tree(&self.root, ""));
        } else {
            for prefix in &self.recursive {
                rel.extend(package_tree(&self.root, prefix));
            }
            rel.extend(self.named.iter().cloned());
        }
        // Even with the whole tree watched, what the last good round rested on stays watched: a
        // hidden or symlinked directory it read is not in the package tree, and the fix for a
        // failed round may land there.
        rel.extend(tracker.dirs());
        let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
        for dir in rel {
            for ancestor in ancestors(&dir) {
                dirs.insert(if ancestor.is_empty() {
                    self.root.clone()
                } else {
                    self.root.join(ancestor)
                });
            }
        }
        dirs.extend(self.extra.iter().cloned());
        dirs
    }
}

/// `dir` and each of its ancestors, up to `""` (the root).
fn ancestors(dir: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(dir);
    std::iter::from_fn(move || {
        let current = next?;
        next = if current.is_empty() {
            None
        } else {
            Some(current.rsplit_once('/').map(|(up, _)| up).unwrap_or(""))
        };
        Some(current)
    })
}

/// Every directory under `start` (workspace-relative) as package discovery walks it: no
/// `kiln-out`, no hidden directory, nothing inside a tagged cache directory, no symbolic link
/// followed.
fn package_tree(root: &Path, start: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![start.to_string()];
    while let Some(dir) = stack.pop() {
        let path = root.join(&dir);
        let Ok(read) = std::fs::read_dir(&path) else {
            continue;
        };
        let entries: Vec<(String, bool)> = read
            .flatten()
            .map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                (name, entry.file_type().is_ok_and(|t| t.is_dir()))
            })
            .collect();
        found.push(dir.clone());
        if !dir.is_empty() && kiln_graph::load::is_tagged_cache_dir(&path, &entries) {
            continue;
        }
        for (name, is_dir) in entries {
            if !is_dir || name.starts_with('.') || (dir.is_empty() && name == "kiln-out") {
                continue;
            }
            stack.push(if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_cache::DigestFunction;
    use kiln_graph::engine::WatchSet;

    fn workspace() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path().canonicalize().unwrap_or_else(|e| panic!("{e}"));
        for d in [
            "app/sub",
            "lib/deep/er",
            "other",
            ".git/objects",
            "kiln-out/bin",
            "data/.cfg",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap_or_else(|e| panic!("{e}"));
        }
        std::os::unix::fs::symlink(root.join("other"), root.join("lib/link"))
            .unwrap_or_else(|e| panic!("{e}"));
        (dir, root)
    }

    fn relative(root: &Path, dirs: &BTreeSet<PathBuf>) -> Vec<String> {
        dirs.iter()
            .map(|d| match d.strip_prefix(root) {
                Ok(rel) => rel.to_string_lossy().into_owned(),
                Err(_) => d.to_string_lossy().into_owned(),
            })
            .collect()
    }

    #[test]
    fn ancestors_run_up_to_the_root() {
        assert_eq!(
            ancestors("a/b/c").collect::<Vec<_>>(),
            ["a/b/c", "a/b", "a", ""]
        );
        assert_eq!(ancestors("").collect::<Vec<_>>(), [""]);
    }

    #[test]
    fn the_whole_tree_skips_outputs_hidden_directories_and_symlinks() {
        let (_dir, root) = workspace();
        let patterns =
            PatternSet::parse(&["//app:main".into()], "").unwrap_or_else(|e| panic!("{e}"));
        let scope = WatchScope::new(&root, &patterns, vec![PathBuf::from("/state")]);
        let mut tracker = ChangeTracker::new(&root, DigestFunction::Blake3);
        assert_eq!(
            relative(&root, &scope.dirs(&tracker)),
            [
                "/state",
                "",
                "app",
                "app/sub",
                "data",
                "lib",
                "lib/deep",
                "lib/deep/er",
                "other"
            ]
        );
        // What the last good round read stays watched, hidden or not: a fix may land there.
        tracker.learn(&WatchSet {
            files: vec!["data/.cfg/x.txt".into()],
            ..WatchSet::default()
        });
        assert!(scope.dirs(&tracker).contains(&root.join("data/.cfg")));
    }

    #[test]
    fn after_a_round_only_what_the_build_rests_on_is_watched() {
        let (_dir, root) = workspace();
        let patterns = PatternSet::parse(&["//app:main".into(), "//lib/deep/...".into()], "")
            .unwrap_or_else(|e| panic!("{e}"));
        let mut scope = WatchScope::new(&root, &patterns, Vec::new());
        scope.set_whole_tree(false);
        let mut tracker = ChangeTracker::new(&root, DigestFunction::Blake3);
        tracker.learn(&WatchSet {
            // A source reached through a symlinked directory and a hidden directory's listing.
            files: vec!["lib/link/gen.txt".into(), "/usr/bin/tool".into()],
            listings: vec![("data/.cfg".into(), String::new())],
            digests: Default::default(),
        });
        assert_eq!(
            relative(&root, &scope.dirs(&tracker)),
            [
                "",
                "app",
                "data",
                "data/.cfg",
                "lib",
                "lib/deep",
                "lib/deep/er",
                "lib/link"
            ]
        );
    }
}
