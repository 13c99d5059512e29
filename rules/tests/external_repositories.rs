//! The engine's external-repository seam, driven with the real rules and a plain sandbox: a
//! repository rule hands out a directory with BUILD files; labels `@ext//...` load from it,
//! relative labels inside it stay in it, its files are inputs under `external/ext/`, and a
//! changed repository directory (a new version) rebuilds what used it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kiln_cache::{ActionRecord, Digest, DigestFunction};
use kiln_graph::engine::packages::PackageMemoStore;
use kiln_graph::engine::sources::DigestMemo;
use kiln_graph::engine::{Engine, EngineConfig, EngineError, EngineState, Goal};
use kiln_graph::events::NoObserver;
use kiln_graph::pattern::PatternSet;
use kiln_graph::repository::{RepoContext, RepositoryError, RepositoryRule};

/// Engine state kept in memory.
#[derive(Default)]
struct MemoryState {
    kv: Mutex<HashMap<String, Vec<u8>>>,
}

impl DigestMemo for MemoryState {
    fn lookup(&self, _: &str, _: &std::fs::Metadata, _: DigestFunction) -> Option<Digest> {
        None
    }
    fn record(&self, _: &str, _: &std::fs::Metadata, _: Digest) {}
}

impl PackageMemoStore for MemoryState {
    fn get(&self, package: &str) -> Option<Vec<u8>> {
        self.kv.lock().ok()?.get(&format!("pkg:{package}")).cloned()
    }
    fn put(&self, package: &str, bytes: Vec<u8>) {
        if let Ok(mut kv) = self.kv.lock() {
            kv.insert(format!("pkg:{package}"), bytes);
        }
    }
}

impl EngineState for MemoryState {
    fn expected_duration(&self, _: &str) -> Option<u64> {
        None
    }
    fn record_actions(&self, _: Vec<ActionRecord>) {}
    fn noop_record(&self) -> Option<Vec<u8>> {
        None
    }
    fn set_noop_record(&self, _: Option<Vec<u8>>) {}
    fn memo_get(&self, key: &str) -> Option<Vec<u8>> {
        self.kv.lock().ok()?.get(key).cloned()
    }
    fn memo_put(&self, key: &str, value: &[u8]) {
        if let Ok(mut kv) = self.kv.lock() {
            kv.insert(key.to_string(), value.to_vec());
        }
    }
}

/// Defines `@ext` as whatever directory the test points it at; `@broken` fails as a missing
/// download would.
struct TestRepos {
    ext: Mutex<PathBuf>,
}

impl RepositoryRule for TestRepos {
    fn resolve(
        &self,
        name: &str,
        ctx: &RepoContext<'_>,
    ) -> Result<Option<PathBuf>, RepositoryError> {
        match name {
            "ext" => {
                ctx.host.observe(&ctx.workspace.root.join("deps.lock"));
                Ok(self.ext.lock().ok().map(|p| p.clone()))
            }
            "broken" => Err(RepositoryError::Environment(
                "cannot download @broken: network unreachable".into(),
            )),
            _ => Ok(None),
        }
    }
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
}

fn config(root: &Path, cache: &Path) -> EngineConfig {
    EngineConfig {
        root: root.to_path_buf(),
        scratch_dir: cache.join("scratch"),
        memory_scratch_dir: None,
        cache_dir: cache.to_path_buf(),
        cache_config: kiln_cache::CacheConfig::default(),
        function: DigestFunction::Blake3,
        settings: kiln_graph::analysis::BuildSettings {
            compilation_mode: "fastbuild".into(),
            workspace_name: "_main".into(),
            host_os: "linux".into(),
            host_cpu: "x86_64".into(),
        },
        identity: "test".into(),
        jobs: 2,
        keep_going: false,
        sandbox: kiln_exec::SandboxConfig {
            helper: PathBuf::from("/nonexistent"),
            mode_override: Some(kiln_exec::SandboxMode::Plain),
        },
        workspace_config: toml::Table::new(),
        remote: None,
    }
}

/// A repository version: `lib/BUILD.bazel` with a genrule reading a file of its own package by a
/// relative label and one of another package by a repository-relative label.
fn repository(dir: &Path, version: &str) {
    write(
        &dir.join("lib/BUILD.bazel"),
        r#"
genrule(
    name = "gen",
    srcs = [":data.txt", "//other:more.txt"],
    outs = ["gen.txt"],
    cmd = "cat $(SRCS) > $@",
    visibility = ["//visibility:public"],
)
exports_files(["data.txt"])
"#,
    );
    write(&dir.join("lib/data.txt"), &format!("data {version}\n"));
    write(
        &dir.join("other/BUILD.bazel"),
        "exports_files([\"more.txt\"])\n",
    );
    write(&dir.join("other/more.txt"), "more\n");
}

#[test]
fn external_repository_targets_and_files_build_and_follow_a_new_version() {
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let v1 = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let v2 = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    repository(v1.path(), "v1");
    repository(v2.path(), "v2");
    write(
        &root.path().join("app/BUILD"),
        r#"
genrule(
    name = "use",
    srcs = ["@ext//lib:gen", "@ext//lib:data.txt"],
    outs = ["use.txt"],
    cmd = "cat $(SRCS) > $@ && echo $(location @ext//lib:data.txt) >> $@",
)
"#,
    );
    let rules = kiln_rules::all_rules();
    let repo_rules: Vec<Box<dyn RepositoryRule>> = vec![Box::new(TestRepos {
        ext: Mutex::new(v1.path().to_path_buf()),
    })];
    let state = MemoryState::default();
    let patterns =
        PatternSet::parse(&["//app:use".to_string()], "").unwrap_or_else(|e| panic!("{e}"));
    let build = |state: &MemoryState| {
        Engine::new(
            config(root.path(), cache.path()),
            &rules,
            state,
            &NoObserver,
        )
        .with_repositories(&repo_rules)
        .build(&patterns, &Goal::Build)
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let report = build(&state);
    assert!(report.success(), "{:?}", report.failures);
    let out = root.path().join("kiln-out/bin/app/use.txt");
    let text = std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        text, "data v1\nmore\ndata v1\nexternal/ext/lib/data.txt\n",
        "relative and repository-relative labels must resolve inside @ext"
    );
    // The external genrule's output lives under kiln-out/bin/external/ext.
    assert_eq!(report.executed, 2);

    // A new version of the repository (another directory) rebuilds both actions.
    let repo_rules2: Vec<Box<dyn RepositoryRule>> = vec![Box::new(TestRepos {
        ext: Mutex::new(v2.path().to_path_buf()),
    })];
    let report = Engine::new(
        config(root.path(), cache.path()),
        &rules,
        &state,
        &NoObserver,
    )
    .with_repositories(&repo_rules2)
    .build(&patterns, &Goal::Build)
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.success(), "{:?}", report.failures);
    assert_eq!(
        report.executed, 2,
        "both actions read files of the new version"
    );
    let text = std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("{e}"));
    assert!(text.starts_with("data v2\n"), "{text}");

    // The same version again is all cache hits.
    let report = Engine::new(
        config(root.path(), cache.path()),
        &rules,
        &state,
        &NoObserver,
    )
    .with_repositories(&repo_rules2)
    .build(&patterns, &Goal::Build)
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((report.executed, report.local_hits), (0, 2));
}

#[test]
fn an_unknown_repository_is_a_build_error_and_a_failed_download_an_environment_error() {
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    write(
        &root.path().join("app/BUILD"),
        r#"
genrule(name = "a", srcs = ["@nowhere//x:y"], outs = ["a.txt"], cmd = "touch $@")
genrule(name = "b", srcs = ["@broken//x:y"], outs = ["b.txt"], cmd = "touch $@")
"#,
    );
    let rules = kiln_rules::all_rules();
    let repo_rules: Vec<Box<dyn RepositoryRule>> = vec![Box::new(TestRepos {
        ext: Mutex::new(PathBuf::from("/nonexistent")),
    })];
    let state = MemoryState::default();
    let run = |target: &str| {
        let patterns =
            PatternSet::parse(&[target.to_string()], "").unwrap_or_else(|e| panic!("{e}"));
        Engine::new(
            config(root.path(), cache.path()),
            &rules,
            &state,
            &NoObserver,
        )
        .with_repositories(&repo_rules)
        .build(&patterns, &Goal::Build)
    };
    match run("//app:a") {
        Err(EngineError::Analysis(message)) => {
            assert!(message.contains("app/BUILD:2:"), "{message}");
            assert!(message.contains("`@nowhere` is not defined"), "{message}");
        }
        other => panic!("expected an analysis error, got {other:?}"),
    }
    match run("//app:b") {
        Err(EngineError::Environment(message)) => {
            assert!(message.contains("network unreachable"), "{message}");
        }
        other => panic!("expected an environment error, got {other:?}"),
    }
}
