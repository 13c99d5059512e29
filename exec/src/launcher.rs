//! The holder as a fork server: kiln hands it a request and the action's stdout and stderr,
//! and it clones the sandbox's init straight into new pid, uts and ipc namespaces. Per action
//! that saves spawning and exec'ing a helper, re-reading its binary and joining the holder's
//! namespaces, which were most of a sandboxed action's fixed cost.
//!
//! Protocol, over the holder's stdin (a `SOCK_SEQPACKET` socket):
//! 1. kiln sends one message: the request file's path as bytes, with three descriptors
//!    (`SCM_RIGHTS`): the write ends of the action's stdout and stderr pipes, and one end of
//!    a fresh `SOCK_SEQPACKET` socket pair (the status socket);
//! 2. the holder clones init (`CLONE_PIDFD`) and sends init's pidfd on the status socket, so
//!    kiln can kill the sandbox (killing a pid namespace's init kills all of it) and never
//!    signals a recycled pid;
//! 3. init builds the root, runs the action, kills and reaps whatever the action left in the
//!    namespace, closes its stdout and stderr and sends the [`HelperResult`] on the status
//!    socket; then it exits, and the kernel tears its mount namespace down while kiln already
//!    collects the outputs.
//!
//! The status socket's end of file without a result means init died (killed, or the holder
//! died before cloning it).

use std::ffi::OsStr;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::child::Supervised;
use crate::helper;
use crate::protocol::{HelperRequest, HelperResult};

/// Largest result message kiln reads (a setup error's text is the longest).
const RESULT_BUFFER: usize = 64 * 1024;

/// Longest request path the holder accepts.
const MAX_PATH: usize = 4096;

/// A sandbox the holder started, seen from kiln.
pub(crate) struct Launched {
    /// Init of the sandbox's pid namespace (`None` if init reported before the holder sent it
    /// and the holder died then).
    pidfd: Option<OwnedFd>,
    /// Kiln's end of the status socket.
    status: OwnedFd,
    /// What init reported; `None` until it did, or forever if it died first.
    result: Option<HelperResult>,
    ended: bool,
    /// Receives the result; allocated once, as the output pump asks after every wake-up.
    buf: Vec<u8>,
}

impl Launched {
    /// What init reported, if it did.
    pub(crate) fn result(&self) -> Option<&HelperResult> {
        self.result.as_ref()
    }

    /// Reads the status socket: a result, or end of file. `wait` blocks until one comes.
    fn read_status(&mut self, wait: bool) -> io::Result<bool> {
        if self.ended {
            return Ok(true);
        }
        let flags = if wait {
            MsgFlags::empty()
        } else {
            MsgFlags::MSG_DONTWAIT
        };
        loop {
            let mut iov = [IoSliceMut::new(&mut self.buf)];
            match recvmsg::<()>(self.status.as_raw_fd(), &mut iov, None, flags) {
                Ok(msg) => {
                    let n = msg.bytes;
                    if n > 0 {
                        self.result = serde_json::from_slice(&self.buf[..n]).ok();
                    }
                    self.ended = true;
                    return Ok(true);
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Supervised for Launched {
    fn try_wait(&mut self) -> io::Result<bool> {
        self.read_status(false)
    }

    fn kill_and_wait(&mut self) -> io::Result<()> {
        if let Some(pidfd) = &self.pidfd {
            pidfd_kill(pidfd);
        }
        self.read_status(true).map(|_| ())
    }

    fn kill_stragglers(&mut self) {
        // Init killed and reaped everything before it reported; if it died without
        // reporting, the kernel killed its namespace.
    }

    fn end_fd(&self) -> Option<BorrowedFd<'_>> {
        (!self.ended).then(|| self.status.as_fd())
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        if let (false, Some(pidfd)) = (self.ended, &self.pidfd) {
            pidfd_kill(pidfd);
        }
    }
}

/// Sends SIGKILL to the process behind `pidfd`.
fn pidfd_kill(pidfd: &OwnedFd) {
    // SAFETY: pidfd_send_signal takes a descriptor, a signal number and a null siginfo.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        );
    }
}

/// Kiln's side: asks the holder behind `control` to run the request at `request`, with the
/// action's stdout and stderr going to `stdout` and `stderr` (write ends, consumed).
pub(crate) fn launch(
    control: BorrowedFd<'_>,
    request: &Path,
    stdout: OwnedFd,
    stderr: OwnedFd,
) -> io::Result<Launched> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let path = request.as_os_str().as_bytes();
    let fds = [stdout.as_raw_fd(), stderr.as_raw_fd(), theirs.as_raw_fd()];
    sendmsg::<()>(
        control.as_raw_fd(),
        &[IoSlice::new(path)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    drop((stdout, stderr, theirs));
    let mut launched = Launched {
        pidfd: None,
        status: ours,
        result: None,
        ended: false,
        buf: vec![0u8; RESULT_BUFFER],
    };
    // The holder sends init's pidfd right after cloning it, but a quick init may report first.
    while launched.pidfd.is_none() {
        let mut iov = [IoSliceMut::new(&mut launched.buf)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let received = recvmsg::<()>(
            launched.status.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        );
        let msg = match received {
            Err(Errno::EINTR) => continue,
            other => other?,
        };
        let bytes = msg.bytes;
        let fds = received_fds(&msg)?;
        if bytes == 0 && fds.is_empty() {
            launched.ended = true; // the holder or init died
            break;
        }
        match fds.into_iter().next() {
            Some(pidfd) => launched.pidfd = Some(pidfd),
            None => {
                launched.result = serde_json::from_slice(&launched.buf[..bytes]).ok();
                launched.ended = true;
            }
        }
        if launched.ended && launched.result.is_none() {
            break;
        }
    }
    if launched.pidfd.is_none() && launched.result.is_none() {
        return Err(io::Error::other(
            "the sandbox holder did not start the action",
        ));
    }
    Ok(launched)
}

/// Takes ownership of the descriptors a message carried.
fn received_fds(msg: &nix::sys::socket::RecvMsg<'_, '_, ()>) -> io::Result<Vec<OwnedFd>> {
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            // SAFETY: the kernel installed these descriptors in our table for this message;
            // nothing else owns them.
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    Ok(fds)
}

/// The holder's side: serves requests from `control` until kiln closes it.
pub(crate) fn serve(control: BorrowedFd<'_>) -> Result<(), String> {
    let mut buf = vec![0u8; MAX_PATH];
    loop {
        reap_children();
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 3]);
        let received = recvmsg::<()>(
            control.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        );
        let msg = match received {
            Ok(msg) => msg,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(format!("reading a request: {e}")),
        };
        let (bytes, truncated) = (msg.bytes, msg.flags.contains(MsgFlags::MSG_TRUNC));
        let fds = received_fds(&msg).map_err(|e| format!("reading descriptors: {e}"))?;
        if bytes == 0 && fds.is_empty() {
            return Ok(()); // kiln closed the socket
        }
        let Ok([stdout, stderr, status]) = <[OwnedFd; 3]>::try_from(fds) else {
            continue; // not a request of ours; its descriptors are closed
        };
        if truncated {
            report(
                &status,
                &HelperResult::SetupFailed("request path too long".into()),
            );
            continue;
        }
        let path = PathBuf::from(OsStr::from_bytes(&buf[..bytes]));
        start_init(&path, stdout, stderr, status);
    }
}

/// Reaps the inits that have exited (their results went to kiln already).
fn reap_children() {
    while let Ok(status) = waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

/// Clones init into new pid, uts and ipc namespaces and hands kiln its pidfd.
fn start_init(path: &Path, stdout: OwnedFd, stderr: OwnedFd, status: OwnedFd) {
    let flags = libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_PIDFD;
    let mut pidfd: libc::c_int = -1;
    // SAFETY: a fork-style clone (no new stack, no shared memory) of this single-threaded
    // process, as bubblewrap does: the child continues on a private copy of our memory, so it
    // may allocate and use the standard library. With CLONE_PIDFD the kernel stores the
    // child's pidfd in `pidfd` (the parent_tid argument).
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            &mut pidfd as *mut libc::c_int,
            0usize,
            0usize,
        )
    };
    if pid == 0 {
        helper::launched_init(path, stdout, stderr, status);
    }
    if pid < 0 {
        let e = io::Error::last_os_error();
        report(&status, &HelperResult::SetupFailed(format!("clone: {e}")));
        return;
    }
    // SAFETY: the kernel gave us this new descriptor for the child.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let sent = sendmsg::<()>(
        status.as_raw_fd(),
        &[IoSlice::new(b"P")],
        &[ControlMessage::ScmRights(&[pidfd.as_raw_fd()])],
        MsgFlags::MSG_NOSIGNAL,
        None,
    );
    if sent.is_err() {
        pidfd_kill(&pidfd); // kiln is gone: nobody waits for this action
    }
}

/// Sends `result` on the status socket (init's last word, or the holder's when it could not
/// start init).
pub(crate) fn report(status: &OwnedFd, result: &HelperResult) {
    let json = serde_json::to_vec(result).unwrap_or_default();
    let _ = sendmsg::<()>(
        status.as_raw_fd(),
        &[IoSlice::new(&json)],
        &[],
        MsgFlags::MSG_NOSIGNAL,
        None,
    );
}

/// Reads and parses a request file (in init).
pub(crate) fn read_request(path: &Path) -> Result<HelperRequest, String> {
    let text = std::fs::read(path).map_err(|e| format!("reading {path:?}: {e}"))?;
    serde_json::from_slice(&text).map_err(|e| format!("parsing {path:?}: {e}"))
}
