//! `--events FILE`: one JSON object per line for every action, target and test, and a final summary
//! with the counts of executed actions and cache hits.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use kiln_graph::events::{BuildEvent, BuildObserver, TestStatus};
use serde_json::json;

/// Writes events as JSON lines.
pub struct EventsFile {
    out: Mutex<BufWriter<File>>,
}

impl EventsFile {
    /// Creates (truncates) the file.
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path)
            .with_context(|| format!("Cannot create events file `{}`", path.display()))?;
        Ok(EventsFile {
            out: Mutex::new(BufWriter::new(file)),
        })
    }

    /// Writes one JSON value as a line.
    pub fn write(&self, value: serde_json::Value) {
        if let Ok(mut out) = self.out.lock() {
            let _ = serde_json::to_writer(&mut *out, &value);
            let _ = out.write_all(b"\n");
        }
    }

    /// Flushes buffered lines.
    pub fn flush(&self) {
        if let Ok(mut out) = self.out.lock() {
            let _ = out.flush();
        }
    }
}

impl BuildObserver for EventsFile {
    fn event(&self, event: &BuildEvent) {
        let value = match event {
            BuildEvent::Planned {
                actions,
                packages_evaluated,
                packages_loaded,
            } => json!({
                "type": "planned", "actions": actions, "packages_evaluated": packages_evaluated, "packages_loaded": packages_loaded,
            }),
            BuildEvent::ActionStarted {
                label,
                mnemonic,
                message,
            } => json!({
                "type": "action_started", "label": label.to_string(), "mnemonic": mnemonic,
                "message": message,
            }),
            BuildEvent::ActionFinished {
                label,
                mnemonic,
                output,
                status,
                duration,
                success,
                key,
                rerun,
            } => json!({
                "type": "action", "label": label.to_string(), "mnemonic": mnemonic, "output": output,
                "cache": status.name(), "duration_ms": duration.as_secs_f64() * 1000.0, "success": success, "key": key,
                "rerun": rerun,
            }),
            BuildEvent::ActionFailed {
                label,
                mnemonic,
                message,
            } => json!({
                "type": "action_failed", "label": label.to_string(), "mnemonic": mnemonic, "message": message,
            }),
            BuildEvent::TargetCompleted {
                label,
                success,
                outputs,
            } => json!({
                "type": "target", "label": label.to_string(), "success": success, "outputs": outputs,
            }),
            BuildEvent::TestResult {
                label,
                status,
                cached,
                duration,
                log,
                run,
            } => json!({
                "type": "test", "label": label.to_string(),
                "status": match status { TestStatus::Passed => "PASSED", TestStatus::Failed => "FAILED", TestStatus::TimedOut => "TIMEOUT", TestStatus::Skipped => "SKIPPED" },
                "cached": cached, "duration_ms": duration.as_secs_f64() * 1000.0, "log": log, "run": run,
            }),
            BuildEvent::Warning(text) => json!({"type": "warning", "message": text}),
            BuildEvent::Progress { .. } => return,
        };
        self.write(value);
        if matches!(event, BuildEvent::ActionStarted { .. }) {
            // Tools following the file (and `kiln watch` users) see what runs as it starts.
            self.flush();
        }
    }
}

/// Fans events out to several observers.
pub struct Tee<'a>(pub Vec<&'a dyn BuildObserver>);

impl BuildObserver for Tee<'_> {
    fn event(&self, event: &BuildEvent) {
        for observer in &self.0 {
            observer.event(event);
        }
    }
}
