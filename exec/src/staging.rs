//! Builds the staged exec root in `scratch/root`: inputs, parent directories of outputs,
//! output directories and the working directory.
//!
//! An input is hard-linked from its source when that cannot change the source: in
//! namespaces mode the inputs are read-only mounts, so a link is safe whenever the source
//! already has the right executable bits. In plain mode nothing stops the action (least of
//! all as root) from writing through a link, so inputs are copied (`copy_file_range`, which
//! reflinks on file systems that can) and made read-only (0444 / 0555).
//!
//! When the link fails because the staged tree is on another file system (scratch on
//! `/dev/shm`, the cache on disk), an immutable input of at least [`BIND_MIN_BYTES`] is not
//! copied: it gets an empty placeholder, and the sandbox bind-mounts the source on it
//! read-only. A link step's hundreds of megabytes of libraries cost a copy each time; a bind
//! costs a few system calls whatever the size.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::request::FileBind;
use crate::{ExecError, InputFile, SandboxRequest};

/// The smallest input worth a bind mount instead of a copy (a bind and its read-only remount
/// take about as long as copying this much).
pub(crate) const BIND_MIN_BYTES: u64 = 256 << 10;

/// How inputs get into the staged tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Staging {
    /// Hard link when the mode bits fit, else a bind mount for a large immutable input, else
    /// copy.
    LinkWhenSafe,
    /// Always copy.
    Copy,
}

/// Stages `req` under `root` (which must exist) and creates `tmp`. Returns the inputs left as
/// placeholders for the sandbox to bind-mount (only with [`Staging::LinkWhenSafe`]).
pub(crate) fn stage(
    root: &Path,
    tmp: &Path,
    req: &SandboxRequest,
    how: Staging,
) -> Result<Vec<FileBind>, ExecError> {
    let mut dirs = Dirs {
        root,
        made: HashSet::new(),
    };
    for dir in [root, tmp] {
        fs::create_dir_all(dir).map_err(|e| ExecError::io("create directory", dir, e))?;
    }
    let mut binds = Vec::new();
    for input in &req.inputs {
        dirs.parent_of(&input.path)?;
        if stage_input(&root.join(&input.path), input, how)? == Staged::Placeholder {
            binds.push(FileBind {
                path: input.path.clone(),
                source: input.source.clone(),
            });
        }
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
    Ok(binds)
}

/// How one input was staged.
#[derive(Debug, PartialEq, Eq)]
enum Staged {
    /// A hard link or a copy: the file is in place.
    InPlace,
    /// An empty file for the sandbox to bind the source on.
    Placeholder,
}

fn stage_input(dest: &Path, input: &InputFile, how: Staging) -> Result<Staged, ExecError> {
    let err = |source| ExecError::Stage {
        path: input.path.clone(),
        source_path: input.source.clone(),
        source,
    };
    if how == Staging::LinkWhenSafe {
        let meta = fs::metadata(&input.source).map_err(err)?;
        let executable = meta.permissions().mode() & 0o111 != 0;
        if executable == input.executable {
            match fs::hard_link(&input.source, dest) {
                Ok(()) => return Ok(Staged::InPlace),
                Err(e)
                    if e.kind() == std::io::ErrorKind::CrossesDevices
                        && input.immutable
                        && meta.is_file()
                        && meta.len() >= BIND_MIN_BYTES
                        && !on_noexec_mount(&input.source) =>
                {
                    fs::File::create(dest).map_err(err)?;
                    return Ok(Staged::Placeholder);
                }
                // Any other link failure: fall through to a copy.
                Err(_) => {}
            }
        }
    }
    fs::copy(&input.source, dest).map_err(err)?;
    let mode = if input.executable { 0o555 } else { 0o444 };
    fs::set_permissions(dest, fs::Permissions::from_mode(mode)).map_err(err)?;
    Ok(Staged::InPlace)
}

/// Whether `path` lies on a `noexec` mount: a bind keeps that flag (in a user namespace the
/// kernel locks it), so a large shared library there could not be mapped executable by the
/// action, while a copy on the scratch file system can.
fn on_noexec_mount(path: &Path) -> bool {
    use nix::sys::statvfs::{statvfs, FsFlags};
    statvfs(path).map_or(true, |s| s.flags().contains(FsFlags::ST_NOEXEC))
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
