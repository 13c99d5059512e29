//! The per-action scratch directory and its layout; removed when its owner is dropped.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::reaper::Reaper;
use crate::ExecError;

/// Owns a scratch directory: dropping it removes the directory and everything in it
/// (the staged exec root, the outputs, the private `/tmp`), through the sandbox's
/// [`Reaper`]: on a background thread, finished before the sandbox and the last scratch it
/// made are both dropped.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
    /// The request's output files directory, removed with the tree.
    output_files: Option<PathBuf>,
    keep: bool,
    reaper: Arc<Reaper>,
}

impl Scratch {
    /// Creates `path` (and parents); fails if it exists and is not empty. `reaper` removes it
    /// when it is dropped.
    pub(crate) fn create(path: &Path, reaper: Arc<Reaper>) -> Result<Scratch, ExecError> {
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
            output_files: None,
            keep: false,
            reaper,
        })
    }

    /// Removes `dir` (an output files directory, see
    /// [`crate::SandboxRequest::output_files_dir`]) with the tree.
    pub(crate) fn also_remove(&mut self, dir: PathBuf) {
        self.output_files = Some(dir);
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
        if !self.keep {
            self.reaper.remove(std::mem::take(&mut self.path));
            if let Some(dir) = self.output_files.take() {
                self.reaper.remove(dir);
            }
        }
    }
}
