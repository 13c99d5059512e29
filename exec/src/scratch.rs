//! The per-action scratch directory and its layout; removed when its owner is dropped.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::ExecError;

/// Owns a scratch directory: dropping it removes the directory and everything in it
/// (the staged exec root, the outputs, the private `/tmp`).
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
    keep: bool,
}

impl Scratch {
    /// Creates `path` (and parents); fails if it exists and is not empty.
    pub(crate) fn create(path: &Path) -> Result<Scratch, ExecError> {
        match fs::read_dir(path) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(ExecError::ScratchNotEmpty { path: path.into() });
                }
            }
            Err(_) => fs::create_dir_all(path)
                .map_err(|e| ExecError::io("create scratch directory", path, e))?,
        }
        Ok(Scratch {
            path: path.into(),
            keep: false,
        })
    }

    /// The scratch directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Host directory staged as the exec root.
    pub fn exec_root(&self) -> PathBuf {
        self.path.join("root")
    }

    /// Host directory that is the action's `TMPDIR`.
    pub(crate) fn tmp(&self) -> PathBuf {
        self.path.join("tmp")
    }

    /// Empty directory the helper mounts the sandbox root on.
    pub(crate) fn new_root(&self) -> PathBuf {
        self.path.join("sysroot")
    }

    /// The helper's request file.
    pub(crate) fn request_file(&self) -> PathBuf {
        self.path.join("request.json")
    }

    /// The helper's result file.
    pub(crate) fn result_file(&self) -> PathBuf {
        self.path.join("result.json")
    }

    /// Keeps the directory on disk (e.g. for debugging a failed action) and returns its path.
    pub fn keep(mut self) -> PathBuf {
        self.keep = true;
        self.path.clone()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.keep || fs::remove_dir_all(&self.path).is_ok() {
            return;
        }
        // An action may have left read-only directories behind: make them writable, retry.
        make_dirs_writable(&self.path);
        let _ = fs::remove_dir_all(&self.path);
    }
}

fn make_dirs_writable(dir: &Path) {
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            make_dirs_writable(&entry.path());
        }
    }
}
