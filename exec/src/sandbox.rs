//! `Sandbox`: picks the mode once, then runs requests: validate, stage, run, collect.

use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use crate::child::{self, RunHooks};
use crate::holder::Holder;
use crate::input_pool::InputPool;
use crate::reaper::Reaper;
use crate::scratch::Scratch;
use crate::staging::{stage, Staging};
use crate::{
    namespaced, namespaces, plain, plan, validate, ExecError, SandboxMode, SandboxOutcome,
    SandboxRequest,
};

/// Whether the namespace holder runs.
#[derive(Debug)]
enum HolderSlot {
    NotStarted,
    Running(Holder),
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
    holder: std::sync::Arc<std::sync::Mutex<HolderSlot>>,
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
            holder: std::sync::Arc::new(std::sync::Mutex::new(HolderSlot::NotStarted)),
            mode,
            fallback_reason,
            reaper: std::sync::Arc::default(),
            input_pool: None,
        }
    }

    /// The holder's pid, starting it on first use; `None` (each action then creates its own user
    /// and network namespaces) if it cannot start.
    fn holder_pid(&self) -> Option<i32> {
        let mut slot = self.holder.lock().ok()?;
        // A holder that died (killed from outside, say) is replaced rather than joined.
        if let HolderSlot::Running(holder) = &mut *slot {
            if !holder.is_alive() {
                *slot = HolderSlot::NotStarted;
            }
        }
        if let HolderSlot::NotStarted = *slot {
            *slot = match Holder::start(&self.helper) {
                Some(holder) => HolderSlot::Running(holder),
                None => HolderSlot::Unavailable,
            };
        }
        match &*slot {
            HolderSlot::Running(holder) => Some(holder.pid()),
            _ => None,
        }
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

    /// Runs `req`, passing output lines to `hooks` as they arrive.
    pub fn run_with_hooks(
        &self,
        req: &SandboxRequest,
        hooks: RunHooks<'_>,
    ) -> Result<SandboxOutcome, ExecError> {
        let start = Instant::now();
        validate::validate(req)?;
        let scratch = Scratch::create(&req.scratch, self.reaper.clone())?;
        let root = scratch.exec_root();
        let how = match self.mode {
            SandboxMode::Namespaces => Staging::LinkWhenSafe,
            SandboxMode::Plain => Staging::Copy,
        };
        let file_binds = stage(&root, &scratch.tmp(), req, how, self.input_pool.as_deref())?;
        let mut cmd = match self.mode {
            SandboxMode::Namespaces => {
                let read_only = plan::read_only_mounts(req);
                let holder = self.holder_pid();
                namespaced::command(&self.helper, req, &scratch, read_only, file_binds, holder)?
            }
            SandboxMode::Plain => plain::command(req, &scratch),
        };
        let program = PathBuf::from(cmd.get_program());
        let child = cmd.spawn().map_err(|source| match self.mode {
            SandboxMode::Plain if source.kind() != std::io::ErrorKind::Other => ExecError::Exec {
                argv0: req.argv[0].clone(),
                source,
            },
            _ => ExecError::Spawn { program, source },
        })?;
        let captured = child::run(child, req.timeout, hooks)
            .map_err(|e| ExecError::io("read the output of", &self.helper, e))?;
        let exit = match self.mode {
            _ if captured.cancelled => crate::ExitKind::Cancelled,
            SandboxMode::Namespaces => {
                namespaced::exit_kind(&self.helper, req, &scratch, &captured)?
            }
            SandboxMode::Plain => plain::exit_kind(captured.status, captured.timed_out),
        };
        let collect = |paths: &[String], want_dir: bool| {
            paths
                .iter()
                .map(|p| {
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
