//! The seam between the engine and rule implementations: a [`RuleImpl`] turns one target plus its
//! dependencies' [`Providers`] into actions and providers of its own. Nothing here knows a language.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kiln_cache::DigestFunction;

use crate::action::{ActionSpec, Artifact, BIN_DIR};
use crate::label::Label;
use crate::rule_schema::RuleSchema;
use crate::target::{Location, Target};

/// Files a target offers to its dependents and to the user.
#[derive(Clone, Debug, Default)]
pub struct DefaultInfo {
    /// The target's default outputs (what `kiln build` materializes and `$(locations)` expands to).
    pub files: Vec<Artifact>,
    /// The file `kiln run` and tests execute, if the rule is executable.
    pub executable: Option<Artifact>,
    /// Files needed at run time, as (path inside the runfiles tree relative to the workspace dir, artifact).
    pub runfiles: Vec<(String, Artifact)>,
}

/// Makes the environment entries that ask a test framework to filter by a pattern.
pub type FilterEnv = fn(&str) -> Vec<(String, String)>;

/// What a test rule tells the engine about running its test.
#[derive(Clone, Debug, Default)]
pub struct TestInfo {
    /// Extra environment for the test process (the `env` attribute).
    pub env: BTreeMap<String, String>,
    /// Arguments before `--test_arg`s (the `args` attribute).
    pub args: Vec<String>,
    /// Environment entries telling the test framework to filter (set from `--test_filter`), produced by
    /// the rule because each framework spells it differently. Called with the filter.
    pub filter_env: Option<FilterEnv>,
    /// Arguments telling the framework to filter.
    pub filter_args: Option<fn(&str) -> Vec<String>>,
    /// Why the test cannot run on this machine (it is built for another platform): `kiln test`
    /// builds it and reports it skipped with this reason instead of running it.
    pub cannot_run: Option<String>,
    /// The directory the test starts in, relative to the workspace's runfiles directory (`go
    /// test` runs a test in its package's directory); `None`: that runfiles directory, as Bazel
    /// does.
    pub working_dir: Option<String>,
}

/// The providers of one analyzed target: the default files plus typed, rule-specific values (for
/// instance a Go archive's export data), looked up by type.
#[derive(Clone, Default)]
pub struct Providers {
    /// Default outputs and runfiles.
    pub default: DefaultInfo,
    /// Present for test rules.
    pub test: Option<TestInfo>,
    extra: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers")
            .field("default", &self.default)
            .finish_non_exhaustive()
    }
}

impl Providers {
    /// Providers with only default files.
    pub fn new(default: DefaultInfo) -> Self {
        Providers {
            default,
            test: None,
            extra: HashMap::new(),
        }
    }

    /// Attaches a rule-specific provider.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: T) {
        self.extra.insert(TypeId::of::<T>(), Arc::new(value));
    }

    /// Looks up a rule-specific provider.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.extra
            .get(&TypeId::of::<T>())
            .and_then(|v| v.downcast_ref::<T>())
    }
}

/// An analysis error, reported at the target's BUILD location.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{location}: {message}")]
pub struct AnalysisError {
    /// Where the offending target was declared.
    pub location: Location,
    /// What is wrong and what was expected.
    pub message: String,
    /// Whose fault it is: the BUILD file's, or the machine's (a missing toolchain).
    pub kind: AnalysisErrorKind,
}

/// What kind of problem an [`AnalysisError`] is; decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AnalysisErrorKind {
    /// The BUILD file or a reference in it is wrong (exit code 1).
    #[default]
    Rule,
    /// A toolchain the target needs is missing or broken (exit code 36).
    Toolchain,
}

impl AnalysisError {
    /// A missing or broken toolchain, reported at `location`.
    pub fn toolchain(location: Location, message: impl Into<String>) -> Self {
        AnalysisError {
            location,
            message: message.into(),
            kind: AnalysisErrorKind::Toolchain,
        }
    }
}

/// The workspace as analysis (and repository rules) see it: where it is, its configuration, and
/// where shared downloads belong. Host paths here must never reach a `Command`.
#[derive(Clone, Debug, Default)]
pub struct WorkspaceInfo {
    /// Absolute workspace root.
    pub root: PathBuf,
    /// The shared per-user cache root; downloaded toolchains and modules go in subdirectories of
    /// it, content-addressed.
    pub cache_dir: PathBuf,
    /// The whole `kiln.toml`, so language sections (`[go]`, `[rust]`) belong to their rules.
    pub config: toml::Table,
    /// The workspace's digest function.
    pub function: DigestFunction,
}

/// What analysis may ask of the host, recorded so that later builds notice when it changed.
pub trait HostAccess: Sync {
    /// Analysis relied on the metadata of this host path (a toolchain's VERSION file, `go.mod`,
    /// `Cargo.lock`): the no-op check of the next build compares its stat again.
    fn observe(&self, path: &Path);
    /// Analysis read the content with this digest from a host path it observed (a Go source's
    /// header): a no-op check soon after compares the content, not only the stat, so that a
    /// same-size rewrite within one timestamp tick is not mistaken for the content analysis used.
    fn observe_content(&self, _path: &Path, _digest: kiln_cache::Digest) {}
    /// A value from the persistent per-workspace memo.
    fn memo_get(&self, key: &str) -> Option<Vec<u8>>;
    /// Stores a value in the persistent per-workspace memo.
    fn memo_put(&self, key: &str, value: &[u8]);
    /// An environment variable of Kiln's own process that analysis decided by (`PATH` to find a
    /// toolchain, `GOFLAGS`): the no-op check of the next build compares its value again. The
    /// default reads it without recording (for tests and one-off analyses).
    fn env_var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// A [`HostAccess`] that remembers nothing (for tests and one-off analyses).
#[derive(Debug, Default)]
pub struct NoHostMemo;

impl HostAccess for NoHostMemo {
    fn observe(&self, _path: &Path) {}
    fn memo_get(&self, _key: &str) -> Option<Vec<u8>> {
        None
    }
    fn memo_put(&self, _key: &str, _value: &[u8]) {}
}

/// Values computed once per build and shared by every target (a resolved toolchain, a parsed
/// `go.mod`), keyed by type.
#[derive(Default)]
pub struct BuildScoped {
    values: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl BuildScoped {
    /// The value of type `T`, computed by `init` on first use. A failed `init` is not remembered
    /// (the next caller tries again and gets the same error).
    pub fn get_or_try_init<T, E>(&self, init: impl FnOnce() -> Result<T, E>) -> Result<Arc<T>, E>
    where
        T: Any + Send + Sync,
    {
        let existing = self
            .values
            .lock()
            .ok()
            .and_then(|values| values.get(&TypeId::of::<T>()).cloned());
        if let Some(value) = existing.and_then(|v| v.downcast::<T>().ok()) {
            return Ok(value);
        }
        let value = Arc::new(init()?);
        if let Ok(mut values) = self.values.lock() {
            values.insert(
                TypeId::of::<T>(),
                value.clone() as Arc<dyn Any + Send + Sync>,
            );
        }
        Ok(value)
    }
}

impl std::fmt::Debug for BuildScoped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildScoped").finish_non_exhaustive()
    }
}

/// Settings that reach analysis (compilation mode and the like). They go into the package-memo
/// key and, through the actions they shape, into action keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildSettings {
    /// `fastbuild`, `dbg` or `opt`.
    pub compilation_mode: String,
    /// Workspace name used for the runfiles tree (`_main` unless kiln.toml says otherwise).
    pub workspace_name: String,
    /// Host OS, e.g. `linux`.
    pub host_os: String,
    /// Host CPU, e.g. `x86_64`.
    pub host_cpu: String,
}

/// A rule implementation.
pub trait RuleImpl: Send + Sync {
    /// What the loader accepts for this rule.
    fn schema(&self) -> RuleSchema;

    /// Output files the rule declares from its attributes alone (genrule `outs`), so that labels can
    /// name them before analysis. Paths are relative to the package.
    fn declared_outputs(&self, _target: &Target) -> Vec<String> {
        Vec::new()
    }

    /// Analyzes one target.
    fn analyze(&self, ctx: &mut AnalysisContext<'_>) -> Result<Providers, AnalysisError>;
}

/// What a rule sees while analyzing one target, and where it puts its actions.
pub struct AnalysisContext<'a> {
    /// The target being analyzed.
    pub target: &'a Target,
    /// Providers of every label the target's attributes reference (rule targets, file targets).
    pub deps: &'a HashMap<Label, Arc<Providers>>,
    /// Build settings.
    pub settings: &'a BuildSettings,
    /// Actions registered so far.
    pub actions: Vec<ActionSpec>,
    /// The workspace: root, configuration, cache directory.
    pub workspace: &'a WorkspaceInfo,
    /// Observed host files and the persistent memo.
    pub host: &'a dyn HostAccess,
    /// Values shared by every target of this build.
    pub scoped: &'a BuildScoped,
}

impl<'a> AnalysisContext<'a> {
    /// An error at the target's location.
    pub fn error(&self, message: impl Into<String>) -> AnalysisError {
        AnalysisError {
            location: self.target.location.clone(),
            message: message.into(),
            kind: AnalysisErrorKind::Rule,
        }
    }

    /// A missing or broken toolchain, at the target's location (exit code 36).
    pub fn toolchain_error(&self, message: impl Into<String>) -> AnalysisError {
        AnalysisError::toolchain(self.target.location.clone(), message)
    }

    /// A value computed once per build and shared by every target (see [`BuildScoped`]).
    pub fn build_scoped<T, E>(&self, init: impl FnOnce() -> Result<T, E>) -> Result<Arc<T>, E>
    where
        T: Any + Send + Sync,
    {
        self.scoped.get_or_try_init(init)
    }

    /// Providers of a label the target references.
    pub fn dep(&self, label: &Label) -> Result<&Providers, AnalysisError> {
        self.deps
            .get(label)
            .map(|p| p.as_ref())
            .ok_or_else(|| self.error(format!("Dependency `{label}` was not analyzed")))
    }

    /// The default files of every label in attribute `attr`, in order.
    pub fn files(&self, attr: &str) -> Result<Vec<Artifact>, AnalysisError> {
        let mut files = Vec::new();
        for label in self.target.labels(attr) {
            files.extend(self.dep(&label)?.default.files.iter().cloned());
        }
        Ok(files)
    }

    /// Declares an output of this target at `name` relative to its package's output directory.
    pub fn declare_output(&self, name: &str) -> Artifact {
        Artifact::derived(output_path(&label_dir(&self.target.label), name))
    }

    /// The package's output directory, exec-root-relative (`$(RULEDIR)`).
    pub fn package_out_dir(&self) -> String {
        output_path(&label_dir(&self.target.label), "")
            .trim_end_matches('/')
            .to_string()
    }

    /// Registers an action.
    pub fn register(&mut self, action: ActionSpec) {
        self.actions.push(action);
    }
}

/// The exec-root-relative directory of a label's package (`external/<repo>/<pkg>` outside the main
/// repository).
pub fn label_dir(label: &Label) -> String {
    label.package_dir().to_string_lossy().into_owned()
}

/// Exec-root path of an output `name` of a target in `package`.
pub fn output_path(package: &str, name: &str) -> String {
    match (package.is_empty(), name.is_empty()) {
        (true, _) => format!("{BIN_DIR}/{name}"),
        (false, true) => format!("{BIN_DIR}/{package}"),
        (false, false) => format!("{BIN_DIR}/{package}/{name}"),
    }
}
