//! Plain mode, for hosts without user namespaces: the action runs in the staged exec root
//! (`scratch/root`) with a cleared environment, in its own process group, and dies with
//! kiln. Nothing hides the rest of the host: paths outside the exec root stay readable and,
//! permissions allowing, writable. Inputs are copies, so the sources stay intact.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};

use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::Signal;
use nix::unistd::getppid;

use crate::scratch::Scratch;
use crate::{ExitKind, SandboxRequest};

/// The command for `req`: a relative `argv[0]` is resolved against the staged exec root, an
/// absolute one inside a mount (the Go linker in the SDK) against the mount's host directory.
pub(crate) fn command(req: &SandboxRequest, scratch: &Scratch) -> Command {
    let root = scratch.exec_root();
    let argv0 = &req.argv[0];
    let parent = std::process::id() as i32;
    // Without a mount namespace there is no `/kiln/execroot`: paths that name it (test
    // environments do) are pointed at the staged root instead.
    let staged = root.to_string_lossy().to_string();
    // Likewise there are no extra mounts: toolchain paths (`external/kiln_go_sdk`) are pointed at
    // the host directories they stand for.
    // Mounts first: one inside the exec root must become its host directory, not a path in the
    // staged root.
    let relocate = |value: &String| {
        let mut value = value.clone();
        for mount in &req.mounts {
            value = value.replace(&mount.sandbox_path, &mount.host.to_string_lossy());
        }
        value.replace(crate::EXEC_ROOT, &staged)
    };
    // An absolute program may name a mount (the Go linker in the SDK), a relative one the
    // staged exec root.
    let program = if argv0.starts_with('/') {
        std::path::PathBuf::from(relocate(argv0))
    } else {
        root.join(argv0)
    };
    #[allow(clippy::disallowed_methods)] // The sandbox is the place allowed to spawn.
    let mut cmd = Command::new(program);
    cmd.arg0(argv0)
        .args(req.argv[1..].iter().map(relocate))
        .env_clear()
        .envs(req.env.iter().map(|(k, v)| (k, relocate(v))))
        .env("TMPDIR", scratch.tmp())
        .current_dir(root.join(&req.working_directory))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: runs between fork and exec in the child and makes only two syscalls (prctl,
    // getppid) without allocating; the parent's pid was read before the fork.
    unsafe {
        cmd.pre_exec(move || {
            set_pdeathsig(Signal::SIGKILL)?;
            if getppid().as_raw() != parent {
                return Err(std::io::Error::other("kiln exited"));
            }
            Ok(())
        });
    }
    cmd
}

/// The exit of a plain-mode action.
pub(crate) fn exit_kind(status: ExitStatus, timed_out: bool) -> ExitKind {
    match (timed_out, status.code(), status.signal()) {
        (true, _, _) => ExitKind::TimedOut,
        (_, Some(code), _) => ExitKind::Code(code),
        (_, None, Some(sig)) => ExitKind::Signal(sig),
        _ => ExitKind::Code(-1),
    }
}
