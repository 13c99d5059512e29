//! Deciding by content whether a file event changes anything a build rested on. The tracker knows
//! the digest of every workspace file the last round used and the fingerprint of every directory
//! listing a glob read; an event is a change only when those differ (a save with the same bytes,
//! a formatter rewriting a file unchanged, or an editor's temp file that came and went start
//! nothing).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use kiln_cache::{Digest, DigestFunction};
use kiln_graph::engine::WatchSet;
use kiln_graph::load::{listing_fingerprint, DiskFs, PackageFs, BUILD_FILE_NAMES};

/// The workspace's settings file, tracked whatever the rounds rest on.
const SETTINGS_FILE: &str = "kiln.toml";

/// What the watcher knows of the files and listings the last round used.
#[derive(Debug, Default)]
pub struct ChangeTracker {
    root: PathBuf,
    function: DigestFunction,
    /// Workspace-relative path → its content digest and executable bit, which action keys both
    /// hold (`None`: did not exist).
    files: HashMap<String, Option<FileState>>,
    /// Workspace-relative directory → fingerprint of its listing.
    listings: HashMap<String, String>,
    /// BUILD and `.bzl` files (workspace-relative) in watched directories that no round rests
    /// on, e.g. a root `BUILD.bazel` outside the targets: known by content so that rewriting one
    /// unchanged starts nothing, but not watched for their own sake.
    definitions: HashMap<String, Option<FileState>>,
    /// Files the last round rested on without digesting them (rules only stat some, a no-op
    /// replay reads none), digested by the tracker after the round: it cannot vouch that the
    /// round saw those bytes.
    digested_late: HashSet<String>,
}

impl ChangeTracker {
    /// A tracker for the workspace at `root` (absolute, canonical), digesting with `function`
    /// (the build's, so its digests compare with the build's).
    pub fn new(root: &Path, function: DigestFunction) -> Self {
        ChangeTracker {
            root: root.to_path_buf(),
            function,
            ..Default::default()
        }
    }

    /// Replaces what the tracker knows with what a round rested on (so a dependency a BUILD edit
    /// dropped is no longer tracked, nor its directory watched); `kiln.toml` is always kept. A
    /// file the round digested is recorded with the digest the round used (so an edit made while
    /// it ran is a change afterwards); other files keep what the tracker knew, or are digested
    /// now (after a no-op round, which read nothing) and marked [`ChangeTracker::digested_late`].
    pub fn learn(&mut self, set: &WatchSet) {
        let mut known = std::mem::take(&mut self.files);
        self.digested_late.clear();
        if let Some(settings) = known.remove(SETTINGS_FILE) {
            self.files.insert(SETTINGS_FILE.to_string(), settings);
        }
        for path in &set.files {
            // Rules observe some workspace files by absolute path (go.mod, Cargo.lock): track
            // them by their workspace-relative path like any other; host files are not watched.
            let used = set.digests.get(path).copied();
            let path = match Path::new(path).strip_prefix(&self.root) {
                Ok(rel) => rel.to_string_lossy().into_owned(),
                Err(_) if Path::new(path).is_absolute() => continue,
                Err(_) => path.clone(),
            };
            if path.starts_with("kiln-out/") || path.is_empty() {
                continue;
            }
            if let Some(used) = used {
                let executable = self.executable(&path);
                self.files.insert(path, Some((used, executable)));
            } else {
                let state = match known.remove(&path) {
                    Some(state) => state,
                    None => self.digest(&path),
                };
                self.files.insert(path.clone(), state);
                self.digested_late.insert(path);
            }
        }
        self.listings = set.listings.iter().cloned().collect();
        let tracked = &self.files;
        self.definitions.retain(|rel, _| !tracked.contains_key(rel));
    }

    /// Whether an event at `path` (absolute) may concern the build at all, before reading it: a
    /// file it used, an entry of a directory a glob listed, or a BUILD, `.bzl` or `kiln.toml` file
    /// anywhere (a new package, a new load).
    pub fn concerns(&self, path: &Path) -> bool {
        let Some(rel) = self.relative(path) else {
            return false;
        };
        if self.files.contains_key(&rel) || self.listings.contains_key(parent(&rel)) {
            return true;
        }
        is_build_definition(&rel)
    }

    /// Whether the content at `path` (absolute) differs from what the tracker knows; records the
    /// new state either way. Returns the workspace-relative path when it changed.
    pub fn changed(&mut self, path: &Path) -> Option<String> {
        let rel = self.relative(path)?;
        let probe = self.probe(&rel);
        let changed = probe.differs();
        if let Some((now, _)) = probe.file {
            if self.files.contains_key(&rel) {
                self.files.insert(rel.clone(), now);
            } else {
                self.definitions.insert(rel.clone(), now);
            }
        }
        if let Some(listing) = probe.listing {
            self.listings.insert(parent(&rel).to_string(), listing);
        }
        changed.then_some(rel)
    }

    /// Whether the content at `path` (absolute) differs from what the tracker knows, recording
    /// nothing: asked while a round runs, to stop it when something it rests on moved.
    pub fn differs(&self, path: &Path) -> bool {
        self.relative(path)
            .is_some_and(|rel| self.probe(&rel).differs())
    }

    /// Learns the content of the BUILD and `.bzl` files in `dirs` (absolute, the watched
    /// directories) that no round rests on and the tracker does not know yet, so that an event
    /// on one is decided by content like any other.
    pub fn note_definitions_in(&mut self, dirs: &BTreeSet<PathBuf>) {
        for dir in dirs {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let Some(rel) = self.relative(&entry.path()) else {
                    continue;
                };
                if is_build_definition(&rel)
                    && !self.files.contains_key(&rel)
                    && !self.definitions.contains_key(&rel)
                {
                    let state = self.digest(&rel);
                    self.definitions.insert(rel, state);
                }
            }
        }
    }

    /// Whether `path` (absolute) is a file the last round rested on without digesting it, so
    /// an event on it during the round counts even when its content now matches the tracker's.
    pub fn digested_late(&self, path: &Path) -> bool {
        self.relative(path)
            .is_some_and(|rel| self.digested_late.contains(&rel))
    }

    /// The digest function its digests are in.
    pub fn function(&self) -> DigestFunction {
        self.function
    }

    /// Whether the tracker knows anything yet (it learns from the first round that vouches for
    /// its inputs).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.listings.is_empty()
    }

    /// The state of `rel` now against what the tracker knows.
    fn probe(&self, rel: &str) -> Probe {
        let mut probe = Probe::default();
        if self.files.contains_key(rel) || is_build_definition(rel) {
            let now = self.digest(rel);
            let before = self
                .files
                .get(rel)
                .or_else(|| self.definitions.get(rel))
                .copied();
            let changed = before != Some(now) && !(before.is_none() && now.is_none());
            probe.file = Some((now, changed));
        }
        let dir = parent(rel);
        if let Some(before) = self.listings.get(dir) {
            let fs = DiskFs::new(&self.root);
            let now = fs
                .list_dir(dir)
                .map(|listing| listing_fingerprint(&listing))
                .unwrap_or_default();
            if &now != before {
                probe.listing = Some(now);
            }
        }
        probe
    }

    /// Every tracked file (absolute), to re-check after the OS dropped events (queue overflow).
    pub fn tracked(&self) -> Vec<PathBuf> {
        let files = self.files.keys().map(|rel| self.root.join(rel));
        let dirs = self
            .listings
            .keys()
            .map(|rel| self.root.join(rel).join("."));
        files.chain(dirs).collect()
    }

    /// The directories (workspace-relative, `""` for the root) holding a tracked file or listed
    /// by a glob: what must be watched for the tracker to hear of every change.
    pub fn dirs(&self) -> BTreeSet<String> {
        let files = self.files.keys().map(|f| parent(f).to_string());
        files.chain(self.listings.keys().cloned()).collect()
    }

    /// Tracked files under the directory `dir` (absolute): a directory moved or deleted as a
    /// whole is reported only by its own path.
    pub fn tracked_under(&self, dir: &Path) -> Vec<PathBuf> {
        let Some(rel) = self.relative(dir) else {
            return Vec::new();
        };
        let prefix = if rel.is_empty() {
            String::new()
        } else {
            format!("{rel}/")
        };
        self.files
            .keys()
            .filter(|f| f.starts_with(&prefix))
            .map(|f| self.root.join(f))
            .collect()
    }

    fn relative(&self, path: &Path) -> Option<String> {
        let rel = path.strip_prefix(&self.root).ok()?;
        Some(rel.to_string_lossy().into_owned())
    }

    fn digest(&self, rel: &str) -> Option<FileState> {
        let digest = Digest::of_file(self.function, &self.root.join(rel)).ok()?;
        Some((digest, self.executable(rel)))
    }

    fn executable(&self, rel: &str) -> bool {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(self.root.join(rel)).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
    }
}

/// A file's content digest and executable bit.
type FileState = (Digest, bool);

/// What [`ChangeTracker::probe`] found.
#[derive(Default)]
struct Probe {
    /// The file's state now (`None`: absent) and whether it differs, when the file is tracked.
    file: Option<(Option<FileState>, bool)>,
    /// The parent directory's listing fingerprint now, when it is tracked and differs.
    listing: Option<String>,
}

impl Probe {
    fn differs(&self) -> bool {
        self.file.is_some_and(|(_, changed)| changed) || self.listing.is_some()
    }
}

fn parent(rel: &str) -> &str {
    rel.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("")
}

fn is_build_definition(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    BUILD_FILE_NAMES.contains(&name) || name.ends_with(".bzl") || rel == SETTINGS_FILE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, ChangeTracker) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(dir.path().join("a")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("a/BUILD"), "x").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("a/src.txt"), "one").unwrap_or_else(|e| panic!("{e}"));
        let fs = DiskFs::new(dir.path());
        let listing = listing_fingerprint(&fs.list_dir("a").unwrap_or_else(|e| panic!("{e}")));
        let mut tracker = ChangeTracker::new(dir.path(), DigestFunction::Blake3);
        tracker.learn(&WatchSet {
            files: vec!["a/BUILD".into(), "a/src.txt".into(), "/usr/bin".into()],
            listings: vec![("a".into(), listing)],
            digests: HashMap::new(),
        });
        (dir, tracker)
    }

    #[test]
    fn a_new_executable_bit_is_a_change() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, mut tracker) = setup();
        let src = dir.path().join("a/src.txt");
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(tracker.differs(&src));
        assert_eq!(tracker.changed(&src).as_deref(), Some("a/src.txt"));
        assert_eq!(tracker.changed(&src), None, "recorded");
    }

    #[test]
    fn differs_answers_without_recording() {
        let (dir, tracker) = setup();
        let src = dir.path().join("a/src.txt");
        assert!(!tracker.differs(&src));
        std::fs::write(&src, "two").unwrap_or_else(|e| panic!("{e}"));
        assert!(tracker.differs(&src));
        // Asked again, the answer is the same: nothing was recorded.
        assert!(tracker.differs(&src));
        let new = dir.path().join("a/new.txt");
        std::fs::write(&new, "n").unwrap_or_else(|e| panic!("{e}"));
        assert!(tracker.differs(&new), "a new entry in a listed directory");
        assert!(!tracker.is_empty());
        assert!(ChangeTracker::new(dir.path(), DigestFunction::Blake3).is_empty());
    }

    #[test]
    fn same_bytes_are_no_change_and_new_bytes_are() {
        let (dir, mut tracker) = setup();
        let src = dir.path().join("a/src.txt");
        std::fs::write(&src, "one").unwrap_or_else(|e| panic!("{e}"));
        assert!(tracker.concerns(&src));
        assert_eq!(tracker.changed(&src), None);
        std::fs::write(&src, "two").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tracker.changed(&src).as_deref(), Some("a/src.txt"));
        // Already recorded: the same event again is no change.
        assert_eq!(tracker.changed(&src), None);
    }

    #[test]
    fn a_new_file_in_a_globbed_directory_is_a_change_and_a_file_that_came_and_went_is_not() {
        let (dir, mut tracker) = setup();
        let new = dir.path().join("a/new.txt");
        std::fs::write(&new, "n").unwrap_or_else(|e| panic!("{e}"));
        assert!(tracker.concerns(&new));
        assert_eq!(tracker.changed(&new).as_deref(), Some("a/new.txt"));
        let temp = dir.path().join("a/.tmp123");
        std::fs::write(&temp, "t").unwrap_or_else(|e| panic!("{e}"));
        std::fs::remove_file(&temp).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tracker.changed(&temp), None);
    }

    #[test]
    fn unrelated_paths_do_not_concern_the_build_but_new_build_files_do() {
        let (dir, tracker) = setup();
        std::fs::create_dir_all(dir.path().join("b")).unwrap_or_else(|e| panic!("{e}"));
        assert!(!tracker.concerns(&dir.path().join("b/notes.txt")));
        assert!(tracker.concerns(&dir.path().join("b/BUILD.bazel")));
        assert!(tracker.concerns(&dir.path().join("b/defs.bzl")));
        assert!(!tracker.concerns(Path::new("/elsewhere/x")));
    }

    #[test]
    fn files_the_round_did_not_digest_are_marked_until_the_next_round() {
        let (dir, mut tracker) = setup();
        let src = dir.path().join("a/src.txt");
        assert!(
            tracker.digested_late(&src),
            "setup's round digested nothing"
        );
        let used = Digest::of_bytes(DigestFunction::Blake3, b"one");
        tracker.learn(&WatchSet {
            files: vec!["a/src.txt".into(), "a/BUILD".into()],
            listings: Vec::new(),
            digests: HashMap::from([("a/src.txt".to_string(), used)]),
        });
        assert!(!tracker.digested_late(&src));
        assert!(tracker.digested_late(&dir.path().join("a/BUILD")));
        assert!(!tracker.digested_late(Path::new("/elsewhere/x")));
    }

    #[test]
    fn the_digest_a_build_used_wins_over_what_the_file_holds_now() {
        let (dir, mut tracker) = setup();
        let src = dir.path().join("a/src.txt");
        // The build read "zero" (say), then the file was saved as "one" while it ran.
        let used = Digest::of_bytes(DigestFunction::Blake3, b"zero");
        tracker.learn(&WatchSet {
            files: vec!["a/src.txt".into()],
            listings: Vec::new(),
            digests: HashMap::from([("a/src.txt".to_string(), used)]),
        });
        assert_eq!(tracker.changed(&src).as_deref(), Some("a/src.txt"));
    }

    #[test]
    fn absolute_workspace_paths_are_tracked_and_a_directory_names_its_files() {
        let (dir, mut tracker) = setup();
        std::fs::write(dir.path().join("go.mod"), "module x\n").unwrap_or_else(|e| panic!("{e}"));
        let absolute = dir.path().join("go.mod").to_string_lossy().into_owned();
        tracker.learn(&WatchSet {
            files: vec![
                absolute,
                "/elsewhere/tool".into(),
                "a/BUILD".into(),
                "a/src.txt".into(),
            ],
            listings: Vec::new(),
            digests: HashMap::new(),
        });
        let go_mod = dir.path().join("go.mod");
        assert!(tracker.concerns(&go_mod));
        std::fs::write(&go_mod, "module y\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tracker.changed(&go_mod).as_deref(), Some("go.mod"));
        assert!(!tracker.concerns(Path::new("/elsewhere/tool")));
        assert_eq!(tracker.tracked_under(&dir.path().join("a")).len(), 2);
        let dirs: Vec<String> = tracker.dirs().into_iter().collect();
        assert_eq!(dirs, ["", "a"], "go.mod's and a's, not the host tool's");
        assert_eq!(tracker.tracked().len(), 3);
    }

    #[test]
    fn an_untracked_build_file_rewritten_unchanged_is_no_change() {
        let (dir, mut tracker) = setup();
        std::fs::write(dir.path().join("BUILD.bazel"), "# root\n")
            .unwrap_or_else(|e| panic!("{e}"));
        tracker.note_definitions_in(&BTreeSet::from([dir.path().to_path_buf()]));
        let root_build = dir.path().join("BUILD.bazel");
        std::fs::write(&root_build, "# root\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tracker.changed(&root_build), None);
        // Still known after the next round, which does not rest on it either.
        tracker.learn(&WatchSet {
            files: vec!["a/BUILD".into()],
            ..WatchSet::default()
        });
        assert_eq!(tracker.changed(&root_build), None);
        std::fs::write(&root_build, "# edited\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tracker.changed(&root_build).as_deref(), Some("BUILD.bazel"));
        assert!(!tracker.dirs().contains(""), "not watched for its own sake");
    }

    #[test]
    fn what_the_last_round_no_longer_rests_on_is_forgotten_but_kiln_toml_is_kept() {
        let (dir, mut tracker) = setup();
        std::fs::write(dir.path().join("kiln.toml"), "").unwrap_or_else(|e| panic!("{e}"));
        tracker.learn(&WatchSet {
            files: vec!["kiln.toml".into(), "a/BUILD".into()],
            ..WatchSet::default()
        });
        tracker.learn(&WatchSet {
            files: vec!["a/BUILD".into()],
            ..WatchSet::default()
        });
        let src = dir.path().join("a/src.txt");
        assert!(
            !tracker.concerns(&src),
            "the dropped source and the listing are forgotten"
        );
        assert!(tracker.concerns(&dir.path().join("kiln.toml")));
        let dirs: Vec<String> = tracker.dirs().into_iter().collect();
        assert_eq!(dirs, ["", "a"]);
    }

    #[test]
    fn a_deleted_file_is_a_change() {
        let (dir, mut tracker) = setup();
        let src = dir.path().join("a/src.txt");
        std::fs::remove_file(&src).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tracker.changed(&src).as_deref(), Some("a/src.txt"));
    }
}
