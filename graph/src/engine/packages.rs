//! Package loading with a persistent memo: a package is evaluated again only when its BUILD file,
//! a `.bzl` file it loads, the listing of a directory one of its globs read, the build settings or
//! Kiln's version changed. Everything else comes back from the workspace state as stored.

use std::collections::HashMap;
use std::sync::Arc;

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
    /// A loader for the workspace at `root`. `digest_file` gives the content digest (hex) of a
    /// workspace-relative file, or `None` if it cannot be read.
    pub fn new(
        root: &std::path::Path,
        platform: load::HostPlatform,
        rules: &'a [RuleSchema],
        settings_key: String,
        digest_file: &'a (dyn Fn(&str) -> Option<String> + Sync),
        memo: &'a dyn PackageMemoStore,
    ) -> Self {
        PackageLoader {
            fs: DiskFs::new(root),
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
        let loaded =
            load::load_package(&request, &self.fs, self.rules).map_err(|e| e.to_string())?;
        self.glob_listings
            .extend(loaded.deps.globbed_dirs.iter().cloned());
        let files: Option<Vec<(String, String)>> = loaded
            .deps
            .files
            .iter()
            .map(|f| (self.digest_file)(f).map(|d| (f.clone(), d)))
            .collect();
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
            if (self.digest_file)(file).as_deref() != Some(digest.as_str()) {
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
