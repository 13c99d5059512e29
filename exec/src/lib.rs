//! `kiln-exec`: the one place in Kiln that spawns processes. It runs one build action in a
//! Linux sandbox and hands back its exit, output streams and output files.
//!
//! # API
//!
//! ```no_run
//! use kiln_exec::{InputFile, Sandbox, SandboxConfig, SandboxRequest};
//!
//! let sandbox = Sandbox::new(SandboxConfig {
//!     helper: std::env::current_exe().unwrap(), // must handle `HELPER_ARG`, see below
//!     mode_override: None,                      // probe namespaces, else plain
//! });
//! if let Some(why) = sandbox.fallback_reason() {
//!     eprintln!("Sandboxing unavailable, running actions unisolated: {why}");
//! }
//! let outcome = sandbox.run(&SandboxRequest {
//!     argv: vec!["/bin/sh".into(), "-c".into(), "tr a-z A-Z < in.txt > out.txt".into()],
//!     env: vec![("PATH".into(), "/usr/bin:/bin".into())],
//!     inputs: vec![InputFile {
//!         path: "in.txt".into(),
//!         source: "/cas/ab12".into(),
//!         executable: false,
//!         immutable: true,
//!     }],
//!     outputs: vec!["out.txt".into()],
//!     scratch: "/var/kiln/sandbox/42".into(),
//!     ..Default::default()
//! })?;
//! let (_, host_path) = &outcome.outputs[0]; // Some(scratch/root/out.txt) if produced
//! // Move outputs into the CAS, then drop `outcome`: that removes the scratch directory (on a
//! // background thread; once the sandbox is dropped too, it is gone).
//! # Ok::<(), kiln_exec::ExecError>(())
//! ```
//!
//! The binary named as `helper` (the `kiln` binary) must start with
//! `if std::env::args().nth(1).as_deref() == Some(kiln_exec::HELPER_ARG) { kiln_exec::helper_main() }`
//! before it starts any thread.
//!
//! # Modes
//!
//! * [`SandboxMode::Namespaces`]: the action runs in a user namespace where the caller is
//!   root, in a pid namespace whose init is the sandbox's (with its own uts and ipc
//!   namespaces), under a root on a tmpfs: read-only system directories, a few `/dev` nodes,
//!   a fresh `/proc` and `/dev/shm`, a private `/tmp` (`TMPDIR`), the staged exec root at
//!   [`EXEC_ROOT`] (writable, every input read-only), extra read-only mounts. Hostname
//!   `localhost`; `CAP_SYS_ADMIN` is dropped from the bounding set (so the action cannot
//!   remount an input writable); a session of its own (no controlling terminal); default
//!   signal dispositions; exactly the requested environment plus `TMPDIR`. Undeclared
//!   files are absent; writing to an input fails with `EROFS` or `EBUSY`. Two ways in:
//!   - a *slot* (see "Shared namespaces"), the usual one: an init that keeps the part of the
//!     root every action shares mounted in its own mount namespace and runs actions one after
//!     another, each with its own mounts on top, in its own ipc namespace, changing its root
//!     (`chroot`) into the slot's, as pid 2; the action also loses `CAP_SYS_CHROOT`,
//!     `CAP_SYS_PTRACE`, `CAP_SYS_RESOURCE` and `CAP_NET_ADMIN`, `/proc/sys` is read-only,
//!     init is not dumpable, and no user namespace can be created inside, so nothing leads
//!     back to the host's tree that the slot's mount namespace still holds. An action that
//!     changed init's limits, nice value, scheduling policy or CPU set, or left a mount
//!     behind, retires its slot;
//!   - a one-shot helper, for an action that asks for the host network or when the holder
//!     cannot start: a fresh, single-threaded exec of the helper binary (as `CLONE_NEWUSER`
//!     requires) that unshares user, pid, uts, ipc and (unless `network`) net namespaces,
//!     builds the whole root and `pivot_root`s into it.
//! * [`SandboxMode::Plain`]: the action runs in `scratch/root` with a cleared environment
//!   in its own process group; inputs are read-only copies. No isolation: use only where
//!   namespaces are unavailable, and say so ([`Sandbox::fallback_reason`]).
//!
//! In both modes the whole process tree is killed on timeout, when the action exits, and
//! when kiln dies (`PR_SET_PDEATHSIG`; in namespaces mode the pid namespace's init dies too).
//!
//! # Limitations
//!
//! * Namespaces mode: read-only binds of system directories are not recursive read-only
//!   (a submount under `/usr` would stay writable; `mount_setattr` would fix that on 5.12+).
//!   When kiln runs as root, root inside the sandbox is host root for files that stay
//!   visible (e.g. it can read `/etc/shadow`); nothing outside the sandbox is writable.
//! * Output files must be regular files (a symlink output is reported as missing), and
//!   input symlinks are not supported yet.
//! * Plain mode: no isolation at all; background processes that leave the action's process
//!   group survive it, and only the direct child dies with kiln. Inputs are copies, which
//!   costs time and space on file systems without reflinks.
//!
//! # Module map
//!
//! `request` (types), `validate` (path checks), `staging` (scratch/root), `plan` (which
//! paths become read-only mounts), `sandbox` (the driver), `child` (poll loop, timeout,
//! line hooks), `plain`, `namespaced` (kiln side of the helper), `protocol` (helper
//! messages), `helper` (the one-shot helper, the slot's init, and forking the action), `holder`
//! (the per-sandbox process owning the user and network namespaces every action runs in),
//! `launcher` (the holder as a fork server of slots, the slot protocol, kiln's side of it),
//! `slot` (a slot's init), `namespaces` (unshare, id maps, loopback, probe), `mounts` (the new root), `scratch` (its lifetime), `reaper` (removes
//! finished scratch trees on a background thread), `input_pool` (one copy per build of each
//! small immutable input, hard-linked into staged trees).
//!
//! # Shared namespaces
//!
//! A [`Sandbox`] in namespaces mode starts one holder process that creates a user namespace
//! and an empty network namespace (loopback up), forbids user namespaces inside it, then
//! serves as a fork server of slots: for each slot kiln asks for, it clones an init straight
//! into new pid, uts and ipc namespaces. The slot's init enters a mount namespace of its own,
//! mounts the shared part of the root once, and then, per action kiln sends it (the request
//! file's path with the action's stdout and stderr), mounts the action's part, forks and
//! execs it, kills and reaps everything it left in the pid namespace, reports the result and
//! takes the action's mounts away, then says it is ready again. Idle slots wait in the
//! sandbox's pool and serve only after that word; a slot that timed out, was cancelled or
//! failed is killed, not reused. So per action neither a process is
//! spawned nor a namespace created, and no process of the action outlives
//! [`Sandbox::run`]. The price of sharing: actions of one build can reach each other's
//! loopback listeners (never the host's network), and cannot use user namespaces.

mod child;
mod error;
mod helper;
mod holder;
pub mod host_command;
mod input_pool;
mod interactive;
mod launcher;
mod mounts;
mod namespaced;
mod namespaces;
mod plain;
mod plan;
mod protocol;
mod reaper;
mod request;
mod sandbox;
mod scratch;
pub mod service;
mod slot;
mod staging;
mod validate;

pub use child::RunHooks;
pub use error::{ErrorKind, ExecError};
pub use helper::{helper_main, HELPER_ARG};
pub use interactive::run_interactive;
pub use namespaces::probe_namespaces;
pub use request::{ExitKind, ExtraMount, InputFile, SandboxMode, SandboxOutcome, SandboxRequest};
pub use sandbox::{Sandbox, SandboxConfig};
pub use scratch::Scratch;

/// The exec root every sandboxed action sees (its working directory by default), so no
/// host path ever reaches a command line or an output.
pub const EXEC_ROOT: &str = "/kiln/execroot";
