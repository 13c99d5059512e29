//! The loader's view of the workspace: a small trait so that loading itself does no I/O, one
//! implementation over the real disk and one in memory (for tests and fixtures), and the walk that
//! finds every package.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

/// BUILD file names in order of preference.
pub const BUILD_FILE_NAMES: [&str; 3] = ["BUILD.kiln", "BUILD.bazel", "BUILD"];

/// Read access to the workspace, by workspace-relative paths with `/` separators (`""` is the
/// root). `Sync` because each package is evaluated on a thread of its own (for its large stack).
pub trait PackageFs: Sync {
    /// The contents of a file.
    fn read_file(&self, path: &str) -> io::Result<String>;
    /// The entries of a directory as `(name, is_dir)`, in any order.
    fn list_dir(&self, path: &str) -> io::Result<Vec<(String, bool)>>;
    /// Whether a file or directory exists.
    fn exists(&self, path: &str) -> bool;
}

/// Joins workspace-relative paths, treating `""` as the root.
pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// The BUILD file a directory listing contains, by preference.
pub(crate) fn build_file_in(entries: &[(String, bool)]) -> Option<&'static str> {
    BUILD_FILE_NAMES
        .into_iter()
        .find(|name| entries.iter().any(|(n, is_dir)| n == name && !is_dir))
}

/// [`PackageFs`] over a directory on disk. Symlinks are followed, as Bazel's `glob` does.
#[derive(Clone, Debug)]
pub struct DiskFs {
    /// The workspace root.
    pub root: PathBuf,
}

impl DiskFs {
    /// A file system rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> DiskFs {
        DiskFs { root: root.into() }
    }

    fn path(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }
}

impl PackageFs for DiskFs {
    fn read_file(&self, path: &str) -> io::Result<String> {
        std::fs::read_to_string(self.path(path))
    }

    fn list_dir(&self, path: &str) -> io::Result<Vec<(String, bool)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.path(path))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // `metadata` follows symlinks; a dangling one counts as a file.
            let is_dir = std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir());
            out.push((name, is_dir));
        }
        Ok(out)
    }

    fn exists(&self, path: &str) -> bool {
        self.path(path).exists()
    }
}

/// [`PackageFs`] over files held in memory; directories are implied by the file paths.
#[derive(Clone, Debug, Default)]
pub struct MemFs {
    /// File contents by workspace-relative path.
    pub files: BTreeMap<String, String>,
}

impl MemFs {
    /// Parses a multi-file fixture: each file starts with a line `//- path`, and the lines up to
    /// the next such line are its contents.
    pub fn from_fixture(fixture: &str) -> MemFs {
        let mut files = BTreeMap::new();
        let mut current: Option<(String, String)> = None;
        for line in fixture.lines() {
            if let Some(path) = line.trim_start().strip_prefix("//- ") {
                files.extend(current.take());
                current = Some((path.trim().to_string(), String::new()));
            } else if let Some((_, text)) = &mut current {
                text.push_str(line);
                text.push('\n');
            }
        }
        files.extend(current);
        MemFs { files }
    }
}

impl PackageFs for MemFs {
    fn read_file(&self, path: &str) -> io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no file `{path}`")))
    }

    fn list_dir(&self, path: &str) -> io::Result<Vec<(String, bool)>> {
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        let mut entries = BTreeSet::new();
        for file in self.files.keys() {
            if let Some(rest) = file.strip_prefix(&prefix) {
                match rest.split_once('/') {
                    Some((dir, _)) => entries.insert((dir.to_string(), true)),
                    None => entries.insert((rest.to_string(), false)),
                };
            }
        }
        if entries.is_empty() && !path.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no directory `{path}`"),
            ));
        }
        Ok(entries.into_iter().collect())
    }

    fn exists(&self, path: &str) -> bool {
        self.files.contains_key(path) || self.list_dir(path).is_ok()
    }
}

/// Every package under `root` (directories holding a BUILD file), sorted, as workspace-relative
/// paths (`""` for the root package). Skips `kiln-out`, directories whose name starts with `.`
/// and every symlink (so Bazel's `bazel-*` links); unreadable directories are skipped.
pub fn discover_packages(root: &Path) -> Vec<String> {
    let mut packages = Vec::new();
    let mut stack = vec![String::new()];
    while let Some(dir) = stack.pop() {
        let Ok(read) = std::fs::read_dir(root.join(&dir)) else {
            continue;
        };
        let mut entries = Vec::new();
        for entry in read.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            entries.push((name, kind.is_dir()));
            if kind.is_dir() && !skipped_dir(&entries[entries.len() - 1].0) {
                stack.push(join(&dir, &entries[entries.len() - 1].0));
            }
        }
        if build_file_in(&entries).is_some() {
            packages.push(dir);
        }
    }
    packages.sort();
    packages
}

fn skipped_dir(name: &str) -> bool {
    name.starts_with('.') || name == "kiln-out"
}
