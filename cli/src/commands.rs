//! One function per command. Each opens the workspace, does its job through the library crates and
//! returns the exit code.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use kiln_graph::engine::{BuildReport, Engine, EngineConfig, EngineError, Goal};
use kiln_graph::events::{BuildObserver, TestStatus};
use kiln_graph::label::Label;
use kiln_graph::pattern::PatternSet;

use crate::args::{BuildFlags, CacheCommand, Cli, Command, TestArgs, TestOutput};
use crate::events_file::{EventsFile, Tee};
use crate::exit::{self, Exit};
use crate::state::State;
use crate::ui::{self, Terminal};
use crate::workspace::Workspace;
use kiln_graph::engine::test_action::TestOptions;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Build(args) => build(&args.patterns, &args.flags, None),
        Command::Test(args) => {
            let options = test_options(&args);
            build(
                &args.patterns,
                &args.flags,
                Some((options, args.test_output)),
            )
        }
        Command::Run(args) => run_target(&args.target, &args.args, &args.flags),
        Command::Watch(args) => crate::watch::run(args),
        Command::Query(args) => crate::query::run(&args),
        Command::Clean(args) => clean(&args.common, args.expunge),
        Command::Info(common) => info(&common),
        Command::Explain(args) => crate::state::explain(&args),
        Command::Cache(args) => match args.command {
            CacheCommand::Gc { max_size, common } => cache_gc(&common, max_size.as_deref()),
            CacheCommand::Stats { common } => cache_stats(&common),
        },
        Command::Serve(args) => crate::serve::run(&args),
    }
}

/// The engine's test options from `kiln test`'s flags.
pub fn test_options(args: &TestArgs) -> TestOptions {
    TestOptions {
        filter: args.test_filter.clone(),
        args: args.test_arg.clone(),
        no_cache: args.nocache_test_results,
        runs_per_test: args.runs_per_test,
        timeout: args.test_timeout.map(std::time::Duration::from_secs),
    }
}

/// Parses target patterns; a malformed one is a command-line error (exit code 2).
pub fn parse_patterns(patterns: &[String], cwd_package: &str) -> Result<PatternSet> {
    PatternSet::parse(patterns, cwd_package)
        .map_err(|e| Exit::new(exit::BAD_COMMAND_LINE, e.to_string()).into())
}

/// The engine configuration for `flags` in `ws` (shared by building commands and `query`).
pub fn engine_config(ws: &Workspace, flags: &BuildFlags) -> Result<EngineConfig> {
    Ok(EngineConfig {
        root: ws.root.clone(),
        scratch_dir: ws.disk_scratch_dir(),
        memory_scratch_dir: ws.memory_scratch_dir(),
        cache_dir: ws.cache_dir.clone(),
        cache_config: ws.cache_config()?,
        function: ws.digest_function(flags)?,
        settings: ws.settings(flags)?,
        identity: kiln_identity(),
        jobs: ws.jobs(flags),
        keep_going: flags.keep_going || ws.config.build.keep_going.unwrap_or(false),
        sandbox: ws.sandbox_config(flags)?,
        workspace_config: ws.config.raw.clone(),
        remote: ws.remote(flags)?,
    })
}

/// This build of Kiln: its version and the identity of its binary (a rebuilt binary has a new
/// inode and mtime), so package memos and no-op records never outlive the code that made them.
fn kiln_identity() -> String {
    use std::os::unix::fs::MetadataExt;
    let exe = std::env::current_exe().and_then(std::fs::metadata);
    match exe {
        Ok(m) => format!(
            "{}+{}:{}:{}:{}",
            env!("CARGO_PKG_VERSION"),
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime_nsec() + m.mtime() * 1_000_000_000
        ),
        Err(_) => format!("{}+unknown-binary", env!("CARGO_PKG_VERSION")),
    }
}

/// The build lock with the claim on the scratch directory it covers. Fields drop in order: the
/// claim is given up before the lock.
pub struct BuildGuard {
    _claim: crate::scratch_claim::ScratchClaim,
    _lock: kiln_cache::BuildLock,
}

/// Everything a build needs, opened.
pub struct Session {
    /// The workspace.
    pub workspace: Workspace,
    /// Its state (memo, history, lock).
    pub state: State,
    /// Progress and messages.
    pub terminal: Terminal,
    /// `--events`, if asked for.
    pub events: Option<EventsFile>,
}

impl Session {
    /// Opens the workspace, its state and the events file.
    pub fn open(flags: &BuildFlags) -> Result<Session> {
        let workspace = Workspace::open(&flags.common)?;
        let terminal = Terminal::new();
        let state = State::open(&workspace.state_dir, &terminal)?;
        let events = flags
            .events
            .as_deref()
            .map(EventsFile::create)
            .transpose()?;
        Ok(Session {
            workspace,
            state,
            terminal,
            events,
        })
    }

    /// Takes the workspace's build lock and, while it is held, claims its memory scratch
    /// directory for the Ctrl-C handler; first removes what interrupted builds set aside.
    pub fn lock_for_build(&self) -> Result<BuildGuard> {
        let lock = self.state.lock(&self.terminal)?;
        let memory_scratch = self.workspace.memory_scratch_dir();
        if let Some(dir) = &memory_scratch {
            crate::scratch_claim::sweep_interrupted(dir);
        }
        Ok(BuildGuard {
            _claim: crate::scratch_claim::claim(memory_scratch),
            _lock: lock,
        })
    }

    /// Runs the engine once for `patterns` and `goal`.
    pub fn engine_run(
        &self,
        flags: &BuildFlags,
        patterns: &PatternSet,
        goal: &Goal,
    ) -> Result<BuildReport> {
        self.engine_run_observed(flags, patterns, goal, None, None)
    }

    /// The same, also reporting events to `extra`, and stoppable through `stop` (see
    /// [`Engine::with_stop`]).
    pub fn engine_run_observed(
        &self,
        flags: &BuildFlags,
        patterns: &PatternSet,
        goal: &Goal,
        extra: Option<&dyn BuildObserver>,
        stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    ) -> Result<BuildReport> {
        let ws = &self.workspace;
        let config = engine_config(ws, flags)?;
        let rules = kiln_rules::all_rules();
        let repository_rules = kiln_rules::all_repository_rules();
        let mut observers: Vec<&dyn BuildObserver> = vec![&self.terminal];
        if let Some(events) = &self.events {
            observers.push(events);
        }
        observers.extend(extra);
        let tee = Tee(observers);
        let mut engine =
            Engine::new(config, &rules, &self.state, &tee).with_repositories(&repository_rules);
        if let Some(stop) = stop {
            engine = engine.with_stop(stop);
        }
        let report = engine.build(patterns, goal).map_err(|e| match e {
            EngineError::Analysis(message) => Exit::new(exit::BUILD_FAILED, message),
            EngineError::NoTests => Exit::new(exit::NO_TESTS, e.to_string()),
            EngineError::Environment(message) => Exit::new(exit::LOCAL_ENVIRONMENT, message),
            EngineError::Internal(_) => Exit::new(exit::INTERNAL, e.to_string()),
        });
        self.terminal.finish();
        self.state.mark_build();
        if let (Err(e), Some(events)) = (&report, &self.events) {
            events.write(serde_json::json!({"type": "summary", "success": false, "error": e.to_string(), "executed": 0, "local_hits": 0, "remote_hits": 0}));
            events.flush();
        }
        Ok(report?)
    }
}

fn build(
    patterns: &[String],
    flags: &BuildFlags,
    test: Option<(kiln_graph::engine::test_action::TestOptions, TestOutput)>,
) -> Result<i32> {
    let session = Session::open(flags)?;
    let patterns = parse_patterns(patterns, &session.workspace.cwd_package)?;
    let _lock = session.lock_for_build()?;
    let goal = match &test {
        Some((options, _)) => Goal::Test(options.clone()),
        None => Goal::Build,
    };
    let report = session.engine_run(flags, &patterns, &goal)?;
    let terminal = &session.terminal;
    if test.is_none() {
        for label in &report.targets {
            if report.failed_targets.contains(label) {
                continue;
            }
            let outputs = report.outputs.get(label).cloned().unwrap_or_default();
            if report.targets.len() <= 10 && !outputs.is_empty() {
                terminal.line(&format!("Target {label} up-to-date:"));
                for output in outputs.iter().take(10) {
                    terminal.line(&format!("  {output}"));
                }
            }
        }
    }
    let mut code = if report.success() {
        exit::SUCCESS
    } else {
        exit::BUILD_FAILED
    };
    if let Some((_, output)) = &test {
        code = report_tests(&session, &report, *output, code);
    }
    let status = if code == exit::SUCCESS {
        "INFO: Build completed successfully"
    } else {
        "ERROR: Build did NOT complete successfully"
    };
    terminal.line(&format!(
        "{status}, {} ({:.2}s)",
        ui::summary(report.executed, report.local_hits, report.remote_hits),
        terminal.elapsed()
    ));
    if let Some(events) = &session.events {
        events.write(serde_json::json!({
            "type": "summary",
            "success": code == exit::SUCCESS,
            "exit_code": code,
            "executed": report.executed,
            "local_hits": report.local_hits,
            "remote_hits": report.remote_hits,
            "failed_targets": report.failed_targets.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
            "tests_passed": report.tests.iter().filter(|t| t.status == TestStatus::Passed).count(),
            "tests_failed": report.tests.iter().filter(|t| matches!(t.status, TestStatus::Failed | TestStatus::TimedOut)).count(),
            "tests_skipped": report.tests.iter().filter(|t| t.status == TestStatus::Skipped).count(),
            "elapsed_s": terminal.elapsed(),
        }));
        events.flush();
    }
    Ok(code)
}

/// Prints test results Bazel-style and returns the exit code.
pub fn report_tests(
    session: &Session,
    report: &BuildReport,
    output: TestOutput,
    build_code: i32,
) -> i32 {
    let terminal = &session.terminal;
    let mut by_label: BTreeMap<&Label, Vec<&kiln_graph::engine::TestRun>> = BTreeMap::new();
    for run in &report.tests {
        by_label.entry(&run.label).or_default().push(run);
    }
    let mut failed = 0;
    let mut skipped = 0;
    for (label, runs) in &by_label {
        if let Some(reason) = runs.iter().find_map(|r| r.reason.as_ref()) {
            skipped += 1;
            terminal.line(&format!("{label:<50} SKIPPED: {reason}"));
            continue;
        }
        let passed = runs.iter().all(|r| r.status == TestStatus::Passed);
        let show_log = output == TestOutput::All || (output == TestOutput::Errors && !passed);
        if show_log {
            for run in runs {
                let log = std::fs::read_to_string(session.workspace.root.join(&run.log))
                    .unwrap_or_default();
                terminal.line(&format!("==================== Test output for {label}:\n{}================================================================================", log));
            }
        }
        let cached = runs.iter().all(|r| r.cached);
        let status = if runs.iter().any(|r| r.status == TestStatus::TimedOut) {
            "TIMEOUT"
        } else if passed {
            "PASSED"
        } else {
            "FAILED"
        };
        if !passed {
            failed += 1;
        }
        let time: f64 = runs.iter().map(|r| r.duration.as_secs_f64()).sum();
        let cached_text = if cached { " (cached)" } else { "" };
        let runs_text = if runs.len() > 1 {
            format!(" in {} runs", runs.len())
        } else {
            String::new()
        };
        let log = runs.first().map(|r| r.log.as_str()).unwrap_or("");
        let suffix = if passed {
            String::new()
        } else {
            format!("\n  {log}")
        };
        terminal.line(&format!(
            "{label:<50} {status}{cached_text} in {time:.1}s{runs_text}{suffix}"
        ));
    }
    let total = by_label.len();
    let skipped_text = if skipped > 0 {
        format!(", {skipped} skipped (cannot run on this machine)")
    } else {
        String::new()
    };
    terminal.line(&format!(
        "Executed {} out of {total} tests: {} passed, {failed} failed{skipped_text}",
        total - skipped,
        total - failed - skipped
    ));
    if build_code != exit::SUCCESS && report.tests.len() < total {
        return build_code;
    }
    if failed > 0 {
        exit::TESTS_FAILED
    } else {
        build_code
    }
}

fn run_target(target: &str, program_args: &[String], flags: &BuildFlags) -> Result<i32> {
    // The program runs from `kiln-out/`: its outputs must be downloaded.
    let mut flags = flags.clone();
    if flags.remote.remote_download_outputs != Some(crate::args::DownloadOutputsArg::All) {
        flags.remote.remote_download_outputs = Some(crate::args::DownloadOutputsArg::Toplevel);
    }
    let flags = &flags;
    let session = Session::open(flags)?;
    let patterns = parse_patterns(&[target.to_string()], &session.workspace.cwd_package)?;
    let label = patterns.explicit_targets().next().cloned().ok_or_else(|| {
        Exit::new(
            exit::BAD_COMMAND_LINE,
            format!("`kiln run` needs a single target, not the pattern `{target}`"),
        )
    })?;
    // The runfiles tree in kiln-out is written under the build lock too.
    let lock = session.lock_for_build()?;
    let report = session.engine_run(flags, &patterns, &Goal::Build)?;
    if !report.success() {
        session
            .terminal
            .line("ERROR: Build did NOT complete successfully");
        return Ok(exit::BUILD_FAILED);
    }
    let program = prepare_run(&session, &label, &report, flags)?;
    drop(lock);
    let _ = std::io::stderr().flush();
    // From here on Ctrl-C is the program's (the flag stays set: a SIGINT that reaches kiln's
    // handler just after the program exited must not turn its exit code into 8).
    exit::PROGRAM_IN_FOREGROUND.store(true, std::sync::atomic::Ordering::SeqCst);
    let code = kiln_exec::run_interactive(&program.exe, program_args, &program.cwd, &program.env)
        .map_err(|e| {
        Exit::new(
            exit::LOCAL_ENVIRONMENT,
            format!("Cannot run `{}`: {e}", program.exe.display()),
        )
    })?;
    Ok(code)
}

/// A built program ready to start the way `kiln run` starts it.
pub struct PreparedProgram {
    /// The executable (absolute).
    pub exe: std::path::PathBuf,
    /// Its working directory: the workspace's directory in its runfiles tree.
    pub cwd: std::path::PathBuf,
    /// Environment to add: `RUNFILES_DIR`, `BUILD_WORKSPACE_DIRECTORY`, `BUILD_WORKING_DIRECTORY`.
    pub env: Vec<(String, String)>,
}

/// Lays out the runfiles tree of `label`'s executable (call under the build lock) and says how to
/// start it.
pub fn prepare_run(
    session: &Session,
    label: &Label,
    report: &BuildReport,
    flags: &BuildFlags,
) -> Result<PreparedProgram> {
    let exe = report.executables.get(label).ok_or_else(|| {
        Exit::new(
            exit::BAD_COMMAND_LINE,
            format!("`{label}` is not executable; `kiln run` needs a binary or test target"),
        )
    })?;
    let root = &session.workspace.root;
    let settings = session.workspace.settings(flags)?;
    let runfiles_dir = root.join(format!("{exe}.runfiles"));
    let tree = runfiles_dir.join(&settings.workspace_name);
    materialize_runfiles(
        root,
        &tree,
        report
            .runfiles
            .get(label)
            .map(|v| v.as_slice())
            .unwrap_or(&[]),
        exe,
    )?;
    let cwd = std::env::current_dir().context("Cannot read the current directory")?;
    let env = vec![
        (
            "RUNFILES_DIR".to_string(),
            runfiles_dir.to_string_lossy().to_string(),
        ),
        (
            "BUILD_WORKSPACE_DIRECTORY".to_string(),
            root.to_string_lossy().to_string(),
        ),
        (
            "BUILD_WORKING_DIRECTORY".to_string(),
            cwd.to_string_lossy().to_string(),
        ),
    ];
    Ok(PreparedProgram {
        exe: root.join(exe),
        cwd: tree,
        env,
    })
}

/// Lays out a runfiles tree of copies (kiln-out is never an alias of the cache).
fn materialize_runfiles(
    root: &Path,
    tree: &Path,
    runfiles: &[(String, String)],
    exe: &str,
) -> Result<()> {
    let _ = std::fs::remove_dir_all(tree);
    std::fs::create_dir_all(tree).with_context(|| format!("Cannot create `{}`", tree.display()))?;
    let exe_short = kiln_graph::action::Artifact::derived(exe)
        .short_path()
        .to_string();
    let mut entries: Vec<(String, String)> = runfiles.to_vec();
    entries.push((exe_short, exe.to_string()));
    for (path, source) in entries {
        let dest = tree.join(&path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("Cannot create `{}`", parent.display()))?;
        }
        std::fs::copy(root.join(&source), &dest)
            .with_context(|| format!("Cannot copy `{source}` into the runfiles tree"))?;
    }
    Ok(())
}

fn clean(common: &crate::args::CommonArgs, expunge: bool) -> Result<i32> {
    let workspace = Workspace::open(common)?;
    let terminal = Terminal::new();
    let state = State::open(&workspace.state_dir, &terminal)?;
    let _lock = state.lock(&terminal)?;
    let out = workspace.root.join("kiln-out");
    if out.exists() {
        kiln_graph::engine::remove_tree(&out)
            .with_context(|| format!("Cannot remove `{}`", out.display()))?;
    }
    state.mark_build();
    if expunge {
        drop(state);
        for entry in std::fs::read_dir(&workspace.state_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.file_name() == "lock" {
                continue;
            }
            let path = entry.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
        // A killed build's scratch trees on the memory file system are the workspace's too
        // (the next build that runs actions would clear them; expunge does not wait for one).
        if let Some(dir) = workspace.memory_scratch_dir() {
            if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        terminal.line("INFO: Removed kiln-out/ and the workspace's state");
    } else {
        terminal.line("INFO: Removed kiln-out/");
    }
    Ok(exit::SUCCESS)
}

fn info(common: &crate::args::CommonArgs) -> Result<i32> {
    let ws = Workspace::open(common)?;
    let flags = BuildFlags {
        common: common.clone(),
        ..Default::default()
    };
    let sandbox = ws.sandbox(&flags)?;
    let mode = match sandbox.mode() {
        kiln_exec::SandboxMode::Namespaces => "namespaces".to_string(),
        kiln_exec::SandboxMode::Plain => format!(
            "plain ({})",
            sandbox
                .fallback_reason()
                .unwrap_or("chosen by configuration")
        ),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "workspace: {}", ws.root.display())?;
    writeln!(out, "output_path: {}", ws.root.join("kiln-out").display())?;
    writeln!(out, "cache_dir: {}", ws.cache_dir.display())?;
    writeln!(out, "cache_max_size: {}", ws.cache_max_size()?)?;
    writeln!(out, "workspace_state: {}", ws.state_dir.display())?;
    if let Some(dir) = ws.memory_scratch_dir() {
        writeln!(out, "memory_scratch: {}", dir.display())?;
    }
    writeln!(
        out,
        "digest_function: {}",
        ws.digest_function(&flags)?.name()
    )?;
    writeln!(out, "jobs: {}", ws.jobs(&flags))?;
    writeln!(out, "sandbox: {mode}")?;
    writeln!(out, "exec_root: {}", kiln_exec::EXEC_ROOT)?;
    writeln!(out, "version: {}", env!("CARGO_PKG_VERSION"))?;
    Ok(exit::SUCCESS)
}

fn cache_gc(common: &crate::args::CommonArgs, max_size: Option<&str>) -> Result<i32> {
    let ws = Workspace::open(common)?;
    let cache = ws.open_cache()?;
    let target = match max_size {
        Some(text) => crate::config::parse_size(text)
            .map_err(|e| Exit::new(exit::BAD_COMMAND_LINE, format!("--max_size: {e:#}")))?,
        None => ws.cache_max_size()?,
    };
    let stats = cache
        .gc(target)
        .map_err(|e| Exit::new(exit::LOCAL_ENVIRONMENT, format!("Cache gc failed: {e}")))?;
    eprintln!(
        "INFO: Removed {} entries, freed {} bytes",
        stats.removed, stats.freed_bytes
    );
    Ok(exit::SUCCESS)
}

fn cache_stats(common: &crate::args::CommonArgs) -> Result<i32> {
    let ws = Workspace::open(common)?;
    let cache = ws.open_cache()?;
    let stats = cache.stats().map_err(|e| {
        Exit::new(
            exit::LOCAL_ENVIRONMENT,
            format!("Cannot read cache stats: {e}"),
        )
    })?;
    println!(
        "dir: {}\nblobs: {}\nbytes: {}\naction_results: {}",
        ws.cache_dir.display(),
        stats.blobs,
        stats.bytes,
        stats.ac_entries
    );
    Ok(exit::SUCCESS)
}
