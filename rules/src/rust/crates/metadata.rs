//! `cargo metadata --filter-platform <host>` read into what BUILD generation needs: every
//! non-workspace package with its library (or proc-macro) target, build script, resolved features
//! and dependencies split into normal, proc-macro and build dependencies. Cargo resolves features;
//! Kiln takes its answer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    workspace_members: Vec<String>,
    resolve: Option<Resolve>,
}

#[derive(Deserialize)]
struct Package {
    id: String,
    name: String,
    version: String,
    source: Option<String>,
    manifest_path: PathBuf,
    links: Option<String>,
    targets: Vec<Target>,
    #[serde(default)]
    authors: Vec<String>,
    description: Option<String>,
    homepage: Option<String>,
    repository: Option<String>,
    license: Option<String>,
    license_file: Option<String>,
    rust_version: Option<String>,
    readme: Option<String>,
}

impl Package {
    /// The `CARGO_PKG_*` values cargo sets from the manifest (besides name and version), each
    /// empty when the manifest leaves it out; `AUTHORS` is colon-separated, as cargo joins it.
    fn manifest_env(&self) -> BTreeMap<String, String> {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        [
            ("CARGO_PKG_AUTHORS", self.authors.join(":")),
            ("CARGO_PKG_DESCRIPTION", text(&self.description)),
            ("CARGO_PKG_HOMEPAGE", text(&self.homepage)),
            ("CARGO_PKG_REPOSITORY", text(&self.repository)),
            ("CARGO_PKG_LICENSE", text(&self.license)),
            ("CARGO_PKG_LICENSE_FILE", text(&self.license_file)),
            ("CARGO_PKG_RUST_VERSION", text(&self.rust_version)),
            ("CARGO_PKG_README", text(&self.readme)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

#[derive(Deserialize)]
struct Target {
    kind: Vec<String>,
    name: String,
    src_path: PathBuf,
    edition: String,
}

#[derive(Deserialize)]
struct Resolve {
    nodes: Vec<Node>,
}

#[derive(Deserialize)]
struct Node {
    id: String,
    #[serde(default)]
    deps: Vec<NodeDep>,
    #[serde(default)]
    features: Vec<String>,
}

#[derive(Deserialize)]
struct NodeDep {
    name: String,
    pkg: String,
    #[serde(default)]
    dep_kinds: Vec<DepKind>,
}

#[derive(Deserialize)]
struct DepKind {
    kind: Option<String>,
}

/// A crate's target as BUILD generation renders it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrateTarget {
    /// Crate name (`-` already `_`).
    pub crate_name: String,
    /// Root file relative to the package directory.
    pub root: String,
    /// Edition.
    pub edition: String,
}

/// A dependency edge as the dependent's code names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dep {
    /// Index of the package depended on (in [`Resolved::packages`]).
    pub package: usize,
    /// The name the dependent's code uses (`extern crate` name; differs when renamed).
    pub name: String,
}

/// One external package, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedPackage {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Its `source` (registry, git).
    pub source: String,
    /// Directory cargo unpacked it in (for reading only; Kiln builds from its own verified copy).
    pub dir: PathBuf,
    /// `links`.
    pub links: Option<String>,
    /// The library or proc-macro target.
    pub lib: Option<CrateTarget>,
    /// Whether the library is a proc-macro.
    pub proc_macro: bool,
    /// The build script.
    pub build_script: Option<CrateTarget>,
    /// Enabled features, sorted.
    pub features: Vec<String>,
    /// Normal dependencies.
    pub deps: Vec<Dep>,
    /// Build dependencies (of the build script).
    pub build_deps: Vec<Dep>,
    /// `CARGO_PKG_*` from its manifest (authors, description, ...), for its crate and build script.
    pub manifest_env: BTreeMap<String, String>,
}

/// The external packages and which of them the workspace's members use directly.
#[derive(Clone, Debug, Default)]
pub struct Resolved {
    /// Every non-workspace package.
    pub packages: Vec<ResolvedPackage>,
    /// Indexes of packages a workspace member depends on (normal, build or dev), with the names
    /// the members use.
    pub direct: Vec<Dep>,
    /// Indexes of packages the members' own code uses (normal and dev dependencies).
    pub direct_target: Vec<usize>,
    /// The workspace members' manifests (the resolution depends on them).
    pub member_manifests: Vec<PathBuf>,
}

/// Reads `cargo metadata` JSON.
pub fn parse(json: &str) -> Result<Resolved, String> {
    let meta: Metadata = serde_json::from_str(json)
        .map_err(|e| format!("`cargo metadata` printed unexpected JSON: {e}"))?;
    let resolve = meta
        .resolve
        .ok_or("`cargo metadata` gave no dependency resolution")?;
    let nodes: BTreeMap<&str, &Node> = resolve.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let external: Vec<&Package> = meta
        .packages
        .iter()
        .filter(|p| !meta.workspace_members.contains(&p.id) && nodes.contains_key(p.id.as_str()))
        .collect();
    let index: BTreeMap<&str, usize> = external
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.as_str(), i))
        .collect();
    let split = |node: &Node, with_dev: bool| -> (Vec<Dep>, Vec<Dep>) {
        let (mut normal, mut build) = (Vec::new(), Vec::new());
        for dep in &node.deps {
            let Some(&package) = index.get(dep.pkg.as_str()) else {
                continue;
            };
            let edge = Dep {
                package,
                name: dep.name.clone(),
            };
            let kinds: Vec<Option<&str>> =
                dep.dep_kinds.iter().map(|k| k.kind.as_deref()).collect();
            if kinds.is_empty()
                || kinds.contains(&None)
                || (with_dev && kinds.contains(&Some("dev")))
            {
                normal.push(edge.clone());
            }
            if kinds.contains(&Some("build")) {
                build.push(edge);
            }
        }
        (normal, build)
    };
    let mut packages = Vec::new();
    for package in &external {
        let node = nodes[package.id.as_str()];
        let dir = package
            .manifest_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let relative = |t: &Target| -> Result<String, String> {
            t.src_path
                .strip_prefix(&dir)
                .map(|p| p.to_string_lossy().into_owned())
                .map_err(|_| {
                    format!(
                        "`{} {}`: target `{}` lies outside its package",
                        package.name, package.version, t.name
                    )
                })
        };
        let lib_target = package.targets.iter().find(|t| {
            t.kind
                .iter()
                .any(|k| matches!(k.as_str(), "lib" | "rlib" | "proc-macro"))
        });
        let lib = match lib_target {
            Some(t) => Some(CrateTarget {
                crate_name: t.name.replace('-', "_"),
                root: relative(t)?,
                edition: t.edition.clone(),
            }),
            None => None,
        };
        let build_script = match package
            .targets
            .iter()
            .find(|t| t.kind.iter().any(|k| k == "custom-build"))
        {
            Some(t) => Some(CrateTarget {
                crate_name: "build_script_build".to_string(),
                root: relative(t)?,
                edition: t.edition.clone(),
            }),
            None => None,
        };
        let (deps, build_deps) = split(node, false);
        let mut features = node.features.clone();
        features.sort();
        packages.push(ResolvedPackage {
            name: package.name.clone(),
            version: package.version.clone(),
            source: package.source.clone().unwrap_or_default(),
            dir,
            links: package.links.clone(),
            proc_macro: lib_target.is_some_and(|t| t.kind.iter().any(|k| k == "proc-macro")),
            lib,
            build_script,
            features,
            deps,
            build_deps,
            manifest_env: package.manifest_env(),
        });
    }
    let mut direct = Vec::new();
    let mut direct_target = Vec::new();
    for member in &meta.workspace_members {
        if let Some(node) = nodes.get(member.as_str()) {
            let (normal, build) = split(node, true);
            direct_target.extend(normal.iter().map(|d| d.package));
            for dep in normal.into_iter().chain(build) {
                if !direct.contains(&dep) {
                    direct.push(dep);
                }
            }
        }
    }
    let member_manifests = meta
        .packages
        .iter()
        .filter(|p| meta.workspace_members.contains(&p.id))
        .map(|p| p.manifest_path.clone())
        .collect();
    Ok(Resolved {
        packages,
        direct,
        direct_target,
        member_manifests,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{
  "packages": [
    {"id": "path+file:///w#app@0.1.0", "name": "app", "version": "0.1.0", "source": null,
     "manifest_path": "/w/Cargo.toml", "links": null,
     "targets": [{"kind": ["bin"], "name": "app", "src_path": "/w/src/main.rs", "edition": "2021"}]},
    {"id": "registry+r#serde@1.0.1", "name": "serde", "version": "1.0.1", "source": "registry+r",
     "manifest_path": "/reg/serde-1.0.1/Cargo.toml", "links": null,
     "authors": ["A <a@x>", "B"], "description": "A \"serialization\"\nframework", "license": "MIT",
     "rust_version": "1.31",
     "targets": [{"kind": ["lib"], "name": "serde", "src_path": "/reg/serde-1.0.1/src/lib.rs", "edition": "2018"},
                 {"kind": ["custom-build"], "name": "build-script-build", "src_path": "/reg/serde-1.0.1/build.rs", "edition": "2018"}]},
    {"id": "registry+r#serde_derive@1.0.1", "name": "serde_derive", "version": "1.0.1", "source": "registry+r",
     "manifest_path": "/reg/serde_derive-1.0.1/Cargo.toml", "links": null,
     "targets": [{"kind": ["proc-macro"], "name": "serde_derive", "src_path": "/reg/serde_derive-1.0.1/src/lib.rs", "edition": "2015"}]}
  ],
  "workspace_members": ["path+file:///w#app@0.1.0"],
  "resolve": {"nodes": [
    {"id": "path+file:///w#app@0.1.0", "features": [],
     "deps": [{"name": "serde", "pkg": "registry+r#serde@1.0.1", "dep_kinds": [{"kind": null, "target": null}]},
              {"name": "derive_it", "pkg": "registry+r#serde_derive@1.0.1", "dep_kinds": [{"kind": "dev", "target": null}]}]},
    {"id": "registry+r#serde@1.0.1", "features": ["std", "derive"],
     "deps": [{"name": "serde_derive", "pkg": "registry+r#serde_derive@1.0.1", "dep_kinds": [{"kind": null, "target": null}]}]},
    {"id": "registry+r#serde_derive@1.0.1", "features": [], "deps": []}
  ]}
}"#;

    #[test]
    fn external_packages_with_targets_features_and_edges() {
        let resolved = parse(JSON).unwrap();
        assert_eq!(resolved.packages.len(), 2);
        let serde = &resolved.packages[0];
        assert_eq!(serde.features, ["derive", "std"]);
        assert_eq!(serde.lib.as_ref().unwrap().root, "src/lib.rs");
        assert_eq!(serde.build_script.as_ref().unwrap().root, "build.rs");
        assert_eq!(
            serde.deps,
            [Dep {
                package: 1,
                name: "serde_derive".into()
            }]
        );
        assert!(resolved.packages[1].proc_macro);
        let env = &serde.manifest_env;
        assert_eq!(env["CARGO_PKG_AUTHORS"], "A <a@x>:B");
        assert_eq!(
            env["CARGO_PKG_DESCRIPTION"],
            "A \"serialization\"\nframework"
        );
        assert_eq!(env["CARGO_PKG_LICENSE"], "MIT");
        assert_eq!(env["CARGO_PKG_RUST_VERSION"], "1.31");
        assert_eq!(env["CARGO_PKG_HOMEPAGE"], "");
        assert_eq!(env.len(), 8);
        assert_eq!(
            resolved.direct,
            [
                Dep {
                    package: 0,
                    name: "serde".into()
                },
                Dep {
                    package: 1,
                    name: "derive_it".into()
                }
            ]
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse("{").unwrap_err().contains("cargo metadata"));
    }
}
