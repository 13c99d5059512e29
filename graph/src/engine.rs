//! The build driver: patterns → packages (memoized) → analysis → action graph → scheduled
//! execution → outputs materialized in `kiln-out/` and test results. The CLI calls [`Engine::build`].

pub mod analyze;
mod junit;
pub mod noop;
pub mod packages;
mod replay;
mod scratch;
pub mod sources;
pub mod test_action;
mod timing;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln_cache::{ActionRecord, Digest, DigestFunction, LocalCache};

use crate::action::{ActionKind, Artifact};
use crate::action_graph::{ActionGraph, ActionId};
use crate::action_key::FileDigest;
use crate::analysis::{BuildScoped, BuildSettings, HostAccess, Providers, RuleImpl, WorkspaceInfo};
use crate::events::{BuildEvent, BuildObserver, CacheStatus, TestStatus};
use crate::execute::{ActionDone, Runner};
use crate::label::Label;
use crate::load::{self, discover_packages, HostPlatform};
use crate::pattern::PatternSet;
use crate::repository::{ExternalRepos, RepoContext, RepositoryRule};
use crate::rule_schema::RuleSchema;
use crate::scheduler::{self, ScheduleConfig};
use crate::target::Target;
use analyze::Analyzer;
use packages::{PackageLoader, PackageMemoStore};
use sources::{DigestMemo, Observations, SourceDigests};
use test_action::{test_action, TestOptions, TestPaths};

/// Where the engine keeps what it learns between builds (implemented over the workspace state).
pub trait EngineState: DigestMemo + PackageMemoStore {
    /// Expected duration (ms) of the action identified by `history_key`, from earlier builds.
    fn expected_duration(&self, history_key: &str) -> Option<u64>;
    /// Records what each action of this build was (for `explain` and scheduling); the store sets
    /// `build_id`.
    fn record_actions(&self, records: Vec<ActionRecord>);
    /// The stored no-op record (see [`noop`]).
    fn noop_record(&self) -> Option<Vec<u8>>;
    /// Replaces the stored no-op record; `None` removes it.
    fn set_noop_record(&self, record: Option<Vec<u8>>);
    /// A value of the rules' persistent memo (see [`HostAccess`]).
    fn memo_get(&self, key: &str) -> Option<Vec<u8>>;
    /// Stores a value in the rules' persistent memo.
    fn memo_put(&self, key: &str, value: &[u8]);
}

/// The engine's [`HostAccess`]: observations go to the build's no-op log, memos to the state.
struct EngineHost<'a> {
    state: &'a dyn EngineState,
    log: &'a Observations,
}

impl HostAccess for EngineHost<'_> {
    fn observe(&self, path: &Path) {
        self.log.note_host_path(path);
    }
    fn observe_content(&self, path: &Path, digest: Digest) {
        self.log.note_content(&path.to_string_lossy(), digest);
    }
    fn memo_get(&self, key: &str) -> Option<Vec<u8>> {
        self.state.memo_get(key)
    }
    fn memo_put(&self, key: &str, value: &[u8]) {
        self.state.memo_put(key, value);
    }
    fn env_var(&self, name: &str) -> Option<String> {
        let value = std::env::var(name).ok();
        self.log.note_env(name, value.clone());
        value
    }
}

/// Fixed inputs of the engine for one invocation.
pub struct EngineConfig {
    /// Workspace root.
    pub root: PathBuf,
    /// Scratch space for sandboxes (per workspace), next to the cache.
    pub scratch_dir: PathBuf,
    /// Scratch space on a memory file system for small actions (per workspace), if available.
    pub memory_scratch_dir: Option<PathBuf>,
    /// Root of the shared local cache (opened only when a build has work to look up).
    pub cache_dir: PathBuf,
    /// Its configuration.
    pub cache_config: kiln_cache::CacheConfig,
    /// Digest function.
    pub function: DigestFunction,
    /// Settings that reach analysis.
    pub settings: BuildSettings,
    /// Identifies this build of Kiln (version plus the binary's identity), so that memos and
    /// no-op records made by another build of Kiln are never reused.
    pub identity: String,
    /// Parallel actions.
    pub jobs: usize,
    /// Continue after failures.
    pub keep_going: bool,
    /// How to make the sandbox (namespaces are probed only when a build has work to run).
    pub sandbox: kiln_exec::SandboxConfig,
    /// The whole `kiln.toml` (language sections are read by their rules).
    pub workspace_config: toml::Table,
    /// The remote cache tier behind the local cache, if any (contacted only when a build has
    /// work to look up).
    pub remote: Option<crate::remote_tier::RemoteTier>,
}

/// What to do with the selected targets.
#[derive(Clone, Debug)]
pub enum Goal {
    /// Build them.
    Build,
    /// Build and run the tests among them.
    Test(TestOptions),
}

/// Why a build could not even start executing (loading, analysis, or no tests).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A BUILD file or a reference in one is wrong (exit code 1).
    #[error("{0}")]
    Analysis(String),
    /// The machine is not fit to build: the cache cannot be opened, a directory is not writable
    /// (exit code 36).
    #[error("{0}")]
    Environment(String),
    /// A bug in Kiln (exit code 37).
    #[error("Internal error: {0}")]
    Internal(String),
    /// A test command matched no test targets (exit code 4).
    #[error("No test targets were found, yet testing was requested")]
    NoTests,
}

/// One test run's result.
#[derive(Clone, Debug)]
pub struct TestRun {
    /// The test target.
    pub label: Label,
    /// Outcome.
    pub status: TestStatus,
    /// Whether it came from the cache.
    pub cached: bool,
    /// How long the test ran.
    pub duration: Duration,
    /// Workspace-relative log path.
    pub log: String,
    /// 1-based run number.
    pub run: u32,
    /// Why it did not run, for a skipped test.
    pub reason: Option<String>,
}

/// The outcome of a build.
#[derive(Debug, Default)]
pub struct BuildReport {
    /// Targets the patterns selected.
    pub targets: Vec<Label>,
    /// Targets whose outputs were not all built.
    pub failed_targets: Vec<Label>,
    /// Actions run in the sandbox.
    pub executed: usize,
    /// Actions satisfied from the local cache.
    pub local_hits: usize,
    /// Actions satisfied from a remote cache.
    pub remote_hits: usize,
    /// Failure messages, one per failed action.
    pub failures: Vec<String>,
    /// Test results (test goal only).
    pub tests: Vec<TestRun>,
    /// Workspace-relative outputs of each selected target.
    pub outputs: HashMap<Label, Vec<String>>,
    /// The executable of each selected target that has one (workspace-relative).
    pub executables: HashMap<Label, String>,
    /// Runfiles of each executable target: (path in the tree, workspace-relative file).
    pub runfiles: HashMap<Label, Vec<(String, String)>>,
    /// Every needed action: (label, mnemonic, first output, key) — replayed as events by a no-op.
    pub actions: Vec<(Label, String, String, String)>,
    /// What the build rested on, for `kiln watch`: every file whose content or stat it used
    /// (workspace-relative, or absolute for host files), and every directory whose listing a glob
    /// read, with the listing's fingerprint.
    pub watch_set: WatchSet,
    /// The build was stopped (see [`Engine::with_stop`]) before all its actions ran.
    pub stopped: bool,
}

/// The files and directory listings a build rested on (see [`BuildReport::watch_set`]).
#[derive(Clone, Debug, Default)]
pub struct WatchSet {
    /// Files, workspace-relative (sources, BUILD and `.bzl` files, outputs) or absolute (host tools).
    pub files: Vec<String>,
    /// Directories listed by globs, workspace-relative, with their listing fingerprints.
    pub listings: Vec<(String, String)>,
    /// The content digest the build used for each workspace file it digested (absent after a
    /// no-op, which read nothing).
    pub digests: HashMap<String, kiln_cache::Digest>,
}

impl BuildReport {
    /// Whether every action succeeded.
    pub fn success(&self) -> bool {
        !self.stopped && self.failed_targets.is_empty() && self.failures.is_empty()
    }
}

/// Kiln's build engine.
pub struct Engine<'a> {
    config: EngineConfig,
    cache: std::sync::OnceLock<Arc<LocalCache>>,
    rules: HashMap<&'static str, &'a dyn RuleImpl>,
    repo_rules: &'a [Box<dyn RepositoryRule>],
    schemas: Vec<RuleSchema>,
    state: &'a dyn EngineState,
    observer: &'a dyn BuildObserver,
    stop: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl<'a> Engine<'a> {
    /// An engine over `rules`, persisting to `state` and reporting to `observer`.
    pub fn new(
        config: EngineConfig,
        rules: &'a [Box<dyn RuleImpl>],
        state: &'a dyn EngineState,
        observer: &'a dyn BuildObserver,
    ) -> Self {
        let rules_by_name: HashMap<&'static str, &'a dyn RuleImpl> = rules
            .iter()
            .map(|r| (r.schema().name, r.as_ref()))
            .collect();
        let schemas = rules.iter().map(|r| r.schema()).collect();
        Engine {
            config,
            cache: std::sync::OnceLock::new(),
            rules: rules_by_name,
            repo_rules: &[],
            schemas,
            state,
            observer,
            stop: None,
        }
    }

    /// Makes the build stoppable: setting `flag` cancels the running actions and starts no more
    /// (the report then says [`BuildReport::stopped`]). Nothing a cancelled action did is cached.
    pub fn with_stop(mut self, flag: Arc<std::sync::atomic::AtomicBool>) -> Self {
        self.stop = Some(flag);
        self
    }

    /// Defines external repositories through `repo_rules` (the first that knows a name wins).
    pub fn with_repositories(mut self, repo_rules: &'a [Box<dyn RepositoryRule>]) -> Self {
        self.repo_rules = repo_rules;
        self
    }

    /// What rules and repository rules see of the workspace.
    fn workspace_info(&self) -> WorkspaceInfo {
        WorkspaceInfo {
            root: self.config.root.clone(),
            cache_dir: self.config.cache_dir.clone(),
            config: self.config.workspace_config.clone(),
            function: self.config.function,
        }
    }

    /// The shared cache, opened on first use.
    fn cache(&self) -> Result<Arc<LocalCache>, EngineError> {
        if let Some(cache) = self.cache.get() {
            return Ok(Arc::clone(cache));
        }
        let cache = LocalCache::open(&self.config.cache_dir, self.config.cache_config)
            .map(Arc::new)
            .map_err(|e| {
                EngineError::Environment(format!(
                    "Cannot open the cache at `{}`: {e}",
                    self.config.cache_dir.display()
                ))
            })?;
        Ok(Arc::clone(self.cache.get_or_init(|| cache)))
    }

    /// The workspace root.
    pub fn root(&self) -> &Path {
        &self.config.root
    }

    fn settings_key(&self) -> String {
        let s = &self.config.settings;
        format!(
            "{}|{}|{}|{}|{}",
            s.compilation_mode, s.workspace_name, s.host_os, s.host_cpu, self.config.identity
        )
    }

    fn digest_for_memo<'l>(
        &'l self,
        log: &'l Observations,
    ) -> impl Fn(&str) -> Option<String> + Sync + 'l {
        let sources =
            SourceDigests::logged(&self.config.root, self.config.function, self.state, log);
        move |path: &str| sources.digest(path).ok().map(|d| d.digest.hex())
    }

    /// Loads every package the patterns cover and returns the selected targets (for `query` too).
    pub fn select_targets(&self, patterns: &PatternSet) -> Result<Vec<Target>, EngineError> {
        let log = Observations::default();
        let digest = self.digest_for_memo(&log);
        let mut loader = self.loader(&digest);
        let (targets, _) = self.select_with(&mut loader, patterns)?;
        Ok(targets)
    }

    /// Loads one package through the memoized loader (for `query`, which follows dependencies
    /// on demand); the error is the loader's message.
    pub fn load_package(&self, name: &str) -> Result<Arc<load::Package>, String> {
        let log = Observations::default();
        let digest = self.digest_for_memo(&log);
        let mut loader = self.loader(&digest);
        loader.package(name)
    }

    fn loader<'l>(
        &'l self,
        digest: &'l (dyn Fn(&str) -> Option<String> + Sync),
    ) -> PackageLoader<'l> {
        let platform = HostPlatform {
            os: self.config.settings.host_os.clone(),
            cpu: self.config.settings.host_cpu.clone(),
        };
        PackageLoader::new(
            &self.config.root,
            self.config.function,
            platform,
            &self.schemas,
            self.settings_key(),
            digest,
            self.state,
        )
    }

    fn select_with(
        &self,
        loader: &mut PackageLoader<'_>,
        patterns: &PatternSet,
    ) -> Result<(Vec<Target>, usize), EngineError> {
        let all = discover_packages(&self.config.root);
        let mut wanted = patterns.packages_to_load(&all);
        for label in patterns.explicit_targets() {
            if !wanted.contains(&label.package) {
                wanted.push(label.package.clone());
            }
        }
        let mut errors = Vec::new();
        let mut targets = Vec::new();
        for name in &wanted {
            match loader.package(name) {
                Ok(package) => targets.extend(package.targets.values().cloned()),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(EngineError::Analysis(errors.join("\n")));
        }
        let selected: HashSet<Label> = patterns.select(targets.iter()).into_iter().collect();
        for label in patterns.explicit_targets() {
            if !targets.iter().any(|t| &t.label == label) && !selected.contains(label) {
                // An explicitly named file or output is fine too; analysis will tell.
                continue;
            }
        }
        let mut chosen: Vec<Target> = targets
            .into_iter()
            .filter(|t| selected.contains(&t.label))
            .collect();
        chosen.sort_by(|a, b| a.label.cmp(&b.label));
        Ok((chosen, wanted.len()))
    }

    /// Builds (or tests) what `patterns` select.
    pub fn build(&self, patterns: &PatternSet, goal: &Goal) -> Result<BuildReport, EngineError> {
        // Analysis recurses along dependency chains; give it room.
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("kiln-build".into())
                .stack_size(256 << 20)
                .spawn_scoped(scope, || self.build_inner(patterns, goal))
                .map_err(|e| EngineError::Analysis(format!("Cannot start the build thread: {e}")))?
                .join()
                .unwrap_or_else(|_| {
                    Err(EngineError::Internal(
                        "the build thread panicked".to_string(),
                    ))
                })
        })
    }

    fn build_inner(&self, patterns: &PatternSet, goal: &Goal) -> Result<BuildReport, EngineError> {
        let request = self.request_fingerprint(patterns, goal);
        if let Some(report) = self.replay_noop(&request, goal) {
            return Ok(report);
        }
        let started = std::time::SystemTime::now();
        // Temp files of a build killed mid-copy (the build lock says none is running now). The
        // staging directory is made afresh; it and `kiln-out` are marked so that ext4 gives
        // their subdirectories block groups of their own, not the one where the outputs a
        // clean just deleted were (see `kiln_cache::mark_top_directory`).
        let staging = self
            .config
            .root
            .join(crate::action::MATERIALIZE_STAGING_DIR);
        let _ = std::fs::remove_dir_all(&staging);
        let out_dir = self.config.root.join("kiln-out");
        if std::fs::create_dir_all(&out_dir).is_ok() {
            kiln_cache::mark_top_directory(&out_dir);
        }
        // Its subdirectories, where copies are made, get groups of their own too.
        if std::fs::create_dir(&staging).is_ok() {
            kiln_cache::mark_top_directory(&staging);
        }
        let cache = self.cache()?;
        let observed = Observations::default();
        let digest = self.digest_for_memo(&observed);
        let workspace = self.workspace_info();
        let host = EngineHost {
            state: self.state,
            log: &observed,
        };
        let scoped = BuildScoped::default();
        let repos = ExternalRepos::new(
            self.repo_rules,
            RepoContext {
                workspace: &workspace,
                host: &host,
                scoped: &scoped,
            },
        );
        let mut loader = self.loader(&digest).with_repositories(&repos);
        let timer = timing::PhaseTimer::new();
        let (selected, _) = self.select_with(&mut loader, patterns)?;
        let mut explicit: Vec<Label> = patterns.explicit_targets().cloned().collect();
        explicit.retain(|l| !selected.iter().any(|t| &t.label == l));

        timer.mark("load");
        let mut analyzer = Analyzer::new(
            &self.config.root,
            &mut loader,
            &self.rules,
            &self.config.settings,
            analyze::AnalysisEnv {
                workspace: &workspace,
                host: &host,
                scoped: &scoped,
                repos: &repos,
            },
        );
        let mut report = BuildReport::default();
        let mut providers: Vec<(Label, Option<Target>, Arc<Providers>)> = Vec::new();
        let mut errors = Vec::new();
        for target in &selected {
            match analyzer.analyze(&target.label, None) {
                Ok(p) => providers.push((target.label.clone(), Some(target.clone()), p)),
                Err(e) => errors.push(e),
            }
            if !errors.is_empty() && !self.config.keep_going {
                break;
            }
        }
        for label in &explicit {
            match analyzer.analyze(label, None) {
                Ok(p) => providers.push((label.clone(), None, p)),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            let message = errors.join("\n");
            return Err(if analyzer.toolchain_failed {
                EngineError::Environment(message)
            } else {
                EngineError::Analysis(message)
            });
        }
        let mut actions = std::mem::take(&mut analyzer.actions);
        let analyzed_targets = std::mem::take(&mut analyzer.targets);
        let checked_sources = std::mem::take(&mut analyzer.checked_sources);
        drop(analyzer);
        let packages_loaded = loader.loaded_count();
        let packages_evaluated = loader.evaluated;
        let glob_listings = std::mem::take(&mut loader.glob_listings);

        // What the user asked for: default outputs (+ executables and runfiles for tests).
        let mut top: Vec<Artifact> = Vec::new();
        let mut test_actions: Vec<(Label, usize, TestPaths, u32)> = Vec::new();
        // Tests built for another platform: built, reported skipped, never run.
        let mut skipped_tests: Vec<(Label, String)> = Vec::new();
        for (label, _, p) in &providers {
            report.targets.push(label.clone());
            top.extend(p.default.files.iter().cloned());
            report.outputs.insert(
                label.clone(),
                p.default.files.iter().map(|a| a.path.clone()).collect(),
            );
            if let Some(exe) = &p.default.executable {
                top.push(exe.clone());
                report.executables.insert(label.clone(), exe.path.clone());
                report.runfiles.insert(
                    label.clone(),
                    p.default
                        .runfiles
                        .iter()
                        .map(|(path, a)| (path.clone(), a.path.clone()))
                        .collect(),
                );
                top.extend(p.default.runfiles.iter().map(|(_, a)| a.clone()));
            }
        }
        if let Goal::Test(options) = goal {
            let runs = options.runs_per_test.max(1);
            for (label, target, p) in &providers {
                let Some(target) = target.as_ref().or_else(|| analyzed_targets.get(label)) else {
                    continue;
                };
                let is_test = self
                    .rules
                    .get(target.kind.as_str())
                    .is_some_and(|r| r.schema().test);
                if !is_test {
                    continue;
                }
                if let Some(reason) = p.test.as_ref().and_then(|t| t.cannot_run.clone()) {
                    skipped_tests.push((label.clone(), reason));
                    continue;
                }
                for run in 1..=runs {
                    if let Some((action, paths)) =
                        test_action(target, p, &self.config.settings, options, run, runs)
                    {
                        test_actions.push((label.clone(), actions.len(), paths, run));
                        actions.push(action);
                    }
                }
            }
            if test_actions.is_empty() && skipped_tests.is_empty() {
                return Err(EngineError::NoTests);
            }
        }
        timer.mark("analyze");
        let graph = ActionGraph::new(actions).map_err(|e| EngineError::Analysis(e.to_string()))?;
        let extra: Vec<ActionId> = test_actions
            .iter()
            .map(|(_, i, _, _)| ActionId(*i as u32))
            .collect();
        let needed = graph.needed(&top, &extra);
        self.observer.event(&BuildEvent::Planned {
            actions: needed.len(),
            packages_evaluated,
            packages_loaded,
        });

        // Source digests for every source an action reads, and the top-level sources themselves.
        let mut source_paths: Vec<String> = needed
            .iter()
            .flat_map(|id| graph.action(*id).inputs.iter())
            .filter(|i| i.artifact.source)
            .map(|i| i.artifact.path.clone())
            .collect();
        source_paths.sort();
        source_paths.dedup();
        timer.mark("graph");
        source_paths.extend(checked_sources);
        source_paths.extend(top.iter().filter(|a| a.source).map(|a| a.path.clone()));
        source_paths.sort();
        source_paths.dedup();
        let roots = repos.source_roots(&self.config.root);
        let sources = SourceDigests::logged(
            &self.config.root,
            self.config.function,
            self.state,
            &observed,
        )
        .with_repositories(&roots)
        .digest_all(&source_paths)
        .map_err(EngineError::Analysis)?;

        // Host files are digested through the same memo as sources (keyed by absolute path).
        let host_files =
            SourceDigests::logged(Path::new("/"), self.config.function, self.state, &observed);
        let host_digest = |path: &str| host_files.digest(path).ok().map(|d| d.digest);
        scratch::clear_scratch(&self.config.scratch_dir);
        let memory_scratch = self
            .config
            .memory_scratch_dir
            .as_deref()
            .and_then(scratch::private_dir);
        if let Some(dir) = &memory_scratch {
            scratch::clear_scratch(dir);
        }
        let memory_scratch_limit = memory_scratch
            .as_deref()
            .map(|dir| scratch::memory_scratch_limit(dir, self.config.jobs))
            .unwrap_or(0);
        let mut sandbox = kiln_exec::Sandbox::new(self.config.sandbox.clone());
        if let Some(dir) = &memory_scratch {
            // Small CAS blobs staged by many actions (a Go link's archives) are copied there
            // once per build and hard-linked; it is cleared with the scratch trees.
            let pool = dir.join(format!("pool-{}", std::process::id()));
            sandbox = sandbox.with_input_pool(pool, memory_scratch_limit);
        }
        if let Some(reason) = sandbox.fallback_reason() {
            self.observer.event(&BuildEvent::Warning(format!(
                "Linux namespaces are unavailable ({reason}); actions run in plain directories without isolation"
            )));
        }
        let mut runner = Runner::new(
            self.config.root.clone(),
            Arc::clone(&cache),
            sandbox,
            self.config.function,
            crate::host::platform_properties(self.config.function, &host_digest),
            self.config.scratch_dir.clone(),
        );
        runner.memory_scratch_limit = memory_scratch_limit;
        runner.memory_scratch_root = memory_scratch.clone();
        runner.source_roots = roots.clone();
        runner.remote = self.config.remote.clone();
        let minimal = self
            .config
            .remote
            .as_ref()
            .is_some_and(|r| r.download == crate::remote_tier::DownloadOutputs::Minimal);
        runner.tool_digests = crate::host::tool_digests(
            needed
                .iter()
                .flat_map(|id| graph.action(*id).host_tools.iter().cloned()),
            &host_digest,
            &|path, metadata| observed.note_metadata(path, metadata),
            self.config.function,
        );
        let priorities = graph.priorities(&needed, &|spec| {
            self.state
                .expected_duration(&spec.history_key())
                .unwrap_or(1)
        });
        let top_paths: HashSet<String> = top
            .iter()
            .filter(|a| !a.source)
            .map(|a| a.path.clone())
            .collect();
        let materialized_lost = Mutex::new(Vec::<String>::new());
        let after = |id: ActionId, done: &ActionDone| -> Vec<String> {
            let spec = graph.action(id);
            let mut lost = Vec::new();
            for (path, file) in &done.outputs {
                let wanted = top_paths.contains(path) || spec.kind == ActionKind::Test;
                if !wanted {
                    continue;
                }
                if minimal
                    && done.status == CacheStatus::RemoteHit
                    && spec.kind != ActionKind::Test
                    && !cache.contains(&file.digest)
                {
                    // Not downloaded: never leave an older build's file in its place.
                    self.withdraw(path);
                    continue;
                }
                let checked = runner.wrote_this_build(&file.digest);
                if !self.materialize(path, file, checked, &observed, &|d| runner.ensure_local(d)) {
                    lost.push(path.clone());
                }
            }
            if let Ok(mut all) = materialized_lost.lock() {
                all.extend(lost.iter().cloned());
            }
            lost
        };
        timer.mark("sources+setup");
        // Workers answering cache hits leave the access records to this thread.
        let flush_timer = kiln_cache::FlushTimer::start(&cache);
        let schedule = scheduler::run(
            &graph,
            &needed,
            &priorities,
            &sources,
            &runner,
            &ScheduleConfig {
                jobs: self.config.jobs,
                // As many again may be looked up in the caches while `jobs` run.
                lookahead: self.config.jobs,
                keep_going: self.config.keep_going,
                stop: self.stop.clone(),
            },
            self.observer,
            &after,
        );
        drop(flush_timer);

        // What the cache found wrong (corrupt or truncated entries it removed) is the user's
        // business: every such entry was treated as a miss and rebuilt.
        for warning in cache.take_warnings() {
            self.observer
                .event(&BuildEvent::Warning(warning.to_string()));
        }
        if let Some(remote) = &self.config.remote {
            for warning in remote.cache.take_warnings() {
                self.observer.event(&BuildEvent::Warning(warning));
            }
        }

        // Counts, failures, tests.
        let attempts = |status| schedule.attempts.get(&status).copied().unwrap_or(0);
        report.executed = attempts(CacheStatus::Executed);
        report.local_hits = attempts(CacheStatus::LocalHit);
        report.stopped = schedule.stopped;
        report.remote_hits = attempts(CacheStatus::RemoteHit);
        let mut records = Vec::new();
        for (id, done) in &schedule.done {
            let spec = graph.action(*id);
            report.actions.push((
                spec.owner.clone(),
                spec.mnemonic.clone(),
                spec.history_key(),
                done.key.hex(),
            ));
            records.push(ActionRecord {
                label: spec.owner.to_string(),
                mnemonic: spec.mnemonic.clone(),
                output_key: spec.history_key(),
                action_key: done.key.hex(),
                inputs: done
                    .keyed
                    .inputs
                    .iter()
                    .map(|(p, d)| (p.clone(), d.digest.to_string()))
                    .collect(),
                argv: spec.arguments.clone(),
                env: spec.env_pairs(),
                platform: done
                    .keyed
                    .action
                    .platform
                    .as_ref()
                    .map(|p| {
                        p.properties
                            .iter()
                            .map(|q| (q.name.clone(), q.value.clone()))
                            .collect()
                    })
                    .unwrap_or_default(),
                duration_ms: done.run_duration.as_millis() as u64,
                status: done.status.name().to_string(),
                build_id: 0,
            });
        }
        timer.mark("execute");
        self.state.record_actions(records);
        for (id, message) in &schedule.failed {
            let spec = graph.action(*id);
            report.failures.push(format!(
                "{} {} failed: {message}",
                spec.mnemonic, spec.owner
            ));
        }
        for (label, index, paths, run) in &test_actions {
            let id = ActionId(*index as u32);
            let run_result = match schedule.done.get(&id) {
                Some(done) => {
                    let status = if done.timed_out {
                        TestStatus::TimedOut
                    } else if done.exit_code == 0 {
                        TestStatus::Passed
                    } else {
                        TestStatus::Failed
                    };
                    junit::write_junit_if_missing(
                        &self.config.root,
                        label,
                        paths,
                        status,
                        done,
                        &observed,
                    );
                    TestRun {
                        label: label.clone(),
                        status,
                        cached: done.status != CacheStatus::Executed,
                        duration: done.run_duration,
                        log: paths.log.clone(),
                        run: *run,
                        reason: None,
                    }
                }
                None => continue,
            };
            self.observer.event(&BuildEvent::TestResult {
                label: run_result.label.clone(),
                status: run_result.status,
                cached: run_result.cached,
                duration: run_result.duration,
                log: run_result.log.clone(),
                run: run_result.run,
            });
            report.tests.push(run_result);
        }
        for (label, reason) in skipped_tests {
            let run_result = TestRun {
                label,
                status: TestStatus::Skipped,
                cached: false,
                duration: Duration::ZERO,
                log: String::new(),
                run: 1,
                reason: Some(reason),
            };
            self.observer.event(&BuildEvent::TestResult {
                label: run_result.label.clone(),
                status: run_result.status,
                cached: false,
                duration: Duration::ZERO,
                log: String::new(),
                run: 1,
            });
            report.tests.push(run_result);
        }
        // A selected target failed if any action it needs failed or was skipped.
        let every_needed_done = needed.iter().all(|id| schedule.done.contains_key(id));
        for (label, _, p) in &providers {
            let mut files: Vec<Artifact> = p.default.files.clone();
            files.extend(p.default.executable.iter().cloned());
            // With every needed action done, every target is; only otherwise is each target's
            // own closure walked (hundreds of targets over a large graph cost milliseconds).
            let ok = every_needed_done
                || graph
                    .needed(&files, &[])
                    .iter()
                    .all(|id| schedule.done.contains_key(id));
            if !ok {
                report.failed_targets.push(label.clone());
            }
            self.observer.event(&BuildEvent::TargetCompleted {
                label: label.clone(),
                success: ok,
                outputs: report.outputs.get(label).cloned().unwrap_or_default(),
            });
        }
        let _ = cache.flush();
        timer.mark("results+index flush");
        // Dropping the runner drops the sandbox: that waits for the background removal of the
        // last scratch trees and removes the input pool.
        drop(runner);
        if let Some(dir) = &memory_scratch {
            // Empty by now; leave nothing behind.
            let _ = std::fs::remove_dir(dir);
        }
        timer.mark("sandbox teardown");
        report.watch_set = WatchSet {
            files: observed
                .files
                .lock()
                .map(|files| files.iter().map(|(path, _)| path.clone()).collect())
                .unwrap_or_default(),
            listings: glob_listings.clone(),
            digests: observed
                .digests
                .lock()
                .map(|d| d.clone())
                .unwrap_or_default(),
        };
        report.watch_set.files.sort();
        report.watch_set.files.dedup();
        self.save_noop(&request, started, &observed, glob_listings, &report);
        timer.mark("no-op record");
        let _ = cache.enforce_cap();
        timer.mark("cache cap");
        drop_in_background((graph, schedule, providers, analyzed_targets, priorities));
        Ok(report)
    }

    /// Copies a CAS blob to `kiln-out/...` unless the file there already has that content.
    /// Returns false when the blob is lost (missing or corrupt).
    /// `checked`: this build wrote the blob from bytes it hashed, so the copy is checked for its
    /// length only.
    /// `fetch` brings a blob that is not in the local cache from the remote tier.
    fn materialize(
        &self,
        path: &str,
        file: &FileDigest,
        checked: bool,
        log: &Observations,
        fetch: &dyn Fn(&Digest) -> bool,
    ) -> bool {
        let dest = self.config.root.join(path);
        let sources =
            SourceDigests::logged(&self.config.root, self.config.function, self.state, log);
        // Probe, and log only a file that is kept: a stale file about to be replaced is nothing
        // the build rests on. (Whatever else noted this path, a source label under kiln-out/
        // say, stays noted, so a replacement still shows as a second content and the no-op
        // record is refused.)
        if !sources.known_to_differ(path, file) {
            if let Ok(probe) = sources.probe(path) {
                if probe.file.digest == file.digest && probe.file.executable == file.executable {
                    sources.note_probe(path, &probe);
                    return true;
                }
            }
        }
        let Some(cache) = self.cache.get() else {
            return false;
        };
        if !fetch(&file.digest) {
            return false;
        }
        let staging = self
            .config
            .root
            .join(crate::action::MATERIALIZE_STAGING_DIR);
        let check = if checked {
            kiln_cache::CopyCheck::Length
        } else {
            kiln_cache::CopyCheck::Hash
        };
        match cache.materialize_staged(&file.digest, &dest, file.executable, &staging, check) {
            Ok(true) => {
                let _ = sources.note_written(path, *file);
                true
            }
            Ok(false) => false,
            Err(e) => {
                self.observer
                    .event(&BuildEvent::Warning(format!("Cannot write `{path}`: {e}")));
                false
            }
        }
    }
}

impl Engine<'_> {
    /// Removes `kiln-out/...` for an output this build did not download, so that no file from
    /// an earlier build stands in for it.
    fn withdraw(&self, path: &str) {
        let dest = self.config.root.join(path);
        if dest.symlink_metadata().is_ok() {
            if let Err(e) = std::fs::remove_file(&dest) {
                self.observer
                    .event(&BuildEvent::Warning(format!("Cannot remove `{path}`: {e}")));
            }
        }
    }
}

pub use scratch::remove_tree;

/// Frees `value` on a short-lived thread: the graph, results and targets of a large build take
/// milliseconds to free, which the caller need not wait for (a one-shot `kiln` exits without
/// waiting; `kiln watch` frees them while it waits for changes). Freed inline if no thread
/// can be started.
fn drop_in_background<T: Send + 'static>(value: T) {
    // Should the thread not start, the closure, and `value` with it, is dropped right here.
    let _ = std::thread::Builder::new()
        .name("kiln-free".into())
        .spawn(move || drop(value));
}
