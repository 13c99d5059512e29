//! A running `kiln watch` for the end-to-end tests: started as a subprocess with `--events`,
//! read back through its events file, with waits that poll under generous deadlines (nothing
//! here times anything).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{copy_tree, Workspace};

/// How long any one expected event may take on a loaded CI machine.
pub const DEADLINE: Duration = Duration::from_secs(120);
/// How long to watch for an event that must not come.
pub const QUIET: Duration = Duration::from_millis(1500);

/// A running `kiln watch`.
pub struct Watch {
    child: Child,
    events: PathBuf,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Watch {
    /// Starts `kiln watch args...` in `ws` (`--events` is added before any `--`).
    pub fn start(ws: &Workspace, args: &[&str]) -> Watch {
        Self::start_wrapped(ws, args, None)
    }

    /// Starts `kiln watch args...` in a user namespace of its own, after running the shell
    /// command `setup` there (e.g. lowering `/proc/sys/user/max_inotify_watches`, which only
    /// binds that namespace).
    pub fn start_in_user_namespace(ws: &Workspace, args: &[&str], setup: &str) -> Watch {
        Self::start_wrapped(ws, args, Some(setup))
    }

    fn start_wrapped(ws: &Workspace, args: &[&str], setup: Option<&str>) -> Watch {
        let dir = tempfile::tempdir().expect("temp dir");
        let events = dir.path().join("events.jsonl");
        let stderr = dir.path().join("stderr.txt");
        let mut all = vec!["watch".to_string()];
        let split = args.iter().position(|a| *a == "--").unwrap_or(args.len());
        all.extend(args[..split].iter().map(|s| s.to_string()));
        all.push(format!("--events={}", events.display()));
        all.extend(args[split..].iter().map(|s| s.to_string()));
        let refs: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
        let mut command = ws.command(&refs);
        if let Some(setup) = setup {
            #[allow(clippy::disallowed_methods)] // Tests drive the real binary.
            let mut wrapped = Command::new("unshare");
            wrapped
                .args([
                    "-U",
                    "-r",
                    "sh",
                    "-c",
                    &format!("{setup} && exec \"$0\" \"$@\""),
                ])
                .arg(command.get_program())
                .args(command.get_args())
                .current_dir(ws.root())
                .envs(
                    command
                        .get_envs()
                        .filter_map(|(k, v)| v.map(|v| (k.to_os_string(), v.to_os_string()))),
                )
                .env_remove("KILN_REMOTE_CACHE");
            command = wrapped;
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("start kiln watch");
        Watch {
            child,
            events,
            stderr,
            _dir: dir,
        }
    }

    pub fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.events)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn rounds_done(&self) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["type"] == "watch_round_done")
            .collect()
    }

    /// Waits until round `n` has finished and returns its summary event.
    #[track_caller]
    pub fn wait_round(&self, n: u64) -> Value {
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            if let Some(done) = self.rounds_done().into_iter().find(|e| e["round"] == n) {
                return done;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("round {n} did not finish\nstderr:\n{}", self.stderr());
    }

    /// Asserts that no round after `n` starts within [`QUIET`].
    #[track_caller]
    pub fn assert_no_round_after(&self, n: u64) {
        std::thread::sleep(QUIET);
        let later: Vec<Value> = self
            .events()
            .into_iter()
            .filter(|e| e["type"] == "watch_round" && e["round"].as_u64() > Some(n))
            .collect();
        assert!(
            later.is_empty(),
            "unexpected round(s): {later:?}\nstderr:\n{}",
            self.stderr()
        );
    }

    /// Waits until an action of round `n` has started.
    #[track_caller]
    pub fn wait_action_started(&self, n: u64) {
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            let events = self.events();
            if let Some(at) = events
                .iter()
                .position(|e| e["type"] == "watch_round" && e["round"] == n)
            {
                if events[at..].iter().any(|e| e["type"] == "action_started") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no action of round {n} started\nstderr:\n{}", self.stderr());
    }

    pub fn interrupt(&mut self) -> i32 {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code().unwrap_or(-1);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("kiln watch did not stop on SIGINT\n{}", self.stderr());
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn executed(done: &Value) -> Vec<String> {
    let mut names: Vec<String> = done["executed"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

pub fn examples() -> Workspace {
    let ws = Workspace::new();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    copy_tree(&examples, ws.root());
    // The Go, Rust and mixed examples (their first builds compile the standard library, fetch
    // modules and crates) are covered by e2e_go.rs, e2e_rust*.rs and e2e_mixed.rs; these tests
    // are about watching, and `test //...` must stay quick. Their kiln.toml sections are harmless
    // without them.
    for language in ["go", "rust", "mixed"] {
        std::fs::remove_dir_all(ws.root().join(language)).expect("remove a language example");
    }
    ws
}

/// Writes `path` the way editors do: a temp file in the same directory, renamed over the target.
pub fn save_by_rename(ws: &Workspace, path: &str, content: &str) {
    let target = ws.root().join(path);
    let temp = target.with_file_name(".kiln-watch-test.tmp");
    std::fs::write(&temp, content).expect("write temp");
    std::fs::rename(&temp, &target).expect("rename over");
}
