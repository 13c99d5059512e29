//! The process is stopping on a signal: from here on no action result may be stored.
//!
//! Kiln exits at once on Ctrl-C (SIGTERM, SIGHUP); its handler first sets this, then moves the
//! scratch directory of the build under way out of the way (the `kiln` binary's
//! `scratch_claim`). An action the build finishes in between may have run on, or been
//! collected from, a tree that was moved or half recreated, so the runner stores nothing once
//! this is set: the result is reported as cancelled, and a cancelled action is never cached.
//! Process-wide on purpose: it describes the process, not one build.

use std::sync::atomic::{AtomicBool, Ordering};

static STOPPING: AtomicBool = AtomicBool::new(false);

/// Says the process is stopping: no action result is stored after this returns.
pub fn stop_storing_results() {
    STOPPING.store(true, Ordering::SeqCst);
}

/// Whether [`stop_storing_results`] was called.
pub fn stopping() -> bool {
    STOPPING.load(Ordering::SeqCst)
}
