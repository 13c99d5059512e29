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

/// The file that marks a cache directory (<https://bford.info/cachedir/>): cargo's `target/`
/// and Kiln's own cache carry one.
pub const CACHEDIR_TAG: &str = "CACHEDIR.TAG";
/// What a valid [`CACHEDIR_TAG`] file starts with.
const CACHEDIR_SIGNATURE: &[u8; 43] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// Whether `dir` (whose listing `entries` holds) is a tagged cache directory: it has a
/// [`CACHEDIR_TAG`] file with the signature. Such a directory holds no packages: package
/// discovery, the no-op check's tree fingerprint and `kiln watch` do not descend into it, so a
/// cargo `target/` or a cache kept inside the workspace costs nothing (a package in one is still
/// built when named).
pub fn is_tagged_cache_dir(dir: &Path, entries: &[(String, bool)]) -> bool {
    if !entries
        .iter()
        .any(|(name, is_dir)| !is_dir && name == CACHEDIR_TAG)
    {
        return false;
    }
    let mut head = [0u8; 43];
    std::fs::File::open(dir.join(CACHEDIR_TAG))
        .and_then(|mut file| io::Read::read_exact(&mut file, &mut head))
        .is_ok_and(|()| &head == CACHEDIR_SIGNATURE)
}

/// Every package under `root` (directories holding a BUILD file), sorted, as workspace-relative
/// paths (`""` for the root package). Skips `kiln-out`, directories whose name starts with `.`,
/// tagged cache directories ([`is_tagged_cache_dir`]) and every symlink (so Bazel's `bazel-*`
/// links); unreadable directories are skipped.
pub fn discover_packages(root: &Path) -> Vec<String> {
    let mut packages = Vec::new();
    let mut stack = vec![String::new()];
    while let Some(dir) = stack.pop() {
        let path = root.join(&dir);
        let Ok(read) = std::fs::read_dir(&path) else {
            continue;
        };
        let mut entries = Vec::new();
        for entry in read.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            entries.push((
                entry.file_name().to_string_lossy().into_owned(),
                kind.is_dir(),
            ));
        }
        if !dir.is_empty() && is_tagged_cache_dir(&path, &entries) {
            continue;
        }
        for (name, is_dir) in &entries {
            if *is_dir && !skipped_dir(name) {
                stack.push(join(&dir, name));
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
