//! The namespace holder: one process per sandbox (per build) that owns a user namespace and an
//! empty network namespace with only loopback up, and starts every action's sandbox inside them
//! as a fork server (see `launcher`), instead of each action creating and tearing down a user and
//! a network namespace and spawning a helper, which were the largest fixed costs of a sandboxed
//! action. Actions of one build can therefore reach each other over loopback, never the host's
//! network.
//!
//! Actions cannot create user namespaces of their own (see [`forbid_nested_user_namespaces`]).
//!
//! The holder lives until kiln closes its stdin, the control socket (the sandbox is dropped),
//! or dies (`PR_SET_PDEATHSIG`).

use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::Signal;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use crate::launcher::{self, Slot};
use crate::namespaces;

/// `argv[2]` after [`crate::HELPER_ARG`] that selects the holder.
pub(crate) const HOLDER_ARG: &str = "--holder";

/// A running holder; dropping it ends the process.
#[derive(Debug)]
pub(crate) struct Holder {
    child: Mutex<Child>,
    /// Kiln's end of the control socket (the holder's stdin).
    control: OwnedFd,
}

impl Holder {
    /// Starts the holder and waits until its namespaces exist (it says so on stdout).
    pub(crate) fn start(helper: &Path) -> Option<Holder> {
        let (control, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .ok()?;
        #[allow(clippy::disallowed_methods)] // The sandbox is the place allowed to spawn.
        let mut child = Command::new(helper)
            .arg(crate::HELPER_ARG)
            .arg(HOLDER_ARG)
            .env_clear()
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .ok()?;
        let mut ready = [0u8; 1];
        let ok = child
            .stdout
            .take()
            .is_some_and(|mut out| out.read_exact(&mut ready).is_ok() && ready[0] == b'R');
        if !ok {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        Some(Holder {
            child: Mutex::new(child),
            control,
        })
    }

    /// Whether the holder still runs.
    pub(crate) fn is_alive(&self) -> bool {
        self.child
            .lock()
            .is_ok_and(|mut child| matches!(child.try_wait(), Ok(None)))
    }

    /// Has the holder start a sandbox slot whose root is mounted on the empty directory `dir`.
    pub(crate) fn start_slot(&self, dir: PathBuf) -> io::Result<Slot> {
        launcher::start_slot(self.control.as_fd(), dir)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        if let Ok(child) = self.child.get_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The holder process's body: enter a user and a network namespace, bring loopback up, report
/// ready, and start sandboxes until kiln closes the control socket (stdin).
pub(crate) fn run_holder() -> Result<(), String> {
    set_pdeathsig(Signal::SIGKILL).map_err(|e| format!("prctl(PR_SET_PDEATHSIG): {e}"))?;
    namespaces::enter_shared()?;
    namespaces::loopback_up().map_err(|e| format!("bringing loopback up: {e}"))?;
    forbid_nested_user_namespaces()?;
    use std::io::Write;
    let mut out = std::io::stdout();
    out.write_all(b"R")
        .and_then(|()| out.flush())
        .map_err(|e| format!("reporting ready: {e}"))?;
    launcher::serve(std::io::stdin().as_fd())
}

/// Sets this user namespace's limit on user namespaces created inside it to 0. An action only
/// changes its root (`chroot`) into its slot's, whose mount namespace still holds the host's
/// tree; in a user namespace of its own it would regain `CAP_SYS_CHROOT` and could walk out.
/// The kernel already refuses a user namespace to a chrooted process; this limit is a second
/// lock (the action cannot raise it: `/proc/sys` is read-only to it and it has no
/// `CAP_SYS_RESOURCE`, as `an_action_cannot_leave_its_root` checks). Without it the holder does not start, and
/// every action gets a one-shot sandbox that `pivot_root`s instead.
fn forbid_nested_user_namespaces() -> Result<(), String> {
    let path = "/proc/sys/user/max_user_namespaces";
    std::fs::write(path, "0").map_err(|e| format!("writing 0 to {path}: {e}"))
}
