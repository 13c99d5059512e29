//! Builds the sandbox's file system in a mount namespace of its own.
//!
//! The root is a tmpfs holding only mount points, in two parts. The part every action shares
//! ([`system_tree`]): the system directories (read-only binds; symlinks such as
//! `/bin -> usr/bin` are recreated), a few `/dev` nodes, a fresh `/proc`. The action's own part
//! ([`action_tree`]): a fresh `/dev/shm`, a private `/tmp`, the staged exec root at
//! [`crate::EXEC_ROOT`] with its large immutable inputs bound on their placeholders (see
//! `staging.rs`) and every input made read-only (see `plan.rs`), and the extra mounts. The
//! tmpfs is kept read-only ([`seal`]). A one-shot sandbox builds both and `pivot_root`s into
//! them ([`build_root`]); a slot keeps the first and swaps the second per action
//! ([`clear_action_tree`]). Runs as pid 1 of the sandbox's pid namespace (a fresh `/proc` must
//! be mounted from inside it).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::statvfs::{statvfs, FsFlags};
use nix::unistd::{chdir, pivot_root};

use crate::protocol::HelperRequest;
use crate::EXEC_ROOT;

/// Host directories exposed read-only when they exist.
const SYSTEM_DIRS: [&str; 8] = [
    "bin", "sbin", "usr", "lib", "lib32", "lib64", "libx32", "etc",
];

/// Device nodes bound from the host.
const DEV_NODES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Enters a new mount namespace, builds the root described by `req` in it and makes it the
/// root of this process (a one-shot sandbox: the spawned helper's init).
pub(crate) fn build_root(req: &HelperRequest) -> Result<(), String> {
    let root = req.new_root.as_path();
    private_namespace()?;
    system_tree(root)?;
    protect_proc(root)?;
    action_tree(root, req)?;
    seal(root, true)?;
    chdir(root).map_err(|e| format!("chdir to the new root: {e}"))?;
    pivot_root(".", ".").map_err(|e| format!("pivot_root: {e}"))?;
    // The old root is now stacked under the new one at "/": detach it.
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("detaching the old root: {e}"))?;
    chdir("/").map_err(|e| format!("chdir /: {e}"))
}

/// Unshares the mount namespace and stops mount events propagating to or from the host.
pub(crate) fn private_namespace() -> Result<(), String> {
    let none: Option<&str> = None;
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(|e| format!("making mounts private: {e}"))
}

/// The part of the root every action shares: a tmpfs on `root` with the read-only system
/// directories, `/dev` (its `shm` still an empty directory), a fresh `/proc` (so the caller
/// must be pid 1 of its pid namespace; still writable: see [`protect_proc`]), and empty `/tmp`
/// and exec-root mount points.
pub(crate) fn system_tree(root: &Path) -> Result<(), String> {
    let none: Option<&str> = None;
    mount(
        Some("tmpfs"),
        root,
        Some("tmpfs"),
        ROOT_FLAGS,
        Some("mode=0755"),
    )
    .map_err(|e| format!("mounting tmpfs on `{}`: {e}", root.display()))?;
    for dir in SYSTEM_DIRS {
        let host = Path::new("/").join(dir);
        let Ok(meta) = fs::symlink_metadata(&host) else {
            continue;
        };
        let target = root.join(dir);
        if meta.file_type().is_symlink() {
            let link = fs::read_link(&host).map_err(|e| io_err("reading link", &host, e))?;
            symlink(&link, &target).map_err(|e| io_err("creating symlink", &target, e))?;
        } else if meta.is_dir() {
            mkdir(&target)?;
            bind(&host, &target, true, true)?;
        }
    }
    mount_dev(root)?;
    let proc_dir = root.join("proc");
    mkdir(&proc_dir)?;
    let proc_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("proc"), &proc_dir, Some("proc"), proc_flags, none)
        .map_err(|e| format!("mounting /proc: {e}"))?;
    mkdir(&root.join("tmp"))?;
    mkdir(&root.join(&EXEC_ROOT[1..]))
}

/// Makes the parts of `/proc` that change the kernel or the namespaces read-only: `sys` (the
/// sysctls, among them the user namespace's limit on nested user namespaces, which root in
/// the sandbox could otherwise raise again, and ipc limits later actions would inherit),
/// `sysrq-trigger`, `irq` and `bus`.
pub(crate) fn protect_proc(root: &Path) -> Result<(), String> {
    for part in ["sys", "sysrq-trigger", "irq", "bus"] {
        let path = root.join("proc").join(part);
        if path.exists() {
            bind(&path, &path, true, true)?;
        }
    }
    Ok(())
}

/// The part of the root that is the action's own, mounted on the shared part: a fresh
/// `/dev/shm`, its `/tmp`, the staged exec root with its large inputs bound on their
/// placeholders and every input read-only, and the extra mounts. Mount points that do not
/// exist are created, so the root must be writable if an extra mount outside the exec root
/// lacks one ([`missing_mount_points`]); returns the mount points it created there.
pub(crate) fn action_tree(root: &Path, req: &HelperRequest) -> Result<Vec<PathBuf>, String> {
    let shm = root.join("dev/shm");
    mount(
        Some("tmpfs"),
        &shm,
        Some("tmpfs"),
        ROOT_FLAGS,
        Some("mode=1777"),
    )
    .map_err(|e| format!("mounting /dev/shm: {e}"))?;
    bind(&req.tmp, &root.join("tmp"), false, false)?;
    let exec_root = root.join(&EXEC_ROOT[1..]);
    bind(&req.exec_root, &exec_root, false, false)?;
    // Every mount point is made now, while the tree is writable: one inside the exec root (a
    // toolchain under `external/`) may sit below a directory bound read-only next.
    let mut created = Vec::new();
    for extra in &req.mounts {
        let target = root.join(&extra.sandbox_path[1..]);
        if !target.starts_with(&exec_root) {
            created.extend(first_missing(root, &target));
        }
        if extra.host.is_dir() {
            mkdir(&target)?;
        } else if !target.exists() {
            if let Some(parent) = target.parent() {
                mkdir(parent)?;
            }
            fs::write(&target, b"").map_err(|e| io_err("creating mount point", &target, e))?;
        }
    }
    // Before the read-only binds of whole subtrees, which are recursive and so carry these.
    for file in &req.file_binds {
        bind(
            &file.source,
            &exec_root.join(&file.path),
            false,
            !file.writable,
        )?;
    }
    for rel in &req.read_only {
        let path = exec_root.join(rel);
        bind(&path, &path, true, true)?;
    }
    for extra in &req.mounts {
        bind(
            &extra.host,
            &root.join(&extra.sandbox_path[1..]),
            true,
            true,
        )?;
    }
    Ok(created)
}

/// Whether an extra mount of `req` outside the exec root has no mount point in `root` yet
/// (so [`action_tree`] must create one, and the root must be writable).
pub(crate) fn missing_mount_points(root: &Path, req: &HelperRequest) -> bool {
    let exec_root = root.join(&EXEC_ROOT[1..]);
    req.mounts.iter().any(|extra| {
        let target = root.join(&extra.sandbox_path[1..]);
        !target.starts_with(&exec_root) && !target.exists()
    })
}

/// The topmost missing path on the way from `root` to `target`, which creating `target`
/// creates (removing it removes all that was created).
fn first_missing(root: &Path, target: &Path) -> Option<PathBuf> {
    let rel = target.strip_prefix(root).ok()?;
    let mut path = root.to_path_buf();
    for part in rel.components() {
        path.push(part);
        if fs::symlink_metadata(&path).is_err() {
            return Some(path);
        }
    }
    None
}

/// Undoes [`action_tree`] for a root that serves the next action: detaches every mount of
/// the action (the exec root's recursively, with the inputs and extra mounts below it), and
/// removes the mount points it created in the root (which must be writable then).
pub(crate) fn clear_action_tree(
    root: &Path,
    req: &HelperRequest,
    created: &[PathBuf],
) -> Result<(), String> {
    let exec_root = root.join(&EXEC_ROOT[1..]);
    let mut points: Vec<PathBuf> = req
        .mounts
        .iter()
        .map(|extra| root.join(&extra.sandbox_path[1..]))
        .filter(|target| !target.starts_with(&exec_root))
        .collect();
    points.extend([exec_root, root.join("tmp"), root.join("dev/shm")]);
    // Innermost first; one detached with its parent is no mount any more (EINVAL).
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for point in &points {
        match umount2(point, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
            Err(e) => return Err(format!("detaching `{}`: {e}", point.display())),
        }
    }
    for path in created {
        let removed = match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
            Ok(_) => fs::remove_file(path),
            Err(_) => Ok(()),
        };
        removed.map_err(|e| io_err("removing mount point", path, e))?;
    }
    Ok(())
}

/// Makes the root tmpfs read-only (`true`) or writable again.
pub(crate) fn seal(root: &Path, read_only: bool) -> Result<(), String> {
    let none: Option<&str> = None;
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | ROOT_FLAGS;
    if read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    mount(none, root, none, flags, none).map_err(|e| format!("remounting the root: {e}"))
}

/// Flags of the root tmpfs and `/dev/shm`.
const ROOT_FLAGS: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV);

/// A minimal `/dev`: bound nodes, the usual symlinks, and the `/dev/shm` mount point.
fn mount_dev(root: &Path) -> Result<(), String> {
    let dev = root.join("dev");
    mkdir(&dev)?;
    for node in DEV_NODES {
        let host = Path::new("/dev").join(node);
        if !host.exists() {
            continue;
        }
        let target = dev.join(node);
        fs::write(&target, b"").map_err(|e| io_err("creating mount point", &target, e))?;
        bind(&host, &target, false, false)?;
    }
    for (name, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let link = dev.join(name);
        symlink(to, &link).map_err(|e| io_err("creating symlink", &link, e))?;
    }
    mkdir(&dev.join("shm"))
}

/// Bind-mounts `src` on `dst`, then optionally remounts it read-only. A remount inside a
/// user namespace must keep the flags the kernel locked on the source mount (nosuid,
/// nodev, noexec, atime), so they are read back with statvfs and kept.
fn bind(src: &Path, dst: &Path, recursive: bool, read_only: bool) -> Result<(), String> {
    let none: Option<&str> = None;
    let mut flags = MsFlags::MS_BIND;
    if recursive {
        flags |= MsFlags::MS_REC;
    }
    mount(Some(src), dst, none, flags, none).map_err(|e| {
        format!(
            "bind-mounting `{}` on `{}`: {e}",
            src.display(),
            dst.display()
        )
    })?;
    if !read_only {
        return Ok(());
    }
    let current = statvfs(dst)
        .map_err(|e| format!("statvfs `{}`: {e}", dst.display()))?
        .flags();
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    for (st, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if current.contains(st) {
            flags |= ms;
        }
    }
    mount(none, dst, none, flags, none)
        .map_err(|e| format!("making `{}` read-only: {e}", dst.display()))
}

fn mkdir(path: &Path) -> Result<(), String> {
    fs::create_dir_all(path).map_err(|e| io_err("creating directory", path, e))
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> String {
    format!("{what} `{}`: {e}", path.display())
}
