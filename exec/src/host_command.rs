//! Host commands run at analysis time, outside any sandbox: asking a toolchain about itself
//! (`go env GOROOT`, `rustc --print sysroot`, `cargo metadata`). The environment is cleared except
//! for what the caller passes, so the answer never depends on the user's shell.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};

/// What a host command printed and how it ended.
#[derive(Debug, Clone)]
pub struct HostOutput {
    /// Exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
}

impl HostOutput {
    /// Whether it exited with 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Stdout as text, trimmed.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).trim().to_string()
    }

    /// Stderr as text, trimmed.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

/// Why a host command could not be run at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot run `{program}`: {source}")]
pub struct HostCommandError {
    /// The program named.
    pub program: String,
    /// What the OS said.
    #[source]
    pub source: std::io::Error,
}

/// Runs `argv` in `cwd` with exactly `env` (plus nothing) and waits for it; stdin is empty.
pub fn run(
    argv: &[impl AsRef<std::ffi::OsStr>],
    env: &[(impl AsRef<std::ffi::OsStr>, impl AsRef<std::ffi::OsStr>)],
    cwd: &Path,
) -> Result<HostOutput, HostCommandError> {
    let program: OsString = argv
        .first()
        .map(|a| a.as_ref().to_os_string())
        .unwrap_or_default();
    let error = |source| HostCommandError {
        program: program.to_string_lossy().into_owned(),
        source,
    };
    if program.is_empty() {
        return Err(error(std::io::Error::other("empty command line")));
    }
    #[allow(clippy::disallowed_methods)] // exec is the crate that spawns processes
    let mut command = Command::new(&program);
    command
        .args(argv.iter().skip(1))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
        .current_dir(cwd)
        .stdin(Stdio::null());
    let output = command.output().map_err(error)?;
    Ok(HostOutput {
        code: output.status.code(),
        stdout: output.stdout,
        stderr: output.stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_with_only_the_given_environment() {
        let out = run(
            &[
                "/bin/sh",
                "-c",
                "echo \"$A|${HOME:-unset}\"; echo err >&2; exit 3",
            ],
            &[("A", "1")],
            Path::new("/"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.stdout_text(), "1|unset");
        assert_eq!(out.stderr_text(), "err");
        assert_eq!(out.code, Some(3));
        assert!(!out.success());
    }

    #[test]
    fn a_missing_program_is_an_error_naming_it() {
        let no_env: [(&str, &str); 0] = [];
        let err = run(&["/no/such/tool"], &no_env, Path::new("/")).unwrap_err();
        assert!(err.to_string().contains("/no/such/tool"), "{err}");
    }
}
