//! Runs one action: compute its key, look it up in the action cache, and on a miss run it in the
//! sandbox and store its outputs. Derived inputs come from the CAS and are verified before use, so a
//! corrupt blob is never fed to an action; a lost blob is reported back so its producer reruns.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;
use kiln_cache::{Digest, DigestFunction, LocalCache};
use kiln_exec::{ExitKind, InputFile, Sandbox, SandboxRequest};
use prost::Message;

use crate::action::{ActionKind, ActionSpec, Artifact};
use crate::action_key::{
    compute_key, from_proto, to_proto, FileDigest, KeyedAction, PlatformProperties,
};
use crate::events::CacheStatus;
use crate::remote_tier::{BlobSource, DownloadOutputs, RemoteTier, ResultUpload};
use crate::repository::SourceRoots;

/// Runs one action: the scheduler's only view of execution, so that it can be tested with a fake.
pub trait ActionRunner: Sync {
    /// Looks the action up in the cache, else runs it. `inputs` gives each input's digest.
    fn run(
        &self,
        spec: &ActionSpec,
        inputs: &dyn Fn(&Artifact) -> Option<FileDigest>,
        options: &RunOptions<'_>,
    ) -> RunOutcome;
}

impl ActionRunner for Runner {
    fn run(
        &self,
        spec: &ActionSpec,
        inputs: &dyn Fn(&Artifact) -> Option<FileDigest>,
        options: &RunOptions<'_>,
    ) -> RunOutcome {
        Runner::run(self, spec, inputs, options)
    }
}

/// Why a cancelled action did not finish.
const CANCELLED: &str =
    "Cancelled: the build was stopped, or an input it started on early came from an action that failed";

/// Everything an action runner needs that stays fixed for a build.
pub struct Runner {
    /// Workspace root on the host.
    pub root: PathBuf,
    /// The shared local cache.
    pub cache: Arc<LocalCache>,
    /// The sandbox.
    pub sandbox: Sandbox,
    /// Digest function of the workspace.
    pub function: DigestFunction,
    /// Platform properties for every action.
    pub platform: PlatformProperties,
    /// Directory for per-action scratch trees.
    pub scratch_root: PathBuf,
    /// A directory on a memory file system for the scratch trees of small actions, if any.
    pub memory_scratch_root: Option<PathBuf>,
    /// Actions whose inputs add up to at most this many bytes stage in `memory_scratch_root`.
    pub memory_scratch_limit: u64,
    /// Where source inputs live on the host (the workspace, and external repositories).
    pub source_roots: SourceRoots,
    /// Digests of the host tools actions name, by absolute path.
    pub tool_digests: std::collections::HashMap<String, String>,
    /// The remote cache tier behind the local cache, if one is configured.
    pub remote: Option<RemoteTier>,
    verified: Mutex<HashSet<Digest>>,
    /// Blobs this build wrote into the CAS from bytes it hashed as it wrote them, or moved in
    /// as the owned file it had just hashed (a subset of `verified`, which also holds blobs
    /// vouched for by the cache's verification memo).
    written: Mutex<HashSet<Digest>>,
    counter: AtomicU64,
}

/// The result of running (or finding) one action.
#[derive(Debug)]
pub enum RunOutcome {
    /// The action has a result: outputs and exit status. A build action with a non-zero exit is
    /// reported as [`RunOutcome::Failed`] instead.
    Done(Box<ActionDone>),
    /// The action could not produce its outputs.
    Failed {
        /// The key, if it could be computed.
        key: Option<Digest>,
        /// What went wrong, with the command's output.
        message: String,
    },
    /// Derived inputs whose blobs were missing or corrupt: their producers must run again.
    LostInputs {
        /// Exec paths of the lost inputs.
        paths: Vec<String>,
        /// The error that revealed the loss, when it was not the lookup itself (the sandbox
        /// failing on a blob evicted after its check), so that it is reported, not swallowed.
        cause: Option<String>,
    },
}

/// A successful lookup or run.
#[derive(Debug)]
pub struct ActionDone {
    /// The action key.
    pub key: Digest,
    /// How the result was obtained.
    pub status: CacheStatus,
    /// Every produced output: exec path → digest and executable bit.
    pub outputs: BTreeMap<String, FileDigest>,
    /// The process's exit code (0 for builds).
    pub exit_code: i32,
    /// Whether it was killed by its timeout.
    pub timed_out: bool,
    /// Captured stdout.
    pub stdout: Vec<u8>,
    /// Captured stderr.
    pub stderr: Vec<u8>,
    /// How long the process ran (from the cache's metadata on a hit).
    pub run_duration: Duration,
    /// The REAPI messages and the input digests that made the key (for history and explain).
    pub keyed: KeyedAction,
}

/// Receives an early output's exec path and digest while its action still runs.
pub type EarlyOutputCallback<'a> = dyn Fn(&str, FileDigest) + Sync + 'a;

/// Options for one run. The default: look the action up first, no callbacks, no cancel flag, no
/// permit.
#[derive(Default)]
pub struct RunOptions<'a> {
    /// Skip the action-cache lookup (a previous result's blobs were lost).
    pub force_execute: bool,
    /// Called with each stderr line while the action runs, with announced early outputs.
    pub on_early_output: Option<&'a EarlyOutputCallback<'a>>,
    /// Called just before the action starts running in the sandbox (not on a cache hit).
    pub on_start: Option<&'a (dyn Fn() + Sync)>,
    /// Raised by the scheduler to kill the action (its early input's producer failed).
    pub cancel: Option<&'a std::sync::atomic::AtomicBool>,
    /// When set, a cache miss waits for an execution permit with it before it stages and runs
    /// (the scheduler keeps more actions in flight than `--jobs`, so that hits need not wait
    /// for a running action to end); the permit goes back when the action's process ends (see
    /// [`crate::permits`]).
    pub permit: Option<&'a crate::permits::PermitTicket<'a>>,
}

impl Runner {
    /// A runner for one build.
    pub fn new(
        root: PathBuf,
        cache: Arc<LocalCache>,
        sandbox: Sandbox,
        function: DigestFunction,
        platform: PlatformProperties,
        scratch_root: PathBuf,
    ) -> Self {
        Runner {
            source_roots: SourceRoots::workspace_only(&root),
            root,
            cache,
            sandbox,
            function,
            platform,
            scratch_root,
            memory_scratch_root: None,
            memory_scratch_limit: 0,
            tool_digests: std::collections::HashMap::new(),
            remote: None,
            verified: Mutex::new(HashSet::new()),
            written: Mutex::new(HashSet::new()),
            counter: AtomicU64::new(0),
        }
    }

    /// Computes the key of `spec` given its inputs' digests.
    pub fn key(
        &self,
        spec: &ActionSpec,
        inputs: &dyn Fn(&Artifact) -> Option<FileDigest>,
    ) -> Result<KeyedAction, String> {
        if spec.host_tools.is_empty() {
            return compute_key(spec, inputs, &self.platform, self.function)
                .map_err(|e| e.to_string());
        }
        let platform = crate::action_key::with_host_tools(
            &self.platform,
            &spec.host_tools,
            &self.tool_digests,
            self.function,
        );
        compute_key(spec, inputs, &platform, self.function).map_err(|e| e.to_string())
    }

    /// Looks the action up in the cache, else runs it.
    pub fn run(
        &self,
        spec: &ActionSpec,
        inputs: &dyn Fn(&Artifact) -> Option<FileDigest>,
        options: &RunOptions<'_>,
    ) -> RunOutcome {
        let keyed = match self.key(spec, inputs) {
            Ok(k) => k,
            Err(message) => return RunOutcome::Failed { key: None, message },
        };
        if !options.force_execute && spec.cacheable {
            if let Some((done, result)) = self.lookup(spec, &keyed) {
                self.share_local_hit(&keyed, result);
                return RunOutcome::Done(Box::new(done));
            }
            if let Some(done) = self.remote_lookup(spec, &keyed) {
                return RunOutcome::Done(Box::new(done));
            }
        }
        // A miss: it runs only with an execution permit (given back when its process ends
        // cleanly, else when the scheduler drops the ticket).
        if options
            .permit
            .is_some_and(|ticket| !ticket.acquire(options.cancel))
        {
            return RunOutcome::Failed {
                key: Some(keyed.key),
                message: CANCELLED.into(),
            };
        }
        self.execute(spec, keyed, options)
    }

    /// A local action-cache hit whose every output blob is still present, and its result.
    fn lookup(
        &self,
        spec: &ActionSpec,
        keyed: &KeyedAction,
    ) -> Option<(ActionDone, reapi::ActionResult)> {
        let bytes = self.cache.get_action_result(&keyed.key).ok()??;
        let result = reapi::ActionResult::decode(bytes.as_slice()).ok()?;
        let done = self.hit(spec, keyed, &result, CacheStatus::LocalHit)?;
        Some((done, result))
    }

    /// With uploads on, a local hit the remote does not have is uploaded, so a warm local cache
    /// fills an empty (or evicted) shared cache. Bazel does not do this; a team sharing a cache
    /// expects it. It costs one GetActionResult per local hit while a remote is configured.
    fn share_local_hit(&self, keyed: &KeyedAction, mut result: reapi::ActionResult) {
        let Some(tier) = self.remote.as_ref().filter(|t| t.upload_local_results) else {
            return;
        };
        if tier.cache.get_action_result(&keyed.key).is_some() {
            return;
        }
        let mut blobs = vec![
            (keyed.key, BlobSource::Bytes(keyed.action_bytes.clone())),
            (
                Digest::of_bytes(self.function, &keyed.command_bytes),
                BlobSource::Bytes(keyed.command_bytes.clone()),
            ),
        ];
        for file in &result.output_files {
            if let Some(digest) = file
                .digest
                .as_ref()
                .and_then(|d| from_proto(self.function, d))
            {
                blobs.push((digest, BlobSource::File(self.cache.blob_path(&digest))));
            }
        }
        // Logs stored inline locally go up as blobs (REAPI asks clients not to inline).
        for (raw, field) in [
            (&mut result.stdout_raw, &mut result.stdout_digest),
            (&mut result.stderr_raw, &mut result.stderr_digest),
        ] {
            if !raw.is_empty() {
                let bytes = std::mem::take(raw);
                let digest = Digest::of_bytes(self.function, &bytes);
                *field = Some(to_proto(&digest));
                blobs.push((digest, BlobSource::Bytes(bytes)));
            } else if let Some(digest) = field.as_ref().and_then(|d| from_proto(self.function, d)) {
                blobs.push((digest, BlobSource::File(self.cache.blob_path(&digest))));
            }
        }
        tier.cache.upload(ResultUpload {
            key: keyed.key,
            result,
            blobs,
        });
    }

    /// A remote action-cache hit. Its outputs are downloaded now only with
    /// [`DownloadOutputs::All`]; otherwise they stay remote until a local action or `kiln-out/`
    /// needs them (see [`Runner::ensure_local`]), and a blob gone by then sends the action back to
    /// run locally.
    fn remote_lookup(&self, spec: &ActionSpec, keyed: &KeyedAction) -> Option<ActionDone> {
        let tier = self.remote.as_ref()?;
        let result = tier.cache.get_action_result(&keyed.key)?;
        let done = self.hit(spec, keyed, &result, CacheStatus::RemoteHit)?;
        if tier.download == DownloadOutputs::All {
            let missing: Vec<Digest> = done
                .outputs
                .values()
                .map(|f| f.digest)
                .filter(|d| !self.cache.contains(d))
                .collect();
            if !missing.is_empty() {
                let fetched: HashSet<Digest> = tier
                    .cache
                    .fetch(&missing, &self.cache)
                    .into_iter()
                    .collect();
                if missing.iter().any(|d| !fetched.contains(d)) {
                    return None;
                }
            }
            // Every output is local now: the next build finds the result in the local cache.
            let _ = self
                .cache
                .put_action_result(&keyed.key, &result.encode_to_vec());
        }
        Some(done)
    }

    /// Makes sure the blob is in the local cache, downloading it from the remote tier if there is
    /// one. False when it is in neither (or the remote sent corrupt bytes).
    pub fn ensure_local(&self, digest: &Digest) -> bool {
        if self.cache.contains(digest) {
            return true;
        }
        self.fetch_remote(digest)
    }

    fn fetch_remote(&self, digest: &Digest) -> bool {
        self.remote
            .as_ref()
            .is_some_and(|tier| tier.cache.fetch(&[*digest], &self.cache).contains(digest))
    }

    /// Turns a successful `ActionResult` into a hit, if it has every declared output. With
    /// `LocalHit` every output blob must be in the local cache.
    fn hit(
        &self,
        spec: &ActionSpec,
        keyed: &KeyedAction,
        result: &reapi::ActionResult,
        status: CacheStatus,
    ) -> Option<ActionDone> {
        if result.exit_code != 0 {
            return None;
        }
        let mut outputs = BTreeMap::new();
        for file in &result.output_files {
            // A result naming an output the action does not declare is not ours to trust.
            spec.outputs.iter().find(|o| o.path == file.path)?;
            let digest = from_proto(self.function, file.digest.as_ref()?)?;
            if status == CacheStatus::LocalHit && !self.cache.contains(&digest) {
                return None;
            }
            outputs.insert(
                file.path.clone(),
                FileDigest {
                    digest,
                    executable: file.is_executable,
                },
            );
        }
        if spec
            .outputs
            .iter()
            .any(|o| !o.optional && !outputs.contains_key(&o.path))
        {
            return None;
        }
        // A hit's logs are not read: build actions that succeeded have nothing to show, and a
        // test's log is one of its outputs.
        let (stdout, stderr) = (Vec::new(), Vec::new());
        let run_duration = result
            .execution_metadata
            .as_ref()
            .and_then(|m| {
                Some(timestamp_delta(
                    m.execution_start_timestamp.as_ref()?,
                    m.execution_completed_timestamp.as_ref()?,
                ))
            })
            .unwrap_or_default();
        Some(ActionDone {
            key: keyed.key,
            status,
            outputs,
            exit_code: 0,
            timed_out: false,
            stdout,
            stderr,
            run_duration,
            keyed: keyed.clone(),
        })
    }

    /// Whether this build wrote the blob into the CAS itself, hashing the bytes as it wrote
    /// them or moving in the owned file it had just hashed (an action's new output): a copy of
    /// it need not be hashed again.
    pub fn wrote_this_build(&self, digest: &Digest) -> bool {
        self.written.lock().is_ok_and(|set| set.contains(digest))
    }

    /// The host file holding a derived input's content, verified once per build.
    fn verified_blob(&self, digest: &Digest) -> Option<PathBuf> {
        if let Ok(set) = self.verified.lock() {
            if set.contains(digest) {
                return Some(self.cache.blob_path(digest));
            }
        }
        // A blob that is not here (a remote hit's output under `toplevel`, or evicted) comes from
        // the remote tier, verified on the way in.
        if !self.cache.verify(digest) && !self.fetch_remote(digest) {
            return None;
        }
        if let Ok(mut set) = self.verified.lock() {
            set.insert(*digest);
        }
        Some(self.cache.blob_path(digest))
    }

    /// The artifact paths of `blobs` (path, digest, artifact) whose CAS file is gone, each
    /// forgotten as verified so that its next use checks the cache again.
    fn forget_missing(&self, blobs: &[(PathBuf, Digest, String)]) -> Vec<String> {
        let mut gone: Vec<String> = Vec::new();
        for (path, digest, artifact) in blobs {
            if path.exists() {
                continue;
            }
            if let Ok(mut set) = self.verified.lock() {
                set.remove(digest);
            }
            gone.push(artifact.clone());
        }
        gone.sort();
        gone.dedup();
        gone
    }

    fn execute(
        &self,
        spec: &ActionSpec,
        keyed: KeyedAction,
        options: &RunOptions<'_>,
    ) -> RunOutcome {
        let mut staged = Vec::with_capacity(spec.inputs.len());
        // CAS blobs by artifact path, to tell a blob evicted during staging from a sandbox failure.
        let mut blobs = Vec::new();
        let mut lost = Vec::new();
        for input in &spec.inputs {
            let Some(file) = keyed.inputs.get(&input.exec_path) else {
                continue;
            };
            // A source file may be edited in place while the action runs; a CAS blob never is.
            let (source, immutable) = if input.artifact.source {
                (self.source_roots.host_path(&input.artifact.path), false)
            } else {
                match self.verified_blob(&file.digest) {
                    Some(path) => {
                        blobs.push((path.clone(), file.digest, input.artifact.path.clone()));
                        (path, true)
                    }
                    None => {
                        lost.push(input.artifact.path.clone());
                        continue;
                    }
                }
            };
            staged.push(InputFile {
                path: input.exec_path.clone(),
                source,
                executable: file.executable,
                immutable,
            });
        }
        if !lost.is_empty() {
            lost.sort();
            lost.dedup();
            return RunOutcome::LostInputs {
                paths: lost,
                cause: None,
            };
        }
        // Actions stage on a memory file system when there is one and their inputs fit: creating
        // and deleting scratch trees (a directory and a hard link per input) on a disk file
        // system costs more than copying the input bytes. Large ones stage next to the cache,
        // where inputs are hard links.
        let input_bytes: u64 = keyed.inputs.values().map(|f| f.digest.size).sum();
        let scratch_root = match &self.memory_scratch_root {
            Some(memory) if input_bytes <= self.memory_scratch_limit => memory,
            _ => &self.scratch_root,
        };
        let name = format!(
            "{}-{}",
            std::process::id(),
            self.counter.fetch_add(1, Ordering::Relaxed)
        );
        let scratch = scratch_root.join(&name);
        // A tree on the memory file system holds the outputs where the CAS must copy them
        // from. A tool that writes its outputs in place gets them beside the cache instead,
        // and the CAS renames them in: a Go link's binary is then written once, not written
        // and copied. (The disk scratch directory is in the workspace's state under the cache
        // directory, so normally on the cache's file system; if not, the CAS copies as before.
        // Not with early outputs, which are read from the tree.)
        let output_files_dir = (spec.outputs_written_in_place
            && spec.early_outputs.is_none()
            && scratch_root != &self.scratch_root)
            .then(|| self.scratch_root.join(format!("{name}.out")));
        let request = SandboxRequest {
            argv: spec.arguments.clone(),
            env: spec.env_pairs(),
            working_directory: spec.working_directory.clone(),
            inputs: staged,
            outputs: spec.outputs.iter().map(|o| o.path.clone()).collect(),
            input_dirs: Vec::new(),
            output_dirs: Vec::new(),
            network: spec.network,
            timeout: spec.timeout,
            scratch: scratch.clone(),
            output_files_dir,
            mounts: spec
                .tool_mounts
                .iter()
                .map(|m| kiln_exec::ExtraMount {
                    host: m.host_path.clone(),
                    sandbox_path: m.sandbox_path.clone(),
                })
                .collect(),
        };
        if let Some(on_start) = options.on_start {
            on_start();
        }
        let started = SystemTime::now();
        let clock = Instant::now();
        let early = |line: &str| {
            if let (Some(parser), Some(callback)) = (&spec.early_outputs, options.on_early_output) {
                if let Some(path) = parser(line) {
                    // Only a declared output may be announced; anything else the tool prints is
                    // ignored rather than read from the scratch tree.
                    let Some(declared) = spec.outputs.iter().find(|o| o.path == path) else {
                        return;
                    };
                    let executable = declared.executable;
                    let host = scratch.join("root").join(&path);
                    if let Ok(digest) = self.cache.put_file(self.function, &host) {
                        callback(&path, FileDigest { digest, executable });
                    }
                }
            }
        };
        let wants_lines = spec.early_outputs.is_some() && options.on_early_output.is_some();
        let hooks = kiln_exec::RunHooks {
            on_stdout_line: None,
            on_stderr_line: if wants_lines { Some(&early) } else { None },
            cancel: options.cancel,
        };
        let outcome = self.sandbox.run_with_hooks(&request, hooks);
        // The process has ended: the next miss may stage and run while the outputs are stored.
        // Not when the action failed: the scheduler then stops starting actions, and one waiting
        // for this permit must not slip through first (a failure found only while storing, a
        // full disk or a source edited during the run, may still let one start). Nor when its
        // result goes up to a remote cache: the upload is part of the action, so `--jobs` also
        // bounds the uploads at once, and a server that refuses every result still sees other
        // calls succeed in between.
        let uploads = self.remote.as_ref().is_some_and(|t| t.upload_local_results);
        if let (Some(ticket), Ok(outcome), false) = (options.permit, &outcome, uploads) {
            if ran_clean(spec, outcome) {
                ticket.ran();
            }
        }
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&scratch);
                // Another process may evict a blob between its check and the sandbox's copy,
                // link or bind of it: that input is lost (its producer runs again), not a failure.
                let gone = self.forget_missing(&blobs);
                if !gone.is_empty() {
                    return RunOutcome::LostInputs {
                        paths: gone,
                        cause: Some(format!("the sandbox failed: {e}")),
                    };
                }
                return RunOutcome::Failed {
                    key: Some(keyed.key),
                    message: format!("Could not run the sandbox: {e}"),
                };
            }
        };
        let run_duration = clock.elapsed();
        // The scratch tree goes away when `outcome` (which owns it) is dropped.
        self.collect(spec, keyed, outcome, started, run_duration)
    }

    fn collect(
        &self,
        spec: &ActionSpec,
        keyed: KeyedAction,
        outcome: kiln_exec::SandboxOutcome,
        started: SystemTime,
        run_duration: Duration,
    ) -> RunOutcome {
        let (exit_code, timed_out) = match outcome.exit {
            ExitKind::Code(c) => (c, false),
            ExitKind::Signal(s) => (128 + s, false),
            ExitKind::TimedOut => (142, true),
            ExitKind::Cancelled => {
                return RunOutcome::Failed {
                    key: Some(keyed.key),
                    message: CANCELLED.to_string(),
                }
            }
        };
        let command_output = || {
            let mut text = String::new();
            text.push_str(&String::from_utf8_lossy(&outcome.stdout));
            text.push_str(&String::from_utf8_lossy(&outcome.stderr));
            text
        };
        if spec.kind == ActionKind::Build && exit_code != 0 {
            let why = if timed_out {
                "timed out".to_string()
            } else {
                format!("exited with code {exit_code}")
            };
            return RunOutcome::Failed {
                key: Some(keyed.key),
                message: format!("{} failed: {}\n{}", spec.mnemonic, why, command_output()),
            };
        }
        let mut outputs = BTreeMap::new();
        for (path, host) in &outcome.outputs {
            let declared = spec.outputs.iter().find(|o| &o.path == path);
            let executable = declared.map(|o| o.executable).unwrap_or(false);
            match host {
                Some(host) => match self.store_output(host, executable) {
                    Ok(file) => {
                        outputs.insert(path.clone(), file);
                    }
                    Err(e) => {
                        return RunOutcome::Failed {
                            key: Some(keyed.key),
                            message: format!("Could not store output `{path}`: {e}"),
                        }
                    }
                },
                None if declared.is_some_and(|o| o.optional) || spec.kind == ActionKind::Test => {}
                None => {
                    return RunOutcome::Failed {
                        key: Some(keyed.key),
                        message: format!(
                            "{} did not create declared output `{path}`\n{}",
                            spec.mnemonic,
                            command_output()
                        ),
                    }
                }
            }
        }
        if !self.inputs_unchanged(spec, &keyed) {
            return RunOutcome::Failed {
                key: Some(keyed.key),
                message: "A source file changed while the action ran; run the build again"
                    .to_string(),
            };
        }
        // Checked after the outputs were read: if the process began stopping before that, this
        // sees it (see `stopping`), and what was read may come from a moved tree.
        if crate::stopping::stopping() {
            return RunOutcome::Failed {
                key: Some(keyed.key),
                message: CANCELLED.to_string(),
            };
        }
        if spec.cacheable && exit_code == 0 {
            let _ = self.store_result(
                &keyed,
                &outputs,
                &outcome.stdout,
                &outcome.stderr,
                started,
                run_duration,
            );
            self.upload_result(
                &keyed,
                &outputs,
                &outcome.stdout,
                &outcome.stderr,
                started,
                run_duration,
            );
        }
        RunOutcome::Done(Box::new(ActionDone {
            key: keyed.key,
            status: CacheStatus::Executed,
            outputs,
            exit_code,
            timed_out,
            stdout: outcome.stdout,
            stderr: outcome.stderr,
            run_duration,
            keyed,
        }))
    }

    fn store_output(&self, host: &Path, executable: bool) -> Result<FileDigest, String> {
        let metadata = std::fs::symlink_metadata(host).map_err(|e| e.to_string())?;
        if !metadata.is_file() {
            return Err("only regular files are supported as outputs".to_string());
        }
        // The scratch tree is about to be deleted: move the output into the CAS rather than copy
        // it. In plain mode a process the action left in the background may still write to it,
        // so there it is copied (and hashed while copied) instead.
        let stored = if self.sandbox.mode() == kiln_exec::SandboxMode::Plain {
            self.cache.put_file(self.function, host).map(|d| (d, false))
        } else {
            self.cache.put_file_owned(self.function, host)
        };
        let (digest, written) = stored.map_err(|e| e.to_string())?;
        // A blob this call wrote holds the bytes just hashed: the actions of this build that read
        // it need not hash it again. One that was there already is verified on first use.
        if written {
            if let Ok(mut set) = self.verified.lock() {
                set.insert(digest);
            }
            if let Ok(mut set) = self.written.lock() {
                set.insert(digest);
            }
        }
        Ok(FileDigest { digest, executable })
    }

    /// Re-hashes the source inputs whose content went into the key, so that a file edited while the
    /// action ran cannot poison the cache with a result keyed on the old content.
    fn inputs_unchanged(&self, spec: &ActionSpec, keyed: &KeyedAction) -> bool {
        spec.inputs
            .iter()
            .filter(|i| i.artifact.source)
            .all(|input| {
                let Some(expected) = keyed.inputs.get(&input.exec_path) else {
                    return true;
                };
                match Digest::of_file(
                    self.function,
                    &self.source_roots.host_path(&input.artifact.path),
                ) {
                    Ok(now) => now == expected.digest,
                    Err(_) => false,
                }
            })
    }

    fn store_result(
        &self,
        keyed: &KeyedAction,
        outputs: &BTreeMap<String, FileDigest>,
        stdout: &[u8],
        stderr: &[u8],
        started: SystemTime,
        run_duration: Duration,
    ) -> Result<(), kiln_cache::CacheError> {
        // Small logs travel inline in the ActionResult, as REAPI allows; large ones as blobs. The
        // Command, Action and Directory messages are not stored locally: only a remote tier (or
        // remote execution) needs them, and it can upload them from the KeyedAction.
        let (stdout_raw, stdout_digest) = self.log_field(stdout)?;
        let (stderr_raw, stderr_digest) = self.log_field(stderr)?;
        let mut result = result_message(outputs, started, run_duration);
        result.stdout_raw = stdout_raw;
        result.stdout_digest = stdout_digest;
        result.stderr_raw = stderr_raw;
        result.stderr_digest = stderr_digest;
        self.cache
            .put_action_result(&keyed.key, &result.encode_to_vec())
    }

    /// Sends a locally executed action's result to the remote tier (when it takes uploads): the
    /// `Action`, `Command`, outputs and logs as blobs, then the action-cache entry.
    fn upload_result(
        &self,
        keyed: &KeyedAction,
        outputs: &BTreeMap<String, FileDigest>,
        stdout: &[u8],
        stderr: &[u8],
        started: SystemTime,
        run_duration: Duration,
    ) {
        let Some(tier) = self.remote.as_ref().filter(|t| t.upload_local_results) else {
            return;
        };
        let mut result = result_message(outputs, started, run_duration);
        let mut blobs = vec![
            (keyed.key, BlobSource::Bytes(keyed.action_bytes.clone())),
            (
                Digest::of_bytes(self.function, &keyed.command_bytes),
                BlobSource::Bytes(keyed.command_bytes.clone()),
            ),
        ];
        for file in outputs.values() {
            blobs.push((
                file.digest,
                BlobSource::File(self.cache.blob_path(&file.digest)),
            ));
        }
        // Uploads name logs by digest (REAPI asks clients not to inline anything).
        for (bytes, field) in [
            (stdout, &mut result.stdout_digest),
            (stderr, &mut result.stderr_digest),
        ] {
            if !bytes.is_empty() {
                let digest = Digest::of_bytes(self.function, bytes);
                *field = Some(to_proto(&digest));
                blobs.push((digest, BlobSource::Bytes(bytes.to_vec())));
            }
        }
        tier.cache.upload(ResultUpload {
            key: keyed.key,
            result,
            blobs,
        });
    }
}

/// The `ActionResult` of a successful run, without logs.
fn result_message(
    outputs: &BTreeMap<String, FileDigest>,
    started: SystemTime,
    run_duration: Duration,
) -> reapi::ActionResult {
    let start = timestamp(started);
    let end = timestamp(started + run_duration);
    reapi::ActionResult {
        output_files: outputs
            .iter()
            .map(|(path, file)| reapi::OutputFile {
                path: path.clone(),
                digest: Some(to_proto(&file.digest)),
                is_executable: file.executable,
                ..Default::default()
            })
            .collect(),
        exit_code: 0,
        execution_metadata: Some(reapi::ExecutedActionMetadata {
            worker: "kiln-local".to_string(),
            execution_start_timestamp: Some(start),
            execution_completed_timestamp: Some(end),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Logs up to this size are stored inline in an `ActionResult`.
const INLINE_LOG_LIMIT: usize = 4096;

impl Runner {
    fn log_field(
        &self,
        bytes: &[u8],
    ) -> Result<(Vec<u8>, Option<reapi::Digest>), kiln_cache::CacheError> {
        if bytes.len() <= INLINE_LOG_LIMIT {
            return Ok((bytes.to_vec(), None));
        }
        let digest = self.cache.put_bytes(self.function, bytes)?;
        Ok((Vec::new(), Some(to_proto(&digest))))
    }
}

fn timestamp(time: SystemTime) -> bazel_remote_apis::google::protobuf::Timestamp {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    bazel_remote_apis::google::protobuf::Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
    }
}

fn timestamp_delta(
    start: &bazel_remote_apis::google::protobuf::Timestamp,
    end: &bazel_remote_apis::google::protobuf::Timestamp,
) -> Duration {
    let start_ns = start.seconds as i128 * 1_000_000_000 + start.nanos as i128;
    let end_ns = end.seconds as i128 * 1_000_000_000 + end.nanos as i128;
    Duration::from_nanos((end_ns - start_ns).clamp(0, u64::MAX as i128) as u64)
}

/// Whether a finished sandbox run went well as far as its process goes: a build action exited
/// 0 and left every declared output that is not optional (a test's exit code is its result,
/// not a failure of the build).
fn ran_clean(spec: &ActionSpec, outcome: &kiln_exec::SandboxOutcome) -> bool {
    if spec.kind == ActionKind::Test {
        return !matches!(outcome.exit, ExitKind::Cancelled);
    }
    matches!(outcome.exit, ExitKind::Code(0))
        && outcome.outputs.iter().all(|(path, host)| {
            host.is_some() || spec.outputs.iter().any(|o| &o.path == path && o.optional)
        })
}
