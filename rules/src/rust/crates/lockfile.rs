//! `Cargo.lock`: the packages it pins and the sha256 of each registry package's `.crate`, the
//! checksums every download is verified against.

use std::collections::BTreeMap;

/// One `[[package]]` of a lock file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockedPackage {
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// `registry+...`, `git+...`, or none for workspace and path packages.
    pub source: Option<String>,
    /// Hex sha256 of the `.crate` (registry packages only).
    pub checksum: Option<String>,
}

/// A parsed lock file: packages by (name, version).
#[derive(Clone, Debug, Default)]
pub struct Lockfile {
    /// The packages.
    pub packages: BTreeMap<(String, String), LockedPackage>,
}

impl Lockfile {
    /// Parses a lock file's text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Lockfile, String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| format!("{file}: {e}"))?;
        let mut packages = BTreeMap::new();
        let list = match table.get("package") {
            Some(toml::Value::Array(list)) => list.as_slice(),
            Some(_) => return Err(format!("{file}: `package` must be an array of tables")),
            None => &[],
        };
        for (index, entry) in list.iter().enumerate() {
            let field = |key: &str| entry.get(key).and_then(|v| v.as_str()).map(str::to_string);
            let (Some(name), Some(version)) = (field("name"), field("version")) else {
                return Err(format!(
                    "{file}: package #{} lacks `name` or `version`",
                    index + 1
                ));
            };
            let checksum = field("checksum");
            if let Some(sum) = &checksum {
                if sum.len() != 64 || !sum.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(format!(
                        "{file}: checksum of `{name} {version}` is not 64 hex digits: `{sum}`"
                    ));
                }
            }
            let package = LockedPackage {
                name: name.clone(),
                version: version.clone(),
                source: field("source"),
                checksum,
            };
            packages.insert((name, version), package);
        }
        Ok(Lockfile { packages })
    }

    /// The pinned checksum of a registry package.
    pub fn checksum(&self, name: &str, version: &str) -> Option<&str> {
        self.packages
            .get(&(name.to_string(), version.to_string()))
            .and_then(|p| p.checksum.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_packages_carry_checksums() {
        let text = r#"
version = 4

[[package]]
name = "app"
version = "0.1.0"
dependencies = ["serde"]

[[package]]
name = "serde"
version = "1.0.229"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "b8d1b2e5c3a0f4e6d7c8b9a0f1e2d3c4b5a6978877665544332211aabbccddee"
"#;
        let lock = Lockfile::parse(text, "Cargo.lock").unwrap();
        assert_eq!(
            lock.checksum("serde", "1.0.229"),
            Some("b8d1b2e5c3a0f4e6d7c8b9a0f1e2d3c4b5a6978877665544332211aabbccddee")
        );
        assert_eq!(lock.checksum("app", "0.1.0"), None);
    }

    #[test]
    fn malformed_checksums_are_errors() {
        let text = "[[package]]\nname = \"x\"\nversion = \"1.0.0\"\nchecksum = \"abc\"\n";
        let err = Lockfile::parse(text, "Cargo.lock").unwrap_err();
        assert!(err.contains("`x 1.0.0`"), "{err}");
    }
}
