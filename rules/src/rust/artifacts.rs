//! rustc's artifact notifications (`--json=artifacts`), which the helper passes through on stderr:
//! the early-output parser that lets dependents start on a crate's `.rmeta` while its codegen runs.

use std::sync::Arc;

use kiln_graph::action::EarlyOutputParser;

/// The file named by a `{"$message_type":"artifact","emit":"metadata"}` line, if `line` is one.
pub fn metadata_artifact(line: &str) -> Option<String> {
    if !line.starts_with("{\"$message_type\":\"artifact\"") {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    if value.get("emit")?.as_str()? != "metadata" {
        return None;
    }
    Some(value.get("artifact")?.as_str()?.to_string())
}

/// The parser for a library compile's action.
pub fn parser() -> EarlyOutputParser {
    Arc::new(metadata_artifact)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_metadata_notifications_count() {
        let rmeta = r#"{"$message_type":"artifact","artifact":"kiln-out/bin/a/liba-1.rmeta","emit":"metadata"}"#;
        let rlib =
            r#"{"$message_type":"artifact","artifact":"kiln-out/bin/a/liba-1.rlib","emit":"link"}"#;
        assert_eq!(
            metadata_artifact(rmeta).as_deref(),
            Some("kiln-out/bin/a/liba-1.rmeta")
        );
        assert_eq!(metadata_artifact(rlib), None);
        assert_eq!(metadata_artifact("warning: unused variable"), None);
        assert_eq!(
            metadata_artifact("{\"$message_type\":\"artifact\",broken"),
            None
        );
    }
}
