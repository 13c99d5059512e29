//! `KILN_TIMINGS=1`: where a build's time goes, phase by phase, on stderr.

use std::time::{Duration, Instant};

/// Phase timings on stderr when `KILN_TIMINGS` is set: where a build's time goes, as wall time
/// and as CPU time of this process's threads (user + system; the actions' processes are not
/// counted, so this is Kiln's own work).
pub(super) struct PhaseTimer {
    enabled: bool,
    last: std::cell::Cell<(Instant, Duration)>,
}

impl PhaseTimer {
    pub(super) fn new() -> Self {
        PhaseTimer {
            enabled: std::env::var_os("KILN_TIMINGS").is_some(),
            last: std::cell::Cell::new((Instant::now(), own_cpu_time())),
        }
    }

    pub(super) fn mark(&self, phase: &str) {
        if self.enabled {
            let (now, cpu) = (Instant::now(), own_cpu_time());
            let (last, last_cpu) = self.last.get();
            eprintln!(
                "kiln timing: {phase}: {:.1} ms (cpu {:.1} ms)",
                now.duration_since(last).as_secs_f64() * 1000.0,
                cpu.saturating_sub(last_cpu).as_secs_f64() * 1000.0
            );
            self.last.set((now, cpu));
        }
    }
}

/// User and system CPU time of every thread of this process so far (zero if unknown).
fn own_cpu_time() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    let Ok(usage) = getrusage(UsageWho::RUSAGE_SELF) else {
        return Duration::ZERO;
    };
    let micros = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec().max(0) as u64)
            + Duration::from_micros(t.tv_usec().max(0) as u64)
    };
    micros(usage.user_time()) + micros(usage.system_time())
}
