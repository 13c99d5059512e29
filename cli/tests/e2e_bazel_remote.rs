//! Real Bazel (Debian's `bazel-bootstrap`, 4.2.3) against the real `kiln serve`: a genrule
//! workspace builds with `--remote_cache=grpc://…`, then after `bazel clean --expunge` a rebuild
//! runs no action at all — every one is a remote cache hit — and produces the same outputs.
//! The server then stops cleanly on SIGTERM. Also: `kiln serve`'s command-line errors.

mod harness;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::free_port;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bazel_parity")
}

/// `kiln serve` as a child process; killed if the test fails before stopping it.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(dir: &Path, port: u16) -> Serve {
    #[allow(clippy::disallowed_methods)] // The binary under test.
    let child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["serve", "--addr"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--dir")
        .arg(dir)
        .args(["--allow-anonymous", "write", "--max-size", "1G"])
        // Its log goes to the test's stderr: a pipe nobody read could fill up and stall it.
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start kiln serve");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "kiln serve did not start listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Serve(child)
}

/// Runs `bazel --batch <args>` in `ws`, returning its stderr; panics on failure.
fn bazel(ws: &Path, user_root: &Path, args: &[&str]) -> String {
    #[allow(clippy::disallowed_methods)] // Runs the reference client, not part of Kiln.
    let out = Command::new("bazel")
        .arg("--batch")
        .arg(format!("--output_user_root={}", user_root.display()))
        .args(args)
        .current_dir(ws)
        .output()
        .expect("bazel on PATH (Debian's bazel-bootstrap)");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "bazel {args:?} failed:\n{stderr}");
    stderr
}

/// The `INFO: N processes: …` breakdown as (kind, count) pairs.
fn processes(stderr: &str) -> BTreeMap<String, u64> {
    let line = stderr
        .lines()
        .find(|l| l.contains(" processes: ") || l.contains(" process: "))
        .unwrap_or_else(|| panic!("no process summary in:\n{stderr}"));
    let list = line.split_once(": ").unwrap().1.split_once(": ").unwrap().1;
    list.trim_end_matches('.')
        .split(", ")
        .map(|part| {
            let (n, kind) = part.split_once(' ').unwrap();
            (kind.to_string(), n.parse().unwrap())
        })
        .collect()
}

fn outputs(ws: &Path) -> BTreeMap<String, Vec<u8>> {
    let bin = ws.join("bazel-bin");
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(bin.join("text"))
        .into_iter()
        .flatten()
    {
        if entry.file_type().is_file() {
            let rel = entry
                .path()
                .strip_prefix(&bin)
                .unwrap()
                .display()
                .to_string();
            out.insert(rel, std::fs::read(entry.path()).unwrap());
        }
    }
    out
}

#[test]
fn bazel_rebuild_after_clean_expunge_is_all_remote_cache_hits() {
    let cache = tempfile::tempdir().unwrap();
    let ws = tempfile::tempdir().unwrap();
    let user_root = tempfile::tempdir().unwrap();
    harness::copy_tree(&fixture(), ws.path());
    let _ = std::fs::remove_file(ws.path().join("kiln.toml"));
    let port = free_port();
    let mut server = start_server(cache.path(), port);
    let remote = format!("--remote_cache=grpc://127.0.0.1:{port}");

    let first = bazel(ws.path(), user_root.path(), &["build", "//...", &remote]);
    let ran = processes(&first);
    assert!(!ran.contains_key("remote cache hit"), "{first}");
    let built = outputs(ws.path());
    assert!(!built.is_empty());

    bazel(ws.path(), user_root.path(), &["clean", "--expunge"]);
    let second = bazel(ws.path(), user_root.path(), &["build", "//...", &remote]);
    let hits = processes(&second);
    let executed: Vec<_> = hits
        .iter()
        .filter(|(kind, _)| *kind != "internal" && *kind != "remote cache hit")
        .collect();
    assert!(executed.is_empty(), "actions ran locally:\n{second}");
    let first_actions: u64 = ran
        .iter()
        .filter(|(k, _)| *k != "internal")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        hits.get("remote cache hit"),
        Some(&first_actions),
        "{second}"
    );
    assert_eq!(outputs(ws.path()), built);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = server.0.wait().unwrap();
    assert!(status.success(), "kiln serve exited with {status}");
}

#[test]
fn serve_refuses_an_open_cache_unless_asked_and_reports_bad_token_files() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        #[allow(clippy::disallowed_methods)] // The binary under test.
        let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["serve", "--addr", "127.0.0.1:0", "--dir"])
            .arg(dir.path().join("cache"))
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("needs `--tokens FILE`"), "{stderr}");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "good rw\nbad-line\n").unwrap();
    let (code, stderr) = run(&["--tokens", tokens.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("tokens:2: expected `<token> ro|rw`, found `bad-line`"),
        "{stderr}"
    );
    let (code, stderr) = run(&["--allow-anonymous", "read", "--max-size", "lots"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--max-size"), "{stderr}");
}
