//! The default GODEBUG a `main` package is linked with (`-X=runtime.godebugDefault=...`), computed
//! as cmd/go does: every setting of the SDK's `internal/godebugs` table whose default changed
//! after the main module's `go` line gets its old value, then go.mod `godebug` lines and the main
//! package's `//go:debug` directives apply, in that order (a `default=go1.N` among them changes
//! the base version). Directives are checked as `go build` checks them: a key the SDK does not
//! know, a bad value or a repeated key is an error naming file:line:col.

use std::collections::{BTreeMap, HashMap};

use super::scan::Directive;

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

/// The SDK's `internal/godebugs` tables: the settings it knows and the ones it removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// `godebugs.All`.
    pub all: Vec<Setting>,
    /// `godebugs.Removed`: (name, minor version that removed it).
    pub removed: Vec<(String, u32)>,
}

/// Reads the tables from `$GOROOT/src/internal/godebugs/table.go`.
pub fn parse_table(src: &str) -> Table {
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
    let mut table = Table::default();
    let mut in_removed = false;
    for line in src.lines() {
        let t = line.trim_start();
        if t.starts_with("var ") {
            in_removed = t.starts_with("var Removed");
        }
        if !t.starts_with("{Name:") {
            continue;
        }
        let Some(name) = field(t, "Name:") else {
            continue;
        };
        let number = |key| field(t, key).and_then(|c| c.parse().ok()).unwrap_or(0);
        if in_removed {
            table.removed.push((name, number("Removed:")));
        } else {
            table.all.push(Setting {
                name,
                changed: number("Changed:"),
                old: field(t, "Old:").unwrap_or_default(),
            });
        }
    }
    table
}

/// A Go version as cmd/go's `gover` orders them: `1.21 < 1.21rc1 < 1.21.0 < 1.21.1`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct GoVersion {
    major: u64,
    minor: Option<u64>,
    patch: Option<u64>,
    kind: String,
    pre: Option<u64>,
}

fn cut_int(s: &str) -> Option<(u64, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if end == 0 || (end > 1 && s.starts_with('0')) {
        return None;
    }
    Some((s[..end].parse().ok()?, &s[end..]))
}

/// Parses `1.21`, `1.21.3`, `1.22rc1` (no `go` prefix); `None` if it is not a Go version.
fn parse_version(s: &str) -> Option<GoVersion> {
    let (major, rest) = cut_int(s)?;
    if rest.is_empty() {
        return Some(GoVersion {
            major,
            minor: Some(0),
            patch: Some(0),
            kind: String::new(),
            pre: None,
        });
    }
    let (minor, rest) = cut_int(rest.strip_prefix('.')?)?;
    let mut v = GoVersion {
        major,
        minor: Some(minor),
        // Before Go 1.21, `1.N` meant `1.N.0`.
        patch: (minor < 21).then_some(0),
        kind: String::new(),
        pre: None,
    };
    if rest.is_empty() {
        return Some(v);
    }
    if let Some(p) = rest.strip_prefix('.') {
        let (patch, tail) = cut_int(p)?;
        if !tail.is_empty() {
            return None;
        }
        v.patch = Some(patch);
        return Some(v);
    }
    let end = rest
        .find(|c: char| !c.is_ascii_lowercase())
        .unwrap_or(rest.len());
    if end == 0 {
        return None;
    }
    v.patch = None;
    v.kind = rest[..end].to_string();
    let tail = &rest[end..];
    if !tail.is_empty() {
        let (pre, tail) = cut_int(tail)?;
        if !tail.is_empty() {
            return None;
        }
        v.pre = Some(pre);
    }
    Some(v)
}

/// Checks one `key=value` setting as cmd/go's `CheckGodebug` does; `verb` names where it came
/// from in messages (`//go:debug setting`). `toolchain` is the SDK's version (`go1.26.8`).
pub fn check_setting(
    table: &Table,
    toolchain: &str,
    verb: &str,
    key: &str,
    value: &str,
) -> Result<(), String> {
    if key.contains([' ', '\t']) {
        return Err("key contains space".into());
    }
    if value.contains([' ', '\t']) {
        return Err("value contains space".into());
    }
    if key.contains(',') {
        return Err("key contains comma".into());
    }
    if value.contains(',') {
        return Err("value contains comma".into());
    }
    if key == "default" {
        let version = value.strip_prefix("go").and_then(parse_version);
        let Some(version) = version else {
            return Err("value for default= must be goVERSION".into());
        };
        let local = toolchain.strip_prefix("go").unwrap_or(toolchain);
        if parse_version(local).is_some_and(|l| version > l) {
            return Err(format!("default={value} too new (toolchain is go{local})"));
        }
        return Ok(());
    }
    if table.all.iter().any(|s| s.name == key) {
        return Ok(());
    }
    if let Some((_, removed)) = table.removed.iter().find(|(name, _)| name == key) {
        return Err(format!(
            "use of removed {verb} \"{key}\", see https://go.dev/doc/godebug#go-1{removed}"
        ));
    }
    Err(format!("unknown {verb} \"{key}\""))
}

/// A `//go:debug` comment's setting, as cmd/go's `ParseGoDebug`: `Ok(None)` when the comment is
/// not a `//go:debug` line at all (`//go:debugx`), an error for a bad or unknown setting.
pub fn parse_directive(
    table: &Table,
    toolchain: &str,
    text: &str,
) -> Result<Option<(String, String)>, String> {
    let Some(rest) = text.strip_prefix("//go:debug") else {
        return Ok(None);
    };
    let Some(i) = rest.find([' ', '\t']) else {
        return if text.trim() == "//go:debug" {
            Err("missing key=value".into())
        } else {
            Ok(None)
        };
    };
    let Some((k, v)) = rest[i..].trim().split_once('=') else {
        return Err("missing key=value".into());
    };
    check_setting(table, toolchain, "//go:debug setting", k, v)?;
    Ok(Some((k.to_string(), v.to_string())))
}

/// Checks the `//go:debug` directives of one package's files ((file, directives) in file order),
/// as `go build` does for every package it compiles: each bad setting and each repeated key is
/// one message, `file:line:col: invalid //go:debug: ...`.
pub fn check_directives(
    table: &Table,
    toolchain: &str,
    files: &[(&str, &[Directive])],
) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for (file, directives) in files {
        for d in directives.iter() {
            let pos = format!("{file}:{}:{}", d.line, d.col);
            match parse_directive(table, toolchain, &d.text) {
                Ok(None) => {}
                Err(e) => out.push(format!("{pos}: invalid //go:debug: {e}")),
                Ok(Some((key, _))) => {
                    if let Some(previous) = seen.get(&key) {
                        out.push(format!(
                            "{pos}: repeated //go:debug for {key}\n\t{previous}: previous //go:debug"
                        ));
                    } else {
                        seen.insert(key, pos);
                    }
                }
            }
        }
    }
    out
}

/// The valid settings of `directives`, in order (bad ones are skipped, as cmd/go's
/// `defaultGODEBUG` does; [`check_directives`] reports them).
pub fn directive_settings<'a>(
    table: &Table,
    toolchain: &str,
    directives: impl IntoIterator<Item = &'a Directive>,
) -> Vec<(String, String)> {
    directives
        .into_iter()
        .filter_map(|d| parse_directive(table, toolchain, &d.text).ok().flatten())
        .collect()
}

/// The `godebugDefault` string for a main module with `go` line `go_version` (`1.22`,
/// `1.22.3`) and settings from go.mod `godebug` lines then `//go:debug` directives, later ones
/// winning (a `default=go1.N` among them changes the base version).
pub fn default_godebug(table: &Table, go_version: &str, overrides: &[(String, String)]) -> String {
    let mut settings: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in overrides {
        settings.insert(k.clone(), v.clone());
    }
    let mut base = go_version.to_string();
    if let Some(v) = settings.remove("default") {
        let v = v.trim_start_matches("go");
        if parse_version(v).is_some() {
            base = v.to_string();
        }
    }
    // cmd/go's `godebugForGoVersion`: `1.N` (patch dropped); anything else gets no defaults.
    let minor: Option<u32> = base
        .strip_prefix("1.")
        .map(|m| m.split('.').next().unwrap_or(m))
        .and_then(|m| m.parse().ok());
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    if let Some(n) = minor {
        for s in &table.all {
            if n < s.changed {
                out.insert(s.name.clone(), s.old.clone());
            }
        }
    }
    out.extend(settings);
    out.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    const TABLE: &str = r#"var All = []Info{
	{Name: "asynctimerchan", Package: "time", Changed: 23, Old: "1"},
	{Name: "execerrdot", Package: "os/exec"},
	{Name: "panicnil", Package: "runtime", Changed: 21, Old: "1"},
	{Name: "tlsmlkem", Package: "crypto/tls", Changed: 24, Old: "0", Opaque: true},
}

type RemovedInfo struct {
	Name    string // name of the removed GODEBUG setting.
}

var Removed = []RemovedInfo{
	{Name: "x509sha1", Removed: 24},
}"#;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn old_values_for_settings_changed_after_the_go_line() {
        let table = parse_table(TABLE);
        assert_eq!(table.all.len(), 4);
        assert_eq!(table.removed, [("x509sha1".to_string(), 24)]);
        assert_eq!(
            default_godebug(&table, "1.22", &[]),
            "asynctimerchan=1,tlsmlkem=0"
        );
        assert_eq!(
            default_godebug(&table, "1.20.3", &[]),
            "asynctimerchan=1,panicnil=1,tlsmlkem=0"
        );
        assert_eq!(default_godebug(&table, "1.26", &[]), "");
        // A pre-release go line gets no defaults, as cmd/go's godebugForGoVersion.
        assert_eq!(default_godebug(&table, "1.21rc1", &[]), "");
        assert_eq!(
            default_godebug(&table, "1.26", &pairs(&[("default", "go1.22"), ("x", "1")])),
            "asynctimerchan=1,tlsmlkem=0,x=1"
        );
    }

    #[test]
    fn later_settings_win_and_a_directive_default_moves_the_base() {
        let table = parse_table(TABLE);
        // go.mod says panicnil=0, then a directive says panicnil=1 and default=go1.20.
        let settings = pairs(&[
            ("panicnil", "0"),
            ("default", "go1.23"),
            ("panicnil", "1"),
            ("default", "go1.20"),
        ]);
        assert_eq!(
            default_godebug(&table, "1.26", &settings),
            "asynctimerchan=1,panicnil=1,tlsmlkem=0"
        );
    }

    #[test]
    fn directives_are_checked_as_go_build_checks_them() {
        let table = parse_table(TABLE);
        let d = |text: &str, line| Directive {
            text: text.into(),
            line,
            col: 1,
        };
        let main = [
            d("//go:debug panicnil=1", 1),
            d("//go:debug nosuchkey=1", 2),
            d("//go:debug", 3),
            d("//go:debug panicnil", 4),
            d("//go:debugger", 5),
            d("//go:debug x509sha1=1", 6),
            d("//go:debug default=go1.99", 7),
            d("//go:debug default=1.20", 8),
            d("//go:debug tlsmlkem=0,1", 9),
        ];
        let other = [d("//go:debug panicnil=0", 3)];
        let messages = check_directives(
            &table,
            "go1.26.8",
            &[("cmd/a/main.go", &main), ("cmd/a/other.go", &other)],
        );
        expect![[r#"
            cmd/a/main.go:2:1: invalid //go:debug: unknown //go:debug setting "nosuchkey"
            cmd/a/main.go:3:1: invalid //go:debug: missing key=value
            cmd/a/main.go:4:1: invalid //go:debug: missing key=value
            cmd/a/main.go:6:1: invalid //go:debug: use of removed //go:debug setting "x509sha1", see https://go.dev/doc/godebug#go-124
            cmd/a/main.go:7:1: invalid //go:debug: default=go1.99 too new (toolchain is go1.26.8)
            cmd/a/main.go:8:1: invalid //go:debug: value for default= must be goVERSION
            cmd/a/main.go:9:1: invalid //go:debug: value contains comma
            cmd/a/other.go:3:1: repeated //go:debug for panicnil
            	cmd/a/main.go:1:1: previous //go:debug"#]]
        .assert_eq(&messages.join("\n"));
        assert_eq!(
            directive_settings(&table, "go1.26.8", &main),
            pairs(&[("panicnil", "1")])
        );
    }

    #[test]
    fn versions_order_as_gover() {
        let v = |s| parse_version(s).unwrap();
        assert!(v("1.21") < v("1.21rc1"));
        assert!(v("1.21rc1") < v("1.21.0"));
        assert!(v("1.21.0") < v("1.21.1"));
        assert_eq!(v("1.20"), v("1.20.0"));
        assert!(v("1.9") < v("1.10"));
        for bad in ["", "1.", "x", "1.21.3rc1", "01.2", "1.2.3.4", "1.21RC1"] {
            assert!(parse_version(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn matches_the_installed_sdk_when_present() {
        // The real table parses into many rows with names and versions.
        let Ok(src) = std::fs::read_to_string("/usr/local/go/src/internal/godebugs/table.go")
        else {
            return;
        };
        let table = parse_table(&src);
        assert!(table.all.len() > 20);
        assert!(table
            .all
            .iter()
            .any(|s| s.name == "panicnil" && s.changed == 21 && s.old == "1"));
        assert!(!table.all.iter().any(|s| s.name == "x509sha1"));
    }
}
