//! Which feature resolver a Cargo workspace uses, read from its root manifest as cargo reads it:
//! `[workspace] resolver`, else `[package] resolver`, else the root package's edition (2021 and
//! later mean version 2; a virtual workspace without the key, or an older edition, means 1).
//! `cargo metadata` does not report it. Pure: the caller reads the file.

/// A feature resolver version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResolverVersion {
    /// Features unified across host, target and dev-dependencies.
    V1,
    /// Host and target apart, dev-dependencies only for tests (versions "2" and "3" resolve
    /// features alike).
    V2,
}

/// The resolver the root manifest `text` (of file `file`, for messages) selects.
pub fn of_root_manifest(text: &str, file: &str) -> Result<ResolverVersion, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| format!("{file}: {e}"))?;
    let section = |name: &str| table.get(name).and_then(toml::Value::as_table);
    let declared = section("workspace")
        .and_then(|w| w.get("resolver"))
        .or_else(|| section("package").and_then(|p| p.get("resolver")));
    if let Some(value) = declared {
        return match value.as_str() {
            Some("1") => Ok(ResolverVersion::V1),
            Some("2") | Some("3") => Ok(ResolverVersion::V2),
            _ => Err(format!(
                "{file}: `resolver` must be \"1\", \"2\" or \"3\", not {value}"
            )),
        };
    }
    let edition = section("package")
        .and_then(|p| p.get("edition"))
        .and_then(toml::Value::as_str)
        .unwrap_or("2015");
    Ok(match edition {
        "2015" | "2018" => ResolverVersion::V1,
        _ => ResolverVersion::V2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(text: &str) -> Result<ResolverVersion, String> {
        of_root_manifest(text, "Cargo.toml")
    }

    #[test]
    fn declared_versions_win_over_the_edition() {
        let workspace = "[workspace]\nresolver = \"2\"\nmembers = [\"a\"]\n";
        assert_eq!(version(workspace), Ok(ResolverVersion::V2));
        let old = "[package]\nname = \"a\"\nedition = \"2021\"\nresolver = \"1\"\n";
        assert_eq!(version(old), Ok(ResolverVersion::V1));
        let three = "[workspace]\nresolver = \"3\"\n";
        assert_eq!(version(three), Ok(ResolverVersion::V2));
    }

    #[test]
    fn the_root_package_edition_decides_otherwise() {
        let at = |edition: &str| {
            version(&format!(
                "[package]\nname = \"a\"\nedition = \"{edition}\"\n"
            ))
        };
        assert_eq!(at("2018"), Ok(ResolverVersion::V1));
        assert_eq!(at("2021"), Ok(ResolverVersion::V2));
        assert_eq!(at("2024"), Ok(ResolverVersion::V2));
        assert_eq!(
            version("[package]\nname = \"a\"\n"),
            Ok(ResolverVersion::V1)
        );
        // A virtual workspace without the key: version 1 (cargo warns about it).
        assert_eq!(
            version("[workspace]\nmembers = [\"a\"]\n"),
            Ok(ResolverVersion::V1)
        );
    }

    #[test]
    fn bad_values_are_errors_naming_the_file() {
        let err = version("[workspace]\nresolver = \"7\"\n").unwrap_err();
        assert!(err.starts_with("Cargo.toml: `resolver` must be"), "{err}");
        assert!(version("[workspace")
            .unwrap_err()
            .starts_with("Cargo.toml:"));
    }
}
