//! Builds the sandbox's file system inside the new mount namespace and pivots into it.
//!
//! The new root is a tmpfs holding only mount points: the system directories (read-only
//! binds; symlinks such as `/bin -> usr/bin` are recreated), a few `/dev` nodes, a fresh
//! `/proc`, a private `/tmp`, the staged exec root at [`crate::EXEC_ROOT`] with its large
//! immutable inputs bound on their placeholders (see `staging.rs`) and every input made
//! read-only (see `plan.rs`), and the extra mounts. The tmpfs is then made read-only.
//! Runs as pid 1 of the new pid namespace (a fresh `/proc` must be mounted from inside it).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

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
/// root of this process.
pub(crate) fn build_root(req: &HelperRequest) -> Result<(), String> {
    let root = req.new_root.as_path();
    let none: Option<&str> = None;
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(|e| format!("making mounts private: {e}"))?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(Some("tmpfs"), root, Some("tmpfs"), flags, Some("mode=0755"))
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
    let tmp = root.join("tmp");
    mkdir(&tmp)?;
    bind(&req.tmp, &tmp, false, false)?;

    let exec_root = root.join(&EXEC_ROOT[1..]);
    mkdir(&exec_root)?;
    bind(&req.exec_root, &exec_root, false, false)?;
    // Every mount point is made now, while the tree is writable: one inside the exec root (a
    // toolchain under `external/`) may sit below a directory bound read-only next.
    for extra in &req.mounts {
        let target = root.join(&extra.sandbox_path[1..]);
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
    for input in &req.file_binds {
        bind(&input.source, &exec_root.join(&input.path), false, true)?;
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

    let ro = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | flags;
    mount(none, root, none, ro, none).map_err(|e| format!("making the root read-only: {e}"))?;
    chdir(root).map_err(|e| format!("chdir to the new root: {e}"))?;
    pivot_root(".", ".").map_err(|e| format!("pivot_root: {e}"))?;
    // The old root is now stacked under the new one at "/": detach it.
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("detaching the old root: {e}"))?;
    chdir("/").map_err(|e| format!("chdir /: {e}"))
}

/// A minimal `/dev`: bound nodes, the usual symlinks, and a private `/dev/shm`.
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
    let shm = dev.join("shm");
    mkdir(&shm)?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(Some("tmpfs"), &shm, Some("tmpfs"), flags, Some("mode=1777"))
        .map_err(|e| format!("mounting /dev/shm: {e}"))
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
