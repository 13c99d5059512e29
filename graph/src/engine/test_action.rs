//! The action that runs one test: the test's executable and runfiles tree as inputs, Bazel's test
//! environment, the log and the JUnit XML as outputs.

use std::time::Duration;

use crate::action::{ActionInput, ActionKind, ActionSpec, OutputSpec, OUT_DIR};
use crate::analysis::{BuildSettings, Providers};
use crate::label::Label;
use crate::target::Target;

/// Exec root every sandboxed action sees (kept equal to `kiln_exec::EXEC_ROOT`).
pub use kiln_exec::EXEC_ROOT;

/// Options from the command line that shape test actions.
#[derive(Clone, Debug, Default)]
pub struct TestOptions {
    /// `--test_filter`.
    pub filter: Option<String>,
    /// `--test_arg`s.
    pub args: Vec<String>,
    /// `--nocache_test_results`.
    pub no_cache: bool,
    /// `--runs_per_test` (at least 1).
    pub runs_per_test: u32,
    /// `--test_timeout`: overrides every test's timeout.
    pub timeout: Option<Duration>,
}

/// Where the outputs of one test run go.
#[derive(Clone, Debug)]
pub struct TestPaths {
    /// Exec-root-relative log path.
    pub log: String,
    /// Exec-root-relative JUnit XML path.
    pub xml: String,
}

/// Seconds a test may run, from `timeout`, else `size` (Bazel's table; a test without either
/// is `medium`, so it gets 300 s, `moderate`).
pub fn timeout_for(target: &Target) -> Duration {
    let seconds = match target.string("timeout") {
        Some("short") => 60,
        Some("moderate") => 300,
        Some("long") => 900,
        Some("eternal") => 3600,
        _ => match target.string("size") {
            Some("small") => 60,
            Some("large") => 900,
            Some("enormous") => 3600,
            _ => 300,
        },
    };
    Duration::from_secs(seconds)
}

/// Builds the test action for run `run` of `runs` of `target`.
pub fn test_action(
    target: &Target,
    providers: &Providers,
    settings: &BuildSettings,
    options: &TestOptions,
    run: u32,
    runs: u32,
) -> Option<(ActionSpec, TestPaths)> {
    let exe = providers.default.executable.as_ref()?;
    let info = providers.test.clone().unwrap_or_default();
    let label: &Label = &target.label;
    let package_dir = if label.package.is_empty() {
        String::new()
    } else {
        format!("{}/", label.package)
    };
    let mut log_dir = format!("{OUT_DIR}/testlogs/{package_dir}{}", label.name);
    if runs > 1 {
        log_dir = format!("{log_dir}/run_{run}_of_{runs}");
    }
    let paths = TestPaths {
        log: format!("{log_dir}/test.log"),
        xml: format!("{log_dir}/test.xml"),
    };
    let runfiles_dir = format!("{}.runfiles", exe.path);
    let workspace_dir = format!("{runfiles_dir}/{}", settings.workspace_name);
    let tmp_dir = format!("{OUT_DIR}/_tmp/{package_dir}{}", label.name);

    let mut action = ActionSpec::new(label.clone(), "TestRunner", Vec::new());
    action.kind = ActionKind::Test;
    action.progress_message = format!("Testing {label}");
    action.input(exe);
    let exe_in_tree = format!("{workspace_dir}/{}", exe.short_path());
    action.inputs.push(ActionInput {
        exec_path: exe_in_tree,
        artifact: exe.clone(),
    });
    for (path, artifact) in &providers.default.runfiles {
        action.inputs.push(ActionInput {
            exec_path: format!("{workspace_dir}/{path}"),
            artifact: artifact.clone(),
        });
    }
    let mut args: Vec<String> = info.args.clone();
    let mut env = info.env.clone();
    if let Some(filter) = &options.filter {
        if let Some(make) = info.filter_args {
            args.extend(make(filter));
        }
        if let Some(make) = info.filter_env {
            env.extend(make(filter));
        }
    }
    args.extend(options.args.iter().cloned());
    // The wrapper makes the writable directories and sends both streams to the log, as Bazel's
    // test-setup.sh does; the test runs with its cwd in the runfiles tree (the workspace's
    // directory there, or the rule's `working_dir` below it).
    let script = "set -u\nmkdir -p \"$TEST_TMPDIR\" \"$(dirname \"$XML_OUTPUT_FILE\")\"\ncd \"$KILN_TEST_CWD\"\nexec \"$@\" >\"$KILN_TEST_LOG\" 2>&1";
    action.arguments = vec![
        "/bin/bash".to_string(),
        "-c".to_string(),
        script.to_string(),
        "kiln-test".to_string(),
    ];
    let abs = |p: &str| format!("{EXEC_ROOT}/{p}");
    let cwd = match info.working_dir.as_deref() {
        None | Some("") => workspace_dir.clone(),
        Some(dir) => format!("{workspace_dir}/{dir}"),
    };
    if cwd == workspace_dir {
        action.arguments.push(format!("./{}", exe.short_path()));
    } else {
        action
            .arguments
            .push(abs(&format!("{workspace_dir}/{}", exe.short_path())));
    }
    action.arguments.extend(args);
    let timeout = options.timeout.unwrap_or_else(|| timeout_for(target));
    for (key, value) in [
        ("PATH", "/bin:/usr/bin:/usr/local/bin".to_string()),
        ("TEST_SRCDIR", abs(&runfiles_dir)),
        ("RUNFILES_DIR", abs(&runfiles_dir)),
        ("JAVA_RUNFILES", abs(&runfiles_dir)),
        ("TEST_WORKSPACE", settings.workspace_name.clone()),
        ("TEST_TMPDIR", abs(&tmp_dir)),
        ("HOME", abs(&tmp_dir)),
        ("XML_OUTPUT_FILE", abs(&paths.xml)),
        ("TEST_TARGET", label.to_string()),
        ("TEST_BINARY", exe.short_path().to_string()),
        (
            "TEST_SIZE",
            target.string("size").unwrap_or("medium").to_string(),
        ),
        ("TEST_TIMEOUT", timeout.as_secs().to_string()),
        ("TEST_RUN_NUMBER", run.to_string()),
        ("TZ", "UTC".to_string()),
        ("KILN_TEST_CWD", abs(&cwd)),
        ("KILN_TEST_LOG", abs(&paths.log)),
    ] {
        action.env.insert(key.to_string(), value);
    }
    action.env.extend(env);
    action.outputs = vec![
        OutputSpec {
            path: paths.log.clone(),
            executable: false,
            optional: true,
        },
        OutputSpec {
            path: paths.xml.clone(),
            executable: false,
            optional: true,
        },
    ];
    // The test may call any tool on its PATH.
    action.host_tools = ["/bin/bash", "/bin", "/usr/bin", "/usr/local/bin"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    action.timeout = Some(timeout);
    let tags = target.tags();
    action.network = tags.iter().any(|t| t == "requires-network");
    action.exclusive = tags.iter().any(|t| t == "exclusive");
    action.cacheable = !options.no_cache
        && !tags
            .iter()
            .any(|t| t == "external" || t == "no-cache" || t == "no-remote-cache");
    Some((action, paths))
}
