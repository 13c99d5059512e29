//! Replaying a no-op: the request fingerprint, the part of a report a no-op record keeps, and
//! turning a still-valid record back into events and a report (see [`super::noop`]).

use std::collections::HashMap;
use std::time::Duration;

use super::noop;
use super::sources::Observations;
use super::{BuildReport, Engine, Goal, TestRun};
use crate::events::{BuildEvent, CacheStatus, TestStatus};
use crate::label::Label;
use crate::pattern::PatternSet;

/// The part of a [`BuildReport`] a no-op replays, in a form that serializes.
#[derive(serde::Serialize, serde::Deserialize)]
struct ReplayReport {
    targets: Vec<Label>,
    outputs: Vec<(Label, Vec<String>)>,
    executables: Vec<(Label, String)>,
    runfiles: Vec<(Label, Vec<(String, String)>)>,
    actions: Vec<(Label, String, String, String)>,
    tests: Vec<(Label, u64, String, u32)>,
}

impl Engine<'_> {
    /// Everything about the request that decides its result, besides the workspace's files.
    pub(super) fn request_fingerprint(&self, patterns: &PatternSet, goal: &Goal) -> String {
        format!(
            "{patterns:?}|{goal:?}|{}|{}|{:?}|{}|{}|{:?}",
            self.settings_key(),
            self.config.function.name(),
            self.config.sandbox.mode_override,
            self.config.cache_dir.display(),
            self.config.workspace_config,
            self.config.remote.as_ref().map(|r| r.download)
        )
    }

    /// Answers a build whose inputs are exactly as the last successful one left them.
    pub(super) fn replay_noop(&self, request: &str, goal: &Goal) -> Option<BuildReport> {
        if let Goal::Test(options) = goal {
            if options.no_cache {
                return None;
            }
        }
        let bytes = self.state.noop_record()?;
        let mut record: noop::NoopRecord<ReplayReport> = serde_json::from_slice(&bytes).ok()?;
        let now = std::time::SystemTime::now();
        match noop::check(&self.config.root, request, &mut record, now) {
            noop::Validity::Stale => return None,
            noop::Validity::Valid => {}
            noop::Validity::ValidAndSettled => {
                if let Ok(bytes) = serde_json::to_vec(&record) {
                    self.state.set_noop_record(Some(bytes));
                }
            }
        }
        let watch_set = super::WatchSet {
            files: record.files().map(str::to_string).collect(),
            listings: record.listings().to_vec(),
            digests: HashMap::new(),
        };
        let stored = record.report;
        self.observer.event(&BuildEvent::Planned {
            actions: stored.actions.len(),
            packages_evaluated: 0,
            packages_loaded: 0,
        });
        for (label, mnemonic, output, key) in &stored.actions {
            self.observer.event(&BuildEvent::ActionFinished {
                label: label.clone(),
                mnemonic: mnemonic.clone(),
                output: output.clone(),
                status: CacheStatus::LocalHit,
                duration: Duration::ZERO,
                success: true,
                key: key.clone(),
                rerun: false,
            });
        }
        let outputs: HashMap<Label, Vec<String>> = stored.outputs.into_iter().collect();
        for label in &stored.targets {
            self.observer.event(&BuildEvent::TargetCompleted {
                label: label.clone(),
                success: true,
                outputs: outputs.get(label).cloned().unwrap_or_default(),
            });
        }
        let tests: Vec<TestRun> = stored
            .tests
            .into_iter()
            .map(|(label, millis, log, run)| TestRun {
                label,
                status: TestStatus::Passed,
                cached: true,
                duration: Duration::from_millis(millis),
                log,
                run,
                reason: None,
            })
            .collect();
        for test in &tests {
            self.observer.event(&BuildEvent::TestResult {
                label: test.label.clone(),
                status: test.status,
                cached: true,
                duration: test.duration,
                log: test.log.clone(),
                run: test.run,
            });
        }
        Some(BuildReport {
            targets: stored.targets,
            failed_targets: Vec::new(),
            executed: 0,
            local_hits: stored.actions.len(),
            remote_hits: 0,
            failures: Vec::new(),
            tests,
            outputs,
            executables: stored.executables.into_iter().collect(),
            runfiles: stored.runfiles.into_iter().collect(),
            actions: stored.actions,
            watch_set,
            stopped: false,
        })
    }

    /// Stores the no-op record of a successful build (or drops a stale one).
    pub(super) fn save_noop(
        &self,
        request: &str,
        started: std::time::SystemTime,
        observed: &Observations,
        listings: Vec<(String, String)>,
        report: &BuildReport,
    ) {
        let all_passed = report.tests.iter().all(|t| t.status == TestStatus::Passed);
        if !report.success() || !all_passed {
            self.state.set_noop_record(None);
            return;
        }
        let replay = ReplayReport {
            targets: report.targets.clone(),
            outputs: report
                .outputs
                .iter()
                .map(|(l, o)| (l.clone(), o.clone()))
                .collect(),
            executables: report
                .executables
                .iter()
                .map(|(l, e)| (l.clone(), e.clone()))
                .collect(),
            runfiles: report
                .runfiles
                .iter()
                .map(|(l, r)| (l.clone(), r.clone()))
                .collect(),
            actions: report.actions.clone(),
            tests: report
                .tests
                .iter()
                .map(|t| {
                    (
                        t.label.clone(),
                        t.duration.as_millis() as u64,
                        t.log.clone(),
                        t.run,
                    )
                })
                .collect(),
        };
        let bytes = noop::record(
            &self.config.root,
            request,
            started,
            observed,
            listings,
            replay,
        )
        .and_then(|r| serde_json::to_vec(&r).ok());
        self.state.set_noop_record(bytes);
    }
}
