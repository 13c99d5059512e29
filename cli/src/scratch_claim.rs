//! The memory-backed scratch directory of the workspace whose build lock this process holds, so
//! that Ctrl-C does not leave it on `/dev/shm`.
//!
//! On Ctrl-C Kiln exits at once with code 8, and its running actions die with it. Their trees
//! cannot be removed before that: a running action sees its tree through a bind mount (or as
//! its working directory), and deleting files there could let it succeed on missing inputs and
//! have its result stored. So the handler only renames the directory out of the way
//! (`<dir>.interrupted-<pid>`, on the same file system). A rename takes no time and leaves a
//! running action's view alone. Before it, the handler tells the engine to store no more
//! results (`kiln_graph::stopping`): an action the process finishes in the moment before it
//! exits may have been staged into, or collected from, a moved or half-recreated tree, so it is
//! reported cancelled and not cached. A tree recreated in that moment stays for the
//! workspace's next build to clear, as every tree did before. The next kiln to take a build
//! lock, in any workspace, removes the directories set aside whose process is gone
//! ([`sweep_interrupted`]). Without this, the tree stayed until the next build of the same
//! workspace, holding memory, and a workspace may never be built again (a deleted checkout, a
//! test's temporary workspace).
//!
//! Only the holder of the build lock claims the directory: a kiln still waiting for another's
//! lock must not move what that one is using. The on-disk scratch directory is left to the
//! workspace's next build, as before: it holds no memory.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// What a directory set aside by an interrupted build has after its name, before the pid.
const INTERRUPTED_SUFFIX: &str = ".interrupted-";

/// The directories claimed now, by every live [`ScratchClaim`].
static CLAIMED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The claim on a workspace's memory scratch directory; dropping it gives it up.
#[derive(Debug)]
pub struct ScratchClaim {
    dir: Option<PathBuf>,
}

/// Claims `dir` until the returned value is dropped. Call it only while holding the build lock
/// of the workspace it belongs to.
pub fn claim(dir: Option<PathBuf>) -> ScratchClaim {
    if let Some(dir) = &dir {
        claimed().push(dir.clone());
    }
    ScratchClaim { dir }
}

impl Drop for ScratchClaim {
    fn drop(&mut self) {
        let Some(dir) = &self.dir else {
            return;
        };
        let mut claimed = claimed();
        if let Some(at) = claimed.iter().position(|d| d == dir) {
            claimed.remove(at);
        }
    }
}

/// For the Ctrl-C handler: renames every claimed directory out of the way, then exits with
/// `code`. The claims stay locked until the process is gone, so no claim is dropped (and no
/// build lock released by this process) in between.
pub fn set_aside_claimed_and_exit(code: i32) -> ! {
    // First: an action finishing from now on must not be stored (its tree may be moved under it).
    kiln_graph::stopping::stop_storing_results();
    let claimed = claimed();
    for dir in claimed.iter() {
        set_aside(dir);
    }
    std::process::exit(code)
}

/// Renames `dir` to its interrupted name if it is a directory of ours.
fn set_aside(dir: &Path) {
    if !is_ours(dir) {
        return;
    }
    let mut name = dir.as_os_str().to_owned();
    name.push(format!("{INTERRUPTED_SUFFIX}{}", std::process::id()));
    let _ = std::fs::rename(dir, PathBuf::from(name));
}

/// Removes the directories beside `memory_scratch` (same parent, same `kiln-<uid>-` prefix)
/// that an interrupted kiln set aside and whose process is gone. Cheap: one listing of the
/// parent. Errors are ignored (another kiln may be sweeping too).
pub fn sweep_interrupted(memory_scratch: &Path) {
    let (Some(parent), Some(name)) = (memory_scratch.parent(), memory_scratch.file_name()) else {
        return;
    };
    let name = name.to_string_lossy();
    // `kiln-<uid>-<id>`: the prefix up to the id names this user's directories.
    let Some(prefix) = name.rfind('-').map(|at| &name[..=at]) else {
        return;
    };
    for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        let entry_name = entry.file_name().to_string_lossy().to_string();
        let Some(pid) = interrupted_pid(&entry_name, prefix) else {
            continue;
        };
        if !process_alive(pid) && is_ours(&entry.path()) {
            let _ = kiln_graph::engine::remove_tree(&entry.path());
        }
    }
}

/// The pid in `name` if it is exactly `<prefix><id>.interrupted-<pid>`, with an id of 16
/// lowercase hex digits (as `Workspace::memory_scratch_dir` names them) and a positive pid
/// written in plain digits.
fn interrupted_pid(name: &str, prefix: &str) -> Option<i32> {
    let rest = name.strip_prefix(prefix)?;
    let (id, pid) = rest.split_once(INTERRUPTED_SUFFIX)?;
    let hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
    if id.len() != 16 || !id.chars().all(hex) || !pid.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    pid.parse::<i32>().ok().filter(|&pid| pid > 0)
}

/// Whether a process with this pid exists (one of another user's counts as alive).
fn process_alive(pid: i32) -> bool {
    use nix::errno::Errno;
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(_) => true,
    }
}

/// Whether `path` is a real directory (not a symlink) owned by this process's user.
fn is_ours(path: &Path) -> bool {
    std::fs::symlink_metadata(path)
        .is_ok_and(|m| m.is_dir() && m.uid() == nix::unistd::geteuid().as_raw())
}

fn claimed() -> MutexGuard<'static, Vec<PathBuf>> {
    CLAIMED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_lasts_until_dropped() {
        let root = tempfile::tempdir().unwrap();
        let kept = root.path().join("kept");
        let released = root.path().join("released");
        let _kept = claim(Some(kept.clone()));
        drop(claim(Some(released.clone())));
        let claimed = claimed().clone();
        assert!(claimed.contains(&kept));
        assert!(!claimed.contains(&released));
    }

    #[test]
    fn the_sweep_removes_set_aside_directories_of_gone_processes_only() {
        let root = tempfile::tempdir().unwrap();
        let scratch = root.path().join("kiln-7-aaaaaaaaaaaaaaaa");
        // The first pid cannot exist (it is above the kernel's maximum); the second is ours.
        let gone = root
            .path()
            .join("kiln-7-bbbbbbbbbbbbbbbb.interrupted-2147483647");
        let running = root.path().join(format!(
            "kiln-7-cccccccccccccccc.interrupted-{}",
            std::process::id()
        ));
        let other_user = root
            .path()
            .join("kiln-8-dddddddddddddddd.interrupted-2147483647");
        let live = root.path().join("kiln-7-eeeeeeeeeeeeeeee");
        for dir in [&scratch, &gone, &running, &other_user, &live] {
            std::fs::create_dir_all(dir.join("tree")).unwrap();
            std::fs::write(dir.join("tree/file"), b"x").unwrap();
        }
        sweep_interrupted(&scratch);
        assert!(!gone.exists(), "its process is gone");
        assert!(running.exists(), "its process still runs");
        assert!(other_user.exists(), "another uid's prefix");
        assert!(live.exists() && scratch.exists(), "not set aside");
    }

    #[test]
    fn only_exact_interrupted_names_parse() {
        let id = "0123456789abcdef";
        let name = |rest: &str| format!("kiln-0-{id}{rest}");
        assert_eq!(
            interrupted_pid(&name(".interrupted-42"), "kiln-0-"),
            Some(42)
        );
        for rest in [
            "",
            ".interrupted-x",
            ".interrupted-+5",
            ".interrupted-0",
            ".interrupted--5",
        ] {
            assert_eq!(interrupted_pid(&name(rest), "kiln-0-"), None, "{rest}");
        }
        for other in [
            "kiln-1-0123456789abcdef.interrupted-42",
            "kiln-0-0123.interrupted-42",
            "kiln-0-0123456789ABCDEF.interrupted-42",
        ] {
            assert_eq!(interrupted_pid(other, "kiln-0-"), None, "{other}");
        }
    }
}
