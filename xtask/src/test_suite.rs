//! `cargo xtask test`: the whole test suite on a fresh machine. It first makes sure of the
//! tools the tests drive for real besides Rust: Go (the Go rules' tests) and Bazel (the
//! remote-cache interop and parity tests, from Debian's `bazel-bootstrap`, installed through
//! `apt-get` when missing), then runs `cargo test --workspace` with any extra arguments.

// A repository chore, not part of Kiln: it runs cargo, id and apt-get directly, outside any sandbox.
#![allow(clippy::disallowed_methods)]

use std::process::{Command, ExitCode};

/// Runs the suite; `extra` goes to `cargo test` (e.g. `-- --nocapture`).
pub fn run(extra: &[String]) -> ExitCode {
    if let Err(problem) = ensure_tools() {
        eprintln!("xtask test: {problem}");
        return ExitCode::FAILURE;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(["test", "--workspace"]).args(extra);
    // One build of each crate: incremental state would only cost time and disk.
    if std::env::var_os("CARGO_INCREMENTAL").is_none() {
        command.env("CARGO_INCREMENTAL", "0");
    }
    match command.status() {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => ExitCode::from(status.code().unwrap_or(1).clamp(1, 255) as u8),
        Err(e) => {
            eprintln!("xtask test: cannot run cargo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn ensure_tools() -> Result<(), String> {
    if !on_path("go") {
        return Err(
            "the tests need Go (`go` on PATH); install it from go.dev or your \
                    distribution, then run again"
                .into(),
        );
    }
    if !on_path("bazel") {
        install_bazel()?;
    }
    Ok(())
}

/// Installs Debian's `bazel-bootstrap` with `apt-get`, through `sudo` unless we are root.
fn install_bazel() -> Result<(), String> {
    if !on_path("apt-get") {
        return Err("the Bazel interop tests need `bazel` on PATH (Debian: the \
                    `bazel-bootstrap` package); no apt-get here to install it"
            .into());
    }
    eprintln!("xtask test: installing Debian's bazel-bootstrap for the Bazel interop tests");
    let as_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let apt = |args: &[&str]| {
        let mut command = if as_root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("apt-get");
            sudo
        };
        command
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|e| format!("cannot run apt-get: {e}"))
            .and_then(|s| {
                if s.success() {
                    Ok(())
                } else {
                    Err(format!("`apt-get {}` failed ({s})", args.join(" ")))
                }
            })
    };
    apt(&["update", "-qq"])?;
    apt(&[
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        "bazel-bootstrap",
    ])?;
    if on_path("bazel") {
        Ok(())
    } else {
        Err("bazel-bootstrap is installed but `bazel` is not on PATH".into())
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program))
                .map(|m| {
                    m.is_file()
                        && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
                })
                .unwrap_or(false)
        })
    })
}
