//! The holder as a fork server of sandbox *slots*: kiln hands it a socket and an empty
//! directory, and it clones a slot's init straight into new pid, uts and ipc namespaces. The
//! init mounts the part of the sandbox's root every action shares on that directory once,
//! then runs actions one after another, so an action costs neither a clone and teardown of
//! namespaces nor a root built from nothing: only its own mounts, a fork and an exec.
//!
//! Protocol, over the holder's stdin (a `SOCK_SEQPACKET` socket):
//! 1. kiln sends one message: the slot directory's path as bytes, with one end of a fresh
//!    `SOCK_SEQPACKET` socket pair (the slot socket) attached (`SCM_RIGHTS`);
//! 2. the holder clones the slot's init (`CLONE_PIDFD`) and sends its pidfd on the slot
//!    socket, so kiln can kill the slot (killing a pid namespace's init kills all of it) and
//!    never signals a recycled pid; init sends `R` once its root is built, or a
//!    [`HelperResult::SetupFailed`] and exits.
//!
//! Then, over the slot socket, per action:
//! 3. kiln sends the request file's path with the write ends of the action's stdout and
//!    stderr pipes attached;
//! 4. init mounts the action's part of the root, forks the action (which changes its root to
//!    the slot's), reaps until it ends, kills and reaps whatever it left in the namespace,
//!    and sends the [`HelperResult`]; then it takes the action's mounts away, while kiln
//!    already collects the outputs, and sends `R` again. A slot that failed to set an action
//!    up or to clear it, or whose init an action changed (limits, nice value, CPU set), exits
//!    instead; kiln uses a slot only after its `R`.
//!
//! End of file on the slot socket without a result means init died (killed, or its holder
//! died).

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

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::child::Supervised;
use crate::helper::ActionStdio;
use crate::protocol::{HelperRequest, HelperResult};

/// Largest result message kiln reads (a setup error's text is the longest).
const RESULT_BUFFER: usize = 64 * 1024;

/// Longest request path the holder accepts.
const MAX_PATH: usize = 4096;

/// A slot the holder started, seen from kiln: idle between actions. Dropping it kills it.
pub(crate) struct Slot {
    /// Init of the slot's pid namespace.
    pidfd: OwnedFd,
    /// Kiln's end of the slot socket.
    socket: OwnedFd,
    /// The host directory its root is mounted on (in its own mount namespace only).
    dir: PathBuf,
    /// Receives results; allocated once per slot, as the output pump asks after every wake-up.
    buf: Vec<u8>,
    /// Init has reported an action and has yet to say it cleared it away.
    clearing: bool,
}

/// How long (ms) an idle slot may take to clear an action away before kiln gives up on it.
const CLEAR_WAIT_MS: u16 = 10_000;

impl Slot {
    /// Whether it is ready for an action: waits (briefly; init clears while kiln collects the
    /// outputs) for init to say it cleared the last one away. End of file, anything else, or
    /// no word in time: it died or retired, and must not be used.
    pub(crate) fn is_ready(&mut self) -> bool {
        if !self.clearing {
            return true;
        }
        let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
        let polled = loop {
            match poll(&mut fds, PollTimeout::from(CLEAR_WAIT_MS)) {
                Err(Errno::EINTR) => continue,
                other => break other,
            }
        };
        if !polled.is_ok_and(|n| n == 1) {
            return false;
        }
        let mut iov = [IoSliceMut::new(&mut self.buf)];
        let ready = recvmsg::<()>(
            self.socket.as_raw_fd(),
            &mut iov,
            None,
            MsgFlags::MSG_DONTWAIT,
        )
        .is_ok_and(|msg| msg.bytes == 1)
            && self.buf[0] == b'R';
        self.clearing = !ready;
        ready
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        pidfd_kill(&self.pidfd);
        // Its root is mounted there only in its own namespace, so the directory can go.
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// An action running in a [`Slot`], seen from kiln.
pub(crate) struct Launched {
    slot: Slot,
    /// What init reported; `None` until it did, or forever if it died first.
    result: Option<HelperResult>,
    ended: bool,
    /// Kiln killed the slot (timeout, cancel).
    killed: bool,
}

impl Launched {
    /// What init reported, if it did.
    pub(crate) fn result(&self) -> Option<&HelperResult> {
        self.result.as_ref()
    }

    /// The slot back, if it reported a result and was not killed: it serves the next action
    /// once it says it cleared this one away (see [`Slot::is_ready`]).
    pub(crate) fn into_slot(mut self) -> Option<Slot> {
        self.slot.clearing = true;
        (self.result.is_some() && !self.killed).then_some(self.slot)
    }

    /// Reads the slot socket: a result, or end of file. `wait` blocks until one comes.
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
            let mut iov = [IoSliceMut::new(&mut self.slot.buf)];
            match recvmsg::<()>(self.slot.socket.as_raw_fd(), &mut iov, None, flags) {
                Ok(msg) => {
                    let n = msg.bytes;
                    if n > 0 {
                        self.result = serde_json::from_slice(&self.slot.buf[..n]).ok();
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
        pidfd_kill(&self.slot.pidfd);
        self.killed = true;
        self.read_status(true).map(|_| ())
    }

    fn kill_stragglers(&mut self) {
        // Init killed and reaped everything before it reported; if it died without
        // reporting, the kernel killed its namespace.
    }

    fn end_fd(&self) -> Option<BorrowedFd<'_>> {
        (!self.ended).then(|| self.slot.socket.as_fd())
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

/// Kiln's side: asks the holder behind `control` for a new slot with its root on the empty
/// directory `dir`, and waits until it is ready.
pub(crate) fn start_slot(control: BorrowedFd<'_>, dir: PathBuf) -> io::Result<Slot> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    sendmsg::<()>(
        control.as_raw_fd(),
        &[IoSlice::new(dir.as_os_str().as_bytes())],
        &[ControlMessage::ScmRights(&[theirs.as_raw_fd()])],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    drop(theirs);
    let mut buf = vec![0u8; RESULT_BUFFER];
    let (mut pidfd, mut ready) = (None, false);
    // The holder sends the pidfd right after cloning init, but init may be ready first.
    while pidfd.is_none() || !ready {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let received = recvmsg::<()>(
            ours.as_raw_fd(),
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
            return Err(io::Error::other(
                "the sandbox slot ended before it was ready",
            ));
        }
        if let Some(fd) = fds.into_iter().next() {
            pidfd = Some(fd);
        } else if &buf[..bytes] == b"R" {
            ready = true;
        } else {
            let why = match serde_json::from_slice(&buf[..bytes]) {
                Ok(HelperResult::SetupFailed(msg)) => msg,
                _ => "an unexpected message".to_string(),
            };
            return Err(io::Error::other(format!("starting a sandbox slot: {why}")));
        }
    }
    let pidfd = pidfd.ok_or_else(|| io::Error::other("no pidfd"))?;
    Ok(Slot {
        pidfd,
        socket: ours,
        dir,
        buf,
        clearing: false,
    })
}

/// Kiln's side: has `slot` run the request at `request`, with the action's stdout and stderr
/// going to `stdout` and `stderr` (write ends, consumed).
pub(crate) fn launch(
    slot: Slot,
    request: &Path,
    stdout: OwnedFd,
    stderr: OwnedFd,
) -> io::Result<Launched> {
    let fds = [stdout.as_raw_fd(), stderr.as_raw_fd()];
    sendmsg::<()>(
        slot.socket.as_raw_fd(),
        &[IoSlice::new(request.as_os_str().as_bytes())],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    Ok(Launched {
        slot,
        result: None,
        ended: false,
        killed: false,
    })
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

/// The holder's side: serves requests for slots from `control` until kiln closes it.
pub(crate) fn serve(control: BorrowedFd<'_>) -> Result<(), String> {
    let mut buf = vec![0u8; MAX_PATH];
    loop {
        reap_children();
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
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
        let Ok([socket]) = <[OwnedFd; 1]>::try_from(fds) else {
            continue; // not a request of ours; its descriptors are closed
        };
        if truncated {
            report(
                &socket,
                &HelperResult::SetupFailed("slot directory path too long".into()),
            );
            continue;
        }
        let dir = PathBuf::from(OsStr::from_bytes(&buf[..bytes]));
        start_slot_init(&dir, socket);
    }
}

/// Reaps the slot inits that have exited.
fn reap_children() {
    while let Ok(status) = waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

/// Clones a slot's init into new pid, uts and ipc namespaces and hands kiln its pidfd.
fn start_slot_init(dir: &Path, socket: OwnedFd) {
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
        crate::slot::slot_init(dir, socket);
    }
    if pid < 0 {
        let e = io::Error::last_os_error();
        report(&socket, &HelperResult::SetupFailed(format!("clone: {e}")));
        return;
    }
    // SAFETY: the kernel gave us this new descriptor for the child.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let sent = sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(b"P")],
        &[ControlMessage::ScmRights(&[pidfd.as_raw_fd()])],
        MsgFlags::MSG_NOSIGNAL,
        None,
    );
    if sent.is_err() {
        pidfd_kill(&pidfd); // kiln is gone: nobody will use this slot
    }
}

/// Sends `result` on the slot socket (init's word on an action or its own setup, or the
/// holder's when it could not start init).
pub(crate) fn report(socket: &OwnedFd, result: &HelperResult) {
    let json = serde_json::to_vec(result).unwrap_or_default();
    let _ = sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(&json)],
        &[],
        MsgFlags::MSG_NOSIGNAL,
        None,
    );
}

/// Init's side: says the slot is ready.
pub(crate) fn ready(socket: &OwnedFd) {
    let _ = sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(b"R")],
        &[],
        MsgFlags::MSG_NOSIGNAL,
        None,
    );
}

/// Init's side: waits for the next action: its request file's path and its stdout and
/// stderr. `None` when kiln closed the socket (or sent something else: then the slot ends).
pub(crate) fn next_action(socket: &OwnedFd) -> Option<(PathBuf, ActionStdio)> {
    let mut buf = vec![0u8; MAX_PATH];
    loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 2]);
        let received = recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        );
        let msg = match received {
            Err(Errno::EINTR) => continue,
            Err(_) => return None,
            Ok(msg) => msg,
        };
        let (bytes, truncated) = (msg.bytes, msg.flags.contains(MsgFlags::MSG_TRUNC));
        let [stdout, stderr] = <[OwnedFd; 2]>::try_from(received_fds(&msg).ok()?).ok()?;
        if truncated {
            return None;
        }
        let path = PathBuf::from(OsStr::from_bytes(&buf[..bytes]));
        return Some((path, ActionStdio { stdout, stderr }));
    }
}

/// Reads and parses a request file (in init).
pub(crate) fn read_request(path: &Path) -> Result<HelperRequest, String> {
    let text = std::fs::read(path).map_err(|e| format!("reading {path:?}: {e}"))?;
    serde_json::from_slice(&text).map_err(|e| format!("parsing {path:?}: {e}"))
}
