//! Source-file digests for one build: stat every file in parallel, trust the persistent memo when
//! the stat matches (the memo applies git's racy-clean rule), hash the rest.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kiln_cache::{Digest, DigestFunction, FileStat};
use rayon::prelude::*;

use crate::action_key::FileDigest;
use crate::repository::SourceRoots;

/// The persistent side of the memo (the workspace state).
pub trait DigestMemo: Sync {
    /// The digest recorded for `path` if `metadata` still matches and is not racy.
    fn lookup(
        &self,
        path: &str,
        metadata: &std::fs::Metadata,
        function: DigestFunction,
    ) -> Option<Digest>;
    /// Records a freshly computed digest.
    fn record(&self, path: &str, metadata: &std::fs::Metadata, digest: Digest);
    /// The digest recorded for `path` if `metadata` still matches, however recently it was
    /// recorded (racy or not): for a caller that replaces the file unless it holds other bytes,
    /// to which a file rewritten within the racy window is no different. `None` if unknown.
    fn recorded(
        &self,
        _path: &str,
        _metadata: &std::fs::Metadata,
        _function: DigestFunction,
    ) -> Option<Digest> {
        None
    }
}

/// Digests of the source files of a build.
pub struct SourceDigests<'a> {
    root: &'a Path,
    function: DigestFunction,
    memo: &'a dyn DigestMemo,
    log: Option<&'a Observations>,
    repos: Option<&'a SourceRoots>,
}

/// One workspace file's digest and the stat it was taken at (`None` if the file changed while it
/// was hashed), not yet logged.
pub struct Probe {
    /// The content digest and executable bit.
    pub file: FileDigest,
    /// The stat the digest belongs to.
    pub stat: Option<FileStat>,
}

/// Every file stat a build's decisions rested on (for the no-op check of the next build).
#[derive(Default)]
pub struct Observations {
    /// (path as digested, its stat when digested); `None` when it changed while being hashed.
    pub files: std::sync::Mutex<Vec<(String, Option<FileStat>)>>,
    /// The content digest the build used for each workspace file it digested (the last one).
    pub digests: std::sync::Mutex<HashMap<String, Digest>>,
    /// Files digested more than once with different contents during the build (an output it
    /// replaced, or a source edited while it ran).
    pub rewritten: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Host paths a decision rested on not existing (a `rust-toolchain.toml` rustup would read).
    pub absent: std::sync::Mutex<Vec<String>>,
    /// Environment variables a decision rested on, with the value read (`None`: unset).
    pub env: std::sync::Mutex<std::collections::BTreeMap<String, Option<String>>>,
}

impl Observations {
    /// Notes a stat a decision rested on (a directory of host tools, say).
    pub fn note_metadata(&self, path: &str, metadata: &std::fs::Metadata) {
        self.note(path, Some(FileStat::from_metadata(metadata)));
    }

    /// Notes that a decision rested on a host path (absolute): its stat if it exists, else that
    /// it does not (the no-op check then only asks whether it still does not, so that files
    /// coming and going beside it do not count as changes).
    pub fn note_host_path(&self, path: &Path) {
        match std::fs::metadata(path) {
            Ok(metadata) => self.note_metadata(&path.to_string_lossy(), &metadata),
            Err(_) => {
                if let Ok(mut absent) = self.absent.lock() {
                    absent.push(path.to_string_lossy().into_owned());
                }
            }
        }
    }

    /// Notes the digest of the content read at `path`; a second, different content read
    /// during the same build marks the path as rewritten (no no-op record can name it).
    pub fn note_content(&self, path: &str, digest: Digest) {
        let Ok(mut digests) = self.digests.lock() else {
            return;
        };
        let before = digests.insert(path.to_string(), digest);
        if before.is_some_and(|before| before != digest) {
            if let Ok(mut rewritten) = self.rewritten.lock() {
                rewritten.insert(path.to_string());
            }
        }
    }

    /// Notes that a decision rested on the environment variable `name` having `value`.
    pub fn note_env(&self, name: &str, value: Option<String>) {
        if let Ok(mut env) = self.env.lock() {
            env.insert(name.to_string(), value);
        }
    }

    fn note(&self, path: &str, stat: Option<FileStat>) {
        if let Ok(mut files) = self.files.lock() {
            files.push((path.to_string(), stat));
        }
    }
}

impl<'a> SourceDigests<'a> {
    /// Digests for files under `root`.
    pub fn new(root: &'a Path, function: DigestFunction, memo: &'a dyn DigestMemo) -> Self {
        SourceDigests {
            root,
            function,
            memo,
            log: None,
            repos: None,
        }
    }

    /// The same, noting every stat it relies on in `log`.
    pub fn logged(
        root: &'a Path,
        function: DigestFunction,
        memo: &'a dyn DigestMemo,
        log: &'a Observations,
    ) -> Self {
        SourceDigests {
            log: Some(log),
            ..SourceDigests::new(root, function, memo)
        }
    }

    /// Also digests files of the external repositories in `roots` (`external/<name>/...`). Their
    /// directories never change, so their stats are not logged for the no-op check, and the memo
    /// keys them by host path (one exec path may stand for another version's file next time).
    pub fn with_repositories(mut self, roots: &'a SourceRoots) -> Self {
        self.repos = Some(roots);
        self
    }

    /// The digest and executable bit of one workspace-relative file.
    pub fn digest(&self, path: &str) -> std::io::Result<FileDigest> {
        if let Some(roots) = self.repos.filter(|r| r.is_external(path)) {
            let host = roots.host_path(path);
            let metadata = std::fs::metadata(&host)?;
            let executable = metadata.permissions().mode() & 0o111 != 0;
            let key = host.to_string_lossy();
            if let Some(digest) = self.memo.lookup(&key, &metadata, self.function) {
                return Ok(FileDigest { digest, executable });
            }
            let digest = Digest::of_file(self.function, &host)?;
            self.memo.record(&key, &metadata, digest);
            return Ok(FileDigest { digest, executable });
        }
        let probe = self.probe(path)?;
        self.note_probe(path, &probe);
        Ok(probe.file)
    }

    /// The digest of one workspace file, with what [`Self::note_probe`] would log, without
    /// logging it: for a file the caller may be about to replace.
    pub fn probe(&self, path: &str) -> std::io::Result<Probe> {
        let host = self.root.join(path);
        let metadata = std::fs::metadata(&host)?;
        if !metadata.is_file() {
            return Err(std::io::Error::other(format!(
                "`{path}` is not a regular file"
            )));
        }
        let executable = metadata.permissions().mode() & 0o111 != 0;
        if let Some(digest) = self.memo.lookup(path, &metadata, self.function) {
            let stat = Some(FileStat::from_metadata(&metadata));
            let file = FileDigest { digest, executable };
            return Ok(Probe { file, stat });
        }
        let digest = Digest::of_file(self.function, &host)?;
        // Stat again: if the file changed while we hashed it, the memo must not vouch for it.
        let stable = std::fs::metadata(&host).is_ok_and(|after| same_stat(&metadata, &after));
        if stable {
            self.memo.record(path, &metadata, digest);
        }
        let stat = stable.then(|| FileStat::from_metadata(&metadata));
        let file = FileDigest { digest, executable };
        Ok(Probe { file, stat })
    }

    /// Whether the workspace file at `path` is known, without reading it, not to hold `file`:
    /// it is missing or of another length or mode, or the memo recorded other bytes for its
    /// exact stat. A file that may still hold `file` needs a [`Self::probe`] to tell. The memo
    /// is asked even for a racy entry (see [`DigestMemo::recorded`]): the answer only spares a
    /// caller about to replace the file the hashing of bytes it will not keep (an output
    /// `kiln-out/` received in the previous build, seconds ago, say).
    pub fn known_to_differ(&self, path: &str, file: &FileDigest) -> bool {
        let Ok(metadata) = std::fs::metadata(self.root.join(path)) else {
            return true;
        };
        let executable = metadata.permissions().mode() & 0o111 != 0;
        if !metadata.is_file()
            || metadata.len() != file.digest.size
            || executable != file.executable
        {
            return true;
        }
        self.memo
            .recorded(path, &metadata, self.function)
            .is_some_and(|recorded| recorded != file.digest)
    }

    /// Logs `path`, which this build has just written as a verified copy of `file`, as
    /// [`Self::digest`] would, without hashing it again. Its stat goes into the memo with that
    /// digest; being as young as the recording, it is racy there (see `file_memo`), so the memo
    /// does not vouch for it until a later build has hashed it, just as after `digest`.
    pub fn note_written(&self, path: &str, file: FileDigest) -> std::io::Result<()> {
        let metadata = std::fs::metadata(self.root.join(path))?;
        self.memo.record(path, &metadata, file.digest);
        let stat = Some(FileStat::from_metadata(&metadata));
        self.note_probe(path, &Probe { file, stat });
        Ok(())
    }

    /// Logs a probe of `path` as something the build rests on.
    pub fn note_probe(&self, path: &str, probe: &Probe) {
        if let Some(log) = self.log {
            log.note(path, probe.stat);
        }
        self.note_digest(path, probe.file.digest);
    }

    fn note_digest(&self, path: &str, digest: Digest) {
        if let Some(log) = self.log {
            log.note_content(path, digest);
        }
    }

    /// Digests of many files, in parallel; the error names the file.
    pub fn digest_all(&self, paths: &[String]) -> Result<HashMap<String, FileDigest>, String> {
        paths
            .par_iter()
            .map(|path| {
                self.digest(path)
                    .map(|d| (path.clone(), d))
                    .map_err(|e| format!("Cannot read source file `{path}`: {e}"))
            })
            .collect()
    }
}

fn same_stat(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev()
        && a.ino() == b.ino()
        && a.size() == b.size()
        && a.mtime() == b.mtime()
        && a.mtime_nsec() == b.mtime_nsec()
        && a.ctime() == b.ctime()
        && a.ctime_nsec() == b.ctime_nsec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A memo that records everything and vouches for nothing (every entry racy), like one
    /// holding the outputs a build wrote a moment ago.
    #[derive(Default)]
    struct RacyMemo(std::sync::Mutex<HashMap<String, (FileStat, Digest)>>);

    impl DigestMemo for RacyMemo {
        fn lookup(&self, _: &str, _: &std::fs::Metadata, _: DigestFunction) -> Option<Digest> {
            None
        }
        fn record(&self, path: &str, metadata: &std::fs::Metadata, digest: Digest) {
            let stat = FileStat::from_metadata(metadata);
            self.0.lock().unwrap().insert(path.into(), (stat, digest));
        }
        fn recorded(
            &self,
            path: &str,
            metadata: &std::fs::Metadata,
            _: DigestFunction,
        ) -> Option<Digest> {
            let entries = self.0.lock().unwrap();
            let (stat, digest) = entries.get(path)?;
            (*stat == FileStat::from_metadata(metadata)).then_some(*digest)
        }
    }

    fn file(bytes: &[u8], executable: bool) -> FileDigest {
        FileDigest {
            digest: Digest::of_bytes(DigestFunction::Blake3, bytes),
            executable,
        }
    }

    #[test]
    fn known_to_differ_only_when_no_read_could_show_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let memo = RacyMemo::default();
        let sources = SourceDigests::new(dir.path(), DigestFunction::Blake3, &memo);
        let path = "kiln-out/tool";
        let new = file(b"new binary", true);
        // Missing: nothing to read.
        assert!(sources.known_to_differ(path, &new));
        std::fs::create_dir_all(dir.path().join("kiln-out")).unwrap();
        let host = dir.path().join(path);
        std::fs::write(&host, b"old binary").unwrap();
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Same length and mode, nothing recorded: only reading it can tell.
        assert!(!sources.known_to_differ(path, &new));
        // Recorded (however recently) with other bytes at this very stat: differs.
        sources
            .note_written(path, file(b"old binary", true))
            .unwrap();
        assert!(sources.known_to_differ(path, &new));
        // Recorded with these bytes: a read must confirm it (a racy entry vouches for nothing).
        assert!(!sources.known_to_differ(path, &file(b"old binary", true)));
        // Rewritten since (another stat): the record no longer speaks for it. (A rewrite
        // within one timestamp tick keeps the stat, and then counts as differing, which only
        // means it is replaced by the bytes it holds.)
        std::fs::write(&host, b"new binary").unwrap();
        let earlier = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1 << 30);
        std::fs::File::options()
            .write(true)
            .open(&host)
            .unwrap()
            .set_modified(earlier)
            .unwrap();
        assert!(!sources.known_to_differ(path, &new));
        // Another length, or another mode: differs.
        assert!(sources.known_to_differ(path, &file(b"a longer new binary", true)));
        assert!(sources.known_to_differ(path, &file(b"new binary", false)));
    }
}
