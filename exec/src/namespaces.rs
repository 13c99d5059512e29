//! Entering the namespaces (user, mount, pid, net, uts, ipc), mapping ids, bringing up
//! loopback, and probing once whether all of that works on this host.

use std::fs;
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::sched::{unshare, CloneFlags};
use nix::unistd::{Gid, Uid};

/// The namespaces the helper enters: all but the mount namespace, which the sandbox's init
/// enters alone (`pivot_root` moves every process of a mount namespace, and the helper must
/// keep seeing the host to write its result). The network one unless the action asks for
/// the host network.
pub(crate) fn clone_flags(network: bool) -> CloneFlags {
    let mut flags = CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC;
    if !network {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    flags
}

/// Unshares the namespaces (see [`clone_flags`]) and maps the caller's uid and gid to 0 inside. The calling
/// process must be single-threaded (the kernel refuses `CLONE_NEWUSER` otherwise).
pub(crate) fn enter(network: bool) -> Result<(), String> {
    let (uid, gid) = (Uid::current(), Gid::current());
    unshare(clone_flags(network)).map_err(|e| {
        format!("unshare: {e} (the helper must be single-threaded; are user namespaces allowed?)")
    })?;
    map_ids(uid, gid)
}

/// The holder's namespaces: a user namespace (caller's uid and gid mapped to 0) and an empty
/// network namespace, shared by every action of a build.
pub(crate) fn enter_shared() -> Result<(), String> {
    let (uid, gid) = (Uid::current(), Gid::current());
    unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("unshare(CLONE_NEWUSER | CLONE_NEWNET): {e}"))?;
    map_ids(uid, gid)
}

fn map_ids(uid: Uid, gid: Gid) -> Result<(), String> {
    let write = |file: &str, text: String| {
        fs::write(format!("/proc/self/{file}"), text)
            .map_err(|e| format!("writing /proc/self/{file}: {e}"))
    };
    write("setgroups", "deny".into())?;
    write("uid_map", format!("0 {uid} 1\n"))?;
    write("gid_map", format!("0 {gid} 1\n"))
}

/// Sets `lo` up in the current network namespace. Allocation-free, so that the probe may
/// call it in a child forked from a multi-threaded process.
pub(crate) fn loopback_up() -> Result<(), Errno> {
    // SAFETY: plain syscalls on a socket we own; `ifreq` is zero-initialised POD whose name
    // field gets "lo" plus the terminating NUL that zeroing left in place.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(Errno::last());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[0] = b'l' as libc::c_char;
        req.ifr_name[1] = b'o' as libc::c_char;
        req.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_LOOPBACK | libc::IFF_RUNNING) as i16;
        let rc = libc::ioctl(sock, libc::SIOCSIFFLAGS as _, &req);
        let err = Errno::last();
        libc::close(sock);
        if rc < 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// Checks once per process whether namespaces mode can work here: unshare all namespaces,
/// map ids, become pid 1 of a new pid namespace, mount a tmpfs and a fresh `/proc`, bring
/// loopback up. `Err` explains what failed, for the CLI to print once.
pub fn probe_namespaces() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE.get_or_init(probe).clone()
}

/// Steps of the probe, reported back through a pipe as (step, errno).
const STEPS: [&str; 9] = [
    "unshare",
    "write /proc/self/setgroups",
    "write /proc/self/uid_map",
    "write /proc/self/gid_map",
    "fork into the pid namespace",
    "make mounts private",
    "mount tmpfs",
    "mount proc",
    "bring loopback up",
];

fn probe() -> Result<(), String> {
    // Everything the child needs is prepared before fork: it may not allocate.
    let uid_map = format!("0 {} 1\n", Uid::current());
    let gid_map = format!("0 {} 1\n", Gid::current());
    let dir = std::env::temp_dir();
    let dir = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| "temp dir path contains NUL".to_string())?;
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(format!("pipe2: {}", Errno::last()));
    }
    // SAFETY: the caller may be multi-threaded, so the child only makes raw syscalls on
    // data prepared above (no allocation, no locks) and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: see above; `probe_child` is async-signal-safe.
        unsafe {
            libc::close(fds[0]);
            let (step, errno) = probe_child(&uid_map, &gid_map, &dir, fds[1]);
            report(fds[1], step, errno);
            libc::_exit(1);
        }
    }
    // SAFETY: closing our copy of the write end, which we own.
    unsafe { libc::close(fds[1]) };
    if pid < 0 {
        // SAFETY: closing the read end we own.
        unsafe { libc::close(fds[0]) };
        return Err(format!("fork: {}", Errno::last()));
    }
    let mut buf = [0u8; 8];
    // SAFETY: reading into a local buffer from the pipe we own, then closing it.
    let n = unsafe {
        let n = libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len());
        libc::close(fds[0]);
        n
    };
    let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    if n == 8 {
        let step = u32::from_ne_bytes(buf[..4].try_into().unwrap()) as usize;
        let errno = Errno::from_raw(i32::from_ne_bytes(buf[4..].try_into().unwrap()));
        let what = STEPS.get(step).copied().unwrap_or("unknown step");
        return Err(format!("{what} failed: {errno}"));
    }
    match status {
        Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
        other => Err(format!("probe process ended with {other:?}")),
    }
}

/// Runs in the forked child; returns the failing step and errno.
///
/// # Safety
/// Only async-signal-safe calls; `fd` is the write end of the report pipe.
unsafe fn probe_child(uid_map: &str, gid_map: &str, dir: &std::ffi::CStr, fd: i32) -> (u32, i32) {
    let errno = || Errno::last() as i32;
    let flags = (clone_flags(false) | CloneFlags::CLONE_NEWNS).bits();
    if libc::unshare(flags) != 0 {
        return (0, errno());
    }
    let files = [
        (c"/proc/self/setgroups", "deny"),
        (c"/proc/self/uid_map", uid_map),
        (c"/proc/self/gid_map", gid_map),
    ];
    for (i, (file, text)) in files.iter().enumerate() {
        let f = libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if f < 0 || libc::write(f, text.as_ptr().cast(), text.len()) != text.len() as isize {
            return (1 + i as u32, errno());
        }
        libc::close(f);
    }
    let pid = libc::fork();
    if pid < 0 {
        return (4, errno());
    }
    if pid > 0 {
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        libc::_exit(if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            1
        });
    }
    // pid 1 of the new pid namespace.
    let none = std::ptr::null();
    if libc::mount(
        none,
        c"/".as_ptr(),
        none,
        libc::MS_REC | libc::MS_PRIVATE,
        none.cast(),
    ) != 0
    {
        return (5, errno());
    }
    if libc::mount(
        c"tmpfs".as_ptr(),
        dir.as_ptr(),
        c"tmpfs".as_ptr(),
        0,
        none.cast(),
    ) != 0
    {
        return (6, errno());
    }
    if libc::mount(
        c"proc".as_ptr(),
        dir.as_ptr(),
        c"proc".as_ptr(),
        0,
        none.cast(),
    ) != 0
    {
        return (7, errno());
    }
    if let Err(e) = loopback_up() {
        return (8, e as i32);
    }
    libc::close(fd);
    libc::_exit(0);
}

/// Writes (step, errno) to the report pipe.
///
/// # Safety
/// `fd` must be an open pipe write end.
unsafe fn report(fd: i32, step: u32, errno: i32) {
    let mut buf = [0u8; 8];
    buf[..4].copy_from_slice(&step.to_ne_bytes());
    buf[4..].copy_from_slice(&errno.to_ne_bytes());
    libc::write(fd, buf.as_ptr().cast(), buf.len());
}
