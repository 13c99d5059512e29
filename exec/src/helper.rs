//! The sandbox's init processes, and forking the action from them.
//!
//! * The one-shot helper (`<binary> __sandbox <request.json>`): enters the namespaces, forks
//!   pid 1 of the new pid namespace, which builds the whole root, `pivot_root`s into it,
//!   forks and execs the action, reaps every process until the action exits, and reports its
//!   status. Process tree: kiln → helper (user ns) → init (pid 1) → action. The helper dies
//!   with kiln (`PR_SET_PDEATHSIG`), init dies with the helper, and when init dies the kernel
//!   kills everything left in the pid namespace. Kiln enforces timeouts by killing the
//!   helper's process group.
//! * A slot's init ([`slot_init`], cloned by the holder): keeps the shared part of the root
//!   mounted and runs one action after another in it (see `launcher`). Process tree: kiln →
//!   holder (user and net ns) → slot init (pid 1) → action; kiln kills a slot through init's
//!   pidfd.

use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{unshare, CloneFlags};
use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{chdir, chroot, execve, fork, getppid, pipe2, sethostname, ForkResult, Pid};

use crate::protocol::{HelperRequest, HelperResult};
use crate::{mounts, namespaces};

/// `argv[1]` that selects the helper entry point in the kiln binary.
pub const HELPER_ARG: &str = "__sandbox";

/// Entry point of the helper. The binary named in [`crate::SandboxConfig::helper`] must
/// call this first thing in `main`, before any thread starts:
/// `if std::env::args().nth(1).as_deref() == Some(kiln_exec::HELPER_ARG) { kiln_exec::helper_main() }`.
pub fn helper_main() -> ! {
    let code = match run_helper() {
        Ok(()) => 0,
        Err(msg) => {
            eprintln!("kiln sandbox helper: {msg}");
            2
        }
    };
    std::process::exit(code)
}

fn run_helper() -> Result<(), String> {
    set_pdeathsig(Signal::SIGKILL).map_err(|e| format!("prctl(PR_SET_PDEATHSIG): {e}"))?;
    if std::env::args().nth(2).as_deref() == Some(crate::holder::HOLDER_ARG) {
        return crate::holder::run_holder();
    }
    let path = std::env::args_os()
        .nth(2)
        .ok_or_else(|| format!("usage: {HELPER_ARG} <request.json>"))?;
    let text = fs::read(&path).map_err(|e| format!("reading {path:?}: {e}"))?;
    let req: HelperRequest =
        serde_json::from_slice(&text).map_err(|e| format!("parsing {path:?}: {e}"))?;
    if getppid().as_raw() != req.parent_pid {
        return Err("kiln exited before the sandbox started".into());
    }
    let result = run_in_namespaces(&req);
    let json = serde_json::to_vec(&result).map_err(|e| e.to_string())?;
    fs::write(&req.result, json).map_err(|e| format!("writing {:?}: {e}", req.result))
}

fn run_in_namespaces(req: &HelperRequest) -> HelperResult {
    if let Err(msg) = namespaces::enter(req.network) {
        return HelperResult::SetupFailed(msg);
    }
    let pipes = pipe2(OFlag::O_CLOEXEC).and_then(|a| Ok((a, pipe2(OFlag::O_CLOEXEC)?)));
    let ((status_r, status_w), (life_r, life_w)) = match pipes {
        Ok(p) => p,
        Err(e) => return HelperResult::SetupFailed(format!("pipe2: {e}")),
    };
    // SAFETY: the helper is single-threaded (it runs before `main` starts any thread and
    // `unshare(CLONE_NEWUSER)` above would have failed otherwise), so the child may
    // allocate and use the full standard library.
    match unsafe { fork() } {
        Err(e) => HelperResult::SetupFailed(format!("fork: {e}")),
        Ok(ForkResult::Child) => {
            drop((status_r, life_w));
            let result = init(req, life_r);
            let json = serde_json::to_vec(&result).unwrap_or_default();
            let _ = nix::unistd::write(&status_w, &json);
            // SAFETY: leave without running the parent's atexit handlers or destructors.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop((status_w, life_r));
            let mut report = Vec::new();
            let _ = fs::File::from(status_r).read_to_end(&mut report);
            let status = waitpid(child, None);
            drop(life_w);
            serde_json::from_slice(&report).unwrap_or_else(|_| {
                HelperResult::SetupFailed(format!("sandbox init ended with {status:?}"))
            })
        }
    }
}

/// Pid 1: builds the root, runs the action, reaps orphans until the action exits.
fn init(req: &HelperRequest, life_r: OwnedFd) -> HelperResult {
    if set_pdeathsig(Signal::SIGKILL).is_err() || helper_gone(&life_r) {
        // SAFETY: exit immediately; the helper is dead and nobody reads our report.
        unsafe { libc::_exit(1) }
    }
    drop(life_r);
    match setup_and_run(req, !req.network) {
        Ok(result) => result,
        Err(msg) => HelperResult::SetupFailed(msg),
    }
}

/// The helper may have died between fork and `PR_SET_PDEATHSIG`: then no writer is left.
fn helper_gone(life_r: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(life_r.as_fd(), PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0)
}

/// Points stdin, stdout and stderr at `/dev/null`.
pub(crate) fn redirect_stdio_to_null() -> Result<(), String> {
    let null = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| format!("opening /dev/null: {e}"))?;
    for to in [0, 1, 2] {
        // SAFETY: dup2 onto a standard descriptor number; `null` stays owned by its value.
        if unsafe { libc::dup2(null.as_raw_fd(), to) } < 0 {
            return Err(format!("dup2: {}", Errno::last()));
        }
    }
    Ok(())
}

/// As pid 1, kills every other process of the namespace and reaps them all.
pub(crate) fn kill_the_rest() {
    // SAFETY: kill(-1) from a pid namespace's init signals every other process in it.
    unsafe { libc::kill(-1, libc::SIGKILL) };
    // Until ECHILD: nobody left.
    while let Ok(_) | Err(Errno::EINTR) = waitpid(None::<Pid>, None) {}
}

fn setup_and_run(req: &HelperRequest, bring_loopback_up: bool) -> Result<HelperResult, String> {
    mounts::build_root(req)?;
    if bring_loopback_up {
        namespaces::loopback_up().map_err(|e| format!("bringing loopback up: {e}"))?;
    }
    sethostname("localhost").map_err(|e| format!("sethostname: {e}"))?;
    drop_capabilities(&[CAP_SYS_ADMIN])?;
    run_action(req, None, None)
}

/// A slot's root, for [`run_action`]: where to `chroot`, and init's handle on its pid
/// namespace's `ns_last_pid`, so that every action is pid 2 as in a fresh namespace.
pub(crate) struct SlotRoot {
    pub path: std::path::PathBuf,
    pub last_pid: Option<fs::File>,
}

/// Where an action's standard descriptors come from when they are not inherited.
pub(crate) struct ActionStdio {
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Forks and execs the action of `req` (with `stdio` on descriptors 1 and 2 and `/dev/null`
/// on 0, if given; else inheriting them), as pid 1 reaps until it ends. In a `slot`, the
/// child is pid 2, enters its own ipc namespace, changes its root to the slot's and leaves
/// the capabilities that could undo that behind (see [`CHROOT_CAPABILITIES`]); without, the
/// caller has already pivoted into the sandbox's root.
pub(crate) fn run_action(
    req: &HelperRequest,
    slot: Option<&SlotRoot>,
    stdio: Option<ActionStdio>,
) -> Result<HelperResult, String> {
    let cstr = |s: &[u8]| CString::new(s).map_err(|_| "NUL byte in the request".to_string());
    let program = cstr(req.program.as_bytes())?;
    let cwd = cstr(req.cwd.as_bytes())?;
    let argv = req
        .argv
        .iter()
        .map(|s| cstr(s.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let env = req
        .env
        .iter()
        .map(|s| cstr(s.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let root = slot
        .map(|slot| cstr(slot.path.as_os_str().as_encoded_bytes()))
        .transpose()?;
    if let Some(last_pid) = slot.and_then(|slot| slot.last_pid.as_ref()) {
        // Nothing else runs in the namespace now: the next pid handed out is 2. Best effort:
        // a kernel without checkpoint/restore has no such file.
        use std::os::unix::fs::FileExt;
        let _ = last_pid.write_at(b"1", 0);
    }
    let null = match stdio {
        Some(_) => {
            Some(fs::File::open("/dev/null").map_err(|e| format!("opening /dev/null: {e}"))?)
        }
        None => None,
    };
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe2: {e}"))?;

    // SAFETY: init is single-threaded (forked from the single-threaded helper or holder).
    let action = match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(err_r);
            let errno = match enter_action(&stdio, &null, root.as_deref(), &cwd) {
                Ok(()) => execve(&program, &argv, &env).unwrap_err(),
                Err(e) => e,
            };
            let _ = nix::unistd::write(&err_w, &(errno as i32).to_ne_bytes());
            // SAFETY: the exec failed; leave the forked copy without unwinding.
            unsafe { libc::_exit(127) }
        }
        ForkResult::Parent { child } => child,
    };
    // The action holds its own copies now; the pipes reach end of file when it and its
    // descendants are gone.
    drop((stdio, null, err_w));
    let mut buf = Vec::new();
    let _ = fs::File::from(err_r).read_to_end(&mut buf);
    if let Ok(bytes) = <[u8; 4]>::try_from(buf.as_slice()) {
        let _ = waitpid(action, None);
        return Ok(HelperResult::ExecFailed(i32::from_ne_bytes(bytes)));
    }
    reap_until(action)
}

/// In the forked child, before `execve`: standard descriptors, signals, root, working
/// directory.
fn enter_action(
    stdio: &Option<ActionStdio>,
    null: &Option<fs::File>,
    root: Option<&std::ffi::CStr>,
    cwd: &std::ffi::CStr,
) -> Result<(), Errno> {
    // A session of its own: no controlling terminal, so `/dev/tty` cannot reach the user's
    // (where TIOCSTI could type into their shell). Fails only for a group leader, which a
    // forked child is not.
    let _ = nix::unistd::setsid();
    if let (Some(stdio), Some(null)) = (stdio, null) {
        for (from, to) in [
            (null.as_raw_fd(), 0),
            (stdio.stdout.as_raw_fd(), 1),
            (stdio.stderr.as_raw_fd(), 2),
        ] {
            // SAFETY: dup2 onto a standard descriptor number of this process.
            if unsafe { libc::dup2(from, to) } < 0 {
                return Err(Errno::last());
            }
        }
    }
    // Ignored signals survive exec: the Rust runtime ignores SIGPIPE, and kiln may run under
    // `nohup`. Start the action with default dispositions and an empty signal mask.
    for sig in 1..32 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: restoring the default disposition installs no handler.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    if let Some(root) = root {
        unshare(CloneFlags::CLONE_NEWIPC)?;
        chroot(root)?;
        drop_capabilities(&CHROOT_CAPABILITIES).map_err(|_| Errno::last())?;
    }
    chdir(cwd)
}

/// As pid 1, waits for every child (orphans are reparented to us) until `action` ends.
fn reap_until(action: Pid) -> Result<HelperResult, String> {
    loop {
        match waitpid(None::<Pid>, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == action => {
                return Ok(HelperResult::Exited(code))
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == action => {
                return Ok(HelperResult::Signaled(sig as i32))
            }
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(format!("waiting for the action: {e}")),
        }
    }
}

/// `CAP_NET_ADMIN`, `CAP_SYS_CHROOT`, `CAP_SYS_PTRACE`, `CAP_SYS_ADMIN` and
/// `CAP_SYS_RESOURCE` in linux/capability.h (stable kernel ABI numbers; libc does not name
/// them).
const CAP_NET_ADMIN: libc::c_ulong = 12;
const CAP_SYS_CHROOT: libc::c_ulong = 18;
const CAP_SYS_PTRACE: libc::c_ulong = 19;
const CAP_SYS_ADMIN: libc::c_ulong = 21;
const CAP_SYS_RESOURCE: libc::c_ulong = 24;

/// What an action changed into its root with `chroot` leaves behind: with `CAP_SYS_CHROOT`
/// a second `chroot` would walk out of the first, with `CAP_SYS_PTRACE` it could open init's
/// `/proc/1/root` (init is not dumpable), with `CAP_SYS_ADMIN` it could remount an input
/// writable or `setns` back to the namespace's root, with `CAP_SYS_RESOURCE` it could raise
/// the user namespace's limit on nested user namespaces (where it would regain all of these;
/// the holder sets it to 0, see `holder`, and `/proc/sys` is read-only too); with
/// `CAP_NET_ADMIN` it could take loopback down or add firewall rules in the network namespace
/// every action of the build shares.
const CHROOT_CAPABILITIES: [libc::c_ulong; 5] = [
    CAP_NET_ADMIN,
    CAP_SYS_CHROOT,
    CAP_SYS_PTRACE,
    CAP_SYS_ADMIN,
    CAP_SYS_RESOURCE,
];

/// Removes `caps` from the bounding set, so the action (root in the user namespace, with
/// every other capability there) gets them neither now nor through any later exec. Without
/// `CAP_SYS_ADMIN`, for instance, it cannot `mount -o remount,rw` its read-only inputs,
/// which live in its own mount namespace and so are not locked by the kernel, and write
/// through them to the cache or the workspace.
fn drop_capabilities(caps: &[libc::c_ulong]) -> Result<(), String> {
    for &cap in caps {
        // SAFETY: prctl(PR_CAPBSET_DROP) takes plain integers and touches no memory of ours.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            return Err(format!(
                "dropping capability {cap} from the bounding set: {e}"
            ));
        }
    }
    Ok(())
}
