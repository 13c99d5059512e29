//! Bazel's exit codes, and an error type that carries one.

use std::fmt;

/// Success.
pub const SUCCESS: i32 = 0;
/// Build failed (BUILD-file and analysis errors included).
pub const BUILD_FAILED: i32 = 1;
/// Bad command line.
pub const BAD_COMMAND_LINE: i32 = 2;
/// Build succeeded but tests failed.
pub const TESTS_FAILED: i32 = 3;
/// No tests found.
pub const NO_TESTS: i32 = 4;
/// Interrupted (Ctrl-C).
pub const INTERRUPTED: i32 = 8;
/// Local environment problem.
pub const LOCAL_ENVIRONMENT: i32 = 36;
/// Internal error.
pub const INTERNAL: i32 = 37;

/// Set while `kiln run`'s program runs in the foreground: Ctrl-C is then the program's business.
pub static PROGRAM_IN_FOREGROUND: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Set while `kiln watch` runs: Ctrl-C then stops it cleanly with exit code 0.
pub static WATCHING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Process group of the program `kiln watch run` keeps running (0: none), stopped on Ctrl-C.
pub static SERVICE_GROUP: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// How long Ctrl-C waits for that program after SIGTERM before SIGKILL (`kiln watch --grace`).
pub static SERVICE_GRACE_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(2000);

/// Held while `kiln watch run` starts its program and records its group, and by
/// [`stop_service`]; `true` once Kiln is stopping, after which no program may start.
static SERVICE_STARTS: std::sync::Mutex<bool> = std::sync::Mutex::new(false);

/// Runs `start` (which starts `kiln watch run`'s program and returns its process group) unless
/// Kiln is stopping, and records the group so that every way out stops it. Returns `false` when
/// Kiln is stopping and nothing was started.
pub fn start_service(start: impl FnOnce() -> Option<u32>) -> bool {
    use std::sync::atomic::Ordering;
    let stopping = SERVICE_STARTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if *stopping {
        return false;
    }
    if let Some(group) = start() {
        SERVICE_GROUP.store(group, Ordering::SeqCst);
    }
    true
}

/// Stops the program `kiln watch run` keeps running, if any (SIGTERM to its process group, SIGKILL
/// after the grace period), and lets none start afterwards. Every way out of the process calls
/// it, so none leaves the program behind; a start under way finishes first, then is stopped.
pub fn stop_service() {
    use std::sync::atomic::Ordering;
    let group = {
        let mut stopping = SERVICE_STARTS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *stopping = true;
        SERVICE_GROUP.swap(0, Ordering::SeqCst)
    };
    if group != 0 {
        let grace = SERVICE_GRACE_MS.load(Ordering::SeqCst);
        kiln_exec::service::stop_group(group, std::time::Duration::from_millis(grace));
    }
}

/// An error that ends the command with a specific exit code.
#[derive(Debug)]
pub struct Exit {
    /// The exit code.
    pub code: i32,
    /// What to print (empty: nothing more to say).
    pub message: String,
}

impl Exit {
    /// An error with code and message.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Exit {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// The exit code for an error: its own if it carries one, else 37 (internal).
pub fn code_of(error: &anyhow::Error) -> i32 {
    error
        .downcast_ref::<Exit>()
        .map(|e| e.code)
        .unwrap_or(INTERNAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_keeps_its_code_through_context_and_an_uncoded_one_is_internal() {
        let coded = anyhow::Error::new(Exit::new(LOCAL_ENVIRONMENT, "no toolchain"))
            .context("building //a");
        assert_eq!(code_of(&coded), LOCAL_ENVIRONMENT);
        // An error nobody gave a code is a bug in Kiln: Bazel's "internal error".
        assert_eq!(code_of(&anyhow::anyhow!("unexpected")), INTERNAL);
        assert_eq!(INTERNAL, 37);
    }
}
