//! A slot's init: pid 1 of a pid namespace that runs one action after another (see
//! `launcher` for the protocol). It builds the part of the root every action shares once, in
//! a mount namespace of its own, and per action mounts the action's part, forks it into that
//! root (see [`helper::run_action`]), kills and reaps whatever it left, reports, and takes the
//! action's mounts away. Nothing of one action may reach the next: the checks below retire
//! the slot when an action changed what it cannot undo itself.

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::Signal;
use nix::unistd::{sethostname, setsid};

use crate::helper::{self, ActionStdio, SlotRoot};
use crate::launcher;
use crate::mounts;
use crate::protocol::{HelperRequest, HelperResult};

/// Init of a slot the holder cloned, already in its pid, uts and ipc namespaces and in the
/// holder's user and network ones: builds the shared part of the root on `root`, says it is
/// ready on `socket`, then serves actions until kiln closes the socket, saying ready again
/// after each one is cleared away. A slot whose action could not be set up, could not be
/// cleared, or changed init's own limits exits instead.
pub(crate) fn slot_init(root: &Path, socket: OwnedFd) -> ! {
    if set_pdeathsig(Signal::SIGKILL).is_err() || peer_gone(&socket) {
        // SAFETY: kiln is gone; leave without running anything.
        unsafe { libc::_exit(1) }
    }
    let slot = match prepare(root) {
        Ok(slot) => slot,
        Err(msg) => {
            launcher::report(&socket, &HelperResult::SetupFailed(msg));
            // SAFETY: leave without running destructors of the holder's copied state.
            unsafe { libc::_exit(1) }
        }
    };
    // An I/O context exists only after init's first I/O, and reads back differently before;
    // setting the priority it has makes one now.
    // SAFETY: ioprio_get/ioprio_set(IOPRIO_WHO_PROCESS = 1, self[, value]) take integers.
    unsafe {
        let current = libc::syscall(libc::SYS_ioprio_get, 1, 0);
        if current >= 0 {
            libc::syscall(libc::SYS_ioprio_set, 1, 0, current);
        }
    }
    let baseline = Baseline::now();
    launcher::ready(&socket);
    while let Some((path, stdio)) = launcher::next_action(&socket) {
        let req = match launcher::read_request(&path) {
            Ok(req) => req,
            Err(msg) => {
                launcher::report(&socket, &HelperResult::SetupFailed(msg));
                break;
            }
        };
        let run = run_one(&slot, &req, stdio);
        helper::kill_the_rest();
        let created = match run {
            Ok((result, created)) => {
                launcher::report(&socket, &result);
                created
            }
            Err(msg) => {
                launcher::report(&socket, &HelperResult::SetupFailed(msg));
                break; // its mounts may be half made: this slot serves no other action
            }
        };
        // An action may lower init's limits, nice value or CPU set (same uid), which the next
        // action would inherit and init cannot always raise again.
        if clear(root, &req, &created).is_err() {
            break;
        }
        if !baseline.as_ref().is_some_and(Baseline::still_holds) {
            break;
        }
        launcher::ready(&socket);
    }
    // SAFETY: as above.
    unsafe { libc::_exit(0) }
}

/// The slot's lasting state: its own session (no controlling terminal for actions to open),
/// stdio on `/dev/null` (its stdin was the holder's control socket), not dumpable (so no
/// action can open `/proc/1/root`, the host's root), its own mount namespace with the shared
/// part of the sandbox's root sealed read-only, `/proc/sys` read-only but for the pid counter
/// init keeps open.
fn prepare(root: &Path) -> Result<SlotRoot, String> {
    setsid().map_err(|e| format!("setsid: {e}"))?;
    helper::redirect_stdio_to_null()?;
    // SAFETY: prctl(PR_SET_DUMPABLE) takes plain integers.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(format!("prctl(PR_SET_DUMPABLE): {}", Errno::last()));
    }
    mounts::private_namespace()?;
    mounts::system_tree(root)?;
    // Opened before /proc/sys turns read-only; absent without checkpoint/restore support.
    let last_pid = fs::OpenOptions::new()
        .write(true)
        .open(root.join("proc/sys/kernel/ns_last_pid"))
        .ok();
    mounts::protect_proc(root)?;
    mounts::seal(root, true)?;
    sethostname("localhost").map_err(|e| format!("sethostname: {e}"))?;
    Ok(SlotRoot {
        path: root.to_path_buf(),
        last_pid,
    })
}

/// Mounts the action's part of the root and runs it; returns its result and the mount points
/// created in the root for it.
fn run_one(
    slot: &SlotRoot,
    req: &HelperRequest,
    stdio: ActionStdio,
) -> Result<(HelperResult, Vec<PathBuf>), String> {
    let root = slot.path.as_path();
    let unseal = mounts::missing_mount_points(root, req);
    if unseal {
        mounts::seal(root, false)?;
    }
    let created = mounts::action_tree(root, req)?;
    if unseal {
        mounts::seal(root, true)?;
    }
    let result = helper::run_action(req, Some(slot), Some(stdio))?;
    Ok((result, created))
}

/// Takes the finished action's mounts and mount points away.
fn clear(root: &Path, req: &HelperRequest, created: &[PathBuf]) -> Result<(), String> {
    if !created.is_empty() {
        mounts::seal(root, false)?;
    }
    mounts::clear_action_tree(root, req, created)?;
    if !created.is_empty() {
        mounts::seal(root, true)?;
    }
    Ok(())
}

/// Whether kiln closed its end of the socket (it died): `POLLHUP`, which `poll` always
/// reports.
fn peer_gone(socket: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(socket.as_fd(), PollFlags::empty())];
    poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0)
}

/// Number of resource limits (`RLIM_NLIMITS` in linux/resource.h).
const LIMITS: u32 = 16;

/// What of init's state a process with the same uid can change from outside: resource
/// limits (`prlimit`), nice value (`setpriority`), CPU affinity, I/O priority, scheduling
/// policy; and how many mounts init sees, which clearing an action must bring back.
#[derive(PartialEq)]
struct Baseline {
    limits: Vec<(u64, u64)>,
    nice: i32,
    affinity: Vec<u8>,
    io_priority: i64,
    /// Scheduling policy and its priority (`chrt`).
    scheduling: (i32, i32),
    /// Lines of init's `/proc/self/mountinfo`: an action's mount that clearing missed (one
    /// hidden under another) shows as one more.
    mounts: usize,
}

impl Baseline {
    /// Init's state now; `None` if some part cannot be read (then every action retires its
    /// slot, which is safe and slow).
    fn now() -> Option<Baseline> {
        let mut limits = Vec::new();
        for resource in 0..LIMITS {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit writes one rlimit through a pointer to a live local.
            if unsafe { libc::getrlimit(resource as _, &mut limit) } != 0 {
                return None;
            }
            limits.push((limit.rlim_cur, limit.rlim_max));
        }
        // getpriority may return -1 as a value: errno tells an error apart.
        Errno::clear();
        // SAFETY: plain integers in, an integer out.
        let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        if nice == -1 && Errno::last_raw() != 0 {
            return None;
        }
        let mut set = vec![0u8; 1024];
        // SAFETY: the kernel writes at most `set.len()` bytes of CPU mask into `set`.
        let n =
            unsafe { libc::syscall(libc::SYS_sched_getaffinity, 0, set.len(), set.as_mut_ptr()) };
        if n < 0 {
            return None;
        }
        set.truncate(n as usize);
        // SAFETY: ioprio_get(IOPRIO_WHO_PROCESS = 1, self) takes and returns integers.
        let io_priority = unsafe { libc::syscall(libc::SYS_ioprio_get, 1, 0) };
        if io_priority < 0 {
            return None;
        }
        // SAFETY: sched_getscheduler takes a pid; sched_getparam writes one sched_param
        // through a pointer to a live local.
        let scheduling = unsafe {
            let mut param = libc::sched_param { sched_priority: 0 };
            let policy = libc::sched_getscheduler(0);
            if policy < 0 || libc::sched_getparam(0, &mut param) != 0 {
                return None;
            }
            (policy, param.sched_priority)
        };
        let mounts = fs::read_to_string("/proc/self/mountinfo")
            .ok()?
            .lines()
            .count();
        Some(Baseline {
            limits,
            nice,
            affinity: set,
            io_priority,
            scheduling,
            mounts,
        })
    }

    /// Whether init's state is still what it was when the slot started.
    fn still_holds(&self) -> bool {
        Baseline::now().is_some_and(|now| now == *self)
    }
}
