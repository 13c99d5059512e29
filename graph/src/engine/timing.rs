//! `KILN_TIMINGS=1`: where a build's time goes, phase by phase, on stderr.

/// Phase timings on stderr when `KILN_TIMINGS` is set: where a build's time goes.
pub(super) struct PhaseTimer {
    enabled: bool,
    last: std::cell::Cell<std::time::Instant>,
}

impl PhaseTimer {
    pub(super) fn new() -> Self {
        PhaseTimer {
            enabled: std::env::var_os("KILN_TIMINGS").is_some(),
            last: std::cell::Cell::new(std::time::Instant::now()),
        }
    }

    pub(super) fn mark(&self, phase: &str) {
        if self.enabled {
            let now = std::time::Instant::now();
            eprintln!(
                "kiln timing: {phase}: {:.1} ms",
                now.duration_since(self.last.get()).as_secs_f64() * 1000.0
            );
            self.last.set(now);
        }
    }
}
