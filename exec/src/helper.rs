//! The helper process (`<binary> __sandbox <request.json>`): enters the namespaces, forks
//! pid 1 of the new pid namespace, which builds the root, forks and execs the action, reaps
//! every process until the action exits, and reports its status.
//!
//! Process tree: kiln → helper (user ns) → init (pid 1) → action. The helper dies with kiln
//! (`PR_SET_PDEATHSIG`), init dies with the helper, and when init dies the kernel kills
//! everything left in the pid namespace. Kiln enforces timeouts by killing the helper's
//! process group.

use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::{signal, sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{chdir, execve, fork, getppid, pipe2, sethostname, ForkResult, Pid};

use crate::protocol::{HelperRequest, HelperResult};
use crate::{launcher, mounts, namespaces};

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

/// Init of a sandbox the holder cloned (see `launcher`), already in its pid, uts and ipc
/// namespaces and in the holder's user and network ones: runs the request at `path` with
/// `stdout` and `stderr`, leaves nothing running in the namespace, reports on `status`.
pub(crate) fn launched_init(path: &Path, stdout: OwnedFd, stderr: OwnedFd, status: OwnedFd) -> ! {
    if set_pdeathsig(Signal::SIGKILL).is_err() || peer_gone(&status) {
        // SAFETY: kiln is gone; leave without running anything.
        unsafe { libc::_exit(1) }
    }
    let result = match redirect_stdio(stdout, stderr)
        .and_then(|()| launcher::read_request(path))
        .and_then(|req| setup_and_run(&req, false))
    {
        Ok(result) => result,
        Err(msg) => HelperResult::SetupFailed(msg),
    };
    kill_the_rest();
    // Kiln's pipes reach end of file once every writer is gone: the action's processes are,
    // and this process lets go of its copies now.
    let _ = redirect_stdio_to_null();
    launcher::report(&status, &result);
    // SAFETY: leave without running destructors of the holder's copied state.
    unsafe { libc::_exit(0) }
}

/// Whether kiln closed its end of the status socket (it died): `POLLHUP`, which `poll` always
/// reports.
fn peer_gone(status: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(status.as_fd(), PollFlags::empty())];
    poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0)
}

/// stdin from `/dev/null` (the holder's is its control socket), stdout and stderr to the pipes.
fn redirect_stdio(stdout: OwnedFd, stderr: OwnedFd) -> Result<(), String> {
    let null = fs::File::open("/dev/null").map_err(|e| format!("opening /dev/null: {e}"))?;
    for (from, to) in [(null.as_fd(), 0), (stdout.as_fd(), 1), (stderr.as_fd(), 2)] {
        // SAFETY: dup2 onto a standard descriptor number; `from` stays owned by its value.
        if unsafe { libc::dup2(from.as_raw_fd(), to) } < 0 {
            return Err(format!("dup2: {}", Errno::last()));
        }
    }
    Ok(())
}

/// Points stdout and stderr at `/dev/null`.
fn redirect_stdio_to_null() -> Result<(), String> {
    let null = fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .map_err(|e| format!("opening /dev/null: {e}"))?;
    for to in [1, 2] {
        // SAFETY: as in `redirect_stdio`.
        if unsafe { libc::dup2(null.as_raw_fd(), to) } < 0 {
            return Err(format!("dup2: {}", Errno::last()));
        }
    }
    Ok(())
}

/// As pid 1, kills every other process of the namespace and reaps them all.
fn kill_the_rest() {
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
    drop_mount_capability()?;
    let cstr = |s: &str| CString::new(s).map_err(|_| format!("NUL byte in `{s}`"));
    let program = cstr(&req.program)?;
    let cwd = cstr(&req.cwd)?;
    let argv = req
        .argv
        .iter()
        .map(|s| cstr(s))
        .collect::<Result<Vec<_>, _>>()?;
    let env = req
        .env
        .iter()
        .map(|s| cstr(s))
        .collect::<Result<Vec<_>, _>>()?;
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe2: {e}"))?;

    // SAFETY: init is single-threaded (forked from the single-threaded helper).
    let action = match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(err_r);
            // Undo what the Rust runtime did to the helper: SIGPIPE ignored would be
            // inherited by the action; start it with an empty signal mask too.
            // SAFETY: restoring the default disposition installs no handler.
            let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
            let errno = match chdir(cwd.as_c_str()) {
                Ok(()) => execve(&program, &argv, &env).unwrap_err(),
                Err(e) => e,
            };
            let _ = nix::unistd::write(&err_w, &(errno as i32).to_ne_bytes());
            // SAFETY: the exec failed; leave the forked copy without unwinding.
            unsafe { libc::_exit(127) }
        }
        ForkResult::Parent { child } => child,
    };
    drop(err_w);
    let mut buf = Vec::new();
    let _ = fs::File::from(err_r).read_to_end(&mut buf);
    if let Ok(bytes) = <[u8; 4]>::try_from(buf.as_slice()) {
        let _ = waitpid(action, None);
        return Ok(HelperResult::ExecFailed(i32::from_ne_bytes(bytes)));
    }
    reap_until(action)
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

/// `CAP_SYS_ADMIN` in linux/capability.h (a stable kernel ABI number; libc does not name it).
const CAP_SYS_ADMIN: libc::c_ulong = 21;

/// Removes `CAP_SYS_ADMIN` from the bounding set, so the action (root in the user namespace,
/// with every other capability there) gets it neither now nor through any later exec. With it,
/// the action could `mount -o remount,rw` its read-only inputs, which live in its own mount
/// namespace and so are not locked by the kernel, and write through them to the cache or the
/// workspace. This process keeps its own capabilities; it has already built the root.
fn drop_mount_capability() -> Result<(), String> {
    // SAFETY: prctl(PR_CAPBSET_DROP) takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!("dropping CAP_SYS_ADMIN from the bounding set: {e}"));
    }
    Ok(())
}
