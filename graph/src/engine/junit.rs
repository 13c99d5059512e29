//! The JUnit XML Bazel writes for a test that did not write its own.

use std::path::Path;

use crate::engine::sources::Observations;
use crate::engine::test_action::TestPaths;
use crate::events::TestStatus;
use crate::execute::ActionDone;
use crate::label::Label;

/// Bazel writes a JUnit XML file for tests that do not write one; so do we.
pub(super) fn write_junit_if_missing(
    root: &Path,
    label: &Label,
    paths: &TestPaths,
    status: TestStatus,
    done: &ActionDone,
    observed: &Observations,
) {
    let xml = root.join(&paths.xml);
    if done.outputs.contains_key(&paths.xml) {
        return;
    }
    let log = std::fs::read_to_string(root.join(&paths.log)).unwrap_or_default();
    let failure = match status {
        TestStatus::Passed => String::new(),
        TestStatus::Failed => {
            format!("<failure message=\"exited with code {}\"/>", done.exit_code)
        }
        TestStatus::TimedOut => "<failure message=\"timed out\"/>".to_string(),
        TestStatus::Skipped => "<skipped/>".to_string(),
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n<testsuite name=\"{name}\" tests=\"1\" failures=\"{failures}\" errors=\"0\">\n<testcase name=\"{name}\" status=\"run\" duration=\"{secs}\" time=\"{secs}\">{failure}</testcase>\n<system-out><![CDATA[{log}]]></system-out>\n</testsuite>\n</testsuites>\n",
        name = xml_escape(&label.to_string()),
        failures = u8::from(status != TestStatus::Passed),
        secs = done.run_duration.as_secs_f64(),
        log = log.replace("]]>", "]]]]><![CDATA[>"),
    );
    if let Some(parent) = xml.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    // Rewritten only when its content changes, and noted like every output, so that a no-op
    // record can vouch for it (and notices when it is deleted).
    if std::fs::read_to_string(&xml).ok().as_deref() != Some(body.as_str()) {
        let _ = std::fs::remove_file(&xml);
        let _ = std::fs::write(&xml, body);
    }
    if let Ok(metadata) = std::fs::metadata(&xml) {
        observed.note_metadata(&paths.xml, &metadata);
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
