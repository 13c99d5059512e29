//! The default GODEBUG a `main` package is linked with (`-X=runtime.godebugDefault=...`), computed
//! as cmd/go does: every setting of the SDK's `internal/godebugs` table whose default changed
//! after the main module's `go` line gets its old value, then `godebug` lines of go.mod apply.

use std::collections::BTreeMap;

/// One row of `internal/godebugs.All`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    /// Setting name, e.g. `panicnil`.
    pub name: String,
    /// Minor Go version in which the default changed (0 if never).
    pub changed: u32,
    /// Value restoring the behaviour before `changed`.
    pub old: String,
}

/// Reads the table from `$GOROOT/src/internal/godebugs/table.go`.
pub fn parse_table(src: &str) -> Vec<Setting> {
    let field = |line: &str, key: &str| -> Option<String> {
        let start = line.find(key)? + key.len();
        let rest = line[start..].trim_start();
        if let Some(r) = rest.strip_prefix('"') {
            r.find('"').map(|e| r[..e].to_string())
        } else {
            let end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            Some(rest[..end].to_string())
        }
    };
    src.lines()
        .filter(|l| l.trim_start().starts_with("{Name:"))
        .filter_map(|l| {
            Some(Setting {
                name: field(l, "Name:")?,
                changed: field(l, "Changed:")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0),
                old: field(l, "Old:").unwrap_or_default(),
            })
        })
        .collect()
}

/// The `godebugDefault` string for a main module with `go 1.<go_minor>` and go.mod `godebug`
/// overrides (a `default=go1.N` override changes the base version).
pub fn default_godebug(table: &[Setting], go_minor: u32, overrides: &[(String, String)]) -> String {
    let mut settings: BTreeMap<String, String> = BTreeMap::new();
    let mut base = go_minor;
    for (k, v) in overrides {
        if k == "default" {
            if let Some(n) = v
                .trim_start_matches("go")
                .strip_prefix("1.")
                .and_then(|m| m.split('.').next())
                .and_then(|m| m.parse().ok())
            {
                base = n;
            }
        }
    }
    for s in table {
        if base < s.changed {
            settings.insert(s.name.clone(), s.old.clone());
        }
    }
    for (k, v) in overrides {
        if k != "default" {
            settings.insert(k.clone(), v.clone());
        }
    }
    settings
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = r#"var All = []Info{
	{Name: "asynctimerchan", Package: "time", Changed: 23, Old: "1"},
	{Name: "execerrdot", Package: "os/exec"},
	{Name: "panicnil", Package: "runtime", Changed: 21, Old: "1"},
	{Name: "tlsmlkem", Package: "crypto/tls", Changed: 24, Old: "0", Opaque: true},
}"#;

    #[test]
    fn old_values_for_settings_changed_after_the_go_line() {
        let table = parse_table(TABLE);
        assert_eq!(table.len(), 4);
        assert_eq!(
            default_godebug(&table, 22, &[]),
            "asynctimerchan=1,tlsmlkem=0"
        );
        assert_eq!(
            default_godebug(&table, 20, &[]),
            "asynctimerchan=1,panicnil=1,tlsmlkem=0"
        );
        assert_eq!(default_godebug(&table, 26, &[]), "");
        assert_eq!(
            default_godebug(
                &table,
                26,
                &[
                    ("default".into(), "go1.22".into()),
                    ("x".into(), "1".into())
                ]
            ),
            "asynctimerchan=1,tlsmlkem=0,x=1"
        );
    }

    #[test]
    fn matches_the_installed_sdk_when_present() {
        // The real table parses into many rows with names and versions.
        let Ok(src) = std::fs::read_to_string("/usr/local/go/src/internal/godebugs/table.go")
        else {
            return;
        };
        let table = parse_table(&src);
        assert!(table.len() > 20);
        assert!(table
            .iter()
            .any(|s| s.name == "panicnil" && s.changed == 21 && s.old == "1"));
    }
}
