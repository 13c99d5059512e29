//! Kiln's side of namespaces mode: writes the helper request, starts the helper (or has the
//! holder start the sandbox), and turns the reported result into an [`ExitKind`].

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::child::Captured;
use crate::protocol::{HelperRequest, HelperResult};
use crate::request::FileBind;
use crate::scratch::Scratch;
use crate::{ExecError, ExitKind, SandboxRequest, EXEC_ROOT, HELPER_ARG};

/// Writes the request for `req` into scratch; returns the request file's path.
pub(crate) fn write_request(
    req: &SandboxRequest,
    scratch: &Scratch,
    read_only: Vec<String>,
    file_binds: Vec<FileBind>,
) -> Result<PathBuf, ExecError> {
    let argv0 = &req.argv[0];
    let program = if argv0.starts_with('/') {
        argv0.clone()
    } else {
        format!("{EXEC_ROOT}/{argv0}")
    };
    let cwd = match req.working_directory.as_str() {
        "" => EXEC_ROOT.to_string(),
        wd => format!("{EXEC_ROOT}/{wd}"),
    };
    let env = req
        .env
        .iter()
        .filter(|(k, _)| k != "TMPDIR")
        .map(|(k, v)| format!("{k}={v}"))
        .chain(["TMPDIR=/tmp".to_string()])
        .collect();
    let helper_req = HelperRequest {
        parent_pid: std::process::id() as i32,
        program,
        argv: req.argv.clone(),
        env,
        cwd,
        network: req.network,
        exec_root: scratch.exec_root(),
        tmp: scratch.tmp(),
        new_root: scratch.new_root(),
        file_binds,
        read_only,
        mounts: req.mounts.clone(),
        result: scratch.result_file(),
    };
    let path = scratch.request_file();
    let json = serde_json::to_vec(&helper_req).map_err(|e| {
        ExecError::Setup(format!(
            "cannot write the sandbox request (its paths must be UTF-8): {e}"
        ))
    })?;
    fs::write(&path, json).map_err(|e| ExecError::io("write", &path, e))?;
    Ok(path)
}

/// The command that starts the one-shot helper on the request file `request`, after making
/// the mount point of its root.
pub(crate) fn command(
    helper: &Path,
    request: &Path,
    scratch: &Scratch,
) -> Result<Command, ExecError> {
    let new_root = scratch.new_root();
    fs::create_dir(&new_root).map_err(|e| ExecError::io("create directory", &new_root, e))?;
    #[allow(clippy::disallowed_methods)] // The sandbox is the place allowed to spawn.
    let mut cmd = Command::new(helper);
    cmd.arg(HELPER_ARG)
        .arg(request)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    Ok(cmd)
}

/// The result file a spawned helper wrote, if it did.
pub(crate) fn read_result_file(scratch: &Scratch) -> Option<HelperResult> {
    fs::read(scratch.result_file())
        .ok()
        .and_then(|bytes| serde_json::from_slice::<HelperResult>(&bytes).ok())
}

/// Turns the helper's (or init's) verdict into an exit; `status` describes how the process
/// ended, for the error when it reported nothing.
pub(crate) fn exit_kind(
    helper: &Path,
    req: &SandboxRequest,
    result: Option<&HelperResult>,
    status: String,
    captured: &Captured,
) -> Result<ExitKind, ExecError> {
    if captured.timed_out {
        return Ok(ExitKind::TimedOut);
    }
    match result {
        Some(HelperResult::Exited(code)) => Ok(ExitKind::Code(*code)),
        Some(HelperResult::Signaled(sig)) => Ok(ExitKind::Signal(*sig)),
        Some(HelperResult::ExecFailed(errno)) => Err(ExecError::Exec {
            argv0: req.argv[0].clone(),
            source: io::Error::from_raw_os_error(*errno),
        }),
        Some(HelperResult::SetupFailed(msg)) => Err(ExecError::Setup(msg.clone())),
        None => {
            let stderr = String::from_utf8_lossy(&captured.stderr);
            let tail: String = stderr.chars().rev().take(2000).collect();
            Err(ExecError::Helper {
                helper: helper.into(),
                status,
                stderr: tail.chars().rev().collect(),
            })
        }
    }
}
