//! Shared fixture for the sandbox integration tests: a temp dir for sources and scratch,
//! and the real helper binary.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use kiln_exec::{InputFile, Sandbox, SandboxConfig, SandboxMode, SandboxRequest};

/// A sandbox in the mode the host supports (printing why when that is plain);
/// `KILN_EXEC_TEST_MODE=plain` forces plain mode to check its guarantees on any host.
pub fn sandbox() -> Sandbox {
    let forced = std::env::var("KILN_EXEC_TEST_MODE").ok();
    let sandbox = with_mode((forced.as_deref() == Some("plain")).then_some(SandboxMode::Plain));
    if let Some(why) = sandbox.fallback_reason() {
        eprintln!("namespaces unavailable, testing plain-mode guarantees: {why}");
    }
    sandbox
}

/// A sandbox forced into `mode` (`None`: probe).
pub fn with_mode(mode: Option<SandboxMode>) -> Sandbox {
    Sandbox::new(SandboxConfig {
        helper: env!("CARGO_BIN_EXE_kiln-exec-helper").into(),
        mode_override: mode,
    })
}

/// Sources and scratch directories for one test.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    next: AtomicUsize,
}

impl Fixture {
    pub fn temp() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
            next: AtomicUsize::new(0),
        }
    }

    /// Writes a host source file and returns an input staged from it at `path`.
    pub fn input(&self, path: &str, content: &str) -> InputFile {
        let source = self.dir.path().join("src").join(path.replace('/', "_"));
        std::fs::create_dir_all(source.parent().unwrap()).unwrap();
        std::fs::write(&source, content).unwrap();
        InputFile {
            path: path.into(),
            source,
            executable: false,
            immutable: false,
        }
    }

    /// A fresh scratch path.
    pub fn scratch(&self) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.dir.path().join(format!("scratch{n}"))
    }

    /// `bash -c script` with a minimal PATH.
    pub fn bash(&self, script: &str) -> SandboxRequest {
        SandboxRequest {
            argv: vec!["/bin/bash".into(), "-c".into(), script.into()],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            scratch: self.scratch(),
            ..Default::default()
        }
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
