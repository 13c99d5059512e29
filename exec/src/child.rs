//! Runs one started process to completion on the calling thread: reads its stdout and
//! stderr with `poll` (calling the line hooks as lines arrive), enforces the timeout, and
//! kills the whole process tree when it times out or ends (no stragglers). The process is a
//! [`Supervised`]: a spawned child ([`SpawnedChild`], killed by process group) or a sandbox
//! the holder started (`launcher::Launched`, killed through its pid namespace's init).

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Callbacks that see output lines while the action runs (e.g. rustc's artifact
/// notifications on stderr). Lines are passed without the trailing newline, lossily
/// decoded as UTF-8.
#[derive(Clone, Copy, Default)]
pub struct RunHooks<'a> {
    /// Called for each stdout line.
    pub on_stdout_line: Option<&'a (dyn Fn(&str) + Sync)>,
    /// Called for each stderr line.
    pub on_stderr_line: Option<&'a (dyn Fn(&str) + Sync)>,
    /// When this becomes true the process group is killed and the run ends as cancelled
    /// (checked at least every 20 ms).
    pub cancel: Option<&'a std::sync::atomic::AtomicBool>,
}

/// What the process left behind.
pub(crate) struct Captured {
    pub timed_out: bool,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub cancelled: bool,
}

/// A started process tree that [`run`] can watch and kill.
pub(crate) trait Supervised {
    /// Whether it has ended, without blocking.
    fn try_wait(&mut self) -> io::Result<bool>;
    /// Kills the whole tree and waits until it has ended.
    fn kill_and_wait(&mut self) -> io::Result<()>;
    /// Called once after [`Supervised::try_wait`] said it ended: kills what it left behind.
    fn kill_stragglers(&mut self);
    /// A descriptor that becomes readable when it ends, so `poll` wakes without a timer.
    fn end_fd(&self) -> Option<BorrowedFd<'_>>;
}

/// A child spawned as leader of its own process group, with piped stdout and stderr.
pub(crate) struct SpawnedChild {
    child: Child,
    pidfd: Option<OwnedFd>,
    /// Its exit status, once reaped.
    pub status: Option<ExitStatus>,
}

impl SpawnedChild {
    /// Watches `child` (spawned with `process_group(0)`).
    pub(crate) fn new(child: Child) -> SpawnedChild {
        let pidfd = pidfd_open(child.id());
        SpawnedChild {
            child,
            pidfd,
            status: None,
        }
    }

    /// Its stdout and stderr pipes (once).
    pub(crate) fn take_pipes(&mut self) -> (Option<OwnedFd>, Option<OwnedFd>) {
        (
            self.child.stdout.take().map(OwnedFd::from),
            self.child.stderr.take().map(OwnedFd::from),
        )
    }

    fn group(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }
}

impl Supervised for SpawnedChild {
    fn try_wait(&mut self) -> io::Result<bool> {
        if let Some(status) = self.child.try_wait()? {
            self.status = Some(status);
        }
        Ok(self.status.is_some())
    }

    fn kill_and_wait(&mut self) -> io::Result<()> {
        let _ = killpg(self.group(), Signal::SIGKILL);
        self.status = Some(self.child.wait()?);
        Ok(())
    }

    fn kill_stragglers(&mut self) {
        let _ = killpg(self.group(), Signal::SIGKILL);
    }

    fn end_fd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(|fd| fd.as_fd())
    }
}

/// How often a cancellable run checks its flag.
const CANCEL_TICK: Duration = Duration::from_millis(20);

/// How long to keep reading after the process group was killed.
const DRAIN: Duration = Duration::from_secs(2);
/// Poll period when pidfd_open is unavailable.
const TICK: Duration = Duration::from_millis(5);

/// Pumps `process`, whose stdout and stderr are the read ends `stdout` and `stderr`.
pub(crate) fn run(
    process: &mut dyn Supervised,
    (stdout, stderr): (Option<OwnedFd>, Option<OwnedFd>),
    timeout: Option<Duration>,
    hooks: RunHooks<'_>,
) -> io::Result<Captured> {
    let start = Instant::now();
    let mut out = Stream::new(stdout, hooks.on_stdout_line);
    let mut err = Stream::new(stderr, hooks.on_stderr_line);
    let mut status = None;
    let mut timed_out = false;
    let mut cancelled = false;
    let mut drain_until = None;
    loop {
        if status.is_none() {
            if process.try_wait()? {
                process.kill_stragglers();
                status = Some(());
                drain_until = Some(Instant::now() + DRAIN);
            } else if timeout.is_some_and(|t| start.elapsed() >= t) {
                process.kill_and_wait()?;
                status = Some(());
                timed_out = true;
                drain_until = Some(Instant::now() + DRAIN);
            } else if hooks
                .cancel
                .is_some_and(|c| c.load(std::sync::atomic::Ordering::SeqCst))
            {
                process.kill_and_wait()?;
                status = Some(());
                cancelled = true;
                drain_until = Some(Instant::now() + DRAIN);
            }
        }
        let open = out.is_open() || err.is_open();
        if status.is_some() && (!open || drain_until.is_some_and(|d| Instant::now() >= d)) {
            break;
        }
        let mut wait = drain_until
            .or_else(|| timeout.map(|t| start + t))
            .map(|d| d.saturating_duration_since(Instant::now()));
        let end_fd = process.end_fd();
        if status.is_none() && end_fd.is_none() {
            wait = Some(wait.map_or(TICK, |w| w.min(TICK)));
        }
        if status.is_none() && hooks.cancel.is_some() {
            wait = Some(wait.map_or(CANCEL_TICK, |w| w.min(CANCEL_TICK)));
        }
        let mut fds = Vec::with_capacity(3);
        for stream in [&out, &err] {
            if let Some(fd) = &stream.pipe {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            }
        }
        if let (None, Some(fd)) = (status, end_fd) {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        let ms = wait.map_or(PollTimeout::NONE, |w| {
            PollTimeout::try_from(w.as_millis().min(60_000) as i32 + 1).unwrap_or(PollTimeout::MAX)
        });
        match poll(&mut fds, ms) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        drop(fds);
        out.pump()?;
        err.pump()?;
    }
    out.finish();
    err.finish();
    Ok(Captured {
        timed_out,
        stdout: out.buf,
        stderr: err.buf,
        cancelled,
    })
}

/// One output pipe, its captured bytes, and the line hook.
struct Stream<'a> {
    pipe: Option<std::fs::File>,
    buf: Vec<u8>,
    scanned: usize,
    line_start: usize,
    hook: Option<&'a (dyn Fn(&str) + Sync)>,
}

impl<'a> Stream<'a> {
    fn new(pipe: Option<OwnedFd>, hook: Option<&'a (dyn Fn(&str) + Sync)>) -> Self {
        let pipe = pipe.map(std::fs::File::from);
        if let Some(p) = &pipe {
            // Non-blocking, so that a pump after a spurious wake-up cannot hang.
            let _ = nix::fcntl::fcntl(
                p,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            );
        }
        Stream {
            pipe,
            buf: Vec::new(),
            scanned: 0,
            line_start: 0,
            hook,
        }
    }

    fn is_open(&self) -> bool {
        self.pipe.is_some()
    }

    /// Reads whatever is available; closes the pipe at end of file.
    fn pump(&mut self) -> io::Result<()> {
        let Some(pipe) = &mut self.pipe else {
            return Ok(());
        };
        let mut chunk = [0u8; 65536];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => {
                    self.pipe = None;
                    break;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.lines();
        Ok(())
    }

    fn lines(&mut self) {
        let Some(hook) = self.hook else {
            return;
        };
        while let Some(i) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
            let end = self.scanned + i;
            hook(&String::from_utf8_lossy(&self.buf[self.line_start..end]));
            self.scanned = end + 1;
            self.line_start = end + 1;
        }
        self.scanned = self.buf.len();
    }

    /// Passes a last line without a newline to the hook.
    fn finish(&mut self) {
        if let Some(hook) = self.hook {
            if self.line_start < self.buf.len() {
                hook(&String::from_utf8_lossy(&self.buf[self.line_start..]));
            }
        }
    }
}

/// A descriptor that becomes readable when the process exits (Linux 5.3+), so `poll` wakes
/// on exit without a timer; `None` on older kernels.
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: a non-negative return value is a descriptor that nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
