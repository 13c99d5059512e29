//! Package loading with a persistent memo: a package is evaluated again only when its BUILD file,
//! a `.bzl` file it loads, the listing of a directory one of its globs read, the build settings or
//! Kiln's version changed. Everything else comes back from the workspace state as stored.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use kiln_cache::{Digest, DigestFunction};

use serde::{Deserialize, Serialize};

use crate::load::{self, DiskFs, LoadRequest, Package, PackageFs};
use crate::repository::ExternalRepos;
use crate::rule_schema::RuleSchema;

/// Bumped whenever the memo's meaning changes; Kiln's version is part of the key too.
const MEMO_FORMAT: u32 = 1;

/// What a memo entry must still match to be reused.
#[derive(Serialize, Deserialize)]
struct PackageMemo {
    format: u32,
    kiln_version: String,
    settings: String,
    files: Vec<(String, String)>,
    dirs: Vec<(String, String)>,
    package: Package,
}

/// Loads packages on demand and keeps them for the rest of the build.
pub struct PackageLoader<'a> {
    fs: DiskFs,
    function: DigestFunction,
    request_platform: load::HostPlatform,
    rules: &'a [RuleSchema],
    settings_key: String,
    digest_file: &'a (dyn Fn(&str) -> Option<String> + Sync),
    memo: &'a dyn PackageMemoStore,
    loaded: HashMap<String, Result<Arc<Package>, String>>,
    repos: Option<&'a ExternalRepos<'a>>,
    /// Packages evaluated (memo misses) in this build.
    pub evaluated: usize,
    /// Every directory a glob of a loaded package listed, with its listing's fingerprint.
    pub glob_listings: Vec<(String, String)>,
}

/// Where package memos persist (the workspace state).
pub trait PackageMemoStore: Sync {
    /// The stored memo of `package`.
    fn get(&self, package: &str) -> Option<Vec<u8>>;
    /// Stores the memo of `package`.
    fn put(&self, package: &str, bytes: Vec<u8>);
}

impl<'a> PackageLoader<'a> {
    /// A loader for the workspace at `root`. `digest_file` gives the content digest (hex, in
    /// `function`) of a workspace-relative file, or `None` if it cannot be read.
    pub fn new(
        root: &std::path::Path,
        function: DigestFunction,
        platform: load::HostPlatform,
        rules: &'a [RuleSchema],
        settings_key: String,
        digest_file: &'a (dyn Fn(&str) -> Option<String> + Sync),
        memo: &'a dyn PackageMemoStore,
    ) -> Self {
        PackageLoader {
            fs: DiskFs::new(root),
            function,
            request_platform: platform,
            rules,
            settings_key,
            digest_file,
            memo,
            loaded: HashMap::new(),
            repos: None,
            evaluated: 0,
            glob_listings: Vec::new(),
        }
    }

    /// Lets the loader load packages of external repositories resolved by `repos`.
    pub fn with_repositories(mut self, repos: &'a ExternalRepos<'a>) -> Self {
        self.repos = Some(repos);
        self
    }

    /// The package `name` of repository `repo` (empty for the main repository), loaded once per
    /// build; the error is the loader's message.
    pub fn package_in(&mut self, repo: &str, name: &str) -> Result<Arc<Package>, String> {
        if repo.is_empty() {
            return self.package(name);
        }
        let key = format!("@{repo}//{name}");
        if let Some(found) = self.loaded.get(&key) {
            return found.clone();
        }
        let result = self.load_external(repo, name);
        self.loaded.insert(key, result.clone());
        result
    }

    fn load_external(&mut self, repo: &str, name: &str) -> Result<Arc<Package>, String> {
        let Some(repos) = self.repos else {
            return Err(format!(
                "external repository `@{repo}` is not defined in this workspace"
            ));
        };
        let dir = repos.root(repo).map_err(|e| e.to_string())?;
        // The directory is content-addressed: the same path means the same files, so the memo
        // needs no file digests, only the directory.
        let memo_key = format!("@{repo}//{name}");
        let identity = format!("{}|{}", self.settings_key, dir.display());
        if let Some(bytes) = self.memo.get(&memo_key) {
            if let Ok(memo) = serde_json::from_slice::<PackageMemo>(&bytes) {
                if memo.format == MEMO_FORMAT
                    && memo.kiln_version == env!("CARGO_PKG_VERSION")
                    && memo.settings == identity
                {
                    return Ok(Arc::new(memo.package));
                }
            }
        }
        self.evaluated += 1;
        let request = LoadRequest {
            package: name.to_string(),
            platform: self.request_platform.clone(),
        };
        let fs = DiskFs::new(&dir);
        let loaded = load::load_package(&request, &fs, self.rules)
            .map_err(|e| format!("In external repository `@{repo}`: {e}"))?;
        let package = loaded.package.in_repository(repo);
        let memo = PackageMemo {
            format: MEMO_FORMAT,
            kiln_version: env!("CARGO_PKG_VERSION").to_string(),
            settings: identity,
            files: Vec::new(),
            dirs: Vec::new(),
            package: package.clone(),
        };
        if let Ok(bytes) = serde_json::to_vec(&memo) {
            self.memo.put(&memo_key, bytes);
        }
        Ok(Arc::new(package))
    }

    /// The package `name`, loaded once per build; the error is the loader's message.
    pub fn package(&mut self, name: &str) -> Result<Arc<Package>, String> {
        if let Some(found) = self.loaded.get(name) {
            return found.clone();
        }
        let result = self.load_uncached(name);
        self.loaded.insert(name.to_string(), result.clone());
        result
    }

    /// Every package loaded so far.
    pub fn loaded_count(&self) -> usize {
        self.loaded.len()
    }

    fn load_uncached(&mut self, name: &str) -> Result<Arc<Package>, String> {
        if let Some((package, dirs)) = self.memoized(name) {
            self.glob_listings.extend(dirs);
            return Ok(Arc::new(package));
        }
        self.evaluated += 1;
        let request = LoadRequest {
            package: name.to_string(),
            platform: self.request_platform.clone(),
        };
        let recording = RecordingFs {
            inner: &self.fs,
            function: self.function,
            read: Mutex::new(HashMap::new()),
        };
        let repos = self.repos;
        let roots = move |repo: &str| -> Result<std::path::PathBuf, String> {
            match repos {
                Some(repos) => repos.root(repo).map_err(|e| e.to_string()),
                None => Err(format!(
                    "external repository `@{repo}` is not defined in this workspace"
                )),
            }
        };
        let loaded = load::load_package_with_repos(&request, &recording, self.rules, Some(&roots))
            .map_err(|e| e.to_string())?;
        self.glob_listings
            .extend(loaded.deps.globbed_dirs.iter().cloned());
        let files: Option<Vec<(String, String)>> = loaded
            .deps
            .files
            .iter()
            .map(|f| self.file_digest(f).map(|d| (f.clone(), d)))
            .collect();
        // The memo (and the watch set, through `digest_file`'s log) must name the bytes the
        // evaluation used: a file edited between its read and its digest would otherwise store
        // the old package under the new digest, for every later build to trust.
        if let (Some(files), Ok(read)) = (&files, recording.read.lock()) {
            for (path, digest) in files {
                if read.get(path).is_some_and(|used| used != digest) {
                    return Err(format!(
                        "`{path}` changed while it was being read; build again"
                    ));
                }
            }
        }
        if let Some(files) = files {
            let memo = PackageMemo {
                format: MEMO_FORMAT,
                kiln_version: env!("CARGO_PKG_VERSION").to_string(),
                settings: self.settings_key.clone(),
                files,
                dirs: loaded.deps.globbed_dirs.clone(),
                package: loaded.package.clone(),
            };
            if let Ok(bytes) = serde_json::to_vec(&memo) {
                self.memo.put(name, bytes);
            }
        }
        Ok(Arc::new(loaded.package))
    }

    /// The digest a package records for a file it read: a workspace file's content digest, or
    /// for a `.bzl` file of an external repository (recorded by label) the digest of the
    /// repository's current directory and the file's text, so a redefined repository (a new
    /// content-addressed directory) invalidates the package. Repository files are not observed
    /// for the no-op record: the repository rule observes what defines them.
    fn file_digest(&self, file: &str) -> Option<String> {
        if !file.starts_with('@') {
            return (self.digest_file)(file);
        }
        let label = crate::label::Label::parse(file, "").ok()?;
        let dir = self.repos?.root(&label.repo).ok()?;
        let text = std::fs::read_to_string(dir.join(&label.package).join(&label.name)).ok()?;
        Some(load::repo_file_digest(&dir, &text))
    }

    fn memoized(&self, name: &str) -> Option<(Package, Vec<(String, String)>)> {
        let bytes = self.memo.get(name)?;
        let memo: PackageMemo = serde_json::from_slice(&bytes).ok()?;
        if memo.format != MEMO_FORMAT
            || memo.kiln_version != env!("CARGO_PKG_VERSION")
            || memo.settings != self.settings_key
        {
            return None;
        }
        // The BUILD file that would be chosen must still be the one the memo read.
        let chosen = load::BUILD_FILE_NAMES
            .iter()
            .map(|file| join(name, file))
            .find(|path| self.fs.exists(path));
        if chosen.as_deref() != Some(memo.package.build_file.as_str()) {
            return None;
        }
        for (file, digest) in &memo.files {
            if self.file_digest(file).as_deref() != Some(digest.as_str()) {
                return None;
            }
        }
        for (dir, fingerprint) in &memo.dirs {
            let listing = self.fs.list_dir(dir).ok()?;
            if &load::listing_fingerprint(&listing) != fingerprint {
                return None;
            }
        }
        Some((memo.package, memo.dirs))
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Reads through to disk and remembers the digest (hex) of every file's bytes as read.
struct RecordingFs<'a> {
    inner: &'a DiskFs,
    function: DigestFunction,
    read: Mutex<HashMap<String, String>>,
}

impl PackageFs for RecordingFs<'_> {
    fn read_file(&self, path: &str) -> io::Result<String> {
        let text = self.inner.read_file(path)?;
        if let Ok(mut read) = self.read.lock() {
            read.insert(
                path.to_string(),
                Digest::of_bytes(self.function, text.as_bytes()).hex(),
            );
        }
        Ok(text)
    }

    fn list_dir(&self, path: &str) -> io::Result<Vec<(String, bool)>> {
        self.inner.list_dir(path)
    }

    fn exists(&self, path: &str) -> bool {
        self.inner.exists(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::HostPlatform;

    #[derive(Default)]
    struct Memo(Mutex<HashMap<String, Vec<u8>>>);

    impl PackageMemoStore for Memo {
        fn get(&self, package: &str) -> Option<Vec<u8>> {
            self.0.lock().ok()?.get(package).cloned()
        }
        fn put(&self, package: &str, bytes: Vec<u8>) {
            if let Ok(mut memo) = self.0.lock() {
                memo.insert(package.to_string(), bytes);
            }
        }
    }

    fn digest_on_disk(root: &std::path::Path, path: &str) -> Option<String> {
        let bytes = std::fs::read(root.join(path)).ok()?;
        Some(Digest::of_bytes(DigestFunction::Blake3, &bytes).hex())
    }

    #[test]
    fn a_build_file_edited_between_its_read_and_its_digest_is_never_memoized() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path().to_path_buf();
        std::fs::write(root.join("BUILD"), "filegroup(name = \"one\")\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let schemas = [RuleSchema {
            name: "filegroup",
            attrs: &[],
            test: false,
            executable: false,
        }];
        let memo = Memo::default();
        let platform = || HostPlatform {
            os: "linux".into(),
            cpu: "x86_64".into(),
        };
        // The "editor" saves a new BUILD file just after the evaluation read the old one.
        let edit_then_digest = |path: &str| {
            let _ = std::fs::write(root.join("BUILD"), "filegroup(name = \"two\")\n");
            digest_on_disk(&root, path)
        };
        let mut loader = PackageLoader::new(
            &root,
            DigestFunction::Blake3,
            platform(),
            &schemas,
            "settings".into(),
            &edit_then_digest,
            &memo,
        );
        let error = loader.package("").err().unwrap_or_default();
        assert!(error.contains("changed while it was being read"), "{error}");
        assert!(memo.get("").is_none(), "nothing was memoized");

        // Without an edit in between, the package is memoized under the digest it was read with.
        let digest = |path: &str| digest_on_disk(&root, path);
        let mut loader = PackageLoader::new(
            &root,
            DigestFunction::Blake3,
            platform(),
            &schemas,
            "settings".into(),
            &digest,
            &memo,
        );
        let package = loader.package("").unwrap_or_else(|e| panic!("{e}"));
        assert!(package.targets.contains_key("two"));
        assert!(memo.get("").is_some());
    }
}
