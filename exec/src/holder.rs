//! The namespace holder: one process per sandbox (per build) that owns a user namespace and an
//! empty network namespace with only loopback up. Each action's helper joins those two with
//! `setns` and unshares only its own pid, uts, ipc and mount namespaces, instead of creating and
//! tearing down a user and a network namespace per action, which was the largest fixed cost of a
//! sandboxed action. Actions of one build can therefore reach each other over loopback, never the
//! host's network.
//!
//! The holder lives until kiln closes its stdin (the sandbox is dropped) or dies
//! (`PR_SET_PDEATHSIG`).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::Signal;

use crate::namespaces;

/// `argv[2]` after [`crate::HELPER_ARG`] that selects the holder.
pub(crate) const HOLDER_ARG: &str = "--holder";

/// A running holder; dropping it ends the process.
#[derive(Debug)]
pub(crate) struct Holder {
    child: Child,
}

impl Holder {
    /// Starts the holder and waits until its namespaces exist (it says so on stdout).
    pub(crate) fn start(helper: &Path) -> Option<Holder> {
        #[allow(clippy::disallowed_methods)] // The sandbox is the place allowed to spawn.
        let mut child = Command::new(helper)
            .arg(crate::HELPER_ARG)
            .arg(HOLDER_ARG)
            .env_clear()
            .stdin(Stdio::piped())
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
        Some(Holder { child })
    }

    /// Whether the holder still runs.
    pub(crate) fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The holder's pid, whose `/proc/<pid>/ns/{user,net}` helpers join.
    pub(crate) fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The holder process's body: enter a user and a network namespace, bring loopback up, report
/// ready, and wait for stdin to close.
pub(crate) fn run_holder() -> Result<(), String> {
    set_pdeathsig(Signal::SIGKILL).map_err(|e| format!("prctl(PR_SET_PDEATHSIG): {e}"))?;
    namespaces::enter_shared()?;
    namespaces::loopback_up().map_err(|e| format!("bringing loopback up: {e}"))?;
    use std::io::Write;
    let mut out = std::io::stdout();
    out.write_all(b"R")
        .and_then(|()| out.flush())
        .map_err(|e| format!("reporting ready: {e}"))?;
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    Ok(())
}
