//! `kiln watch run`: a built program kept running in the background between rebuilds, in a
//! process group of its own so that stopping it stops everything it started. Stopping sends
//! SIGTERM to the group, waits a grace period, then SIGKILLs it. If Kiln dies, the program gets
//! SIGTERM from the kernel (`PR_SET_PDEATHSIG`).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// A running program and its process group.
#[derive(Debug)]
pub struct Service {
    child: Child,
    exited: Option<ExitStatus>,
}

impl Service {
    /// Starts `program` with `args` in `cwd`, adding `env` to the inherited environment; its
    /// stdout and stderr are the terminal's, its stdin is empty.
    pub fn start(
        program: &Path,
        args: &[String],
        cwd: &Path,
        env: &[(String, String)],
    ) -> std::io::Result<Service> {
        #[allow(clippy::disallowed_methods)] // exec is the crate that spawns processes
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(cwd)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .process_group(0);
        // SAFETY: the closure runs in the forked child before exec and only calls prctl, which is
        // async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
            });
        }
        let child = command.spawn()?;
        Ok(Service {
            child,
            exited: None,
        })
    }

    /// The program's process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the program has ended on its own.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Stops the program and everything in its process group: SIGTERM, then SIGKILL once `grace`
    /// has passed. Returns once the program has been reaped.
    pub fn stop(&mut self, grace: Duration) {
        let group = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while self.exited().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // The leader may be gone while others of its group still run: always finish the group.
        let _ = killpg(group, Signal::SIGKILL);
        if self.exited.is_none() {
            self.exited = self.child.wait().ok();
        }
    }
}

/// Stops the process group `pgid` from a signal handler's thread (Ctrl-C in `kiln watch run`):
/// SIGTERM, up to `grace` for it to go, then SIGKILL.
pub fn stop_group(pgid: u32, grace: Duration) {
    let group = Pid::from_raw(pgid as i32);
    if killpg(group, Signal::SIGTERM).is_err() {
        return;
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        // The leader is our child: reap it, or as a zombie it keeps the group alive for `killpg`.
        let _ = nix::sys::wait::waitpid(group, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        // Signal 0 only checks whether any member is left.
        if killpg(group, None).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = killpg(group, Signal::SIGKILL);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_ends_the_program_and_its_children() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let pids = dir.path().join("pids");
        let script = format!(
            "sleep 300 & echo $! > {p}; trap '' TERM; while true; do sleep 0.05; done",
            p = pids.display()
        );
        let mut service = Service::start(
            Path::new("/bin/sh"),
            &["-c".to_string(), script],
            dir.path(),
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        // The shell creates the file before `echo` writes the pid into it: wait for the line.
        let deadline = Instant::now() + Duration::from_secs(10);
        let written = || {
            std::fs::read_to_string(&pids)
                .ok()
                .filter(|text| text.ends_with('\n'))
        };
        while written().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let grandchild: i32 = written()
            .unwrap_or_else(|| panic!("no pid written to {}", pids.display()))
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        // The shell ignores SIGTERM: only the SIGKILL after the grace period ends it.
        service.stop(Duration::from_millis(200));
        assert!(service.exited().is_some());
        // Gone, or a zombie waiting for its new parent to reap it.
        let alive = || {
            std::fs::read_to_string(format!("/proc/{grandchild}/stat")).is_ok_and(|stat| {
                !stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!alive(), "the program's child must be gone too");
    }
}
