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
//! costs a few system calls whatever the size. A smaller immutable input is hard-linked from
//! the sandbox's [`InputPool`] when it has one: a copy made once per build.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::input_pool::InputPool;
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
/// placeholders for the sandbox to bind-mount (only with [`Staging::LinkWhenSafe`], which
/// also links small immutable inputs from `pool` when it can).
pub(crate) fn stage(
    root: &Path,
    tmp: &Path,
    req: &SandboxRequest,
    how: Staging,
    pool: Option<&InputPool>,
) -> Result<Vec<FileBind>, ExecError> {
    let mut dirs = Dirs {
        root,
        made: HashSet::new(),
    };
    for dir in [root, tmp] {
        fs::create_dir_all(dir).map_err(|e| ExecError::io("create directory", dir, e))?;
    }
    let root_dev = fs::metadata(root)
        .map_err(|e| ExecError::io("inspect", root, e))?
        .dev();
    let mut binds = Vec::new();
    for input in &req.inputs {
        dirs.parent_of(&input.path)?;
        if stage_input(&root.join(&input.path), input, how, root_dev, pool)? == Staged::Placeholder
        {
            binds.push(FileBind {
                path: input.path.clone(),
                source: input.source.clone(),
                writable: false,
            });
        }
    }
    for dir in req.input_dirs.iter().chain(&req.output_dirs) {
        dirs.dir(dir)?;
    }
    for out in &req.outputs {
        dirs.parent_of(out)?;
    }
    if let (Staging::LinkWhenSafe, Some(dir)) = (how, &req.output_files_dir) {
        binds.extend(output_files(root, dir, &req.outputs)?);
    }
    if !req.working_directory.is_empty() {
        dirs.dir(&req.working_directory)?;
    }
    Ok(binds)
}

/// Creates each output file, empty and dated at the epoch, in `dir`
/// (see [`SandboxRequest::output_files_dir`]), and its placeholder in the staged tree.
fn output_files(root: &Path, dir: &Path, outputs: &[String]) -> Result<Vec<FileBind>, ExecError> {
    fs::create_dir_all(dir).map_err(|e| ExecError::io("create directory", dir, e))?;
    let mut binds = Vec::with_capacity(outputs.len());
    for (i, out) in outputs.iter().enumerate() {
        let source = output_file(dir, i);
        let file = fs::File::create_new(&source)
            .map_err(|e| ExecError::io("create output file", &source, e))?;
        file.set_modified(std::time::SystemTime::UNIX_EPOCH)
            .map_err(|e| ExecError::io("date output file", &source, e))?;
        let placeholder = root.join(out);
        fs::File::create(&placeholder)
            .map_err(|e| ExecError::io("create output placeholder", &placeholder, e))?;
        binds.push(FileBind {
            path: out.clone(),
            source,
            writable: true,
        });
    }
    Ok(binds)
}

/// Refuses an output files directory that is not absent or empty, as a scratch tree is (a
/// build clears what a killed one left): before the sandbox takes it over to remove it.
pub(crate) fn check_output_files_dir(dir: &Path) -> Result<(), ExecError> {
    if fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(ExecError::ScratchNotEmpty { path: dir.into() });
    }
    Ok(())
}

/// The host file of the `index`th output in an output files directory.
pub(crate) fn output_file(dir: &Path, index: usize) -> PathBuf {
    dir.join(index.to_string())
}

/// The status-change time of an output file made by [`output_files`], read before the action
/// runs, for [`output_file_written`].
pub(crate) fn output_file_created(path: &Path) -> Option<(i64, i64)> {
    fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.ctime(), m.ctime_nsec()))
}

/// Whether an output file made by [`output_files`] was written, given its stat after the run
/// and its status-change time before: it holds bytes, or its date is no longer the epoch, or its
/// status changed (opening it with `O_TRUNC`, or writing to it, dates it anew and changes its
/// status; only an empty output truncated within one timestamp tick of its creation and then
/// dated at the epoch again would pass for untouched).
pub(crate) fn output_file_written(after: &fs::Metadata, created: Option<(i64, i64)>) -> bool {
    after.len() > 0
        || after
            .modified()
            .is_ok_and(|modified| modified != std::time::SystemTime::UNIX_EPOCH)
        || created != Some((after.ctime(), after.ctime_nsec()))
}

/// How one input was staged.
#[derive(Debug, PartialEq, Eq)]
enum Staged {
    /// A hard link or a copy: the file is in place.
    InPlace,
    /// An empty file for the sandbox to bind the source on.
    Placeholder,
}

fn stage_input(
    dest: &Path,
    input: &InputFile,
    how: Staging,
    root_dev: u64,
    pool: Option<&InputPool>,
) -> Result<Staged, ExecError> {
    let err = |source| ExecError::Stage {
        path: input.path.clone(),
        source_path: input.source.clone(),
        source,
    };
    if how == Staging::LinkWhenSafe {
        let pooled = pool.is_some_and(|pool| {
            input.immutable && pool.link_pooled(&input.source, input.executable, dest, root_dev)
        });
        if pooled {
            return Ok(Staged::InPlace);
        }
        let meta = fs::metadata(&input.source).map_err(err)?;
        let executable = meta.permissions().mode() & 0o111 != 0;
        if executable == input.executable {
            // A link cannot cross file systems: only try it on the staged tree's own.
            let linked = meta.dev() == root_dev && fs::hard_link(&input.source, dest).is_ok();
            if linked {
                return Ok(Staged::InPlace);
            }
            // Another file system (or another mount of this one, where the link failed).
            if input.immutable
                && meta.is_file()
                && meta.len() >= BIND_MIN_BYTES
                && !on_noexec_mount(&input.source)
            {
                fs::File::create(dest).map_err(err)?;
                return Ok(Staged::Placeholder);
            }
        }
        // The pool sets the mode of its copies itself, so the source's bits do not matter.
        if let Some(pool) = pool.filter(|_| input.immutable && meta.is_file()) {
            if pool.link(&input.source, input.executable, meta.len(), dest, root_dev) {
                return Ok(Staged::InPlace);
            }
        }
    }
    copy_read_only(&input.source, dest, input.executable).map_err(err)?;
    Ok(Staged::InPlace)
}

/// Copies `source` to a new file `dest` that is read-only (0444, or 0555 if `executable`):
/// the copy goes through the kernel (`copy_file_range`, else `sendfile`), and the mode is set
/// on the open file, not by path.
pub(crate) fn copy_read_only(source: &Path, dest: &Path, executable: bool) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mode = if executable { 0o555 } else { 0o444 };
    let mut from = fs::File::open(source)?;
    let mut to = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(dest)?;
    std::io::copy(&mut from, &mut to)?;
    // The umask may have cleared bits of `mode`; an existing file kept its old mode.
    to.set_permissions(fs::Permissions::from_mode(mode))
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
