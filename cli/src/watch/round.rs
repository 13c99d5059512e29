//! One watch round as a person (and `--events`) sees it: a header naming what changed, the build's
//! own messages, then one line of what ran with pass/fail and the time, and for tests the results
//! of the tests that ran.

use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use kiln_graph::engine::BuildReport;
use kiln_graph::events::{BuildEvent, BuildObserver, CacheStatus, TestStatus};
use serde_json::json;

use crate::args::TestOutput;
use crate::commands::Session;
use crate::ui;

/// Milliseconds since the Unix epoch (for latency measurements across processes).
pub fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// Collects what one round ran.
#[derive(Default)]
pub struct RoundObserver {
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    executed: Vec<String>,
    first_action_ms: Option<f64>,
}

impl BuildObserver for RoundObserver {
    fn event(&self, event: &BuildEvent) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        match event {
            BuildEvent::ActionStarted { .. } => {
                seen.first_action_ms.get_or_insert_with(now_ms);
            }
            BuildEvent::ActionFinished {
                label,
                mnemonic,
                status: CacheStatus::Executed,
                ..
            } => seen.executed.push(format!("{mnemonic} {label}")),
            _ => {}
        }
    }
}

/// How a round ended.
pub struct RoundOutcome {
    result: Result<BuildReport, String>,
}

impl RoundOutcome {
    /// Wraps the engine's result (an error is a loading or analysis failure).
    pub fn new(result: anyhow::Result<BuildReport>) -> Self {
        RoundOutcome {
            result: result.map_err(|e| format!("{e:#}")),
        }
    }

    /// The build's report, unless loading or analysis failed.
    pub fn report(&self) -> Option<&BuildReport> {
        self.result.as_ref().ok()
    }

    /// Whether the round was stopped because an input changed under it.
    pub fn stopped(&self) -> bool {
        self.report().is_some_and(|r| r.stopped)
    }

    /// Whether everything built (and every test that ran passed).
    pub fn success(&self) -> bool {
        self.report().is_some_and(|r| {
            r.success()
                && r.tests
                    .iter()
                    .all(|t| matches!(t.status, TestStatus::Passed | TestStatus::Skipped))
        })
    }
}

/// Prints the round's header and writes its event.
pub fn announce(session: &Session, round: u64, changed: &[String]) {
    let what = if round == 1 {
        "start".to_string()
    } else if changed.len() <= 5 {
        changed.join(", ")
    } else {
        format!(
            "{} and {} more files",
            changed[..5].join(", "),
            changed.len() - 5
        )
    };
    session
        .terminal
        .line(&format!("──── round {round} · {what} ────"));
    if let Some(events) = &session.events {
        events.write(
            json!({"type": "watch_round", "round": round, "changed": changed, "time_ms": now_ms()}),
        );
        events.flush();
    }
}

/// Prints the round's result and writes its summary event.
pub fn summarize(
    session: &Session,
    round: u64,
    outcome: &RoundOutcome,
    observer: &RoundObserver,
    started: Instant,
    tests: Option<TestOutput>,
) {
    let terminal = &session.terminal;
    let seconds = started.elapsed().as_secs_f64();
    let (executed, first_action_ms) = observer
        .seen
        .lock()
        .map(|s| (s.executed.clone(), s.first_action_ms))
        .unwrap_or_default();
    let report = match &outcome.result {
        Ok(report) => report,
        Err(message) => {
            terminal.line(&format!("ERROR: {message}"));
            terminal.line(&format!(
                "FAILED round {round}: the build could not start ({seconds:.2}s); waiting for a fix"
            ));
            let summary = RoundSummary {
                round,
                success: false,
                stopped: false,
                executed: &[],
                seconds,
                first_action_ms,
            };
            summary.write(session);
            return;
        }
    };
    if report.stopped {
        terminal.line(&format!(
            "STOPPED round {round}: an input changed while it ran ({seconds:.2}s); starting again"
        ));
        let summary = RoundSummary {
            round,
            success: false,
            stopped: true,
            executed: &executed,
            seconds,
            first_action_ms,
        };
        summary.write(session);
        return;
    }
    for line in executed.iter().take(10) {
        terminal.line(&format!("  ran {line}"));
    }
    if executed.len() > 10 {
        terminal.line(&format!("  ... and {} more", executed.len() - 10));
    }
    if let Some(output) = tests {
        let mut cached = 0;
        for test in &report.tests {
            if test.cached {
                cached += 1;
                continue;
            }
            let status = match test.status {
                TestStatus::Passed => "PASSED",
                TestStatus::Failed => "FAILED",
                TestStatus::TimedOut => "TIMEOUT",
                TestStatus::Skipped => "SKIPPED",
            };
            if let Some(reason) = &test.reason {
                terminal.line(&format!(
                    "  {:<50} SKIPPED: {reason}",
                    test.label.to_string()
                ));
                continue;
            }
            let show_log = output == TestOutput::All
                || (output == TestOutput::Errors && test.status != TestStatus::Passed);
            if show_log {
                let log = std::fs::read_to_string(session.workspace.root.join(&test.log))
                    .unwrap_or_default();
                terminal.line(&format!("{}:\n{}", test.label, log.trim_end()));
            }
            terminal.line(&format!(
                "  {:<50} {status} in {:.1}s",
                test.label.to_string(),
                test.duration.as_secs_f64()
            ));
        }
        if cached > 0 {
            terminal.line(&format!("  {cached} tests unaffected (cached results)"));
        }
    }
    let ok = outcome.success();
    terminal.line(&format!(
        "{} round {round}: {} ({seconds:.2}s)",
        if ok { "OK" } else { "FAILED" },
        ui::summary(report.executed, report.local_hits, report.remote_hits)
    ));
    let summary = RoundSummary {
        round,
        success: ok,
        stopped: false,
        executed: &executed,
        seconds,
        first_action_ms,
    };
    summary.write(session);
}

/// The `watch_round_done` event of a round.
struct RoundSummary<'a> {
    round: u64,
    success: bool,
    /// Stopped because an input changed while it ran.
    stopped: bool,
    executed: &'a [String],
    seconds: f64,
    first_action_ms: Option<f64>,
}

impl RoundSummary<'_> {
    fn write(&self, session: &Session) {
        if let Some(events) = &session.events {
            events.write(json!({
                "type": "watch_round_done", "round": self.round, "success": self.success,
                "stopped": self.stopped, "executed": self.executed, "elapsed_s": self.seconds,
                "first_action_ms": self.first_action_ms, "time_ms": now_ms(),
            }));
            events.flush();
        }
    }
}
