//! The scratch directories this process owns while it holds a workspace's build lock, so that
//! Ctrl-C can remove them before exiting.
//!
//! The next build of the workspace clears a killed build's scratch trees anyway, but a tree on
//! `/dev/shm` holds memory until then, and a workspace may never be built again (a deleted
//! checkout, a test's temporary workspace). Only the holder of the build lock claims them: a
//! kiln that is still waiting for another's lock must not remove what that one is using.

use std::path::PathBuf;
use std::sync::Mutex;

/// The directories claimed now, by every live [`ScratchClaim`].
static CLAIMED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The claim on a workspace's scratch directories; dropping it gives them up.
#[derive(Debug)]
pub struct ScratchClaim {
    dirs: Vec<PathBuf>,
}

/// Claims `dirs` until the returned value is dropped. Call it only while holding the build lock
/// of the workspace they belong to.
pub fn claim(dirs: Vec<PathBuf>) -> ScratchClaim {
    claimed().extend(dirs.iter().cloned());
    ScratchClaim { dirs }
}

impl Drop for ScratchClaim {
    fn drop(&mut self) {
        let mut claimed = claimed();
        for dir in &self.dirs {
            if let Some(at) = claimed.iter().position(|d| d == dir) {
                claimed.remove(at);
            }
        }
    }
}

/// Removes every claimed directory, as far as it can (an action still dying may hold files in
/// it for a moment; whatever is left the next build clears). For the Ctrl-C handler, right
/// before the process exits: the claims stay, since nothing runs after it.
pub fn remove_claimed() {
    let dirs = claimed().clone();
    for dir in dirs {
        let _ = kiln_graph::engine::remove_tree(&dir);
    }
}

fn claimed() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    CLAIMED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_lasts_until_dropped_and_removal_takes_only_claimed_dirs() {
        let root = tempfile::tempdir().unwrap();
        let claimed_dir = root.path().join("claimed");
        let released_dir = root.path().join("released");
        for dir in [&claimed_dir, &released_dir] {
            std::fs::create_dir_all(dir.join("tree/deep")).unwrap();
            std::fs::write(dir.join("tree/deep/file"), b"x").unwrap();
        }
        let _kept = claim(vec![claimed_dir.clone()]);
        drop(claim(vec![released_dir.clone()]));
        remove_claimed();
        assert!(!claimed_dir.exists(), "a claimed directory is removed");
        assert!(released_dir.exists(), "a released claim removes nothing");
    }
}
