//! Copying a downloaded tree (a module, an SDK) into Kiln's store with the file modes the store
//! wants: module zips carry no modes, so the caller decides each file's.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Copies the directories and regular files under `from` to `to` (a symlink to a file as the
/// file, as Go reads it and as `dirhash` hashes it); directories get 0755, each file the mode
/// `file_mode` gives for its path relative to `from`.
pub fn copy_tree(from: &Path, to: &Path, file_mode: impl Fn(&Path) -> u32) -> std::io::Result<()> {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.map_err(std::io::Error::other)?;
        let rel = entry
            .path()
            .strip_prefix(from)
            .map_err(std::io::Error::other)?;
        let dest = to.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&dest)?;
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))?;
        } else if entry.file_type().is_file()
            || std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file())
        {
            std::fs::copy(entry.path(), &dest)?;
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(file_mode(rel)))?;
        }
    }
    Ok(())
}
