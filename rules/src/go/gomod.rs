//! `go.mod` and `go.sum`: the module path, the `go` line (which sets `-lang` and the default
//! GODEBUG), requirements, `replace` directives, and the `h1:` hashes modules are verified against.

use std::collections::BTreeMap;

/// A module path and version.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModuleVersion {
    /// Module path, e.g. `github.com/google/go-cmp`.
    pub path: String,
    /// Version, e.g. `v0.6.0`.
    pub version: String,
}

/// Where a `replace` directive points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Replacement {
    /// Another module version.
    Module(ModuleVersion),
    /// A directory relative to the main module's root (or absolute).
    Dir(String),
}

/// A parsed `go.mod`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GoMod {
    /// The `module` path.
    pub module: String,
    /// The `go` line (e.g. `1.22` or `1.22.3`), if any.
    pub go: Option<String>,
    /// `require`d modules.
    pub require: Vec<ModuleVersion>,
    /// `replace` directives: (path, version if the directive names one) → replacement.
    pub replace: Vec<(String, Option<String>, Replacement)>,
    /// `godebug` settings.
    pub godebug: Vec<(String, String)>,
}

impl GoMod {
    /// The language version for `-lang`: `go1.N` from the `go` line, `go1.16` when absent (as
    /// cmd/go does).
    pub fn lang(&self) -> String {
        let go = self.go.as_deref().unwrap_or("1.16");
        let mut parts = go.split('.');
        let major = parts.next().unwrap_or("1");
        let minor: String = parts
            .next()
            .unwrap_or("16")
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        format!("go{major}.{minor}")
    }

    /// The `go` line when it asks for a newer Go than `toolchain` (`go1.26.8`, `go1.27rc1`):
    /// cmd/go refuses to build such a module ("requires go >= ..."), and so does Kiln.
    pub fn newer_than(&self, toolchain: &str) -> Option<&str> {
        let wanted = self.go.as_deref()?;
        (release_numbers(wanted) > release_numbers(toolchain.trim_start_matches("go")))
            .then_some(wanted)
    }

    /// The minor version of the `go` line (16 when absent).
    pub fn go_minor(&self) -> u32 {
        self.lang()
            .rsplit('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(16)
    }

    /// The replacement for a module version, if any (a version-specific directive wins).
    pub fn replacement(&self, path: &str, version: &str) -> Option<&Replacement> {
        self.replace
            .iter()
            .find(|(p, v, _)| p == path && v.as_deref() == Some(version))
            .or_else(|| {
                self.replace
                    .iter()
                    .find(|(p, v, _)| p == path && v.is_none())
            })
            .map(|(_, _, r)| r)
    }
}

/// Splits a go.mod line into fields, honouring quoted strings and dropping `//` comments.
fn fields(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        if rest.starts_with("//") {
            break;
        }
        if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').ok_or("unterminated quoted string")?;
            out.push(r[..end].to_string());
            rest = r[end + 1..].trim_start();
        } else if let Some(r) = rest.strip_prefix('`') {
            let end = r.find('`').ok_or("unterminated quoted string")?;
            out.push(r[..end].to_string());
            rest = r[end + 1..].trim_start();
        } else {
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '(' || c == ')')
                .map(|e| e.max(1))
                .unwrap_or(rest.len());
            out.push(rest[..end].to_string());
            rest = rest[end..].trim_start();
        }
    }
    Ok(out)
}

/// Parses go.mod text. `file` names it in errors (`go.mod:3: ...`).
pub fn parse_go_mod(file: &str, text: &str) -> Result<GoMod, String> {
    let mut m = GoMod::default();
    let mut block: Option<String> = None;
    for (n, raw) in text.lines().enumerate() {
        let at = |msg: String| format!("{file}:{}: {msg}", n + 1);
        let f = fields(raw).map_err(|e| at(e.to_string()))?;
        if f.is_empty() {
            continue;
        }
        let (verb, args): (String, &[String]) = match &block {
            Some(_) if f[0] == ")" => {
                block = None;
                continue;
            }
            Some(b) => (b.clone(), &f[..]),
            None if f.len() == 2 && f[1] == "(" => {
                block = Some(f[0].clone());
                continue;
            }
            None => (f[0].clone(), &f[1..]),
        };
        match verb.as_str() {
            "module" => {
                m.module = args
                    .first()
                    .cloned()
                    .ok_or_else(|| at("`module` needs a path".into()))?
            }
            "go" => {
                m.go = Some(
                    args.first()
                        .cloned()
                        .ok_or_else(|| at("`go` needs a version".into()))?,
                )
            }
            "require" => match args {
                [path, version, ..] => m.require.push(ModuleVersion {
                    path: path.clone(),
                    version: version.clone(),
                }),
                _ => return Err(at("`require` needs a module path and a version".into())),
            },
            "replace" => {
                let arrow = args
                    .iter()
                    .position(|a| a == "=>")
                    .ok_or_else(|| at("`replace` needs `=>`".into()))?;
                let (from, to) = (&args[..arrow], &args[arrow + 1..]);
                let (path, version) = match from {
                    [p] => (p.clone(), None),
                    [p, v] => (p.clone(), Some(v.clone())),
                    _ => return Err(at("malformed `replace` directive".into())),
                };
                let target = match to {
                    [dir]
                        if dir.starts_with("./")
                            || dir.starts_with("../")
                            || dir.starts_with('/') =>
                    {
                        Replacement::Dir(dir.clone())
                    }
                    [p, v] => Replacement::Module(ModuleVersion {
                        path: p.clone(),
                        version: v.clone(),
                    }),
                    _ => {
                        return Err(at(
                            "`replace` target must be a directory (./dir) or a module version"
                                .into(),
                        ))
                    }
                };
                m.replace.push((path, version, target));
            }
            "godebug" => {
                for a in args {
                    let (k, v) = a
                        .split_once('=')
                        .ok_or_else(|| at(format!("`godebug` setting `{a}` needs `key=value`")))?;
                    m.godebug.push((k.to_string(), v.to_string()));
                }
            }
            "toolchain" | "exclude" | "retract" | "tool" | "ignore" => {}
            other => return Err(at(format!("unknown directive `{other}`"))),
        }
    }
    if m.module.is_empty() {
        return Err(format!("{file}: no `module` line"));
    }
    Ok(m)
}

/// go.sum: (module path, version) → `h1:` hash of the module's files, and of its go.mod
/// (version key `v1.2.3/go.mod`).
pub fn parse_go_sum(file: &str, text: &str) -> Result<BTreeMap<(String, String), String>, String> {
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            [] => {}
            [path, version, hash] if hash.starts_with("h1:") => {
                let key = (path.to_string(), version.to_string());
                if let Some(old) = out.insert(key, hash.to_string()) {
                    if old != *hash {
                        return Err(format!(
                            "{file}:{}: conflicting hashes for `{path} {version}`",
                            n + 1
                        ));
                    }
                }
            }
            _ => {
                return Err(format!(
                    "{file}:{}: expected `<module> <version> h1:<hash>`",
                    n + 1
                ))
            }
        }
    }
    Ok(out)
}

/// A module as `vendor/modules.txt` lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VendoredModule {
    /// The version on its `# path version` line.
    pub version: String,
    /// The `go` version of its `## ... go 1.N` annotation, if any.
    pub go: Option<String>,
}

/// `vendor/modules.txt`: module path → version and `go` version. `go mod vendor` leaves out the
/// vendored modules' go.mod files, so this is where each vendored module's language version
/// lives (cmd/go reads it from here too).
pub fn parse_vendor_modules(text: &str) -> BTreeMap<String, VendoredModule> {
    let mut out: BTreeMap<String, VendoredModule> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(annotations) = line.strip_prefix("## ") {
            let go = annotations
                .split(';')
                .filter_map(|a| a.trim().strip_prefix("go "))
                .next();
            if let (Some(module), Some(go)) = (&current, go) {
                if let Some(entry) = out.get_mut(module) {
                    entry.go = Some(go.trim().to_string());
                }
            }
        } else if let Some(module) = line.strip_prefix("# ") {
            let fields: Vec<&str> = module.split_whitespace().collect();
            current = fields.first().map(|p| p.to_string());
            // `# path => dir` (a replacement with no version) records no module version.
            if let [path, version, ..] = fields.as_slice() {
                if *version != "=>" {
                    out.insert(
                        path.to_string(),
                        VendoredModule {
                            version: version.to_string(),
                            go: None,
                        },
                    );
                }
            }
        }
    }
    out
}

/// cmd/go's consistency check between go.mod and `vendor/modules.txt`: every requirement must be
/// vendored at the version go.mod requires. The error says what differs and how to fix it.
pub fn check_vendor_consistency(
    go_mod: &GoMod,
    vendored: &BTreeMap<String, VendoredModule>,
) -> Result<(), String> {
    let mut problems = Vec::new();
    for req in &go_mod.require {
        match vendored.get(&req.path) {
            None => problems.push(format!(
                "{}@{}: is required in go.mod, but not marked as explicit in vendor/modules.txt",
                req.path, req.version
            )),
            Some(v) if v.version != req.version => problems.push(format!(
                "{}@{}: is required in go.mod, but vendor/modules.txt requires {}@{}",
                req.path, req.version, req.path, v.version
            )),
            Some(_) => {}
        }
    }
    match problems.is_empty() {
        true => Ok(()),
        false => Err(format!(
            "inconsistent vendoring in go.mod's directory:\n\t{}\n\nTo ignore the vendor directory, use -mod=readonly or -mod=mod.\nTo sync the vendor directory, run:\n\tgo mod vendor",
            problems.join("\n\t")
        )),
    }
}

/// (major, minor, patch) of a Go version (`1.26`, `1.26.8`, `1.27rc1`: a missing or
/// pre-release patch counts as 0), as far as it parses.
fn release_numbers(version: &str) -> (u32, u32, u32) {
    let mut numbers = version.split('.').map(|part| {
        part.chars()
            .take_while(|c| c.is_ascii_digit())
            .collect::<String>()
            .parse()
            .unwrap_or(0)
    });
    let mut next = || numbers.next().unwrap_or(0);
    (next(), next(), next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_mod_directives() {
        let m = parse_go_mod(
            "go.mod",
            "module example.com/m // main\n\ngo 1.22.3\n\nrequire (\n\tgithub.com/google/go-cmp v0.6.0\n\tgolang.org/x/text v0.14.0 // indirect\n)\nreplace example.com/local => ./local\nreplace golang.org/x/text v0.14.0 => golang.org/x/text v0.15.0\ngodebug panicnil=1\n",
        )
        .unwrap();
        assert_eq!(m.module, "example.com/m");
        assert_eq!(m.lang(), "go1.22");
        assert_eq!(m.go_minor(), 22);
        assert_eq!(m.require.len(), 2);
        assert_eq!(
            m.replacement("example.com/local", "v0.0.0"),
            Some(&Replacement::Dir("./local".into()))
        );
        assert!(matches!(
            m.replacement("golang.org/x/text", "v0.14.0"),
            Some(Replacement::Module(v)) if v.version == "v0.15.0"
        ));
        assert_eq!(m.godebug, vec![("panicnil".into(), "1".into())]);
        assert_eq!(GoMod::default().lang(), "go1.16");
        assert_eq!(
            parse_go_mod("go.mod", "module a\nfrobnicate x\n").unwrap_err(),
            "go.mod:2: unknown directive `frobnicate`"
        );
    }

    #[test]
    fn vendored_modules_versions_and_language_versions() {
        let text = "# example.com/local v0.0.0 => ./third_party/local\n## explicit; go 1.21\nexample.com/local\n# github.com/google/go-cmp v0.6.0\n## explicit; go 1.13\ngithub.com/google/go-cmp/cmp\n# golang.org/x/old v0.1.0\n## explicit\ngolang.org/x/old\n# example.com/local => ./third_party/local\n";
        let vendored = parse_vendor_modules(text);
        assert_eq!(vendored["example.com/local"].go.as_deref(), Some("1.21"));
        assert_eq!(vendored["example.com/local"].version, "v0.0.0");
        assert_eq!(
            vendored["github.com/google/go-cmp"].go.as_deref(),
            Some("1.13")
        );
        assert_eq!(vendored["golang.org/x/old"].go, None);
        assert_eq!(vendored.len(), 3);

        let go_mod = parse_go_mod(
            "go.mod",
            "module m\n\ngo 1.22\n\nrequire (\n\tgithub.com/google/go-cmp v0.6.0\n\tgolang.org/x/old v0.1.0\n)\n",
        )
        .unwrap();
        assert_eq!(check_vendor_consistency(&go_mod, &vendored), Ok(()));
        let newer = parse_go_mod(
            "go.mod",
            "module m\n\ngo 1.22\n\nrequire (\n\tgithub.com/google/go-cmp v0.7.0\n\tgolang.org/x/new v1.0.0\n)\n",
        )
        .unwrap();
        let err = check_vendor_consistency(&newer, &vendored).unwrap_err();
        assert!(
            err.contains("github.com/google/go-cmp@v0.7.0: is required in go.mod, but vendor/modules.txt requires github.com/google/go-cmp@v0.6.0"),
            "{err}"
        );
        assert!(
            err.contains(
                "golang.org/x/new@v1.0.0: is required in go.mod, but not marked as explicit"
            ),
            "{err}"
        );
        assert!(err.contains("go mod vendor"), "{err}");
    }

    #[test]
    fn go_sum_lines() {
        let sums = parse_go_sum(
            "go.sum",
            "github.com/google/go-cmp v0.6.0 h1:abc=\ngithub.com/google/go-cmp v0.6.0/go.mod h1:def=\n",
        )
        .unwrap();
        assert_eq!(
            sums[&("github.com/google/go-cmp".into(), "v0.6.0".into())],
            "h1:abc="
        );
        assert!(parse_go_sum("go.sum", "a v1 h1:x\na v1 h1:y\n").is_err());
        assert_eq!(
            parse_go_sum("go.sum", "junk\n").unwrap_err(),
            "go.sum:1: expected `<module> <version> h1:<hash>`"
        );
    }

    #[test]
    fn a_go_line_newer_than_the_toolchain_is_found() {
        let module = |go: &str| GoMod {
            go: Some(go.to_string()),
            ..GoMod::default()
        };
        assert_eq!(module("1.27").newer_than("go1.26.8"), Some("1.27"));
        assert_eq!(module("1.26.9").newer_than("go1.26.8"), Some("1.26.9"));
        assert_eq!(module("1.26.8").newer_than("go1.26.8"), None);
        assert_eq!(module("1.26").newer_than("go1.26.8"), None);
        assert_eq!(module("1.22").newer_than("go1.26.8"), None);
        assert_eq!(module("1.27rc1").newer_than("go1.26.8"), Some("1.27rc1"));
        assert_eq!(module("1.26").newer_than("go1.26rc2"), None);
        assert_eq!(GoMod::default().newer_than("go1.26.8"), None);
    }
}
