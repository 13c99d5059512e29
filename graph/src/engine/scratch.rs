//! Scratch trees: clearing what a killed build left, and removing trees with read-only parts.

use std::path::Path;

/// Removes scratch trees a killed build left behind (the build lock is held, so none is in use).
pub(super) fn clear_scratch(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let _ = remove_tree(&entry.path());
    }
}

/// Creates `dir` for scratch trees if it can be used: on a directory shared by every user such
/// as `/dev/shm`, only a real directory owned by us will do.
pub(super) fn private_dir(dir: &Path) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    std::fs::create_dir_all(dir).ok()?;
    let meta = std::fs::symlink_metadata(dir).ok()?;
    // Ours if its owner is the owner of a file we create in it (our effective uid).
    let probe = dir.join(".probe");
    std::fs::write(&probe, b"").ok()?;
    let ours = std::fs::metadata(&probe).map(|m| m.uid()).ok();
    let _ = std::fs::remove_file(&probe);
    (meta.is_dir() && ours == Some(meta.uid())).then(|| dir.to_path_buf())
}

/// The most input bytes an action may have to stage on the memory file system at `dir`: up to
/// [`MEMORY_SCRATCH_MAX`], and at most an eighth of the free space per concurrent job, so that
/// `jobs` staged trees and their outputs fit even on a small `/dev/shm` (64 MiB in containers),
/// with room for as many again whose outputs are still being stored while the next ones run.
pub(super) fn memory_scratch_limit(dir: &Path, jobs: usize) -> u64 {
    let Ok(stat) = nix::sys::statvfs::statvfs(dir) else {
        return 0;
    };
    // The field types differ between platforms (u32 on some 32-bit libcs).
    #[allow(clippy::unnecessary_cast)]
    let free = (stat.blocks_available() as u64).saturating_mul(stat.fragment_size() as u64);
    (free / 8 / jobs.max(1) as u64).min(MEMORY_SCRATCH_MAX)
}

/// Inputs up to this size stage on the memory file system (copied, since hard links cannot
/// cross file systems). Copying tens of megabytes there costs less than creating and removing
/// hundreds of hard links and directories on a disk file system: a Go link of ~500 archives
/// spent 1–2 s of wall time per action on those under load (docs/benchmarks.md).
pub(super) const MEMORY_SCRATCH_MAX: u64 = 256 << 20;

/// Removes a directory tree, first making read-only directories in it writable (actions and
/// the CAS leave some behind).
pub fn remove_tree(path: &Path) -> std::io::Result<()> {
    if std::fs::remove_dir_all(path).is_ok() || !path.exists() {
        return Ok(());
    }
    make_writable(path);
    std::fs::remove_dir_all(path)
}

fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            make_writable(&entry.path());
        }
    }
}
