//! End-to-end harness around the real `kiln` binary: a temp workspace with its own temp cache,
//! `write`/`remove` files, run `kiln` with `--events` and read the events back.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub mod watch;

/// The result of one `kiln` invocation.
#[derive(Debug)]
pub struct Output {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Captured stdout.
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
    /// Events written through `--events` (empty for commands that do not take it).
    pub events: Vec<Value>,
}

impl Output {
    /// Panics with the command's output unless it exited with `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "unexpected exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Panics unless it exited with 0.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        self.expect_code(0)
    }

    /// `executed(&self.events)`.
    pub fn executed(&self) -> Vec<(String, String)> {
        executed(&self.events)
    }

    /// `summary(&self.events)`.
    pub fn summary(&self) -> Value {
        summary(&self.events)
    }
}

/// A temporary workspace with its own (or a shared) cache directory.
pub struct Workspace {
    root: PathBuf,
    cache: PathBuf,
    _dirs: Vec<tempfile::TempDir>,
}

/// Commands that accept `--events`.
const EVENT_COMMANDS: &[&str] = &["build", "test", "run"];

impl Workspace {
    /// An empty workspace (`kiln.toml` only) with its own cache.
    pub fn new() -> Workspace {
        let ws = tempfile::tempdir().expect("temp workspace");
        let cache = tempfile::tempdir().expect("temp cache");
        let root = ws.path().to_path_buf();
        let cache_path = cache.path().to_path_buf();
        std::fs::write(root.join("kiln.toml"), "").expect("write kiln.toml");
        Workspace {
            root,
            cache: cache_path,
            _dirs: vec![ws, cache],
        }
    }

    /// An empty workspace and its cache under `dir`, which is emptied first and left in place
    /// afterwards. For a workspace a test binary keeps in a `static`: statics are never dropped,
    /// so a `TempDir` there would leave a copy of the cache in the system temp directory per run.
    pub fn in_fixed_dir(dir: &Path) -> Workspace {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("empty {}: {e}", dir.display()),
        }
        let root = dir.join("workspace");
        let cache = dir.join("cache");
        for d in [&root, &cache] {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
        }
        std::fs::write(root.join("kiln.toml"), "").expect("write kiln.toml");
        Workspace {
            root,
            cache,
            _dirs: Vec::new(),
        }
    }

    /// An empty workspace sharing `other`'s cache directory.
    pub fn sharing_cache(other: &Workspace) -> Workspace {
        let ws = tempfile::tempdir().expect("temp workspace");
        let root = ws.path().to_path_buf();
        std::fs::write(root.join("kiln.toml"), "").expect("write kiln.toml");
        Workspace {
            root,
            cache: other.cache.clone(),
            _dirs: vec![ws],
        }
    }

    /// The workspace root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The cache directory.
    pub fn cache_dir(&self) -> &Path {
        &self.cache
    }

    /// Uses `other`'s cache from now on.
    pub fn share_cache_of(&mut self, other: &Workspace) {
        self.cache = other.cache.clone();
    }

    /// Writes `content` to `path` (relative to the root), creating directories.
    pub fn write(&self, path: &str, content: &str) -> &Self {
        let full = self.root.join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("create dirs");
        std::fs::write(&full, content).unwrap_or_else(|e| panic!("write {path}: {e}"));
        self
    }

    /// Removes a file (relative to the root).
    pub fn remove(&self, path: &str) {
        std::fs::remove_file(self.root.join(path)).unwrap_or_else(|e| panic!("remove {path}: {e}"));
    }

    /// Reads a file relative to the root.
    pub fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.root.join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
    }

    /// Reads `kiln-out/bin/<path>`.
    pub fn read_out(&self, path: &str) -> String {
        self.read(&format!("kiln-out/bin/{path}"))
    }

    /// The host path of `kiln-out/bin/<path>`.
    pub fn out_path(&self, path: &str) -> PathBuf {
        self.root.join("kiln-out/bin").join(path)
    }

    /// A `kiln` command in this workspace (no `--events`), for callers that need the process.
    pub fn command(&self, args: &[&str]) -> Command {
        #[allow(clippy::disallowed_methods)] // Tests drive the real binary.
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
        cmd.args(args)
            .current_dir(&self.root)
            .env("KILN_CACHE_DIR", &self.cache)
            .env_remove("KILN_REMOTE_CACHE")
            // The developer's own `go env -w` settings (GOFLAGS, GOPROXY) stay out of the tests;
            // a test about them names its own file.
            .env("GOENV", "off");
        cmd
    }

    /// Runs `kiln args...` (adding `--events` for build/test/run) and collects its output.
    pub fn kiln(&self, args: &[&str]) -> Output {
        let events_dir = tempfile::tempdir().expect("events dir");
        let events_path = events_dir.path().join("events.jsonl");
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        if all
            .first()
            .is_some_and(|c| EVENT_COMMANDS.contains(&c.as_str()))
        {
            let at = all.iter().position(|a| a == "--").unwrap_or(all.len());
            all.insert(at, format!("--events={}", events_path.display()));
        }
        let refs: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
        let out = self.command(&refs).output().expect("run kiln");
        let events = std::fs::read_to_string(&events_path)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event line {l}: {e}")))
            .collect();
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            events,
        }
    }

    /// `kiln build //...`, asserting success.
    #[track_caller]
    pub fn build_all(&self) -> Output {
        let out = self.kiln(&["build", "//..."]);
        out.ok();
        out
    }

    /// Copies the workspace's sources (everything but `kiln-out/`) to a new temp workspace with the
    /// given cache choice.
    pub fn copy_to(&self, share_cache: bool) -> Workspace {
        let ws = if share_cache {
            Workspace::sharing_cache(self)
        } else {
            Workspace::new()
        };
        copy_tree(&self.root, &ws.root);
        ws
    }

    /// Overwrites every CAS blob whose content is `content` with `replace(content)` (making the
    /// read-only blob writable first); returns how many blobs it changed.
    pub fn tamper_with_blobs(&self, content: &[u8], replace: impl Fn(&[u8]) -> Vec<u8>) -> usize {
        let mut changed = 0;
        for entry in walkdir::WalkDir::new(self.cache.join("cas"))
            .into_iter()
            .flatten()
        {
            let path = entry.path();
            if entry.file_type().is_file() && std::fs::read(path).expect("read blob") == content {
                let mut perms = std::fs::metadata(path)
                    .expect("blob metadata")
                    .permissions();
                #[allow(clippy::permissions_set_readonly_false)]
                perms.set_readonly(false);
                std::fs::set_permissions(path, perms).expect("make blob writable");
                std::fs::write(path, replace(content)).expect("overwrite blob");
                changed += 1;
            }
        }
        changed
    }

    /// Every file under `kiln-out/bin`, relative path → content.
    pub fn outputs(&self) -> std::collections::BTreeMap<String, Vec<u8>> {
        let mut map = std::collections::BTreeMap::new();
        let base = self.root.join("kiln-out/bin");
        for entry in walkdir::WalkDir::new(&base).into_iter().flatten() {
            if entry.file_type().is_file() {
                let rel = entry
                    .path()
                    .strip_prefix(&base)
                    .expect("prefix")
                    .to_string_lossy()
                    .into_owned();
                map.insert(rel, std::fs::read(entry.path()).expect("read output"));
            }
        }
        map
    }
}

impl Default for Workspace {
    fn default() -> Self {
        Workspace::new()
    }
}

/// Asserts that two checkouts' outputs (see [`Workspace::outputs`]) are the same files with the
/// same bytes, and that none names its own checkout or any of `also_absent` (identical is not
/// enough: both could embed a path that merely has the same length).
pub fn assert_identical_outputs(
    one: (&Workspace, &std::collections::BTreeMap<String, Vec<u8>>),
    two: (&Workspace, &std::collections::BTreeMap<String, Vec<u8>>),
    also_absent: &[&str],
) {
    let (a, b) = (one.1, two.1);
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (path, bytes) in a {
        assert!(
            bytes == &b[path],
            "{path} differs between the two checkouts"
        );
    }
    for (ws, outputs) in [one, two] {
        let checkout = ws.root().to_string_lossy().into_owned();
        for (path, bytes) in outputs {
            for leaked in std::iter::once(checkout.as_str()).chain(also_absent.iter().copied()) {
                assert!(
                    !bytes.windows(leaked.len()).any(|w| w == leaked.as_bytes()),
                    "{path} contains `{leaked}`"
                );
            }
        }
    }
}

/// Copies `from` into `to`, skipping `kiln-out/`.
pub fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from)
        .into_iter()
        .filter_entry(|e| e.file_name() != "kiln-out")
    {
        let entry = entry.expect("walk");
        let rel = entry.path().strip_prefix(from).expect("prefix");
        let dest = to.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&dest).expect("mkdir");
        } else if entry.file_type().is_file() {
            std::fs::copy(entry.path(), &dest).expect("copy");
        }
    }
}

/// The `(label, mnemonic)` of every executed action, sorted.
pub fn executed(events: &[Value]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["type"] == "action" && e["cache"] == "executed")
        .map(|e| {
            (
                e["label"].as_str().unwrap_or("").to_string(),
                e["mnemonic"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Labels of executed actions, sorted (mnemonics dropped).
pub fn executed_labels(events: &[Value]) -> Vec<String> {
    executed(events).into_iter().map(|(l, _)| l).collect()
}

/// The final summary event.
#[track_caller]
pub fn summary(events: &[Value]) -> Value {
    events
        .iter()
        .rev()
        .find(|e| e["type"] == "summary")
        .cloned()
        .expect("no summary event")
}

/// Test events.
pub fn tests(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["type"] == "test")
        .cloned()
        .collect()
}

/// (version, checksum) of a registry package as examples/rust/Cargo.lock pins it (so cargo's
/// cache is likely to hold it already).
pub fn examples_rust_pin(name: &str) -> (String, String) {
    let lock = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rust/Cargo.lock"),
    )
    .expect("examples/rust/Cargo.lock");
    let table: toml::Table = toml::from_str(&lock).expect("lock parses");
    let package = table["package"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("{name} is locked"));
    (
        package["version"].as_str().expect("version").to_string(),
        package["checksum"].as_str().expect("checksum").to_string(),
    )
}

/// A local TCP port nobody listens on (just now).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
