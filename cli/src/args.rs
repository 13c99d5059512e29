//! The command line, with Bazel's flag names where one exists.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Kiln: a hermetic, incremental build system for Go and Rust.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, propagate_version = true)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Kiln's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build targets: `kiln build //...`.
    Build(BuildArgs),
    /// Build and run tests: `kiln test //pkg/...`.
    Test(TestArgs),
    /// Build a binary and run it; everything after `--` goes to the program.
    Run(RunArgs),
    /// Build, test or run again on every saved change: `kiln watch test //...`.
    Watch(WatchArgs),
    /// Query the target graph: `kiln query 'deps(//a:b)'`.
    Query(QueryArgs),
    /// Remove `kiln-out/` (and with `--expunge` the workspace's state too).
    Clean(CleanArgs),
    /// Print where Kiln keeps things and how it is set up.
    Info(CommonArgs),
    /// Explain why the actions of a target ran in the last build.
    Explain(ExplainArgs),
    /// Manage the shared local cache.
    Cache(CacheArgs),
    /// Run a shared REAPI cache server for Kiln and Bazel clients.
    Serve(crate::serve::ServeArgs),
}

/// Flags shared by every workspace command.
#[derive(Debug, Args, Clone, Default)]
pub struct CommonArgs {
    /// Use this directory for the shared cache instead of kiln.toml's or `$XDG_CACHE_HOME/kiln`.
    #[arg(long = "cache_dir", global = true)]
    pub cache_dir: Option<PathBuf>,
}

/// Flags of commands that build.
#[derive(Debug, Args, Clone, Default)]
pub struct BuildFlags {
    /// Number of actions to run at once (default: the number of cores).
    #[arg(long = "jobs", short = 'j')]
    pub jobs: Option<usize>,
    /// Keep building what does not depend on a failure.
    #[arg(long = "keep_going", short = 'k')]
    pub keep_going: bool,
    /// Write build events as JSON lines to this file.
    #[arg(long = "events")]
    pub events: Option<PathBuf>,
    /// Compilation mode.
    #[arg(long = "compilation_mode", short = 'c', value_enum)]
    pub compilation_mode: Option<CompilationMode>,
    /// How actions are isolated: `sandboxed` (namespaces; falls back with a warning) or `local`
    /// (a plain directory, no isolation).
    #[arg(long = "spawn_strategy", value_enum)]
    pub spawn_strategy: Option<SpawnStrategy>,
    /// Digest function for this build (overrides kiln.toml).
    #[arg(long = "digest_function", value_enum)]
    pub digest_function: Option<DigestFunctionArg>,
    /// Remote cache flags.
    #[command(flatten)]
    pub remote: RemoteFlags,
    /// Shared flags.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Remote cache flags (Bazel's names); each overrides `[remote]` in kiln.toml.
#[derive(Debug, Args, Clone, Default)]
pub struct RemoteFlags {
    /// REAPI cache behind the local one: `grpc://host:port`, or `grpcs://host:port` for TLS (an
    /// empty value turns off the one in kiln.toml).
    #[arg(long = "remote_cache", value_name = "URL")]
    pub remote_cache: Option<String>,
    /// REAPI instance name.
    #[arg(long = "remote_instance_name", value_name = "NAME")]
    pub remote_instance_name: Option<String>,
    /// Header sent with every remote call, e.g. `authorization=Bearer TOKEN` (repeatable).
    #[arg(long = "remote_header", value_name = "KEY=VALUE")]
    pub remote_header: Vec<String>,
    /// Deadline of one remote call, in seconds (`10` or `10s`; default 5).
    #[arg(long = "remote_timeout", value_name = "SECONDS")]
    pub remote_timeout: Option<String>,
    /// Upload the results of actions run here (default true).
    #[arg(long = "remote_upload_local_results", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub remote_upload_local_results: Option<bool>,
    /// Same as `--remote_upload_local_results=false`.
    #[arg(long = "noremote_upload_local_results")]
    pub noremote_upload_local_results: bool,
    /// Which outputs of remote cache hits to download: `all`, `toplevel` (default: what you asked
    /// for; intermediates only when a local action needs them) or `minimal`.
    #[arg(long = "remote_download_outputs", value_enum)]
    pub remote_download_outputs: Option<DownloadOutputsArg>,
    /// PEM certificate(s) trusted to sign a `grpcs://` cache's certificate, besides the system's.
    #[arg(long = "tls_certificate", value_name = "PATH")]
    pub tls_certificate: Option<std::path::PathBuf>,
    /// PEM client certificate for a `grpcs://` cache that asks for one (with `--tls_client_key`).
    #[arg(
        long = "tls_client_certificate",
        value_name = "PATH",
        requires = "tls_client_key"
    )]
    pub tls_client_certificate: Option<std::path::PathBuf>,
    /// PEM private key of `--tls_client_certificate`.
    #[arg(
        long = "tls_client_key",
        value_name = "PATH",
        requires = "tls_client_certificate"
    )]
    pub tls_client_key: Option<std::path::PathBuf>,
}

/// `--remote_download_outputs` values.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum DownloadOutputsArg {
    /// Every output of every remote hit.
    All,
    /// Outputs of the requested targets (and test logs).
    Toplevel,
    /// Only what local actions read (and test logs).
    Minimal,
}

/// Bazel's compilation modes.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum CompilationMode {
    /// Fast builds, little debug info (default).
    Fastbuild,
    /// Debug info, no optimization.
    Dbg,
    /// Optimized.
    Opt,
}

/// Digest functions selectable on the command line.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum DigestFunctionArg {
    /// BLAKE3 (default).
    Blake3,
    /// SHA-256.
    Sha256,
}

/// Isolation choices.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum SpawnStrategy {
    /// Linux namespaces.
    Sandboxed,
    /// A plain directory.
    Local,
}

/// `kiln build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Target patterns, e.g. `//...`, `//pkg:name`, `-//pkg/excluded/...`.
    #[arg(required = true)]
    pub patterns: Vec<String>,
    /// Build flags.
    #[command(flatten)]
    pub flags: BuildFlags,
}

/// How much test output to print.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub enum TestOutput {
    /// Only the summary.
    Summary,
    /// Logs of failed tests (default).
    #[default]
    Errors,
    /// Logs of all tests.
    All,
}

/// `kiln test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Target patterns.
    #[arg(required = true)]
    pub patterns: Vec<String>,
    /// Build flags.
    #[command(flatten)]
    pub flags: BuildFlags,
    /// Which test logs to print.
    #[arg(long = "test_output", value_enum, default_value_t = TestOutput::Errors)]
    pub test_output: TestOutput,
    /// Run only tests matching this filter (passed to the test framework).
    #[arg(long = "test_filter")]
    pub test_filter: Option<String>,
    /// Extra argument for every test (repeatable).
    #[arg(long = "test_arg", allow_hyphen_values = true)]
    pub test_arg: Vec<String>,
    /// Run tests even when a cached result exists.
    #[arg(long = "nocache_test_results")]
    pub nocache_test_results: bool,
    /// Seconds after which every test is killed and reported as TIMEOUT (overrides `size` and
    /// `timeout`).
    #[arg(long = "test_timeout", value_parser = clap::value_parser!(u64).range(1..))]
    pub test_timeout: Option<u64>,
    /// Run each test this many times.
    #[arg(long = "runs_per_test", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs_per_test: u32,
}

/// `kiln run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The target to run.
    pub target: String,
    /// Arguments for the program (after `--`).
    #[arg(last = true)]
    pub args: Vec<String>,
    /// Build flags.
    #[command(flatten)]
    pub flags: BuildFlags,
}

/// `kiln watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// What to do on each change.
    #[command(subcommand)]
    pub mode: WatchMode,
    /// Scan the tree periodically instead of using OS file notifications (for file systems that
    /// do not deliver them).
    #[arg(long = "poll", global = true)]
    pub poll: bool,
    /// Seconds `run` mode waits after SIGTERM before it SIGKILLs the old program.
    #[arg(long = "grace", global = true, default_value_t = 2.0)]
    pub grace: f64,
}

/// What `kiln watch` repeats.
#[derive(Debug, Subcommand)]
pub enum WatchMode {
    /// Build the targets.
    Build(BuildArgs),
    /// Build and run the affected tests.
    Test(TestArgs),
    /// Build the binary and (re)start it after every successful build.
    Run(RunArgs),
}

/// Output formats of `kiln query`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub enum QueryOutput {
    /// One label per line.
    #[default]
    Label,
    /// Labels with their rule kinds.
    #[value(name = "label_kind", alias = "label-kind")]
    LabelKind,
    /// BUILD-file syntax.
    Build,
    /// Graphviz dot.
    Graph,
}

/// `kiln query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The query expression.
    pub expression: String,
    /// Output format.
    #[arg(long = "output", value_enum, default_value_t = QueryOutput::Label)]
    pub output: QueryOutput,
    /// Shared flags.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `kiln clean`.
#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Also remove the workspace's state (file and package memos, history).
    #[arg(long = "expunge")]
    pub expunge: bool,
    /// Shared flags.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `kiln explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The target whose actions to explain.
    pub target: String,
    /// Shared flags.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `kiln cache`.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: CacheCommand,
}

/// `kiln cache` subcommands.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Evict least-recently-used entries until the cache is under its cap (or `--max_size`).
    Gc {
        /// Target size, e.g. `5G` (default: the configured cap).
        #[arg(long = "max_size")]
        max_size: Option<String>,
        /// Shared flags.
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Print the cache's size and entry counts.
    Stats {
        /// Shared flags.
        #[command(flatten)]
        common: CommonArgs,
    },
}
