//! What a person sees on stderr: a one-line progress display on a TTY, failures as they happen, and
//! a Bazel-like summary at the end.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Instant;

use kiln_graph::events::{BuildEvent, BuildObserver};

/// Progress and messages on stderr.
pub struct Terminal {
    tty: bool,
    started: Instant,
    state: Mutex<Progress>,
}

#[derive(Default)]
struct Progress {
    line_shown: bool,
    warned: std::collections::HashSet<String>,
    last_draw: Option<Instant>,
}

impl Terminal {
    /// A reporter; progress lines are drawn only when stderr is a terminal.
    pub fn new() -> Self {
        Terminal {
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
            state: Mutex::new(Progress::default()),
        }
    }

    /// Prints a line, clearing the progress line first.
    pub fn line(&self, text: &str) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let mut err = std::io::stderr().lock();
        if state.line_shown {
            let _ = write!(err, "\r\x1b[K");
            state.line_shown = false;
        }
        let _ = writeln!(err, "{text}");
    }

    /// Seconds since start.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Clears the progress line, if any.
    pub fn finish(&self) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if state.line_shown {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
            state.line_shown = false;
        }
    }
}

impl BuildObserver for Terminal {
    fn event(&self, event: &BuildEvent) {
        match event {
            BuildEvent::ActionFailed {
                label,
                mnemonic,
                message,
            } => {
                self.line(&format!(
                    "ERROR: {mnemonic} {label} failed:\n{}",
                    message.trim_end()
                ));
            }
            BuildEvent::Warning(text) => {
                let fresh = self
                    .state
                    .lock()
                    .map(|mut s| s.warned.insert(text.clone()))
                    .unwrap_or(false);
                if fresh {
                    self.line(&format!("WARNING: {text}"));
                }
            }
            BuildEvent::Progress {
                done,
                total,
                running,
                current,
            } if self.tty => {
                let Ok(mut state) = self.state.lock() else {
                    return;
                };
                let now = Instant::now();
                if state
                    .last_draw
                    .is_some_and(|t| now.duration_since(t).as_millis() < 50)
                    && *running > 0
                {
                    return;
                }
                state.last_draw = Some(now);
                let current = current.as_deref().unwrap_or("");
                let mut text = format!("[{done}/{total}] {current}  {running} running");
                if let Some((cols, _)) = terminal_width() {
                    text.truncate(cols.saturating_sub(1));
                }
                let _ = write!(std::io::stderr(), "\r\x1b[K{text}");
                state.line_shown = true;
            }
            _ => {}
        }
    }
}

fn terminal_width() -> Option<(usize, usize)> {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .map(|c| (c, 0))
        .or(Some((120, 0)))
}

/// Counts for the summary line.
pub fn summary(executed: usize, local: usize, remote: usize) -> String {
    let total = executed + local + remote;
    format!("{total} actions: {executed} executed, {local} local cache hits, {remote} remote cache hits")
}
