//! Builds the staged exec root in `scratch/root`: inputs, parent directories of outputs,
//! output directories and the working directory.
//!
//! An input is hard-linked from its source when that cannot change the source: in
//! namespaces mode the inputs are read-only mounts, so a link is safe whenever the source
//! already has the right executable bits. In plain mode nothing stops the action (least of
//! all as root) from writing through a link, so inputs are copied (`copy_file_range`, which
//! reflinks on file systems that can) and made read-only (0444 / 0555).

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::{ExecError, InputFile, SandboxRequest};

/// How inputs get into the staged tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Staging {
    /// Hard link when the mode bits fit, else copy.
    LinkWhenSafe,
    /// Always copy.
    Copy,
}

/// Stages `req` under `root` (which must exist) and creates `tmp`.
pub(crate) fn stage(
    root: &Path,
    tmp: &Path,
    req: &SandboxRequest,
    how: Staging,
) -> Result<(), ExecError> {
    let mut dirs = Dirs {
        root,
        made: HashSet::new(),
    };
    for dir in [root, tmp] {
        fs::create_dir_all(dir).map_err(|e| ExecError::io("create directory", dir, e))?;
    }
    for input in &req.inputs {
        dirs.parent_of(&input.path)?;
        stage_input(&root.join(&input.path), input, how)?;
    }
    for dir in req.input_dirs.iter().chain(&req.output_dirs) {
        dirs.dir(dir)?;
    }
    for out in &req.outputs {
        dirs.parent_of(out)?;
    }
    if !req.working_directory.is_empty() {
        dirs.dir(&req.working_directory)?;
    }
    Ok(())
}

fn stage_input(dest: &Path, input: &InputFile, how: Staging) -> Result<(), ExecError> {
    let err = |source| ExecError::Stage {
        path: input.path.clone(),
        source_path: input.source.clone(),
        source,
    };
    if how == Staging::LinkWhenSafe {
        let meta = fs::metadata(&input.source).map_err(err)?;
        let executable = meta.permissions().mode() & 0o111 != 0;
        // EXDEV (other file system) or any other link failure: fall through to a copy.
        if executable == input.executable && fs::hard_link(&input.source, dest).is_ok() {
            return Ok(());
        }
    }
    fs::copy(&input.source, dest).map_err(err)?;
    let mode = if input.executable { 0o555 } else { 0o444 };
    fs::set_permissions(dest, fs::Permissions::from_mode(mode)).map_err(err)
}

/// Creates directories under the root, remembering which exist to save syscalls.
struct Dirs<'a> {
    root: &'a Path,
    made: HashSet<PathBuf>,
}

impl Dirs<'_> {
    fn parent_of(&mut self, rel: &str) -> Result<(), ExecError> {
        match rel.rfind('/') {
            Some(i) => self.dir(&rel[..i]),
            None => Ok(()),
        }
    }

    fn dir(&mut self, rel: &str) -> Result<(), ExecError> {
        let path = self.root.join(rel);
        if self.made.contains(&path) {
            return Ok(());
        }
        fs::create_dir_all(&path).map_err(|e| ExecError::io("create directory", &path, e))?;
        self.made.insert(path);
        Ok(())
    }
}
