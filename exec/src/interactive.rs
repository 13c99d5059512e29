//! `kiln run`: start a built program in the foreground, outside the sandbox, with the user's
//! terminal, and return its exit code (128 + signal when killed, as shells report it).

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

/// Runs `program` with `args` in `cwd`, adding `env` to the inherited environment.
pub fn run_interactive(
    program: &Path,
    args: &[String],
    cwd: &Path,
    env: &[(String, String)],
) -> io::Result<i32> {
    #[allow(clippy::disallowed_methods)] // This module is one of the two places allowed to spawn.
    let mut command = Command::new(program);
    command.args(args).current_dir(cwd);
    for (key, value) in env {
        command.env(key, value);
    }
    let status = command.status()?;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}
