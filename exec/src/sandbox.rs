//! `Sandbox`: picks the mode once, then runs requests: validate, stage, run, collect.

use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use nix::fcntl::OFlag;
use nix::unistd::pipe2;

use crate::child::{self, RunHooks, SpawnedChild};
use crate::holder::Holder;
use crate::input_pool::InputPool;
use crate::launcher::{self, Launched, Slot};
use crate::reaper::Reaper;
use crate::scratch::Scratch;
use crate::staging::{self, stage, Staging};
use crate::{
    namespaced, namespaces, plain, plan, validate, ExecError, ExitKind, SandboxMode,
    SandboxOutcome, SandboxRequest,
};

/// The read ends of an action's stdout and stderr pipes.
type Pipes = (Option<std::os::fd::OwnedFd>, Option<std::os::fd::OwnedFd>);

/// How a spawned helper ended, for an error message.
fn describe(status: Option<std::process::ExitStatus>) -> String {
    status.map_or_else(|| "not reaped".to_string(), |s| s.to_string())
}

/// Whether the namespace holder runs.
#[derive(Debug)]
enum HolderState {
    NotStarted,
    Running(std::sync::Arc<Holder>),
    Unavailable,
}

/// How to build a [`Sandbox`].
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Binary that calls [`crate::helper_main`] when its first argument is
    /// [`crate::HELPER_ARG`] (the `kiln` binary itself).
    pub helper: PathBuf,
    /// Force a mode; `None` probes namespaces and falls back to plain.
    pub mode_override: Option<SandboxMode>,
}

/// Runs actions; cheap to share between threads.
#[derive(Debug, Clone)]
pub struct Sandbox {
    helper: PathBuf,
    /// The shared user+network namespace holder, started on first use (namespaces mode).
    holder: std::sync::Arc<std::sync::Mutex<HolderState>>,
    /// Idle sandbox slots the holder started (namespaces mode).
    slots: std::sync::Arc<SlotPool>,
    mode: SandboxMode,
    fallback_reason: Option<String>,
    /// Removes the scratch trees of finished actions in the background.
    reaper: std::sync::Arc<Reaper>,
    /// Copies of small immutable inputs for staged trees to link (namespaces mode).
    input_pool: Option<std::sync::Arc<InputPool>>,
}

impl Sandbox {
    /// Picks the mode: the override, else namespaces if [`namespaces::probe_namespaces`]
    /// succeeds, else plain (see [`Sandbox::fallback_reason`]).
    pub fn new(config: SandboxConfig) -> Sandbox {
        let (mode, fallback_reason) = match config.mode_override {
            Some(mode) => (mode, None),
            None => match namespaces::probe_namespaces() {
                Ok(()) => (SandboxMode::Namespaces, None),
                Err(why) => (SandboxMode::Plain, Some(why)),
            },
        };
        Sandbox {
            helper: config.helper,
            holder: std::sync::Arc::new(std::sync::Mutex::new(HolderState::NotStarted)),
            slots: std::sync::Arc::default(),
            mode,
            fallback_reason,
            reaper: std::sync::Arc::default(),
            input_pool: None,
        }
    }

    /// The holder, starting it on first use; `None` (each action then spawns a helper that
    /// creates its own namespaces) if it cannot start.
    fn holder(&self) -> Option<std::sync::Arc<Holder>> {
        let mut slot = self.holder.lock().ok()?;
        // A holder that died (killed from outside, say) is replaced.
        if let HolderState::Running(holder) = &*slot {
            if !holder.is_alive() {
                *slot = HolderState::NotStarted;
            }
        }
        if let HolderState::NotStarted = *slot {
            *slot = match Holder::start(&self.helper) {
                Some(holder) => HolderState::Running(std::sync::Arc::new(holder)),
                None => HolderState::Unavailable,
            };
        }
        match &*slot {
            HolderState::Running(holder) => Some(holder.clone()),
            _ => None,
        }
    }

    /// Has an idle slot, or a new one the holder starts with its root in `slot_parent`, run
    /// the request file `request` (actions without the host network); `None` if there is no
    /// holder or it failed, and the caller spawns a helper.
    fn launch(
        &self,
        request: &std::path::Path,
        slot_parent: &std::path::Path,
    ) -> Option<(Launched, Pipes)> {
        let holder = self.holder()?;
        let slot = self.slots.take(&holder, slot_parent)?;
        let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC).ok()?;
        let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).ok()?;
        let launched = launcher::launch(slot, request, out_w, err_w).ok()?;
        Some((launched, (Some(out_r), Some(err_r))))
    }

    /// Gives the sandbox a pool of input copies in `dir` (created on first use, removed when
    /// the last clone of the sandbox is dropped), holding at most `max_bytes`: in namespaces
    /// mode, a small immutable input (a CAS blob) that cannot be hard-linked into a staged tree
    /// (another file system) is copied into the pool once and linked from there by every
    /// action staged on the pool's file system. `dir` must be private to this sandbox.
    pub fn with_input_pool(mut self, dir: PathBuf, max_bytes: u64) -> Sandbox {
        if self.mode == SandboxMode::Namespaces {
            self.input_pool = Some(std::sync::Arc::new(InputPool::new(dir, max_bytes)));
        }
        self
    }

    /// The mode actions run in.
    pub fn mode(&self) -> SandboxMode {
        self.mode
    }

    /// Why the probe chose plain mode, if it did.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// Runs `req` to completion.
    pub fn run(&self, req: &SandboxRequest) -> Result<SandboxOutcome, ExecError> {
        self.run_with_hooks(req, RunHooks::default())
    }

    /// Spawns `cmd` (the helper, or the action itself in plain mode) and runs it to the end.
    fn spawn_and_run(
        &self,
        mut cmd: std::process::Command,
        req: &SandboxRequest,
        hooks: RunHooks<'_>,
    ) -> Result<(SpawnedChild, child::Captured), ExecError> {
        let program = PathBuf::from(cmd.get_program());
        let child = cmd.spawn().map_err(|source| match self.mode {
            SandboxMode::Plain if source.kind() != std::io::ErrorKind::Other => ExecError::Exec {
                argv0: req.argv[0].clone(),
                source,
            },
            _ => ExecError::Spawn { program, source },
        })?;
        let mut child = SpawnedChild::new(child);
        let pipes = child.take_pipes();
        let captured = child::run(&mut child, pipes, req.timeout, hooks)
            .map_err(|e| ExecError::io("read the output of", &self.helper, e))?;
        Ok((child, captured))
    }

    /// Runs `req`, passing output lines to `hooks` as they arrive.
    pub fn run_with_hooks(
        &self,
        req: &SandboxRequest,
        hooks: RunHooks<'_>,
    ) -> Result<SandboxOutcome, ExecError> {
        let start = Instant::now();
        validate::validate(req)?;
        let mut scratch = Scratch::create(&req.scratch, self.reaper.clone())?;
        let root = scratch.exec_root();
        let how = match self.mode {
            SandboxMode::Namespaces => Staging::LinkWhenSafe,
            SandboxMode::Plain => Staging::Copy,
        };
        // Outputs written in place go to their own directory (namespaces mode only).
        let output_files = req
            .output_files_dir
            .clone()
            .filter(|_| how == Staging::LinkWhenSafe);
        if let Some(dir) = &output_files {
            staging::check_output_files_dir(dir)?;
            scratch.also_remove(dir.clone());
        }
        let file_binds = stage(&root, &scratch.tmp(), req, how, self.input_pool.as_deref())?;
        // Each output file's status before the run, to tell one the action wrote.
        let created: Vec<_> = match &output_files {
            Some(dir) => (0..req.outputs.len())
                .map(|i| staging::output_file_created(&staging::output_file(dir, i)))
                .collect(),
            None => Vec::new(),
        };
        let (captured, exit) = match self.mode {
            SandboxMode::Namespaces => {
                let read_only = plan::read_only_mounts(req);
                let request = namespaced::write_request(req, &scratch, read_only, file_binds)?;
                let slot_parent = scratch.path().parent().unwrap_or(scratch.path());
                match (!req.network)
                    .then(|| self.launch(&request, slot_parent))
                    .flatten()
                {
                    Some((mut launched, pipes)) => {
                        let captured = child::run(&mut launched, pipes, req.timeout, hooks)
                            .map_err(|e| ExecError::io("read the output of", &self.helper, e))?;
                        let status = "the sandbox's init ended without a result".to_string();
                        let result = launched.result();
                        let exit = match captured.cancelled {
                            true => Ok(ExitKind::Cancelled),
                            false => {
                                namespaced::exit_kind(&self.helper, req, result, status, &captured)
                            }
                        };
                        // A failed exec is the action's error, not the slot's.
                        if let Some(slot) = launched.into_slot() {
                            self.slots.put(slot);
                        }
                        (captured, exit?)
                    }
                    None => {
                        let cmd = namespaced::command(&self.helper, &request, &scratch)?;
                        let (mut child, captured) = self.spawn_and_run(cmd, req, hooks)?;
                        let exit = match captured.cancelled {
                            true => ExitKind::Cancelled,
                            false => namespaced::exit_kind(
                                &self.helper,
                                req,
                                namespaced::read_result_file(&scratch).as_ref(),
                                describe(child.status.take()),
                                &captured,
                            )?,
                        };
                        (captured, exit)
                    }
                }
            }
            SandboxMode::Plain => {
                let cmd = plain::command(req, &scratch);
                let (child, captured) = self.spawn_and_run(cmd, req, hooks)?;
                let exit = match (captured.cancelled, child.status) {
                    (true, _) => ExitKind::Cancelled,
                    (false, Some(status)) => plain::exit_kind(status, captured.timed_out),
                    (false, None) => ExitKind::Code(-1),
                };
                (captured, exit)
            }
        };
        let collect = |paths: &[String], want_dir: bool| {
            paths
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    if let (false, Some(dir)) = (want_dir, &output_files) {
                        let host = staging::output_file(dir, i);
                        let before = created.get(i).copied().flatten();
                        let written = fs::symlink_metadata(&host)
                            .is_ok_and(|m| m.is_file() && staging::output_file_written(&m, before));
                        return (p.clone(), written.then_some(host));
                    }
                    let host = root.join(p);
                    let ok = fs::symlink_metadata(&host).is_ok_and(|m| {
                        if want_dir {
                            m.is_dir()
                        } else {
                            m.is_file()
                        }
                    });
                    (p.clone(), ok.then_some(host))
                })
                .collect()
        };
        Ok(SandboxOutcome {
            exit,
            stdout: captured.stdout,
            stderr: captured.stderr,
            outputs: collect(&req.outputs, false),
            output_dirs: collect(&req.output_dirs, true),
            duration: start.elapsed(),
            mode: self.mode,
            scratch,
        })
    }
}

/// The idle slots of a sandbox; dropping it (with the last clone of the sandbox) kills them.
#[derive(Default)]
struct SlotPool {
    idle: std::sync::Mutex<Vec<Slot>>,
    /// Numbers the slot directories.
    started: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for SlotPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SlotPool")
    }
}

impl SlotPool {
    /// An idle slot that is still alive, else a new one with its root on a fresh directory
    /// in `parent`; `None` if none can start.
    fn take(&self, holder: &Holder, parent: &std::path::Path) -> Option<Slot> {
        loop {
            let Some(mut slot) = self.idle.lock().ok()?.pop() else {
                break;
            };
            if slot.is_ready() {
                return Some(slot);
            }
            drop(slot); // died or retired
        }
        let n = self
            .started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = parent.join(format!(".slot-{}-{n}", std::process::id()));
        fs::create_dir(&dir).ok()?;
        match holder.start_slot(dir.clone()) {
            Ok(slot) => Some(slot),
            Err(_) => {
                let _ = fs::remove_dir(&dir);
                None
            }
        }
    }

    /// Keeps `slot` for the next action.
    fn put(&self, slot: Slot) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(slot);
        }
    }
}
